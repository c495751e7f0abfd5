// The browser demo end to end: serves the repository on 127.0.0.1, opens examples/browser/ in Debian's
// Chromium (headless, WebGPU on SwiftShader, its CPU Vulkan), and checks what the page computed with the
// browser bundle (dist/browser/index.js) against the float64 reference on the same seeded batch.
// Needs `npm run build` (npm test builds first) and /usr/bin/chromium (scripts/setup.sh installs it).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchChecksum, makeBatch, norm } from '../examples/browser/batch.js';
import type { BenchResult, DemoResult } from '../examples/browser/demo.js';
import type { TrainRecord } from '../examples/train/run.js';
import { serveStatic } from '../examples/browser/serve.mjs';
import { startChromium, type Browser } from './reference/chromium.js';
import { referenceVICReg, relativeError, relativeNormError } from './reference/float64.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * Same as the engine's tests (test/loss.test.ts): float32 arithmetic with margin. SwiftShader needs no
 * looser ones (measured: terms within 5e-7 of the reference, gradients 3e-7, tfjs's losses 2e-7).
 */
const TERM_TOLERANCE = 1e-5;
const GRADIENT_TOLERANCE = 1e-4;

const TERMS = ['loss', 'invariance', 'variance', 'covariance'] as const;
const CHART_SHAPES = '32x64,64x128,128x256';

describe('browser demo (Chromium, WebGPU on SwiftShader)', () => {
  let browser: Browser | undefined;
  let page: Page;
  let server: { url: string; close(): Promise<void> } | undefined;
  const withLog = (message: string) => `${message}\npage log:\n  ${browser?.log.join('\n  ') || '(empty)'}`;

  beforeAll(async () => {
    for (const file of ['dist/browser/index.js', 'dist/demo/demo.js']) {
      if (!existsSync(join(ROOT, file))) throw new Error(`${file} is missing: run \`npm run build\` first`);
    }
    server = await serveStatic(ROOT);
    browser = await startChromium();
    page = browser.page;
    // The chart on small shapes only: tfjs-webgpu on SwiftShader takes seconds a step beyond 128 x 256.
    await page.goto(`${server.url}/examples/browser/?shapes=${CHART_SHAPES}`);
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('computes the four terms and the gradients of the seeded batch as the float64 reference does', async () => {
    await page.waitForFunction(() => window.__vicregResult !== undefined, undefined, { timeout: 90_000 });
    const published = await page.evaluate(() => window.__vicregResult!);
    if ('error' in published) throw new Error(withLog(`the page failed: ${published.error}`));
    const result: DemoResult = published;
    console.log(`browser demo: adapter ${result.adapter}, ${result.n} x ${result.d} (${result.form}): ` +
      `forward ${result.forwardMs.toFixed(1)} ms, backward ${result.backwardMs.toFixed(1)} ms, ` +
      `first run ${result.warmupMs.toFixed(0)} ms`);
    expect(result.adapter, 'adapter name').not.toBe('');

    // The same batch, rebuilt here from the page's shape and seed.
    const { n, d, seed } = result;
    const batch = makeBatch(n, d, seed);
    expect(result.checksum, 'the page generated a different batch').toEqual(batchChecksum(batch));
    const reference = referenceVICReg(batch.a, batch.b, [n, d]);
    for (const term of TERMS) {
      const error = relativeError(result.terms[term], reference[term]);
      expect(error, `${term}: page ${result.terms[term]}, reference ${reference[term]}`).toBeLessThanOrEqual(TERM_TOLERANCE);
    }

    const grads = await page.evaluate(() => ({
      gradA: Array.from(window.__vicregGrads!.gradA),
      gradB: Array.from(window.__vicregGrads!.gradB),
    }));
    const gradErrors = [relativeNormError(grads.gradA, reference.gradA), relativeNormError(grads.gradB, reference.gradB)];
    console.log(`browser demo: largest term error ${Math.max(...TERMS.map((t) => relativeError(result.terms[t], reference[t])))
      .toExponential(1)}, gradient errors ${gradErrors.map((e) => e.toExponential(1)).join(', ')}`);
    expect(gradErrors[0], 'dL/dA').toBeLessThanOrEqual(GRADIENT_TOLERANCE);
    expect(gradErrors[1], 'dL/dB').toBeLessThanOrEqual(GRADIENT_TOLERANCE);
    expect(relativeError(result.gradNormA, norm(reference.gradA)), '|dL/dA|').toBeLessThanOrEqual(GRADIENT_TOLERANCE);
  }, 120_000);

  it('draws the timing chart, ours against tfjs-webgpu, with losses that agree', async () => {
    await page.waitForFunction(() => window.__vicregBench !== undefined, undefined, { timeout: 100_000 });
    const published = await page.evaluate(() => window.__vicregBench!);
    if ('error' in published) throw new Error(withLog(`the chart failed: ${published.error}`));
    const bench: BenchResult = published;
    expect(bench.tfjs, withLog('tfjs should run on its WebGPU backend')).toEqual({ backend: 'webgpu' });
    expect(bench.rows.map(({ n, d }) => `${n}x${d}`).join(','), 'chart shapes').toBe(CHART_SHAPES);

    for (const { n, d, oursMs, oursLoss, tfjsMs, tfjsLoss } of bench.rows) {
      const { a, b } = makeBatch(n, d, 1);
      const { loss } = referenceVICReg(a, b, [n, d]);
      const oursError = relativeError(oursLoss, loss);
      const tfjsError = relativeError(tfjsLoss!, loss);
      console.log(`browser chart: ${n} x ${d}: ours ${oursMs.toFixed(1)} ms (loss error ${oursError.toExponential(1)}), ` +
        `tfjs ${tfjsMs!.toFixed(1)} ms (${tfjsError.toExponential(1)})`);
      expect(oursError, `ours, ${n} x ${d}`).toBeLessThanOrEqual(TERM_TOLERANCE);
      expect(tfjsError, `tfjs, ${n} x ${d}`).toBeLessThanOrEqual(TERM_TOLERANCE);
      expect(oursMs).toBeGreaterThan(0);
      expect(tfjsMs).toBeGreaterThan(0);
    }
    // One bar per shape and series, plus the two legend swatches.
    const bars = await page.locator('#chart svg rect').count();
    expect(bars).toBe(2 * bench.rows.length + 2);
  }, 120_000);

  it('the training button trains on the digits, shows progress, and draws the probe table and the chart', async () => {
    // A short run: this checks the page's path end to end; test/train.test.ts checks what training achieves.
    await page.goto(`${server!.url}/examples/browser/?bench=0&trainSteps=12`);
    await page.waitForFunction(() => window.__vicregResult !== undefined, undefined, { timeout: 90_000 });
    await page.click('#train');
    await page.waitForFunction(() => /Training: step|probe|Loading|Done/.test(document.getElementById('train-status')!.textContent ?? ''), undefined, { timeout: 60_000 });
    await page.waitForFunction(() => window.__vicregTrain !== undefined, undefined, { timeout: 600_000 });
    const published = await page.evaluate(() => window.__vicregTrain!);
    if ('error' in published) throw new Error(withLog(`training failed: ${published.error}`));
    const record: TrainRecord = published;
    console.log(`browser training: ${JSON.stringify(record.probe)}, ${record.paths[0].ms.step.toFixed(0)} ms a step`);
    expect(record.steps).toBe(12);
    for (const v of Object.values(record.probe)) expect(v > 0.1 && v <= 1, JSON.stringify(record.probe)).toBe(true);
    expect(record.paths[0].curve.map((p) => p.step)).toEqual([1, 10, 12]);
    for (const p of record.paths[0].curve) expect(Number.isFinite(p.loss)).toBe(true);
    expect(await page.locator('#train-result table tr').count()).toBe(4);
    expect(await page.locator('#train-result svg polyline').count()).toBe(4);
    expect(await page.locator('#train-status').textContent()).toMatch(/^Done: 12 steps/);
  }, 700_000);
});
