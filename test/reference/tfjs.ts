// A second, independent reference: the VICReg loss written with tfjs ops on the CPU backend (float32)
// and differentiated by tfjs autograd (tf.valueAndGrads). It checks the hand-derived gradients of
// float64.ts, and is a float32 baseline for the engine.

import * as tf from '@tensorflow/tfjs';
import { resolveOptions, type ReferenceOptions } from './float64.js';

export interface TfjsResult {
  loss: number;
  invariance: number;
  variance: number;
  covariance: number;
  gradA: Float32Array;
  gradB: Float32Array;
}

let backendReady: Promise<void> | null = null;

/** Selects the tfjs CPU backend once. */
export function useTfjsCpu(): Promise<void> {
  backendReady ??= tf.setBackend('cpu').then((ok) => {
    if (!ok) throw new Error('tfjs: the cpu backend did not initialize');
  });
  return backendReady;
}

/** The loss of two [n, d] tensors, and its terms, as tfjs scalars. */
function vicregTerms(a: tf.Tensor2D, b: tf.Tensor2D, options: Required<ReferenceOptions>) {
  const [n, d] = a.shape;
  const { lambda, mu, nu, gamma, eps, preset } = options;
  const k = preset === 'official' ? 0.5 : 1;

  // F.mse_loss: the mean over all n*d elements.
  const invariance = tf.mean(tf.squaredDifference(a, b));

  // v(Z): tfjs moments gives the biased variance (divides by n); rescale to the unbiased one.
  const hinge = (z: tf.Tensor2D) => {
    const { variance } = tf.moments(z, 0);
    const std = tf.sqrt(tf.add(tf.mul(variance, n / (n - 1)), eps));
    return tf.mean(tf.relu(tf.sub(gamma, std)));
  };

  // c(Z): (1/d) sum of squared off-diagonal covariance entries; the diagonal is masked out.
  const offDiagonalMask = tf.sub(1, tf.eye(d));
  const offDiagonalSquares = (z: tf.Tensor2D) => {
    const centered = tf.sub(z, tf.mean(z, 0));
    const cov = tf.div(tf.matMul(centered, centered, true, false), n - 1);
    return tf.div(tf.sum(tf.square(tf.mul(cov, offDiagonalMask))), d);
  };

  const variance = tf.mul(k, tf.add(hinge(a), hinge(b)));
  const covariance = tf.add(offDiagonalSquares(a), offDiagonalSquares(b));
  const loss = tf.addN([tf.mul(lambda, invariance), tf.mul(mu, variance), tf.mul(nu, covariance)]) as tf.Scalar;
  return { loss, invariance, variance, covariance };
}

/** The VICReg loss, terms and gradients from tfjs-cpu autograd. Call useTfjsCpu() first. */
export function tfjsVICReg(
  a: Float32Array,
  b: Float32Array,
  shape: readonly [number, number],
  options: ReferenceOptions = {},
): TfjsResult {
  if (tf.getBackend() !== 'cpu') throw new Error('tfjs reference: call await useTfjsCpu() first');
  const [n, d] = shape;
  const resolved = resolveOptions(options);
  // tidy disposes every intermediate tensor; only plain numbers and arrays leave it.
  return tf.tidy(() => {
    const aTensor = tf.tensor2d(a, [n, d], 'float32');
    const bTensor = tf.tensor2d(b, [n, d], 'float32');
    const terms = vicregTerms(aTensor, bTensor, resolved);
    const lossOf = (x: tf.Tensor, y: tf.Tensor) => vicregTerms(x as tf.Tensor2D, y as tf.Tensor2D, resolved).loss;
    const { grads } = tf.valueAndGrads(lossOf)([aTensor, bTensor]);
    return {
      loss: terms.loss.dataSync()[0],
      invariance: terms.invariance.dataSync()[0],
      variance: terms.variance.dataSync()[0],
      covariance: terms.covariance.dataSync()[0],
      gradA: Float32Array.from(grads[0].dataSync()),
      gradB: Float32Array.from(grads[1].dataSync()),
    };
  });
}

/** Live tfjs tensors (to check that the reference leaks none). */
export function tfjsTensorCount(): number {
  return tf.memory().numTensors;
}
