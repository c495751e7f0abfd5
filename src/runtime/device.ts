// Device acquisition: a caller's GPUDevice, navigator.gpu in browsers, or Dawn (the `webgpu` package)
// in Node. Requests the adapter's largest storage-buffer limits, since the Gram matrices grow as d^2.
import { DeviceError } from '../errors.js';
import { systemGPU } from './system-gpu.js';

/** What a device offers the kernels, read from its adapter (traitsOf). */
export interface DeviceTraits {
  /** Optional features the device was created with ('subgroups', 'shader-f16', ...). */
  features: ReadonlySet<string>;
  /** The adapter's subgroup sizes, where it has 'subgroups' and says. */
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
  /** WGSL language features the device compiles (navigator.gpu.wgslLanguageFeatures, or probed). */
  language: ReadonlySet<string>;
}

export interface DeviceHandle {
  device: GPUDevice;
  /** The adapter in words (vendor, architecture, description), or 'caller-provided device'. */
  adapterName: string;
  /** True when the engine acquired the device and so destroys it. */
  owned: boolean;
  /** What the device offers the kernels: its optional features, subgroup sizes and WGSL language features. */
  traits: DeviceTraits;
  /**
   * Keeps Dawn's GPU object (from `webgpu`'s create()) reachable for as long as the device lives: if it
   * is garbage-collected, Dawn crashes later in its event processing.
   */
  keepAlive?: unknown;
}

const WANTED_LIMITS = ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupsPerDimension'] as const;

function traitsOf(features: ReadonlySet<string>, info: GPUAdapterInfo | undefined, gpu: GPU | undefined): DeviceTraits {
  const sizes = info as { subgroupMinSize?: number; subgroupMaxSize?: number } | undefined;
  return {
    features: new Set(features),
    ...(features.has('subgroups') && sizes?.subgroupMinSize !== undefined ? { subgroupMinSize: sizes.subgroupMinSize, subgroupMaxSize: sizes.subgroupMaxSize } : {}),
    language: new Set(gpu?.wgslLanguageFeatures ?? []),
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
    traits: traitsOf(device.features as ReadonlySet<string>, info, ambientGPU()),
  };
}

/**
 * Which of `features` (WGSL language features) a device compiles: for a caller's device where no GPU
 * object tells (Node without navigator.gpu). Each probe's error, if any, stays in its scope.
 */
async function probeLanguage(device: GPUDevice, features: readonly string[]): Promise<string[]> {
  const found: string[] = [];
  for (const feature of features) {
    device.pushErrorScope('validation');
    const module = device.createShaderModule({ label: 'language probe', code: `requires ${feature};\n@compute @workgroup_size(1) fn main() {}` });
    const info = await module.getCompilationInfo();
    const error = await device.popErrorScope();
    if (!error && !info.messages.some((m) => m.type === 'error')) found.push(feature);
  }
  return found;
}

/**
 * A device to run on: the caller's, or one acquired from navigator.gpu or Dawn. `language`: the WGSL
 * language features the kernels may require, probed on a caller's device where nothing else tells.
 */
export async function acquireDevice(device?: GPUDevice, language: readonly string[] = []): Promise<DeviceHandle> {
  if (device) {
    const handle = deviceHandle(device);
    const missing = language.filter((f) => !handle.traits.language.has(f));
    if (missing.length > 0) handle.traits = { ...handle.traits, language: new Set([...handle.traits.language, ...await probeLanguage(device, missing)]) };
    return handle;
  }
  const gpu: GPU = ambientGPU() ?? await systemGPU();
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new DeviceError("no WebGPU adapter found (on a machine without a GPU, a CPU Vulkan driver such as Mesa's lavapipe provides one)");
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
    traits: traitsOf(acquired.features as ReadonlySet<string>, adapter.info, gpu), keepAlive: gpu,
  };
}
