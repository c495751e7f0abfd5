// Every kernel variant of the registry in both forms (each form it has kernels for) against the float64
// reference, with every scratch and output buffer poisoned (NaN) before each call, so an element that a
// kernel fails to write fails the test. Shapes are not multiples of the variants' tiles (32 x 32
// 'tiled'; 16 x 4 lanes (or 4 lanes x 16) 'subgroup'; 64 x 64 'workgroup'; 32 x 64 'shuffle'; 128-row blocks 'windows'). A variant
// this adapter cannot run is skipped by name, with why; at least one runs each form.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVICRegLoss, OptionError, type VICRegLoss } from '../src/index.js';
import type { Form } from '../src/types.js';
import { FORMS, runsFor, VARIANTS } from '../src/variants/registry.js';
import { cannotRun, titled, variantsHere } from './reference/adapter.js';
import { dominantFeatureViews, randomViews, referenceVICReg, relativeError, relativeNormError } from './reference/float64.js';
import { checkAgainstReference, expectRepeatable, TERMS, type Shape } from './reference/checks.js';

const options = { lambda: 3, mu: 11, nu: 0.7, gamma: 0.9, eps: 1e-3, preset: 'official' } as const;
// d % 4 == 0 for the subgroup variant (vec4 loads); n arbitrary.
const SHAPES: Shape[] = [[2, 4], [3, 8], [17, 36], [33, 100], [65, 132], [100, 256], [130, 68], [47, 516]];
const check = (vic: VICRegLoss, shape: Shape, seed: number, scale?: number) => checkAgainstReference(vic, shape, seed, options, scale);

for (const form of FORMS) {
  it(`at least one variant runs the ${form} form here (of ${VARIANTS.map((v) => v.name).join(', ')})`, () => {
    expect(variantsHere(form, 65, 132).runs.length).toBeGreaterThan(0);
  });
  for (const { name: variant } of VARIANTS.filter((v) => v.forms[form])) {
    const why = cannotRun(variant, form, 65, 132);
    describe.skipIf(why)(titled(`variant ${variant}, form ${form} (poisoned scratch)`, why), () => {
      let vic: VICRegLoss;
      beforeAll(async () => {
        vic = await createVICRegLoss({ ...options, variant, form, poisonScratch: true });
      });
      afterAll(() => vic?.destroy());

      for (const [index, shape] of SHAPES.entries()) {
        it.skipIf(cannotRun(variant, form, ...shape))(titled(`${shape[0]}x${shape[1]}`, cannotRun(variant, form, ...shape)), async () => {
          await check(vic, shape, 700 + index);
          const plan = vic.lastPlan!;
          // A forced dual form still falls back where it must (n >= d makes the diagonal share large).
          expect(plan.variant).toBe(runsFor(variant, plan.form).name);
          if (form === 'primal') expect(plan.form).toBe('primal');
        });
      }

      it('is bitwise deterministic over repeated runs', () => expectRepeatable(vic, [65, 132], 790, options));
    });
  }
}

// From PANEL_MIN_ROWS = 512 rows the subgroup dual backward copies Zc's columns into panels group by group
// (lavapipe/centered_panels.wgsl) and reads them there: 520 x 1156 has 3 groups of 448 columns, the last one
// ending past d; 512 x 1540 has 4 groups of 448, the last with 3 strips wholly past d (skipped).
const panelsWhy = cannotRun('shuffle', 'dual', 512, 1540);
describe.skipIf(panelsWhy)(titled('variant shuffle, form dual, column panels (n >= 512, poisoned scratch)', panelsWhy), () => {
  let vic: VICRegLoss;
  beforeAll(async () => {
    vic = await createVICRegLoss({ ...options, variant: 'shuffle', form: 'dual', poisonScratch: true });
  });
  afterAll(() => vic?.destroy());

  for (const [index, shape] of ([[520, 1156], [512, 1540]] as Shape[]).entries()) {
    it(`${shape[0]}x${shape[1]}`, async () => {
      const first = await check(vic, shape, 760 + index, -0.75);
      expect(vic.lastPlan).toMatchObject({ variant: 'shuffle', form: 'dual', fellBack: false });
      const { a, b } = randomViews(shape[0], shape[1], 760 + index, { scale: 0.9 });
      await vic.forward(a, b, shape);
      const again = { grads: await vic.backward(-0.75) };
      expect(Buffer.from(again.grads.gradA.buffer).equals(Buffer.from(first.grads.gradA.buffer))).toBe(true);
      expect(Buffer.from(again.grads.gradB.buffer).equals(Buffer.from(first.grads.gradB.buffer))).toBe(true);
    });
  }
});

describe('variant choice', () => {
  // The shuffle kernels load Z as vec4s: d % 4 == 0.
  it.skipIf(cannotRun('shuffle', 'dual', 5, 8))(titled("rejects a forced 'shuffle' variant where d % 4 != 0, naming why, and stays usable", cannotRun('shuffle', 'dual', 5, 8)), async () => {
    const vic = await createVICRegLoss({ variant: 'shuffle' });
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

  it("'auto' takes a variant that runs the shape where others cannot (d % 4 != 0)", async () => {
    const vic = await createVICRegLoss();
    try {
      const { a, b } = randomViews(9, 30, 3);
      await vic.forward(a, b, [9, 30]);
      expect(variantsHere('dual', 9, 30).runs).toContain(vic.lastPlan!.variant);
      expect(vic.lastPlan!.variant).not.toBe('shuffle');
    } finally {
      vic.destroy();
    }
  });

  it.skipIf(cannotRun('shuffle', 'primal', 4, 8192))(titled('a cached choice of one shape class never applies a variant that cannot run on another shape of it (d % 4)', cannotRun('shuffle', 'primal', 4, 8192)), async () => {
    // 4 x 8192 in the primal form is past the trial's budget, so the static preference (shuffle, where the
    // device has it) runs for its class; 4 x 8191 is in the same class, where shuffle cannot run.
    const first = await createVICRegLoss({ form: 'primal' });
    const second = await createVICRegLoss({ form: 'primal', device: first.device });
    try {
      const wide = randomViews(4, 8192, 11);
      await first.forward(wide.a, wide.b, [4, 8192], { grad: false });
      const [n, d] = [4, 8191];
      const { a, b } = randomViews(n, d, 12);
      const terms = await second.forward(a, b, [n, d], { grad: false });
      expect(second.lastPlan!.variant).not.toBe('shuffle');
      const reference = referenceVICReg(a, b, [n, d]);
      for (const name of TERMS) expect(relativeError(terms[name], reference[name]), name).toBeLessThan(1e-5);
    } finally {
      second.destroy();
      first.destroy();
    }
  });

  it("falls back from the dual form with each variant that runs here on the adversarial case (one feature x300, n = d/8)", async () => {
    const { runs } = variantsHere('dual', 32, 256);
    expect(runs.length).toBeGreaterThan(0);
    for (const variant of runs) {
      const vic = await createVICRegLoss({ variant, form: 'dual', poisonScratch: true });
      try {
        const [n, d] = [32, 256];
        const { a, b } = dominantFeatureViews(n, d, 9);
        const terms = await vic.forward(a, b, [n, d]);
        const grads = await vic.backward();
        const reference = referenceVICReg(a, b, [n, d]);
        expect(vic.lastPlan).toMatchObject({ form: 'primal', fellBack: true, variant: runsFor(variant, 'primal').name });
        expect(relativeError(terms.covariance, reference.covariance)).toBeLessThan(1e-5);
        expect(relativeNormError(grads.gradA, reference.gradA)).toBeLessThan(1e-4);
      } finally {
        vic.destroy();
      }
    }
  });
});
