// The demo's seeded batch, shared by the page (demo.ts) and test/browser.test.ts, so the test rebuilds
// exactly the inputs the page used. Same generator as `vicreg-wgsl demo` (src/cli/main.ts), so
// `vicreg-wgsl demo --n 128 --d 256 --seed 1` prints the same terms (up to the adapter's rounding).

export interface Batch {
  a: Float32Array;
  b: Float32Array;
}

/** The page's default batch. */
export const DEFAULT_BATCH = { n: 128, d: 256, seed: 1 } as const;

/** A: standard Gaussian; B = A + 0.1 * Gaussian noise. mulberry32 + Box-Muller (one output per pair). */
export function makeBatch(n: number, d: number, seed: number): Batch {
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const gaussian = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  const a = new Float32Array(n * d);
  const b = new Float32Array(n * d);
  for (let i = 0; i < a.length; i++) {
    a[i] = gaussian();
    b[i] = a[i] + 0.1 * gaussian();
  }
  return { a, b };
}

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
