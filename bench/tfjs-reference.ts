// The tfjs reference of the bench: the VICReg loss written with ordinary tfjs ops (mean of squared
// difference, moments, matMul with transposeA, square, an off-diagonal mask from eye) and
// differentiated by tf.valueAndGrads, on @tensorflow/tfjs-backend-webgpu. In Node it runs on Dawn
// (the `webgpu` package) through navigator.gpu: the same Dawn instance, hence the same adapter
// (lavapipe on a GPU-less machine), that the engine then picks up (src/runtime/device.ts prefers
// navigator.gpu).

import type * as TF from '@tensorflow/tfjs';
import type { Coefficients } from './float64-reference.js';

type Tfjs = typeof TF;

export interface TfjsResult {
  loss: number;
  invariance: number;
  variance: number;
  covariance: number;
  gradA: Float32Array;
  gradB: Float32Array;
}

export interface TfjsReference {
  /** The adapter tfjs-webgpu reports, in words. */
  adapterName: string;
  /** tfjs's device's maxStorageBufferBindingSize: a bigger tensor makes tfjs-webgpu compute garbage. */
  maxBindingBytes: number;
  /** Prepares a shape: builds the off-diagonal mask once (as a user of tfjs would), outside any timing. */
  prepare(n: number, d: number): void;
  /** Forward + backward from host arrays to host results (loss, terms, both gradients). */
  run(a: Float32Array, b: Float32Array, n: number, d: number): Promise<TfjsResult>;
  /** Releases the shape's mask. */
  release(): void;
  /** Live tfjs tensors (a leak check: constant between runs). */
  liveTensors(): number;
}

/**
 * Installs WebGPU in Node (Dawn's globals and navigator.gpu) unless it exists already. Call before the
 * engine acquires its device so both share one Dawn instance. The returned GPU object must stay
 * reachable for the whole process: if Dawn's instance is garbage-collected, Dawn crashes later.
 */
export async function installNavigatorGpu(): Promise<GPU> {
  const existing = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (existing) return existing;
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const gpu = create([]);
  // Node 21+ has a read-only global navigator; Node 20 has none. defineProperty covers both.
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  return gpu;
}

export async function createTfjsReference(coefficients: Coefficients): Promise<TfjsReference> {
  const tf: Tfjs = await import('@tensorflow/tfjs');
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs: the webgpu backend did not initialize');
  await tf.ready();
  const info = (tf.backend() as unknown as { adapterInfo?: { vendor?: string; architecture?: string } }).adapterInfo;
  const adapterName = [info?.vendor, info?.architecture].filter((s) => s).join(' ') || 'unknown adapter';
  const device = (tf.backend() as unknown as { device: GPUDevice }).device;

  let offDiagonalMask: TF.Tensor2D | undefined;
  let maskSide = 0;

  /** The loss of two [n, d] tensors and its terms, as tfjs scalars. */
  function vicregTerms(a: TF.Tensor2D, b: TF.Tensor2D) {
    const [n, d] = a.shape;
    const { lambda, mu, nu, gamma, eps, varianceScale } = coefficients;
    // F.mse_loss: the mean over all n*d elements.
    const invariance = tf.mean(tf.squaredDifference(a, b));
    // moments gives the biased variance (divides by n); rescale to the unbiased one.
    const hinge = (z: TF.Tensor2D) => {
      const { variance } = tf.moments(z, 0);
      const std = tf.sqrt(tf.add(tf.mul(variance, n / (n - 1)), eps));
      return tf.mean(tf.relu(tf.sub(gamma, std)));
    };
    const offDiagonalSquares = (z: TF.Tensor2D) => {
      const centered = tf.sub(z, tf.mean(z, 0));
      const cov = tf.div(tf.matMul(centered, centered, true, false), n - 1);
      return tf.div(tf.sum(tf.square(tf.mul(cov, offDiagonalMask!))), d);
    };
    const variance = tf.mul(varianceScale, tf.add(hinge(a), hinge(b)));
    const covariance = tf.add(offDiagonalSquares(a), offDiagonalSquares(b));
    const loss = tf.addN([tf.mul(lambda, invariance), tf.mul(mu, variance), tf.mul(nu, covariance)]) as TF.Scalar;
    return { loss, invariance, variance, covariance };
  }

  return {
    adapterName,
    maxBindingBytes: device.limits.maxStorageBufferBindingSize,
    prepare(_n, d) {
      if (offDiagonalMask && maskSide === d) return;
      offDiagonalMask?.dispose();
      offDiagonalMask = tf.tidy(() => tf.sub(1, tf.eye(d)) as TF.Tensor2D);
      maskSide = d;
    },
    release() {
      offDiagonalMask?.dispose();
      offDiagonalMask = undefined;
      maskSide = 0;
    },
    liveTensors: () => tf.memory().numTensors,
    async run(a, b, n, d) {
      if (!offDiagonalMask || maskSide !== d) throw new Error('tfjs reference: call prepare(n, d) first');
      // tfjs-webgpu does not check WebGPU errors: a binding over the device's limits, say, leaves Dawn
      // printing validation errors and tfjs returning garbage. Error scopes turn them into a throw.
      device.pushErrorScope('out-of-memory');
      device.pushErrorScope('validation');
      let outputs: { terms: TF.Tensor1D; gradA: TF.Tensor; gradB: TF.Tensor } | undefined;
      let scopesOpen = true;
      const popScopes = async () => {
        scopesOpen = false;
        const validation = await device.popErrorScope();
        const outOfMemory = await device.popErrorScope();
        const error = validation ?? outOfMemory;
        if (error) throw new Error(`tfjs-webgpu hit a WebGPU error: ${error.message.split('\n')[0]}`);
      };
      try {
        // One forward and one backward: the terms are taken from the same forward that valueAndGrads
        // differentiates (tf.keep lets them out of its inner scope), so tfjs does no extra work.
        outputs = tf.tidy(() => {
          const aTensor = tf.tensor2d(a, [n, d], 'float32');
          const bTensor = tf.tensor2d(b, [n, d], 'float32');
          let kept: ReturnType<typeof vicregTerms> | undefined;
          const { grads } = tf.valueAndGrads((x: TF.Tensor, y: TF.Tensor) => {
            const t = vicregTerms(x as TF.Tensor2D, y as TF.Tensor2D);
            kept = { loss: tf.keep(t.loss), invariance: tf.keep(t.invariance), variance: tf.keep(t.variance), covariance: tf.keep(t.covariance) };
            return t.loss;
          })([aTensor, bTensor]);
          const packed = tf.stack([kept!.loss, kept!.invariance, kept!.variance, kept!.covariance]) as TF.Tensor1D;
          tf.dispose([kept!.loss, kept!.invariance, kept!.variance, kept!.covariance]);
          return { terms: packed, gradA: grads[0], gradB: grads[1] };
        });
        const { terms, gradA, gradB } = outputs;
        // Asynchronous reads: tfjs-webgpu's dataSync needs OffscreenCanvas, which Node lacks.
        const [t, ga, gb] = await Promise.all([terms.data<'float32'>(), gradA.data<'float32'>(), gradB.data<'float32'>()]);
        await popScopes();
        return { loss: t[0], invariance: t[1], variance: t[2], covariance: t[3], gradA: ga, gradB: gb };
      } finally {
        if (outputs) tf.dispose([outputs.terms, outputs.gradA, outputs.gradB]);
        // Only with a throw already under way: close the scopes, keep the first error.
        if (scopesOpen) await popScopes().catch(() => undefined);
      }
    },
  };
}
