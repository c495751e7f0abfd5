// A second, independent reference: the VICReg loss written with tfjs ops and differentiated by tfjs
// autograd (tf.valueAndGrads), in float32. The loss runs on whatever tfjs backend is active: the tests
// use tfjs-backend-cpu (useTfjsCpu, tfjsVICReg) to check the hand-derived gradients of float64.ts; the
// bench sets up tfjs-backend-webgpu itself (bench/tfjs-reference.ts) and calls tfjsLossAndGradients.

import * as tf from '@tensorflow/tfjs';
import { resolveOptions, varianceWeight, type ReferenceOptions } from './float64.js';

export interface TfjsResult {
  loss: number;
  invariance: number;
  variance: number;
  covariance: number;
  gradA: Float32Array;
  gradB: Float32Array;
}

/** The loss terms and both gradients, still on the backend. */
export interface TfjsTensors {
  /** [loss, invariance, variance, covariance] */
  terms: tf.Tensor1D;
  gradA: tf.Tensor;
  gradB: tf.Tensor;
}

let backendReady: Promise<void> | null = null;

/** Selects the tfjs CPU backend once. */
export function useTfjsCpu(): Promise<void> {
  backendReady ??= tf.setBackend('cpu').then((ok) => {
    if (!ok) throw new Error('tfjs: the cpu backend did not initialize');
  });
  return backendReady;
}

/** 1 - I (d x d): keeps the off-diagonal of a covariance. A caller timing the loss builds it once per d. */
export function offDiagonalMask(d: number): tf.Tensor2D {
  return tf.tidy(() => tf.sub(1, tf.eye(d)) as tf.Tensor2D);
}

/** The loss of two [n, d] tensors, and its terms, as tfjs scalars. */
function vicregTerms(a: tf.Tensor2D, b: tf.Tensor2D, options: Required<ReferenceOptions>, mask: tf.Tensor2D) {
  const [n, d] = a.shape;
  const { lambda, mu, nu, gamma, eps, preset } = options;

  // F.mse_loss: the mean over all n*d elements.
  const invariance = tf.mean(tf.squaredDifference(a, b));

  // v(Z): tfjs moments gives the biased variance (divides by n); rescale to the unbiased one.
  const hinge = (z: tf.Tensor2D) => {
    const { variance } = tf.moments(z, 0);
    const std = tf.sqrt(tf.add(tf.mul(variance, n / (n - 1)), eps));
    return tf.mean(tf.relu(tf.sub(gamma, std)));
  };

  // c(Z): (1/d) sum of squared off-diagonal covariance entries; the diagonal is masked out.
  const offDiagonalSquares = (z: tf.Tensor2D) => {
    const centered = tf.sub(z, tf.mean(z, 0));
    const cov = tf.div(tf.matMul(centered, centered, true, false), n - 1);
    return tf.div(tf.sum(tf.square(tf.mul(cov, mask))), d);
  };

  const variance = tf.mul(varianceWeight(preset), tf.add(hinge(a), hinge(b)));
  const covariance = tf.add(offDiagonalSquares(a), offDiagonalSquares(b));
  const loss = tf.addN([tf.mul(lambda, invariance), tf.mul(mu, variance), tf.mul(nu, covariance)]) as tf.Scalar;
  return { loss, invariance, variance, covariance };
}

/**
 * The VICReg loss, its terms and both gradients as tensors on the active backend, from one forward and
 * the backward that autograd derives from it. `mask` is offDiagonalMask(d), built here when not given.
 * Every intermediate is disposed; the caller disposes the returned tensors (and its mask).
 */
export function tfjsLossAndGradients(
  a: Float32Array,
  b: Float32Array,
  shape: readonly [number, number],
  options: ReferenceOptions = {},
  mask?: tf.Tensor2D,
): TfjsTensors {
  const [n, d] = shape;
  const resolved = resolveOptions(options);
  return tf.tidy(() => {
    const offDiagonal = mask ?? offDiagonalMask(d);
    const aTensor = tf.tensor2d(a, [n, d], 'float32');
    const bTensor = tf.tensor2d(b, [n, d], 'float32');
    // The terms are taken from the forward that valueAndGrads differentiates (tf.keep lets them out
    // of its inner scope), so tfjs does no extra work for them.
    let kept: ReturnType<typeof vicregTerms> | undefined;
    const { grads } = tf.valueAndGrads((x: tf.Tensor, y: tf.Tensor) => {
      const t = vicregTerms(x as tf.Tensor2D, y as tf.Tensor2D, resolved, offDiagonal);
      kept = { loss: tf.keep(t.loss), invariance: tf.keep(t.invariance), variance: tf.keep(t.variance), covariance: tf.keep(t.covariance) };
      return t.loss;
    })([aTensor, bTensor]);
    const { loss, invariance, variance, covariance } = kept!;
    const terms = tf.stack([loss, invariance, variance, covariance]) as tf.Tensor1D;
    tf.dispose([loss, invariance, variance, covariance]); // kept tensors outlive tidy unless disposed
    return { terms, gradA: grads[0], gradB: grads[1] };
  });
}

/** The VICReg loss, terms and gradients from tfjs-cpu autograd, read synchronously. Call useTfjsCpu() first. */
export function tfjsVICReg(
  a: Float32Array,
  b: Float32Array,
  shape: readonly [number, number],
  options: ReferenceOptions = {},
): TfjsResult {
  if (tf.getBackend() !== 'cpu') throw new Error('tfjs reference: call await useTfjsCpu() first');
  const { terms, gradA, gradB } = tfjsLossAndGradients(a, b, shape, options);
  try {
    const [loss, invariance, variance, covariance] = terms.dataSync();
    return { loss, invariance, variance, covariance, gradA: Float32Array.from(gradA.dataSync()), gradB: Float32Array.from(gradB.dataSync()) };
  } finally {
    tf.dispose([terms, gradA, gradB]);
  }
}

/** Live tfjs tensors (to check that the reference leaks none). */
export function tfjsTensorCount(): number {
  return tf.memory().numTensors;
}
