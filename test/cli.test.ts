// End-to-end tests of the built CLI (dist/node/cli.js): each run is a separate Node process, and those
// that reach the engine start Dawn on the machine's adapter (lavapipe here), so the runs are few.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { npyBytes } from './reference/npy-bytes.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNpyFile, writeNpy, writeNpyFile } from '../src/io/npy.js';
import { fromHalfBits, halfView } from './reference/half.js';
import { randomViews, referenceVICReg, relativeError, relativeNormError, type ReferenceOptions } from './reference/float64.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'dist/node/cli.js');
const dir = mkdtempSync(join(tmpdir(), 'vicreg-cli-'));

interface Run { code: number; stdout: string; stderr: string }

function runCli(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { cwd: root, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

beforeAll(() => {
  // `npm test` builds first; a direct `vitest run` of this file may find no build yet.
  if (!existsSync(cli)) execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Writes a float32 .npy into the temp dir and returns its path. */
function npyFile(name: string, data: Float32Array, shape: number[]): string {
  const path = join(dir, name);
  writeNpyFile(path, data, shape);
  return path;
}

/** The JSON object on the last line of stdout. */
function lastJson(stdout: string): Record<string, unknown> {
  const lines = stdout.trimEnd().split('\n');
  return JSON.parse(lines[lines.length - 1]) as Record<string, unknown>;
}

const TERMS = ['loss', 'invariance', 'variance', 'covariance'] as const;

function expectTermsClose(actual: Record<string, unknown>, expected: Record<(typeof TERMS)[number], number>): void {
  for (const key of TERMS) {
    expect(typeof actual[key], key).toBe('number');
    expect(relativeError(actual[key] as number, expected[key]), key).toBeLessThan(1e-4);
  }
}

/**
 * Expects a failed run: exit code 2 and one line on stderr, `vicreg-wgsl: <message>`, with no stack trace.
 */
async function expectCliError(args: string[], pattern: RegExp): Promise<void> {
  const { code, stdout, stderr } = await runCli(args);
  expect(stderr.endsWith('\n'), stderr).toBe(true);
  const lines = stderr.slice(0, -1).split('\n');
  expect(lines, stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^vicreg-wgsl: /);
  expect(lines[0]).toMatch(pattern);
  expect(stderr).not.toMatch(/^\s+at /m);
  expect(stdout).toBe('');
  expect(code).toBe(2);
}

describe('vicreg-wgsl loss', () => {
  const [n, d] = [16, 24];
  const views = randomViews(n, d, 7);
  let pathA: string, pathB: string;
  beforeAll(() => {
    pathA = npyFile('a.npy', views.a, [n, d]);
    // B as float64, as numpy writes by default: the CLI converts it to float32.
    pathB = join(dir, 'b64.npy');
    const dict = `{'descr': '<f8', 'fortran_order': False, 'shape': (${n}, ${d}), }`;
    writeFileSync(pathB, npyBytes(dict, new Uint8Array(Float64Array.from(views.b).buffer)));
  });

  it('prints the terms as JSON on the last line, matching a float64 reference (defaults)', async () => {
    const { code, stdout, stderr } = await runCli(['loss', pathA, pathB, '--json']);
    expect(code, stderr).toBe(0);
    expect(stderr, 'an ordinary run prints nothing on stderr').toBe('');
    const result = lastJson(stdout);
    expect(result).toMatchObject({ n, d, preset: 'paper' });
    expect(typeof result.adapter).toBe('string');
    expectTermsClose(result, referenceVICReg(views.a, views.b, [n, d]));
  });

  it('honors every coefficient option and writes the gradients with --grad-out', async () => {
    const options: ReferenceOptions = { preset: 'official', lambda: 3, mu: 7, nu: 0.5, gamma: 1.2, eps: 1e-3 };
    const gradDir = join(dir, 'grads', 'nested');
    const { code, stdout, stderr } = await runCli(['loss', pathA, pathB, '--json', '--preset', 'official',
      '--lambda', '3', '--mu', '7', '--nu', '0.5', '--gamma=1.2', '--eps', '1e-3', '--grad-out', gradDir]);
    expect(code, stderr).toBe(0);
    expect(stderr, 'an ordinary run prints nothing on stderr').toBe('');
    const result = lastJson(stdout);
    expect(result).toMatchObject({ n, d, preset: 'official' });
    const expected = referenceVICReg(views.a, views.b, [n, d], options);
    expectTermsClose(result, expected);

    const gradA = readNpyFile(join(gradDir, 'grad_a.npy'));
    const gradB = readNpyFile(join(gradDir, 'grad_b.npy'));
    expect(gradA.shape).toEqual([n, d]);
    expect(gradB.shape).toEqual([n, d]);
    expect(relativeNormError(gradA.data, expected.gradA)).toBeLessThan(1e-4);
    expect(relativeNormError(gradB.data, expected.gradB)).toBeLessThan(1e-4);
  });

  it('reads float16 files, writes float16 gradients (or float32 with --grad-dtype), and rejects a float16/float32 pair', async () => {
    const [a16, b16] = [halfView(views.a), halfView(views.b)];
    const [pathA16, pathB16] = [join(dir, 'a16.npy'), join(dir, 'b16.npy')];
    writeFileSync(pathA16, writeNpy(a16.bits, [n, d]));
    writeFileSync(pathB16, writeNpy(b16.bits, [n, d]));
    const expected = referenceVICReg(a16.values, b16.values, [n, d]);
    for (const [flags, dtype] of [[[], Uint16Array], [['--grad-dtype', 'float32'], Float32Array]] as const) {
      const gradDir = join(dir, `grads16-${dtype.name}`);
      const { code, stdout, stderr } = await runCli(['loss', pathA16, pathB16, '--json', '--grad-out', gradDir, ...flags]);
      expect(code, stderr).toBe(0);
      expectTermsClose(lastJson(stdout), expected);
      const gradA = readNpyFile(join(gradDir, 'grad_a.npy')).data;
      expect(gradA).toBeInstanceOf(dtype);
      const values = gradA instanceof Uint16Array ? Float64Array.from(gradA, fromHalfBits) : gradA;
      expect(relativeNormError(values, expected.gradA)).toBeLessThan(gradA instanceof Uint16Array ? 2e-3 : 1e-4);
    }
    await expectCliError(['loss', pathA16, pathB], /a16\.npy is float16 but .*b64\.npy is float32; the two views must have the same dtype/);
    await expectCliError(['loss', pathA16, pathB16, '--grad-out', join(dir, 'g'), '--grad-dtype', 'half'], /--grad-dtype must be 'float32' or 'float16'/);
  });

  it('prints a readable block without --json', async () => {
    const { code, stdout, stderr } = await runCli(['loss', pathA, pathB, '--nu', '2']);
    expect(code, stderr).toBe(0);
    expect(stderr, 'an ordinary run prints nothing on stderr').toBe('');
    const expected = referenceVICReg(views.a, views.b, [n, d], { nu: 2 });
    expect(stdout).toContain(`n = ${n}, d = ${d}`);
    expect(stdout).toMatch(/adapter: \S/);
    for (const key of TERMS) {
      const printed = Number(new RegExp(`^\\s+${key}\\s+(\\S+)$`, 'm').exec(stdout)?.[1]);
      expect(relativeError(printed, expected[key]), key).toBeLessThan(1e-4);
    }
  });
});

describe('vicreg-wgsl demo and --help', () => {
  it('runs the demo and reports terms, adapter and times', async () => {
    const { code, stdout, stderr } = await runCli(['demo', '--n', '64', '--d', '96', '--json']);
    expect(code, stderr).toBe(0);
    expect(stderr, 'an ordinary run prints nothing on stderr').toBe('');
    const result = lastJson(stdout);
    // n < d: the cheaper dual form is chosen.
    expect(result).toMatchObject({ n: 64, d: 96, preset: 'paper', form: 'dual' });
    for (const key of [...TERMS, 'warmupMs', 'forwardMs', 'backwardMs', 'totalMs']) {
      expect(Number.isFinite(result[key]), key).toBe(true);
    }
    expect(result.loss).toBeGreaterThan(0);
    expect(typeof result.adapter).toBe('string');
  });

  it('honours --form primal', async () => {
    const { code, stdout, stderr } = await runCli(['demo', '--n', '20', '--d', '30', '--form', 'primal', '--json']);
    expect(code, stderr).toBe(0);
    expect(stderr, 'an ordinary run prints nothing on stderr').toBe('');
    expect(lastJson(stdout)).toMatchObject({ n: 20, d: 30, form: 'primal' });
  });

  it('--variant-cache writes the variant choices, and a later run takes them from the file', async () => {
    const cache = join(dir, 'variants.json');
    const first = await runCli(['demo', '--n', '40', '--d', '132', '--json', '--variant-cache', cache]);
    expect(first.code, first.stderr).toBe(0);
    const result = lastJson(first.stdout);
    const kept = JSON.parse(readFileSync(cache, 'utf8')) as { format: string; adapter: string; choices: Record<string, string> };
    expect(kept).toMatchObject({ format: 'vicreg-wgsl/variant-choices/1', adapter: result.adapter });
    const gramKey = Object.keys(kept.choices).find((k) => /^(gram|pair)\|dual\|6\|8\|/.test(k));
    expect(gramKey, JSON.stringify(kept)).toBeDefined();
    expect(result.variant).toBe(kept.choices[gramKey!]);

    // A choice other than the measured one, written into the file: the next run uses it, and keeps it.
    const other = gramKey!.split('|')[4].split(',').find((v) => v !== result.variant)!;
    for (const key of Object.keys(kept.choices)) kept.choices[key] = other;
    writeFileSync(cache, JSON.stringify(kept));
    const second = await runCli(['demo', '--n', '40', '--d', '132', '--json', '--variant-cache', cache]);
    expect(second.code, second.stderr).toBe(0);
    expect(lastJson(second.stdout).variant).toBe(other);
    expect(JSON.parse(readFileSync(cache, 'utf8')).choices).toEqual(kept.choices);

    // A file that cannot be written (its directory is missing): the run still succeeds, with a warning.
    const unwritable = join(dir, 'no-such-dir', 'variants.json');
    const third = await runCli(['demo', '--n', '8', '--d', '12', '--json', '--variant-cache', unwritable]);
    expect(third.code, third.stderr).toBe(0);
    expect(lastJson(third.stdout)).toMatchObject({ n: 8, d: 12 });
    expect(third.stderr).toMatch(/^vicreg-wgsl: warning: cannot write --variant-cache .*no-such-dir/m);
    expect(existsSync(unwritable)).toBe(false);
  });

  it('--version prints the package.json version, alone', async () => {
    const { code, stdout, stderr } = await runCli(['--version']);
    expect(code, stderr).toBe(0);
    expect(stderr).toBe('');
    const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    expect(stdout).toBe(`${version}\n`);
  });

  it('documents every command, option and default', async () => {
    const { code, stdout } = await runCli(['--help']);
    expect(code).toBe(0);
    for (const word of ['loss', 'demo', '--preset', 'paper', 'official', '--lambda', '--mu', '--nu', '--gamma',
      '--eps', '--grad-out', '--json', '--n', '--d', '--seed', '--form', 'primal', 'dual', '--variant-cache', '--help', '--version']) {
      expect(stdout).toContain(word);
    }
    expect(stdout).toMatch(/--lambda X.*default 25/);
    expect(stdout).toMatch(/--mu X.*default 25/);
    expect(stdout).toMatch(/--nu X.*default 1\)/);
    expect(stdout).toMatch(/--gamma X.*default 1\)/);
    expect(stdout).toMatch(/--eps X.*default 1e-4/);
    expect(stdout).toMatch(/default paper/);
  });
});

describe('vicreg-wgsl on bad input: exit 2, one line on stderr', () => {
  const matrix = (n: number, d: number) => new Float32Array(randomViews(n, d, 3).a);
  let good: string;
  beforeAll(() => { good = npyFile('good.npy', matrix(4, 5), [4, 5]); });

  it('a missing file', async () => {
    const missing = join(dir, 'missing.npy');
    await expectCliError(['loss', good, missing], new RegExp(`cannot read ${missing}: no such file`));
  });

  it('a file that is not npy', async () => {
    const text = join(dir, 'text.npy');
    writeFileSync(text, 'not a numpy file\n');
    await expectCliError(['loss', text, good], /text\.npy is not a \.npy file/);
  });

  it('a 1-D and a 3-D array', async () => {
    await expectCliError(['loss', npyFile('flat.npy', matrix(4, 5), [20]), good],
      /flat\.npy is 1-D \(20\); expected a 2-D n x d array/);
    await expectCliError(['loss', good, npyFile('cube.npy', matrix(4, 6), [2, 3, 4])],
      /cube\.npy is 3-D \(2x3x4\); expected a 2-D n x d array/);
  });

  it('mismatched shapes', async () => {
    await expectCliError(['loss', good, npyFile('wide.npy', matrix(4, 6), [4, 6])], /good\.npy is 4x5 but .*wide\.npy is 4x6/);
  });

  it('n = 1', async () => {
    const row = npyFile('row.npy', matrix(1, 5), [1, 5]);
    await expectCliError(['loss', row, row], /n = 1.*at least 2/);
  });

  it('a NaN inside, naming view, row and column', async () => {
    const data = matrix(4, 5);
    data[2 * 5 + 3] = NaN;
    await expectCliError(['loss', good, npyFile('nan.npy', data, [4, 5])], /view B, row 2, column 3/);
  });

  it('an unknown option, a bad number, a bad preset', async () => {
    await expectCliError(['loss', good, good, '--lamda', '3'], /unknown option '--lamda'.*--help/);
    await expectCliError(['loss', good, good, '--mu', '1e'], /--mu must be a finite number, got "1e"/);
    await expectCliError(['demo', '--n', 'abc'], /--n must be an integer/);
    await expectCliError(['loss', good, good, '--preset', 'fast'], /--preset must be 'paper' or 'official'/);
    await expectCliError(['demo', '--form', 'tiled'], /--form must be 'auto', 'primal' or 'dual'/);
  });

  it('a --variant-cache file that is not JSON, or not variant choices', async () => {
    const notJson = join(dir, 'not-json.json');
    writeFileSync(notJson, '{ "format": ');
    await expectCliError(['demo', '--variant-cache', notJson], /--variant-cache .*not-json\.json is not JSON .*delete it to start afresh/);
    const wrong = join(dir, 'wrong.json');
    writeFileSync(wrong, JSON.stringify({ format: 'vicreg-wgsl/variant-choices/1', adapter: 'a', kernels: 'k', choices: { 'gram|dual|6|8|tiled': 'subgroup' } }));
    await expectCliError(['loss', good, good, '--variant-cache', wrong], /--variant-cache .*wrong\.json: choice "gram\|dual\|6\|8\|tiled" must be one of its variants \(tiled\), got "subgroup"; delete it/);
  });
});
