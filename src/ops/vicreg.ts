// The VICReg loss built from the kernels: forward (column statistics, the two covariance Gram
// reductions, the loss terms) and backward (one fused gradient kernel per view).
import { DeviceError, LimitError, NonFiniteError, OptionError, OverflowError, ShapeError, StateError } from '../errors.js';
import { acquireDevice, type DeviceHandle } from '../runtime/device.js';
import {
  destroyBuffer, encodeDispatch, pipeline, readback, readbackBuffer, storageBuffer, uniformBuffer, withErrorScopes,
  type Buffer,
} from '../runtime/gpu.js';
import type { ForwardOptions, ForwardPlan, VICRegGradients, VICRegLoss, VICRegOptions, VICRegTerms } from '../types.js';
import { gradientCoefficients, resolveCoefficients, varianceScale, type Coefficients } from './coefficients.js';
import {
  backwardWorkgroups, columnStats, forms, gramTiles, gramWorkgroups, lossTerms, statsLayout, UNIFORM_BYTES, type Form,
} from './kernels.js';

const RESULT_FLOATS = 8;
const VIEWS = ['A', 'B'] as const;

/** Device buffers of one form (its Gram partials and, for backward, its matrices). */
interface FormBuffers {
  side: number;
  tiles: number;
  partials: Buffer;
  gramDims: [Buffer, Buffer];
  termParams: Buffer;
  /** The Gram matrix of each view (Coff or K), kept for backward; allocated on first need. */
  matrices?: [Buffer, Buffer];
}

/** Device buffers for one problem shape, reused across calls of that shape. */
interface Workspace {
  n: number;
  d: number;
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
  /** Allocated on the first backward. */
  backward?: { grads: [Buffer, Buffer]; staging: [Buffer, Buffer]; params: [Buffer, Buffer]; upstream: Buffer };
}

/**
 * Below this off-diagonal share of ||C||_F^2, the dual form's (total - diagonal) loses too much float32
 * accuracy (its relative error grows as 1/share), and the primal form is used instead.
 */
export const MIN_DUAL_SHARE = 0.5;

/** The cheaper form by multiply-adds: primal ~ n d^2, dual ~ n^2 d. */
export function cheaperForm(n: number, d: number): Form {
  return n < d ? 'dual' : 'primal';
}

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

function validateView(name: 'A' | 'B', x: unknown, n: number, d: number): Float32Array {
  if (!(x instanceof Float32Array)) {
    throw new ShapeError(`${name} must be a Float32Array, got ${x === null ? 'null' : (x as object)?.constructor?.name ?? typeof x}`);
  }
  if (x.length !== n * d) {
    throw new ShapeError(`${name} has ${x.length} elements; shape [${n}, ${d}] needs n*d = ${n * d}`);
  }
  return x;
}

/** The first non-finite element (in row-major order, view A first) from column_stats' flags. */
function firstNonFinite(flags: Uint32Array, d: number): NonFiniteError {
  for (const v of [0, 1] as const) {
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

const MiB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

export async function createVICRegLoss(options: VICRegOptions = {}): Promise<VICRegLoss> {
  const coefficients = resolveCoefficients(options);
  let handle: DeviceHandle = await acquireDevice(options.device);
  let lost: string | undefined;
  let destroyed = false;
  let workspace: Workspace | undefined;
  /** The forward that backward() pairs with. */
  let saved: { n: number; d: number; grad: boolean; form: Form } | undefined;
  let plan: ForwardPlan | undefined;
  /** Calls run one after another in the order they were made (backward pairs with the forward before it). */
  let tail: Promise<unknown> = Promise.resolve();

  const watchLoss = (h: DeviceHandle) => {
    h.device.lost.then((info) => {
      if (h === handle && !destroyed) lost = `the device was lost (${info.reason}${info.message ? `: ${info.message}` : ''})`;
    });
  };
  watchLoss(handle);

  function serialize<T>(call: () => Promise<T>): Promise<T> {
    const run = tail.then(call, call);
    tail = run.catch(() => undefined);
    return run;
  }

  async function ensureDevice(): Promise<GPUDevice> {
    if (destroyed) throw new StateError('this VICReg loss was destroyed');
    if (lost) {
      if (!handle.owned) throw new DeviceError(`${lost}; the device was passed in by the caller, so it cannot be replaced`);
      // An engine that owns its device starts over on a fresh one.
      freeWorkspace();
      saved = undefined;
      handle = await acquireDevice();
      lost = undefined;
      watchLoss(handle);
    }
    return handle.device;
  }

  function checkBinding(what: string, bytes: number) {
    const limit = handle.device.limits.maxStorageBufferBindingSize;
    if (bytes > limit) {
      throw new LimitError(`${what} needs ${MiB(bytes)}, over the device's maxStorageBufferBindingSize of ${MiB(limit)}`);
    }
  }

  function freeWorkspace() {
    const ws = workspace;
    workspace = undefined;
    if (!ws) return;
    for (const b of [...ws.inputs, ws.stats, ws.flags, ws.flagsStaging, ws.result, ws.resultStaging, ws.statsDims, ws.placeholder]) destroyBuffer(b);
    for (const f of Object.values(ws.forms)) {
      for (const b of [f.partials, ...f.gramDims, f.termParams, ...(f.matrices ?? [])]) destroyBuffer(b);
    }
    if (ws.backward) for (const b of [...ws.backward.grads, ...ws.backward.staging, ...ws.backward.params, ws.backward.upstream]) destroyBuffer(b);
  }

  function workspaceFor(device: GPUDevice, n: number, d: number): Workspace {
    if (workspace && workspace.n === n && workspace.d === d) return workspace;
    freeWorkspace();
    checkBinding(`a ${n} x ${d} float32 view`, n * d * 4);
    const layout = statsLayout(d);
    const ws: Workspace = {
      n, d,
      inputs: [storageBuffer(device, 'A', n * d * 4), storageBuffer(device, 'B', n * d * 4)],
      stats: storageBuffer(device, 'column stats', layout.floats * 4),
      flags: storageBuffer(device, 'column flags', 4 * d * 4),
      flagsStaging: readbackBuffer(device, 'column flags readback', 4 * d * 4),
      result: storageBuffer(device, 'loss terms', RESULT_FLOATS * 4),
      resultStaging: readbackBuffer(device, 'loss terms readback', RESULT_FLOATS * 4),
      statsDims: uniformBuffer(device, 'column stats dims', UNIFORM_BYTES.dims),
      placeholder: storageBuffer(device, 'no matrix', 16),
      forms: {},
    };
    workspace = ws;
    device.queue.writeBuffer(ws.statsDims.gpu, 0, new Uint32Array([n, d]));
    return ws;
  }

  function formBuffers(device: GPUDevice, ws: Workspace, form: Form, keepMatrix: boolean): FormBuffers {
    const { n, d } = ws;
    let f = ws.forms[form];
    if (!f) {
      const side = forms[form].side(n, d);
      const tiles = gramTiles(side);
      f = {
        side, tiles,
        partials: storageBuffer(device, `${form} gram partials`, 2 * tiles * tiles * 4),
        gramDims: [uniformBuffer(device, `${form} gram dims A`, UNIFORM_BYTES.gramDims), uniformBuffer(device, `${form} gram dims B`, UNIFORM_BYTES.gramDims)],
        termParams: uniformBuffer(device, `${form} loss term params`, UNIFORM_BYTES.termParams),
      };
      ws.forms[form] = f;
      const layout = statsLayout(d);
      for (const v of [0, 1] as const) {
        device.queue.writeBuffer(f.gramDims[v].gpu, 0, new Uint32Array([n, d, tiles, v * tiles * tiles, layout.shift[v], layout.center[v], 0, 0]));
      }
      const term = new ArrayBuffer(UNIFORM_BYTES.termParams);
      new Uint32Array(term, 0, 4).set([n, d, tiles * tiles, form === 'dual' ? 1 : 0]);
      new Float32Array(term, 16, 8).set([coefficients.lambda, coefficients.mu, coefficients.nu, coefficients.gamma,
        coefficients.eps, varianceScale(coefficients.preset), 0, 0]);
      device.queue.writeBuffer(f.termParams.gpu, 0, term);
    }
    if (keepMatrix && !f.matrices) {
      const bytes = f.side * f.side * 4;
      checkBinding(`the ${f.side} x ${f.side} ${form === 'dual' ? 'Gram' : 'covariance'} matrix kept for backward`, bytes);
      f.matrices = [storageBuffer(device, `${form} matrix A`, bytes), storageBuffer(device, `${form} matrix B`, bytes)];
    }
    return f;
  }

  /** One forward in the given form: statistics, both Gram reductions, the terms; read back. */
  async function runForward(device: GPUDevice, ws: Workspace, form: Form, keepMatrix: boolean): Promise<Float32Array> {
    const { d } = ws;
    const f = formBuffers(device, ws, form, keepMatrix);
    const [statsPipe, gramPipe, termsPipe] = await Promise.all([
      pipeline(device, columnStats.spec),
      pipeline(device, forms[form].gram(keepMatrix)),
      pipeline(device, lossTerms.spec),
    ]);
    const encoder = device.createCommandEncoder({ label: `vicreg forward (${form})` });
    encodeDispatch(device, encoder, {
      label: 'column_stats', pipeline: statsPipe, workgroups: columnStats.workgroups(d),
      bindings: [ws.inputs[0].gpu, ws.inputs[1].gpu, ws.stats.gpu, ws.flags.gpu, ws.statsDims.gpu],
    });
    for (const v of [0, 1] as const) {
      encodeDispatch(device, encoder, {
        label: `${form} gram ${VIEWS[v]}`, pipeline: gramPipe, workgroups: gramWorkgroups(f.side),
        bindings: [ws.inputs[v].gpu, ws.stats.gpu, f.partials.gpu, (f.matrices?.[v] ?? ws.placeholder).gpu, f.gramDims[v].gpu],
      });
    }
    encodeDispatch(device, encoder, {
      label: 'loss_terms', pipeline: termsPipe, workgroups: lossTerms.workgroups(),
      bindings: [ws.stats.gpu, ws.flags.gpu, f.partials.gpu, ws.result.gpu, f.termParams.gpu],
    });
    const [bytes] = await readback(device, encoder, [{ source: ws.result.gpu, staging: ws.resultStaging, bytes: RESULT_FLOATS * 4 }]);
    return new Float32Array(bytes);
  }

  async function forward(a: Float32Array, b: Float32Array, shape: readonly [number, number], opts: ForwardOptions = {}): Promise<VICRegTerms> {
    const device = await ensureDevice();
    saved = undefined;
    const [n, d] = validateShape(shape);
    const views: [Float32Array, Float32Array] = [validateView('A', a, n, d), validateView('B', b, n, d)];
    const grad = opts.grad ?? true;
    return withErrorScopes(device, 'forward', async () => {
      const ws = workspaceFor(device, n, d);
      for (const v of [0, 1] as const) device.queue.writeBuffer(ws.inputs[v].gpu, 0, views[v] as Float32Array<ArrayBuffer>);
      let form: Form = coefficients.form === 'auto' ? cheaperForm(n, d) : coefficients.form;
      let r = await runForward(device, ws, form, grad);
      const share: [number, number] = form === 'dual' ? [r[5], r[6]] : [1, 1];
      const flagBits = r[4];
      if (flagBits !== 0) {
        const [flags] = await readback(device, device.createCommandEncoder(), [{ source: ws.flags.gpu, staging: ws.flagsStaging, bytes: 4 * d * 4 }]);
        throw firstNonFinite(new Uint32Array(flags), d);
      }
      const fellBack = form === 'dual' && !(Math.min(...share) >= MIN_DUAL_SHARE);
      if (fellBack) {
        form = 'primal';
        r = await runForward(device, ws, form, grad);
      }
      const terms: VICRegTerms = { loss: r[0], invariance: r[1], variance: r[2], covariance: r[3] };
      for (const [name, value] of Object.entries(terms)) {
        if (!Number.isFinite(value)) {
          throw new OverflowError(`the ${name} term overflowed float32 (${value}) although every input is finite: inputs are too large (keep |values| well below 1e9; see README, "Guarantees")`);
        }
      }
      saved = { n, d, grad, form };
      plan = { n, d, form, fellBack, offDiagonalShare: share };
      return terms;
    });
  }

  async function backward(scale = 1): Promise<VICRegGradients> {
    const device = await ensureDevice();
    if (typeof scale !== 'number' || !Number.isFinite(scale)) {
      throw new OptionError(`backward scale must be a finite number, got ${String(scale)}`);
    }
    if (!saved) throw new StateError('backward() needs a successful forward() first');
    if (!saved.grad) throw new StateError('the last forward() was called with { grad: false }; call forward() again to get gradients');
    const { n, d, form } = saved;
    const ws = workspace!;
    const matrices = ws.forms[form]!.matrices!;
    return withErrorScopes(device, 'backward', async () => {
      ws.backward ??= {
        grads: [storageBuffer(device, 'grad A', n * d * 4), storageBuffer(device, 'grad B', n * d * 4)],
        staging: [readbackBuffer(device, 'grad A readback', n * d * 4), readbackBuffer(device, 'grad B readback', n * d * 4)],
        params: [uniformBuffer(device, 'backward params A', UNIFORM_BYTES.backwardParams), uniformBuffer(device, 'backward params B', UNIFORM_BYTES.backwardParams)],
        upstream: storageBuffer(device, 'upstream gradient', 4),
      };
      const bw = ws.backward;
      const backPipe = await pipeline(device, forms[form].backward);
      const layout = statsLayout(d);
      const k = gradientCoefficients(coefficients, n, d);
      const encoder = device.createCommandEncoder({ label: `vicreg backward (${form})` });
      device.queue.writeBuffer(bw.upstream.gpu, 0, new Float32Array([scale]));
      for (const v of [0, 1] as const) {
        const params = new ArrayBuffer(UNIFORM_BYTES.backwardParams);
        new Uint32Array(params, 0, 8).set([n, d, layout.shift[v], layout.center[v], layout.variance[v], 0, 0, 0]);
        new Float32Array(params, 32, 8).set([k.invCoef, k.varWeight, k.covCoef, coefficients.gamma, coefficients.eps, 0, 0, 0]);
        device.queue.writeBuffer(bw.params[v].gpu, 0, params);
        encodeDispatch(device, encoder, {
          label: `${form} backward ${VIEWS[v]}`, pipeline: backPipe, workgroups: backwardWorkgroups(n, d),
          bindings: [ws.inputs[v].gpu, ws.inputs[1 - v].gpu, ws.stats.gpu, matrices[v].gpu, bw.grads[v].gpu, bw.params[v].gpu, bw.upstream.gpu],
        });
      }
      const [ga, gb] = await readback(device, encoder, [0, 1].map((v) => ({ source: bw.grads[v].gpu, staging: bw.staging[v], bytes: n * d * 4 })));
      return { gradA: new Float32Array(ga), gradB: new Float32Array(gb) };
    });
  }

  return {
    forward: (a, b, shape, opts) => serialize(() => forward(a, b, shape, opts)),
    backward: (scale) => serialize(() => backward(scale)),
    get adapterName() { return handle.adapterName; },
    options: coefficients,
    get lastPlan() { return plan; },
    destroy() {
      if (destroyed) return;
      destroyed = true;
      freeWorkspace();
      if (handle.owned) handle.device.destroy();
    },
  };
}
