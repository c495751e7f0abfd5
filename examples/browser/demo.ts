// The browser demo: the VICReg loss and its gradients of a seeded batch on navigator.gpu, with timings,
// then a chart of the time of one forward + backward for a few shapes, ours against tfjs-webgpu.
// Query parameters: ?n=128&d=256&seed=1 (the batch), &shapes=64x128,128x256 (the chart's shapes),
// &bench=0 (no chart), &trainSteps=20 (the training button's steps).
// For test/browser.test.ts the results are published on window: __vicregResult (or { error }),
// __vicregGrads (both gradients of the main batch), __vicregBench (the chart's numbers, or { error }),
// __vicregTrain (the training button's record, or { error }).
import { createVICRegLoss, type VICRegLoss, type VICRegTerms } from 'vicreg-wgsl';
import { batchChecksum, DEFAULT_BATCH, makeBatch, norm } from './batch.js';
import type { TrainRecord } from '../train/run.js';

/** The chart's default shapes [n, d]. On a software adapter (SwiftShader) tfjs takes ~15 s a step at 256 x 1024. */
const BENCH_SHAPES: [number, number][] = [[64, 128], [128, 256], [256, 512], [256, 1024]];
/** Timed runs per measurement, after one warm-up run (pipeline creation); the median is reported. */
const REPEATS = 3;
/** A step slower than this (warm-up included) is timed once only: keeps the chart bearable on a CPU. */
const SLOW_MS = 1000;

export interface DemoResult {
  n: number;
  d: number;
  seed: number;
  /** batchChecksum of the inputs, so a test can tell it rebuilt the same batch. */
  checksum: [number, number];
  terms: VICRegTerms;
  gradNormA: number;
  gradNormB: number;
  adapter: string;
  form: string | undefined;
  warmupMs: number;
  forwardMs: number;
  backwardMs: number;
}

export interface BenchRow {
  n: number;
  d: number;
  oursMs: number;
  oursLoss: number;
  tfjsMs?: number;
  tfjsLoss?: number;
}

export interface BenchResult {
  rows: BenchRow[];
  /** The tfjs backend that ran, or why tfjs did not. */
  tfjs: { backend: string } | { error: string };
}

declare global {
  interface Window {
    __vicregResult?: DemoResult | { error: string };
    __vicregGrads?: { gradA: Float32Array; gradB: Float32Array };
    __vicregBench?: BenchResult | { error: string };
    __vicregTrain?: TrainRecord | { error: string };
  }
}

const $ = (id: string) => document.getElementById(id)!;
const status = (text: string) => { $('status').textContent = text; };
const ms = (value: number) => `${value < 10 ? value.toFixed(2) : value.toFixed(1)} ms`;

function intParam(params: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const text = params.get(name);
  if (text === null) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`?${name}= must be an integer in [${min}, ${max}], got ${JSON.stringify(text)}`);
  }
  return value;
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)];
}

function shapesParam(params: URLSearchParams): [number, number][] {
  const text = params.get('shapes');
  if (text === null) return BENCH_SHAPES;
  return text.split(',').map((item) => {
    const match = /^(\d+)x(\d+)$/.exec(item.trim());
    const [n, d] = match ? [Number(match[1]), Number(match[2])] : [0, 0];
    if (!(n >= 2 && n <= 4096 && d >= 1 && d <= 4096)) throw new Error(`?shapes= takes NxD,NxD,... (2 <= N, 1 <= D, both <= 4096), got ${JSON.stringify(item)}`);
    return [n, d];
  });
}

/** Runs `step` once untimed (warm-up), then REPEATS times (once if slow); the median time and the last value. */
async function measure<T>(step: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = performance.now();
  let value = await step();
  const repeats = performance.now() - start > SLOW_MS ? 1 : REPEATS;
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const start = performance.now();
    value = await step();
    times.push(performance.now() - start);
  }
  return { ms: median(times), value };
}

async function runMain(vic: VICRegLoss, n: number, d: number, seed: number): Promise<DemoResult> {
  const batch = makeBatch(n, d, seed);
  // The first forward + backward of a shape creates pipelines and buffers: timed apart.
  let start = performance.now();
  await vic.forward(batch.a, batch.b, [n, d]);
  await vic.backward();
  const warmupMs = performance.now() - start;

  const forwardTimes: number[] = [];
  const backwardTimes: number[] = [];
  let terms!: VICRegTerms;
  let grads!: { gradA: Float32Array; gradB: Float32Array };
  for (let r = 0; r < REPEATS; r++) {
    start = performance.now();
    terms = await vic.forward(batch.a, batch.b, [n, d]);
    forwardTimes.push(performance.now() - start);
    start = performance.now();
    grads = await vic.backward();
    backwardTimes.push(performance.now() - start);
  }
  window.__vicregGrads = grads;
  return {
    n, d, seed, checksum: batchChecksum(batch), terms,
    gradNormA: norm(grads.gradA), gradNormB: norm(grads.gradB),
    adapter: vic.adapterName, form: vic.lastPlan?.form,
    warmupMs, forwardMs: median(forwardTimes), backwardMs: median(backwardTimes),
  };
}

function showMain(r: DemoResult): void {
  const rows: [string, string][] = [
    ['loss', r.terms.loss.toPrecision(7)],
    ['invariance', r.terms.invariance.toPrecision(7)],
    ['variance', r.terms.variance.toPrecision(7)],
    ['covariance', r.terms.covariance.toPrecision(7)],
    ['|dL/dA|', r.gradNormA.toPrecision(7)],
    ['|dL/dB|', r.gradNormB.toPrecision(7)],
  ];
  $('batch').textContent = `n = ${r.n}, d = ${r.d}, seed ${r.seed}: A Gaussian, B = A + 0.1 noise`;
  $('terms').innerHTML = rows.map(([name, value]) => `<tr><th>${name}</th><td>${value}</td></tr>`).join('');
  $('adapter').textContent = `${r.adapter} (covariance in the ${r.form} form)`;
  $('timings').textContent = `forward ${ms(r.forwardMs)}, backward ${ms(r.backwardMs)} ` +
    `(median of ${REPEATS}; first run with pipeline creation ${ms(r.warmupMs)})`;
  $('result').hidden = false;
}

async function runBench(vic: VICRegLoss, shapes: [number, number][]): Promise<BenchResult> {
  const rows: BenchRow[] = [];
  for (const [n, d] of shapes) {
    status(`Chart: vicreg-wgsl, ${n} x ${d}…`);
    const { a, b } = makeBatch(n, d, 1);
    const ours = await measure(async () => {
      const terms = await vic.forward(a, b, [n, d]);
      await vic.backward();
      return terms.loss;
    });
    rows.push({ n, d, oursMs: ours.ms, oursLoss: ours.value });
  }

  // tfjs is optional for the page: if it cannot run here, the chart shows ours alone and says why.
  let tfjs: BenchResult['tfjs'];
  try {
    status('Chart: loading tfjs…');
    const { initTfjs, tfjsVICReg } = await import('./tfjs-vicreg.js');
    const backend = await initTfjs();
    const reference = tfjsVICReg(vic.options);
    for (const row of rows) {
      status(`Chart: tfjs-${backend}, ${row.n} x ${row.d}…`);
      const { a, b } = makeBatch(row.n, row.d, 1);
      const result = await measure(async () => (await reference.step(a, b, row.n, row.d)).loss);
      row.tfjsMs = result.ms;
      row.tfjsLoss = result.value;
    }
    reference.dispose();
    tfjs = { backend };
  } catch (error) {
    tfjs = { error: (error as Error).message };
  }
  return { rows, tfjs };
}

/** Horizontal bars on a log time axis: one group per shape, ours and tfjs. Hand-written SVG. */
function chartSvg({ rows, tfjs }: BenchResult): string {
  const series = [
    { label: 'vicreg-wgsl', color: '#2b6cb0', get: (r: BenchRow) => r.oursMs },
    { label: 'backend' in tfjs ? `tfjs-${tfjs.backend}` : 'tfjs (did not run)', color: '#dd6b20', get: (r: BenchRow) => r.tfjsMs },
  ];
  const values = rows.flatMap((r) => series.map((s) => s.get(r))).filter((v): v is number => v !== undefined && v > 0);
  const lo = Math.floor(Math.log10(Math.min(...values)));
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...values))));
  const [left, right, top, bar, group] = [80, 70, 34, 14, 40];
  const width = 640;
  const height = top + rows.length * group + 24;
  const x = (v: number) => left + ((width - left - right) * (Math.log10(v) - lo)) / (hi - lo);

  const parts: string[] = [];
  for (let p = lo; p <= hi; p++) { // a grid line per decade
    const gx = x(10 ** p).toFixed(1);
    parts.push(`<line x1="${gx}" x2="${gx}" y1="${top - 6}" y2="${height - 20}" stroke="#ddd"/>`,
      `<text x="${gx}" y="${height - 6}" text-anchor="middle">${10 ** p >= 1 ? 10 ** p : (10 ** p).toFixed(-p)} ms</text>`);
  }
  series.forEach((s, i) => {
    parts.push(`<rect x="${left + i * 150}" y="6" width="12" height="12" fill="${s.color}"/>`,
      `<text x="${left + i * 150 + 16}" y="16">${s.label}</text>`);
  });
  rows.forEach((r, g) => {
    const y0 = top + g * group;
    parts.push(`<text x="${left - 8}" y="${y0 + bar + 4}" text-anchor="end">${r.n} x ${r.d}</text>`);
    series.forEach((s, i) => {
      const v = s.get(r);
      if (v === undefined) return;
      const y = y0 + i * (bar + 2);
      const w = Math.max(1, x(v) - left);
      parts.push(`<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${bar}" fill="${s.color}"/>`,
        `<text x="${left + w + 4}" y="${y + bar - 3}">${ms(v)}</text>`);
    });
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-size="12" ` +
    `font-family="sans-serif" role="img" aria-label="time per forward + backward">${parts.join('')}</svg>`;
}

function showBench(bench: BenchResult): void {
  $('chart').innerHTML = chartSvg(bench);
  const note = 'error' in bench.tfjs
    ? `tfjs did not run: ${bench.tfjs.error}`
    : `Host arrays in, loss and both gradients back on the host; median of ${REPEATS} after a warm-up (one run ` +
      `when slower than ${SLOW_MS / 1000} s). vicreg-wgsl takes the cheaper of the d x d and n x n forms; tfjs ` +
      'builds the d x d covariance as the loss is written. ' +
      `Largest relative difference of the losses, ours vs tfjs: ${Math.max(...bench.rows.map(
        (r) => Math.abs((r.tfjsLoss ?? NaN) - r.oursLoss) / Math.abs(r.oursLoss))).toExponential(1)}.`;
  $('chart-note').textContent = note;
}

async function main(): Promise<void> {
  const params = new URLSearchParams(location.search);
  let vic: VICRegLoss | undefined;
  let shapes: [number, number][] = [];
  try {
    const n = intParam(params, 'n', DEFAULT_BATCH.n, 2, 4096);
    const d = intParam(params, 'd', DEFAULT_BATCH.d, 1, 4096);
    const seed = intParam(params, 'seed', DEFAULT_BATCH.seed, 0, 2 ** 32 - 1);
    shapes = shapesParam(params);
    if (!navigator.gpu) {
      throw new Error('this browser has no WebGPU (navigator.gpu is missing): use a recent Chrome or Edge, ' +
        'on localhost or https; on Linux, start Chrome with --enable-unsafe-webgpu --enable-features=Vulkan');
    }
    status(`Computing the loss of a ${n} x ${d} batch…`);
    vic = await createVICRegLoss();
    const result = await runMain(vic, n, d, seed);
    showMain(result);
    window.__vicregResult = result;
  } catch (error) {
    status(`Error: ${(error as Error).message}`);
    window.__vicregResult = { error: (error as Error).message };
    vic?.destroy();
    return;
  }

  if (params.get('bench') === '0') {
    status('Done.');
    vic.destroy();
    return;
  }
  try {
    const bench = await runBench(vic, shapes);
    showBench(bench);
    window.__vicregBench = bench;
    status('Done.');
  } catch (error) {
    status(`Chart error: ${(error as Error).message}`);
    window.__vicregBench = { error: (error as Error).message };
  } finally {
    vic.destroy();
  }
}

/** The training button: its own engine, and the training code loaded only when pressed. */
function setUpTraining(params: URLSearchParams): void {
  const button = $('train') as HTMLButtonElement;
  button.addEventListener('click', async () => {
    button.disabled = true;
    const trainStatus = (text: string) => { $('train-status').textContent = text; };
    let vic: VICRegLoss | undefined;
    try {
      const steps = params.get('trainSteps') === null ? undefined : intParam(params, 'trainSteps', 0, 1, 100_000);
      if (!navigator.gpu) throw new Error('this browser has no WebGPU (navigator.gpu is missing)');
      vic = await createVICRegLoss();
      const { trainOnPage } = await import('./train-demo.js');
      const record = await trainOnPage(vic, steps, trainStatus, $('train-result'));
      trainStatus(`Done: ${record.steps} steps on ${record.adapter}.`);
      window.__vicregTrain = record;
    } catch (error) {
      trainStatus(`Error: ${(error as Error).message}`);
      window.__vicregTrain = { error: (error as Error).message };
    } finally {
      vic?.destroy();
      button.disabled = false;
    }
  });
}

setUpTraining(new URLSearchParams(location.search));
void main();
