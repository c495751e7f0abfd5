// Device acquisition: a caller's GPUDevice, navigator.gpu in browsers, or Dawn (the `webgpu` package)
// in Node. Requests the adapter's largest storage-buffer limits, since the Gram matrices grow as d^2.
import { DeviceError } from '../errors.js';

export interface DeviceHandle {
  device: GPUDevice;
  /** The adapter in words (vendor, architecture, description), or 'caller-provided device'. */
  adapterName: string;
  /** True when the engine acquired the device and so destroys it. */
  owned: boolean;
  /** Optional features the device has and kernels may use. */
  features: { subgroups: boolean };
  /**
   * Keeps Dawn's GPU object (from `webgpu`'s create()) reachable for as long as the device lives: if it
   * is garbage-collected, Dawn crashes later in its event processing.
   */
  keepAlive?: unknown;
}

const WANTED_LIMITS = ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupsPerDimension'] as const;

// One Dawn instance per process: each instance starts its own threads, and all devices can share one.
let nodeGpu: Promise<GPU> | undefined;

async function nodeGPU(): Promise<GPU> {
  nodeGpu ??= (async () => {
    let webgpu: { create(flags: string[]): GPU };
    try {
      webgpu = (await import(/* @vite-ignore */ 'webgpu')) as unknown as { create(flags: string[]): GPU };
    } catch (error) {
      throw new DeviceError(`no WebGPU here: navigator.gpu is missing and the 'webgpu' package could not be loaded (${(error as Error).message})`);
    }
    return webgpu.create([]);
  })();
  return nodeGpu;
}

function describeAdapter(adapter: GPUAdapter): string {
  const info = adapter.info;
  const parts = [info?.vendor, info?.architecture, info?.device, info?.description].filter((s) => s && s.length > 0);
  return parts.length > 0 ? [...new Set(parts)].join(' ') : 'unknown adapter';
}

export async function acquireDevice(device?: GPUDevice): Promise<DeviceHandle> {
  if (device) {
    return { device, adapterName: 'caller-provided device', owned: false, features: { subgroups: device.features.has('subgroups') } };
  }
  const gpu: GPU = typeof navigator !== 'undefined' && navigator.gpu ? navigator.gpu : await nodeGPU();
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new DeviceError('no WebGPU adapter found (on a machine without a GPU, install Mesa >= 23 lavapipe: scripts/setup.sh)');
  const requiredLimits: Record<string, number> = {};
  for (const name of WANTED_LIMITS) requiredLimits[name] = adapter.limits[name];
  const requiredFeatures: GPUFeatureName[] = [];
  const subgroups = adapter.features.has('subgroups');
  if (subgroups) requiredFeatures.push('subgroups');
  let acquired: GPUDevice;
  try {
    acquired = await adapter.requestDevice({ requiredLimits, requiredFeatures, label: 'vicreg-wgsl' });
  } catch (error) {
    throw new DeviceError(`the adapter refused a device: ${(error as Error).message}`);
  }
  return { device: acquired, adapterName: describeAdapter(adapter), owned: true, features: { subgroups }, keepAlive: gpu };
}
