// Where WebGPU comes from when there is no navigator.gpu: in Node, Dawn (dawn.node) from the optional
// peer dependency `webgpu`, loaded only when first needed so that a caller who brings a device, or a
// browser, never needs it. The browser build uses system-gpu.browser.ts instead (scripts/build.mjs).
import { DeviceError } from '../errors.js';

// One Dawn instance per process: each instance starts its own threads, and all devices can share one.
let instance: Promise<GPU> | undefined;

export function systemGPU(): Promise<GPU> {
  instance ??= (async () => {
    let webgpu: { create(flags: string[]): GPU };
    try {
      webgpu = (await import(/* @vite-ignore */ 'webgpu')) as unknown as { create(flags: string[]): GPU };
    } catch (error) {
      instance = undefined;
      throw new DeviceError("no WebGPU here: navigator.gpu is missing and the optional peer dependency 'webgpu' " +
        `(Dawn for Node.js) could not be loaded: npm install webgpu (${(error as Error).message})`);
    }
    return webgpu.create([]);
  })();
  return instance;
}
