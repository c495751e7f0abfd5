// encode(): one training step's forward and backward on GPUBuffers, recorded into one command encoder
// with no wait on the device. Where the dual form runs, the primal one can stand by: form_decision.wgsl
// then reads the dual form's off-diagonal shares on the device and writes the indirect dispatch
// arguments that run one form's backward (and the primal forward where the dual lost accuracy).
import { BufferError, DeviceError, LimitError, MiB, OptionError, ShapeError, StateError, VICRegError } from '../errors.js';
import { createBuffer, destroyBuffer, encodeStep, pipelineSync, readback, readbackBuffer, storageBuffer, uniformBuffer, Usage, withErrorScopes, type Buffer, type KernelSpec, type Step } from '../runtime/gpu.js';
import type { FormKernels, IndirectArgs } from '../variants/program.js';
import { kernelsOf } from '../variants/registry.js';
import { columnStats, formDecision, lossTerms, packedMatrixFloats, UNIFORM_BYTES } from '../variants/shared.js';
import type { EncodeArgs, EncodedTerms, Form, PendingTerms, Variant } from '../types.js';
import { floatToHalf, halfToFloat } from '../variants/half.js';
import { narrowSteps, validateDtype, widenSteps } from './half.js';
import { firstNonFinite, isGPUBuffer, poison, poisonTexture, termsOf, validateGradBuffer, validateShape, validateView, VIEWS } from './checks.js';
import { cachedOrPreferred, gramRole } from './choice.js';
import { backwardVariant, chooseGramVariant, MIN_DUAL_SHARE, pipelinesOf, startingForm } from './forward.js';
import { ensureDevice, typedError } from './lifecycle.js';
import { backwardSteps, columnStatsStep, gramSteps, lossTermsStep, onStandby, type PassScope } from './passes.js';
import { bindingLimit, limitName, type Engine } from './state.js';
import { backwardBuffers, BOTH, destroyWorkspace, formBuffers, halfBuffersFor, matrixFor, RESULT_FLOATS, scratchFor, termParams, workspaceFor, type Workspace } from './workspace.js';

/** encode()'s arguments, checked. */
function encodeInputs(args: EncodeArgs) {
  const [n, d] = validateShape(args?.shape);
  const dtype = validateDtype('dtype', args.dtype) ?? 'float32';
  const gradDtype = validateDtype('gradDtype', args.gradDtype) ?? dtype;
  const sources = BOTH.map((v) => {
    const x = validateView(VIEWS[v], v === 0 ? args.a : args.b, n, d, dtype);
    if (!isGPUBuffer(x)) throw new ShapeError(`encode() takes GPUBuffers (${VIEWS[v]} is a ${(x as object).constructor.name}); use forward() and backward() for host arrays`);
    return x;
  }) as [GPUBuffer, GPUBuffer];
  const grads: [GPUBuffer, GPUBuffer] = [validateGradBuffer('gradA', args.gradA, n, d, gradDtype), validateGradBuffer('gradB', args.gradB, n, d, gradDtype)];
  const scale = args.scale ?? 1;
  if (isGPUBuffer(scale)) {
    if (scale.size < 4 || !(scale.usage & Usage.STORAGE)) throw new BufferError('scale must be a number or a GPUBuffer of at least 4 bytes with STORAGE usage');
  } else if (typeof scale !== 'number' || !Number.isFinite(scale)) {
    throw new OptionError(`scale must be a finite number or a GPUBuffer, got ${String(scale)}`);
  }
  return { n, d, sources, grads, scale, accumulate: args.accumulate ?? false, encoder: args.encoder, dtype, gradDtype };
}
type EncodeInputs = ReturnType<typeof encodeInputs>;

/** The float32 views the passes bind: the caller's, or the workspace's copies that float16 views are widened into. */
const float32Views = (ws: Workspace, input: EncodeInputs): [GPUBuffer, GPUBuffer] =>
  (input.dtype === 'float16' ? [ws.inputs[0].gpu, ws.inputs[1].gpu] : input.sources);

/** A form an encode() runs: its Gram's and its backward's variants and kernels. */
interface EncodedForm { form: Form; gramVariant: Variant; gradientVariant: Variant; gram: FormKernels; gradient: FormKernels }

/** The forms an encode() runs: the dual one with the primal one on standby where it fits, or the one it starts in. */
interface EncodePlan { forms: EncodedForm[]; dual: boolean; withPrimal: boolean }

function encodeForms(e: Engine, n: number, d: number) {
  const dual = startingForm(e, n, d) === 'dual';
  const withPrimal = !dual || (e.coefficients.encodeFallback === 'standby' && packedMatrixFloats(d) * 4 <= bindingLimit(e));
  const run: Form[] = dual ? (withPrimal ? ['dual', 'primal'] : ['dual']) : ['primal'];
  return { dual, withPrimal, run };
}

const formOf = (form: Form, gramVariant: Variant, gradientVariant: Variant): EncodedForm =>
  ({ form, gramVariant, gradientVariant, gram: kernelsOf(gramVariant, form), gradient: kernelsOf(gradientVariant, form) });

/** The kernels an encode() dispatches, so that they can be compiled before recording. */
function encodeSpecs(e: Engine, plan: EncodePlan, input: EncodeInputs, views: [GPUBuffer, GPUBuffer]): KernelSpec[] {
  const context = { d: input.d, traits: e.handle.traits, views };
  const half = input.gradDtype === 'float16';
  return [columnStats.spec, lossTerms.spec, formDecision.spec, ...plan.forms.flatMap((f) => [
    ...f.gram.gram.specs({ ...context, writeMatrix: true }), ...f.gradient.gradient.specs({ ...context, accumulate: input.accumulate && !half }),
  ]), ...(input.dtype === 'float16' ? [halfToFloat.spec] : []), ...(half ? [floatToHalf.spec(input.accumulate)] : [])];
}

export async function encode(e: Engine, args: EncodeArgs): Promise<PendingTerms> {
  const device = await ensureDevice(e);
  const input = encodeInputs(args);
  const { n, d } = input;
  return withErrorScopes(device, 'encode', async () => {
    const ws = workspaceFor(e, device, n, d, input.dtype === 'float16');
    const views = float32Views(ws, input);
    const { run, ...rest } = encodeForms(e, n, d);
    const plan: EncodePlan = { ...rest, forms: [] };
    for (const form of run) {
      const gramVariant = await chooseGramVariant(e, device, ws, form, true, views);
      plan.forms.push(formOf(form, gramVariant, await backwardVariant(e, device, ws, form, views, gramVariant)));
    }
    // Compiled here, asynchronously, so that recording finds every pipeline compiled.
    await pipelinesOf(device, encodeSpecs(e, plan, input, views));
    return recordEncode(e, device, ws, input, plan, (spec) => pipelineSync(device, spec));
  });
}

/**
 * encode() without waiting for anything: pipelines compile synchronously on first use and the kernel
 * variant is the cached choice or the static preference (no measured trial). For frameworks whose ops
 * are synchronous (the tfjs op). Must not overlap pending forward/backward/encode calls on this instance.
 */
export function encodeSync(e: Engine, args: EncodeArgs): PendingTerms {
  if (e.destroyed) throw new StateError('this VICReg loss was destroyed');
  if (e.lost) throw new DeviceError(e.lost);
  if (e.calls.pending > 0) throw new StateError('encodeSync() was called while other calls on this instance were still pending');
  const device = e.handle.device;
  const input = encodeInputs(args);
  const { n, d } = input;
  const ws = workspaceFor(e, device, n, d, input.dtype === 'float16');
  const { run, ...rest } = encodeForms(e, n, d);
  const forms = run.map((form) => {
    const gramVariant = cachedOrPreferred(e, gramRole(e, form, true, n, d), n, d);
    return formOf(form, gramVariant, cachedOrPreferred(e, `backward|${form}`, n, d, { gramVariant }));
  });
  return recordEncode(e, device, ws, input, { ...rest, forms }, (spec) => pipelineSync(device, spec));
}

/** form_decision.wgsl's argument offsets (bytes): primal Gram 0, loss_terms 12, primal backward 24, dual backward 36, primal mirrored 48. */
const DECISION_ARGS = { primalGram: 0, lossTerms: 12, primalGradient: 24, dualGradient: 36, primalMirrored: 48 } as const;

/** Records (and unless the caller passed an encoder, submits) one encode(): no waiting here. */
function recordEncode(e: Engine, device: GPUDevice, ws: Workspace, input: EncodeInputs, plan: EncodePlan, pipelineOf: (spec: KernelSpec) => GPUComputePipeline): PendingTerms {
  const { n, d, scale } = input;
  const views = float32Views(ws, input);
  const { dual, withPrimal } = plan;
  // float16 gradients: the gradient passes write float32 ones into the workspace, rounded (and added, with accumulate) into the caller's after.
  const halfGrads = input.gradDtype === 'float16';
  const grads: [GPUBuffer, GPUBuffer] = halfGrads ? backwardBuffers(device, ws, true).grads.map((g) => g.gpu) as [GPUBuffer, GPUBuffer] : input.grads;
  const accumulate = input.accumulate && !halfGrads;
  const traits = e.handle.traits;
  const onStandbyToo = dual && withPrimal;
  const call = {
    result: storageBuffer(device, 'encode result', RESULT_FLOATS * 4),
    flags: createBuffer(device, 'encode flags', 4 * d * 4, Usage.COPY_DST | Usage.COPY_SRC),
    upstream: isGPUBuffer(scale) ? undefined : storageBuffer(device, 'encode upstream', 4),
    args: onStandbyToo ? createBuffer(device, 'encode dispatch args', 15 * 4, Usage.STORAGE | Usage.INDIRECT) : undefined,
    decision: onStandbyToo ? uniformBuffer(device, 'encode decision params', UNIFORM_BYTES.decisionParams) : undefined,
    overflow: halfGrads ? createBuffer(device, 'encode float16 overflow', 4, Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST) : undefined,
  };
  // The sentinel read() looks for: a flag of -1 means loss_terms has not run yet.
  device.queue.writeBuffer(call.result.gpu, 0, new Float32Array([0, 0, 0, 0, -1, 0, 0, 0]));
  if (call.upstream) device.queue.writeBuffer(call.upstream.gpu, 0, new Float32Array([scale as number]));
  // Every form's buffers and scratch before anything is recorded.
  const bound = plan.forms.map((f) => {
    const buffers = formBuffers(e, device, ws, f.form);
    return {
      ...f, buffers,
      matrix: matrixFor(e, device, ws, f.form, f.gram.matrix),
      gramScratch: scratchFor(e, device, ws, f.gramVariant, f.form, f.gram),
      gradientScratch: scratchFor(e, device, ws, f.gradientVariant, f.form, f.gradient),
      termParams: termParams(e, device, ws, f.form, f.gram.gram),
    };
  });
  if (e.options.poisonScratch) {
    const scratch = [...new Set(bound.flatMap((f) => [f.gramScratch, f.gradientScratch]))].flatMap((s) => (s ? [s.poisonable()] : []));
    poison(device, [ws.stats, ws.flags, call.result, ...bound.flatMap((f) => [f.buffers.partials, f.matrix]), ...scratch.flatMap((s) => s.buffers)]);
    scratch.flatMap((s) => s.textures).forEach((t) => poisonTexture(device, t));
  }
  const upstream = call.upstream?.gpu ?? (scale as GPUBuffer);
  const indirect = (offset: number): IndirectArgs => ({ indirect: call.args!.gpu, offset });
  const scope: PassScope = { rows: n, d, traits, views, stats: ws.stats.gpu };
  const encoder = input.encoder ?? device.createCommandEncoder({ label: 'vicreg encode' });
  const half = input.dtype === 'float16' || halfGrads ? halfBuffersFor(device, ws) : undefined;
  const steps: Step[] = input.dtype === 'float16' ? widenSteps(pipelineOf(halfToFloat.spec), half!.dims.gpu, n * d, input.sources, views) : [];
  steps.push(columnStatsStep(scope, pipelineOf(columnStats.spec), ws.flags.gpu, ws.statsDims.gpu));
  for (const f of bound) {
    // On standby (the primal form behind the dual one), its forward runs only if the device says so.
    const standby = f.form === 'primal' && dual;
    const gram = BOTH.flatMap((view) => gramSteps(scope, {
      program: f.gram.gram, pipelines: f.gram.gram.specs({ d, traits, views, writeMatrix: true }).map(pipelineOf),
      partials: f.buffers.partials.gpu, matrix: f.matrix.gpu, dims: f.buffers.gramDims.map((b) => b.gpu), scratch: f.gramScratch,
    }, view));
    steps.push(...(standby ? onStandby(gram, indirect(DECISION_ARGS.primalGram)) : gram));
    steps.push(lossTermsStep(pipelineOf(lossTerms.spec), ws.stats.gpu, ws.flags.gpu, f.buffers.partials.gpu, call.result.gpu, f.termParams.gpu,
      standby ? indirect(DECISION_ARGS.lossTerms) : lossTerms.workgroups()));
    if (f.form === 'dual' && onStandbyToo) {
      const primal = bound.find((x) => x.form === 'primal')!;
      const primalGradient = primal.gradient.gradient.workgroups(n, d, traits);
      const params = new ArrayBuffer(UNIFORM_BYTES.decisionParams);
      new Uint32Array(params, 0, 8).set([
        ...primal.gram.gram.workgroups!(n, d, traits), ...primalGradient.main, ...f.gradient.gradient.workgroups(n, d, traits).main, ...(primalGradient.mirrored ?? [0, 0]),
      ]);
      new Float32Array(params, 32, 1).set([MIN_DUAL_SHARE]);
      device.queue.writeBuffer(call.decision!.gpu, 0, params);
      steps.push({
        label: 'form_decision', pipeline: pipelineOf(formDecision.spec), workgroups: formDecision.workgroups(),
        bindings: [call.result.gpu, call.args!.gpu, call.decision!.gpu],
      });
    }
  }
  for (const f of bound) {
    // With a form on standby, each form's backward dispatches read their workgroups from the decision (0 for the form not taken).
    const conditional = onStandbyToo
      ? (pass: 'main' | 'mirrored') => indirect(pass === 'mirrored' ? DECISION_ARGS.primalMirrored : f.form === 'primal' ? DECISION_ARGS.primalGradient : DECISION_ARGS.dualGradient)
      : undefined;
    steps.push(...backwardSteps(scope, {
      program: f.gradient.gradient, pipelines: f.gradient.gradient.specs({ d, traits, views, accumulate }).map(pipelineOf),
      matrix: f.matrix.gpu, grads, upstream, params: ws.backwardParams.map((b) => b.gpu), scratch: f.gradientScratch, indirect: conditional,
    }));
  }
  if (halfGrads) {
    encoder.clearBuffer(call.overflow!.gpu);
    steps.push(...narrowSteps(pipelineOf(floatToHalf.spec(input.accumulate)), half!.dims.gpu, n * d, grads, input.grads, call.overflow!.gpu));
  }
  for (const step of steps) encodeStep(device, encoder, step);
  encoder.copyBufferToBuffer(ws.flags.gpu, 0, call.flags.gpu, 0, 4 * d * 4);
  if (!input.encoder) device.queue.submit([encoder.finish()]);
  return pendingTerms(e, device, ws, call, dual && !withPrimal);
}

/** The terms of one encode(): read() maps them back (the only wait), typed as a forward's errors; release() frees the call's buffers. */
function pendingTerms(e: Engine, device: GPUDevice, ws: Workspace, call: Record<string, Buffer | undefined>, dualWithoutFallback: boolean): PendingTerms {
  const { d } = ws;
  let outcome: Promise<EncodedTerms> | undefined;
  let released = false;
  ws.encodesPending += 1;
  const release = () => {
    if (released) return;
    released = true;
    e.openEncodes.delete(release);
    for (const b of Object.values(call)) destroyBuffer(b);
    ws.encodesPending -= 1;
    if (ws.retired && ws.encodesPending === 0) destroyWorkspace(ws);
  };
  e.openEncodes.add(release);
  const read = async (): Promise<EncodedTerms> => {
    if (e.destroyed) throw new StateError('this VICReg loss was destroyed before these terms were read');
    if (released) throw new StateError('these terms were released before being read');
    const staging = readbackBuffer(device, 'encode result readback', RESULT_FLOATS * 4);
    const overflowStaging = call.overflow && readbackBuffer(device, 'encode overflow readback', 4);
    let done = true;
    try {
      const [bytes, overflow] = await readback(device, device.createCommandEncoder(), [
        { source: call.result!.gpu, staging, bytes: RESULT_FLOATS * 4 },
        ...(overflowStaging ? [{ source: call.overflow!.gpu, staging: overflowStaging, bytes: 4 }] : []),
      ]);
      const r = new Float32Array(bytes);
      // loss_terms writes a flag >= 0; the sentinel (or poison) still there means the work has not run.
      if (!(r[4] >= 0)) {
        done = false;
        throw new StateError('read() came before the work of this encode() ran: submit the encoder passed to encode() first');
      }
      if (r[4] !== 0) {
        const flagsStaging = readbackBuffer(device, 'encode flags readback', 4 * d * 4);
        try {
          const [flags] = await readback(device, device.createCommandEncoder(), [{ source: call.flags!.gpu, staging: flagsStaging, bytes: 4 * d * 4 }]);
          throw firstNonFinite(new Uint32Array(flags), d);
        } finally {
          destroyBuffer(flagsStaging);
        }
      }
      if (dualWithoutFallback && !(Math.min(r[5], r[6]) >= MIN_DUAL_SHARE)) {
        const share = `off-diagonal share ${Math.min(r[5], r[6]).toPrecision(3)} < ${MIN_DUAL_SHARE}`;
        throw new LimitError(e.coefficients.encodeFallback === 'none'
          ? `the dual form lost float32 accuracy on this input (${share}) and option encodeFallback is 'none' (no d x d fallback on standby): this call's loss and gradients are not accurate`
          : `the dual form lost float32 accuracy on this input (${share}) and the d x d fallback needs ${MiB(packedMatrixFloats(d) * 4)}, over ${limitName(e)} of ${MiB(bindingLimit(e))}: this call's loss and gradients are not accurate`);
      }
      return { ...termsOf(r), gradientOverflow: overflow !== undefined && new Uint32Array(overflow)[0] !== 0 };
    } finally {
      destroyBuffer(staging);
      destroyBuffer(overflowStaging);
      if (done) release();
    }
  };
  const readOnce = (): Promise<EncodedTerms> => {
    outcome ??= read().catch(async (error) => {
      // Not run yet: a later read(), after the caller submits, may succeed.
      if (error instanceof StateError && /came before/.test(error.message)) outcome = undefined;
      throw error instanceof VICRegError ? error : await typedError(e, error, device);
    });
    return outcome;
  };
  return {
    buffer: call.result!.gpu,
    overflow: call.overflow?.gpu,
    read: readOnce,
    release: () => { if (!outcome) release(); },
  };
}
