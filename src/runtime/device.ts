// Device acquisition: a caller's GPUDevice, navigator.gpu in browsers, or Dawn (the `webgpu` package)
// in Node. Requests the adapter's largest storage-buffer limits, since the Gram matrices grow as d^2.
import { DeviceError } from '../errors.js';

export interface DeviceHandle {
  device: GPUDevice;
  /** The adapter in words (vendor, architecture, description), or 'caller-provided device'. */
  adapterName: string;
  /** True when the engine acquired the device and so destroys it. */
  owned: boolean;
  /**
   * Optional features the device has and kernels may use: `subgroupSize` is set when the device has
   * 'subgroups' and one fixed subgroup size (the adapter's min and max agree); `windowLanguage` when its
   * WGSL has the language features the 'windows' kernels require (WINDOW_LANGUAGE_FEATURES).
   */
  features: { subgroups: boolean; subgroupSize?: number; windowLanguage: boolean };
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

/** WGSL language features the 'windows' kernels use (read-only storage textures, uniform pointer parameters). */
export const WINDOW_LANGUAGE_FEATURES = ['readonly_and_readwrite_storage_textures', 'unrestricted_pointer_parameters'] as const;

function deviceFeatures(subgroups: boolean, info: GPUAdapterInfo | undefined, gpu: GPU | undefined): DeviceHandle['features'] {
  const min = (info as { subgroupMinSize?: number } | undefined)?.subgroupMinSize;
  const max = (info as { subgroupMaxSize?: number } | undefined)?.subgroupMaxSize;
  const language = gpu?.wgslLanguageFeatures;
  return {
    subgroups, subgroupSize: subgroups && min !== undefined && min === max ? min : undefined,
    windowLanguage: !!language && WINDOW_LANGUAGE_FEATURES.every((f) => language.has(f)),
  };
}

/** The GPU object a caller's device most likely came from (browsers, or Node with navigator.gpu set), to read its WGSL language features. */
const ambientGPU = (): GPU | undefined => (typeof navigator !== 'undefined' ? navigator.gpu : undefined) ?? undefined;

function describeInfo(info: GPUAdapterInfo): string {
  if (info?.description) return info.description;
  const parts = [info?.vendor, info?.architecture, info?.device].filter((s) => s && s.length > 0);
  return parts.length > 0 ? parts.join(' ') : 'unknown adapter';
}

/** A caller's device: never destroyed by the engine. */
export function deviceHandle(device: GPUDevice): DeviceHandle {
  const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  return {
    device, adapterName: info ? describeInfo(info) : 'caller-provided device', owned: false,
    features: deviceFeatures(device.features.has('subgroups'), info, ambientGPU()),
  };
}

/**
 * Whether a device compiles WGSL that requires the 'windows' language features: for a caller's device
 * where no GPU object tells (Node without navigator.gpu). The probe's error, if any, stays in its scope.
 */
async function probeWindowLanguage(device: GPUDevice): Promise<boolean> {
  const code = `${WINDOW_LANGUAGE_FEATURES.map((f) => `requires ${f};`).join('\n')}\n@compute @workgroup_size(1) fn main() {}`;
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ label: 'language probe', code });
  const info = await module.getCompilationInfo();
  const error = await device.popErrorScope();
  return !error && !info.messages.some((m) => m.type === 'error');
}

export async function acquireDevice(device?: GPUDevice): Promise<DeviceHandle> {
  if (device) {
    const handle = deviceHandle(device);
    if (!handle.features.windowLanguage) handle.features.windowLanguage = await probeWindowLanguage(device);
    return handle;
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
  return {
    device: acquired, adapterName: describeInfo(adapter.info), owned: true,
    features: deviceFeatures(subgroups, adapter.info, gpu), keepAlive: gpu,
  };
}
