// float16 in the engine: the element type of the caller's views and gradients, their checks, the
// workspace's float16 buffers, and the conversion steps around the float32 passes (src/variants/half.ts):
// forward widens the views into the workspace's float32 copies, backward rounds the float32 gradients
// into float16 ones and raises the overflow flag where one is Inf or NaN.
import { OptionError, ShapeError } from '../errors.js';
import { createBuffer, destroyBuffer, readbackBuffer, storageBuffer, uniformBuffer, Usage, type Buffer, type Step } from '../runtime/gpu.js';
import { floatToHalf, halfBytes, halfDims, HALF_DIMS_BYTES, halfToFloat } from '../variants/half.js';
import type { Dtype, Float16ArrayLike, HostView } from '../types.js';

export const DTYPES: readonly Dtype[] = ['float32', 'float16'];

/** An option naming an element type: undefined where not given, an OptionError where not one. */
export function validateDtype(option: string, value: unknown): Dtype | undefined {
  if (value === undefined) return undefined;
  if (!(DTYPES as readonly unknown[]).includes(value)) throw new OptionError(`${option} must be 'float32' or 'float16', got ${JSON.stringify(value)}`);
  return value as Dtype;
}

export const isFloat16Array = (x: unknown): x is Float16ArrayLike => ArrayBuffer.isView(x) && x.constructor?.name === 'Float16Array';

/** A host view's element type, from its array type; undefined for anything else. */
export function hostDtype(x: unknown): Dtype | undefined {
  if (x instanceof Float32Array) return 'float32';
  if (x instanceof Uint16Array || isFloat16Array(x)) return 'float16';
  return undefined;
}

/** The binary16 bits of a float16 host array. */
export const halfBits = (x: Uint16Array | Float16ArrayLike): Uint16Array =>
  x instanceof Uint16Array ? x : new Uint16Array(x.buffer, x.byteOffset, x.length);

/** The bytes a GPUBuffer of `count` elements of `dtype` needs. */
export const bufferBytes = (dtype: Dtype, count: number) => (dtype === 'float16' ? halfBytes(count) : 4 * count);

/**
 * The views' element type: options.dtype where given, else what host arrays say, else float32; host
 * arrays that say otherwise are a ShapeError.
 */
export function viewsDtype(requested: unknown, views: readonly unknown[]): Dtype {
  const option = validateDtype('options.dtype', requested);
  const said = views.map(hostDtype);
  const dtype = option ?? said.find((t) => t !== undefined) ?? 'float32';
  views.forEach((x, v) => {
    if (said[v] !== undefined && said[v] !== dtype) {
      throw new ShapeError(`${'AB'[v]} is a ${(x as object).constructor.name} (${said[v]}) but the views are ${dtype}${option ? ' (options.dtype)' : ` (as ${'AB'[1 - v]} is)`}`);
    }
  });
  return dtype;
}

/** A workspace's float16 buffers, made on its first float16 call. */
export interface HalfBuffers {
  /** Device copies of float16 host views. */
  uploads: [Buffer, Buffer];
  /** HalfDims: the elements of one view. */
  dims: Buffer;
  /** float16 gradients the engine owns, their readback, and the overflow flag. */
  grads: [Buffer, Buffer];
  gradStaging: [Buffer, Buffer];
  overflow: Buffer;
  overflowStaging: Buffer;
}

export function halfBuffers(device: GPUDevice, n: number, d: number): HalfBuffers {
  const bytes = halfBytes(n * d);
  const dims = uniformBuffer(device, 'float16 dims', HALF_DIMS_BYTES);
  device.queue.writeBuffer(dims.gpu, 0, halfDims(n * d));
  return {
    uploads: [storageBuffer(device, 'A (float16)', bytes), storageBuffer(device, 'B (float16)', bytes)],
    dims,
    grads: [storageBuffer(device, 'grad A (float16)', bytes), storageBuffer(device, 'grad B (float16)', bytes)],
    gradStaging: [readbackBuffer(device, 'grad A (float16) readback', bytes), readbackBuffer(device, 'grad B (float16) readback', bytes)],
    overflow: createBuffer(device, 'float16 overflow flag', 4, Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST),
    overflowStaging: readbackBuffer(device, 'float16 overflow readback', 4),
  };
}

export function destroyHalfBuffers(h: HalfBuffers): void {
  for (const b of [...h.uploads, h.dims, ...h.grads, ...h.gradStaging, h.overflow, h.overflowStaging]) destroyBuffer(b);
}

/** Writes a float16 host view into its device copy; an odd count gets the padding of a whole last word. */
export function uploadHalf(device: GPUDevice, target: GPUBuffer, x: Uint16Array | Float16ArrayLike): void {
  const bits = halfBits(x);
  const words = bits.length % 2 === 0 ? bits : Uint16Array.from({ length: bits.length + 1 }, (_, i) => bits[i] ?? 0);
  device.queue.writeBuffer(target, 0, words as Uint16Array<ArrayBuffer>);
}

/** Widens both views from float16 into float32 buffers. */
export function widenSteps(pipeline: GPUComputePipeline, dims: GPUBuffer, count: number, sources: readonly GPUBuffer[], targets: readonly GPUBuffer[]): Step[] {
  return [0, 1].map((v) => ({
    label: `${'AB'[v]} float16 -> float32`, pipeline, workgroups: halfToFloat.workgroups(count), bindings: [sources[v], targets[v], dims],
  }));
}

/** Rounds both views' float32 gradients into float16 ones (written or added), ORing the overflow flag. */
export function narrowSteps(pipeline: GPUComputePipeline, dims: GPUBuffer, count: number, grads: readonly GPUBuffer[], targets: readonly GPUBuffer[], overflow: GPUBuffer): Step[] {
  return [0, 1].map((v) => ({
    label: `grad ${'AB'[v]} float32 -> float16`, pipeline, workgroups: floatToHalf.workgroups(count), bindings: [grads[v], targets[v], overflow, dims],
  }));
}

/** A float16 gradient read back as the caller's kind of array: a Float16Array where the views were one, else binary16 bits. */
export function halfArray(bytes: ArrayBuffer, count: number, like: HostView | undefined): Uint16Array | Float16ArrayLike {
  const bits = new Uint16Array(bytes, 0, count);
  if (like && isFloat16Array(like)) return new (like.constructor as new (buffer: ArrayBuffer, offset: number, length: number) => Float16ArrayLike)(bytes, 0, count);
  return bits;
}
