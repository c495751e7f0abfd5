// The demo's seeded batch, shared by the page (demo.ts) and test/browser.test.ts, so the test rebuilds
// exactly the inputs the page used. The generator is `vicreg-wgsl demo`'s (src/io/random.ts), so
// `vicreg-wgsl demo --n 128 --d 256 --seed 1` prints the same terms (up to the adapter's rounding).

import { randomBatch } from '../../src/io/random.js';

export interface Batch {
  a: Float32Array;
  b: Float32Array;
}

/** The page's default batch. */
export const DEFAULT_BATCH = { n: 128, d: 256, seed: 1 } as const;

/** The CLI demo's generator (src/io/random.ts): A standard Gaussian, B = A + 0.1 * Gaussian noise. */
export const makeBatch: (n: number, d: number, seed: number) => Batch = randomBatch;

/**
 * A fingerprint of a batch: float64 sums of A and of B, weighted by position so that swapped elements
 * show too. The page publishes it; the test checks its rebuilt batch has the same one, bit for bit.
 */
export function batchChecksum({ a, b }: Batch): [number, number] {
  let sumA = 0;
  let sumB = 0;
  for (let i = 0; i < a.length; i++) {
    const weight = 1 + (i % 97);
    sumA += weight * a[i];
    sumB += weight * b[i];
  }
  return [sumA, sumB];
}

/** Euclidean norm, in float64. */
export function norm(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i] * values[i];
  return Math.sqrt(sum);
}
