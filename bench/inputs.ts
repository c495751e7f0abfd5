// Seeded benchmark inputs: the same kind of views as the tests use (test/reference/float64.ts,
// randomViews), rebuilt here so the bench does not depend on test code.
//   a_ij = s_j g_ij,   b_ij = s_j (g_ij + 0.1 g'_ij),   s_j uniform in [0.5, 1.5)
// With gamma = 1 the variance hinge is active on part of the features, so all three terms are
// substantial and a wrong kernel shows up in each of them.

export interface Views {
  a: Float32Array;
  b: Float32Array;
}

/** mulberry32: a tiny 32-bit PRNG, uniform in [0, 1). */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples by Box-Muller (both outputs used). */
function gaussianSampler(seed: number): () => number {
  const uniform = mulberry32(seed);
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const value = spare;
      spare = null;
      return value;
    }
    const radius = Math.sqrt(-2 * Math.log(1 - uniform())); // 1 - u is in (0, 1]: log is finite
    const angle = 2 * Math.PI * uniform();
    spare = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  };
}

export function benchViews(n: number, d: number, seed: number, noise = 0.1): Views {
  const uniform = mulberry32(seed ^ 0x9e3779b9);
  const scales = Float64Array.from({ length: d }, () => 0.5 + uniform());
  const gaussian = gaussianSampler(seed);
  const a = new Float32Array(n * d);
  const b = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      const base = gaussian();
      a[i * d + j] = scales[j] * base;
      b[i * d + j] = scales[j] * (base + noise * gaussian());
    }
  }
  return { a, b };
}
