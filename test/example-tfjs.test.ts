// The tfjs example (examples/tfjs-node.ts), run as a user runs it: bundled with its imports left
// external, so that Node resolves 'vicreg-wgsl/tfjs' to the package's own dist/ (by the package's
// "exports") and tfjs and webgpu from node_modules. Needs `npm run build` first, as `npm test` does.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { beforeAll, describe, expect, it } from 'vitest';

const BUNDLE = 'dist/examples/tfjs-node.mjs';

beforeAll(async () => {
  expect(existsSync('dist/node/tfjs.js'), "dist/node/tfjs.js is missing: run 'npm run build' first").toBe(true);
  // Inside the repository, so that Node finds the package and node_modules from it.
  await build({ entryPoints: ['examples/tfjs-node.ts'], bundle: true, platform: 'node', format: 'esm', packages: 'external', outfile: BUNDLE, logLevel: 'warning' });
});

/** Runs the example on a tfjs backend: the logged losses (every 5 steps) and the final line. */
async function runExample(backend: string) {
  const { stdout } = await promisify(execFile)('node', [BUNDLE, backend], { timeout: 120_000 });
  const losses = [...stdout.matchAll(/^step (\d+): loss (\S+)$/gm)].map((m) => ({ step: Number(m[1]), loss: Number(m[2]) }));
  const final = stdout.match(/^on '(\w+)': loss (\S+) \(invariance (\S+), variance (\S+), covariance (\S+)\)$/m);
  return { stdout, losses, final };
}

describe('examples/tfjs-node.ts', () => {
  it('trains on webgpu (the WGSL kernels) and on cpu (the slow path): the loss falls, and the two agree', async () => {
    const runs = { webgpu: await runExample('webgpu'), cpu: await runExample('cpu') };
    for (const [backend, { stdout, losses, final }] of Object.entries(runs)) {
      expect(losses.map((l) => l.step), stdout).toEqual([0, 5, 10, 15, 20, 25, 30]);
      expect(losses.every((l) => Number.isFinite(l.loss)), stdout).toBe(true);
      losses.slice(1).forEach((l, s) => expect(l.loss, `${backend} step ${l.step}`).toBeLessThan(losses[s].loss));
      expect(losses.at(-1)!.loss, backend).toBeLessThan(0.5 * losses[0].loss);
      expect(final?.[1], stdout).toBe(backend);
      expect(Number(final?.[2]), stdout).toBeLessThan(losses[0].loss);
    }
    // The same seeds and steps: the two paths differ only in float32 rounding.
    runs.webgpu.losses.forEach((l, s) => expect(Math.abs(l.loss - runs.cpu.losses[s].loss)).toBeLessThan(1e-3 * l.loss));
  });
});
