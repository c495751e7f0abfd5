// The VICReg loss composed from tfjs-core ops: the slow path of the tfjs op, for every backend other
// than 'webgpu' (cpu, wasm, webgl, node). tfjs autograd differentiates it, so its gradients are tfjs's.
// It follows docs/math.md in the primal (d x d) form: O(n d^2) work and d^2 floats per view.
import * as tf from '@tensorflow/tfjs-core';
import { varianceScale, type Coefficients } from '../coefficients.js';

/** The loss and its three terms, as scalars (docs/math.md). */
export interface ComposedTerms {
  loss: tf.Scalar;
  invariance: tf.Scalar;
  variance: tf.Scalar;
  covariance: tf.Scalar;
}

/** One view's v(Z) and c(Z). `offDiagonal` is 1 - I (d x d). */
function viewTerms(z: tf.Tensor2D, gamma: number, eps: number, offDiagonal: tf.Tensor2D) {
  const [n, d] = z.shape;
  // Shifting by the first row first is exact for values near it (as the engine's kernels do), so a
  // large common offset does not swamp the float32 mean.
  const shifted = tf.sub(z, tf.slice(z, [0, 0], [1, d]));
  const centered = tf.sub(shifted, tf.mean(shifted, 0, true));
  const unbiasedVariance = tf.div(tf.sum(tf.square(centered), 0), n - 1);
  const std = tf.sqrt(tf.add(unbiasedVariance, eps));
  // relu's derivative at 0 is 0 in tfjs, so a feature with std exactly gamma adds no gradient.
  const hinge = tf.mean(tf.relu(tf.sub(gamma, std)));
  const covariance = tf.div(tf.matMul(centered, centered, true, false), n - 1);
  // Masking the diagonal (rather than subtracting its squares from the total) keeps a dominant
  // variance from cancelling the off-diagonal part away.
  const offDiagonalSquares = tf.div(tf.sum(tf.square(tf.mul(covariance, offDiagonal))), d);
  return { hinge, offDiagonalSquares };
}

/**
 * The terms of the VICReg loss of two [n, d] float32 tensors (shapes already checked: n >= 2) for
 * resolved coefficients. Intermediates are left to the caller's tf.tidy.
 */
export function composedVICRegTerms(za: tf.Tensor2D, zb: tf.Tensor2D, c: Coefficients): ComposedTerms {
  const d = za.shape[1];
  const offDiagonal = tf.sub(1, tf.eye(d)) as tf.Tensor2D;
  const a = viewTerms(za, c.gamma, c.eps, offDiagonal);
  const b = viewTerms(zb, c.gamma, c.eps, offDiagonal);
  // F.mse_loss: the mean over all n d elements.
  const invariance = tf.mean(tf.squaredDifference(za, zb)) as tf.Scalar;
  const variance = tf.mul(varianceScale(c.preset), tf.add(a.hinge, b.hinge)) as tf.Scalar;
  const covariance = tf.add(a.offDiagonalSquares, b.offDiagonalSquares) as tf.Scalar;
  const loss = tf.addN([tf.mul(c.lambda, invariance), tf.mul(c.mu, variance), tf.mul(c.nu, covariance)]) as tf.Scalar;
  return { loss, invariance, variance, covariance };
}
