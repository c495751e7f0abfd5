// Engine correctness: the WGSL engine's loss terms and gradients against the float64 reference
// (test/reference/float64.ts, itself cross-checked against finite differences and tfjs in
// reference.test.ts), on awkward shapes, both presets, non-default coefficients, upstream scales and
// adversarial inputs; plus determinism and instance reuse.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVICRegLoss, type VICRegLoss } from '../src/index.js';
import {
  collapsedViews,
  dominantFeatureViews,
  largeOffsetViews,
  nearGammaViews,
  randomViews,
  referenceVICReg,
  relativeError,
  relativeNormError,
  scaled,
  type ReferenceOptions,
  type ViewPair,
} from './reference/float64.js';
import { tfjsVICReg, useTfjsCpu } from './reference/tfjs.js';

type Shape = [number, number];

/** What float32 arithmetic allows with margin, per the brief: loss terms and gradients. */
const TERM_TOLERANCE = 1e-5;
const GRADIENT_TOLERANCE = 1e-4;

const NON_DEFAULT: ReferenceOptions = { lambda: 3.5, mu: 7, nu: 0.3, gamma: 0.7, eps: 1e-3 };

const TERMS = ['loss', 'invariance', 'variance', 'covariance'] as const;

interface Tolerances {
  term?: number;
  gradient?: number;
}

/**
 * Runs forward and backward(scale) on the engine and compares every term and both gradients with the
 * float64 reference. Messages name the case, the term and both values, so a failure reads on its own.
 */
async function expectMatchesReference(
  vic: VICRegLoss,
  label: string,
  { a, b }: ViewPair,
  shape: Shape,
  options: ReferenceOptions,
  { scale = 1, term = TERM_TOLERANCE, gradient = GRADIENT_TOLERANCE }: Tolerances & { scale?: number } = {},
): Promise<void> {
  const terms = await vic.forward(a, b, shape);
  const grads = await vic.backward(scale);
  const reference = referenceVICReg(a, b, shape, options);
  for (const name of TERMS) {
    const error = relativeError(terms[name], reference[name]);
    expect(error, `${label}: ${name} engine ${terms[name]} vs reference ${reference[name]}`).toBeLessThan(term);
  }
  expect(grads.gradA.length).toBe(shape[0] * shape[1]);
  expect(grads.gradB.length).toBe(shape[0] * shape[1]);
  const errorA = relativeNormError(grads.gradA, scaled(reference.gradA, scale));
  const errorB = relativeNormError(grads.gradB, scaled(reference.gradB, scale));
  expect(errorA, `${label}: gradA relative norm error`).toBeLessThan(gradient);
  expect(errorB, `${label}: gradB relative norm error`).toBeLessThan(gradient);
}

/** Shapes from the smallest possible up, most of them not multiples of 4/8/16/32/64. */
const SHAPES: Shape[] = [
  [2, 1], [2, 2], [3, 5], [5, 4], [17, 33], [64, 64], [65, 129], [100, 257], [257, 100], [31, 1000], [300, 700],
];

describe('paper preset, default coefficients', () => {
  const options: ReferenceOptions = { preset: 'paper' };
  let vic: VICRegLoss;
  beforeAll(async () => {
    vic = await createVICRegLoss(options);
  });
  afterAll(() => vic?.destroy());

  it('resolves the documented defaults', () => {
    expect(vic.options).toMatchObject({ lambda: 25, mu: 25, nu: 1, gamma: 1, eps: 1e-4, preset: 'paper' });
  });

  for (const [index, shape] of SHAPES.entries()) {
    it(`${shape[0]}x${shape[1]}`, async () => {
      const views = randomViews(shape[0], shape[1], 100 + index);
      await expectMatchesReference(vic, `paper ${shape.join('x')}`, views, shape, options);
    });
  }

  it('large: 301x1799 (a few hundred rows, ~1800 features)', async () => {
    const shape: Shape = [301, 1799];
    await expectMatchesReference(vic, 'paper 301x1799', randomViews(...shape, 150), shape, options);
  });
});

describe('official preset, non-default coefficients (lambda 3.5, mu 7, nu 0.3, gamma 0.7, eps 1e-3)', () => {
  const options: ReferenceOptions = { ...NON_DEFAULT, preset: 'official' };
  let vic: VICRegLoss;
  beforeAll(async () => {
    vic = await createVICRegLoss(options);
    await useTfjsCpu();
  });
  afterAll(() => vic?.destroy());

  it('resolves the given coefficients', () => {
    expect(vic.options).toMatchObject(options);
  });

  // Feature scales 0.35..1.05 around gamma = 0.7: the hinge is active on part of the features.
  const shapes: Shape[] = [[2, 1], [3, 5], [7, 3], [17, 33], [65, 129], [257, 100], [31, 1000], [200, 450]];
  for (const [index, shape] of shapes.entries()) {
    it(`${shape[0]}x${shape[1]}`, async () => {
      const views = randomViews(shape[0], shape[1], 200 + index, { scale: 0.7 });
      await expectMatchesReference(vic, `official ${shape.join('x')}`, views, shape, options);
    });
  }

  it('backward(scale) multiplies the gradients by an upstream scale (-2.5)', async () => {
    const shape: Shape = [65, 129];
    const views = randomViews(...shape, 220, { scale: 0.7 });
    await expectMatchesReference(vic, 'official 65x129 scale -2.5', views, shape, options, { scale: -2.5 });
    // backward again after the same forward: same gradients, scaled again.
    const unit = await vic.backward(1);
    const again = await vic.backward(-2.5);
    expect(relativeNormError(again.gradA, scaled(unit.gradA, -2.5))).toBeLessThan(1e-6);
    expect(relativeNormError(again.gradB, scaled(unit.gradB, -2.5))).toBeLessThan(1e-6);
  });

  it('backward(0) gives zero gradients', async () => {
    const shape: Shape = [17, 33];
    const views = randomViews(...shape, 221, { scale: 0.7 });
    await vic.forward(views.a, views.b, shape);
    const grads = await vic.backward(0);
    expect(grads.gradA.every((g) => g === 0)).toBe(true);
    expect(grads.gradB.every((g) => g === 0)).toBe(true);
  });

  // A second, float32 reference: tfjs-cpu autograd. Two float32 results agree to ~1e-4.
  for (const [shape, seed] of [[[17, 33], 230], [[65, 129], 231]] as [Shape, number][]) {
    it(`agrees with tfjs-cpu autograd at ${shape[0]}x${shape[1]}`, async () => {
      const { a, b } = randomViews(...shape, seed, { scale: 0.7 });
      const terms = await vic.forward(a, b, shape);
      const grads = await vic.backward();
      const autograd = tfjsVICReg(a, b, shape, options);
      for (const name of TERMS) {
        expect(relativeError(terms[name], autograd[name]), `tfjs ${shape.join('x')} ${name}`).toBeLessThan(1e-4);
      }
      expect(relativeNormError(grads.gradA, autograd.gradA)).toBeLessThan(1e-4);
      expect(relativeNormError(grads.gradB, autograd.gradB)).toBeLessThan(1e-4);
    });
  }
});

describe('paper preset, non-default coefficients', () => {
  const options: ReferenceOptions = { ...NON_DEFAULT, preset: 'paper' };
  let vic: VICRegLoss;
  beforeAll(async () => {
    vic = await createVICRegLoss(options);
  });
  afterAll(() => vic?.destroy());

  for (const [index, shape] of ([[3, 5], [33, 17], [100, 257]] as Shape[]).entries()) {
    it(`${shape[0]}x${shape[1]}, backward(-2.5)`, async () => {
      const views = randomViews(shape[0], shape[1], 300 + index, { scale: 0.7 });
      await expectMatchesReference(vic, `paper non-default ${shape.join('x')}`, views, shape, options, { scale: -2.5 });
    });
  }
});

describe('adversarial inputs', () => {
  const paper: ReferenceOptions = { preset: 'paper' };
  const official: ReferenceOptions = { ...NON_DEFAULT, preset: 'official' };
  let vicPaper: VICRegLoss;
  let vicOfficial: VICRegLoss;
  beforeAll(async () => {
    vicPaper = await createVICRegLoss(paper);
    vicOfficial = await createVICRegLoss(official);
  });
  afterAll(() => {
    vicPaper?.destroy();
    vicOfficial?.destroy();
  });

  // Large common offset (1e4), std O(1). No tolerance is loosened here: the inputs are exact float32
  // values and the reference uses them exactly, so nothing in the input forbids full accuracy. The
  // terms are second order in an error delta of a float32 column mean (centered values sum to zero),
  // but the gradients are linear in A_ij - mean_j: an engine that held each mean as one float32 (off by
  // up to half an ulp at 1e4, 4.9e-4, against O(1) centered values) would miss 1e-4 on the gradients.
  // Centering against a shift taken from the data (x - x_0j is exact in float32) avoids that.
  for (const shape of [[64, 96], [48, 400], [257, 100]] as Shape[]) {
    it(`large common offset 1e4, ${shape[0]}x${shape[1]}`, async () => {
      const views = largeOffsetViews(...shape, 400 + shape[1]);
      await expectMatchesReference(vicPaper, `offset 1e4 ${shape.join('x')}`, views, shape, paper);
    });
  }

  it('collapsed features (every third std 1e-3 << gamma), 64x200', async () => {
    const shape: Shape = [64, 200];
    await expectMatchesReference(vicPaper, 'collapsed 64x200', collapsedViews(...shape, 410), shape, paper);
  });

  it('all features collapsed (std 1e-3), 40x50, official non-default', async () => {
    const shape: Shape = [40, 50];
    const views = collapsedViews(...shape, 411, { every: 1 });
    await expectMatchesReference(vicOfficial, 'all collapsed 40x50', views, shape, official);
  });

  // n = d/8 with no dominant feature: the regime where an engine may use the n x n dual form.
  it('n = d/8 without a dominant feature, 32x256 (dual-form regime)', async () => {
    const shape: Shape = [32, 256];
    await expectMatchesReference(vicPaper, 'plain 32x256', randomViews(...shape, 420), shape, paper);
    // The engine's default ('auto') chooses the n x n dual form here and keeps it.
    expect(vicPaper.lastPlan).toMatchObject({ n: 32, d: 256, form: 'dual', fellBack: false });
  });

  // One feature scaled by 300: the off-diagonal mass is ~1e-4 of ||C||_F^2, so the dual form's
  // (total - diagonal) loses it to float32 cancellation; the engine must fall back to the d x d form.
  it('one dominant feature (x300), n = d/8, 32x256 (forces the fallback from the dual form)', async () => {
    const shape: Shape = [32, 256];
    await expectMatchesReference(vicPaper, 'dominant 32x256', dominantFeatureViews(...shape, 421), shape, paper);
    // The result above came from the d x d form, after the dual form measured a tiny off-diagonal share.
    const plan = vicPaper.lastPlan;
    expect(plan).toMatchObject({ n: 32, d: 256, form: 'primal', fellBack: true });
    expect(Math.max(...plan!.offDiagonalShare)).toBeLessThan(0.01);
  });

  it('one dominant feature (x300) in a middle column, 64x512, official non-default, backward(-2.5)', async () => {
    const shape: Shape = [64, 512];
    const views = dominantFeatureViews(...shape, 422, { column: 301 });
    await expectMatchesReference(vicOfficial, 'dominant 64x512', views, shape, official, { scale: -2.5 });
  });

  // Features with std = sqrt(var + eps) at gamma (1 -+ 1e-3), gamma/2 and 2 gamma: the hinge switches
  // on and off right next to these features; the margin is far above float32 rounding of std.
  it('features with std just below and just above gamma, 50x40 paper defaults', async () => {
    const shape: Shape = [50, 40];
    const views = nearGammaViews(...shape, 430, { gamma: 1, eps: 1e-4 });
    await expectMatchesReference(vicPaper, 'near gamma 50x40', views, shape, paper);
  });

  it('features with std just below and just above gamma, 70x90 official gamma 0.7 eps 1e-3', async () => {
    const shape: Shape = [70, 90];
    const views = nearGammaViews(...shape, 431, { gamma: 0.7, eps: 1e-3 });
    await expectMatchesReference(vicOfficial, 'near gamma 70x90', views, shape, official);
  });

  // std exactly gamma: relu has derivative 0 there (torch convention), so that feature gets no
  // variance gradient. Column 0 is [-1, 0, 1]: mean 0, var 1, std = sqrt(1 + 0.5625) = 1.25 exactly in
  // float32 too (small integers, and a correctly rounded sqrt of 1.5625).
  it('a feature with std exactly gamma gets no variance gradient (3x2)', async () => {
    const onKink: ReferenceOptions = { gamma: 1.25, eps: 0.5625, preset: 'paper' };
    const vic = await createVICRegLoss(onKink);
    try {
      const shape: Shape = [3, 2];
      const a = new Float32Array([-1, 0.3, 0, -0.2, 1, 0.5]);
      const b = new Float32Array([-1, 0.25, 0, -0.1, 1, 0.45]);
      // The check is not vacuous: taking the hinge's derivative as -1 at the kink changes the gradient a lot.
      const onKinkReference = referenceVICReg(a, b, shape, onKink);
      const offKinkReference = referenceVICReg(a, b, shape, { ...onKink, gamma: 1.25 * (1 + 1e-12) });
      expect(relativeNormError(offKinkReference.gradA, onKinkReference.gradA)).toBeGreaterThan(0.1);
      await expectMatchesReference(vic, 'std exactly gamma 3x2', { a, b }, shape, onKink);
    } finally {
      vic.destroy();
    }
  });
});

// Each form forced in turn: both must match the reference on every input, whichever ran. Forcing
// 'dual' still falls back to 'primal' where the dual form would lose accuracy (documented in types.ts).
for (const form of ['primal', 'dual'] as const) {
  describe(`form forced to '${form}'`, () => {
    const options: ReferenceOptions = { ...NON_DEFAULT, preset: 'paper' };
    let vic: VICRegLoss;
    beforeAll(async () => {
      vic = await createVICRegLoss({ ...options, form });
    });
    afterAll(() => vic?.destroy());

    const cases: { label: string; shape: Shape; views: () => ViewPair }[] = [
      { label: '2x1', shape: [2, 1], views: () => randomViews(2, 1, 600, { scale: 0.7 }) },
      { label: '3x5', shape: [3, 5], views: () => randomViews(3, 5, 601, { scale: 0.7 }) },
      { label: '17x33', shape: [17, 33], views: () => randomViews(17, 33, 602, { scale: 0.7 }) },
      { label: '65x129', shape: [65, 129], views: () => randomViews(65, 129, 603, { scale: 0.7 }) },
      { label: '257x100', shape: [257, 100], views: () => randomViews(257, 100, 604, { scale: 0.7 }) },
      { label: '31x1000', shape: [31, 1000], views: () => randomViews(31, 1000, 605, { scale: 0.7 }) },
      { label: 'offset 1e4 48x400', shape: [48, 400], views: () => largeOffsetViews(48, 400, 606) },
      { label: 'collapsed 40x120', shape: [40, 120], views: () => collapsedViews(40, 120, 607) },
      { label: 'dominant 32x256', shape: [32, 256], views: () => dominantFeatureViews(32, 256, 608) },
      { label: 'near gamma 30x120', shape: [30, 120], views: () => nearGammaViews(30, 120, 609, { gamma: 0.7, eps: 1e-3 }) },
    ];
    for (const { label, shape, views } of cases) {
      it(label, async () => {
        await expectMatchesReference(vic, `${form} ${label}`, views(), shape, options, { scale: -2.5 });
        const plan = vic.lastPlan!;
        expect(plan.form === form || (form === 'dual' && plan.fellBack)).toBe(true);
      });
    }

    if (form === 'dual') {
      it('falls back on the dominant feature even when forced', async () => {
        const { a, b } = dominantFeatureViews(32, 256, 608);
        await vic.forward(a, b, [32, 256]);
        expect(vic.lastPlan).toMatchObject({ form: 'primal', fellBack: true });
      });
    }
  });
}

describe('instance behaviour', () => {
  const options: ReferenceOptions = { preset: 'official' };
  let vic: VICRegLoss;
  beforeAll(async () => {
    vic = await createVICRegLoss(options);
  });
  afterAll(() => vic?.destroy());

  /** Bitwise equality of two float32 arrays (NaN-safe, distinguishes -0). */
  const sameBits = (x: Float32Array, y: Float32Array) =>
    x.length === y.length && Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(y.buffer, y.byteOffset, y.byteLength));

  for (const { label, shape, views } of [
    { label: '100x257', shape: [100, 257] as Shape, views: () => randomViews(100, 257, 500) },
    { label: 'dominant feature 32x256', shape: [32, 256] as Shape, views: () => dominantFeatureViews(32, 256, 501) },
  ]) {
    it(`is deterministic: 5 forward+backward runs are bitwise identical (${label})`, async () => {
      const { a, b } = views();
      const runs = [];
      for (let run = 0; run < 5; run++) {
        const terms = await vic.forward(a, b, shape);
        const grads = await vic.backward();
        runs.push({ terms, grads });
      }
      const [first, ...rest] = runs;
      for (const { terms, grads } of rest) {
        for (const name of TERMS) expect(Object.is(terms[name], first.terms[name]), `run term ${name}`).toBe(true);
        expect(sameBits(grads.gradA, first.grads.gradA)).toBe(true);
        expect(sameBits(grads.gradB, first.grads.gradB)).toBe(true);
      }
      expect(relativeNormError(first.grads.gradA, referenceVICReg(a, b, shape, options).gradA)).toBeLessThan(GRADIENT_TOLERANCE);
    });
  }

  it("backward(scale, { out }) writes bitwise the gradients of backward(scale) into the caller's arrays, every element", async () => {
    const shape: Shape = [37, 132];
    const { a, b } = randomViews(...shape, 505);
    await vic.forward(a, b, shape);
    const fresh = await vic.backward(-1.5);
    // Poisoned, so that an element the copy skips cannot pass; reused over two steps, as a training loop does.
    const out = { gradA: new Float32Array(shape[0] * shape[1]).fill(Number.NaN), gradB: new Float32Array(shape[0] * shape[1]).fill(Number.NaN) };
    for (let step = 0; step < 2; step++) {
      await vic.forward(a, b, shape);
      const grads = await vic.backward(-1.5, { out });
      expect(grads.gradA).toBe(out.gradA);
      expect(grads.gradB).toBe(out.gradB);
      expect(sameBits(out.gradA, fresh.gradA)).toBe(true);
      expect(sameBits(out.gradB, fresh.gradB)).toBe(true);
      out.gradA.fill(Number.NaN);
    }
  });

  it('stays usable after a rejected call', async () => {
    const shape: Shape = [17, 33];
    const views = randomViews(...shape, 510);
    await expect(vic.forward(views.a.subarray(1), views.b, shape)).rejects.toThrow();
    await expectMatchesReference(vic, 'after a rejected forward', views, shape, options);
  });

  it('handles a sequence of different shapes on one instance (buffers reused or reallocated)', async () => {
    const sequence: Shape[] = [[65, 129], [17, 33], [300, 700], [65, 129], [2, 1], [65, 129]];
    for (const [index, shape] of sequence.entries()) {
      const views = randomViews(...shape, 520 + index);
      await expectMatchesReference(vic, `sequence step ${index} ${shape.join('x')}`, views, shape, options);
    }
  });

  it('backward pairs with the last forward, not an earlier one', async () => {
    const first = randomViews(20, 30, 530);
    const second = randomViews(20, 30, 531);
    await vic.forward(first.a, first.b, [20, 30]);
    await vic.forward(second.a, second.b, [20, 30]);
    const grads = await vic.backward();
    const reference = referenceVICReg(second.a, second.b, [20, 30], options);
    expect(relativeNormError(grads.gradA, reference.gradA)).toBeLessThan(GRADIENT_TOLERANCE);
    expect(relativeNormError(grads.gradB, reference.gradB)).toBeLessThan(GRADIENT_TOLERANCE);
  });

  it('forward with { grad: false } gives the same terms; a later forward with gradients works', async () => {
    const shape: Shape = [40, 150];
    const views = randomViews(...shape, 540);
    const reference = referenceVICReg(views.a, views.b, shape, options);
    const terms = await vic.forward(views.a, views.b, shape, { grad: false });
    for (const name of TERMS) {
      expect(relativeError(terms[name], reference[name]), `grad:false ${name}`).toBeLessThan(TERM_TOLERANCE);
    }
    await expectMatchesReference(vic, 'after grad:false', views, shape, options);
  });

  it('does not modify its inputs', async () => {
    const shape: Shape = [17, 33];
    const views = randomViews(...shape, 550);
    const copyA = views.a.slice();
    const copyB = views.b.slice();
    await vic.forward(views.a, views.b, shape);
    await vic.backward(3);
    expect(sameBits(views.a, copyA)).toBe(true);
    expect(sameBits(views.b, copyB)).toBe(true);
  });
});
