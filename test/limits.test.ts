// Sizes past the binding size limit: the d x d covariance that backward needs is formed one block of
// columns at a time instead of failing (tested here at small sizes with a lowered cap, and at d = 8192
// with the device's own limit); problems the device cannot hold at all are rejected up front, naming
// the size needed and the limit.
import { describe, expect, it } from 'vitest';
import { createVICRegLoss, LimitError } from '../src/index.js';
import { VARIANTS } from '../src/variants/registry.js';
import { cannotRun, titled } from './reference/adapter.js';
import { dominantFeatureViews, randomViews, referenceVICReg, relativeError, relativeNormError } from './reference/float64.js';

const TERMS = ['loss', 'invariance', 'variance', 'covariance'] as const;

describe('the d x d covariance past the binding limit', () => {
  // Every variant with primal kernels of its own whose gradient reads column blocks (d = 200 and 260 are
  // multiples of 4: every one of them runs where the adapter has what it needs).
  for (const { name: variant } of VARIANTS.filter((v) => v.forms.primal?.gradient.columnBlocks)) {
    const why = cannotRun(variant, 'primal', 61, 260);
    it.skipIf(why)(titled(`backward forms Coff in column blocks (${variant}; blocks of 64 columns, d = 200 and 260; n <= 64 so the views fit)`, why), async () => {
      for (const [n, d] of [[23, 200], [61, 260]] as const) {
        // Cap: 64 columns of Coff per block (d*64*4 bytes), far below the d*d*4 it would need whole.
        const vic = await createVICRegLoss({ form: 'primal', variant, maxBindingSize: d * 64 * 4 + 16, poisonScratch: true });
        try {
          const { a, b } = randomViews(n, d, n + d);
          const terms = await vic.forward(a, b, [n, d]);
          const grads = await vic.backward(0.75);
          const reference = referenceVICReg(a, b, [n, d]);
          for (const name of TERMS) expect(relativeError(terms[name], reference[name]), name).toBeLessThan(1e-5);
          expect(relativeNormError(grads.gradA, reference.gradA.map((g) => 0.75 * g))).toBeLessThan(1e-4);
          expect(relativeNormError(grads.gradB, reference.gradB.map((g) => 0.75 * g))).toBeLessThan(1e-4);
        } finally {
          vic.destroy();
        }
      }
    });
  }

  it('the dual -> primal fallback also works past the limit (one feature x300, n = d/8)', async () => {
    const [n, d] = [32, 256];
    const vic = await createVICRegLoss({ maxBindingSize: d * 64 * 4 });
    try {
      const { a, b } = dominantFeatureViews(n, d, 5);
      const terms = await vic.forward(a, b, [n, d]);
      const grads = await vic.backward();
      expect(vic.lastPlan).toMatchObject({ form: 'primal', fellBack: true });
      const reference = referenceVICReg(a, b, [n, d]);
      expect(relativeError(terms.covariance, reference.covariance)).toBeLessThan(1e-5);
      expect(relativeNormError(grads.gradA, reference.gradA)).toBeLessThan(1e-4);
    } finally {
      vic.destroy();
    }
  });

  it('rejects a view past the limit up front, naming the size and the limit, and stays usable', async () => {
    const vic = await createVICRegLoss({ maxBindingSize: 4096 });
    try {
      const { a, b } = randomViews(40, 40, 1);   // 6400 bytes per view
      await expect(vic.forward(a, b, [40, 40])).rejects.toThrow(LimitError);
      await expect(vic.forward(a, b, [40, 40])).rejects.toThrow(/a 40 x 40 float32 view needs 6400 bytes, over the maxBindingSize option of 4096 bytes/);
      const small = randomViews(8, 16, 2);
      const terms = await vic.forward(small.a, small.b, [8, 16]);
      expect(relativeError(terms.loss, referenceVICReg(small.a, small.b, [8, 16]).loss)).toBeLessThan(1e-5);
    } finally {
      vic.destroy();
    }
  });

  it("the paper's d = 8192 in the primal form (forced), with the device's own limit: matches the dual form", async () => {
    // Coff is 256 MiB, past lavapipe's 128 MiB binding limit: backward works in two blocks of columns.
    const [n, d] = [24, 8192];
    const { a, b } = randomViews(n, d, 8192);
    const primal = await createVICRegLoss({ form: 'primal' });
    const dual = await createVICRegLoss({ form: 'dual' });
    try {
      const tp = await primal.forward(a, b, [n, d]);
      const gp = await primal.backward();
      const td = await dual.forward(a, b, [n, d]);
      const gd = await dual.backward();
      expect(dual.lastPlan).toMatchObject({ form: 'dual', fellBack: false });
      for (const name of TERMS) expect(relativeError(tp[name], td[name]), name).toBeLessThan(1e-5);
      expect(relativeNormError(gp.gradA, gd.gradA)).toBeLessThan(1e-4);
      expect(relativeNormError(gp.gradB, gd.gradB)).toBeLessThan(1e-4);
    } finally {
      primal.destroy();
      dual.destroy();
    }
  });
});
