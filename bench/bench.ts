// The vicreg-wgsl benchmark: forward + backward (and forward-only) time of the engine per shape, its
// flop rate, its buffer memory and the form it chose, against the same loss in tfjs-backend-webgpu on
// the same adapter, with every posted number checked against a reference first.
//
//   npm run bench                      default shapes (the official 2048x8192 included)
//   npm run bench -- --skip-large      without 2048x8192
//   npm run bench -- --quick           64x256 and 128x512, for CI (well under a minute)
//   npm run bench -- --shapes 256x1024,512x2048 --runs 7 --no-tfjs
//   npm run bench -- --quick --resident   also time inputs and gradients left on the device
//
// Progress goes to stderr; the table to stdout; JSON, Markdown and SVG to --out (bench/results).
// Exit status: 0 when every row agreed with its references, 1 when a row disagreed or failed, 2 on bad
// arguments.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { bufferCounts, createVICRegLoss, quietly, setQuietPolling, type ForwardPlan, type VICRegLoss, type VICRegTerms } from '../src/index.js';
import { randomViews, resolveOptions, type ReferenceOptions, type ViewPair } from '../test/reference/float64.js';
import { halfView } from '../test/reference/half.js';
import { float64MultiplyAdds, float64SampledRows, float64VICReg } from './float64-reference.js';
import {
  compare, flopCounts, FLOAT64_TOLERANCE, FLOP_CONVENTION, gflops, judge, SAME_ENGINE_TOLERANCE, TFJS_TOLERANCE, timed,
  timingStats, type Comparison, type TermsAndGradients,
} from './measure.js';
import { kernelTable, markdownTable, writeKernelReports, writePhaseReports, writeReports, type BenchReport, type MachineInfo, type ShapeResult } from './report.js';
import { createTfjsReference, installNavigatorGpu, type TfjsReference, type TfjsResult } from './tfjs-reference.js';
import { benchKernels } from './kernels.js';
import { benchPhases, phaseTable } from './phases.js';
import { OPENBLAS_SETTLE_MS, startOpenblas, type OpenblasBaseline } from './openblas.js';
import { COLD_CHILD_FLAG, coldChild, coldFirstCall } from './cold.js';
import { VARIANT_NAMES, type Variant } from '../src/types.js';

const DEFAULT_SHAPES = '256x1024,1024x1024,128x4096,128x8192,2048x2048,2048x8192';
const HELP = `npm run bench -- [options]

  --shapes NxD,NxD,...   shapes to run (default ${DEFAULT_SHAPES})
  --quick                a small set for CI: 64x256,128x512
  --skip-large           leave out shapes of 2048x8192 elements or more (the official VICReg shape)
  --runs N               timed runs of ours per shape; the median is reported (default 5)
  --warmup N             untimed runs of ours first (default 1; compiles the pipelines)
  --tfjs-runs N          timed runs of tfjs, after one cold run (default 3)
  --tfjs-max-seconds S   skip tfjs for a shape when one run is estimated to take longer, and fit its
                         timed runs in this time (at least one) (default 60)
  --no-tfjs              do not run tfjs (checks fall back on float64 where cheap)
  --kernels              instead of the loss: time each Gram and backward kernel alone (both forms, every
                         variant the device runs) at --shapes, against the CPU's float32 peak (a 2048^3
                         OpenBLAS sgemm, when python3 has numpy); writes kernels.json and kernels.md
  --phases               instead of the loss bench: where a forward + backward call's time goes (uploads,
                         bind groups made, submits, device waits, host work, dispatches), medians of --runs
                         calls after --warmup, at --shapes with --variant/--form; writes phases.json and phases.md
  --openblas             also time bench/numpy_vicreg.py (float32 NumPy/OpenBLAS, standard d x d form,
                         self-checked against float64) per shape, one run after each of ours; needs
                         python3 with numpy
  --dawn-polling         ours' waits poll as Dawn does, spinning a core (setQuietPolling(false)); for measuring
                         what quietly() gives
  --tfjs-quiet           run tfjs's waits through quietly() too, as the engine's own waits run (by default
                         tfjs runs as it ships: under dawn.node its waits spin a CPU core; see README, API)
  --preset paper|official, --form auto|primal|dual   engine options (default paper, auto)
  --variant V            kernel variant: auto (default: the registry's order, untimed), measure (a timed
                         trial per shape class), tiled, subgroup, workgroup, shuffle or windows
  --no-cold              skip the cold first call per shape (a fresh process, shader cache off)
  --dtype float16        also time ours with float16 views and gradients (host arrays of binary16 bits),
                         alternating with the float32 runs; reports the ratio and the bytes moved per call
  --seed S               seed of the inputs (default 1)
  --out DIR              where latest.json, latest.md and latest.svg go (default bench/results)
  --resident             also time GPU-resident use: inputs uploaded once, forward on the GPUBuffers and
                         backward returning GPUBuffers; and encode() into caller-owned gradient buffers
  --swiftshader          run on SwiftShader, the CPU Vulkan driver of Debian's chromium package (subgroup size 4),
                         instead of the default adapter (sets VK_ICD_FILENAMES, as any run can)
  --help                 this text
`;

const QUICK_SHAPES = '64x256,128x512';
/** SwiftShader's Vulkan driver manifest, as Debian's chromium package installs it. */
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
/** --skip-large drops shapes this big or bigger (elements per view): the official 2048 x 8192. */
const LARGE_ELEMENTS = 2048 * 8192;
/** A full float64 check above this many multiply-adds takes too long in JS (~1 GMAC/s): sample instead. */
const FLOAT64_MAX_MULTIPLY_ADDS = 5e9;
/** Gradient rows the sampled float64 check recomputes (first, last and a few between). */
const SAMPLED_ROWS = 4;

// ---------------------------------------------------------------------------------------------------
// Command line.

class UsageError extends Error {}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);

interface Options {
  shapes: [number, number][];
  runs: number;
  warmup: number;
  tfjsRuns: number;
  tfjsMaxSeconds: number;
  tfjs: boolean;
  tfjsQuiet: boolean;
  dawnPolling: boolean;
  openblas: boolean;
  kernels: boolean;
  phases: boolean;
  preset: 'paper' | 'official';
  form: 'auto' | 'primal' | 'dual';
  variant: 'auto' | 'measure' | Variant;
  /** Also time a cold first call per shape, in a fresh process (bench/cold.ts). */
  cold: boolean;
  /** --dtype float16: also time ours on float16 views and gradients, alternating with the float32 runs. */
  float16: boolean;
  seed: number;
  out: string;
  resident: boolean;
}

function parseShapes(text: string): [number, number][] {
  return text.split(',').filter((s) => s.trim()).map((s) => {
    const match = /^\s*(\d+)\s*x\s*(\d+)\s*$/i.exec(s);
    if (!match || Number(match[1]) < 2 || Number(match[2]) < 1) throw new UsageError(`--shapes: "${s}" is not NxD with n >= 2, d >= 1`);
    return [Number(match[1]), Number(match[2])];
  });
}

function parseDtype(text: string | undefined): 'float32' | 'float16' {
  if (text === undefined || text === 'float32' || text === 'f32') return 'float32';
  if (text === 'float16' || text === 'f16') return 'float16';
  throw new UsageError(`--dtype must be float32 or float16, got "${text}"`);
}

function parseCount(name: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text) || Number(text) < min) throw new UsageError(`--${name} must be an integer >= ${min}, got "${text}"`);
  return Number(text);
}

function parseOptions(argv: string[]): Options | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        shapes: { type: 'string' }, quick: { type: 'boolean' }, 'skip-large': { type: 'boolean' },
        runs: { type: 'string' }, warmup: { type: 'string' }, 'tfjs-runs': { type: 'string' }, 'tfjs-max-seconds': { type: 'string' },
        'no-tfjs': { type: 'boolean' }, 'tfjs-quiet': { type: 'boolean' }, 'dawn-polling': { type: 'boolean' }, openblas: { type: 'boolean' }, kernels: { type: 'boolean' }, phases: { type: 'boolean' }, preset: { type: 'string' }, form: { type: 'string' }, variant: { type: 'string' }, seed: { type: 'string' },
        out: { type: 'string' }, resident: { type: 'boolean' }, swiftshader: { type: 'boolean' }, 'no-cold': { type: 'boolean' }, dtype: { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) return 'help';
  if (values.swiftshader) {
    if (!existsSync(SWIFTSHADER_ICD)) throw new UsageError(`--swiftshader: no ${SWIFTSHADER_ICD} (scripts/setup.sh installs Debian's chromium, which ships it)`);
    // Read by the Vulkan loader when Dawn first enumerates adapters, which comes later.
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  }
  if (values.quick && values.shapes) throw new UsageError('--quick and --shapes choose shapes both; give one');
  let shapes = parseShapes(values.shapes ?? (values.quick ? QUICK_SHAPES : DEFAULT_SHAPES));
  if (values['skip-large']) shapes = shapes.filter(([n, d]) => n * d < LARGE_ELEMENTS);
  if (shapes.length === 0) throw new UsageError('no shapes left to run');
  const preset = values.preset ?? 'paper';
  if (preset !== 'paper' && preset !== 'official') throw new UsageError(`--preset must be paper or official, got "${preset}"`);
  const form = values.form ?? 'auto';
  if (form !== 'auto' && form !== 'primal' && form !== 'dual') throw new UsageError(`--form must be auto, primal or dual, got "${form}"`);
  const variant = values.variant ?? 'auto';
  if (variant !== 'auto' && variant !== 'measure' && !(VARIANT_NAMES as readonly string[]).includes(variant)) {
    throw new UsageError(`--variant must be auto, measure or one of ${VARIANT_NAMES.join(', ')}, got "${variant}"`);
  }
  const maxSeconds = Number(values['tfjs-max-seconds'] ?? 60);
  if (!(maxSeconds > 0)) throw new UsageError(`--tfjs-max-seconds must be a positive number, got "${values['tfjs-max-seconds']}"`);
  return {
    shapes,
    runs: parseCount('runs', values.runs, 5, 1),
    warmup: parseCount('warmup', values.warmup, 1, 0),
    tfjsRuns: parseCount('tfjs-runs', values['tfjs-runs'], 3, 1),
    tfjsMaxSeconds: maxSeconds,
    tfjs: !values['no-tfjs'],
    tfjsQuiet: values['tfjs-quiet'] ?? false,
    dawnPolling: values['dawn-polling'] ?? false,
    openblas: values.openblas ?? false,
    kernels: values.kernels ?? false,
    phases: values.phases ?? false,
    preset,
    form,
    variant: variant as Options['variant'],
    float16: parseDtype(values.dtype) === 'float16',
    cold: !values['no-cold'],
    seed: parseCount('seed', values.seed, 1, 0),
    out: values.out ?? 'bench/results',
    resident: values.resident ?? false,
  };
}

// ---------------------------------------------------------------------------------------------------
// Progress (stderr) and machine information.

const benchStart = performance.now();
function progress(message: string) {
  const seconds = ((performance.now() - benchStart) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[${seconds} s] ${message}\n`);
}

function git(args: string[]): string | undefined {
  try {
    return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

function machineInfo(adapter: string, tfjsAdapter: string | undefined): MachineInfo {
  const cpus = os.cpus();
  const status = git(['status', '--porcelain', '--untracked-files=no']);
  return {
    adapter,
    tfjsAdapter,
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cpuCount: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    lpNumThreads: process.env.LP_NUM_THREADS,
    date: new Date().toISOString(),
    gitCommit: git(['rev-parse', 'HEAD']),
    gitDirty: status === undefined ? undefined : status.length > 0,
  };
}

// ---------------------------------------------------------------------------------------------------
// tfjs time estimate: skip a shape when one tfjs run would take longer than --tfjs-max-seconds.

/**
 * tfjs's cost model in "work units": its matmuls (the standard 12 n d^2 flops) plus its many
 * elementwise ops and reductions on d x d tensors (mask, square, sum and their gradients), which are
 * slow on lavapipe (anchors: tfjs moments ran at ~0.07 GB/s), counted as D2_UNIT_WEIGHT units per
 * d x d element.
 */
const D2_UNIT_WEIGHT = 200;
const tfjsWorkUnits = (n: number, d: number) => 12 * n * d * d + D2_UNIT_WEIGHT * d * d;
/** Prior from the anchors (256x1024 in 841 ms, 128x4096 in 8 s), used until a shape is measured here. */
const PRIOR_SECONDS_PER_UNIT = 8.004 / tfjsWorkUnits(128, 4096);

class TfjsTimeEstimator {
  /** The biggest shape measured so far: small shapes are dominated by fixed costs and extrapolate badly. */
  private biggest: { units: number; secondsPerUnit: number } | undefined;
  record(n: number, d: number, seconds: number) {
    const units = tfjsWorkUnits(n, d);
    if (!this.biggest || units >= this.biggest.units) this.biggest = { units, secondsPerUnit: seconds / units };
  }
  /** Seconds for one warm run, at the rate of the biggest shape measured so far (else the prior). */
  estimate(n: number, d: number): number {
    return (this.biggest?.secondsPerUnit ?? PRIOR_SECONDS_PER_UNIT) * tfjsWorkUnits(n, d);
  }
}

// ---------------------------------------------------------------------------------------------------
// One shape.

interface Context {
  options: Options;
  /** The engine's resolved coefficients, in the references' terms. */
  coefficients: Required<ReferenceOptions>;
  tfjs?: TfjsReference;
  tfjsEstimator: TfjsTimeEstimator;
  /** --openblas: bench/numpy_vicreg.py --serve, asked for one run after each of ours. */
  openblas?: OpenblasBaseline;
}


// Ours, as a user calls it: host arrays in, terms (and gradients) back on the host.
async function oursForwardBackward(vic: VICRegLoss, views: ViewPair, shape: [number, number]): Promise<TermsAndGradients> {
  const terms = await vic.forward(views.a, views.b, shape);
  const { gradA, gradB } = await vic.backward();
  return { ...terms, gradA, gradB };
}

/** Ours on float16 views (binary16 bits) with float16 gradients back. */
async function oursHalf(vic: VICRegLoss, views: { a: Uint16Array; b: Uint16Array }, shape: [number, number]): Promise<VICRegTerms> {
  const terms = await vic.forward(views.a, views.b, shape);
  await vic.backward<Uint16Array>();
  return terms;
}

/** One tfjs forward + backward; with --tfjs-quiet its waits defer Dawn's poll as the engine's do. */
const tfjsRun = (ctx: Context, views: ViewPair, n: number, d: number): Promise<TfjsResult> =>
  ctx.options.tfjsQuiet ? quietly(() => ctx.tfjs!.run(views.a, views.b, n, d)) : ctx.tfjs!.run(views.a, views.b, n, d);

const oursForwardOnly = (vic: VICRegLoss, views: ViewPair, shape: [number, number]): Promise<VICRegTerms> =>
  vic.forward(views.a, views.b, shape, { grad: false });

// --resident: ours as a training loop on the GPU calls it, with the batch already on the device and the
// gradients left there. GPUBufferUsage is a global only where webgpu's globals were installed (with
// tfjs): spell the flags out.
const Usage = { MAP_READ: 0x01, COPY_SRC: 0x04, COPY_DST: 0x08, STORAGE: 0x80 } as const;
const MAP_MODE_READ = 0x01;

interface ResidentBuffers {
  a: GPUBuffer;
  b: GPUBuffer;
  /** Caller-owned gradients for encode(). */
  gradA: GPUBuffer;
  gradB: GPUBuffer;
}

/** Uploads the views once, before any timing, and makes encode()'s gradient buffers. */
function uploadResident(device: GPUDevice, views: ViewPair): ResidentBuffers {
  const buffer = (usage: number) => device.createBuffer({ size: views.a.byteLength, usage });
  const a = buffer(Usage.STORAGE | Usage.COPY_DST);
  const b = buffer(Usage.STORAGE | Usage.COPY_DST);
  device.queue.writeBuffer(a, 0, views.a as Float32Array<ArrayBuffer>);
  device.queue.writeBuffer(b, 0, views.b as Float32Array<ArrayBuffer>);
  return { a, b, gradA: buffer(Usage.STORAGE | Usage.COPY_SRC), gradB: buffer(Usage.STORAGE | Usage.COPY_SRC) };
}

const destroyResident = (buffers: ResidentBuffers | undefined) =>
  buffers && [buffers.a, buffers.b, buffers.gradA, buffers.gradB].forEach((buffer) => buffer.destroy());

/**
 * Forward on the GPUBuffers, backward into the engine's GPUBuffers, then a wait for the device: the
 * backward resolves once submitted, and the time must include its work.
 */
async function oursResident(vic: VICRegLoss, buffers: ResidentBuffers, shape: [number, number]): Promise<VICRegTerms & { gradA: GPUBuffer; gradB: GPUBuffer }> {
  const terms = await vic.forward(buffers.a, buffers.b, shape);
  const grads = await vic.backward<GPUBuffer>();
  // As a caller on dawn.node should wait: without quietly() Dawn's event poll spins a core (README, API).
  await quietly(() => vic.device.queue.onSubmittedWorkDone());
  return { ...terms, ...grads };
}

/**
 * encode() into the caller's gradient buffers; read() maps the terms back, the one wait on the device
 * (the gradients were submitted with them, so they are done by then).
 */
async function oursEncode(vic: VICRegLoss, buffers: ResidentBuffers, shape: [number, number]): Promise<VICRegTerms> {
  const pending = await vic.encode({ a: buffers.a, b: buffers.b, shape, gradA: buffers.gradA, gradB: buffers.gradB });
  return pending.read();
}

/** Copies `bytes` of a device buffer (float32) to the host, for the checks (never timed). */
async function download(device: GPUDevice, source: GPUBuffer, bytes: number): Promise<Float32Array> {
  const staging = device.createBuffer({ size: bytes, usage: Usage.MAP_READ | Usage.COPY_DST });
  try {
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(source, 0, staging, 0, bytes);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(MAP_MODE_READ);
    return new Float32Array(staging.getMappedRange().slice(0));
  } finally {
    staging.destroy();
  }
}

/**
 * The resident paths against the host path on the same inputs (the host path is the one checked against
 * the references): the last encode()'s terms and gradients, still in the caller's buffers; and one more
 * resident forward + backward, untimed, its gradients read back.
 */
async function residentChecks(vic: VICRegLoss, buffers: ResidentBuffers, shape: [number, number], host: TermsAndGradients, encoded: VICRegTerms): Promise<Comparison[]> {
  const d = shape[1];
  const bytes = buffers.a.size;
  const hostValues = { terms: host, gradA: host.gradA, gradB: host.gradB };
  const encodeGrads = { gradA: await download(vic.device, buffers.gradA, bytes), gradB: await download(vic.device, buffers.gradB, bytes) };
  const resident = await oursResident(vic, buffers, shape);
  const residentGrads = { gradA: await download(vic.device, resident.gradA, bytes), gradB: await download(vic.device, resident.gradB, bytes) };
  return [
    { ...compare('host path', 'all', { ...resident, ...residentGrads }, undefined, hostValues, d, SAME_ENGINE_TOLERANCE), subject: 'resident' },
    { ...compare('host path', 'all', { ...encoded, ...encodeGrads }, undefined, hostValues, d, SAME_ENGINE_TOLERANCE), subject: 'encode' },
  ];
}

/** Evenly spread row indices, first and last included. */
function sampleRows(n: number, count: number): number[] {
  const rows = Array.from({ length: Math.min(count, n) }, (_, k) => Math.round((k * (n - 1)) / Math.max(1, Math.min(count, n) - 1)));
  return [...new Set(rows)];
}

function float64Check(ctx: Context, views: ViewPair, n: number, d: number, ours: TermsAndGradients, forwardOnly: VICRegTerms, notes: string[]): Comparison {
  if (float64MultiplyAdds(n, d) <= FLOAT64_MAX_MULTIPLY_ADDS) {
    const reference = float64VICReg(views.a, views.b, n, d, ctx.coefficients);
    return compare('float64', 'all', ours, forwardOnly, { terms: reference, gradA: reference.gradA, gradB: reference.gradB }, d, FLOAT64_TOLERANCE);
  }
  const rows = sampleRows(n, SAMPLED_ROWS);
  notes.push(`full float64 check too slow here (${(float64MultiplyAdds(n, d) / 1e9).toFixed(0)} G multiply-adds): checked part of it`);
  const sampled = float64SampledRows(views.a, views.b, n, d, ctx.coefficients, rows);
  return compare(
    'float64', `the invariance and variance terms and gradient rows ${rows.join(', ')} (not the covariance term nor the loss)`,
    ours, forwardOnly, { terms: { invariance: sampled.invariance, variance: sampled.variance }, gradA: sampled.gradARows, gradB: sampled.gradBRows, rows },
    d, FLOAT64_TOLERANCE,
  );
}

async function benchShape(ctx: Context, n: number, d: number, label: string): Promise<ShapeResult> {
  const { options } = ctx;
  const shape: [number, number] = [n, d];
  const seed = options.seed;
  // Keys in the order the JSON should show them; the undefined ones are filled in below.
  const result: ShapeResult = {
    n, d, seed, status: 'unchecked', error: undefined, form: undefined, variant: undefined, fellBack: undefined, offDiagonalShare: undefined,
    ours: undefined, tfjs: { status: 'disabled', reason: '--no-tfjs' }, speedup: undefined, checks: [], checkNotes: [],
  };

  progress(`${label}: generating inputs`);
  const views = randomViews(n, d, seed);

  const bytesBefore = bufferCounts.bytes;
  const liveBefore = bufferCounts.live;
  // One engine per shape, so its buffer count is this shape's alone.
  const vic = await createVICRegLoss({ preset: options.preset, form: options.form, variant: options.variant });
  let tfjsPrepared = false;
  let resident: ResidentBuffers | undefined;
  let openblasLibrary: string | undefined;
  try {
    if (ctx.openblas) {
      progress(`${label}: NumPy/OpenBLAS (standard d x d form): inputs, self-check against float64, warm-up`);
      try {
        openblasLibrary = await ctx.openblas.prepare(n, d);
      } catch (error) {
        result.openblas = { status: 'failed', reason: (error as Error).message };
      }
      await sleep(OPENBLAS_SETTLE_MS);
    }
    if (options.resident) resident = uploadResident(vic.device, views);
    // --dtype float16: the views rounded to binary16, and their values as float32 for the check.
    const half = options.float16 ? { a: halfView(views.a), b: halfView(views.b) } : undefined;
    const halfBits = half && { a: half.a.bits, b: half.b.bits };
    for (let w = 0; w < options.warmup; w++) {
      progress(`${label}: ours warm-up ${w + 1}/${options.warmup}`);
      await oursForwardOnly(vic, views, shape);
      await oursForwardBackward(vic, views, shape);
      if (halfBits) await oursHalf(vic, halfBits, shape);
      if (resident) {
        await oursResident(vic, resident, shape);
        await oursEncode(vic, resident, shape);
      }
    }

    // Ours again, untimed, after each tfjs run and before ours is timed: the first calls after a tfjs run
    // ran 2-6 ms slower at 256 x 1024 (up to 70 ms after its cold run), however long the pause between
    // them (0.03-1 s tried, the main thread idle meanwhile), so a timed run straight after tfjs measured
    // tfjs's after-effects rather than ours.
    const rewarmOurs = () => oursForwardBackward(vic, views, shape);

    // tfjs: skip when one run is estimated to be too long; else one cold run (compiles its shaders).
    let tfjsRuns = 0;
    let tfjsResult: TfjsResult | undefined;
    let tfjsColdMs = 0;
    let tfjsTensorsBefore = 0;
    if (ctx.tfjs) {
      const estimate = ctx.tfjsEstimator.estimate(n, d);
      const largestTensorBytes = 4 * Math.max(d * d, n * d);
      if (largestTensorBytes > ctx.tfjs.maxBindingBytes) {
        result.tfjs = {
          status: 'skipped',
          reason: `its d x d float32 tensors (${mib(largestTensorBytes)} MiB) exceed the adapter's maxStorageBufferBindingSize ` +
            `(${mib(ctx.tfjs.maxBindingBytes)} MiB); tfjs-webgpu would not fail but compute garbage`,
        };
      } else if (estimate > options.tfjsMaxSeconds) {
        result.tfjs = {
          status: 'skipped', estimatedSeconds: Math.round(estimate),
          reason: `one run estimated at ~${estimate.toFixed(0)} s (> --tfjs-max-seconds ${options.tfjsMaxSeconds})`,
        };
      } else {
        try {
          progress(`${label}: tfjs cold run (estimated ~${estimate.toFixed(1)} s warm)`);
          ctx.tfjs.prepare(n, d);
          tfjsPrepared = true;
          tfjsTensorsBefore = ctx.tfjs.liveTensors();
          const cold = await timed(() => tfjsRun(ctx, views, n, d));
          tfjsResult = cold.result;
          tfjsColdMs = cold.ms;
          // Keep tfjs's share of the bench bounded: its timed runs fit in --tfjs-max-seconds (at least one).
          tfjsRuns = Math.max(1, Math.min(options.tfjsRuns, Math.floor((options.tfjsMaxSeconds * 1000) / cold.ms)));
        } catch (error) {
          result.tfjs = { status: 'failed', reason: (error as Error).message };
        }
        await rewarmOurs();   // outside the try: an error of ours is not tfjs's
      }
    }

    // Timed runs, interleaved so that drift (thermal, other load) hits both alike.
    const forwardMs: number[] = [];
    const forwardBackwardMs: number[] = [];
    const residentMs: number[] = [];
    const encodeMs: number[] = [];
    const tfjsMs: number[] = [];
    const openblasMs: number[] = [];
    let lastOurs: TermsAndGradients | undefined;
    let lastForwardOnly: VICRegTerms | undefined;
    let lastEncode: VICRegTerms | undefined;
    const halfMs: number[] = [];
    let lastHalf: VICRegTerms | undefined;
    let plan: ForwardPlan | undefined;
    let engineBytes = 0;
    let engineBuffers = 0;
    const noteEngineBuffers = () => {
      engineBytes = Math.max(engineBytes, bufferCounts.bytes - bytesBefore);
      engineBuffers = Math.max(engineBuffers, bufferCounts.live - liveBefore);
    };
    for (let r = 0; r < options.runs; r++) {
      const others = [...(r < tfjsRuns ? ['tfjs'] : []), ...(openblasLibrary ? ['OpenBLAS'] : [])];
      progress(`${label}: run ${r + 1}/${options.runs}${others.length ? ` (ours, ${others.join(', ')})` : ''}`);
      const forward = await timed(() => oursForwardOnly(vic, views, shape));
      forwardMs.push(forward.ms);
      lastForwardOnly = forward.result;
      const both = await timed(() => oursForwardBackward(vic, views, shape));
      forwardBackwardMs.push(both.ms);
      lastOurs = both.result;
      plan = vic.lastPlan; // the host path's (the resident forward below runs later)
      if (halfBits) {
        const run = await timed(() => oursHalf(vic, halfBits, shape));
        halfMs.push(run.ms);
        lastHalf = run.result;
      }
      noteEngineBuffers();
      if (resident) {
        const buffers = resident;
        residentMs.push((await timed(() => oursResident(vic, buffers, shape))).ms);
        const encoded = await timed(() => oursEncode(vic, buffers, shape));
        encodeMs.push(encoded.ms);
        lastEncode = encoded.result;
        noteEngineBuffers();
      }
      if (r < tfjsRuns) {
        try {
          const run = await timed(() => tfjsRun(ctx, views, n, d));
          tfjsMs.push(run.ms);
          tfjsResult = run.result;
        } catch (error) {
          result.tfjs = { status: 'failed', reason: (error as Error).message };
          tfjsRuns = 0;
          tfjsMs.length = 0;
          tfjsResult = undefined;
        }
        if (r + 1 < options.runs) await rewarmOurs();
      }
      if (openblasLibrary && ctx.openblas) {
        try {
          openblasMs.push(await ctx.openblas.run());
        } catch (error) {
          result.openblas = { status: 'failed', reason: (error as Error).message };
          openblasLibrary = undefined;
        }
        await sleep(OPENBLAS_SETTLE_MS);
      }
    }
    if (!plan) throw new Error('the engine reported no plan for its forward');
    result.form = plan.form;
    // The kernel variant, where the engine reports one (ForwardPlan.variant, in progress upstream).
    result.variant = (plan as { variant?: string }).variant;
    result.fellBack = plan.fellBack;
    result.offDiagonalShare = plan.offDiagonalShare;
    const flops = flopCounts(n, d, plan.form, plan.fellBack);
    const oursStats = timingStats(forwardBackwardMs);
    const forwardStats = timingStats(forwardMs);
    const residentStats = resident && timingStats(residentMs);
    const encodeStats = resident && timingStats(encodeMs);
    result.ours = {
      forwardBackward: oursStats,
      forward: forwardStats,
      resident: residentStats && encodeStats && {
        forwardBackward: residentStats,
        encode: encodeStats,
        effectiveGflops: {
          forwardBackward: gflops(flops.standardForwardBackward, residentStats.medianMs),
          encode: gflops(flops.standardForwardBackward, encodeStats.medianMs),
        },
      },
      flops,
      effectiveGflops: {
        forwardBackward: gflops(flops.standardForwardBackward, oursStats.medianMs),
        forward: gflops(flops.standardForward, forwardStats.medianMs),
      },
      formGflops: {
        forwardBackward: gflops(flops.formForwardBackward, oursStats.medianMs),
        forward: gflops(flops.formForward, forwardStats.medianMs),
      },
      engineBufferBytes: engineBytes,
      engineBufferCount: engineBuffers,
      engineBytesLeaked: 0,
    };
    if (half && lastHalf) {
      // Checked against ours on the same rounded values in float32: the widened views are those values.
      const rounded = await vic.forward(half.a.values, half.b.values, shape, { grad: false });
      const worst = Math.max(...(['loss', 'invariance', 'variance', 'covariance'] as const).map((t) => Math.abs(lastHalf![t] - rounded[t]) / Math.max(Math.abs(rounded[t]), 1e-30)));
      if (!(worst <= SAME_ENGINE_TOLERANCE.term)) result.checkNotes.push(`float16: terms differ from float32 on the rounded views by ${worst.toExponential(1)}`);
      const halfStats = timingStats(halfMs);
      result.ours.float16 = {
        forwardBackward: halfStats, ratio: halfStats.medianMs / oursStats.medianMs, checked: worst <= SAME_ENGINE_TOLERANCE.term,
        // Host <-> device per call: both views up, both gradients back.
        bytesPerCall: { float32: 4 * 4 * n * d, float16: 4 * 2 * n * d },
      };
    }

    if (tfjsMs.length > 0) {
      const tfjsStats = timingStats(tfjsMs);
      ctx.tfjsEstimator.record(n, d, tfjsStats.medianMs / 1000);
      result.tfjs = {
        status: 'ran', coldMs: tfjsColdMs, forwardBackward: tfjsStats,
        effectiveGflops: gflops(flops.standardForwardBackward, tfjsStats.medianMs),
        tensorsLeaked: ctx.tfjs!.liveTensors() - tfjsTensorsBefore,
      };
      result.speedup = tfjsStats.medianMs / oursStats.medianMs;
    }

    if (openblasLibrary && openblasMs.length === options.runs) {
      result.openblas = { status: 'ran', medianMs: timingStats(openblasMs).medianMs, library: openblasLibrary };
      result.openblasRatio = result.openblas.medianMs / oursStats.medianMs;
    }

    // Checks: against tfjs where it ran; against float64 as well (whole where cheap, in part otherwise).
    progress(`${label}: checking`);
    if (tfjsResult) {
      result.checks.push(compare('tfjs-webgpu', 'all', lastOurs!, lastForwardOnly!, { terms: tfjsResult, gradA: tfjsResult.gradA, gradB: tfjsResult.gradB }, d, TFJS_TOLERANCE));
    }
    result.checks.push(float64Check(ctx, views, n, d, lastOurs!, lastForwardOnly!, result.checkNotes));
    if (resident) result.checks.push(...await residentChecks(vic, resident, shape, lastOurs!, lastEncode!));
    result.status = judge(result.checks);
    // No speedup over a wrong result, nor for a wrong one.
    if (result.status === 'mismatch' || result.checks.some((c) => c.overruled)) result.speedup = result.openblasRatio = undefined;
  } catch (error) {
    result.status = 'error';
    result.error = `${(error as Error).name}: ${(error as Error).message}`;
  } finally {
    destroyResident(resident);
    vic.destroy();
    if (tfjsPrepared) ctx.tfjs?.release();
    if (result.ours) result.ours.engineBytesLeaked = bufferCounts.bytes - bytesBefore;
  }
  return result;
}


function summaryLine(r: ShapeResult): string {
  const label = `${r.n}x${r.d}`;
  if (r.status === 'error') return `${label}: ERROR ${r.error}`;
  const o = r.ours!;
  const tfjs = r.tfjs.status === 'ran' ? `tfjs ${r.tfjs.forwardBackward.medianMs.toFixed(1)} ms` : `tfjs ${r.tfjs.status}`;
  const resident = o.resident ? `${o.resident.forwardBackward.medianMs.toFixed(1)} ms resident fwd+bwd, ${o.resident.encode.medianMs.toFixed(1)} ms encode, ` : '';
  return `${label}: ${r.form}${r.variant ? `/${r.variant}` : ''} ${o.forwardBackward.medianMs.toFixed(1)} ms fwd+bwd, ${o.forward.medianMs.toFixed(1)} ms fwd, ${resident}` +
    `${o.effectiveGflops.forwardBackward.toFixed(1)} effective GFLOP/s; ${tfjs}${r.speedup ? ` (${r.speedup.toFixed(1)}x)` : ''}` +
    `${r.openblas?.status === 'ran' ? `; OpenBLAS ${r.openblas.medianMs.toFixed(1)} ms (${r.openblasRatio!.toFixed(1)}x)` : r.openblas ? `; OpenBLAS ${r.openblas.status}` : ''}; ${r.status}`;
}

// ---------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  if (process.argv[2] === COLD_CHILD_FLAG) return coldChild(process.argv[3]);
  let options: Options;
  try {
    const parsed = parseOptions(process.argv.slice(2));
    if (parsed === 'help') {
      process.stdout.write(HELP);
      return 0;
    }
    options = parsed;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`bench: ${error.message}\n(npm run bench -- --help for the options)\n`);
    return 2;
  }
  mkdirSync(options.out, { recursive: true });
  if (options.dawnPolling) setQuietPolling(false);
  if (options.kernels) return kernelsMain(options);
  if (options.phases) return phasesMain(options);

  // With tfjs, WebGPU is installed as navigator.gpu first: tfjs needs it, and the engine then takes its
  // device from the same Dawn instance (one adapter for both). The GPU object is held here for the
  // life of the process (see installNavigatorGpu).
  let keepDawnAlive: GPU | undefined;
  if (options.tfjs) keepDawnAlive = await installNavigatorGpu();
  const probe = await createVICRegLoss({ preset: options.preset });
  const adapter = probe.adapterName;
  // The engine's resolved coefficients, given to both references.
  const { lambda, mu, nu, gamma, eps, preset } = probe.options;
  const coefficients = resolveOptions({ lambda, mu, nu, gamma, eps, preset });
  probe.destroy();
  let tfjs: TfjsReference | undefined;
  if (options.tfjs) {
    progress('loading tfjs-backend-webgpu');
    tfjs = await createTfjsReference(coefficients);
  }
  progress(`engine adapter: ${adapter}${tfjs ? `; tfjs adapter: ${tfjs.adapterName}` : ''}`);

  const ctx: Context = { options, coefficients, tfjs, tfjsEstimator: new TfjsTimeEstimator(), openblas: options.openblas ? startOpenblas() : undefined };
  const results: ShapeResult[] = [];
  const report: BenchReport = {
    machine: machineInfo(adapter, tfjs?.adapterName),
    settings: {
      runs: options.runs, warmup: options.warmup, tfjsRuns: options.tfjsRuns, tfjsMaxSeconds: options.tfjsMaxSeconds,
      preset: options.preset, form: options.form, variant: options.variant, seed: options.seed, resident: options.resident,
      tfjsQuiet: options.tfjsQuiet, dawnPolling: options.dawnPolling, openblas: options.openblas, argv: process.argv.slice(2),
    },
    flopConvention: FLOP_CONVENTION,
    memoryNote: 'engine buffers = bytes of the buffers the engine itself holds after forward + backward (its bufferCounts; ' +
      'the inputs, statistics, the Gram/covariance matrices kept for backward, gradients and staging), not Dawn\'s or the driver\'s own memory; ' +
      'the engine keeps them between calls of the same shape, so this is its peak.',
    results,
  };
  try {
    for (const [index, [n, d]] of options.shapes.entries()) {
      const label = `[${index + 1}/${options.shapes.length}] ${n}x${d}`;
      const result = await benchShape(ctx, n, d, label);
      if (options.cold && result.status !== 'error') {
        progress(`${label}: cold first call (a fresh process, shader cache off)`);
        try {
          result.cold = await coldFirstCall(process.argv[1], n, d, options.seed, { preset: options.preset, form: options.form, variant: options.variant });
        } catch (error) {
          result.cold = { error: (error as Error).message };
        }
      }
      results.push(result);
      progress(summaryLine(result));
      if (result.cold) progress(`${n}x${d}: cold first call ${'error' in result.cold ? `failed: ${result.cold.error}` : `${result.cold.firstMs.toFixed(0)} ms`}`);
      // Results so far, so that an interrupted long run leaves something.
      writeReports(options.out, report);
    }
  } finally {
    ctx.openblas?.close();
  }
  void keepDawnAlive;

  const paths = writeReports(options.out, report);
  process.stdout.write(`${markdownTable(report)}\n\nwrote ${paths.join(', ')}\n`);
  const failed = results.filter((r) => r.status === 'mismatch' || r.status === 'error');
  for (const r of failed) {
    process.stderr.write(`FAILED ${r.n}x${r.d}: ${r.error ?? r.checks.flatMap((c) => c.failures.map((f) => `${c.subject ? `${c.subject} ` : ''}vs ${c.against}: ${f}`)).join('; ')}\n`);
  }
  return failed.length > 0 ? 1 : 0;
}

/** --kernels: each kernel alone, written to kernels.json and kernels.md in --out. */
async function kernelsMain(options: Options): Promise<number> {
  const { adapter, rows } = await benchKernels(options.shapes, options.variant, progress);
  let peak: { sgemm_gflops: number; blas: string } | undefined;
  try {
    peak = JSON.parse(execFileSync('python3', ['bench/numpy_vicreg.py', '--peak'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
  } catch (error) {
    progress(`no CPU peak (python3 with numpy): ${(error as Error).message.split('\n')[0]}`);
  }
  const machine = machineInfo(adapter, undefined);
  const paths = writeKernelReports(options.out, { machine, argv: process.argv.slice(2), peak, rows });
  process.stdout.write(`${kernelTable(rows, peak?.sgemm_gflops)}\n\nwrote ${paths.join(', ')}\n`);
  return 0;
}

/** --phases: each forward and backward call split into its phases, written to phases.json and phases.md in --out. */
async function phasesMain(options: Options): Promise<number> {
  const { adapter, rows } = await benchPhases(options.shapes, options, progress);
  const machine = machineInfo(adapter, undefined);
  const table = phaseTable(rows);
  const paths = writePhaseReports(options.out, { machine, argv: process.argv.slice(2), rows }, table);
  process.stdout.write(`${table}\n\nwrote ${paths.join(', ')}\n`);
  return 0;
}

// A live Dawn instance keeps Node's event loop alive: exit explicitly.
main().then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`bench: ${(error as Error).stack ?? error}\n`);
    process.exit(1);
  },
);
