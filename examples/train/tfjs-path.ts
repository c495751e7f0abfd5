// The tfjs path, as a tfjs user takes it: the same layers as tf.layers.dense, the same initial
// parameters, batches and Adam settings, trained by optimizer.minimize with the loss either from
// `vicreg-wgsl/tfjs` (our WGSL kernels on tfjs's device) or composed from tfjs ops (the same loss as
// tfjs alone computes it), so that the two differ in the loss only.
import * as tf from '@tensorflow/tfjs';
import { vicregLoss, vicregTerms } from 'vicreg-wgsl/tfjs';
import { resolveCoefficients } from '../../src/coefficients.js';
import { composedVICRegTerms } from '../../src/tfjs/composed.js';
import { PIXELS, type Digits } from './digits.js';
import { ADAM, embeddingStats, layersOf, median, type LossPoint, type Parameters, type PathRecord, type RunSettings } from './model.js';
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
  const t = composedVICRegTerms(za, zb, resolveCoefficients());
  return tf.stack([t.loss, t.invariance, t.variance, t.covariance]) as tf.Tensor1D;
}

function buildModel(s: RunSettings, init: Parameters): tf.Sequential {
  const layers = layersOf(s);
  const model = tf.sequential({
    layers: layers.map((l, i) => tf.layers.dense({ ...(i === 0 ? { inputShape: [PIXELS] } : {}), units: l.outputs, activation: l.relu ? 'relu' : 'linear' })),
  });
  model.setWeights(layers.flatMap((l, i) => [tf.tensor2d(init.weights[i], [l.inputs, l.outputs]), tf.tensor1d(init.biases[i])]));
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

/** Trains the tfjs model from `init` with the loss `which`. */
export async function trainTfjs(which: TfjsLoss, data: { train: Digits; test: Digits }, s: RunSettings, init: Parameters, onProgress?: (p: Progress) => void): Promise<PathRecord> {
  const model = buildModel(s, init);
  const layers = layersOf(s);
  const last = layers.length - 1;
  const n = s.batch;
  const embeddings = async () => embeddingStats(await layerOutputs(model, data.test.images, last), data.test.count, layers[last].outputs);
  const optimizer = tf.train.adam(s.lr, ADAM.beta1, ADAM.beta2, ADAM.epsilon);
  try {
    const before = await embeddings();
    const curve: LossPoint[] = [];
    const times = { step: [] as number[], loss: [] as number[] };
    let step = 0;
    for (const views of batches(data.train, s)) {
      step++;
      const x = tf.tensor2d(views, [2 * n, PIXELS]);
      let point: LossPoint | undefined;
      if (step === 1 || step % s.logEvery === 0 || step === s.steps) {
        // The terms before this step's update (as the wgsl path reads them), and the loss's time alone.
        const probe = await lossAlone(which, model, x, n);
        point = { step, loss: probe.terms[0], invariance: probe.terms[1], variance: probe.terms[2], covariance: probe.terms[3] };
        curve.push(point);
        times.loss.push(probe.ms);
      }
      const t0 = performance.now();
      const loss = optimizer.minimize(() => {
        const z = model.apply(x) as tf.Tensor2D;
        return lossOf(which, tf.slice(z, [0, 0], [n, -1]), tf.slice(z, [n, 0], [n, -1]));
      }, true) as tf.Scalar;
      await loss.data();
      times.step.push(performance.now() - t0);
      tf.dispose([x, loss]);
      onProgress?.({ path: which, step, steps: s.steps, point });
    }
    const after = await embeddings();
    const dim = layers[s.encoder.length - 1].outputs;
    const features = async (d: Digits) => ({ values: await layerOutputs(model, d.images, s.encoder.length - 1), dim, labels: d.labels });
    const result = linearProbe(await features(data.train), await features(data.test), s.probe);
    const timed = (xs: number[]) => median(xs.slice(Math.min(5, xs.length - 1)));
    const stepMs = timed(times.step), lossMs = median(times.loss.slice(1));
    return { path: which, curve, probe: { train: result.trainAccuracy, test: result.testAccuracy }, embeddings: { before, after }, ms: { step: stepMs, model: stepMs - lossMs, loss: lossMs } };
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
    const z = model.predict(x) as tf.Tensor2D;
    return [tf.slice(z, [0, 0], [n, -1]), tf.slice(z, [n, 0], [n, -1])];
  });
  try {
    await za.data();
    await zb.data();
    const t0 = performance.now();
    const grads = tf.grads((a: tf.Tensor, b: tf.Tensor) => lossOf(which, a as tf.Tensor2D, b as tf.Tensor2D))([za, zb]);
    await Promise.all(grads.map((g) => g.data()));
    const ms = performance.now() - t0;
    tf.dispose(grads);
    const terms = termsOf(which, za, zb);
    const values = (await terms.data()) as Float32Array;
    terms.dispose();
    return { ms, terms: values };
  } finally {
    tf.dispose([za, zb]);
  }
}
