// backward(): both gradients of the last forward's loss, one gradient pass per view (passes.ts) on the
// matrix that forward kept; past the binding limit (primal d x d), Coff formed one column block at a time.
import { DeviceError, LimitError, MiB, OptionError, StateError } from '../errors.js';
import { destroyBuffer, encodeStep, pipeline, readback, readbackBuffer, storageBuffer, uniformBuffer, withErrorScopes, type Buffer } from '../runtime/gpu.js';
import { kernelsOf } from '../variants/registry.js';
import { backwardParams, columnBlockGram, columnBlockWidth, gramDims, UNIFORM_BYTES } from '../variants/shared.js';
import type { BackwardOptions, HostView, VICRegGradients } from '../types.js';
import { floatToHalf, halfBytes } from '../variants/half.js';
import { halfArray, halfBits, narrowSteps, validateDtype } from './half.js';
import { poison, poisonTexture, validateOut, VIEWS } from './checks.js';
import { backwardVariant, pipelinesOf } from './forward.js';
import { ensureDevice } from './lifecycle.js';
import { backwardSteps, blockedBackwardSteps, type ColumnBlock, type GradientPlan, type PassScope } from './passes.js';
import { bindingLimit, limitName, type Engine } from './state.js';
import { backwardBuffers, BOTH, halfBuffersFor, matrixFor, scratchFor, type Workspace } from './workspace.js';

/**
 * The column blocks of Coff for a blocked backward, each with its uniforms per view, and the block
 * matrix they share (a block's dispatches each bind their own uniforms: queued writes all land before
 * the encoder's work runs). Returns them with the buffers to destroy once the work is submitted.
 */
export function columnBlocks(e: Engine, device: GPUDevice, ws: Workspace): { blocks: ColumnBlock[]; matrix: Buffer; temporary: Buffer[] } {
  const { n, d } = ws;
  const width = columnBlockWidth(d, bindingLimit(e));
  if (width === 0) throw new LimitError(`one column block of the ${d} x ${d} covariance needs ${MiB(d * 64 * 4)}, over ${limitName(e)} of ${MiB(bindingLimit(e))}`);
  const matrix = storageBuffer(device, 'Coff column block', d * width * 4);
  const temporary = [matrix];
  const blocks: ColumnBlock[] = [];
  for (let start = 0; start < d; start += width) {
    const blockWidth = Math.min(width, d - start);
    const uniforms = BOTH.map((v) => {
      const dims = uniformBuffer(device, 'block gram dims', UNIFORM_BYTES.gramDims);
      const params = uniformBuffer(device, 'block backward params', UNIFORM_BYTES.backwardParams);
      temporary.push(dims, params);
      device.queue.writeBuffer(dims.gpu, 0, gramDims('primal', n, d, v, 0, { start, width: blockWidth }));
      device.queue.writeBuffer(params.gpu, 0, backwardParams(e.coefficients, n, d, n, v, { start, width: blockWidth }));
      return { dims: dims.gpu, params: params.gpu };
    });
    blocks.push({ start, width: blockWidth, dims: uniforms.map((u) => u.dims), params: uniforms.map((u) => u.params) });
  }
  return { blocks, matrix, temporary };
}

export async function backward(e: Engine, scale = 1, options?: BackwardOptions): Promise<VICRegGradients<HostView | GPUBuffer>> {
  const device = await ensureDevice(e);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new OptionError(`backward scale must be a finite number, got ${String(scale)}`);
  if (!e.saved && e.lostForward) throw new DeviceError('the device was lost after the forward that this backward pairs with; call forward() again');
  if (!e.saved) throw new StateError('backward() needs a successful forward() first');
  if (!e.saved.grad) throw new StateError('the last forward() was called with { grad: false }; call forward() again to get gradients');
  const { n, d, form, views, onDevice, blocked, variant: gramVariantUsed } = e.saved;
  const dtype = validateDtype('options.dtype', options?.dtype) ?? e.saved.dtype;
  let out: [HostView, HostView] | undefined;
  if (options?.out !== undefined) {
    if (onDevice) throw new OptionError('backward(scale, { out }) is for a forward on host arrays; after a forward on GPUBuffers the gradients stay on the device (use encode() to write them into your buffers)');
    out = validateOut(options.out, n, d, dtype);
  }
  const ws = e.workspace!;
  return withErrorScopes(device, 'backward', async () => {
    const bw = backwardBuffers(device, ws, onDevice);
    const variant = await backwardVariant(e, device, ws, form, views, gramVariantUsed, blocked);
    const kernels = kernelsOf(variant, form);
    const pipelines = await pipelinesOf(device, kernels.gradient.specs({ d, traits: e.handle.traits, views, accumulate: false }));
    device.queue.writeBuffer(bw.upstream.gpu, 0, new Float32Array([scale]));
    const scratch = blocked ? undefined : scratchFor(e, device, ws, variant, form, kernels);
    if (e.options.poisonScratch) {
      const { buffers = [], textures = [] } = scratch?.poisonable() ?? {};
      poison(device, [...bw.grads, ...buffers]);
      textures.forEach((t) => poisonTexture(device, t));
    }
    const scope: PassScope = { rows: n, d, traits: e.handle.traits, views, stats: ws.stats.gpu };
    const plan: Omit<GradientPlan, 'matrix'> = {
      program: kernels.gradient, pipelines, grads: [bw.grads[0].gpu, bw.grads[1].gpu], upstream: bw.upstream.gpu, params: ws.backwardParams.map((b) => b.gpu), scratch,
    };
    const encoder = device.createCommandEncoder({ label: `vicreg backward (${form}, ${variant})` });
    const temporary: Buffer[] = [];
    if (blocked) {
      const split = columnBlocks(e, device, ws);
      temporary.push(...split.temporary);
      const steps = blockedBackwardSteps(scope, { ...plan, matrix: split.matrix.gpu }, await pipeline(device, columnBlockGram.spec), split.blocks);
      for (const step of steps) encodeStep(device, encoder, step);
    } else {
      for (const step of backwardSteps(scope, { ...plan, matrix: matrixFor(e, device, ws, form, kernels.matrix).gpu })) encodeStep(device, encoder, step);
    }
    if (dtype === 'float16') {
      try {
        return await halfGradients(e, device, ws, encoder, bw.grads.map((g) => g.gpu), onDevice, out);
      } finally {
        temporary.forEach(destroyBuffer);
      }
    }
    if (onDevice) {
      device.queue.submit([encoder.finish()]);
      temporary.forEach(destroyBuffer);
      return { gradA: bw.grads[0].gpu, gradB: bw.grads[1].gpu };
    }
    if (bw.staging[0].bytes < n * d * 4) {
      for (const v of BOTH) {
        destroyBuffer(bw.staging[v]);
        bw.staging[v] = readbackBuffer(device, `grad ${VIEWS[v]} readback`, n * d * 4);
      }
    }
    let ga: ArrayBuffer, gb: ArrayBuffer;
    try {
      [ga, gb] = await readback(device, encoder, BOTH.map((v) => ({ source: bw.grads[v].gpu, staging: bw.staging[v], bytes: n * d * 4, into: out?.[v] })));
    } finally {
      temporary.forEach(destroyBuffer);
    }
    return out ? { gradA: out[0], gradB: out[1] } : { gradA: new Float32Array(ga), gradB: new Float32Array(gb) };
  });
}

/**
 * float16 gradients: the float32 ones the encoder computes, rounded into the workspace's float16
 * buffers with the overflow flag; those buffers (after a forward on GPUBuffers), or their contents read
 * back as the caller's kind of array (into `out` where given).
 */
async function halfGradients(e: Engine, device: GPUDevice, ws: Workspace, encoder: GPUCommandEncoder, grads: GPUBuffer[], onDevice: boolean,
  out: [HostView, HostView] | undefined): Promise<VICRegGradients<HostView | GPUBuffer>> {
  const half = halfBuffersFor(device, ws);
  const count = ws.n * ws.d;
  if (e.options.poisonScratch) poison(device, half.grads);
  encoder.clearBuffer(half.overflow.gpu);
  const steps = narrowSteps(await pipeline(device, floatToHalf.spec(false)), half.dims.gpu, count, grads, half.grads.map((g) => g.gpu), half.overflow.gpu);
  for (const step of steps) encodeStep(device, encoder, step);
  if (onDevice) {
    device.queue.submit([encoder.finish()]);
    return { gradA: half.grads[0].gpu, gradB: half.grads[1].gpu, overflow: half.overflow.gpu };
  }
  const bytes = halfBytes(count);
  const [ga, gb, flag] = await readback(device, encoder, [
    ...BOTH.map((v) => ({ source: half.grads[v].gpu, staging: half.gradStaging[v], bytes })),
    { source: half.overflow.gpu, staging: half.overflowStaging, bytes: 4 },
  ]);
  const overflow = new Uint32Array(flag)[0] !== 0;
  if (out) {
    BOTH.forEach((v) => halfBits(out[v] as Uint16Array).set(new Uint16Array(v === 0 ? ga : gb, 0, count)));
    return { gradA: out[0], gradB: out[1], overflow };
  }
  return { gradA: halfArray(ga, count, e.saved?.hostView), gradB: halfArray(gb, count, e.saved?.hostView), overflow };
}
