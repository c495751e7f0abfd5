// The 'windows' variant (dual form, lavapipe): against the float64 reference with every scratch buffer and
// the panel texture poisoned, on shapes that are not multiples of its blocks (128), super-tiles (256),
// Gram column groups (320 columns) or backward column groups (512), and through encode().
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVICRegLoss, type VICRegLoss } from '../src/index.js';
import { randomViews, referenceVICReg, relativeError, relativeNormError, scaled } from './reference/float64.js';

type Shape = [number, number];
const TERMS = ['loss', 'invariance', 'variance', 'covariance'] as const;
const options = { lambda: 3, mu: 11, nu: 0.7, gamma: 0.9, eps: 1e-3, preset: 'official' } as const;

async function check(vic: VICRegLoss, [n, d]: Shape, seed: number, scale = 1.5) {
  const { a, b } = randomViews(n, d, seed, { scale: 0.9 });
  const terms = await vic.forward(a, b, [n, d]);
  const grads = await vic.backward(scale);
  const reference = referenceVICReg(a, b, [n, d], options);
  for (const name of TERMS) expect(relativeError(terms[name], reference[name]), `${n}x${d} ${name}`).toBeLessThan(1e-5);
  expect(relativeNormError(grads.gradA, scaled(reference.gradA, scale)), `${n}x${d} gradA`).toBeLessThan(1e-4);
  expect(relativeNormError(grads.gradB, scaled(reference.gradB, scale)), `${n}x${d} gradB`).toBeLessThan(1e-4);
  return { terms, grads };
}

describe("variant windows, form dual (poisoned scratch)", () => {
  let vic: VICRegLoss;
  beforeAll(async () => {
    vic = await createVICRegLoss({ ...options, variant: 'windows', form: 'dual', poisonScratch: true });
  });
  afterAll(() => vic?.destroy());

  for (const [index, shape] of ([[3, 8], [17, 36], [65, 132], [130, 644], [257, 1156]] as Shape[]).entries()) {
    it(`${shape[0]}x${shape[1]}`, async () => {
      await check(vic, shape, 900 + index);
      expect(vic.lastPlan).toMatchObject({ variant: 'windows', form: 'dual', fellBack: false });
    });
  }
});
