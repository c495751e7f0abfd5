// The VICReg loss built from the kernels: forward (column statistics, the two covariance Gram
// reductions, the loss terms) and backward (one fused gradient kernel per view).
import { DeviceError, LimitError, NonFiniteError, OverflowError, ShapeError, StateError, VICRegError } from '../errors.js';
import { acquireDevice, type DeviceHandle } from '../runtime/device.js';
import {
  destroyBuffer, encodeDispatch, pipeline, readback, readbackBuffer, storageBuffer, uniformBuffer, withErrorScopes,
  type Buffer,
} from '../runtime/gpu.js';
import type { ForwardOptions, VICRegGradients, VICRegLoss, VICRegOptions, VICRegTerms } from '../types.js';
import { gradientCoefficients, resolveCoefficients, varianceScale, type Coefficients } from './coefficients.js';
import { columnStats, covarianceBackward, gramOffDiagSquares, lossTerms, statsLayout } from './kernels.js';

const RESULT_FLOATS = 8;
const VIEWS = ['A', 'B'] as const;

/** Device buffers for one problem shape, reused across calls of that shape. */
interface Workspace {
  n: number;
  d: number;
  tiles: number;
  inputs: [Buffer, Buffer];
  stats: Buffer;
  flags: Buffer;
  partials: Buffer;
  result: Buffer;
  resultStaging: Buffer;
  statsDims: Buffer;
  gramDims: [Buffer, Buffer];
  termParams: Buffer;
  /** Allocated on the first forward that keeps what backward needs. */
  backward?: {
    covOffDiag: [Buffer, Buffer];
    grads: [Buffer, Buffer];
    staging: [Buffer, Buffer];
    params: [Buffer, Buffer];
  };
  /** Bound in place of covOffDiag by a forward that writes no matrix. */
  placeholder: Buffer;
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

function findNonFinite(views: [Float32Array, Float32Array], bits: number, d: number): NonFiniteError | undefined {
  for (const v of [0, 1] as const) {
    if (!(bits & (1 << v))) continue;
    const x = views[v];
    for (let k = 0; k < x.length; k++) {
      if (!Number.isFinite(x[k])) return new NonFiniteError(VIEWS[v], Math.floor(k / d), k % d, x[k]);
    }
  }
  return undefined;
}

const MiB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

export async function createVICRegLoss(options: VICRegOptions = {}): Promise<VICRegLoss> {
  const coefficients = resolveCoefficients(options);
  let handle: DeviceHandle = await acquireDevice(options.device);
  let lost: string | undefined;
  let destroyed = false;
  let workspace: Workspace | undefined;
  /** The forward that backward() pairs with. */
  let saved: { n: number; d: number; grad: boolean } | undefined;
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
    for (const b of [...ws.inputs, ws.stats, ws.flags, ws.partials, ws.result, ws.resultStaging, ws.statsDims,
      ...ws.gramDims, ws.termParams, ws.placeholder]) destroyBuffer(b);
    if (ws.backward) {
      const bw = ws.backward;
      for (const b of [...bw.covOffDiag, ...bw.grads, ...bw.staging, ...bw.params]) destroyBuffer(b);
    }
  }

  function workspaceFor(device: GPUDevice, n: number, d: number): Workspace {
    if (workspace && workspace.n === n && workspace.d === d) return workspace;
    freeWorkspace();
    checkBinding(`a ${n} x ${d} float32 view`, n * d * 4);
    const tiles = gramOffDiagSquares.tiles(d);
    const layout = statsLayout(d);
    const ws: Workspace = {
      n, d, tiles,
      inputs: [storageBuffer(device, 'A', n * d * 4), storageBuffer(device, 'B', n * d * 4)],
      stats: storageBuffer(device, 'column stats', layout.floats * 4),
      flags: storageBuffer(device, 'column flags', d * 4),
      partials: storageBuffer(device, 'gram partials', 2 * tiles * tiles * 4),
      result: storageBuffer(device, 'loss terms', RESULT_FLOATS * 4),
      resultStaging: readbackBuffer(device, 'loss terms readback', RESULT_FLOATS * 4),
      statsDims: uniformBuffer(device, 'column stats dims', 8),
      gramDims: [uniformBuffer(device, 'gram dims A', 32), uniformBuffer(device, 'gram dims B', 32)],
      termParams: uniformBuffer(device, 'loss term params', 48),
      placeholder: storageBuffer(device, 'no matrix', 16),
    };
    workspace = ws;
    const q = device.queue;
    q.writeBuffer(ws.statsDims.gpu, 0, new Uint32Array([n, d]));
    for (const v of [0, 1] as const) {
      q.writeBuffer(ws.gramDims[v].gpu, 0, new Uint32Array([n, d, tiles, layout.mean[v], v * tiles * tiles, 0, 0, 0]));
    }
    const term = new ArrayBuffer(48);
    new Uint32Array(term, 0, 4).set([n, d, tiles * tiles, 0]);
    new Float32Array(term, 16, 8).set([coefficients.lambda, coefficients.mu, coefficients.nu, coefficients.gamma,
      coefficients.eps, varianceScale(coefficients.preset), 0, 0]);
    q.writeBuffer(ws.termParams.gpu, 0, term);
    return ws;
  }

  function backwardBuffers(device: GPUDevice, ws: Workspace) {
    if (ws.backward) return ws.backward;
    const { n, d } = ws;
    checkBinding(`the ${d} x ${d} covariance matrix kept for backward`, d * d * 4);
    ws.backward = {
      covOffDiag: [storageBuffer(device, 'Coff A', d * d * 4), storageBuffer(device, 'Coff B', d * d * 4)],
      grads: [storageBuffer(device, 'grad A', n * d * 4), storageBuffer(device, 'grad B', n * d * 4)],
      staging: [readbackBuffer(device, 'grad A readback', n * d * 4), readbackBuffer(device, 'grad B readback', n * d * 4)],
      params: [uniformBuffer(device, 'backward params A', 48), uniformBuffer(device, 'backward params B', 48)],
    };
    return ws.backward;
  }

  async function forward(a: Float32Array, b: Float32Array, shape: readonly [number, number], opts: ForwardOptions = {}): Promise<VICRegTerms> {
    const device = await ensureDevice();
    saved = undefined;
    const [n, d] = validateShape(shape);
    const views: [Float32Array, Float32Array] = [validateView('A', a, n, d), validateView('B', b, n, d)];
    const grad = opts.grad ?? true;
    return withErrorScopes(device, 'forward', async () => {
      const ws = workspaceFor(device, n, d);
      const bw = grad ? backwardBuffers(device, ws) : undefined;
      const [statsPipe, gramPipe, termsPipe] = await Promise.all([
        pipeline(device, columnStats.spec),
        pipeline(device, gramOffDiagSquares.spec(grad)),
        pipeline(device, lossTerms.spec),
      ]);
      for (const v of [0, 1] as const) device.queue.writeBuffer(ws.inputs[v].gpu, 0, views[v] as Float32Array<ArrayBuffer>);
      const encoder = device.createCommandEncoder({ label: 'vicreg forward' });
      encodeDispatch(device, encoder, {
        label: 'column_stats', pipeline: statsPipe, workgroups: columnStats.workgroups(d),
        bindings: [ws.inputs[0].gpu, ws.inputs[1].gpu, ws.stats.gpu, ws.flags.gpu, ws.statsDims.gpu],
      });
      for (const v of [0, 1] as const) {
        encodeDispatch(device, encoder, {
          label: `gram_offdiag_squares ${VIEWS[v]}`, pipeline: gramPipe, workgroups: gramOffDiagSquares.workgroups(d),
          bindings: [ws.inputs[v].gpu, ws.stats.gpu, ws.partials.gpu, (bw ? bw.covOffDiag[v] : ws.placeholder).gpu, ws.gramDims[v].gpu],
        });
      }
      encodeDispatch(device, encoder, {
        label: 'loss_terms', pipeline: termsPipe, workgroups: lossTerms.workgroups(),
        bindings: [ws.stats.gpu, ws.flags.gpu, ws.partials.gpu, ws.result.gpu, ws.termParams.gpu],
      });
      const [bytes] = await readback(device, encoder, [{ source: ws.result.gpu, staging: ws.resultStaging, bytes: RESULT_FLOATS * 4 }]);
      const r = new Float32Array(bytes);
      const flagBits = r[4];
      if (flagBits !== 0) {
        throw findNonFinite(views, flagBits, d) ?? new DeviceError('the device flagged a non-finite input that the host copy does not have');
      }
      const terms: VICRegTerms = { loss: r[0], invariance: r[1], variance: r[2], covariance: r[3] };
      for (const [name, value] of Object.entries(terms)) {
        if (!Number.isFinite(value)) {
          throw new OverflowError(`the ${name} term overflowed float32 (${value}) although every input is finite: inputs are too large (keep |values| well below 1e9; see README, "Guarantees")`);
        }
      }
      saved = { n, d, grad };
      return terms;
    });
  }

  async function backward(scale = 1): Promise<VICRegGradients> {
    const device = await ensureDevice();
    if (typeof scale !== 'number' || !Number.isFinite(scale)) {
      throw new VICRegError('option', `backward scale must be a finite number, got ${String(scale)}`);
    }
    if (!saved) throw new StateError('backward() needs a successful forward() first');
    if (!saved.grad) throw new StateError('the last forward() was called with { grad: false }; call forward() again to get gradients');
    const { n, d } = saved;
    const ws = workspace!;
    const bw = ws.backward!;
    return withErrorScopes(device, 'backward', async () => {
      const backPipe = await pipeline(device, covarianceBackward.spec);
      const layout = statsLayout(d);
      const k = gradientCoefficients(coefficients, n, d);
      const encoder = device.createCommandEncoder({ label: 'vicreg backward' });
      for (const v of [0, 1] as const) {
        const params = new ArrayBuffer(48);
        new Uint32Array(params, 0, 4).set([n, d, layout.mean[v], layout.variance[v]]);
        new Float32Array(params, 16, 8).set([k.invCoef, k.varWeight, k.covCoef, coefficients.gamma, coefficients.eps, scale, 0, 0]);
        device.queue.writeBuffer(bw.params[v].gpu, 0, params);
        encodeDispatch(device, encoder, {
          label: `covariance_backward ${VIEWS[v]}`, pipeline: backPipe, workgroups: covarianceBackward.workgroups(n, d),
          bindings: [ws.inputs[v].gpu, ws.inputs[1 - v].gpu, ws.stats.gpu, bw.covOffDiag[v].gpu, bw.grads[v].gpu, bw.params[v].gpu],
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
    destroy() {
      if (destroyed) return;
      destroyed = true;
      freeWorkspace();
      if (handle.owned) handle.device.destroy();
    },
  };
}
