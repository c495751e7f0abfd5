// Every kernel variant in both forms against the float64 reference, with every scratch and output buffer
// poisoned (NaN) before each call, so an element that a kernel fails to write fails the test. Shapes are
// not multiples of the variants' tiles (32 x 32 'tiled'; 32 x 64 'subgroup'; 64 x 64 'workgroup').
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVICRegLoss, OptionError, type VICRegLoss } from '../src/index.js';
import type { Form, Variant } from '../src/types.js';
import { dominantFeatureViews, randomViews, referenceVICReg, relativeError, relativeNormError } from './reference/float64.js';
import { checkAgainstReference, expectRepeatable, TERMS, type Shape } from './reference/checks.js';

const options = { lambda: 3, mu: 11, nu: 0.7, gamma: 0.9, eps: 1e-3, preset: 'official' } as const;
// d % 4 == 0 for the subgroup variant (vec4 loads); n arbitrary.
const SHAPES: Shape[] = [[2, 4], [3, 8], [17, 36], [33, 100], [65, 132], [100, 256], [130, 68], [47, 516]];
const check = (vic: VICRegLoss, shape: Shape, seed: number, scale?: number) => checkAgainstReference(vic, shape, seed, options, scale);

for (const variant of ['tiled', 'subgroup', 'workgroup'] as Variant[]) {
  for (const form of ['primal', 'dual'] as Form[]) {
    describe(`variant ${variant}, form ${form} (poisoned scratch)`, () => {
      let vic: VICRegLoss;
      beforeAll(async () => {
        vic = await createVICRegLoss({ ...options, variant, form, poisonScratch: true });
      });
      afterAll(() => vic?.destroy());

      for (const [index, shape] of SHAPES.entries()) {
        it(`${shape[0]}x${shape[1]}`, async () => {
          await check(vic, shape, 700 + index);
          const plan = vic.lastPlan!;
          expect(plan.variant).toBe(variant);
          // A forced dual form still falls back where it must (n >= d makes the diagonal share large).
          if (form === 'primal') expect(plan.form).toBe('primal');
        });
      }

      it('is bitwise deterministic over repeated runs', () => expectRepeatable(vic, [65, 132], 790, options));
    });
  }
}

// From PANEL_MIN_ROWS = 512 rows the subgroup dual backward copies Zc's columns into panels group by group
// (centered_panels.wgsl) and reads them there: 520 x 1156 has 3 groups of 448 columns, the last one
// ending past d; 512 x 1540 has 4 groups of 448, the last with 3 strips wholly past d (skipped).
describe('variant subgroup, form dual, column panels (n >= 512, poisoned scratch)', () => {
  let vic: VICRegLoss;
  beforeAll(async () => {
    vic = await createVICRegLoss({ ...options, variant: 'subgroup', form: 'dual', poisonScratch: true });
  });
  afterAll(() => vic?.destroy());

  for (const [index, shape] of ([[520, 1156], [512, 1540]] as Shape[]).entries()) {
    it(`${shape[0]}x${shape[1]}`, async () => {
      const first = await check(vic, shape, 760 + index, -0.75);
      expect(vic.lastPlan).toMatchObject({ variant: 'subgroup', form: 'dual', fellBack: false });
      const { a, b } = randomViews(shape[0], shape[1], 760 + index, { scale: 0.9 });
      await vic.forward(a, b, shape);
      const again = { grads: await vic.backward(-0.75) };
      expect(Buffer.from(again.grads.gradA.buffer).equals(Buffer.from(first.grads.gradA.buffer))).toBe(true);
      expect(Buffer.from(again.grads.gradB.buffer).equals(Buffer.from(first.grads.gradB.buffer))).toBe(true);
    });
  }
});

describe('variant choice', () => {
  it("rejects a forced 'subgroup' variant where d % 4 != 0, naming why, and stays usable", async () => {
    const vic = await createVICRegLoss({ variant: 'subgroup' });
    try {
      const { a, b } = randomViews(5, 6, 1);
      await expect(vic.forward(a, b, [5, 6])).rejects.toThrow(OptionError);
      await expect(vic.forward(a, b, [5, 6])).rejects.toThrow(/d % 4 == 0 \(d = 6\)/);
      const ok = randomViews(5, 8, 2);
      const terms = await vic.forward(ok.a, ok.b, [5, 8]);
      expect(relativeError(terms.loss, referenceVICReg(ok.a, ok.b, [5, 8]).loss)).toBeLessThan(1e-5);
    } finally {
      vic.destroy();
    }
  });

  it("'auto' takes a portable variant where the subgroup one cannot run (d % 4 != 0)", async () => {
    const vic = await createVICRegLoss();
    try {
      const { a, b } = randomViews(9, 30, 3);
      await vic.forward(a, b, [9, 30]);
      expect(['tiled', 'workgroup']).toContain(vic.lastPlan!.variant);
    } finally {
      vic.destroy();
    }
  });

  it('a cached choice of one shape class never applies a variant that cannot run on another shape of it (d % 4)', async () => {
    // 4 x 8192 in the primal form is past the trial's budget, so the static preference (subgroup, where the
    // device has it) runs for its class; 4 x 8191 is in the same class, where subgroup cannot run.
    const first = await createVICRegLoss({ form: 'primal' });
    const second = await createVICRegLoss({ form: 'primal', device: first.device });
    try {
      const wide = randomViews(4, 8192, 11);
      await first.forward(wide.a, wide.b, [4, 8192], { grad: false });
      const [n, d] = [4, 8191];
      const { a, b } = randomViews(n, d, 12);
      const terms = await second.forward(a, b, [n, d], { grad: false });
      expect(second.lastPlan!.variant).not.toBe('subgroup');
      const reference = referenceVICReg(a, b, [n, d]);
      for (const name of TERMS) expect(relativeError(terms[name], reference[name]), name).toBeLessThan(1e-5);
    } finally {
      second.destroy();
      first.destroy();
    }
  });

  it("falls back from the dual form with each variant on the adversarial case (one feature x300, n = d/8)", async () => {
    for (const variant of ['tiled', 'subgroup', 'workgroup'] as Variant[]) {
      const vic = await createVICRegLoss({ variant, form: 'dual', poisonScratch: true });
      try {
        const [n, d] = [32, 256];
        const { a, b } = dominantFeatureViews(n, d, 9);
        const terms = await vic.forward(a, b, [n, d]);
        const grads = await vic.backward();
        const reference = referenceVICReg(a, b, [n, d]);
        expect(vic.lastPlan).toMatchObject({ form: 'primal', fellBack: true, variant });
        expect(relativeError(terms.covariance, reference.covariance)).toBeLessThan(1e-5);
        expect(relativeNormError(grads.gradA, reference.gradA)).toBeLessThan(1e-4);
      } finally {
        vic.destroy();
      }
    }
  });
});
