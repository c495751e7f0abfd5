// The C library and its command-line program (native/), built by `npm run native` (npm test runs it
// first): vicreg-native against the float64 reference on the TypeScript tests' shapes, presets,
// coefficients and adversarial inputs, every variant of the manifest that runs here; its bad inputs
// (exit 2, one line on stderr); the C API on an application's device (tests/api_test.c); bitwise
// agreement with the TypeScript engine on the same adapter and variant; and a clean run under
// AddressSanitizer and LeakSanitizer.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createVICRegLoss, type VICRegOptions } from '../src/index.js';
import { readNpyFile, writeNpy } from '../src/io/npy.js';
import { fromHalfBits, halfView } from './reference/half.js';
import type { Form, Variant } from '../src/types.js';
import { titled, variantsHere } from './reference/adapter.js';
import {
  collapsedViews, dominantFeatureViews, largeOffsetViews, nearGammaViews, randomViews, referenceVICReg, relativeError, relativeNormError,
  scaled, type ReferenceOptions, type ViewPair,
} from './reference/float64.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BUILD = join(ROOT, 'native', 'build');
const CLI = join(BUILD, 'vicreg-native');
const KERNELS = join(ROOT, 'kernels');
const TERMS = ['loss', 'invariance', 'variance', 'covariance'] as const;

for (const program of [CLI, join(BUILD, 'api_test'), join(BUILD, 'asan', 'vicreg-native')]) {
  if (!existsSync(program)) throw new Error(`${program} is missing: run \`npm run native\` first (npm test does)`);
}

const work = mkdtempSync(join(tmpdir(), 'vicreg-native-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Run { code: number; stdout: string; stderr: string }
function run(program: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(program, args, { cwd: work, timeout: 240_000, maxBuffer: 64 * 2 ** 20, env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

let files = 0;
/** Writes the two views as .npy files (float32) and returns their paths. */
function npyPair({ a, b }: ViewPair, [n, d]: [number, number]): [string, string] {
  const paths = ['a', 'b'].map((name) => join(work, `${name}-${files}.npy`));
  files++;
  writeFileSync(paths[0], writeNpy(a, [n, d]));
  writeFileSync(paths[1], writeNpy(b, [n, d]));
  return paths as [string, string];
}

interface NativeResult {
  n: number; d: number; loss: number; invariance: number; variance: number; covariance: number;
  form: string; variant: string; fellBack: boolean; gradA: Float32Array; gradB: Float32Array;
}

const COEFFICIENT_FLAGS = ['lambda', 'mu', 'nu', 'gamma', 'eps'] as const;

/** vicreg-native loss with --json and --grad-out; its result and gradients. */
async function native(views: ViewPair, shape: [number, number], options: ReferenceOptions & { form?: Form; variant?: string; maxBinding?: number } = {}): Promise<NativeResult> {
  const [pathA, pathB] = npyPair(views, shape);
  const out = join(work, `grads-${files}`);
  const args = ['loss', pathA, pathB, '--json', '--grad-out', out, '--kernels', KERNELS];
  for (const flag of COEFFICIENT_FLAGS) if (options[flag] !== undefined) args.push(`--${flag}`, String(options[flag]));
  if (options.preset) args.push('--preset', options.preset);
  if (options.form) args.push('--form', options.form);
  if (options.variant) args.push('--variant', options.variant);
  if (options.maxBinding) args.push('--max-binding', String(options.maxBinding));
  const { code, stdout, stderr } = await run(CLI, args);
  expect(code, stderr).toBe(0);
  expect(stderr, 'an ordinary run prints nothing on stderr').toBe('');
  const result = JSON.parse(stdout.trim().split('\n').at(-1)!);
  return { ...result, gradA: readNpyFile(join(out, 'grad_a.npy')).data, gradB: readNpyFile(join(out, 'grad_b.npy')).data };
}

function expectReference(result: NativeResult, views: ViewPair, shape: [number, number], options: ReferenceOptions, label: string) {
  const reference = referenceVICReg(views.a, views.b, shape, options);
  for (const term of TERMS) {
    expect(relativeError(result[term], reference[term]), `${label}: ${term} ${result[term]} vs ${reference[term]}`).toBeLessThan(1e-5);
  }
  expect(relativeNormError(result.gradA, reference.gradA), `${label}: gradA`).toBeLessThan(1e-4);
  expect(relativeNormError(result.gradB, reference.gradB), `${label}: gradB`).toBeLessThan(1e-4);
}

const PAPER: ReferenceOptions = {};
const OFFICIAL: ReferenceOptions = { preset: 'official', lambda: 3.5, mu: 7, nu: 0.3, gamma: 0.7, eps: 1e-3 };

interface Case { label: string; shape: [number, number]; views: () => ViewPair; options: ReferenceOptions; form: string; fellBack?: boolean }
const CASES: Case[] = [
  { label: 'n < d, paper', shape: [37, 300], views: () => randomViews(37, 300, 901), options: PAPER, form: 'dual' },
  { label: 'n < d, official non-default', shape: [45, 133], views: () => randomViews(45, 133, 902), options: OFFICIAL, form: 'dual' },
  { label: 'n > d, paper', shape: [100, 67], views: () => randomViews(100, 67, 903), options: PAPER, form: 'primal' },
  { label: 'n > d, official non-default', shape: [129, 45], views: () => randomViews(129, 45, 904), options: OFFICIAL, form: 'primal' },
  { label: 'the smallest shape', shape: [2, 1], views: () => randomViews(2, 1, 905), options: PAPER, form: 'primal' },
  { label: 'a 1e4 offset', shape: [64, 96], views: () => largeOffsetViews(64, 96, 906), options: PAPER, form: 'dual' },
  { label: 'a 1e4 offset, primal', shape: [96, 64], views: () => largeOffsetViews(96, 64, 909), options: OFFICIAL, form: 'primal' },
  { label: 'collapsed features', shape: [50, 36], views: () => collapsedViews(50, 36, 907), options: OFFICIAL, form: 'primal' },
  { label: 'std near gamma', shape: [40, 28], views: () => nearGammaViews(40, 28, 908), options: PAPER, form: 'primal' },
  { label: 'one dominant feature (the dual form falls back)', shape: [32, 256], views: () => dominantFeatureViews(32, 256, 421), options: PAPER, form: 'primal', fellBack: true },
];

describe('vicreg-native loss against the float64 reference (default variant)', () => {
  for (const c of CASES) {
    it(`${c.label} (${c.shape.join('x')})`, async () => {
      const views = c.views();
      const result = await native(views, c.shape, c.options);
      expect({ form: result.form, fellBack: result.fellBack }).toEqual({ form: c.form, fellBack: c.fellBack ?? false });
      expectReference(result, views, c.shape, c.options, c.label);
    });
  }
});

// Every plan of the manifest, on the shapes each form takes; one that cannot run here is skipped by name.
const MANIFEST_VARIANTS = Object.keys(JSON.parse(readFileSync(join(KERNELS, 'manifest.json'), 'utf8')).loss.plans) as Variant[];
describe('every variant of the manifest', () => {
  const shapes: { form: Form; shape: [number, number]; seed: number }[] = [
    { form: 'dual', shape: [36, 200], seed: 911 },
    { form: 'primal', shape: [90, 52], seed: 912 },
    { form: 'dual', shape: [520, 1156], seed: 913 },
  ];
  for (const variant of MANIFEST_VARIANTS) {
    for (const { form, shape, seed } of shapes) {
      const why = variantsHere(form, ...shape, [variant]).skipped[0]?.[1];
      it.skipIf(why)(titled(`${variant}, ${form} ${shape.join('x')}, official non-default`, why), async () => {
        const views = randomViews(...shape, seed);
        const result = await native(views, shape, { ...OFFICIAL, variant, form });
        expect([result.variant, result.form]).toEqual([variant, form]);
        expectReference(result, views, shape, OFFICIAL, `${variant} ${form}`);
      });
    }
  }
});

// Past the binding limit the primal form keeps no d x d matrix and forms it one block of columns at a
// time in backward (the manifest's primalBlocked form): 300 columns in blocks of 192 under this limit.
describe('the primal form past the binding limit (--max-binding)', () => {
  const limit = 240_000;
  for (const variant of MANIFEST_VARIANTS) {
    const shape: [number, number] = [64, 300];
    const why = variantsHere('primal', ...shape, [variant]).skipped[0]?.[1];
    it.skipIf(why)(titled(`${variant}: 64x300 in two blocks, both presets`, why), async () => {
      for (const options of [PAPER, OFFICIAL]) {
        const views = randomViews(...shape, 951);
        const result = await native(views, shape, { ...options, variant, form: 'primal', maxBinding: limit });
        expect([result.variant, result.form]).toEqual([variant, 'primalBlocked']);
        expectReference(result, views, shape, options, `${variant} blocked`);
      }
    });
  }

  it('the dual form falls back to the blocked primal form (one dominant feature)', async () => {
    const shape: [number, number] = [40, 300];
    const views = dominantFeatureViews(40, 300, 905, { column: 101 });
    const result = await native(views, shape, { ...OFFICIAL, maxBinding: limit });
    expect([result.form, result.fellBack]).toEqual(['primalBlocked', true]);
    expectReference(result, views, shape, OFFICIAL, 'fallback, blocked');
  });
});

describe('float16 views and gradients (the manifest\'s loss.float16 passes)', () => {
  const shape: [number, number] = [33, 65];
  const views = randomViews(...shape, 961);
  const [a16, b16] = [halfView(views.a), halfView(views.b)];
  const paths = [join(work, 'half-a.npy'), join(work, 'half-b.npy')];
  writeFileSync(paths[0], writeNpy(a16.bits, shape));
  writeFileSync(paths[1], writeNpy(b16.bits, shape));

  for (const gradDtype of ['float16', 'float32'] as const) {
    it(`float16 .npy views, ${gradDtype} gradients, against float64 on the rounded values and bitwise the TypeScript engine's`, async () => {
      const out = join(work, `half-grads-${gradDtype}`);
      const { code, stdout, stderr } = await run(CLI, ['loss', ...paths, '--json', '--grad-out', out, '--grad-dtype', gradDtype, '--kernels', KERNELS, '--variant', 'tiled']);
      expect(code, stderr).toBe(0);
      const result = JSON.parse(stdout.trim().split('\n').at(-1)!);
      const reference = referenceVICReg(a16.values, b16.values, shape, PAPER);
      for (const term of TERMS) expect(relativeError(result[term], reference[term]), term).toBeLessThan(1e-5);
      const gradA = readNpyFile(join(out, 'grad_a.npy')).data;
      expect(gradA).toBeInstanceOf(gradDtype === 'float16' ? Uint16Array : Float32Array);
      const values = gradA instanceof Uint16Array ? Float64Array.from(gradA, fromHalfBits) : gradA;
      expect(relativeNormError(values, reference.gradA)).toBeLessThan(gradDtype === 'float16' ? 2e-3 : 1e-4);

      const vic = await createVICRegLoss({ variant: 'tiled' });
      try {
        await vic.forward(a16.bits, b16.bits, shape);
        const ours = await vic.backward<Uint16Array | Float32Array>(1, { dtype: gradDtype });
        expect(Buffer.from(gradA.buffer, gradA.byteOffset, gradA.byteLength).equals(Buffer.from(ours.gradA.buffer, ours.gradA.byteOffset, ours.gradA.byteLength))).toBe(true);
      } finally {
        vic.destroy();
      }
    });
  }
});

describe('vicreg-native on bad input: exit 2, exactly one line on stderr', () => {
  const shape: [number, number] = [8, 12];
  const good = () => npyPair(randomViews(...shape, 5), shape);

  async function expectBadInput(args: string[], pattern: RegExp) {
    const { code, stdout, stderr } = await run(CLI, [args[0], '--kernels', KERNELS, ...args.slice(1)]);
    expect(code, stderr).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^vicreg-native: [^\n]+\n$/);
    expect(stderr).toMatch(pattern);
  }

  it('files: missing, not .npy, 1-D, 3-D, of other shapes', async () => {
    const [a, b] = good();
    await expectBadInput(['loss', join(work, 'missing.npy'), b], /cannot read .*missing\.npy: no such file or directory/);
    writeFileSync(join(work, 'text.npy'), 'hello');
    await expectBadInput(['loss', a, join(work, 'text.npy')], /not a \.npy file/);
    writeFileSync(join(work, 'one.npy'), writeNpy(new Float32Array(6), [6]));
    await expectBadInput(['loss', join(work, 'one.npy'), b], /not a 2-D array/);
    writeFileSync(join(work, 'three.npy'), writeNpy(new Float32Array(24), [2, 3, 4]));
    await expectBadInput(['loss', a, join(work, 'three.npy')], /not a 2-D array \(shape \(2, 3, 4\)\)/);
    const [c] = npyPair(randomViews(8, 13, 6), [8, 13]);
    await expectBadInput(['loss', a, c], /same shape, got 8x12 and 8x13/);
    const [single] = npyPair(randomViews(1, 12, 7), [1, 12]);
    await expectBadInput(['loss', single, single], /shape \[1, 12\] fails n >= 2/);
  });

  it('a NaN or an Inf, located by view, row and column', async () => {
    const views = randomViews(...shape, 8);
    views.b[3 * 12 + 7] = NaN;
    views.b[5 * 12 + 2] = Infinity;
    const [a, b] = npyPair(views, shape);
    await expectBadInput(['loss', a, b], /^vicreg-native: B\[3, 7\] is NaN \(view B, row 3, column 7\): inputs must be finite\n$/);
  });

  it('options: unknown, without a value, not a number, a bad preset, form or variant', async () => {
    const [a, b] = good();
    await expectBadInput(['loss', a, b, '--lamda', '3'], /unknown option '--lamda'/);
    await expectBadInput(['loss', a, b, '--mu'], /option --mu needs a value/);
    await expectBadInput(['loss', a, b, '--nu', 'x'], /option --nu needs a number, got 'x'/);
    await expectBadInput(['loss', a, b, '--gamma', '-1'], /option gamma must be a finite number >= 0/);
    await expectBadInput(['loss', a, b, '--preset', 'torch'], /preset must be 'paper' or 'official', got 'torch'/);
    await expectBadInput(['loss', a, b, '--form', 'both'], /form must be 'auto', 'primal' or 'dual'/);
    await expectBadInput(['loss', a, b, '--variant', 'fastest'], /variant 'fastest' is not a plan/);
    await expectBadInput(['loss', a], /needs two \.npy files/);
    await expectBadInput(['loss', a, b, '--max-binding', '256'], /a view of \[8, 12\] float32 is 384 bytes, over the binding limit of 256 bytes/);
  });
});

describe('the C API on an application\'s device (native/tests/api_test.c)', () => {
  it('forward, backward with an upstream scale, accumulation, and every typed failure leaving the context usable', async () => {
    const out = mkdtempSync(join(work, 'api-'));
    const { code, stdout, stderr } = await run(join(BUILD, 'api_test'), [KERNELS, out]);
    expect(code, stderr).toBe(0);
    const report = JSON.parse(stdout.trim().split('\n').at(-1)!);
    const status = Object.fromEntries(Object.entries(report.checks as Record<string, { status: number }>).map(([k, v]) => [k, v.status]));
    // vicreg_status: 0 OK, 1 SHAPE, 2 NON_FINITE, 6 STATE, 7 BUFFER.
    expect(status).toEqual({ backwardFirst: 6, oneRow: 1, smallView: 1, uniformView: 7, forward: 0, smallGradient: 1, sameGradients: 7, backward: 0, accumulate: 0 });
    expect(report.nonFinite).toEqual({ status: 2, view: 'A', row: 5, column: 11 });
    expect(report.recovered).toEqual({ status: 0, loss: report.loss });
    const views = { a: readNpyFile(join(out, 'a.npy')).data, b: readNpyFile(join(out, 'b.npy')).data };
    const shape: [number, number] = [report.n, report.d];
    const options = OFFICIAL;
    const reference = referenceVICReg(views.a, views.b, shape, options);
    for (const term of TERMS) expect(relativeError(report[term], reference[term]), term).toBeLessThan(1e-5);
    // -2.5 g written, then 1.5 g added: -g.
    expect(relativeNormError(readNpyFile(join(out, 'grad_a.npy')).data, scaled(reference.gradA, -1))).toBeLessThan(1e-4);
    expect(relativeNormError(readNpyFile(join(out, 'grad_b.npy')).data, scaled(reference.gradB, -1))).toBeLessThan(1e-4);
  });
});

describe('the same adapter and variant as the TypeScript engine', () => {
  const shapes: [Form, [number, number]][] = [['dual', [45, 132]], ['primal', [129, 44]]];
  for (const variant of MANIFEST_VARIANTS) {
    for (const [form, shape] of shapes) {
      const why = variantsHere(form, ...shape, [variant]).skipped[0]?.[1];
      it.skipIf(why)(titled(`${variant} ${form} ${shape.join('x')}: the loss and the gradients bitwise the same`, why), async () => {
        const views = randomViews(...shape, 931);
        const options: VICRegOptions = { preset: 'official', lambda: 3.5, mu: 7, nu: 0.3, gamma: 0.7, eps: 1e-3, variant, form };
        const vic = await createVICRegLoss(options);
        try {
          const terms = await vic.forward(views.a, views.b, shape);
          const { gradA, gradB } = await vic.backward();
          const result = await native(views, shape, { ...OFFICIAL, variant, form });
          // The program prints float32 values with 9 significant digits, which round-trip exactly.
          expect(TERMS.map((t) => Math.fround(result[t]))).toEqual(TERMS.map((t) => Math.fround(terms[t])));
          expect(Buffer.from(result.gradA.buffer).equals(Buffer.from(gradA.buffer)), 'gradA bitwise').toBe(true);
          expect(Buffer.from(result.gradB.buffer).equals(Buffer.from(gradB.buffer)), 'gradB bitwise').toBe(true);
        } finally {
          vic.destroy();
        }
      });
    }
  }
});

describe('under AddressSanitizer, UBSan and LeakSanitizer (npm run native builds native/build/asan/)', () => {
  // Reports are judged by findings() below, so the exit status stays the program's own.
  const SANITIZERS = { ASAN_OPTIONS: 'detect_leaks=1:halt_on_error=0', LSAN_OPTIONS: 'exitcode=0', UBSAN_OPTIONS: 'print_stacktrace=1' };
  /**
   * The sanitizers' reports, less leaks whose frames past the allocator all lie in "<unknown module>":
   * memory of a library the Vulkan loader unloaded before the leak check (the driver), which names no
   * frame of this library or of Dawn.
   */
  function findings(stderr: string): string[] {
    const reports = stderr.split(/\n(?=Direct leak|Indirect leak|=+\n==\d+==ERROR)/);
    return reports.filter((r) => /AddressSanitizer|LeakSanitizer|runtime error|leak of/.test(r)).filter((r) => {
      if (!/^(Direct|Indirect) leak/.test(r)) return !/^SUMMARY|^=+$/.test(r.trim());
      const frames = r.split('\n').filter((line) => /^\s+#\d+ /.test(line)).slice(1);
      return !frames.every((frame) => frame.includes('(<unknown module>)'));
    }).filter((r) => !/^=+\n==\d+==ERROR: LeakSanitizer: detected memory leaks\s*$/.test(r.trim()));
  }

  it('the program: both forms, the fallback, gradients, a NaN error', async () => {
    const env = SANITIZERS;
    const asan = join(BUILD, 'asan', 'vicreg-native');
    const inputs: [ViewPair, [number, number]][] = [
      [randomViews(24, 70, 941), [24, 70]], [randomViews(70, 24, 942), [70, 24]], [dominantFeatureViews(32, 256, 421), [32, 256]],
    ];
    const nan = randomViews(10, 20, 943);
    nan.a[44] = NaN;
    for (const [views, shape] of [...inputs, [nan, [10, 20]] as [ViewPair, [number, number]]]) {
      const [a, b] = npyPair(views, shape);
      const { stdout, stderr } = await run(asan, ['loss', a, b, '--json', '--grad-out', join(work, `asan-${files}`), '--kernels', KERNELS], env);
      expect(findings(stderr), stderr).toEqual([]);
      if (views !== nan) expect(stdout).toMatch(/"loss":/);
      else expect(stderr).toMatch(/A\[2, 4\] is NaN/);
    }
  });

  it('the API test program', async () => {
    const { code, stderr } = await run(join(BUILD, 'asan', 'api_test'), [KERNELS, mkdtempSync(join(work, 'asan-api-'))], SANITIZERS);
    expect(findings(stderr), stderr).toEqual([]);
    expect(code, stderr).toBe(0);
  });
});
