// Seeded random batches for demos and examples: the same seed gives the same batch everywhere (the CLI's
// demo, the browser demo page, the training example), so their numbers can be compared.

/** Seeded uniform numbers in [0, 1): mulberry32, 32 bits of state. */
export function uniformSampler(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seeded N(0, 1) sampler: Box-Muller (one output per pair) on `uniformSampler`'s numbers. */
export function gaussianSampler(seed: number): () => number {
  const uniform = uniformSampler(seed);
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** Two views of a batch: A standard Gaussian, B = A + 0.1 * Gaussian noise (n x d, row-major). */
export function randomBatch(n: number, d: number, seed: number): { a: Float32Array; b: Float32Array } {
  const gaussian = gaussianSampler(seed);
  const a = new Float32Array(n * d);
  const b = new Float32Array(n * d);
  for (let i = 0; i < a.length; i++) {
    a[i] = gaussian();
    b[i] = a[i] + 0.1 * gaussian();
  }
  return { a, b };
}
