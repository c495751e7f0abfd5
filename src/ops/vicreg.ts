// The VICReg loss built from the kernels: forward (column statistics, the two Gram reductions, the loss
// terms) and backward (one fused gradient kernel per view), in the primal (d x d) or dual (n x n) form,
// with the kernel variant chosen per device.
import {
  BufferError, DeviceError, LimitError, OptionError, ShapeError, StateError, VICRegError,
} from '../errors.js';
import { acquireDevice, deviceHandle, WINDOW_LANGUAGE_FEATURES, type DeviceHandle } from '../runtime/device.js';
import { quietly } from '../runtime/polling.js';
import {
  createBuffer, destroyBuffer, destroyTexture, encodeDispatch, encodeStep, type Dispatch, type Step, pipeline, readback, readbackBuffer, storageBuffer, storageTexture, uniformBuffer, Usage,
  pipelineSync, withErrorScopes, type Buffer, type KernelSpec, type Texture,
} from '../runtime/gpu.js';
import type {
  BackwardOptions, EncodeArgs, ForwardOptions, ForwardPlan, PendingTerms, VICRegGradients, VICRegLoss, VICRegOptions, VICRegTerms,
} from '../types.js';
import {
  firstNonFinite, isGPUBuffer, MiB, poison, poisonTexture, termsOf, validateGradBuffer, validateOut, validateShape, validateView, VIEWS,
} from './checks.js';
import { resolveCoefficients, varianceScale } from './coefficients.js';
import {
  backwardParams, backwardParamsPerGroup, backwardPassList, backwardSpecs, blockedMatrixFloats, columnBlockGram, columnBlockWidth, columnStats, formDecision, forms, formVariant, gramDims, gramSpecs, lossTerms, packedMatrixFloats, PANEL_MIN_ROWS, statsLayout, UNIFORM_BYTES, VARIANTS, variantSupported, WINDOWS_MAX_ROWS,
  windowBackwardPassList, windowPanelFloats, windowGramPassList, windowRawPanel, windowRecords, windowTextureSize, type Form, type Variant, type WindowRecords,
} from './kernels.js';
import { carryVariantChoices, choiceKey, choicesOf, exportVariantChoices, seedVariantChoices, validateVariantChoices, type ChoiceRole } from './variantChoices.js';

const RESULT_FLOATS = 8;
const BOTH = [0, 1] as const;

/**
 * Below this off-diagonal share of ||C||_F^2, the dual form's (total - diagonal) loses too much float32
 * accuracy (its relative error grows as 1/share), and the primal form is used instead.
 */
export const MIN_DUAL_SHARE = 0.5;

/** The cheaper form by multiply-adds: primal ~ n d^2, dual ~ n^2 d. */
export function cheaperForm(n: number, d: number): Form {
  return n < d ? 'dual' : 'primal';
}

/** Device buffers of one form: its Gram partials and dims, and for backward its matrix buffer. */
interface FormBuffers {
  side: number;
  /** Partials per view, sized for the variant with the most. */
  partialsPerView: number;
  partials: Buffer;
  gramDims: [Buffer, Buffer];
  /** The loss_terms parameters, per variant (the partial count differs). */
  termParams: Partial<Record<Variant, Buffer>>;
  /**
   * Both views' Gram matrices (Coff or K), kept for backward, packed into side^2 + side floats (view A
   * on and above the diagonal, view B below it and its diagonal after; see packedIndex in the kernels);
   * allocated on first need.
   */
  matrix?: Buffer;
}

/** Device buffers for one problem shape, reused across calls of that shape. */
interface Workspace {
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
  forms: Partial<Record<Form, FormBuffers>>;
  /** encode() calls recorded on this workspace and not yet read or released (their work may still be unsubmitted). */
  encodesPending: number;
  /** Replaced (a new shape) while encodes were pending: destroyed when the last of them is done. */
  retired: boolean;
  /** The backward kernels' parameters per view (they depend on n, d and the coefficients only). */
  backwardParams: [Buffer, Buffer];
  /** A grouped backward kernel's (kernels.ts columnGroups): its parameters per view and group, and the panel buffer. */
  grouped?: { params: [Buffer[], Buffer[]]; panel: Buffer };
  /** Allocated on the first backward(). */
  backward?: { grads: [Buffer, Buffer]; staging: [Buffer, Buffer]; upstream: Buffer };
  /** The 'windows' kernels' records per view (kernels.ts windowRecords) and scratch, made on first need. */
  windows?: WindowScratch;
}

/** A 'windows' trial's own records (for its rows), matrix, panels and texture. */
interface WindowTrial { records: GPUBuffer; layout: WindowRecords; matrix: GPUBuffer; panel: Buffer; texture: Texture }
/** A WindowTrial made on first need and freed once (vicreg.ts windowTrials). */
interface WindowTrials { get(rows: number): WindowTrial; destroy(): void }

/**
 * A measured trial of the variants for one role: `run` runs one variant's kernels on the first `rows`
 * rows and resolves when the device is done; the scratch it needs is made on its first run and kept,
 * so the timed runs allocate nothing, until `release`.
 */
interface VariantTrial { run(variant: Variant, rows: number): Promise<void>; release(): void }

/** What the 'windows' kernels need besides the matrix: per view its records, and the panels they copy Zc into. */
interface WindowScratch {
  records: [Buffer, Buffer];
  layout: [WindowRecords, WindowRecords];
  /** The Gram's and the backward's panels (kernels.ts WindowBuffers.panel). */
  panel: Buffer;
  texture: Texture;
}

/** What a forward keeps for the backward that pairs with it. */
interface Saved {
  n: number;
  d: number;
  grad: boolean;
  form: Form;
  /** The views' buffers (the engine's copies of host arrays, or the caller's GPUBuffers). */
  views: [GPUBuffer, GPUBuffer];
  onDevice: boolean;
  /** The primal Coff is past the binding limit: backward forms it one block of columns at a time. */
  blocked: boolean;
  /** The Gram kernels' variant: 'windows' keeps K in its own layout, which only its backward reads. */
  variant: Variant;
}

// Variant choice: a measured trial on the first use of a shape class on a device, on at most TRIAL_ROWS
// rows, skipped (static preference) where even that would take long. Cached per device.
const TRIAL_ROWS = 256;
const TRIAL_MAX_MACS = 1e8;
/** Timed runs of each variant, round robin after one untimed run of each; the best of each decides. */
const TRIAL_RUNS = 3;
// A trial of a grouped backward binds one params buffer and no panel: it must stay one group, unpanelled.
if (TRIAL_ROWS >= PANEL_MIN_ROWS) throw new Error('TRIAL_ROWS must stay below PANEL_MIN_ROWS (kernels.ts)');
/**
 * Where no trial runs: subgroup where it can run (it is built for the adapters that offer it: lavapipe),
 * else workgroup-memory tiles (the textbook GPU kernel; not yet measured on a GPU), else tiled.
 */
const PREFERENCE: readonly Variant[] = ['windows', 'subgroup', 'workgroup', 'tiled'];
const specKey = (spec: KernelSpec) => `${spec.name}|${JSON.stringify(spec.constants ?? {})}`;


export async function createVICRegLoss(options: VICRegOptions = {}): Promise<VICRegLoss> {
  resolveOptions(options);   // bad options fail before a device is acquired
  return createOnDevice(await acquireDevice(options.device), options);
}

/** The engine on a caller's device, created synchronously (for synchronous frameworks: the tfjs op). */
export function createVICRegLossOnDevice(device: GPUDevice, options: Omit<VICRegOptions, 'device'> = {}): VICRegLoss {
  return createOnDevice(deviceHandle(device), options);
}

function resolveOptions(options: VICRegOptions) {
  const coefficients = resolveCoefficients(options);
  if (options.maxBindingSize !== undefined && !(typeof options.maxBindingSize === 'number' && options.maxBindingSize > 0)) {
    throw new OptionError(`option maxBindingSize must be a positive number of bytes, got ${String(options.maxBindingSize)}`);
  }
  if (options.variantChoices !== undefined) validateVariantChoices(options.variantChoices);
  return coefficients;
}

function createOnDevice(acquired: DeviceHandle, options: VICRegOptions): VICRegLoss {
  const coefficients = resolveOptions(options);
  let handle: DeviceHandle = acquired;
  let lost: string | undefined;
  let destroyed = false;
  let workspace: Workspace | undefined;
  let saved: Saved | undefined;
  /** The device was lost after the last forward: the backward paired with it cannot run. */
  let lostForward = false;
  let plan: ForwardPlan | undefined;
  /** Calls run one after another in the order they were made (backward pairs with the forward before it). */
  let tail: Promise<unknown> = Promise.resolve();
  let pendingCalls = 0;
  /** release() of every encode() not yet read or released, so destroy() can free them. */
  const openEncodes = new Set<() => void>();

  const watchLoss = (h: DeviceHandle) => {
    h.device.lost.then((info) => {
      if (h === handle && !destroyed) lost = `the device was lost (${info.reason}${info.message ? `: ${info.message}` : ''})`;
    });
  };
  watchLoss(handle);

  /**
   * Every error leaves as a VICRegError: WebGPU's own (an aborted mapAsync when the device is lost, say)
   * become DeviceErrors, naming the loss when that is what happened.
   */
  async function typed(error: unknown, device: GPUDevice): Promise<VICRegError> {
    if (error instanceof VICRegError) return error;
    // device.lost resolves a moment after the failing call: give it that moment.
    const info = await Promise.race([device.lost, new Promise<undefined>((r) => setTimeout(r, 50))]);
    if (info) {
      lostForward = true;
      return new DeviceError(`the device was lost (${info.reason}${info.message ? `: ${info.message}` : ''}) while this call ran`);
    }
    return new DeviceError(`WebGPU failed: ${(error as Error)?.message ?? String(error)}`);
  }

  function serialize<T>(call: () => Promise<T>): Promise<T> {
    const guarded = async () => {
      const device = handle.device;
      try {
        return await call();
      } catch (error) {
        throw await typed(error, device);
      }
    };
    pendingCalls += 1;
    const run = tail.then(guarded, guarded).finally(() => { pendingCalls -= 1; });
    tail = run.catch(() => undefined);
    return run;
  }

  async function ensureDevice(): Promise<GPUDevice> {
    if (destroyed) throw new StateError('this VICReg loss was destroyed');
    if (lost) {
      if (!handle.owned) throw new DeviceError(`${lost}; the device was passed in by the caller, so it cannot be replaced`);
      // An engine that owns its device starts over on a fresh one; a backward still paired with a
      // forward on the lost device says so.
      freeWorkspace();
      if (saved) lostForward = true;
      saved = undefined;
      const before = handle;
      handle = await acquireDevice();
      // The choices made on the lost device hold on its successor, the same adapter.
      if (handle.adapterName === before.adapterName) carryVariantChoices(before.device, handle.device);
      lost = undefined;
      watchLoss(handle);
    }
    return handle.device;
  }

  /** The most bytes one binding may take: the device's limit, or the caller's lower cap. */
  const bindingLimit = () => Math.min(handle.device.limits.maxStorageBufferBindingSize, options.maxBindingSize ?? Infinity);

  /** Names the binding limit in force: the device's, or the caller's maxBindingSize. */
  const limitName = () => (bindingLimit() < handle.device.limits.maxStorageBufferBindingSize ? 'the maxBindingSize option' : "the device's maxStorageBufferBindingSize");

  function checkBinding(what: string, bytes: number) {
    const limit = bindingLimit();
    if (bytes > limit) throw new LimitError(`${what} needs ${MiB(bytes)}, over ${limitName()} of ${MiB(limit)}`);
  }

  /**
   * Drops the workspace. Its buffers are destroyed now, or, while encode() calls recorded on it are
   * pending (a caller's encoder may not be submitted yet), when the last of them is read or released.
   */
  function freeWorkspace() {
    const ws = workspace;
    workspace = undefined;
    if (!ws) return;
    if (ws.encodesPending > 0) ws.retired = true;
    else destroyWorkspace(ws);
  }

  function destroyWorkspace(ws: Workspace) {
    for (const b of [...ws.inputs, ws.stats, ws.flags, ws.flagsStaging, ws.result, ws.resultStaging, ws.statsDims, ws.placeholder, ...ws.backwardParams]) destroyBuffer(b);
    for (const f of Object.values(ws.forms)) {
      for (const b of [f.partials, ...f.gramDims, ...Object.values(f.termParams), f.matrix]) destroyBuffer(b);
    }
    if (ws.backward) for (const b of [...ws.backward.grads, ...ws.backward.staging, ws.backward.upstream]) destroyBuffer(b);
    if (ws.grouped) for (const b of [...ws.grouped.params.flat(), ws.grouped.panel]) destroyBuffer(b);
    if (ws.windows) {
      for (const b of [...ws.windows.records, ws.windows.panel]) destroyBuffer(b);
      destroyTexture(ws.windows.texture);
    }
  }

  function workspaceFor(device: GPUDevice, n: number, d: number, hostInputs: boolean): Workspace {
    if (!(workspace && workspace.n === n && workspace.d === d)) {
      freeWorkspace();
      checkBinding(`a ${n} x ${d} float32 view`, n * d * 4);
      const layout = statsLayout(d);
      workspace = {
        n, d,
        inputs: [storageBuffer(device, 'A', 0), storageBuffer(device, 'B', 0)],
        stats: storageBuffer(device, 'column stats', layout.floats * 4),
        flags: storageBuffer(device, 'column flags', 4 * d * 4),
        flagsStaging: readbackBuffer(device, 'column flags readback', 4 * d * 4),
        result: storageBuffer(device, 'loss terms', RESULT_FLOATS * 4),
        resultStaging: readbackBuffer(device, 'loss terms readback', RESULT_FLOATS * 4),
        statsDims: uniformBuffer(device, 'column stats dims', UNIFORM_BYTES.dims),
        placeholder: storageBuffer(device, 'no matrix', 16),
        forms: {},
        encodesPending: 0,
        retired: false,
        backwardParams: [uniformBuffer(device, 'backward params A', UNIFORM_BYTES.backwardParams), uniformBuffer(device, 'backward params B', UNIFORM_BYTES.backwardParams)],
      };
      device.queue.writeBuffer(workspace.statsDims.gpu, 0, new Uint32Array([n, d]));
      for (const v of BOTH) device.queue.writeBuffer(workspace.backwardParams[v].gpu, 0, backwardParams(coefficients, n, d, n, v));
    }
    const ws = workspace;
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
   * The form's buffers; the matrix where `keepMatrix`, in the packed layout, or for `windows` in the
   * blocked one (kernels.ts blockedMatrixFloats), bindable as uniform windows (remade if it was packed).
   */
  function formBuffers(device: GPUDevice, ws: Workspace, form: Form, keepMatrix: boolean, windows = false): FormBuffers {
    const { n, d } = ws;
    let f = ws.forms[form];
    if (!f) {
      const side = forms[form].side(n, d);
      const partialsPerView = Math.max(...VARIANTS.map((v) => forms[form].gram[v].partials(n, d)));
      f = {
        side, partialsPerView,
        partials: storageBuffer(device, `${form} gram partials`, 2 * partialsPerView * 4),
        gramDims: [uniformBuffer(device, `${form} gram dims A`, UNIFORM_BYTES.gramDims), uniformBuffer(device, `${form} gram dims B`, UNIFORM_BYTES.gramDims)],
        termParams: {},
      };
      ws.forms[form] = f;
      for (const v of BOTH) device.queue.writeBuffer(f.gramDims[v].gpu, 0, gramDims(form, n, d, v, v * partialsPerView));
    }
    const uniform = (b: Buffer) => (b.gpu.usage & Usage.UNIFORM) !== 0;
    if (windows && f.matrix && !uniform(f.matrix)) {
      destroyBuffer(f.matrix);
      f.matrix = undefined;
    }
    if ((keepMatrix || windows) && !f.matrix) {
      const bytes = (windows ? Math.max(packedMatrixFloats(f.side), blockedMatrixFloats(n)) : packedMatrixFloats(f.side)) * 4;
      checkBinding(`the two ${f.side} x ${f.side} ${form === 'dual' ? 'Gram' : 'covariance'} matrices kept for backward (${windows ? 'blocked' : 'packed'})`, bytes);
      f.matrix = createBuffer(device, `${form} matrices (both views, ${windows ? 'blocked' : 'packed'})`, bytes,
        Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST | (windows ? Usage.UNIFORM : 0));
    }
    return f;
  }

  /**
   * The form's buffers for a Gram variant; for 'windows' also its scratch and the blocked matrix (its
   * Gram sums K group by group there, whether or not backward needs it).
   */
  function gramBuffers(device: GPUDevice, ws: Workspace, form: Form, variant: Variant, keepMatrix: boolean): FormBuffers {
    if (variant === 'windows') windowScratch(device, ws);
    return formBuffers(device, ws, form, keepMatrix, variant === 'windows');
  }

  /** The 'windows' kernels' records and scratch for the workspace's shape (made on first need; the dual form's partials). */
  function windowScratch(device: GPUDevice, ws: Workspace): WindowScratch {
    if (!ws.windows) {
      const { n, d } = ws;
      const f = formBuffers(device, ws, 'dual', true, true);
      const layout = BOTH.map((v) => windowRecords(coefficients, n, d, n, v, v * f.partialsPerView)) as [WindowRecords, WindowRecords];
      const records = BOTH.map((v) => {
        const buffer = uniformBuffer(device, `window records ${VIEWS[v]}`, layout[v].bytes.byteLength);
        device.queue.writeBuffer(buffer.gpu, 0, layout[v].bytes);
        return buffer;
      }) as [Buffer, Buffer];
      ws.windows = {
        records, layout,
        panel: createBuffer(device, 'window panels', windowPanelFloats(n, d) * 4, Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST),
        texture: storageTexture(device, 'window column panels (texture)', windowTextureSize(n, d)),
      };
    }
    return ws.windows;
  }

  /** loss_terms' parameters for a form and variant (its partial count and whether to subtract the diagonal). */
  function termParams(device: GPUDevice, ws: Workspace, form: Form, variant: Variant): Buffer {
    const f = ws.forms[form]!;
    let buffer = f.termParams[variant];
    if (!buffer) {
      buffer = uniformBuffer(device, `${form} ${variant} loss term params`, UNIFORM_BYTES.termParams);
      const term = new ArrayBuffer(UNIFORM_BYTES.termParams);
      // Both views' partials sit partialsPerView apart; a variant that writes fewer leaves the rest
      // unread: loss_terms reads partialCount from each view's start.
      new Uint32Array(term, 0, 8).set([ws.n, ws.d, forms[form].gram[variant].partials(ws.n, ws.d), form === 'dual' ? 1 : 0, f.partialsPerView, 0, 0, 0]);
      new Float32Array(term, 32, 8).set([coefficients.lambda, coefficients.mu, coefficients.nu, coefficients.gamma,
        coefficients.eps, varianceScale(coefficients.preset), 0, 0]);
      device.queue.writeBuffer(buffer.gpu, 0, term);
      f.termParams[variant] = buffer;
    }
    return buffer;
  }

  // A copy, as validated: the caller may change theirs, and seeding happens per device, later.
  const seed = options.variantChoices && { ...options.variantChoices, choices: { ...options.variantChoices.choices } };
  const seeded = new WeakSet<GPUDevice>();
  /** This device's variant choices, seeded from the option on first use of each device the engine runs on. */
  function deviceChoices(): Map<string, Variant> {
    if (!seeded.has(handle.device)) {
      seeded.add(handle.device);
      seedVariantChoices(handle.device, handle.adapterName, seed);
    }
    return choicesOf(handle.device);
  }

  /**
   * The variants that can run for a role on this device (`supported`, which names the choice's key), and
   * of those the ones to choose from (`allowed`): for a backward, those that read the layout the forward's
   * Gram variant (`gramVariant`) wrote: only 'windows' reads its own, and nothing else does.
   */
  function candidates(role: ChoiceRole, n: number, d: number, gramVariant?: Variant): { supported: Variant[]; allowed: Variant[] } {
    const form = role.split('|')[1] as Form;
    const supported = VARIANTS.filter((v) => variantSupported(v, handle.features, n, d, form) && (v !== 'windows' || windowsFit(n, d)));
    if (!role.startsWith('backward|') || gramVariant === undefined) return { supported, allowed: supported };
    return { supported, allowed: supported.filter((v) => (v === 'windows') === (gramVariant === 'windows')) };
  }

  /** Whether the 'windows' kernels' matrix and panel fit the binding limit. */
  const windowsFit = (n: number, d: number) => Math.max(blockedMatrixFloats(n), windowPanelFloats(n, d)) * 4 <= bindingLimit();

  /** Why a forced variant cannot run (an OptionError naming what it needs), or the variant the form runs for it. */
  function forcedVariant(role: ChoiceRole, n: number, d: number): Variant | undefined {
    if (coefficients.variant === 'auto') return undefined;
    const form = role.split('|')[1] as Form;
    const variant = formVariant(coefficients.variant, form);
    if (variantSupported(variant, handle.features, n, d, form)) {
      if (variant === 'windows' && !windowsFit(n, d)) {
        const [what, floats] = blockedMatrixFloats(n) >= windowPanelFloats(n, d)
          ? [`its ${n} x ${n} blocked matrix`, blockedMatrixFloats(n)] : ['its column panels', windowPanelFloats(n, d)];
        throw new LimitError(`variant 'windows' needs ${what} (${MiB(floats * 4)}) in one binding, over ${limitName()} of ${MiB(bindingLimit())}`);
      }
      return variant;
    }
    const subgroups = `the 'subgroups' feature with subgroup size 8 (this device: ${handle.features.subgroupSize ?? 'none or variable'}) and d % 4 == 0 (d = ${d})`;
    throw new OptionError(variant === 'windows'
      ? `variant 'windows' cannot run here: it needs ${subgroups}, the WGSL language features ${WINDOW_LANGUAGE_FEATURES.join(' and ')} (this device: ${handle.features.windowLanguage ? 'has them' : 'lacks them or cannot tell'}), and n <= ${WINDOWS_MAX_ROWS} (n = ${n})`
      : `variant '${variant}' cannot run here: it needs ${subgroups}`);
  }

  /** The variant for a role without a trial: forced, the only one, cached, or the static preference. */
  function cachedOrPreferredVariant(role: ChoiceRole, n: number, d: number, gramVariant?: Variant): Variant {
    const forced = forcedVariant(role, n, d);
    if (forced) return forced;
    const { supported, allowed } = candidates(role, n, d, gramVariant);
    const cached = deviceChoices().get(choiceKey(role, n, d, supported));
    return cached && allowed.includes(cached) ? cached : PREFERENCE.find((v) => allowed.includes(v))!;
  }

  /**
   * The kernel variant for a role: the option if forced; else the only one supported; else the cached
   * choice for this device and shape class; else a measured trial of each (released at the end, run
   * or not). A backward's candidates follow `gramVariant`.
   */
  async function chooseVariant(role: ChoiceRole, n: number, d: number, macs: (rows: number) => number,
    trial: VariantTrial, gramVariant?: Variant): Promise<Variant> {
    try {
      return await measuredChoice(role, n, d, macs, trial, gramVariant);
    } finally {
      trial.release();
    }
  }

  async function measuredChoice(role: ChoiceRole, n: number, d: number, macs: (rows: number) => number,
    trial: VariantTrial, gramVariant?: Variant): Promise<Variant> {
    const forced = forcedVariant(role, n, d);
    if (forced) return forced;
    const { supported, allowed } = candidates(role, n, d, gramVariant);
    if (allowed.length === 1) return allowed[0];
    const cache = deviceChoices();
    const key = choiceKey(role, n, d, supported);
    const cached = cache.get(key);
    if (cached && allowed.includes(cached)) return cached;
    const rows = Math.min(n, TRIAL_ROWS);
    let choice = PREFERENCE.find((v) => allowed.includes(v))!;
    // Only measured choices are kept (and exported): the static preference is found again each time.
    if (macs(rows) <= TRIAL_MAX_MACS) {
      for (const variant of allowed) await trial.run(variant, rows);   // compiles, makes its scratch, warms up
      // Round robin, so that drift on a shared machine (tens of percent within a minute, seen here) hits
      // every variant alike, and the best of each, so that one slowed run does not decide.
      const best = new Map(allowed.map((v) => [v, Infinity]));
      for (let run = 0; run < TRIAL_RUNS; run++) {
        for (const variant of allowed) {
          const start = performance.now();
          await trial.run(variant, rows);
          best.set(variant, Math.min(best.get(variant)!, performance.now() - start));
        }
      }
      choice = allowed.reduce((x, y) => (best.get(y)! < best.get(x)! ? y : x));
      cache.set(key, choice);
    }
    return choice;
  }

  /**
   * One view's Gram steps: one dispatch, or for 'windows' per column group its texture and one dispatch
   * (on the workspace's records and scratch, or a trial's `records` and `matrix`). `pipes` as
   * gramSpecsOf lists them.
   */
  function gramSteps(form: Form, variant: Variant, ws: Workspace, f: FormBuffers, views: [GPUBuffer, GPUBuffer], v: 0 | 1, dims: GPUBuffer,
    pipes: readonly GPUComputePipeline[], rows: number, trial?: WindowTrial): Step[] {
    const kernel = forms[form].gram[variant];
    const label = `${form} ${variant} gram ${VIEWS[v]}`;
    const matrix = (f.matrix ?? ws.placeholder).gpu;
    if (kernel.windows) {
      const scratch = trial ?? { ...ws.windows!, records: ws.windows!.records[v].gpu, layout: ws.windows!.layout[v], matrix };
      return windowGramPassList(label, { gram: pipes[0], pack: pipes[1] }, {
        z: views[v], stats: ws.stats.gpu, partials: f.partials.gpu, matrix: scratch.matrix,
        records: scratch.records, panel: scratch.panel.gpu, texture: scratch.texture,
      }, scratch.layout, rows, rawPanel(variant, views, ws.d) ? { d: ws.d } : undefined);
    }
    return [{
      label, pipeline: pipes[0], workgroups: kernel.workgroups(rows, ws.d),
      bindings: kernel.bindings({ z: views[v], stats: ws.stats.gpu, partials: f.partials.gpu, matrix, dims }),
    }];
  }

  /** Uniform dims of a trial run on the first `rows` rows (the kernels then index only those rows). */
  function trialDims(device: GPUDevice, ws: Workspace, form: Form, rows: number): Buffer {
    const dims = uniformBuffer(device, 'trial dims', Math.max(UNIFORM_BYTES.gramDims, UNIFORM_BYTES.backwardParams));
    device.queue.writeBuffer(dims.gpu, 0, gramDims(form, rows, ws.d, 0, 0));
    return dims;
  }

  async function gramVariant(device: GPUDevice, ws: Workspace, form: Form, keepMatrix: boolean, views: [GPUBuffer, GPUBuffer]): Promise<Variant> {
    const f = ws.forms[form]!;
    const side = (rows: number) => forms[form].side(rows, ws.d);
    const gramMacs = (rows: number) => side(rows) * side(rows) * (form === 'dual' ? ws.d : rows) / 2;
    let dims: Buffer | undefined;
    // One 'windows' scratch for the Gram's trial and, in a pair, the backward's that follows it.
    const windows = windowTrials(device, ws);
    const gramTrial: VariantTrial = {
      async run(variant, rows) {
        const pipes = await Promise.all(gramSpecsOf(form, variant, keepMatrix, views, ws.d).map((spec) => pipeline(device, spec)));
        dims ??= trialDims(device, ws, form, rows);
        const encoder = device.createCommandEncoder({ label: 'variant trial' });
        for (const step of gramSteps(form, variant, ws, f, views, 0, dims.gpu, pipes, rows, variant === 'windows' ? windows.get(rows) : undefined)) {
          encodeStep(device, encoder, step);
        }
        device.queue.submit([encoder.finish()]);
        await quietly(() => device.queue.onSubmittedWorkDone());
      },
      release() {
        destroyBuffer(dims);
        windows.destroy();
      },
    };
    const role = gramRole(form, keepMatrix, ws.n, ws.d);
    if (role.startsWith('gram|')) return chooseVariant(role, ws.n, ws.d, gramMacs, gramTrial);
    // A backward follows and a Gram variant's choice fixes it ('windows'): time each Gram variant with the
    // backward of the same name, so that a faster backward counts too. (For the other variants the
    // backward's own trial then picks among them; the one of the same name stands in for it here.) The
    // budget is the Gram's, so the pair is timed wherever the Gram alone would be (the dual backward's
    // trial costs twice the Gram's: n d n against n^2 d / 2 multiply-adds).
    const backward = backwardTrial(device, ws, form, views, windows);
    return chooseVariant(role, ws.n, ws.d, gramMacs, {
      async run(variant, rows) {
        await gramTrial.run(variant, rows);
        await backward.run(variant, rows);
      },
      release() {
        gramTrial.release();
        backward.release();
      },
    });
  }

  /**
   * The role whose choice names the Gram variant: with a backward to follow and 'windows' among the
   * variants (its backward is the only one that reads its Gram's layout), the pair's; else the Gram's.
   */
  function gramRole(form: Form, keepMatrix: boolean, n: number, d: number): ChoiceRole {
    return `${keepMatrix && candidates(`gram|${form}`, n, d).supported.includes('windows') ? 'pair' : 'gram'}|${form}`;
  }

  /** 'windows' trial scratch, made on the first `get` for that call's rows (every trial of a choice runs the same rows), and how to free it. */
  function windowTrials(device: GPUDevice, ws: Workspace): WindowTrials {
    let made: { trial: WindowTrial; buffers: Buffer[] } | undefined;
    return {
      get(rows) {
        if (!made) {
          const layout = windowRecords(coefficients, ws.n, ws.d, rows, 0, 0);
          const records = uniformBuffer(device, 'trial window records', layout.bytes.byteLength);
          device.queue.writeBuffer(records.gpu, 0, layout.bytes);
          const matrix = createBuffer(device, 'trial blocked matrix', blockedMatrixFloats(rows) * 4, Usage.STORAGE | Usage.UNIFORM);
          const panel = createBuffer(device, 'trial window panels', windowPanelFloats(rows, ws.d) * 4, Usage.STORAGE | Usage.COPY_SRC);
          const texture = storageTexture(device, 'trial texture', windowTextureSize(rows, ws.d));
          made = { trial: { records: records.gpu, layout, matrix: matrix.gpu, panel, texture }, buffers: [records, matrix, panel] };
        }
        return made.trial;
      },
      destroy() {
        if (!made) return;
        made.buffers.forEach(destroyBuffer);
        destroyTexture(made.trial.texture);
        made = undefined;
      },
    };
  }

  /** One view's backward steps (kernels.ts backwardPassList, windowBackwardPassList) on the workspace's buffers; `block` a plain Coff column block. */
  function backwardSteps(form: Form, variant: Variant, ws: Workspace, views: [GPUBuffer, GPUBuffer], grads: [GPUBuffer, GPUBuffer],
    upstream: GPUBuffer, v: 0 | 1, pipes: GPUComputePipeline[], params: readonly GPUBuffer[], rows: number,
    indirect?: (pass: 'main' | 'mirrored') => { indirect: GPUBuffer; offset: number }, block?: { matrix: GPUBuffer; width: number },
    trial?: WindowTrial): Step[] {
    const buffers = {
      z: views[v], other: views[1 - v], stats: ws.stats.gpu, matrix: block?.matrix ?? trial?.matrix ?? ws.forms[form]!.matrix!.gpu, grad: grads[v],
      upstream, panel: (ws.grouped?.panel ?? ws.placeholder).gpu,
    };
    if (forms[form].backward[variant].windows) {
      const scratch = trial ?? { ...ws.windows!, records: ws.windows!.records[v].gpu, layout: ws.windows!.layout[v] };
      return windowBackwardPassList(`${form} ${variant} backward ${VIEWS[v]}`, { main: pipes[0], pack: pipes[1] },
        { ...buffers, records: scratch.records, panel: scratch.panel.gpu, texture: scratch.texture }, scratch.layout, rows, v, indirect?.('main'),
        rawPanel(variant, views, ws.d) ? { d: ws.d } : undefined);
    }
    return backwardPassList(forms[form].backward[variant], `${form} ${variant} backward ${VIEWS[v]}`, pipes, buffers, params, rows, ws.d,
      { indirect, blockWidth: block?.width });
  }

  /** Whether the 'windows' kernels copy the views' strips into their texture as they are (kernels.ts windowRawPanel). */
  const rawPanel = (variant: Variant, views: readonly GPUBuffer[], d: number) => variant === 'windows' && windowRawPanel(views, d);
  /** The Gram's pipelines for these views (gramSteps binds them in this order). */
  const gramSpecsOf = (form: Form, variant: Variant, keepMatrix: boolean, views: readonly GPUBuffer[], d: number) =>
    gramSpecs(forms[form].gram[variant], keepMatrix, rawPanel(variant, views, d));
  /** The backward's pipelines for these views (backwardSteps binds them in this order). */
  const backwardSpecsOf = (form: Form, variant: Variant, accumulate: boolean, views: readonly GPUBuffer[], d: number) =>
    backwardSpecs(forms[form].backward[variant], accumulate, rawPanel(variant, views, d));

  /**
   * One view's backward parameters: per column group for a grouped kernel (made on first need, with the
   * panel buffer), else the workspace's one.
   */
  function backwardParamsOf(device: GPUDevice, ws: Workspace, form: Form, variant: Variant, v: 0 | 1): GPUBuffer[] {
    const kernel = forms[form].backward[variant];
    if (kernel.windows) windowScratch(device, ws);   // its parameters are among its records
    if (!kernel.grouped) return [ws.backwardParams[v].gpu];
    if (!ws.grouped) {
      const { n, d } = ws;
      const groups = kernel.grouped.columnGroups(n, d);
      const panelBytes = groups.panels ? n * groups.width * 4 : 16;
      checkBinding(`the backward's column panels (${n} x ${groups.width})`, panelBytes);
      ws.grouped = {
        params: BOTH.map((view) => backwardParamsPerGroup(kernel, coefficients, n, d, n, view).map((bytes, g) => {
          const buffer = uniformBuffer(device, `backward params ${VIEWS[view]} group ${g}`, UNIFORM_BYTES.backwardParams);
          device.queue.writeBuffer(buffer.gpu, 0, bytes);
          return buffer;
        })) as [Buffer[], Buffer[]],
        panel: storageBuffer(device, 'backward column panels', panelBytes),
      };
    }
    return ws.grouped.params[v].map((b) => b.gpu);
  }

  /**
   * The primal backward when Coff (d x d) is past the binding limit: for each block of columns, form
   * Coff's block (all rows) and compute those columns of the gradient. Returns the call's temporary
   * buffers, to destroy once the work is submitted.
   */
  async function encodeBlockedBackward(device: GPUDevice, ws: Workspace, encoder: GPUCommandEncoder, variant: Variant, pipes: GPUComputePipeline[],
    views: [GPUBuffer, GPUBuffer], grads: [GPUBuffer, GPUBuffer], upstream: GPUBuffer): Promise<Buffer[]> {
    const { n, d } = ws;
    const width = columnBlockWidth(d, bindingLimit());
    if (width === 0) throw new LimitError(`one column block of the ${d} x ${d} covariance needs ${MiB(d * 64 * 4)}, over ${limitName()} of ${MiB(bindingLimit())}`);
    const matrix = storageBuffer(device, 'Coff column block', d * width * 4);
    const temporary = [matrix];
    const gramPipe = await pipeline(device, columnBlockGram.spec);
    for (let start = 0; start < d; start += width) {
      const blockWidth = Math.min(width, d - start);
      for (const v of BOTH) {
        // Each dispatch has its own uniforms: queued writes all land before the encoder's work runs.
        const dims = uniformBuffer(device, 'block gram dims', UNIFORM_BYTES.gramDims);
        const params = uniformBuffer(device, 'block backward params', UNIFORM_BYTES.backwardParams);
        temporary.push(dims, params);
        device.queue.writeBuffer(dims.gpu, 0, gramDims('primal', n, d, v, 0, { start, width: blockWidth }));
        device.queue.writeBuffer(params.gpu, 0, backwardParams(coefficients, n, d, n, v, { start, width: blockWidth }));
        encodeDispatch(device, encoder, {
          label: `Coff block ${VIEWS[v]} ${start}`, pipeline: gramPipe, workgroups: columnBlockGram.workgroups(d, blockWidth),
          bindings: [views[v], ws.stats.gpu, ws.placeholder.gpu, matrix.gpu, dims.gpu],
        });
        for (const step of backwardSteps('primal', variant, ws, views, grads, upstream, v, pipes, [params.gpu], n, undefined, { matrix: matrix.gpu, width: blockWidth })) {
          encodeStep(device, encoder, step);
        }
      }
    }
    return temporary;
  }

  /** The backward's variant; `gramVariant`: the forward's, whose matrix layout it must read (candidates). */
  async function backwardVariant(device: GPUDevice, ws: Workspace, form: Form, views: [GPUBuffer, GPUBuffer], gramVariant: Variant, blocked = false): Promise<Variant> {
    const side = forms[form].side(ws.n, ws.d);
    // Blocked (huge d): no trial, which would need the whole matrix; the static preference decides.
    // A 'windows' backward is never chosen here: it is the only candidate after a windows Gram, and none
    // after another (its trial runs with the Gram's, gramVariant's 'pair' role).
    return chooseVariant(`backward|${form}`, ws.n, ws.d, (rows) => (blocked ? Infinity : rows * ws.d * side), backwardTrial(device, ws, form, views), gramVariant);
  }

  /** Backward trials (VariantTrial) on the first `rows` rows of view A; `shared`: a pair's 'windows' scratch (its Gram trial's, which frees it). */
  function backwardTrial(device: GPUDevice, ws: Workspace, form: Form, views: [GPUBuffer, GPUBuffer], shared?: WindowTrials): VariantTrial {
    // The trial writes a scratch gradient, never the caller's (encode() may be accumulating into it).
    let scratch: readonly [Buffer, Buffer, Buffer] | undefined;
    const windows = shared ?? windowTrials(device, ws);
    return {
      async run(candidate, rows) {
        const kernel = forms[form].backward[candidate];
        const pipes = await Promise.all(backwardSpecsOf(form, candidate, false, views, ws.d).map((spec) => pipeline(device, spec)));
        scratch ??= [storageBuffer(device, 'trial gradient', rows * ws.d * 4), uniformBuffer(device, 'trial backward params', UNIFORM_BYTES.backwardParams),
          storageBuffer(device, 'trial upstream', 4)];
        // 'windows': the trial's records, blocked matrix (the Gram trial's K in a pair, else zeros: the time
        // does not depend on K), panels and texture.
        if (!kernel.windows) device.queue.writeBuffer(scratch[1].gpu, 0, backwardParamsPerGroup(kernel, coefficients, ws.n, ws.d, rows, 0)[0]);
        const encoder = device.createCommandEncoder({ label: 'variant trial' });
        // Trials run on at most TRIAL_ROWS rows: one column group, no panels (kernels.ts PANEL_MIN_ROWS); a
        // windows trial's groups are those of its rows (wider than n's from 512 rows: windowColumnGroups).
        const steps = backwardSteps(form, candidate, ws, views, [scratch[0].gpu, scratch[0].gpu], scratch[2].gpu, 0, pipes, [scratch[1].gpu], rows,
          undefined, undefined, kernel.windows ? windows.get(rows) : undefined);
        for (const step of steps) encodeStep(device, encoder, step);
        device.queue.submit([encoder.finish()]);
        await quietly(() => device.queue.onSubmittedWorkDone());
      },
      release() {
        scratch?.forEach(destroyBuffer);
        if (!shared) windows.destroy();
      },
    };
  }

  /**
   * One forward in the given form: statistics (unless they are already on the device: the fallback's
   * second run), both Gram reductions, the terms; read back.
   */
  async function runForward(device: GPUDevice, ws: Workspace, form: Form, keepMatrix: boolean, views: [GPUBuffer, GPUBuffer],
    withStats = true): Promise<{ r: Float32Array; variant: Variant }> {
    const { d } = ws;
    formBuffers(device, ws, form, keepMatrix);
    const variant = await gramVariant(device, ws, form, keepMatrix, views);
    const f = gramBuffers(device, ws, form, variant, keepMatrix);
    const [statsPipe, termsPipe, ...gramPipes] = await Promise.all([columnStats.spec, lossTerms.spec, ...gramSpecsOf(form, variant, keepMatrix, views, d)]
      .map((spec) => pipeline(device, spec)));
    if (options.poisonScratch) {
      poison(device, [...(withStats ? [ws.stats, ws.flags] : []), ws.result, f.partials, ...(f.matrix ? [f.matrix] : []), ...(variant === 'windows' ? [ws.windows!.panel] : [])]);
      if (variant === 'windows') poisonTexture(device, ws.windows!.texture);
    }
    const encoder = device.createCommandEncoder({ label: `vicreg forward (${form}, ${variant})` });
    if (withStats) {
      encodeDispatch(device, encoder, {
        label: 'column_stats', pipeline: statsPipe, workgroups: columnStats.workgroups(d),
        bindings: [views[0], views[1], ws.stats.gpu, ws.flags.gpu, ws.statsDims.gpu],
      });
    }
    for (const v of BOTH) {
      for (const step of gramSteps(form, variant, ws, f, views, v, f.gramDims[v].gpu, gramPipes, ws.n)) encodeStep(device, encoder, step);
    }
    encodeDispatch(device, encoder, {
      label: 'loss_terms', pipeline: termsPipe, workgroups: lossTerms.workgroups(),
      bindings: [ws.stats.gpu, ws.flags.gpu, f.partials.gpu, ws.result.gpu, termParams(device, ws, form, variant).gpu],
    });
    const [bytes] = await readback(device, encoder, [{ source: ws.result.gpu, staging: ws.resultStaging, bytes: RESULT_FLOATS * 4 }]);
    return { r: new Float32Array(bytes), variant };
  }

  async function forward(a: Float32Array | GPUBuffer, b: Float32Array | GPUBuffer, shape: readonly [number, number], opts: ForwardOptions = {}): Promise<VICRegTerms> {
    const device = await ensureDevice();
    saved = undefined;
    lostForward = false;
    const [n, d] = validateShape(shape);
    const inputs = [validateView('A', a, n, d), validateView('B', b, n, d)] as const;
    const onDevice = isGPUBuffer(inputs[0]);
    if (onDevice !== isGPUBuffer(inputs[1])) throw new ShapeError('A and B must both be Float32Arrays or both GPUBuffers');
    const grad = opts.grad ?? true;
    return withErrorScopes(device, 'forward', async () => {
      const ws = workspaceFor(device, n, d, !onDevice);
      const views = BOTH.map((v) => {
        const x = inputs[v];
        if (isGPUBuffer(x)) return x;
        device.queue.writeBuffer(ws.inputs[v].gpu, 0, x as Float32Array<ArrayBuffer>);
        return ws.inputs[v].gpu;
      }) as [GPUBuffer, GPUBuffer];
      let form: Form = coefficients.form === 'auto' ? cheaperForm(n, d) : coefficients.form;
      // A primal Coff past the binding limit is not kept: backward then forms it block by block.
      const keepsMatrix = (f: Form) => grad && (f === 'dual' || packedMatrixFloats(d) * 4 <= bindingLimit());
      let { r, variant } = await runForward(device, ws, form, keepsMatrix(form), views);
      const share: [number, number] = form === 'dual' ? [r[5], r[6]] : [1, 1];
      if (r[4] !== 0) {
        const [flags] = await readback(device, device.createCommandEncoder(), [{ source: ws.flags.gpu, staging: ws.flagsStaging, bytes: 4 * d * 4 }]);
        throw firstNonFinite(new Uint32Array(flags), d);
      }
      const fellBack = form === 'dual' && !(Math.min(...share) >= MIN_DUAL_SHARE);
      if (fellBack) {
        form = 'primal';
        ({ r, variant } = await runForward(device, ws, form, keepsMatrix(form), views, false));
      }
      const terms = termsOf(r);
      saved = { n, d, grad, form, views, onDevice, blocked: grad && !keepsMatrix(form), variant };
      plan = { n, d, form, variant, fellBack, offDiagonalShare: share };
      return terms;
    });
  }

  async function backward(scale = 1, backwardOptions?: BackwardOptions): Promise<VICRegGradients<Float32Array | GPUBuffer>> {
    const device = await ensureDevice();
    if (typeof scale !== 'number' || !Number.isFinite(scale)) {
      throw new OptionError(`backward scale must be a finite number, got ${String(scale)}`);
    }
    if (!saved && lostForward) throw new DeviceError('the device was lost after the forward that this backward pairs with; call forward() again');
    if (!saved) throw new StateError('backward() needs a successful forward() first');
    if (!saved.grad) throw new StateError('the last forward() was called with { grad: false }; call forward() again to get gradients');
    const { n, d, form, views, onDevice, blocked, variant: gramVariantUsed } = saved;
    let out: [Float32Array, Float32Array] | undefined;
    if (backwardOptions?.out !== undefined) {
      if (onDevice) throw new OptionError('backward(scale, { out }) is for a forward on Float32Arrays; after a forward on GPUBuffers the gradients stay on the device (use encode() to write them into your buffers)');
      out = validateOut(backwardOptions.out, n, d);
    }
    const ws = workspace!;
    return withErrorScopes(device, 'backward', async () => {
      ws.backward ??= {
        grads: [storageBuffer(device, 'grad A', n * d * 4), storageBuffer(device, 'grad B', n * d * 4)],
        staging: [readbackBuffer(device, 'grad A readback', onDevice ? 0 : n * d * 4), readbackBuffer(device, 'grad B readback', onDevice ? 0 : n * d * 4)],
        upstream: storageBuffer(device, 'upstream gradient', 4),
      };
      const bw = ws.backward;
      const grads: [GPUBuffer, GPUBuffer] = [bw.grads[0].gpu, bw.grads[1].gpu];
      const variant = await backwardVariant(device, ws, form, views, gramVariantUsed, blocked);
      const pipes = await Promise.all(backwardSpecsOf(form, variant, false, views, d).map((spec) => pipeline(device, spec)));
      device.queue.writeBuffer(bw.upstream.gpu, 0, new Float32Array([scale]));
      const params = blocked ? undefined : BOTH.map((v) => backwardParamsOf(device, ws, form, variant, v));
      if (options.poisonScratch) {
        // 'windows': the panel its texture is copied from, and the texture, so that rows the copy misses fail.
        poison(device, [...bw.grads, ...(ws.grouped ? [ws.grouped.panel] : []), ...(variant === 'windows' ? [ws.windows!.panel] : [])]);
        if (variant === 'windows') poisonTexture(device, ws.windows!.texture);
      }
      const encoder = device.createCommandEncoder({ label: `vicreg backward (${form}, ${variant})` });
      const temporary: Buffer[] = [];
      if (blocked) {
        temporary.push(...await encodeBlockedBackward(device, ws, encoder, variant, pipes, views, grads, bw.upstream.gpu));
      } else {
        for (const v of BOTH) {
          for (const step of backwardSteps(form, variant, ws, views, grads, bw.upstream.gpu, v, pipes, params![v], n)) {
            encodeStep(device, encoder, step);
          }
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


  /** encode()'s arguments, checked. */
  function encodeInputs(args: EncodeArgs) {
    const [n, d] = validateShape(args?.shape);
    const views = BOTH.map((v) => {
      const x = validateView(VIEWS[v], v === 0 ? args.a : args.b, n, d);
      if (!isGPUBuffer(x)) throw new ShapeError(`encode() takes GPUBuffers (${VIEWS[v]} is a Float32Array); use forward() and backward() for host arrays`);
      return x;
    }) as [GPUBuffer, GPUBuffer];
    const grads: [GPUBuffer, GPUBuffer] = [validateGradBuffer('gradA', args.gradA, n, d), validateGradBuffer('gradB', args.gradB, n, d)];
    const scale = args.scale ?? 1;
    if (isGPUBuffer(scale)) {
      if (scale.size < 4 || !(scale.usage & Usage.STORAGE)) throw new BufferError('scale must be a number or a GPUBuffer of at least 4 bytes with STORAGE usage');
    } else if (typeof scale !== 'number' || !Number.isFinite(scale)) {
      throw new OptionError(`scale must be a finite number or a GPUBuffer, got ${String(scale)}`);
    }
    return { n, d, views, grads, scale, accumulate: args.accumulate ?? false, encoder: args.encoder };
  }

  type EncodeInputs = ReturnType<typeof encodeInputs>;
  /** The forms an encode() runs (the dual one with the primal one on standby where it fits) and their variants. */
  interface EncodePlan {
    run: Form[];
    dual: boolean;
    withPrimal: boolean;
    chosen: Partial<Record<Form, { variant: Variant; backwardVariant: Variant; f: FormBuffers }>>;
  }

  function encodeForms(n: number, d: number) {
    const cheaper: Form = coefficients.form === 'auto' ? cheaperForm(n, d) : coefficients.form;
    const dual = cheaper === 'dual';
    const withPrimal = !dual || (coefficients.encodeFallback === 'standby' && packedMatrixFloats(d) * 4 <= bindingLimit());
    const run: Form[] = dual ? (withPrimal ? ['dual', 'primal'] : ['dual']) : ['primal'];
    return { dual, withPrimal, run };
  }

  /** The kernels an encode() dispatches, so that they can be compiled before recording. */
  function encodeSpecs(plan: EncodePlan, input: EncodeInputs): KernelSpec[] {
    const specs = [columnStats.spec, lossTerms.spec, formDecision.spec];
    for (const form of plan.run) {
      const c = plan.chosen[form]!;
      specs.push(...gramSpecsOf(form, c.variant, true, input.views, input.d), ...backwardSpecsOf(form, c.backwardVariant, input.accumulate, input.views, input.d));
    }
    return specs;
  }

  async function encode(args: EncodeArgs): Promise<PendingTerms> {
    const device = await ensureDevice();
    const input = encodeInputs(args);
    const { n, d, views } = input;
    return withErrorScopes(device, 'encode', async () => {
      const ws = workspaceFor(device, n, d, false);
      const plan: EncodePlan = { ...encodeForms(n, d), chosen: {} };
      for (const form of plan.run) {
        formBuffers(device, ws, form, true);
        const variant = await gramVariant(device, ws, form, true, views);
        plan.chosen[form] = { f: gramBuffers(device, ws, form, variant, true), variant, backwardVariant: await backwardVariant(device, ws, form, views, variant) };
      }
      const compiled = new Map<KernelSpec['name'], GPUComputePipeline>();
      for (const spec of encodeSpecs(plan, input)) compiled.set(specKey(spec), await pipeline(device, spec));
      return recordEncode(device, ws, input, plan, (spec) => compiled.get(specKey(spec))!);
    });
  }

  /**
   * encode() without waiting for anything: pipelines compile synchronously on first use and the kernel
   * variant is the cached choice or the static preference (no measured trial). For frameworks whose ops
   * are synchronous (the tfjs op). Must not overlap pending forward/backward/encode calls on this instance.
   */
  function encodeSync(args: EncodeArgs): PendingTerms {
    if (destroyed) throw new StateError('this VICReg loss was destroyed');
    if (lost) throw new DeviceError(lost);
    if (pendingCalls > 0) throw new StateError('encodeSync() was called while other calls on this instance were still pending');
    const device = handle.device;
    const input = encodeInputs(args);
    const { n, d } = input;
    const ws = workspaceFor(device, n, d, false);
    const plan: EncodePlan = { ...encodeForms(n, d), chosen: {} };
    for (const form of plan.run) {
      formBuffers(device, ws, form, true);
      const variant = cachedOrPreferredVariant(gramRole(form, true, n, d), n, d);
      plan.chosen[form] = { f: gramBuffers(device, ws, form, variant, true), variant, backwardVariant: cachedOrPreferredVariant(`backward|${form}`, n, d, variant) };
    }
    return recordEncode(device, ws, input, plan, (spec) => pipelineSync(device, spec));
  }

  /** Records (and unless the caller passed an encoder, submits) one encode(): no waiting here. */
  function recordEncode(device: GPUDevice, ws: Workspace, input: EncodeInputs, plan: EncodePlan, pipelineOf: (spec: KernelSpec) => GPUComputePipeline): PendingTerms {
    const { n, d, views, grads, scale, accumulate } = input;
    const { run, dual, withPrimal, chosen } = plan;
    const call = {
      result: storageBuffer(device, 'encode result', RESULT_FLOATS * 4),
      flags: createBuffer(device, 'encode flags', 4 * d * 4, Usage.COPY_DST | Usage.COPY_SRC),
      upstream: isGPUBuffer(scale) ? undefined : storageBuffer(device, 'encode upstream', 4),
      args: dual && withPrimal ? createBuffer(device, 'encode dispatch args', 15 * 4, Usage.STORAGE | Usage.INDIRECT) : undefined,
      decision: dual && withPrimal ? uniformBuffer(device, 'encode decision params', UNIFORM_BYTES.decisionParams) : undefined,
    };
    // The sentinel read() looks for: a flag of -1 means loss_terms has not run yet.
    device.queue.writeBuffer(call.result.gpu, 0, new Float32Array([0, 0, 0, 0, -1, 0, 0, 0]));
    if (call.upstream) device.queue.writeBuffer(call.upstream.gpu, 0, new Float32Array([scale as number]));
    // Each form's backward parameters (and, for a grouped kernel, the panel) before anything is recorded.
    const params = Object.fromEntries(run.map((form) => [form, BOTH.map((v) => backwardParamsOf(device, ws, form, chosen[form]!.backwardVariant, v))]));
    if (options.poisonScratch) {
      poison(device, [ws.stats, ws.flags, call.result, ...run.flatMap((form) => [chosen[form]!.f.partials, chosen[form]!.f.matrix!]), ...(ws.grouped ? [ws.grouped.panel] : []),
        ...(ws.windows ? [ws.windows.panel] : [])]);
      if (ws.windows) poisonTexture(device, ws.windows.texture);
    }
    const upstream = call.upstream?.gpu ?? (scale as GPUBuffer);
    const encoder = input.encoder ?? device.createCommandEncoder({ label: 'vicreg encode' });
    encodeDispatch(device, encoder, {
      label: 'column_stats', pipeline: pipelineOf(columnStats.spec), workgroups: columnStats.workgroups(d),
      bindings: [views[0], views[1], ws.stats.gpu, ws.flags.gpu, ws.statsDims.gpu],
    });
    const indirect = (offset: number) => (call.args ? { indirect: call.args.gpu, offset } : undefined);
    for (const form of run) {
      const { f, variant } = chosen[form]!;
      const gramPipes = gramSpecsOf(form, variant, true, views, d).map(pipelineOf);
      // On standby (the primal form behind the dual one), the passes run only if the device says so.
      const standby = form === 'primal' && dual;
      for (const v of BOTH) {
        for (const step of gramSteps(form, variant, ws, f, views, v, f.gramDims[v].gpu, gramPipes, n)) {
          encodeStep(device, encoder, standby && !('copy' in step) ? { ...step, workgroups: indirect(0)! } : step);
        }
      }
      encodeDispatch(device, encoder, {
        label: `loss_terms ${form}`, pipeline: pipelineOf(lossTerms.spec), workgroups: standby ? indirect(12)! : lossTerms.workgroups(),
        bindings: [ws.stats.gpu, ws.flags.gpu, f.partials.gpu, call.result.gpu, termParams(device, ws, form, variant).gpu],
      });
      if (form === 'dual' && call.args) {
        const p = chosen.primal!;
        const params = new ArrayBuffer(UNIFORM_BYTES.decisionParams);
        new Uint32Array(params, 0, 8).set([
          ...forms.primal.gram[p.variant].workgroups(n, d), ...forms.primal.backward[p.backwardVariant].workgroups(n, d),
          ...forms.dual.backward[chosen.dual!.backwardVariant].workgroups(n, d),
          ...(forms.primal.backward[p.backwardVariant].mirrored?.workgroups(n, d) ?? [0, 0]),
        ]);
        new Float32Array(params, 32, 1).set([MIN_DUAL_SHARE]);
        device.queue.writeBuffer(call.decision!.gpu, 0, params);
        encodeDispatch(device, encoder, {
          label: 'form_decision', pipeline: pipelineOf(formDecision.spec), workgroups: formDecision.workgroups(),
          bindings: [call.result.gpu, call.args.gpu, call.decision!.gpu],
        });
      }
    }
    for (const form of run) {
      const { backwardVariant: variant } = chosen[form]!;
      const pipes = backwardSpecsOf(form, variant, accumulate, views, d).map(pipelineOf);
      // form_decision.wgsl's argument offsets: primal backward 24, dual backward 36, primal mirrored 48.
      const conditional = call.args
        ? (pass: 'main' | 'mirrored') => indirect(pass === 'mirrored' ? 48 : form === 'primal' ? 24 : 36)!
        : undefined;
      for (const v of BOTH) {
        for (const step of backwardSteps(form, variant, ws, views, grads, upstream, v, pipes, params[form][v], n, conditional)) {
          encodeStep(device, encoder, step);
        }
      }
    }
    encoder.copyBufferToBuffer(ws.flags.gpu, 0, call.flags.gpu, 0, 4 * d * 4);
    if (!input.encoder) device.queue.submit([encoder.finish()]);
    return pendingTerms(device, ws, call, dual && !withPrimal);
  }

  function pendingTerms(device: GPUDevice, ws: Workspace, call: { result: Buffer; flags: Buffer; upstream?: Buffer; args?: Buffer; decision?: Buffer },
    dualWithoutFallback: boolean): PendingTerms {
    const { d } = ws;
    let outcome: Promise<VICRegTerms> | undefined;
    let released = false;
    ws.encodesPending += 1;
    const release = () => {
      if (released) return;
      released = true;
      openEncodes.delete(release);
      for (const b of Object.values(call)) destroyBuffer(b);
      ws.encodesPending -= 1;
      if (ws.retired && ws.encodesPending === 0) destroyWorkspace(ws);
    };
    openEncodes.add(release);
    const read = async (): Promise<VICRegTerms> => {
      if (destroyed) throw new StateError('this VICReg loss was destroyed before these terms were read');
      if (released) throw new StateError('these terms were released before being read');
      const staging = readbackBuffer(device, 'encode result readback', RESULT_FLOATS * 4);
      let done = true;
      try {
        const [bytes] = await readback(device, device.createCommandEncoder(), [{ source: call.result.gpu, staging, bytes: RESULT_FLOATS * 4 }]);
        const r = new Float32Array(bytes);
        // loss_terms writes a flag >= 0; the sentinel (or poison) still there means the work has not run.
        if (!(r[4] >= 0)) {
          done = false;
          throw new StateError('read() came before the work of this encode() ran: submit the encoder passed to encode() first');
        }
        if (r[4] !== 0) {
          const flagsStaging = readbackBuffer(device, 'encode flags readback', 4 * d * 4);
          try {
            const [flags] = await readback(device, device.createCommandEncoder(), [{ source: call.flags.gpu, staging: flagsStaging, bytes: 4 * d * 4 }]);
            throw firstNonFinite(new Uint32Array(flags), d);
          } finally {
            destroyBuffer(flagsStaging);
          }
        }
        if (dualWithoutFallback && !(Math.min(r[5], r[6]) >= MIN_DUAL_SHARE)) {
          const share = `off-diagonal share ${Math.min(r[5], r[6]).toPrecision(3)} < ${MIN_DUAL_SHARE}`;
          throw new LimitError(coefficients.encodeFallback === 'none'
            ? `the dual form lost float32 accuracy on this input (${share}) and option encodeFallback is 'none' (no d x d fallback on standby): this call's loss and gradients are not accurate`
            : `the dual form lost float32 accuracy on this input (${share}) and the d x d fallback needs ${MiB(packedMatrixFloats(d) * 4)}, over ${limitName()} of ${MiB(bindingLimit())}: this call's loss and gradients are not accurate`);
        }
        return termsOf(r);
      } finally {
        destroyBuffer(staging);
        if (done) release();
      }
    };
    const readOnce = (): Promise<VICRegTerms> => {
      outcome ??= read().catch(async (error) => {
        // Not run yet: a later read(), after the caller submits, may succeed.
        if (error instanceof StateError && /came before/.test(error.message)) outcome = undefined;
        throw error instanceof VICRegError ? error : await typed(error, device);
      });
      return outcome;
    };
    return {
      buffer: call.result.gpu,
      read: readOnce,
      release: () => { if (!outcome) release(); },
    };
  }

  return {
    forward: (a, b, shape, opts) => serialize(() => forward(a, b, shape, opts)),
    backward: <G extends Float32Array | GPUBuffer = Float32Array>(scale?: number, backwardOptions?: BackwardOptions) =>
      serialize(() => backward(scale, backwardOptions)) as Promise<VICRegGradients<G>>,
    encode: (args) => serialize(() => encode(args)),
    encodeSync,
    get device() { return handle.device; },
    get adapterName() { return handle.adapterName; },
    options: coefficients,
    get lastPlan() { return plan; },
    variantChoices: () => {
      deviceChoices();   // seeded ones count from the start
      return exportVariantChoices(handle.device, handle.adapterName);
    },
    destroy() {
      if (destroyed) return;
      destroyed = true;
      for (const release of [...openEncodes]) release();
      freeWorkspace();
      if (handle.owned) handle.device.destroy();
    },
  };
}
