// The tfjs path, as a tfjs user takes it: the same layers as tf.layers.dense, the same initial
// parameters, batches and Adam settings, trained by optimizer.minimize with the loss either from
// `vicreg-wgsl/tfjs` (our WGSL kernels on tfjs's device) or composed from tfjs ops (the same loss as
// tfjs alone computes it), so that the two differ in the loss only.
import * as tf from '@tensorflow/tfjs';
import { vicregLoss, vicregTerms } from 'vicreg-wgsl/tfjs';
import { resolveCoefficients } from '../../src/coefficients.js';
import { composedVICRegTerms } from '../../src/tfjs/composed.js';
import { PIXELS, type Digits } from './digits.js';
import type { MlpParameters } from './mlp.js';
import { ADAM, embeddingStats, isLogStep, layersOf, timedMedian, type LossPoint, type PathRecord, type RunSettings } from './model.js';
import { linearProbe } from './probe.js';
import { batches, type Progress } from './wgsl-path.js';

export type TfjsLoss = 'tfjs' | 'tfjs-composed';

/** The loss of two [n, d] tensors, differentiable, by `which`. */
function lossOf(which: TfjsLoss, za: tf.Tensor2D, zb: tf.Tensor2D): tf.Scalar {
  return which === 'tfjs' ? vicregLoss(za, zb) : composedVICRegTerms(za, zb, resolveCoefficients()).loss;
}

/** [loss, invariance, variance, covariance] of two [n, d] tensors, by `which` (for the curve; no gradient). */
function termsOf(which: TfjsLoss, za: tf.Tensor2D, zb: tf.Tensor2D): tf.Tensor1D {
  if (which === 'tfjs') return vicregTerms(za, zb);
  return tf.tidy(() => {
    const t = composedVICRegTerms(za, zb, resolveCoefficients());
    return tf.stack([t.loss, t.invariance, t.variance, t.covariance]) as tf.Tensor1D;
  });
}

function buildModel(s: RunSettings, init: MlpParameters): tf.Sequential {
  const layers = layersOf(s);
  const model = tf.sequential({
    layers: layers.map((l, i) => tf.layers.dense({ ...(i === 0 ? { inputShape: [PIXELS] } : {}), units: l.outputs, activation: l.relu ? 'relu' : 'linear' })),
  });
  const weights = layers.flatMap((l, i) => [tf.tensor2d(init.weights[i], [l.inputs, l.outputs]), tf.tensor1d(init.biases[i])]);
  model.setWeights(weights);
  tf.dispose(weights);
  return model;
}

/** The output of layer `layer` for every image (read asynchronously: webgpu's synchronous reads need a canvas). */
async function layerOutputs(model: tf.Sequential, images: Float32Array, layer: number): Promise<Float32Array> {
  const count = images.length / PIXELS;
  const out = tf.tidy(() => {
    let x: tf.Tensor = tf.tensor2d(images, [count, PIXELS]);
    for (let l = 0; l <= layer; l++) x = model.layers[l].apply(x) as tf.Tensor;
    return x;
  });
  try {
    return (await out.data()) as Float32Array;
  } finally {
    out.dispose();
  }
}

/** The adapter of tfjs's webgpu backend, as its adapterInfo names it. */
function adapterName(): string {
  const info = (tf.backend() as unknown as { adapterInfo?: { vendor?: string; architecture?: string; description?: string } }).adapterInfo;
  return [info?.vendor, info?.architecture, info?.description].filter((s) => s).join(' ') || `tfjs-${tf.getBackend()}`;
}

/** Trains the tfjs model from `init` with the loss `which`, and counts the tensors it leaves behind. */
export async function trainTfjs(which: TfjsLoss, data: { train: Digits; test: Digits }, s: RunSettings, init: MlpParameters, onProgress?: (p: Progress) => void): Promise<PathRecord> {
  const tensorsBefore = tf.memory().numTensors;
  const record = await train(which, data, s, init, onProgress);
  return { ...record, leakedTensors: tf.memory().numTensors - tensorsBefore };
}

async function train(which: TfjsLoss, data: { train: Digits; test: Digits }, s: RunSettings, init: MlpParameters, onProgress?: (p: Progress) => void): Promise<PathRecord> {
  const model = buildModel(s, init);
  const layers = layersOf(s);
  const last = layers.length - 1;
  const n = s.batch;
  const embeddings = async () => embeddingStats(await layerOutputs(model, data.test.images, last), data.test.count, layers[last].outputs);
  const optimizer = tf.train.adam(s.lr, ADAM.beta1, ADAM.beta2, ADAM.epsilon);
  try {
    const before = await embeddings();
    const curve: LossPoint[] = [];
    // Every step's time; on the steps that read the loss, also the loss's alone and the rest (the model's).
    const times = { step: [] as { step: number; ms: number }[], model: [] as { step: number; ms: number }[], loss: [] as { step: number; ms: number }[] };
    let step = 0;
    for (const views of batches(data.train, s)) {
      step++;
      const x = tf.tensor2d(views, [2 * n, PIXELS]);
      let point: LossPoint | undefined;
      let lossMs: number | undefined;
      if (isLogStep(step, s)) {
        // The terms before this step's update (as the wgsl path reads them), and the loss's time alone.
        const measured = await lossAlone(which, model, x, n);
        point = { step, loss: measured.terms[0], invariance: measured.terms[1], variance: measured.terms[2], covariance: measured.terms[3] };
        curve.push(point);
        lossMs = measured.ms;
      }
      const t0 = performance.now();
      const loss = optimizer.minimize(() => {
        const z = model.apply(x) as tf.Tensor2D;
        return lossOf(which, tf.slice(z, [0, 0], [n, -1]), tf.slice(z, [n, 0], [n, -1]));
      }, true) as tf.Scalar;
      await loss.data();
      const stepMs = performance.now() - t0;
      times.step.push({ step, ms: stepMs });
      if (lossMs !== undefined) {
        times.loss.push({ step, ms: lossMs });
        times.model.push({ step, ms: stepMs - lossMs });
      }
      tf.dispose([x, loss]);
      onProgress?.({ path: which, step, steps: s.steps, point });
    }
    const after = await embeddings();
    const dim = layers[s.encoder.length - 1].outputs;
    const features = async (d: Digits) => ({ values: await layerOutputs(model, d.images, s.encoder.length - 1), dim, labels: d.labels });
    const result = linearProbe(await features(data.train), await features(data.test), s.probe);
    return {
      path: which, adapter: adapterName(), curve, probe: { train: result.trainAccuracy, test: result.testAccuracy }, embeddings: { before, after },
      ms: { step: timedMedian(times.step), model: timedMedian(times.model), loss: timedMedian(times.loss) },
    };
  } finally {
    optimizer.dispose();
    model.layers.forEach((l) => l.dispose());
  }
}
/**
 * The loss alone on this batch's embeddings: its forward and gradients, timed (the model's part of a
 * step is the rest), and its terms.
 */
async function lossAlone(which: TfjsLoss, model: tf.Sequential, x: tf.Tensor2D, n: number): Promise<{ ms: number; terms: Float32Array }> {
  const [za, zb] = tf.tidy(() => {
    const z = model.apply(x) as tf.Tensor2D;
    return [tf.slice(z, [0, 0], [n, -1]), tf.slice(z, [n, 0], [n, -1])];
  });
  try {
    await za.data();
    await zb.data();
    const t0 = performance.now();
    // Waits on one number that depends on both gradients, so the time has no n x d readback in it.
    const done = tf.tidy(() => {
      const grads = tf.grads((a: tf.Tensor, b: tf.Tensor) => lossOf(which, a as tf.Tensor2D, b as tf.Tensor2D))([za, zb]);
      return tf.addN(grads.map((g) => tf.sum(g)));
    });
    await done.data();
    const ms = performance.now() - t0;
    done.dispose();
    const terms = termsOf(which, za, zb);
    const values = (await terms.data()) as Float32Array;
    terms.dispose();
    return { ms, terms: values };
  } finally {
    tf.dispose([za, zb]);
  }
}
