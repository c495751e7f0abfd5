// The model, as the paper builds it and smaller: an encoder (the representation a probe measures) and
// an expander (the embeddings the loss sees), both multilayer perceptrons, and the settings of a run.
import { gaussianSampler } from '../../src/io/random.js';
import { PIXELS } from './digits.js';
import { AUGMENTATIONS, type Augmentations } from './augment.js';
import { PROBE, type ProbeSettings } from './probe.js';
import type { DenseLayer, MlpParameters } from './mlp.js';

export interface RunSettings {
  seed: number;
  steps: number;
  /** Digits per view in a step (n of the loss). */
  batch: number;
  /** The encoder's widths after the 784 pixels (ReLU after each), then the expander's (ReLU after all but its last). */
  encoder: number[];
  expander: number[];
  /** Adam's step size (beta1 0.9, beta2 0.999, epsilon 1e-8). */
  lr: number;
  /** Read the loss every this many steps. */
  logEvery: number;
  /** Digits held out for the probe's test; the rest (or `trainDigits` of it) train the encoder and the probe. */
  testDigits: number;
  trainDigits?: number;
  augmentations: Augmentations;
  probe: ProbeSettings;
}

const common = { seed: 1, lr: 1e-3, testDigits: 2000, augmentations: AUGMENTATIONS, probe: PROBE };
/** `npm run train`: the full run of the README's table. */
export const FULL: RunSettings = { ...common, steps: 1000, batch: 256, encoder: [512, 128], expander: [512, 512], logEvery: 20 };
/** `npm run train -- --quick`: the configuration CI runs. */
export const QUICK: RunSettings = { ...common, steps: 600, batch: 128, encoder: [256, 64], expander: [256, 256], logEvery: 10 };
/** The browser demo's button: fewer steps, and half the digits for the probes (a probe runs on the page's main thread). */
export const BROWSER: RunSettings = { ...QUICK, steps: 300, trainDigits: 4000 };

export const ADAM = { beta1: 0.9, beta2: 0.999, epsilon: 1e-8 } as const;

/** The layers of encoder then expander: ReLU after every layer but the expander's last. */
export function layersOf(s: Pick<RunSettings, 'encoder' | 'expander'>): DenseLayer[] {
  const widths = [PIXELS, ...s.encoder, ...s.expander];
  return widths.slice(1).map((outputs, l) => ({ inputs: widths[l], outputs, relu: l < widths.length - 2 }));
}

/** He-normal weights (N(0, 2/inputs); 1/inputs for the linear last layer), zero biases: the random encoder. */
export function initialParameters(layers: readonly DenseLayer[], seed: number): MlpParameters {
  const gaussian = gaussianSampler(seed);
  return {
    weights: layers.map((l) => {
      const std = Math.sqrt((l.relu ? 2 : 1) / l.inputs);
      return Float32Array.from({ length: l.inputs * l.outputs }, () => std * gaussian());
    }),
    biases: layers.map((l) => new Float32Array(l.outputs)),
  };
}

/** Bins of the statistics' histograms (std over [0, 2], correlations over [-1, 1]). */
export const HISTOGRAM_BINS = 20;

/** The embeddings' statistics the loss acts on, over a set of inputs: per-feature std (unbiased) and off-diagonal correlations. */
export interface EmbeddingStats {
  /** Per-feature standard deviation over the inputs. */
  std: number[];
  meanStd: number;
  /**
   * Mean |corr(i, j)| and root mean corr(i, j)^2 over pairs i < j of features that vary (the covariance
   * term penalizes squares), and a histogram of corr over [-1, 1]; `constantFeatures` vary not at all.
   */
  meanAbsCorrelation: number;
  rmsCorrelation: number;
  correlationHistogram: number[];
  stdHistogram: number[];
  constantFeatures: number;
}

export function embeddingStats(z: Float32Array, n: number, d: number): EmbeddingStats {
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += z[i * d + j] / n;
  const c = new Float64Array(n * d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) c[i * d + j] = z[i * d + j] - mean[j];
  const cov = new Float64Array(d * d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      const v = c[i * d + j];
      if (v === 0) continue;
      for (let k = j; k < d; k++) cov[j * d + k] += v * c[i * d + k];
    }
  }
  const std = Array.from({ length: d }, (_, j) => Math.sqrt(cov[j * d + j] / (n - 1)));
  const bin = (value: number, lo: number, hi: number) => Math.min(HISTOGRAM_BINS - 1, Math.max(0, Math.floor(((value - lo) / (hi - lo)) * HISTOGRAM_BINS)));
  const correlationHistogram = new Array(HISTOGRAM_BINS).fill(0);
  const stdHistogram = new Array(HISTOGRAM_BINS).fill(0);
  for (const s of std) stdHistogram[bin(s, 0, 2)]++;
  let sum = 0, squares = 0, pairs = 0;
  for (let j = 0; j < d; j++) {
    for (let k = j + 1; k < d; k++) {
      if (!(cov[j * d + j] > 0 && cov[k * d + k] > 0)) continue;
      const r = cov[j * d + k] / Math.sqrt(cov[j * d + j] * cov[k * d + k]);
      sum += Math.abs(r);
      squares += r * r;
      pairs++;
      correlationHistogram[bin(r, -1, 1)]++;
    }
  }
  return {
    std, meanStd: std.reduce((a, b) => a + b, 0) / d,
    meanAbsCorrelation: sum / pairs, rmsCorrelation: Math.sqrt(squares / pairs), correlationHistogram, stdHistogram,
    constantFeatures: std.filter((s) => s === 0).length,
  };
}

/** One point of the loss curve. */
export interface LossPoint {
  step: number;
  loss: number;
  invariance: number;
  variance: number;
  covariance: number;
}

/** What a trained path records: its curve, its probe, its embeddings before and after, its step time. */
export interface PathRecord {
  /** 'wgsl' (the engine's encode() and our WGSL layers) or 'tfjs' / 'tfjs-composed' (tfjs layers, our op or tfjs ops). */
  path: string;
  /** The adapter the path ran on. */
  adapter: string;
  curve: LossPoint[];
  probe: { train: number; test: number };
  embeddings: { before: EmbeddingStats; after: EmbeddingStats };
  /** Medians over the timed steps, in ms: the whole step, the model's part (forward, backward, update) and the loss's. */
  ms: { step: number; model: number; loss: number };
  /** tfjs paths: tensors left alive by the run (the model's and optimizer's disposed), 0 when nothing leaks. */
  leakedTensors?: number;
}

/** Whether step `step` (from 1) reads the loss: the first, every `logEvery`, the last. */
export const isLogStep = (step: number, s: RunSettings) => step === 1 || step % s.logEvery === 0 || step === s.steps;

/** Steps whose times the medians leave out: the first ones compile pipelines and allocate. */
export const WARMUP_STEPS = 5;

/** The median of the times of steps past the warm-up (of all of them if there are no others). */
export function timedMedian(times: readonly { step: number; ms: number }[]): number {
  const warm = times.filter((t) => t.step > WARMUP_STEPS);
  const sorted = (warm.length > 0 ? warm : times).map((t) => t.ms).sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : sorted[Math.floor((sorted.length - 1) / 2)];
}
