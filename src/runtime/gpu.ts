// The thin runtime: buffers, pipelines (cached per device), dispatch, readback, and WebGPU errors turned
// into typed errors. Plain types and free functions.
import { DeviceError, LimitError, ShapeError } from '../errors.js';
import { quietly } from './polling.js';
import { timedSetup } from './setup-time.js';

// GPUBufferUsage / GPUMapMode values from the WebGPU spec, so no global is needed in Node.
export const Usage = {
  MAP_READ: 0x0001,
  COPY_SRC: 0x0004,
  COPY_DST: 0x0008,
  UNIFORM: 0x0040,
  STORAGE: 0x0080,
  INDIRECT: 0x0100,
} as const;
const MAP_MODE_READ = 0x0001;

/** Live buffers (and textures) created through this module, for leak checks. */
export const bufferCounts = { live: 0, bytes: 0 };

export interface Buffer {
  gpu: GPUBuffer;
  bytes: number;
}

export function createBuffer(device: GPUDevice, label: string, bytes: number, usage: number): Buffer {
  // WebGPU sizes are multiples of 4; zero-sized bindings are invalid.
  const size = Math.max(16, Math.ceil(bytes / 16) * 16);
  const gpu = device.createBuffer({ label, size, usage });
  bufferCounts.live += 1;
  bufferCounts.bytes += size;
  return { gpu, bytes: size };
}

export function destroyBuffer(buffer: Buffer | undefined): void {
  if (!buffer) return;
  buffer.gpu.destroy();
  bufferCounts.live -= 1;
  bufferCounts.bytes -= buffer.bytes;
}

/** A texture the engine owns, counted in bufferCounts as buffers are. */
export interface Texture {
  gpu: GPUTexture;
  view: GPUTextureView;
  bytes: number;
}

/** A 2d-array rgba32float texture for storage binding (filled by a copy or a kernel, read by the next kernels). */
export function storageTexture(device: GPUDevice, label: string, [width, height, layers]: readonly [number, number, number]): Texture {
  // GPUTextureUsage: COPY_DST 0x02 (filled by copies; poisoning in tests), STORAGE_BINDING 0x08.
  const gpu = device.createTexture({ label, size: [width, height, layers], format: 'rgba32float', usage: 0x02 | 0x08 });
  const bytes = width * height * layers * 16;
  bufferCounts.live += 1;
  bufferCounts.bytes += bytes;
  return { gpu, view: gpu.createView({ dimension: '2d-array' }), bytes };
}

export function destroyTexture(texture: Texture | undefined): void {
  if (!texture) return;
  texture.gpu.destroy();
  bufferCounts.live -= 1;
  bufferCounts.bytes -= texture.bytes;
}

export function storageBuffer(device: GPUDevice, label: string, bytes: number): Buffer {
  return createBuffer(device, label, bytes, Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST);
}

export function uniformBuffer(device: GPUDevice, label: string, bytes: number): Buffer {
  return createBuffer(device, label, bytes, Usage.UNIFORM | Usage.COPY_DST);
}

export function readbackBuffer(device: GPUDevice, label: string, bytes: number): Buffer {
  return createBuffer(device, label, bytes, Usage.MAP_READ | Usage.COPY_DST);
}

export interface KernelSpec {
  /** WGSL source, one kernel per file. */
  code: string;
  /** A name for errors and labels. */
  name: string;
  /** Values for the WGSL `override` constants. */
  constants?: Record<string, number | boolean>;
}

const pipelineCache = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>();
/** The pipelines of pipelineCache once compiled, for pipelineSync. */
const compiledPipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

/**
 * A short id per shader source: the sources are a few module-level strings whose hash V8 keeps, so this
 * lookup is cheap, where a key that concatenated the whole source would be hashed anew on every call.
 */
const sourceIds = new Map<string, number>();

function cacheKey(spec: KernelSpec) {
  const constants = Object.fromEntries(Object.entries(spec.constants ?? {}).map(([k, v]) => [k, Number(v)]));
  let id = sourceIds.get(spec.code);
  if (id === undefined) sourceIds.set(spec.code, (id = sourceIds.size));
  return { constants, key: `${spec.name}|${JSON.stringify(constants)}|${id}` };
}

function compiledFor(device: GPUDevice): Map<string, GPUComputePipeline> {
  let compiled = compiledPipelines.get(device);
  if (!compiled) compiledPipelines.set(device, (compiled = new Map()));
  return compiled;
}

/** The compute pipeline for a kernel, compiled once per device, shader source and constants. */
export function pipeline(device: GPUDevice, spec: KernelSpec): Promise<GPUComputePipeline> {
  let perDevice = pipelineCache.get(device);
  if (!perDevice) pipelineCache.set(device, (perDevice = new Map()));
  const { constants, key } = cacheKey(spec);
  let cached = perDevice.get(key);
  if (!cached) {
    cached = timedSetup(device, 'pipelines', () => compile(device, spec, constants));
    perDevice.set(key, cached);
    cached.then((p) => compiledFor(device).set(key, p), () => perDevice!.delete(key));
  }
  return cached;
}

/**
 * The same pipeline, compiled synchronously on first use: for callers that cannot wait (a framework's
 * synchronous op). Compile errors then surface as WebGPU's uncaptured errors, not as a typed error.
 */
export function pipelineSync(device: GPUDevice, spec: KernelSpec): GPUComputePipeline {
  const compiled = compiledFor(device);
  const { constants, key } = cacheKey(spec);
  let p = compiled.get(key);
  if (!p) {
    const module = device.createShaderModule({ label: spec.name, code: spec.code });
    p = device.createComputePipeline({ label: spec.name, layout: 'auto', compute: { module, entryPoint: 'main', constants } });
    compiled.set(key, p);
  }
  return p;
}

async function compile(device: GPUDevice, spec: KernelSpec, constants: Record<string, number>): Promise<GPUComputePipeline> {
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ label: spec.name, code: spec.code });
  const error = await device.popErrorScope();
  if (error) throw new DeviceError(`kernel ${spec.name} failed to compile: ${error.message}`);
  try {
    return await device.createComputePipelineAsync({
      label: spec.name,
      layout: 'auto',
      compute: { module, entryPoint: 'main', constants },
    });
  } catch (e) {
    throw new DeviceError(`kernel ${spec.name} failed to build a pipeline: ${(e as Error).message}`);
  }
}

/** What a binding takes: a whole buffer, a range of one (a uniform window), or a texture view. */
export type Binding = GPUBuffer | GPUBufferBinding | GPUTextureView;

function resourceOf(binding: Binding): GPUBindingResource {
  if ('buffer' in binding) return binding;
  if (typeof (binding as GPUBuffer).getMappedRange === 'function') return { buffer: binding as GPUBuffer };
  return binding as GPUTextureView;
}

export interface Dispatch {
  pipeline: GPUComputePipeline;
  /** Bindings in the order of the kernel's @binding numbers (group 0). */
  bindings: Binding[];
  /** Workgroup counts, or where the device finds them (dispatchWorkgroupsIndirect: 3 u32 at offset). */
  workgroups: readonly [number, number?, number?] | { indirect: GPUBuffer; offset: number };
  label: string;
}

/** A buffer copied into a texture between dispatches: the other kind of step in a pass list. */
export interface TextureCopy {
  label: string;
  copy: {
    buffer: GPUBuffer; offset?: number; bytesPerRow: number; rowsPerImage: number;
    texture: GPUTexture; origin?: readonly [number, number, number]; size: readonly [number, number, number];
  };
}
export type Step = Dispatch | TextureCopy;

/** Records a step: a dispatch in its own compute pass, or a copy. */
export function encodeStep(device: GPUDevice, encoder: GPUCommandEncoder, step: Step): void {
  if (!('copy' in step)) return encodeDispatch(device, encoder, step);
  const { buffer, offset = 0, bytesPerRow, rowsPerImage, texture, origin = [0, 0, 0], size } = step.copy;
  encoder.copyBufferToTexture({ buffer, offset, bytesPerRow, rowsPerImage }, { texture, origin }, size);
}

/**
 * Bind groups, kept and keyed by what they bind: the engine re-encodes the same pass lists over the same
 * workspace buffers on every call, and making them anew each time is a visible share of a small step and,
 * with `windows`' dispatch per block of K, thousands of calls at a large one (`npm run bench -- --phases`
 * counts them: a repeated call makes none). They are held in WeakMaps nested by the pipeline and each
 * bound object in order (buffer or texture view), then by the bound ranges, so an entry lives only while
 * the pipeline and everything it binds are reachable: the cache keeps no buffer alive (a caller's per-step
 * buffers, dropped, go with their bind groups; a workspace destroyed and dropped likewise) and needs no
 * bound or invalidation. A hit is the bind group a fresh createBindGroup would make (over a destroyed
 * buffer too: the error, if any, comes at submit either way).
 */
interface BindGroupLevel { next?: WeakMap<object, BindGroupLevel>; groups?: Map<string, GPUBindGroup> }
const bindGroups: BindGroupLevel = {};

const boundObject = (binding: Binding): object => ('buffer' in binding ? binding.buffer : binding);
const boundRange = (binding: Binding): string => ('buffer' in binding ? `${binding.offset ?? 0}+${binding.size ?? '*'}` : '');

/** The level under `level` for `key`, made on first use. */
function below(level: BindGroupLevel, key: object): BindGroupLevel {
  const next = (level.next ??= new WeakMap());
  let found = next.get(key);
  if (!found) next.set(key, (found = {}));
  return found;
}

function bindGroupOf(device: GPUDevice, dispatch: Dispatch): GPUBindGroup {
  let level = below(bindGroups, dispatch.pipeline);
  for (const b of dispatch.bindings) level = below(level, boundObject(b));
  const groups = (level.groups ??= new Map());
  const ranges = dispatch.bindings.map(boundRange).join(',');
  let group = groups.get(ranges);
  if (!group) {
    group = device.createBindGroup({
      label: dispatch.label,
      layout: dispatch.pipeline.getBindGroupLayout(0),
      entries: dispatch.bindings.map((b, binding) => ({ binding, resource: resourceOf(b) })),
    });
    groups.set(ranges, group);
  }
  return group;
}

export function encodeDispatch(device: GPUDevice, encoder: GPUCommandEncoder, dispatch: Dispatch): void {
  const bindGroup = bindGroupOf(device, dispatch);
  const pass = encoder.beginComputePass({ label: dispatch.label });
  pass.setPipeline(dispatch.pipeline);
  pass.setBindGroup(0, bindGroup);
  const w = dispatch.workgroups;
  if ('indirect' in w) {
    pass.dispatchWorkgroupsIndirect(w.indirect, w.offset);
  } else {
    const [x, y = 1, z = 1] = w;
    pass.dispatchWorkgroups(x, y, z);
  }
  pass.end();
}

/**
 * Runs `work` inside validation and out-of-memory error scopes and turns what they catch into typed
 * errors. WebGPU reports these asynchronously; without the scopes they would only be logged.
 */
export async function withErrorScopes<T>(device: GPUDevice, what: string, work: () => T | Promise<T>): Promise<T> {
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  let result: T | undefined;
  let thrown: unknown;
  try {
    result = await work();
  } catch (e) {
    thrown = e;
  }
  const validation = await quietly(() => device.popErrorScope());
  const memory = await quietly(() => device.popErrorScope());
  if (thrown) throw thrown;
  if (memory) throw new LimitError(`${what}: the device ran out of memory (${memory.message})`);
  if (validation) throw new DeviceError(`${what}: WebGPU validation failed: ${validation.message}`);
  return result as T;
}

/** Touches one byte a page, so the OS maps them now. */
function withPages(buffer: ArrayBuffer): ArrayBuffer {
  const bytes = new Uint8Array(buffer);
  for (let i = 0; i < bytes.length; i += 4096) bytes[i] = 0;
  return buffer;
}

/**
 * Copies `source` (its first `bytes`) into `staging`, submits, and maps it back to the host: into `into`
 * where given (its first `bytes`; no allocation; the result is then `into`'s whole ArrayBuffer), else
 * into a new ArrayBuffer.
 */
export async function readback(device: GPUDevice, encoder: GPUCommandEncoder,
  copies: { source: GPUBuffer; staging: Buffer; bytes: number; into?: ArrayBufferView }[]): Promise<ArrayBuffer[]> {
  for (const c of copies) encoder.copyBufferToBuffer(c.source, 0, c.staging.gpu, 0, c.bytes);
  device.queue.submit([encoder.finish()]);
  // Keyed by the first staging buffer: the same readback of the same workspace waits about as long each call.
  const mapped = quietly(() => Promise.all(copies.map((c) => c.staging.gpu.mapAsync(MAP_MODE_READ, 0, c.bytes))), copies[0]?.staging.gpu);
  // New destinations are made while the device works: a fresh array's first write takes its pages from
  // the OS, which would otherwise follow the wait (`npm run bench -- --phases` reports the time from the
  // gradients' map to the return as "after map").
  let fresh: (ArrayBuffer | undefined)[];
  try {
    fresh = copies.map((c) => (c.into ? undefined : withPages(new ArrayBuffer(c.bytes))));
  } catch (error) {
    // Out of host memory: leave the staging buffers unmapped for the next call, then fail.
    await mapped.catch(() => undefined);
    for (const c of copies) if (c.staging.gpu.mapState === 'mapped') c.staging.gpu.unmap();
    throw error;
  }
  await mapped;
  // Every staging buffer is unmapped whatever happens, so the next call can map it again.
  let failure: unknown;
  const taken = copies.map((c, i) => {
    try {
      const range = c.staging.gpu.getMappedRange(0, c.bytes);
      if (!c.into) {
        new Uint8Array(fresh[i]!).set(new Uint8Array(range));
        return fresh[i]!;
      }
      if (c.into.byteLength < c.bytes) {
        throw new ShapeError(`the destination array no longer holds ${c.bytes} bytes (detached or resized during the call)`);
      }
      new Uint8Array(c.into.buffer, c.into.byteOffset, c.bytes).set(new Uint8Array(range));
      return c.into.buffer as ArrayBuffer;
    } catch (error) {
      failure ??= error;
      return new ArrayBuffer(0);
    } finally {
      c.staging.gpu.unmap();
    }
  });
  if (failure) throw failure;
  return taken;
}
