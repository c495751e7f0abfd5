// forward(): the loss of two views, in the cheaper form (primal d x d or dual n x n), redone in the
// primal form where the dual one would lose float32 accuracy. Each run is column statistics, a Gram per
// view and the loss terms (passes.ts), read back.
import { ShapeError } from '../errors.js';
import { encodeStep, pipeline, readback, withErrorScopes, type KernelSpec } from '../runtime/gpu.js';
import { kernelsOf } from '../variants/registry.js';
import { columnStats, lossTerms, packedMatrixFloats, side } from '../variants/shared.js';
import type { Dtype, Form, ForwardOptions, HostView, Variant, VICRegTerms } from '../types.js';
import { halfToFloat } from '../variants/half.js';
import { uploadHalf, viewsDtype, widenSteps } from './half.js';
import { firstNonFinite, isGPUBuffer, poison, poisonTexture, termsOf, validateShape, validateView } from './checks.js';
import { chooseVariant, gramRole } from './choice.js';
import { ensureDevice } from './lifecycle.js';
import { forwardSteps } from './passes.js';
import { bindingLimit, type Engine } from './state.js';
import { gradientTrial, gramTrial, pairTrial } from './trial.js';
import { BOTH, formBuffers, halfBuffersFor, matrixFor, RESULT_FLOATS, scratchFor, termParams, workspaceFor, type Workspace } from './workspace.js';

/**
 * Below this off-diagonal share of ||C||_F^2, the dual form's (total - diagonal) loses too much float32
 * accuracy (its relative error grows as 1/share), and the primal form is used instead.
 */
export const MIN_DUAL_SHARE = 0.5;

/** The cheaper form by multiply-adds: primal ~ n d^2, dual ~ n^2 d. */
export function cheaperForm(n: number, d: number): Form {
  return n < d ? 'dual' : 'primal';
}

/** The form a call starts in: the option's, or the cheaper one. */
export const startingForm = (e: Engine, n: number, d: number): Form => (e.coefficients.form === 'auto' ? cheaperForm(n, d) : e.coefficients.form);

/** Whether a form's matrix is kept for backward: the primal d x d one only within the binding limit (else backward forms it in column blocks). */
export const keepsMatrix = (e: Engine, form: Form, d: number, grad: boolean) => grad && (form === 'dual' || packedMatrixFloats(d) * 4 <= bindingLimit(e));

/** Compiled pipelines, in the order of their specs. */
export const pipelinesOf = (device: GPUDevice, specs: readonly KernelSpec[]) => Promise.all(specs.map((spec) => pipeline(device, spec)));

/** The Gram variant of a forward, chosen (with its backward where the Gram's layout fixes it). */
export function chooseGramVariant(e: Engine, device: GPUDevice, ws: Workspace, form: Form, keepMatrix: boolean, views: [GPUBuffer, GPUBuffer]): Promise<Variant> {
  const { n, d } = ws;
  const gramCost = (rows: number) => side(form, rows, d) ** 2 * (form === 'dual' ? d : rows) / 2;
  const role = gramRole(e, form, keepMatrix, n, d);
  // A pair's budget is the Gram's, so it is timed wherever the Gram alone would be.
  const trial = role.startsWith('pair|') ? pairTrial(e, device, ws, form, views) : gramTrial(e, device, ws, form, views, keepMatrix);
  return chooseVariant(e, role, n, d, gramCost, trial);
}

/** The backward's variant; `gramVariant`: the forward's, whose matrix layout it must read. No trial for a blocked backward (it would need the whole matrix). */
export function backwardVariant(e: Engine, device: GPUDevice, ws: Workspace, form: Form, views: [GPUBuffer, GPUBuffer], gramVariantUsed: Variant, blocked = false): Promise<Variant> {
  const cost = (rows: number) => (blocked ? Infinity : rows * ws.d * side(form, rows, ws.d));
  return chooseVariant(e, `backward|${form}`, ws.n, ws.d, cost, gradientTrial(e, device, ws, form, views), { gramVariant: gramVariantUsed, blocked });
}

/** One forward in a form: statistics (unless already on the device: the fallback's second run), a Gram per view, the terms; read back. */
async function runForward(e: Engine, device: GPUDevice, ws: Workspace, form: Form, keepMatrix: boolean, views: [GPUBuffer, GPUBuffer],
  withStats = true): Promise<{ r: Float32Array; variant: Variant }> {
  const { n, d } = ws;
  const f = formBuffers(e, device, ws, form);
  const variant = await chooseGramVariant(e, device, ws, form, keepMatrix, views);
  const kernels = kernelsOf(variant, form);
  const matrix = keepMatrix || kernels.matrix.gramAccumulates ? matrixFor(e, device, ws, form, kernels.matrix) : undefined;
  const scratch = scratchFor(e, device, ws, variant, form, kernels);
  const [statsPipe, termsPipe, ...gramPipes] = await pipelinesOf(device,
    [columnStats.spec, lossTerms.spec, ...kernels.gram.specs({ d, traits: e.handle.traits, views, writeMatrix: keepMatrix })]);
  if (e.options.poisonScratch) {
    const { buffers = [], textures = [] } = scratch?.poisonable() ?? {};
    poison(device, [...(withStats ? [ws.stats, ws.flags] : []), ws.result, f.partials, matrix, ...buffers]);
    textures.forEach((t) => poisonTexture(device, t));
  }
  const encoder = device.createCommandEncoder({ label: `vicreg forward (${form}, ${variant})` });
  const steps = forwardSteps({ rows: n, d, traits: e.handle.traits, views, stats: ws.stats.gpu }, {
    stats: withStats ? { pipeline: statsPipe, flags: ws.flags.gpu, dims: ws.statsDims.gpu } : undefined,
    gram: { program: kernels.gram, pipelines: gramPipes, partials: f.partials.gpu, matrix: (matrix ?? ws.placeholder).gpu, dims: f.gramDims.map((b) => b.gpu), scratch },
    terms: { pipeline: termsPipe, flags: ws.flags.gpu, result: ws.result.gpu, params: termParams(e, device, ws, form, kernels.gram).gpu },
  });
  for (const step of steps) encodeStep(device, encoder, step);
  const [bytes] = await readback(device, encoder, [{ source: ws.result.gpu, staging: ws.resultStaging, bytes: RESULT_FLOATS * 4 }]);
  return { r: new Float32Array(bytes), variant };
}

/**
 * The views as float32 GPUBuffers: the caller's own, or the workspace's copies (of host arrays, and of
 * float16 views, widened on the device).
 */
async function float32Views(e: Engine, device: GPUDevice, ws: Workspace, inputs: readonly (HostView | GPUBuffer)[], dtype: Dtype): Promise<[GPUBuffer, GPUBuffer]> {
  if (dtype === 'float32') {
    return BOTH.map((v) => {
      const x = inputs[v];
      if (isGPUBuffer(x)) return x;
      device.queue.writeBuffer(ws.inputs[v].gpu, 0, x as Float32Array<ArrayBuffer>);
      return ws.inputs[v].gpu;
    }) as [GPUBuffer, GPUBuffer];
  }
  const half = halfBuffersFor(device, ws);
  const sources = BOTH.map((v) => {
    const x = inputs[v];
    if (isGPUBuffer(x)) return x;
    uploadHalf(device, half.uploads[v].gpu, x as Uint16Array);
    return half.uploads[v].gpu;
  });
  const targets = BOTH.map((v) => ws.inputs[v].gpu);
  if (e.options.poisonScratch) poison(device, ws.inputs);
  const encoder = device.createCommandEncoder({ label: 'vicreg float16 views' });
  for (const step of widenSteps(await pipeline(device, halfToFloat.spec), half.dims.gpu, ws.n * ws.d, sources, targets)) encodeStep(device, encoder, step);
  device.queue.submit([encoder.finish()]);
  return targets as [GPUBuffer, GPUBuffer];
}

export async function forward(e: Engine, a: HostView | GPUBuffer, b: HostView | GPUBuffer, shape: readonly [number, number],
  opts: ForwardOptions = {}): Promise<VICRegTerms> {
  const device = await ensureDevice(e);
  e.saved = undefined;
  e.lostForward = false;
  const [n, d] = validateShape(shape);
  const dtype = viewsDtype(opts?.dtype, [a, b]);
  const inputs = [validateView('A', a, n, d, dtype), validateView('B', b, n, d, dtype)] as const;
  const onDevice = isGPUBuffer(inputs[0]);
  if (onDevice !== isGPUBuffer(inputs[1])) throw new ShapeError('A and B must both be host arrays or both GPUBuffers');
  const grad = opts.grad ?? true;
  return withErrorScopes(device, 'forward', async () => {
    // float16 views are widened into float32 copies, which the workspace then holds as it does host views'.
    const ws = workspaceFor(e, device, n, d, !onDevice || dtype === 'float16');
    const views = await float32Views(e, device, ws, inputs, dtype);
    let form = startingForm(e, n, d);
    let { r, variant } = await runForward(e, device, ws, form, keepsMatrix(e, form, d, grad), views);
    const share: [number, number] = form === 'dual' ? [r[5], r[6]] : [1, 1];
    if (r[4] !== 0) {
      const [flags] = await readback(device, device.createCommandEncoder(), [{ source: ws.flags.gpu, staging: ws.flagsStaging, bytes: 4 * d * 4 }]);
      throw firstNonFinite(new Uint32Array(flags), d);
    }
    const fellBack = form === 'dual' && !(Math.min(...share) >= MIN_DUAL_SHARE);
    if (fellBack) {
      form = 'primal';
      ({ r, variant } = await runForward(e, device, ws, form, keepsMatrix(e, form, d, grad), views, false));
    }
    const terms = termsOf(r);
    e.saved = { n, d, grad, form, views, onDevice, blocked: grad && !keepsMatrix(e, form, d, grad), variant, dtype, hostView: onDevice ? undefined : inputs[0] as HostView };
    e.plan = { n, d, form, variant, fellBack, offDiagonalShare: share };
    return terms;
  });
}
