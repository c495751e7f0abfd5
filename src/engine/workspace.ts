// A shape's device buffers, reused across the calls of that shape: the device copies of host inputs,
// the column statistics, the loss terms and their readbacks, per form the Gram partials and matrices,
// the gradients, and each variant's own scratch. A workspace is replaced when the shape changes; while
// encode() calls recorded on it are pending it is retired instead, and destroyed after the last of them.
import { createBuffer, destroyBuffer, readbackBuffer, storageBuffer, uniformBuffer, Usage, type Buffer } from '../runtime/gpu.js';
import type { FormKernels, GramProgram, MatrixLayout, VariantScratch } from '../variants/program.js';
import { kernelsOf, runnable } from '../variants/registry.js';
import { backwardParams, gramDims, statsLayout, UNIFORM_BYTES } from '../variants/shared.js';
import type { Form, Variant } from '../types.js';
import { VIEWS } from './checks.js';
import { varianceScale } from '../coefficients.js';
import { checkBinding, situation, type Engine } from './state.js';
import { destroyHalfBuffers, halfBuffers, type HalfBuffers } from './half.js';

/** 8 floats: loss, its three terms, the non-finite flag, the two views' off-diagonal shares, unused. */
export const RESULT_FLOATS = 8;
export const BOTH = [0, 1] as const;

/** One form's buffers: the Gram partials and uniforms, loss_terms' parameters per Gram kernel, the matrices kept for backward per layout. */
export interface FormBuffers {
  /** Partials per view, sized for the variant with the most. */
  partialsPerView: number;
  partials: Buffer;
  gramDims: [Buffer, Buffer];
  termParams: Map<string, Buffer>;
  matrices: Map<string, Buffer>;
}

export interface Workspace {
  n: number;
  d: number;
  /** Copies of host inputs (GPUBuffer inputs are bound directly). */
  inputs: [Buffer, Buffer];
  stats: Buffer;
  flags: Buffer;
  flagsStaging: Buffer;
  result: Buffer;
  resultStaging: Buffer;
  statsDims: Buffer;
  /** Bound in place of a matrix by a forward that keeps none. */
  placeholder: Buffer;
  /** The gradient kernels' parameters per view (they depend on n, d and the coefficients only). */
  backwardParams: [Buffer, Buffer];
  forms: Partial<Record<Form, FormBuffers>>;
  /** Each variant's scratch, by `${variant}|${form}`. */
  scratch: Map<string, VariantScratch>;
  /** Allocated on the first backward(). */
  backward?: { grads: [Buffer, Buffer]; staging: [Buffer, Buffer]; upstream: Buffer };
  /** Allocated on the first float16 call. */
  half?: HalfBuffers;
  /** encode() calls recorded on this workspace and not yet read or released (their work may still be unsubmitted). */
  encodesPending: number;
  /** Replaced (a new shape) while encodes were pending: destroyed when the last of them is done. */
  retired: boolean;
}

/** The engine's workspace for n x d, made (replacing another shape's) on first need. */
export function workspaceFor(e: Engine, device: GPUDevice, n: number, d: number, hostInputs: boolean): Workspace {
  if (!(e.workspace && e.workspace.n === n && e.workspace.d === d)) {
    freeWorkspace(e);
    checkBinding(e, `a ${n} x ${d} float32 view`, n * d * 4);
    const layout = statsLayout(d);
    const ws: Workspace = {
      n, d,
      inputs: [storageBuffer(device, 'A', 0), storageBuffer(device, 'B', 0)],
      stats: storageBuffer(device, 'column stats', layout.floats * 4),
      flags: storageBuffer(device, 'column flags', 4 * d * 4),
      flagsStaging: readbackBuffer(device, 'column flags readback', 4 * d * 4),
      result: storageBuffer(device, 'loss terms', RESULT_FLOATS * 4),
      resultStaging: readbackBuffer(device, 'loss terms readback', RESULT_FLOATS * 4),
      statsDims: uniformBuffer(device, 'column stats dims', UNIFORM_BYTES.dims),
      placeholder: storageBuffer(device, 'no matrix', 16),
      backwardParams: [uniformBuffer(device, 'backward params A', UNIFORM_BYTES.backwardParams), uniformBuffer(device, 'backward params B', UNIFORM_BYTES.backwardParams)],
      forms: {},
      scratch: new Map(),
      encodesPending: 0,
      retired: false,
    };
    device.queue.writeBuffer(ws.statsDims.gpu, 0, new Uint32Array([n, d]));
    for (const v of BOTH) device.queue.writeBuffer(ws.backwardParams[v].gpu, 0, backwardParams(e.coefficients, n, d, n, v));
    e.workspace = ws;
  }
  const ws = e.workspace;
  // Host inputs need device copies; GPUBuffer inputs do not, so these are made on first need.
  if (hostInputs && ws.inputs[0].bytes < n * d * 4) {
    for (const v of BOTH) {
      destroyBuffer(ws.inputs[v]);
      ws.inputs[v] = storageBuffer(device, VIEWS[v], n * d * 4);
    }
  }
  return ws;
}

/**
 * Drops the engine's workspace. Its buffers are destroyed now, or, while encode() calls recorded on it
 * are pending (a caller's encoder may not be submitted yet), when the last of them is read or released.
 */
export function freeWorkspace(e: Engine): void {
  const ws = e.workspace;
  e.workspace = undefined;
  if (!ws) return;
  if (ws.encodesPending > 0) ws.retired = true;
  else destroyWorkspace(ws);
}

export function destroyWorkspace(ws: Workspace): void {
  for (const b of [...ws.inputs, ws.stats, ws.flags, ws.flagsStaging, ws.result, ws.resultStaging, ws.statsDims, ws.placeholder, ...ws.backwardParams]) destroyBuffer(b);
  for (const f of Object.values(ws.forms)) {
    for (const b of [f.partials, ...f.gramDims, ...f.termParams.values(), ...f.matrices.values()]) destroyBuffer(b);
  }
  if (ws.backward) for (const b of [...ws.backward.grads, ...ws.backward.staging, ws.backward.upstream]) destroyBuffer(b);
  if (ws.half) destroyHalfBuffers(ws.half);
  for (const s of ws.scratch.values()) s.destroy();
}

/** The workspace's float16 buffers, made on its first float16 call. */
export function halfBuffersFor(device: GPUDevice, ws: Workspace): HalfBuffers {
  ws.half ??= halfBuffers(device, ws.n, ws.d);
  return ws.half;
}

/** A form's buffers (made on first need): partials sized for whichever variant that runs here writes the most. */
export function formBuffers(e: Engine, device: GPUDevice, ws: Workspace, form: Form): FormBuffers {
  let f = ws.forms[form];
  if (!f) {
    const { n, d } = ws;
    const partialsPerView = Math.max(1, ...runnable(situation(e, n, d, form)).map((v) => kernelsOf(v, form).gram.partials(n, d, e.handle.traits)));
    f = {
      partialsPerView,
      partials: storageBuffer(device, `${form} gram partials`, 2 * partialsPerView * 4),
      gramDims: [uniformBuffer(device, `${form} gram dims A`, UNIFORM_BYTES.gramDims), uniformBuffer(device, `${form} gram dims B`, UNIFORM_BYTES.gramDims)],
      termParams: new Map(),
      matrices: new Map(),
    };
    ws.forms[form] = f;
    for (const v of BOTH) device.queue.writeBuffer(f.gramDims[v].gpu, 0, gramDims(form, n, d, v, v * partialsPerView));
  }
  return f;
}

/** The form's matrix buffer in a layout (both views), made on first need within the binding limit. */
export function matrixFor(e: Engine, device: GPUDevice, ws: Workspace, form: Form, layout: MatrixLayout): Buffer {
  const f = formBuffers(e, device, ws, form);
  let matrix = f.matrices.get(layout.name);
  if (!matrix) {
    const side = form === 'dual' ? ws.n : ws.d;
    const bytes = layout.floats(form, ws.n, ws.d) * 4;
    checkBinding(e, `the two ${side} x ${side} ${form === 'dual' ? 'Gram' : 'covariance'} matrices kept for backward (${layout.name})`, bytes);
    matrix = createBuffer(device, `${form} matrices (both views, ${layout.name})`, bytes,
      Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST | (layout.uniform ? Usage.UNIFORM : 0));
    f.matrices.set(layout.name, matrix);
  }
  return matrix;
}

/** A variant's scratch for the workspace's shape and both views (made on first need), where its kernels need any. */
export function scratchFor(e: Engine, device: GPUDevice, ws: Workspace, variant: Variant, form: Form, kernels: FormKernels): VariantScratch | undefined {
  if (!kernels.scratch) return undefined;
  const key = `${variant}|${form}`;
  let scratch = ws.scratch.get(key);
  if (!scratch) {
    scratch = kernels.scratch({
      device, n: ws.n, d: ws.d, rows: ws.n, coefficients: e.coefficients, traits: e.handle.traits, views: BOTH,
      partialsPerView: formBuffers(e, device, ws, form).partialsPerView, checkBinding: (what, bytes) => checkBinding(e, what, bytes),
    });
    ws.scratch.set(key, scratch);
  }
  return scratch;
}

/** loss_terms' parameters for a form and Gram program (its partial count; the dual form subtracts the diagonal). */
export function termParams(e: Engine, device: GPUDevice, ws: Workspace, form: Form, gram: GramProgram): Buffer {
  const f = formBuffers(e, device, ws, form);
  let buffer = f.termParams.get(gram.kernel);
  if (!buffer) {
    buffer = uniformBuffer(device, `${form} ${gram.kernel} loss term params`, UNIFORM_BYTES.termParams);
    const c = e.coefficients;
    const term = new ArrayBuffer(UNIFORM_BYTES.termParams);
    // Both views' partials sit partialsPerView apart; a program that writes fewer leaves the rest
    // unread: loss_terms reads partialCount from each view's start.
    new Uint32Array(term, 0, 8).set([ws.n, ws.d, gram.partials(ws.n, ws.d, e.handle.traits), form === 'dual' ? 1 : 0, f.partialsPerView, 0, 0, 0]);
    new Float32Array(term, 32, 8).set([c.lambda, c.mu, c.nu, c.gamma, c.eps, varianceScale(c.preset), 0, 0]);
    device.queue.writeBuffer(buffer.gpu, 0, term);
    f.termParams.set(gram.kernel, buffer);
  }
  return buffer;
}

/** The gradients, their readback staging and the upstream scale, made on the first backward(). */
export function backwardBuffers(device: GPUDevice, ws: Workspace, onDevice: boolean): NonNullable<Workspace['backward']> {
  const { n, d } = ws;
  ws.backward ??= {
    grads: [storageBuffer(device, 'grad A', n * d * 4), storageBuffer(device, 'grad B', n * d * 4)],
    staging: [readbackBuffer(device, 'grad A readback', onDevice ? 0 : n * d * 4), readbackBuffer(device, 'grad B readback', onDevice ? 0 : n * d * 4)],
    upstream: storageBuffer(device, 'upstream gradient', 4),
  };
  return ws.backward;
}
