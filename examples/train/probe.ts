// The linear probe: a multinomial logistic regression (softmax over 10 classes, cross-entropy, L2)
// trained on frozen features of the train split and scored on the test split. It runs on the host in
// float64, so that the probe itself is the same for every encoder it measures and every adapter.
import { permutation } from './digits.js';

/** Features of `count` samples (count x dim, row-major) with their labels. */
export interface Features {
  values: Float32Array;
  dim: number;
  labels: Uint8Array;
}

export interface ProbeSettings {
  epochs: number;
  batch: number;
  /** SGD step on standardized features, decayed linearly to 0 over the epochs; momentum 0.9. */
  lr: number;
  l2: number;
  seed: number;
}

export const PROBE: ProbeSettings = { epochs: 8, batch: 64, lr: 0.05, l2: 1e-3, seed: 7 };

export interface ProbeResult {
  trainAccuracy: number;
  testAccuracy: number;
}

const CLASSES = 10;

/** Per-feature mean and standard deviation of the train features (a constant feature keeps std 1). */
function standardizer(f: Features) {
  const count = f.labels.length;
  const mean = new Float64Array(f.dim);
  const std = new Float64Array(f.dim);
  for (let i = 0; i < count; i++) for (let j = 0; j < f.dim; j++) mean[j] += f.values[i * f.dim + j] / count;
  for (let i = 0; i < count; i++) for (let j = 0; j < f.dim; j++) std[j] += (f.values[i * f.dim + j] - mean[j]) ** 2 / count;
  for (let j = 0; j < f.dim; j++) std[j] = std[j] > 1e-12 ? Math.sqrt(std[j]) : 1;
  return (values: Float32Array, dim: number) => {
    const out = new Float64Array(values.length);
    for (let k = 0; k < values.length; k++) out[k] = (values[k] - mean[k % dim]) / std[k % dim];
    return out;
  };
}

/** Writes the class scores of sample `row` into `scores`. */
function scoresOf(x: Float64Array, row: number, dim: number, w: Float64Array, b: Float64Array, scores: Float64Array) {
  for (let c = 0; c < CLASSES; c++) scores[c] = b[c];
  for (let j = 0; j < dim; j++) {
    const v = x[row * dim + j];
    if (v === 0) continue;
    for (let c = 0; c < CLASSES; c++) scores[c] += v * w[j * CLASSES + c];
  }
}

function accuracy(x: Float64Array, labels: Uint8Array, dim: number, w: Float64Array, b: Float64Array): number {
  const scores = new Float64Array(CLASSES);
  let right = 0;
  for (let i = 0; i < labels.length; i++) {
    scoresOf(x, i, dim, w, b, scores);
    let best = 0;
    for (let c = 1; c < CLASSES; c++) if (scores[c] > scores[best]) best = c;
    if (best === labels[i]) right++;
  }
  return right / labels.length;
}

/** Trains the probe on `train` and scores it on both splits. */
export function linearProbe(train: Features, test: Features, settings: ProbeSettings = PROBE): ProbeResult {
  const { dim } = train;
  const standardize = standardizer(train);
  const x = standardize(train.values, dim);
  const xTest = standardize(test.values, dim);
  const w = new Float64Array(dim * CLASSES), b = new Float64Array(CLASSES);
  const vw = new Float64Array(dim * CLASSES), vb = new Float64Array(CLASSES);
  const gw = new Float64Array(dim * CLASSES), gb = new Float64Array(CLASSES);
  const scores = new Float64Array(CLASSES);
  const count = train.labels.length;
  const batches = Math.ceil(count / settings.batch) * settings.epochs;
  let batchIndex = 0;
  for (let epoch = 0; epoch < settings.epochs; epoch++) {
    const order = permutation(count, settings.seed + epoch);
    for (let start = 0; start < count; start += settings.batch) {
      const end = Math.min(count, start + settings.batch);
      gw.fill(0);
      gb.fill(0);
      for (let k = start; k < end; k++) {
        const row = order[k];
        scoresOf(x, row, dim, w, b, scores);
        // softmax - one-hot: the cross-entropy's gradient with respect to the scores.
        const top = Math.max(...scores);
        let sum = 0;
        for (let c = 0; c < CLASSES; c++) sum += (scores[c] = Math.exp(scores[c] - top));
        for (let c = 0; c < CLASSES; c++) scores[c] = scores[c] / sum - (c === train.labels[row] ? 1 : 0);
        for (let j = 0; j < dim; j++) {
          const v = x[row * dim + j];
          if (v === 0) continue;
          for (let c = 0; c < CLASSES; c++) gw[j * CLASSES + c] += v * scores[c];
        }
        for (let c = 0; c < CLASSES; c++) gb[c] += scores[c];
      }
      const size = end - start;
      const lr = settings.lr * (1 - batchIndex++ / batches);
      for (let k = 0; k < w.length; k++) {
        vw[k] = 0.9 * vw[k] + gw[k] / size + settings.l2 * w[k];
        w[k] -= lr * vw[k];
      }
      for (let c = 0; c < CLASSES; c++) {
        vb[c] = 0.9 * vb[c] + gb[c] / size;
        b[c] -= lr * vb[c];
      }
    }
  }
  return { trainAccuracy: accuracy(x, train.labels, dim, w, b), testAccuracy: accuracy(xTest, test.labels, dim, w, b) };
}
