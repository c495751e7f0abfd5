// The bench's own float64 check (bench/float64-reference.ts: the n x n form, and the sampled-rows
// variant for big shapes; for n >= d it is the test suite's reference itself) against the test suite's
// float64 reference, so the bench judges the engine by a reference that is itself checked; and the
// bench's comparison and verdict logic. CPU only.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeNpyFile } from '../src/io/npy.js';
import { float64SampledRows, float64VICReg } from '../bench/float64-reference.js';
import { compare, flopCounts, judge, type Comparison } from '../bench/measure.js';
import { randomViews, referenceVICReg, relativeError, relativeNormError, type ReferenceOptions } from './reference/float64.js';

const PAPER: ReferenceOptions = {};
const OFFICIAL_ODD: ReferenceOptions = { lambda: 3.5, mu: 7, nu: 0.3, gamma: 0.7, eps: 1e-3, preset: 'official' };

const TERMS = ['loss', 'invariance', 'variance', 'covariance'] as const;

describe('bench float64 reference', () => {
  // n < d takes the dual (n x n) form, n >= d the primal (d x d) form.
  const cases: [number, number, ReferenceOptions][] = [[7, 40, PAPER], [40, 7, PAPER], [33, 33, OFFICIAL_ODD], [16, 100, OFFICIAL_ODD]];
  for (const [n, d, coefficients] of cases) {
    it(`${n}x${d} agrees with test/reference/float64.ts`, () => {
      const { a, b } = randomViews(n, d, n * 1000 + d);
      const ours = float64VICReg(a, b, n, d, coefficients);
      const reference = referenceVICReg(a, b, [n, d], coefficients);
      for (const name of TERMS) expect(relativeError(ours[name], reference[name]), name).toBeLessThan(1e-12);
      expect(relativeNormError(ours.gradA, reference.gradA)).toBeLessThan(1e-12);
      expect(relativeNormError(ours.gradB, reference.gradB)).toBeLessThan(1e-12);
    });
  }

  it('sampled rows agree with the whole reference', () => {
    const [n, d] = [30, 50];
    const { a, b } = randomViews(n, d, 7);
    const rows = [0, 11, 29];
    const sampled = float64SampledRows(a, b, n, d, OFFICIAL_ODD, rows);
    const reference = referenceVICReg(a, b, [n, d], OFFICIAL_ODD);
    expect(relativeError(sampled.invariance, reference.invariance)).toBeLessThan(1e-12);
    expect(relativeError(sampled.variance, reference.variance)).toBeLessThan(1e-12);
    const pick = (g: Float64Array) => rows.flatMap((i) => Array.from(g.subarray(i * d, (i + 1) * d)));
    expect(relativeNormError(sampled.gradARows, pick(reference.gradA))).toBeLessThan(1e-12);
    expect(relativeNormError(sampled.gradBRows, pick(reference.gradB))).toBeLessThan(1e-12);
  });

  it('compare() flags a wrong gradient row and a wrong term, and NaN', () => {
    const [n, d] = [8, 20];
    const { a, b } = randomViews(n, d, 3);
    const reference = float64VICReg(a, b, n, d, PAPER);
    const ours = { ...reference, gradA: Float32Array.from(reference.gradA), gradB: Float32Array.from(reference.gradB) };
    const tolerance = { term: 1e-4, gradient: 1e-3 };
    const referenceValues = { terms: reference, gradA: reference.gradA, gradB: reference.gradB };
    expect(compare('float64', 'all', ours, ours, referenceValues, d, tolerance).pass).toBe(true);
    const badGradient = { ...ours, gradB: ours.gradB.map((g, x) => (x === 3 * d + 5 ? g + 1 : g)) };
    expect(compare('float64', 'all', badGradient, ours, referenceValues, d, tolerance).failures).toHaveLength(1);
    const sampledValues = { terms: {}, gradA: reference.gradA.subarray(3 * d, 4 * d), gradB: reference.gradB.subarray(3 * d, 4 * d), rows: [3] };
    expect(compare('float64', 'row 3', badGradient, ours, sampledValues, d, tolerance).pass).toBe(false);
    const badForwardOnly = { ...ours, covariance: ours.covariance * 1.01 };
    expect(compare('float64', 'all', ours, badForwardOnly, referenceValues, d, tolerance).failures[0]).toMatch(/forward-only covariance/);
    expect(compare('float64', 'all', { ...ours, loss: NaN }, ours, referenceValues, d, tolerance).pass).toBe(false);
  });

  it('counts flops as documented', () => {
    const [n, d] = [4, 10];
    expect(flopCounts(n, d, 'primal', false)).toEqual({
      standardForwardBackward: 12 * n * d * d,
      standardForward: 4 * n * d * d,
      formForward: 2 * 2 * (n * d * (d + 1)) / 2,
      formForwardBackward: 2 * 2 * ((n * d * (d + 1)) / 2 + n * d * d),
    });
    const dual = flopCounts(n, d, 'dual', false);
    expect(dual.formForwardBackward).toBe(2 * 2 * ((d * n * (n + 1)) / 2 + n * n * d));
    // A fallback pays for the abandoned dual Gram as well.
    expect(flopCounts(n, d, 'primal', true).formForward).toBe(2 * 2 * ((n * d * (d + 1)) / 2 + (d * n * (n + 1)) / 2));
  });

  it('judge(): any failure fails the row, unless the whole float64 check passed and a float32 reference failed', () => {
    const check = (against: string, scope: string, pass: boolean): Comparison =>
      ({ against, scope, pass, tolerance: { term: 0, gradient: 0 }, termErrors: {}, failures: pass ? [] : ['x'] });
    expect(judge([])).toBe('unchecked');
    expect(judge([check('tfjs-webgpu', 'all', true), check('float64', 'all', true)])).toBe('ok');
    expect(judge([check('tfjs-webgpu', 'all', true), check('float64', 'all', false)])).toBe('mismatch');
    expect(judge([check('tfjs-webgpu', 'all', false), check('float64', 'some rows', true)])).toBe('mismatch');
    const overruled = [check('tfjs-webgpu', 'all', false), check('float64', 'all', true)];
    expect(judge(overruled)).toBe('ok');
    expect(overruled[0].overruled).toBeTruthy();
    // A resident path that disagrees with the host path fails the row even where float64 agrees: both are ours.
    expect(judge([check('float64', 'all', true), { ...check('host path', 'all', false), subject: 'encode' }])).toBe('mismatch');
  });
});

describe('the OpenBLAS baseline (bench/numpy_vicreg.py; needs python3 with numpy, as the bench does)', () => {
  it('computes the loss and gradients of the float64 reference (paper preset defaults)', () => {
    const [n, d] = [13, 37];
    const { a, b } = randomViews(n, d, 5150);
    const dir = mkdtempSync(join(tmpdir(), 'vicreg-numpy-'));
    try {
      writeNpyFile(join(dir, 'a.npy'), a, [n, d]);
      writeNpyFile(join(dir, 'b.npy'), b, [n, d]);
      const out = execFileSync('python3', ['bench/numpy_vicreg.py', '--inputs', join(dir, 'a.npy'), join(dir, 'b.npy')], { encoding: 'utf8' });
      const baseline = JSON.parse(out) as { loss: number; gradA: number[]; gradB: number[] };
      const reference = referenceVICReg(a, b, [n, d], PAPER);
      expect(relativeError(baseline.loss, reference.loss)).toBeLessThan(1e-5);
      expect(relativeNormError(Float64Array.from(baseline.gradA), reference.gradA)).toBeLessThan(1e-4);
      expect(relativeNormError(Float64Array.from(baseline.gradB), reference.gradB)).toBeLessThan(1e-4);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the kernel bench (npm run bench -- --kernels; runs on the WebGPU adapter)', () => {
  it('times column_stats and, for both forms and every variant the device runs, the Gram and backward kernels', async () => {
    const { benchKernels } = await import('../bench/kernels.js');
    const { rows } = await benchKernels([[20, 36]], 'auto', () => undefined);
    expect(rows.map((r) => r.kernel)).toContain('column_stats');
    for (const form of ['primal', 'dual']) {
      const ofForm = rows.filter((r) => r.form === form);
      expect(ofForm.length, form).toBeGreaterThanOrEqual(4);   // tiled and workgroup run anywhere: a Gram and a backward each
      for (const r of ofForm) {
        expect(r.ms, `${r.kernel} ${r.variant}`).toBeGreaterThan(0);
        expect(Number.isFinite(r.rate) && r.rate > 0, `${r.kernel} ${r.variant}`).toBe(true);
      }
      // A Gram kernel's GEMM-equivalent rate counts the whole side x side matrix: (2 side)/(side + 1) times its useful rate.
      const gram = ofForm.find((r) => r.gemmEquivalent !== undefined)!;
      const side = form === 'primal' ? 36 : 20;
      expect(gram.gemmEquivalent! / gram.rate).toBeCloseTo((2 * side) / (side + 1), 6);
    }
  });
});

describe('the phase bench (npm run bench -- --phases; runs on the WebGPU adapter)', () => {
  it('splits forward and backward calls into phases, counts dispatches, and sees the kept bind groups', async () => {
    const { benchPhases, phaseTable } = await import('../bench/phases.js');
    const options = { runs: 3, warmup: 1, preset: 'paper', form: 'auto', variant: 'tiled', seed: 2 } as const;
    const { rows } = await benchPhases([[20, 36]], options, () => undefined);
    expect(rows.map((r) => r.step)).toEqual(['forward', 'backward']);
    for (const r of rows) {
      const m = r.median;
      expect(r.variant, r.step).toBe('tiled');
      expect(m.dispatches, r.step).toBeGreaterThan(0);
      expect(m.waitMs, r.step).toBeGreaterThan(0);
      expect(m.afterMapMs, r.step).toBeGreaterThanOrEqual(0);
      // The first call makes a bind group per dispatch; later calls of the same shape reuse them.
      expect(r.firstCallBindGroups, r.step).toBe(m.dispatches);
      expect(m.bindGroups, r.step).toBe(0);
    }
    expect(phaseTable(rows).split('\n')).toHaveLength(4);
  });
});
