// The package as its users get it: `npm pack`, the tarball installed into a fresh project in a temporary
// folder (with webgpu and tfjs, as a user of those would have them), and there: a strict TypeScript
// program typechecked (the library's own declarations included) and run in Node; a web app bundled with
// esbuild and with Vite, both with their default settings, and run in Chromium; the CLI. Needs
// `npm run build` (npm test builds first), npm's cache or registry, and Chromium (scripts/setup.sh).
import { execFile, execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveStatic } from '../examples/browser/serve.mjs';
import { startChromium } from './reference/chromium.js';
import { referenceVICReg, relativeError } from './reference/float64.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'node_modules', '.bin');
const versionOf = (dir: string) => (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version;
const VERSION = versionOf(ROOT);

/**
 * What the tarball may weigh: the library for Node and for browsers (each one engine chunk of about
 * 320 KB, most of it the WGSL sources), its declarations, the kernels with their manifest, the docs.
 */
const PACKED_BYTES_BUDGET = 400_000;
const UNPACKED_BYTES_BUDGET = 2_000_000;

/** The consumer's dependencies besides the package, at the versions this repository tests with. */
const CONSUMER_DEPENDENCIES = ['webgpu', '@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-webgpu']
  .map((name) => `${name}@${versionOf(join(ROOT, 'node_modules', name))}`);

const TOLERANCE = 1e-5;

/** The views the consumer programs compute the loss of (test/consumer/*: the same formulas). */
function consumerViews(n: number, d: number) {
  const a = Float32Array.from({ length: n * d }, (_, i) => Math.sin(0.37 * i));
  const b = Float32Array.from({ length: n * d }, (_, i) => Math.sin(0.37 * i) + 0.1 * Math.cos(1.3 * i));
  return referenceVICReg(a, b, [n, d]);
}

interface Run { code: number; stdout: string; stderr: string }
function run(command: string, args: string[], cwd: string, timeout = 180_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, timeout, maxBuffer: 64 * 2 ** 20 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}
const lastJson = (stdout: string) => JSON.parse(stdout.trim().split('\n').at(-1)!);

describe('the packed package, installed into a fresh project', () => {
  let work: string;
  let consumer: string;
  let packed: { filename: string; size: number; unpackedSize: number; files: { path: string }[] };

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'vicreg-package-'));
    const json = execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: ROOT, encoding: 'utf8' });
    packed = JSON.parse(json)[0];
    consumer = join(work, 'consumer');
    cpSync(join(ROOT, 'test', 'consumer'), consumer, { recursive: true });
    writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    const install = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error',
      join(work, packed.filename), ...CONSUMER_DEPENDENCIES], consumer, 300_000);
    if (install.code !== 0) throw new Error(`npm install failed: ${install.stderr}`);
  }, 330_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it(`ships the library, its declarations, the kernels and the docs, within ${PACKED_BYTES_BUDGET / 1e3} KB packed`, () => {
    const paths = packed.files.map((f) => f.path);
    console.log(`packed: ${packed.filename}, ${(packed.size / 1e3).toFixed(0)} KB, unpacked ${(packed.unpackedSize / 1e3).toFixed(0)} KB, ${paths.length} files`);
    for (const required of ['dist/node/index.js', 'dist/node/tfjs.js', 'dist/node/cli.js', 'dist/browser/index.js', 'dist/browser/tfjs.js',
      'dist/types/index.d.ts', 'dist/types/tfjs/index.d.ts', 'kernels/manifest.json', 'README.md', 'LICENSE']) {
      expect(paths, required).toContain(required);
    }
    expect(paths.filter((p) => /\.map$|^dist\/(demo|bench|examples)\/|^(src|test|bench|examples|scripts)\//.test(p))).toEqual([]);
    expect(packed.size).toBeLessThanOrEqual(PACKED_BYTES_BUDGET);
    expect(packed.unpackedSize).toBeLessThanOrEqual(UNPACKED_BYTES_BUDGET);
    const browserCode = paths.filter((p) => p.startsWith('dist/browser/')).map((p) => readFileSync(join(consumer, 'node_modules/vicreg-wgsl', p), 'utf8'));
    const nodeModule = /(?:import\s*\((?:\s*\/\*[^*]*\*\/)?|from)\s*["'](?:webgpu|node:[\w/]+)["']/;
    expect(browserCode.filter((code) => nodeModule.test(code)), 'the browser build loads no Node module').toEqual([]);
    expect(nodeModule.test(readFileSync(join(consumer, 'node_modules/vicreg-wgsl/dist/node/cli.js'), 'utf8')), 'the pattern finds them in the Node build').toBe(true);
  });

  it('typechecks a strict TypeScript program with the library\'s declarations checked (skipLibCheck off), which runs in Node', async () => {
    const tsc = await run(join(BIN, 'tsc'), ['-p', 'tsconfig.json'], consumer);
    expect(tsc.stdout + tsc.stderr, 'tsc').toBe('');
    expect(tsc.code).toBe(0);
    const node = await run(process.execPath, ['out/node-app.js'], consumer);
    expect(node.code, node.stderr).toBe(0);
    const result = lastJson(node.stdout);
    const reference = consumerViews(result.n, result.d);
    expect(relativeError(result.loss, reference.loss), 'host arrays').toBeLessThan(TOLERANCE);
    expect(relativeError(result.residentLoss, reference.loss), 'GPU buffers').toBeLessThan(TOLERANCE);
    expect(relativeError(result.gradNormA, Math.hypot(...reference.gradA))).toBeLessThan(1e-4);
    expect(result.residentGradBytes).toBe(4 * result.n * result.d);
    expect(result.badShape).toBe('shape');
  }, 120_000);

  // skipLibCheck on: tfjs-core pins @webgpu/types 0.1.38 and webgpu needs ^0.1.72, whose global
  // declarations conflict with each other whoever else is installed.
  it('typechecks and runs a tfjs program: the op, its gradients, one error hierarchy and one choice cache across entry points', async () => {
    const tsc = await run(join(BIN, 'tsc'), ['-p', 'tsconfig.tfjs.json'], consumer);
    expect(tsc.stdout + tsc.stderr, 'tsc').toBe('');
    const node = await run(process.execPath, ['out/tfjs-app.js'], consumer);
    expect(node.code, node.stderr).toBe(0);
    const result = lastJson(node.stdout);
    const reference = consumerViews(result.n, result.d);
    expect(relativeError(result.tfjsLoss, reference.loss)).toBeLessThan(TOLERANCE);
    expect(relativeError(result.tfjsGradNormA, Math.hypot(...reference.gradA))).toBeLessThan(1e-4);
    expect(result.errorAcrossEntries, "an error of vicreg-wgsl/tfjs is an instance of vicreg-wgsl's classes").toBe('shape');
    expect(result.choicesSeenByOp, "the op sees the choices an engine measured on tfjs's device").toBeGreaterThan(0);
  }, 120_000);

  describe('a web app bundled with default settings, run in Chromium (WebGPU on SwiftShader)', () => {
    let server: { url: string; close(): Promise<void> } | undefined;
    beforeAll(async () => {
      server = await serveStatic(consumer);
    });
    afterAll(async () => {
      await server?.close();
    });

    async function pageResult(path: string) {
      const browser = await startChromium();
      try {
        await browser.page.goto(`${server!.url}/${path}`);
        await browser.page.waitForFunction(() => (window as unknown as { __result?: unknown }).__result !== undefined, undefined, { timeout: 90_000 });
        const result = await browser.page.evaluate(() => (window as unknown as { __result: Record<string, unknown> }).__result);
        if ('error' in result) throw new Error(`the page failed: ${result.error}\n${browser.log.join('\n')}`);
        return result as { loss: number; tfjsLoss: number; adapter: string; errorAcrossEntries: string };
      } finally {
        await browser.close();
      }
    }

    function expectRight(result: { loss: number; tfjsLoss: number; errorAcrossEntries: string }) {
      const reference = consumerViews(32, 48);
      expect(relativeError(result.loss, reference.loss)).toBeLessThan(TOLERANCE);
      expect(relativeError(result.tfjsLoss, reference.loss)).toBeLessThan(TOLERANCE);
      expect(result.errorAcrossEntries).toBe('shape');
    }

    it('esbuild (--bundle only)', async () => {
      const esbuild = await run(join(BIN, 'esbuild'), ['web/main.ts', '--bundle', '--outfile=esbuild-out/main.js'], consumer);
      expect(esbuild.code, esbuild.stderr).toBe(0);
      mkdirSync(join(consumer, 'esbuild-out'), { recursive: true });
      writeFileSync(join(consumer, 'esbuild-out', 'index.html'),
        readFileSync(join(consumer, 'web', 'index.html'), 'utf8').replace('<script type="module" src="./main.ts">', '<script src="./main.js">'));
      expectRight(await pageResult('esbuild-out/'));
    }, 150_000);

    it('Vite (vite build, no config file)', async () => {
      const vite = await run(join(BIN, 'vite'), ['build', 'web', '--outDir', '../vite-out', '--base', './'], consumer);
      expect(vite.code, vite.stderr + vite.stdout).toBe(0);
      expectRight(await pageResult('vite-out/'));
    }, 150_000);
  });

  describe('the CLI (node_modules/.bin/vicreg-wgsl)', () => {
    const cli = () => join(consumer, 'node_modules', '.bin', 'vicreg-wgsl');

    it('--version', async () => {
      const { code, stdout, stderr } = await run(cli(), ['--version'], consumer);
      expect([code, stdout, stderr]).toEqual([0, `${VERSION}\n`, '']);
    });

    it('demo: a result on stdout, nothing on stderr', async () => {
      const { code, stdout, stderr } = await run(cli(), ['demo', '--n', '32', '--d', '64', '--json'], consumer);
      expect(code, stderr).toBe(0);
      expect(stderr).toBe('');
      expect(Number.isFinite(lastJson(stdout).loss)).toBe(true);
    });

    it('loss: the terms of two .npy files; a bad file: exit 2 and exactly one line on stderr', async () => {
      const { code, stdout, stderr } = await run(cli(), ['loss', 'missing-a.npy', 'missing-b.npy'], consumer);
      expect(code).toBe(2);
      expect(stdout).toBe('');
      expect(stderr).toMatch(/^vicreg-wgsl: cannot read missing-a\.npy: no such file or directory\n$/);
    });
  });
});
