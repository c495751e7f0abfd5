// Checks of what callers pass in, and of what the device hands back: shapes, views, buffers, the
// non-finite flags and the loss terms. Each failure is a typed error with a one-line message.
import { BufferError, NonFiniteError, OptionError, OverflowError, ShapeError } from '../errors.js';
import { Usage, type Buffer, type Texture } from '../runtime/gpu.js';
import type { BackwardOptions, Dtype, HostView, VICRegTerms } from '../types.js';
import { bufferBytes, hostDtype } from './half.js';

export const VIEWS = ['A', 'B'] as const;
const BOTH = [0, 1] as const;

export function validateShape(shape: unknown): [number, number] {
  if (!Array.isArray(shape) || shape.length !== 2) {
    throw new ShapeError(`shape must be [n, d] (2-D), got ${describe(shape)}`);
  }
  const [n, d] = shape as unknown[];
  for (const [name, v] of [['n', n], ['d', d]] as const) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
      throw new ShapeError(`${name} must be a positive integer, got ${describe(v)}`);
    }
  }
  if ((n as number) < 2) throw new ShapeError(`n = ${n}: the unbiased variance needs at least 2 rows`);
  return [n as number, d as number];
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(describe).join(', ')}]`;
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

export const isGPUBuffer = (x: unknown): x is GPUBuffer =>
  typeof x === 'object' && x !== null && typeof (x as GPUBuffer).usage === 'number' && typeof (x as GPUBuffer).size === 'number'
  && typeof (x as GPUBuffer).destroy === 'function' && !ArrayBuffer.isView(x);

/** The bytes n*d elements of `dtype` take in a GPUBuffer, in words (float16: two per 4 bytes, rounded up). */
const neededBytes = (dtype: Dtype, n: number, d: number) => (dtype === 'float16' ? `ceil(n*d/2)*4 = ${bufferBytes(dtype, n * d)}` : `n*d*4 = ${n * d * 4}`);

export function validateView(name: 'A' | 'B', x: unknown, n: number, d: number, dtype: Dtype = 'float32'): HostView | GPUBuffer {
  if (isGPUBuffer(x)) {
    if (x.size < bufferBytes(dtype, n * d)) {
      throw new BufferError(`${name} is a GPUBuffer of ${x.size} bytes; shape [${n}, ${d}] ${dtype} needs ${neededBytes(dtype, n, d)}`);
    }
    if (!(x.usage & Usage.STORAGE)) throw new BufferError(`${name} is a GPUBuffer without STORAGE usage; the kernels bind it as storage`);
    return x;
  }
  if (hostDtype(x) === undefined) {
    throw new ShapeError(`${name} must be a Float32Array, a Uint16Array of float16 bits, a Float16Array or a GPUBuffer, got ${x === null ? 'null' : (x as object)?.constructor?.name ?? typeof x}`);
  }
  const view = x as HostView;
  if (view.length !== n * d) {
    throw new ShapeError(`${name} has ${view.length} elements; shape [${n}, ${d}] needs n*d = ${n * d}`);
  }
  return view;
}

/** The first non-finite element (in row-major order, view A first) from column_stats' flags. */
export function firstNonFinite(flags: Uint32Array, d: number): NonFiniteError {
  for (const v of BOTH) {
    let best = -1;
    for (let j = 0; j < d; j++) {
      const row = flags[v * d + j];
      if (row !== 0 && (best < 0 || row < flags[v * d + best])) best = j;
    }
    if (best >= 0) {
      const value = new Float32Array(new Uint32Array([flags[(2 + v) * d + best]]).buffer)[0];
      return new NonFiniteError(VIEWS[v], flags[v * d + best] - 1, best, value);
    }
  }
  return new NonFiniteError('A', -1, -1, NaN);
}


/** The four terms from loss_terms' result, or the overflow error when one is not finite. */
export function termsOf(r: Float32Array): VICRegTerms {
  const terms: VICRegTerms = { loss: r[0], invariance: r[1], variance: r[2], covariance: r[3] };
  for (const [name, value] of Object.entries(terms)) {
    if (!Number.isFinite(value)) {
      throw new OverflowError(`the ${name} term overflowed float32 (${value}) although every input is finite: the features' spread is too large (keep their standard deviations below 1.5e9/sqrt(d); see README, "Guarantees")`);
    }
  }
  return terms;
}

export function validateGradBuffer(name: string, x: unknown, n: number, d: number, dtype: Dtype = 'float32'): GPUBuffer {
  if (!isGPUBuffer(x)) throw new BufferError(`${name} must be a GPUBuffer`);
  if (x.size < bufferBytes(dtype, n * d)) throw new BufferError(`${name} is a GPUBuffer of ${x.size} bytes; shape [${n}, ${d}] ${dtype} needs ${neededBytes(dtype, n, d)}`);
  if (!(x.usage & Usage.STORAGE)) throw new BufferError(`${name} is a GPUBuffer without STORAGE usage; the kernels write it as storage`);
  return x;
}

/** backward()'s `out` arrays, checked against the forward's shape: n*d elements of the gradients' type each, not overlapping. */
export function validateOut(out: unknown, n: number, d: number, dtype: Dtype = 'float32'): [HostView, HostView] {
  const kind = dtype === 'float16' ? 'Uint16Arrays or Float16Arrays' : 'Float32Arrays';
  if (typeof out !== 'object' || out === null) throw new OptionError(`out must be { gradA, gradB } (two ${kind}), got ${describe(out)}`);
  const { gradA, gradB } = out as NonNullable<BackwardOptions['out']>;
  for (const [name, x] of [['gradA', gradA], ['gradB', gradB]] as const) {
    if (hostDtype(x) !== dtype) {
      throw new ShapeError(`out.${name} must be ${dtype === 'float16' ? 'a Uint16Array or Float16Array' : 'a Float32Array'} (${dtype} gradients), got ${x === null ? 'null' : (x as object)?.constructor?.name ?? typeof x}`);
    }
    if (x.length !== n * d) throw new ShapeError(`out.${name} has ${x.length} elements; the forward's shape [${n}, ${d}] needs n*d = ${n * d}`);
  }
  if (gradA.buffer === gradB.buffer && gradA.byteOffset < gradB.byteOffset + gradB.byteLength && gradB.byteOffset < gradA.byteOffset + gradA.byteLength) {
    throw new OptionError('out.gradA and out.gradB overlap (views of one ArrayBuffer sharing bytes): each gradient needs its own n*d floats');
  }
  return [gradA, gradB];
}

/** Fills buffers with NaN bits (all ones): for tests, so that an unwritten element cannot pass. */
export function poison(device: GPUDevice, buffers: (Buffer | undefined)[]): void {
  for (const b of buffers) if (b) device.queue.writeBuffer(b.gpu, 0, new Uint32Array(b.bytes / 4).fill(0xffffffff));
}

/** Fills a texture with NaN bits, as poison() does buffers. */
export function poisonTexture(device: GPUDevice, texture: Texture): void {
  const [width, height, layers] = [texture.gpu.width, texture.gpu.height, texture.gpu.depthOrArrayLayers];
  device.queue.writeTexture({ texture: texture.gpu }, new Uint32Array(width * height * layers * 4).fill(0xffffffff),
    { bytesPerRow: width * 16, rowsPerImage: height }, [width, height, layers]);
}
