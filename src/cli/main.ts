#!/usr/bin/env node
// The vicreg-wgsl command line: the loss of two .npy files (and optionally its gradients), or a demo on a
// random batch with timings. Exit codes: 0 success, 2 bad input (any VICRegError), 1 anything unexpected.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createVICRegLoss } from '../index.js';
import { ArgumentError, ShapeError, VICRegError } from '../errors.js';
import { formatShape, readNpyFile, writeNpyFile } from '../io/npy.js';
import { randomBatch } from '../io/random.js';
import { variantChoicesProblem } from '../engine/choices.js';
import { CHILD_ENV, runWithoutClampWarnings } from './dawn-warnings.js';
import type { Dtype, Preset, VariantChoices, VICRegLoss, VICRegOptions, VICRegTerms } from '../types.js';

const HELP = `vicreg-wgsl: the VICReg loss (forward and backward) in WGSL compute kernels, on WebGPU.

Usage:
  vicreg-wgsl loss A.npy B.npy [options]   loss of two n x d views (float16, float32 or float64 .npy, C order)
  vicreg-wgsl demo [--n N] [--d D] [--seed S] [--form F] [--json]
                                           forward + backward on a random batch, with timings
  vicreg-wgsl --help                       this text
  vicreg-wgsl --version                    the package's version

Options of 'loss':
  --preset paper|official  variance convention (default paper): paper = v(A) + v(B),
                           official = (v(A) + v(B)) / 2 as in facebookresearch/vicreg
  --lambda X               invariance weight (default 25)
  --mu X                   variance weight (default 25)
  --nu X                   covariance weight (default 1)
  --gamma X                target standard deviation of each feature (default 1)
  --eps X                  added to the variance under the square root (default 1e-4)
  --form auto|primal|dual  how the covariance term is computed (default auto): primal forms the
                           d x d covariance (O(n d^2)), dual the n x n Gram matrix (O(n^2 d));
                           auto takes the cheaper and falls back from dual to primal where the
                           dual form would lose float32 accuracy
  --grad-out DIR           also run the backward pass; write DIR/grad_a.npy and DIR/grad_b.npy
                           (n x d; DIR is created if needed)
  --grad-dtype T           the gradients' type: float32 or float16 (default: the views')
  --variant-cache FILE     time the kernel variants on the first run of a shape class on this
                           adapter and keep the fastest in FILE (JSON): read from FILE if it exists
                           (its choices are not timed again), written back after a successful run
                           with the choices in use. Without it the registry's order decides, untimed
  --json                   print one JSON object (n, d, loss, invariance, variance, covariance,
                           preset, form, variant, adapter, timings in ms) as the last line of stdout

Options of 'demo':
  --n N                    batch size, rows (default 256)
  --d D                    embedding dimension, columns (default 1024)
  --seed S                 seed of the random batch (default 1): A is Gaussian, B = A + 0.1 * noise
  --form auto|primal|dual  as for 'loss'
  --variant-cache FILE     as for 'loss'
  --json                   print one JSON object as the last line of stdout

loss = lambda * invariance + mu * variance + nu * covariance; invariance is the mean of (A - B)^2 over
all n * d elements (as PyTorch's F.mse_loss), variances are unbiased, n must be at least 2.
Exit status: 0 on success, 2 on bad arguments or input (one line on stderr), 1 on unexpected errors.
`;

/** Each command's options; parseArgs rejects any other. (--help is handled before parsing.) */
const LOSS_OPTIONS = {
  json: { type: 'boolean' },
  preset: { type: 'string' }, lambda: { type: 'string' }, mu: { type: 'string' }, nu: { type: 'string' },
  gamma: { type: 'string' }, eps: { type: 'string' }, 'grad-out': { type: 'string' }, 'grad-dtype': { type: 'string' }, form: { type: 'string' },
  'variant-cache': { type: 'string' },
} as const;
const DEMO_OPTIONS = {
  json: { type: 'boolean' }, n: { type: 'string' }, d: { type: 'string' }, seed: { type: 'string' }, form: { type: 'string' },
  'variant-cache': { type: 'string' },
} as const;

const DEMO_DEFAULTS = { n: 256, d: 1024, seed: 1 };

/** Decimal numbers only: Number() alone would accept '', ' ', '0x10' and 'Infinity'. */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function parseNumber(option: string, text: string): number {
  const value = Number(text);
  if (!DECIMAL.test(text) || !Number.isFinite(value)) {
    throw new ArgumentError(`--${option} must be a finite number, got ${JSON.stringify(text)}`);
  }
  return value;
}

function parseInteger(option: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) {
    throw new ArgumentError(`--${option} must be an integer from ${min} to ${max}, got ${JSON.stringify(text)}`);
  }
  return value;
}

/** Runs a parseArgs call, turning its TypeErrors (unknown option, missing value...) into ArgumentErrors. */
function parseCommandLine<T>(command: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    const code = (error as { code?: string }).code ?? '';
    if (!code.startsWith('ERR_PARSE_ARGS')) throw error;
    // Node's messages are long and name the option in quotes; say the same thing briefly.
    const message = (error as Error).message;
    const option = /'(-[^' ]*)/.exec(message)?.[1] ?? '';
    if (/^Unknown option/.test(message)) throw new ArgumentError(`unknown option '${option}' for '${command}'`);
    if (/argument missing/.test(message)) throw new ArgumentError(`option ${option} needs a value`);
    if (/ambiguous/.test(message)) {
      throw new ArgumentError(`option ${option} needs a value (write a negative number as ${option}=-X)`);
    }
    throw new ArgumentError(message.replace(/\s+/g, ' '));
  }
}

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(HELP);
    return 0;
  }
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  const [command, ...rest] = argv;
  if (command === 'loss') return runLoss(rest);
  if (command === 'demo') return runDemo(rest);
  throw new ArgumentError(command === undefined ? 'missing command (loss or demo)' : `unknown command '${command}' (expected loss or demo)`);
}

/** This package's version, from its package.json (two folders up from src/cli/ and from dist/node/). */
function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

/** Reads a .npy file that must hold a 2-D n x d array. */
function readMatrix(path: string): { data: Float32Array | Uint16Array; n: number; d: number } {
  const { data, shape } = readNpyFile(path);
  if (shape.length !== 2) {
    throw new ShapeError(`${path} is ${shape.length}-D (${formatShape(shape)}); expected a 2-D n x d array`);
  }
  return { data, n: shape[0], d: shape[1] };
}

async function runLoss(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine('loss', () =>
    parseArgs({ args, options: LOSS_OPTIONS, allowPositionals: true, strict: true }));
  if (positionals.length !== 2) {
    throw new ArgumentError(`loss takes two .npy files (A.npy B.npy), got ${positionals.length} argument(s)`);
  }
  const options: VICRegOptions = { preset: parsePreset(values.preset), form: parseForm(values.form) };
  for (const name of ['lambda', 'mu', 'nu', 'gamma', 'eps'] as const) {
    const text = values[name];
    if (text !== undefined) options[name] = parseNumber(name, text);
  }
  const gradDir = values['grad-out'];

  // All the checks that need no GPU come first, so bad input fails fast, before Dawn starts.
  const [pathA, pathB] = positionals;
  const a = readMatrix(pathA);
  const b = readMatrix(pathB);
  if (a.n !== b.n || a.d !== b.d) {
    throw new ShapeError(`${pathA} is ${a.n}x${a.d} but ${pathB} is ${b.n}x${b.d}; the two views must have the same shape`);
  }
  const dtypeOf = (x: { data: Float32Array | Uint16Array }) => (x.data instanceof Uint16Array ? 'float16' : 'float32');
  if (dtypeOf(a) !== dtypeOf(b)) throw new ShapeError(`${pathA} is ${dtypeOf(a)} but ${pathB} is ${dtypeOf(b)}; the two views must have the same dtype (float64 files count as float32)`);
  const gradDtype = values['grad-dtype'] === undefined ? dtypeOf(a) : parseDtype(values['grad-dtype']);
  if (gradDir !== undefined) makeDirectory(gradDir);

  return withLoss(options, values['variant-cache'], async (vic) => {
    const { n, d } = a;
    let start = performance.now();
    const terms = await vic.forward(a.data, b.data, [n, d], { grad: gradDir !== undefined });
    const forwardMs = performance.now() - start;
    let backwardMs: number | undefined;
    const gradFiles: string[] = [];
    if (gradDir !== undefined) {
      start = performance.now();
      const { gradA, gradB } = await vic.backward<Float32Array | Uint16Array>(1, { dtype: gradDtype });
      backwardMs = performance.now() - start;
      gradFiles.push(join(gradDir, 'grad_a.npy'), join(gradDir, 'grad_b.npy'));
      writeNpyFile(gradFiles[0], gradA, [n, d]);
      writeNpyFile(gradFiles[1], gradB, [n, d]);
    }

    if (values.json) {
      printJson({ n, d, ...terms, preset: vic.options.preset, form: vic.lastPlan?.form, variant: vic.lastPlan?.variant, adapter: vic.adapterName, forwardMs, backwardMs,
        gradA: gradFiles[0], gradB: gradFiles[1] });
      return 0;
    }
    const c = vic.options;
    console.log(`VICReg loss of ${pathA} and ${pathB}: n = ${n}, d = ${d}`);
    console.log(`  preset ${c.preset}, lambda ${c.lambda}, mu ${c.mu}, nu ${c.nu}, gamma ${c.gamma}, eps ${c.eps}`);
    printTerms(terms);
    console.log(describePlan(vic));
    if (gradFiles.length > 0) console.log(`gradients (${n}x${d} ${gradDtype}): ${gradFiles.join(', ')}`);
    console.log(`adapter: ${vic.adapterName}`);
    return 0;
  });
}

async function runDemo(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine('demo', () =>
    parseArgs({ args, options: DEMO_OPTIONS, allowPositionals: true, strict: true }));
  if (positionals.length > 0) throw new ArgumentError(`demo takes no file arguments, got '${positionals[0]}'`);
  const n = values.n === undefined ? DEMO_DEFAULTS.n : parseInteger('n', values.n, 1, 2 ** 24);
  const d = values.d === undefined ? DEMO_DEFAULTS.d : parseInteger('d', values.d, 1, 2 ** 24);
  const seed = values.seed === undefined ? DEMO_DEFAULTS.seed : parseInteger('seed', values.seed, 0, 2 ** 32 - 1);
  // Two n x d float32 arrays are made here in JS: keep each under 1 GiB.
  if (n * d > 2 ** 28) throw new ArgumentError(`the demo batch n x d = ${n}x${d} is too large (at most 2^28 elements)`);
  const { a, b } = randomBatch(n, d, seed);

  return withLoss({ form: parseForm(values.form) }, values['variant-cache'], async (vic) => {
    // The first run compiles pipelines and allocates buffers: time it apart from the measured run.
    let start = performance.now();
    await vic.forward(a, b, [n, d]);
    await vic.backward();
    const warmupMs = performance.now() - start;

    start = performance.now();
    const terms = await vic.forward(a, b, [n, d]);
    const forwardMs = performance.now() - start;
    start = performance.now();
    const { gradA, gradB } = await vic.backward();
    const backwardMs = performance.now() - start;
    const totalMs = forwardMs + backwardMs;
    const gradNormA = norm(gradA), gradNormB = norm(gradB);

    if (values.json) {
      printJson({ n, d, seed, ...terms, preset: vic.options.preset, form: vic.lastPlan?.form, variant: vic.lastPlan?.variant, adapter: vic.adapterName,
        gradNormA, gradNormB, warmupMs, forwardMs, backwardMs, totalMs });
      return 0;
    }
    console.log(`VICReg demo: n = ${n}, d = ${d}, seed ${seed}, preset ${vic.options.preset} (B = A + 0.1 * noise)`);
    printTerms(terms);
    console.log(`  |dL/dA|     ${gradNormA.toPrecision(7)}`);
    console.log(`  |dL/dB|     ${gradNormB.toPrecision(7)}`);
    console.log(describePlan(vic));
    console.log(`adapter: ${vic.adapterName}`);
    console.log(`time: warm-up ${ms(warmupMs)} (first forward + backward, includes pipeline creation)`);
    console.log(`      forward ${ms(forwardMs)}, backward ${ms(backwardMs)}, total ${ms(totalMs)}`);
    return 0;
  });
}

/**
 * Creates the engine (seeded from the --variant-cache file, if given), runs `body`, writes the variant
 * choices back after a successful run, and always releases the engine (its Dawn device) afterwards.
 */
async function withLoss(options: VICRegOptions, cachePath: string | undefined, body: (vic: VICRegLoss) => Promise<number>): Promise<number> {
  // A cache to keep the choices in is what makes timing them worth its compile time.
  const variant = cachePath === undefined ? 'auto' : 'measure';
  const vic = await createVICRegLoss({ ...options, variant, variantChoices: readVariantCache(cachePath) });
  try {
    const status = await body(vic);
    if (cachePath !== undefined) writeVariantCache(cachePath, vic.variantChoices());
    return status;
  } finally {
    vic.destroy();
  }
}

/** The --variant-cache file's choices, or undefined where it does not exist yet. */
function readVariantCache(path: string | undefined): VariantChoices | undefined {
  if (path === undefined || !existsSync(path)) return undefined;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ArgumentError(`cannot read --variant-cache ${path}: ${(error as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ArgumentError(`--variant-cache ${path} is not JSON (${(error as Error).message}); delete it to start afresh`);
  }
  const problem = variantChoicesProblem(value);
  if (problem) throw new ArgumentError(`--variant-cache ${path}: ${problem}; delete it to start afresh`);
  return value as VariantChoices;
}

/**
 * Writes the choices through a temporary file and a rename, so that a crash or a concurrent run never
 * leaves half a file. A failure only warns: the run itself succeeded and its output is out.
 */
function writeVariantCache(path: string, choices: VariantChoices): void {
  const temporary = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(temporary, `${JSON.stringify(choices, null, 2)}\n`);
    renameSync(temporary, path);
  } catch (error) {
    try { rmSync(temporary, { force: true }); } catch { /* nothing more to clean */ }
    process.stderr.write(`vicreg-wgsl: warning: cannot write --variant-cache ${path}: ${(error as Error).message}\n`);
  }
}

function parsePreset(text: string | undefined): Preset | undefined {
  if (text === undefined || text === 'paper' || text === 'official') return text;
  throw new ArgumentError(`--preset must be 'paper' or 'official', got ${JSON.stringify(text)}`);
}

function parseForm(text: string | undefined): VICRegOptions['form'] {
  if (text === undefined || text === 'auto' || text === 'primal' || text === 'dual') return text;
  throw new ArgumentError(`--form must be 'auto', 'primal' or 'dual', got ${JSON.stringify(text)}`);
}

function parseDtype(text: string): Dtype {
  if (text === 'float32' || text === 'float16') return text;
  throw new ArgumentError(`--grad-dtype must be 'float32' or 'float16', got ${JSON.stringify(text)}`);
}

function describePlan(vic: VICRegLoss): string {
  const plan = vic.lastPlan;
  if (!plan) return 'form: none';
  const what = plan.form === 'dual' ? 'dual (n x n Gram matrix)' : 'primal (d x d covariance)';
  return `form: ${what}${plan.fellBack ? ', after the dual form lost accuracy (off-diagonal share below the threshold)' : ''}`;
}

function makeDirectory(path: string): void {
  try {
    mkdirSync(path, { recursive: true });
  } catch (error) {
    throw new ArgumentError(`cannot create --grad-out directory ${path}: ${(error as Error).message}`);
  }
}

function printTerms(terms: VICRegTerms): void {
  for (const key of ['loss', 'invariance', 'variance', 'covariance'] as const) {
    console.log(`  ${key.padEnd(11)} ${terms[key].toPrecision(7)}`);
  }
}

/** One JSON object on one line (the last line of stdout); undefined keys are left out. */
function printJson(object: Record<string, unknown>): void {
  console.log(JSON.stringify(object));
}

const ms = (value: number) => `${value.toFixed(1)} ms`;

function norm(values: Float32Array): number {
  let sum = 0;
  for (const value of values) sum += value * value;
  return Math.sqrt(sum);
}


/** Writes `line` to stderr and exits once stdout and stderr are flushed (pipes may be asynchronous). */
function exit(code: number, line?: string): void {
  if (line !== undefined) process.stderr.write(`${line}\n`);
  // Exit explicitly: a live Dawn instance would otherwise keep Node running. The timer is a backstop in
  // case a stream never reports its flush.
  process.exitCode = code;
  setTimeout(() => process.exit(code), 2000);
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

const args = process.argv.slice(2);
const usesDevice = (args[0] === 'loss' || args[0] === 'demo') && !args.includes('--help') && !args.includes('-h');
const run = usesDevice && process.env[CHILD_ENV] !== '1' ? runWithoutClampWarnings(process.argv[1], args) : main(args);
run.then(
  (code) => exit(code),
  (error: unknown) => {
    const message = (error instanceof Error ? error.message : String(error)).replace(/\s*\n\s*/g, ' ');
    if (error instanceof ArgumentError) exit(2, `vicreg-wgsl: ${message}; see 'vicreg-wgsl --help'`);
    else if (error instanceof VICRegError) exit(2, `vicreg-wgsl: ${message}`);
    else exit(1, `vicreg-wgsl: ${message}`);
  },
);
