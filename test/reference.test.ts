// Cross-checks of the two references (no GPU): the float64 hand-derived loss and gradients against
// central finite differences of itself, and against tfjs-cpu autograd (float32).

import { beforeAll, describe, expect, it } from 'vitest';
import {
  collapsedViews,
  dominantFeatureViews,
  gaussianSampler,
  largeOffsetViews,
  mulberry32,
  nearGammaViews,
  randomViews,
  referenceVICReg,
  relativeError,
  relativeNormError,
  type ReferenceOptions,
  type ViewPair,
} from './reference/float64.js';
import { tfjsTensorCount, tfjsVICReg, useTfjsCpu } from './reference/tfjs.js';

const NON_DEFAULT: ReferenceOptions = { lambda: 3.5, mu: 7, nu: 0.3, gamma: 0.7, eps: 1e-3 };

/** Central differences of the float64 loss with respect to every element of A and of B. */
function finiteDifferenceGradients(
  views: ViewPair,
  shape: readonly [number, number],
  options: ReferenceOptions,
  step = 1e-6,
): { gradA: Float64Array; gradB: Float64Array } {
  const a = Float64Array.from(views.a);
  const b = Float64Array.from(views.b);
  const lossAt = () => referenceVICReg(a, b, shape, options).loss;
  const differentiate = (target: Float64Array) => {
    const grad = new Float64Array(target.length);
    for (let x = 0; x < target.length; x++) {
      const original = target[x];
      target[x] = original + step;
      const plus = lossAt();
      target[x] = original - step;
      const minus = lossAt();
      target[x] = original;
      grad[x] = (plus - minus) / (2 * step);
    }
    return grad;
  };
  return { gradA: differentiate(a), gradB: differentiate(b) };
}

/** Standard deviation sqrt(var + eps) of column j (float64, unbiased). */
function columnStd(values: Float32Array, [n, d]: readonly [number, number], j: number, eps = 0): number {
  let mean = 0;
  for (let i = 0; i < n; i++) mean += values[i * d + j];
  mean /= n;
  let squares = 0;
  for (let i = 0; i < n; i++) squares += (values[i * d + j] - mean) ** 2;
  return Math.sqrt(squares / (n - 1) + eps);
}

// Options that isolate one term, so an error in one gradient cannot hide behind another.
const ONLY_INVARIANCE: ReferenceOptions = { lambda: 1, mu: 0, nu: 0 };
const ONLY_VARIANCE: ReferenceOptions = { lambda: 0, mu: 1, nu: 0 };
const ONLY_COVARIANCE: ReferenceOptions = { lambda: 0, mu: 0, nu: 1 };

describe('float64 reference vs central finite differences', () => {
  const cases: { name: string; shape: [number, number]; seed: number; options: ReferenceOptions; scale?: number }[] = [
    { name: '5x4 paper defaults', shape: [5, 4], seed: 1, options: {} },
    { name: '5x4 official defaults', shape: [5, 4], seed: 2, options: { preset: 'official' } },
    { name: '7x3 paper non-default', shape: [7, 3], seed: 3, options: { ...NON_DEFAULT, preset: 'paper' } },
    { name: '7x3 official non-default', shape: [7, 3], seed: 4, options: { ...NON_DEFAULT, preset: 'official' } },
    { name: '4x6 (n < d) official', shape: [4, 6], seed: 5, options: { preset: 'official', gamma: 1.3 } },
    { name: '5x4 invariance only', shape: [5, 4], seed: 6, options: ONLY_INVARIANCE },
    { name: '5x4 variance only', shape: [5, 4], seed: 7, options: ONLY_VARIANCE },
    { name: '5x4 covariance only', shape: [5, 4], seed: 8, options: ONLY_COVARIANCE },
    { name: '2x3 (n = 2)', shape: [2, 3], seed: 9, options: { ...NON_DEFAULT, gamma: 2 } },
    { name: '6x1 (d = 1)', shape: [6, 1], seed: 10, options: { preset: 'official', gamma: 2 } },
  ];

  for (const { name, shape, seed, options } of cases) {
    it(name, () => {
      const views = randomViews(shape[0], shape[1], seed);
      const reference = referenceVICReg(views.a, views.b, shape, options);
      const numeric = finiteDifferenceGradients(views, shape, options);
      // h = 1e-6 in float64: truncation ~h^2, rounding ~1e-16 * loss / h ~ 1e-10 relative.
      expect(relativeNormError(reference.gradA, numeric.gradA)).toBeLessThan(1e-6);
      expect(relativeNormError(reference.gradB, numeric.gradB)).toBeLessThan(1e-6);
      // The terms themselves are nonzero here (so the gradient check is not vacuous).
      expect(Math.abs(reference.loss)).toBeGreaterThan(0);
    });
  }

  it('matches finite differences on adversarial inputs (collapsed, dominant)', () => {
    const shape: [number, number] = [6, 5];
    for (const views of [collapsedViews(6, 5, 11), dominantFeatureViews(6, 5, 12, { factor: 30 })]) {
      const reference = referenceVICReg(views.a, views.b, shape, { preset: 'official' });
      const numeric = finiteDifferenceGradients(views, shape, { preset: 'official' });
      expect(relativeNormError(reference.gradA, numeric.gradA)).toBeLessThan(1e-6);
      expect(relativeNormError(reference.gradB, numeric.gradB)).toBeLessThan(1e-6);
    }
  });

  it('loss = lambda*invariance + mu*variance + nu*covariance, and the presets differ by k on variance', () => {
    const views = randomViews(9, 7, 13);
    const paper = referenceVICReg(views.a, views.b, [9, 7], { ...NON_DEFAULT, preset: 'paper' });
    const official = referenceVICReg(views.a, views.b, [9, 7], { ...NON_DEFAULT, preset: 'official' });
    expect(relativeError(paper.loss, 3.5 * paper.invariance + 7 * paper.variance + 0.3 * paper.covariance)).toBeLessThan(1e-14);
    expect(paper.variance).toBeGreaterThan(0);
    expect(relativeError(official.variance, paper.variance / 2)).toBeLessThan(1e-14);
    expect(official.invariance).toBe(paper.invariance);
    expect(official.covariance).toBe(paper.covariance);
  });

  it('computes the invariance as a mean over n*d elements (F.mse_loss), not a sum over d', () => {
    // A - B = 1 everywhere: mean of squares is exactly 1 whatever n and d.
    const a = new Float32Array([1, 2, 3, 4, 5, 6]);
    const b = a.map((x) => x - 1);
    expect(referenceVICReg(a, b, [3, 2]).invariance).toBe(1);
  });
});

describe('float64 reference vs tfjs-cpu autograd', () => {
  beforeAll(async () => {
    await useTfjsCpu();
  });

  // tfjs computes in float32: agreement to ~1e-4 relative is what float32 allows with margin.
  const TOLERANCE = 1e-4;

  const cases: { name: string; shape: [number, number]; views: () => ViewPair; options: ReferenceOptions }[] = [
    { name: '5x4 paper defaults', shape: [5, 4], views: () => randomViews(5, 4, 21), options: {} },
    { name: '7x3 official defaults', shape: [7, 3], views: () => randomViews(7, 3, 22), options: { preset: 'official' } },
    { name: '7x3 paper non-default', shape: [7, 3], views: () => randomViews(7, 3, 23), options: { ...NON_DEFAULT } },
    { name: '17x33 official non-default', shape: [17, 33], views: () => randomViews(17, 33, 24), options: { ...NON_DEFAULT, preset: 'official' } },
    { name: '40x12 paper', shape: [40, 12], views: () => randomViews(40, 12, 25, { scale: 0.8 }), options: {} },
    { name: '2x3 (n = 2)', shape: [2, 3], views: () => randomViews(2, 3, 26), options: { gamma: 2 } },
    { name: '30x20 collapsed features', shape: [30, 20], views: () => collapsedViews(30, 20, 27), options: {} },
    { name: '16x64 dominant feature', shape: [16, 64], views: () => dominantFeatureViews(16, 64, 28), options: { preset: 'official' } },
    { name: '24x16 std near gamma', shape: [24, 16], views: () => nearGammaViews(24, 16, 29), options: {} },
  ];

  for (const { name, shape, views: makeViews, options } of cases) {
    it(name, () => {
      const { a, b } = makeViews();
      const reference = referenceVICReg(a, b, shape, options);
      const autograd = tfjsVICReg(a, b, shape, options);
      for (const term of ['loss', 'invariance', 'variance', 'covariance'] as const) {
        expect(relativeError(autograd[term], reference[term]), term).toBeLessThan(TOLERANCE);
      }
      expect(relativeNormError(autograd.gradA, reference.gradA)).toBeLessThan(TOLERANCE);
      expect(relativeNormError(autograd.gradB, reference.gradB)).toBeLessThan(TOLERANCE);
    });
  }

  it('d = 1: covariance and its gradient are exactly 0 in both', () => {
    const { a, b } = randomViews(8, 1, 31);
    const reference = referenceVICReg(a, b, [8, 1], ONLY_COVARIANCE);
    const autograd = tfjsVICReg(a, b, [8, 1], ONLY_COVARIANCE);
    expect(reference.covariance).toBe(0);
    expect(reference.loss).toBe(0);
    expect(reference.gradA.every((g) => g === 0)).toBe(true);
    expect(reference.gradB.every((g) => g === 0)).toBe(true);
    expect(autograd.covariance).toBe(0);
    expect(autograd.gradA.every((g) => g === 0)).toBe(true);
    // The other terms still agree at d = 1.
    const full = referenceVICReg(a, b, [8, 1], { preset: 'official', gamma: 2 });
    const fullAutograd = tfjsVICReg(a, b, [8, 1], { preset: 'official', gamma: 2 });
    expect(full.variance).toBeGreaterThan(0);
    expect(relativeError(fullAutograd.loss, full.loss)).toBeLessThan(TOLERANCE);
    expect(relativeNormError(fullAutograd.gradA, full.gradA)).toBeLessThan(TOLERANCE);
    expect(relativeNormError(fullAutograd.gradB, full.gradB)).toBeLessThan(TOLERANCE);
  });

  it('std exactly gamma: the variance term gives no gradient (relu derivative 0 at 0), as in tfjs', () => {
    // Column [-1, 0, 1]: mean 0, unbiased var 1; with eps = 0.5625, std = sqrt(1.5625) = 1.25 exactly,
    // in float64 and in float32 alike. gamma = 1.25 puts it exactly on the kink.
    const a = new Float32Array([-1, 0, 1]);
    const b = new Float32Array([-1, 0, 1]);
    const onKink = { ...ONLY_VARIANCE, gamma: 1.25, eps: 0.5625 };
    const reference = referenceVICReg(a, b, [3, 1], onKink);
    const autograd = tfjsVICReg(a, b, [3, 1], onKink);
    expect(reference.variance).toBe(0);
    expect(reference.gradA.every((g) => g === 0)).toBe(true);
    expect(autograd.gradA.every((g) => g === 0)).toBe(true);
    // Just above the kink the gradient is nonzero: the check above is not vacuous.
    const above = referenceVICReg(a, b, [3, 1], { ...onKink, gamma: 1.25 + 1e-9 });
    expect(Math.abs(above.gradA[0])).toBeGreaterThan(0.1);
  });

  it('tfjs reference leaks no tensors', () => {
    const { a, b } = randomViews(6, 5, 32);
    tfjsVICReg(a, b, [6, 5]); // warm-up: tfjs may allocate lasting state on first use
    const before = tfjsTensorCount();
    tfjsVICReg(a, b, [6, 5], { preset: 'official' });
    expect(tfjsTensorCount()).toBe(before);
  });
});

describe('input generators', () => {
  it('are deterministic in their seed', () => {
    expect(randomViews(4, 3, 7)).toEqual(randomViews(4, 3, 7));
    expect(randomViews(4, 3, 7).a).not.toEqual(randomViews(4, 3, 8).a);
    const uniform = mulberry32(42);
    const first = Array.from({ length: 5 }, uniform);
    expect(first.every((u) => u >= 0 && u < 1)).toBe(true);
    expect(Array.from({ length: 5 }, mulberry32(42))).toEqual(first);
  });

  it('gaussian sampler has mean ~0 and variance ~1', () => {
    const gaussian = gaussianSampler(5);
    const samples = Array.from({ length: 20000 }, gaussian);
    const mean = samples.reduce((s, x) => s + x, 0) / samples.length;
    const variance = samples.reduce((s, x) => s + (x - mean) ** 2, 0) / samples.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(variance - 1)).toBeLessThan(0.05);
  });

  it('randomViews: b is a noisy copy of a', () => {
    const { a, b } = randomViews(50, 20, 3);
    const ratio = relativeNormError(b, a);
    expect(ratio).toBeGreaterThan(0.05);
    expect(ratio).toBeLessThan(0.2);
  });

  it('adversarial generators produce what they claim', () => {
    const shape: [number, number] = [64, 12];
    const offset = largeOffsetViews(64, 12, 1);
    expect(Math.min(...offset.a)).toBeGreaterThan(1e4 - 10);
    expect(columnStd(offset.a, shape, 0)).toBeGreaterThan(0.3);

    const collapsed = collapsedViews(64, 12, 2);
    expect(columnStd(collapsed.a, shape, 0)).toBeLessThan(2e-3);
    expect(columnStd(collapsed.a, shape, 1)).toBeGreaterThan(0.3);

    const dominant = dominantFeatureViews(64, 12, 3);
    expect(columnStd(dominant.a, shape, 0)).toBeGreaterThan(100);
    expect(columnStd(dominant.a, shape, 1)).toBeLessThan(3);

    // nearGammaViews: std = sqrt(var + eps) lands on its target to float32 rounding, far inside the margin.
    const gamma = 0.7;
    const eps = 1e-3;
    const near = nearGammaViews(64, 12, 4, { gamma, eps, margin: 1e-3 });
    const targets = [gamma * (1 - 1e-3), gamma * (1 + 1e-3), gamma / 2, gamma * 2];
    for (let j = 0; j < 12; j++) {
      for (const view of [near.a, near.b]) {
        expect(relativeError(columnStd(view, shape, j, eps), targets[j % 4])).toBeLessThan(1e-5);
      }
    }
  });
});
