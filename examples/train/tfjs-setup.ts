// tfjs's webgpu backend in Node: Dawn's WebGPU as navigator.gpu, installed before tfjs-backend-webgpu
// loads (it registers itself only where navigator.gpu exists) and before the engine takes a device, so
// that both run on one Dawn instance.
import * as tf from '@tensorflow/tfjs';

let gpu: GPU | undefined;   // kept reachable: Dawn crashes later if its instance is collected

/** Sets tfjs's backend to webgpu. */
export async function installTfjsWebgpu(): Promise<void> {
  if (!(globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu) {
    const { create, globals } = await import('webgpu');
    Object.assign(globalThis, globals);
    gpu = create([]);
    // Node 21+ has a read-only global navigator; Node 20 has none. defineProperty covers both.
    Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  }
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error("tfjs: the 'webgpu' backend did not initialize");
  await tf.ready();
}
