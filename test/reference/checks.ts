// Shared checks of the variant tests (variants.test.ts, windows.test.ts): one forward + backward against
// the float64 reference, and bitwise repeatability of that.
import { expect } from 'vitest';
import type { VICRegLoss } from '../../src/index.js';
import { randomViews, referenceVICReg, relativeError, relativeNormError, scaled, type ReferenceOptions } from './float64.js';

export type Shape = [number, number];
export const TERMS = ['loss', 'invariance', 'variance', 'covariance'] as const;

/** Forward + backward(scale) of seeded random views against the float64 reference (terms 1e-5, gradients 1e-4). */
export async function checkAgainstReference(vic: VICRegLoss, [n, d]: Shape, seed: number, options: ReferenceOptions, scale = 1.5) {
  const { a, b } = randomViews(n, d, seed, { scale: 0.9 });
  const terms = await vic.forward(a, b, [n, d]);
  const grads = await vic.backward(scale);
  const reference = referenceVICReg(a, b, [n, d], options);
  for (const name of TERMS) {
    expect(relativeError(terms[name], reference[name]), `${n}x${d} ${name}`).toBeLessThan(1e-5);
  }
  expect(relativeNormError(grads.gradA, scaled(reference.gradA, scale)), `${n}x${d} gradA`).toBeLessThan(1e-4);
  expect(relativeNormError(grads.gradB, scaled(reference.gradB, scale)), `${n}x${d} gradB`).toBeLessThan(1e-4);
  return { terms, grads };
}

/** The same check three more times: the same terms and the same gradients, bit for bit. */
export async function expectRepeatable(vic: VICRegLoss, shape: Shape, seed: number, options: ReferenceOptions) {
  const first = await checkAgainstReference(vic, shape, seed, options);
  for (let run = 0; run < 3; run++) {
    const again = await checkAgainstReference(vic, shape, seed, options);
    expect(again.terms).toEqual(first.terms);
    expect(Buffer.from(again.grads.gradA.buffer).equals(Buffer.from(first.grads.gradA.buffer))).toBe(true);
    expect(Buffer.from(again.grads.gradB.buffer).equals(Buffer.from(first.grads.gradB.buffer))).toBe(true);
  }
}
