// Where a call's time goes, for `npm run bench -- --phases`: the engine's forward and backward on host
// arrays, as the loss bench times them, with the device's and queue's methods wrapped to take timestamps
// (the engine is not changed; the wrappers add a few performance.now() calls a dispatch). Per step, the
// median over --runs calls after --warmup of:
//   upload      queue.writeBuffer calls (the views, the small uniforms)
//   bind groups device.createBindGroup calls (how many, how long; the warm-up's are reported apart, since
//               the engine keeps its bind groups and a repeated call makes none)
//   submit      queue.submit calls
//   wait        time with a device wait pending (mapAsync, onSubmittedWorkDone, popErrorScope), overlaps merged
//   host        the rest of the call: encoding, checks, the copies out of mapped ranges
//   after map   from the last mapAsync's resolution to the call's return (the copies out of the mapped
//               ranges, the error scopes' pops)
// and the dispatches the step encodes. Only timing is of interest: the loss bench and the tests check results.
import { createVICRegLoss, type VICRegLoss } from '../src/index.js';
import { randomViews } from '../test/reference/float64.js';
import { timingStats } from './measure.js';
import type { Form, Preset, Variant } from '../src/types.js';

export interface PhaseTimes {
  totalMs: number;
  uploadMs: number;
  bindGroupMs: number;
  bindGroups: number;
  submitMs: number;
  waitMs: number;
  hostMs: number;
  afterMapMs: number;
  dispatches: number;
}

export interface PhaseRow {
  n: number;
  d: number;
  step: 'forward' | 'backward';
  form: string;
  variant: string;
  runs: number;
  /** Medians over the timed calls, field by field. */
  median: PhaseTimes;
  /** The first (warm-up) call's bind groups: what every call made before the engine kept them. */
  firstCallBindGroups: number;
  firstCallBindGroupMs: number;
}

interface Interval { start: number; end: number }

/** The events of one step, filled by the wrappers while `recording` is set. */
class Recorder {
  recording = false;
  upload = 0;
  bindGroupMs = 0;
  bindGroups = 0;
  submit = 0;
  dispatches = 0;
  waits: Interval[] = [];
  maps: Interval[] = [];
  reset(): void {
    this.upload = this.bindGroupMs = this.bindGroups = this.submit = this.dispatches = 0;
    this.waits = [];
    this.maps = [];
  }
  /** Times a synchronous call into `field`. */
  sync<T>(field: 'upload' | 'bindGroupMs' | 'submit', call: () => T): T {
    if (!this.recording) return call();
    const start = performance.now();
    try {
      return call();
    } finally {
      this[field] += performance.now() - start;
    }
  }
  wait<T>(promise: Promise<T>, map = false): Promise<T> {
    if (!this.recording) return promise;
    const interval = { start: performance.now(), end: Infinity };
    this.waits.push(interval);
    if (map) this.maps.push(interval);
    const done = () => { interval.end = performance.now(); };
    promise.then(done, done);
    return promise;
  }
}

/** Wraps `target[name]` (an own property shadowing the prototype's method). */
function wrap<T extends object, K extends keyof T>(target: T, name: K, make: (original: T[K]) => T[K]): void {
  const original = (target[name] as (...args: unknown[]) => unknown).bind(target) as T[K];
  Object.defineProperty(target, name, { value: make(original), configurable: true, writable: true });
}

function instrument(device: GPUDevice, rec: Recorder): void {
  const q = device.queue;
  wrap(q, 'writeBuffer', (f) => ((...args: Parameters<GPUQueue['writeBuffer']>) => rec.sync('upload', () => f(...args))) as typeof f);
  wrap(q, 'submit', (f) => ((...args: Parameters<GPUQueue['submit']>) => rec.sync('submit', () => f(...args))) as typeof f);
  wrap(q, 'onSubmittedWorkDone', (f) => (() => rec.wait(f())) as typeof f);
  wrap(device, 'popErrorScope', (f) => (() => rec.wait(f())) as typeof f);
  wrap(device, 'createBindGroup', (f) => ((descriptor: GPUBindGroupDescriptor) => rec.sync('bindGroupMs', () => {
    if (rec.recording) rec.bindGroups += 1;
    return f(descriptor);
  })) as typeof f);
  wrap(device, 'createBuffer', (f) => ((descriptor: GPUBufferDescriptor) => {
    const buffer = f(descriptor);
    wrap(buffer, 'mapAsync', (m) => ((...args: Parameters<GPUBuffer['mapAsync']>) => rec.wait(m(...args), true)) as typeof m);
    return buffer;
  }) as typeof f);
  wrap(device, 'createCommandEncoder', (f) => ((descriptor?: GPUCommandEncoderDescriptor) => {
    const encoder = f(descriptor);
    wrap(encoder, 'beginComputePass', (b) => ((d?: GPUComputePassDescriptor) => {
      const pass = b(d);
      wrap(pass, 'dispatchWorkgroups', (w) => ((...args: Parameters<GPUComputePassEncoder['dispatchWorkgroups']>) => {
        if (rec.recording) rec.dispatches += 1;
        return w(...args);
      }) as typeof w);
      return pass;
    }) as typeof b);
    return encoder;
  }) as typeof f);
}

/** Length of the union of the intervals. */
function merged(intervals: Interval[]): number {
  const sorted = [...intervals].sort((x, y) => x.start - y.start);
  let ms = 0;
  let [from, to] = [0, -Infinity];
  for (const { start, end } of sorted) {
    if (start > to) {
      if (to > from) ms += to - from;
      [from, to] = [start, end];
    } else {
      to = Math.max(to, end);
    }
  }
  if (to > from) ms += to - from;
  return ms;
}

async function step(rec: Recorder, work: () => Promise<unknown>): Promise<PhaseTimes> {
  rec.reset();
  rec.recording = true;
  const start = performance.now();
  try {
    await work();
  } finally {
    rec.recording = false;
  }
  const end = performance.now();
  const waitMs = merged(rec.waits);
  const lastMap = Math.max(...rec.maps.map((m) => m.end));
  const totalMs = end - start;
  return {
    totalMs,
    uploadMs: rec.upload,
    bindGroupMs: rec.bindGroupMs,
    bindGroups: rec.bindGroups,
    submitMs: rec.submit,
    waitMs,
    hostMs: totalMs - rec.upload - rec.bindGroupMs - rec.submit - waitMs,
    afterMapMs: rec.maps.length ? end - lastMap : 0,
    dispatches: rec.dispatches,
  };
}

function medians(samples: PhaseTimes[]): PhaseTimes {
  const keys = Object.keys(samples[0]) as (keyof PhaseTimes)[];
  return Object.fromEntries(keys.map((k) => [k, timingStats(samples.map((s) => s[k])).medianMs])) as unknown as PhaseTimes;
}

export interface PhaseOptions {
  runs: number;
  warmup: number;
  preset: Preset;
  form: 'auto' | Form;
  variant: 'auto' | 'measure' | Variant;
  seed: number;
}

/** Forward and backward on host arrays at each shape, each call split into its phases. */
export async function benchPhases(shapes: [number, number][], options: PhaseOptions, progress: (message: string) => void):
  Promise<{ adapter: string; rows: PhaseRow[] }> {
  const rows: PhaseRow[] = [];
  let adapter = 'unknown';
  for (const [n, d] of shapes) {
    const vic: VICRegLoss = await createVICRegLoss({ preset: options.preset, form: options.form, variant: options.variant });
    adapter = vic.adapterName;
    const rec = new Recorder();
    instrument(vic.device, rec);
    const views = randomViews(n, d, options.seed);
    const shape: [number, number] = [n, d];
    const forward = () => vic.forward(views.a, views.b, shape);
    const backward = () => vic.backward();
    try {
      const samples = { forward: [] as PhaseTimes[], backward: [] as PhaseTimes[] };
      let first: { forward: PhaseTimes; backward: PhaseTimes } | undefined;
      for (let i = 0; i < options.warmup + options.runs; i++) {
        const f = await step(rec, forward);
        const g = await step(rec, backward);
        first ??= { forward: f, backward: g };
        if (i >= options.warmup) {
          samples.forward.push(f);
          samples.backward.push(g);
        }
      }
      const plan = vic.lastPlan;
      for (const name of ['forward', 'backward'] as const) {
        rows.push({
          n, d, step: name, form: plan?.form ?? '?', variant: plan?.variant ?? options.variant, runs: options.runs,
          median: medians(samples[name]),
          firstCallBindGroups: first![name].bindGroups, firstCallBindGroupMs: first![name].bindGroupMs,
        });
      }
      progress(`${n}x${d}: forward ${rows.at(-2)!.median.totalMs.toFixed(2)} ms, backward ${rows.at(-1)!.median.totalMs.toFixed(2)} ms`);
    } finally {
      vic.destroy();
    }
  }
  return { adapter, rows };
}

const ms = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

export function phaseTable(rows: PhaseRow[]): string {
  const lines = [
    '| n x d | step | form / variant | total ms | upload | bind groups (ms) | submit | wait | host | after map | dispatches | first call: bind groups (ms) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const m = r.median;
    lines.push(`| ${r.n} x ${r.d} | ${r.step} | ${r.form} / ${r.variant} | ${ms(m.totalMs)} | ${ms(m.uploadMs)} | ${m.bindGroups} (${ms(m.bindGroupMs)}) | ` +
      `${ms(m.submitMs)} | ${ms(m.waitMs)} | ${ms(m.hostMs)} | ${ms(m.afterMapMs)} | ${m.dispatches} | ${r.firstCallBindGroups} (${ms(r.firstCallBindGroupMs)}) |`);
  }
  return lines.join('\n');
}
