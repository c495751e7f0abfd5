// The tfjs reference of the bench: test/reference/tfjs.ts's loss (ordinary tfjs ops differentiated by
// tf.valueAndGrads) on @tensorflow/tfjs-backend-webgpu, with what a timed run on the GPU needs around
// it: the off-diagonal mask built once per shape, WebGPU error scopes, asynchronous reads, a tensor
// count for leaks. In Node it runs on Dawn (the `webgpu` package) through navigator.gpu: the same Dawn
// instance, hence the same adapter (lavapipe on a GPU-less machine), that the engine then picks up
// (src/runtime/device.ts prefers navigator.gpu).

import * as tf from '@tensorflow/tfjs';
import type { ReferenceOptions } from '../test/reference/float64.js';
import { offDiagonalMask, tfjsLossAndGradients, tfjsTensorCount, type TfjsResult, type TfjsTensors } from '../test/reference/tfjs.js';

export type { TfjsResult };

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

export async function createTfjsReference(options: Required<ReferenceOptions>): Promise<TfjsReference> {
  // The backend registers itself on import, and only where navigator.gpu exists: installNavigatorGpu() first.
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs: the webgpu backend did not initialize');
  await tf.ready();
  const info = (tf.backend() as unknown as { adapterInfo?: { vendor?: string; architecture?: string } }).adapterInfo;
  const adapterName = [info?.vendor, info?.architecture].filter((s) => s).join(' ') || 'unknown adapter';
  const device = (tf.backend() as unknown as { device: GPUDevice }).device;

  let mask: tf.Tensor2D | undefined;
  let maskSide = 0;

  return {
    adapterName,
    maxBindingBytes: device.limits.maxStorageBufferBindingSize,
    prepare(_n, d) {
      if (mask && maskSide === d) return;
      mask?.dispose();
      mask = offDiagonalMask(d);
      maskSide = d;
    },
    release() {
      mask?.dispose();
      mask = undefined;
      maskSide = 0;
    },
    liveTensors: tfjsTensorCount,
    async run(a, b, n, d) {
      if (!mask || maskSide !== d) throw new Error('tfjs reference: call prepare(n, d) first');
      // tfjs-webgpu does not check WebGPU errors: a binding over the device's limits, say, leaves Dawn
      // printing validation errors and tfjs returning garbage. Error scopes turn them into a throw.
      device.pushErrorScope('out-of-memory');
      device.pushErrorScope('validation');
      let outputs: TfjsTensors | undefined;
      let scopesOpen = true;
      const popScopes = async () => {
        scopesOpen = false;
        const validation = await device.popErrorScope();
        const outOfMemory = await device.popErrorScope();
        const error = validation ?? outOfMemory;
        if (error) throw new Error(`tfjs-webgpu hit a WebGPU error: ${error.message.split('\n')[0]}`);
      };
      try {
        outputs = tfjsLossAndGradients(a, b, [n, d], options, mask);
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
