// A plain float64 reference of the VICReg loss and its gradients, written straight from
// docs/vicreg-math.md. It shares no code with src/ on purpose: it is what the engine is judged against.
// It uses the d x d covariance (not the n x n dual form), so it is O(n d^2): fine up to d ~ 2000.

export type ReferencePreset = 'paper' | 'official';

export interface ReferenceOptions {
  lambda?: number;
  mu?: number;
  nu?: number;
  gamma?: number;
  eps?: number;
  preset?: ReferencePreset;
}

export interface ReferenceResult {
  loss: number;
  invariance: number;
  variance: number;
  covariance: number;
  /** d loss / dA, n x d row-major. */
  gradA: Float64Array;
  /** d loss / dB, n x d row-major. */
  gradB: Float64Array;
}

/** The defaults of the math doc. */
export const DEFAULT_OPTIONS: Required<ReferenceOptions> = {
  lambda: 25,
  mu: 25,
  nu: 1,
  gamma: 1,
  eps: 1e-4,
  preset: 'paper',
};

export function resolveOptions(options: ReferenceOptions = {}): Required<ReferenceOptions> {
  return { ...DEFAULT_OPTIONS, ...options };
}

/** k in variance = k (v(A) + v(B)): 1 for 'paper' (Eq. 1), 1/2 for 'official' (facebookresearch/vicreg). */
export function varianceWeight(preset: ReferencePreset): number {
  return preset === 'official' ? 0.5 : 1;
}

/** Per-view quantities: v(Z), c(Z) and their gradients with respect to Z. */
interface ViewTerms {
  hinge: number; // v(Z) = (1/d) sum_j max(0, gamma - std_j)
  offDiagonalSquares: number; // c(Z) = (1/d) sum_{l != m} C_lm^2
  hingeGrad: Float64Array; // d v(Z) / dZ
  offDiagonalGrad: Float64Array; // d c(Z) / dZ
}

function viewTerms(z: Float64Array, n: number, d: number, gamma: number, eps: number): ViewTerms {
  // Column means and the centered matrix Zc.
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += z[i * d + j];
  for (let j = 0; j < d; j++) mean[j] /= n;
  const centered = new Float64Array(n * d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) centered[i * d + j] = z[i * d + j] - mean[j];

  // Covariance C = Zc^T Zc / (n-1), full d x d (upper triangle computed, then mirrored).
  const cov = new Float64Array(d * d);
  for (let i = 0; i < n; i++) {
    const row = i * d;
    for (let l = 0; l < d; l++) {
      const zl = centered[row + l];
      if (zl === 0) continue;
      const covRow = l * d;
      for (let m = l; m < d; m++) cov[covRow + m] += zl * centered[row + m];
    }
  }
  for (let l = 0; l < d; l++) {
    for (let m = l; m < d; m++) {
      const value = cov[l * d + m] / (n - 1);
      cov[l * d + m] = value;
      cov[m * d + l] = value;
    }
  }

  // Variance hinge. The diagonal of C is the unbiased variance.
  const std = new Float64Array(d);
  let hingeSum = 0;
  for (let j = 0; j < d; j++) {
    std[j] = Math.sqrt(cov[j * d + j] + eps);
    hingeSum += Math.max(0, gamma - std[j]);
  }
  const hinge = hingeSum / d;

  // Off-diagonal sum of squares; then zero the diagonal to get Coff for the gradient.
  let offSum = 0;
  for (let l = 0; l < d; l++) {
    for (let m = 0; m < d; m++) if (l !== m) offSum += cov[l * d + m] * cov[l * d + m];
  }
  const offDiagonalSquares = offSum / d;
  for (let j = 0; j < d; j++) cov[j * d + j] = 0;

  // d v / dZ_ij = -[std_j < gamma] Zc_ij / (d (n-1) std_j). Strict '<': torch's relu has derivative 0
  // at 0, so a feature with std exactly gamma contributes no gradient.
  const hingeGrad = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      if (std[j] < gamma) hingeGrad[i * d + j] = -centered[i * d + j] / (d * (n - 1) * std[j]);
    }
  }

  // d c / dZ = 4 / (d (n-1)) Zc Coff.
  const offDiagonalGrad = new Float64Array(n * d);
  const covScale = 4 / (d * (n - 1));
  for (let i = 0; i < n; i++) {
    const row = i * d;
    for (let m = 0; m < d; m++) {
      const zm = centered[row + m];
      if (zm === 0) continue;
      const covRow = m * d;
      for (let j = 0; j < d; j++) offDiagonalGrad[row + j] += zm * cov[covRow + j];
    }
    for (let j = 0; j < d; j++) offDiagonalGrad[row + j] *= covScale;
  }

  return { hinge, offDiagonalSquares, hingeGrad, offDiagonalGrad };
}

/**
 * The VICReg loss of two row-major n x d views, its three terms and its gradients, in float64.
 * invariance = mean over n*d of (A-B)^2 (F.mse_loss), variance = k (v(A) + v(B)) with k = 1 ('paper')
 * or 1/2 ('official'), covariance = c(A) + c(B).
 */
export function referenceVICReg(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  shape: readonly [number, number],
  options: ReferenceOptions = {},
): ReferenceResult {
  const [n, d] = shape;
  if (!(n >= 2 && d >= 1) || a.length !== n * d || b.length !== n * d) {
    throw new Error(`reference: bad shape [${n}, ${d}] for lengths ${a.length}, ${b.length}`);
  }
  const { lambda, mu, nu, gamma, eps, preset } = resolveOptions(options);
  const k = varianceWeight(preset);
  const a64 = Float64Array.from(a);
  const b64 = Float64Array.from(b);

  let squaredDiffSum = 0;
  for (let x = 0; x < n * d; x++) squaredDiffSum += (a64[x] - b64[x]) ** 2;
  const invariance = squaredDiffSum / (n * d);

  const termsA = viewTerms(a64, n, d, gamma, eps);
  const termsB = viewTerms(b64, n, d, gamma, eps);
  const variance = k * (termsA.hinge + termsB.hinge);
  const covariance = termsA.offDiagonalSquares + termsB.offDiagonalSquares;
  const loss = lambda * invariance + mu * variance + nu * covariance;

  const gradA = new Float64Array(n * d);
  const gradB = new Float64Array(n * d);
  const invarianceScale = (2 * lambda) / (n * d);
  for (let x = 0; x < n * d; x++) {
    const diff = invarianceScale * (a64[x] - b64[x]);
    gradA[x] = diff + mu * k * termsA.hingeGrad[x] + nu * termsA.offDiagonalGrad[x];
    gradB[x] = -diff + mu * k * termsB.hingeGrad[x] + nu * termsB.offDiagonalGrad[x];
  }
  return { loss, invariance, variance, covariance, gradA, gradB };
}

// ---------------------------------------------------------------------------------------------------
// Seeded inputs. Every generator is deterministic in its seed, so a failing case can be replayed.

/** mulberry32: a tiny 32-bit PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples (Box-Muller) from a seeded mulberry32. */
export function gaussianSampler(seed: number): () => number {
  const uniform = mulberry32(seed);
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const value = spare;
      spare = null;
      return value;
    }
    const u1 = 1 - uniform(); // in (0, 1]: log is finite
    const u2 = uniform();
    const radius = Math.sqrt(-2 * Math.log(u1));
    spare = radius * Math.sin(2 * Math.PI * u2);
    return radius * Math.cos(2 * Math.PI * u2);
  };
}

export interface ViewPair {
  a: Float32Array;
  b: Float32Array;
}

export interface RandomViewOptions {
  /** Added to every element of both views (default 0). */
  offset?: number;
  /** Overall feature scale (default 1). */
  scale?: number;
  /** Standard deviation of b - a relative to each feature's scale (default 0.1). */
  noise?: number;
}

/**
 * Two views built column by column: a_ij = offset + s_j g_ij, b_ij = offset + s_j (g_ij + noise g'_ij).
 * `columnScale(j)` gives s_j. Computed in float64, rounded once to float32.
 */
function buildViews(
  n: number,
  d: number,
  seed: number,
  columnScale: (column: number) => number,
  offset: number,
  noise: number,
): ViewPair {
  const gaussian = gaussianSampler(seed);
  const a = new Float32Array(n * d);
  const b = new Float32Array(n * d);
  const scales = Array.from({ length: d }, (_, j) => columnScale(j));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      const base = gaussian();
      const perturbed = base + noise * gaussian();
      a[i * d + j] = offset + scales[j] * base;
      b[i * d + j] = offset + scales[j] * perturbed;
    }
  }
  return { a, b };
}

/**
 * Random views, b a noisy copy of a. Feature scales spread over [0.5, 1.5) x scale, so that with
 * gamma = 1 the variance hinge is clearly active on some features and clearly inactive on others
 * (few features sit near the relu kink).
 */
export function randomViews(n: number, d: number, seed: number, options: RandomViewOptions = {}): ViewPair {
  const { offset = 0, scale = 1, noise = 0.1 } = options;
  const uniform = mulberry32(seed ^ 0x9e3779b9);
  const scales = Array.from({ length: d }, () => scale * (0.5 + uniform()));
  return buildViews(n, d, seed, (j) => scales[j], offset, noise);
}

/** Adversarial: every element carries a large common offset (default 1e4) on top of O(1) features. */
export function largeOffsetViews(n: number, d: number, seed: number, offset = 1e4): ViewPair {
  return randomViews(n, d, seed, { offset });
}

/**
 * Adversarial: every `every`-th feature (from column 0) is collapsed to std `collapsedStd` (<< gamma);
 * `every = 1` collapses all of them.
 */
export function collapsedViews(
  n: number,
  d: number,
  seed: number,
  { every = 3, collapsedStd = 1e-3 }: { every?: number; collapsedStd?: number } = {},
): ViewPair {
  const uniform = mulberry32(seed ^ 0x85ebca6b);
  const scales = Array.from({ length: d }, (_, j) => (j % every === 0 ? collapsedStd : 0.5 + uniform()));
  return buildViews(n, d, seed, (j) => scales[j], 0, 0.1);
}

/**
 * Adversarial: one feature (default column 0) scaled by `factor` (default 300) in both views. Its
 * variance dwarfs the rest, so ||C||_F^2 is almost all diagonal: the dual form loses the
 * off-diagonal part to cancellation and an engine must fall back to the d x d form.
 */
export function dominantFeatureViews(
  n: number,
  d: number,
  seed: number,
  { column = 0, factor = 300 }: { column?: number; factor?: number } = {},
): ViewPair {
  const views = randomViews(n, d, seed);
  for (let i = 0; i < n; i++) {
    views.a[i * d + column] *= factor;
    views.b[i * d + column] *= factor;
  }
  return views;
}

/**
 * Features whose std (sqrt(var + eps)) sits just around gamma: columns cycle through
 * gamma (1 - margin), gamma (1 + margin), gamma / 2, 2 gamma, in both views. Each column is rescaled
 * in float64 to hit its target exactly, then rounded to float32 (which moves std by ~1e-7 relative,
 * well inside the margin), so which side of the relu kink a feature is on is unambiguous.
 */
export function nearGammaViews(
  n: number,
  d: number,
  seed: number,
  { gamma = 1, eps = 1e-4, margin = 1e-3 }: { gamma?: number; eps?: number; margin?: number } = {},
): ViewPair {
  const targets = [gamma * (1 - margin), gamma * (1 + margin), gamma / 2, gamma * 2];
  const gaussian = gaussianSampler(seed);
  const draw = () => Float64Array.from({ length: n * d }, () => gaussian());
  const base = draw();
  const noise = draw();
  const makeView = (values: Float64Array): Float32Array => {
    const view = new Float32Array(n * d);
    for (let j = 0; j < d; j++) {
      let mean = 0;
      for (let i = 0; i < n; i++) mean += values[i * d + j];
      mean /= n;
      let squares = 0;
      for (let i = 0; i < n; i++) squares += (values[i * d + j] - mean) ** 2;
      const variance = squares / (n - 1);
      const target = targets[j % targets.length];
      const factor = Math.sqrt((target * target - eps) / variance);
      for (let i = 0; i < n; i++) view[i * d + j] = (values[i * d + j] - mean) * factor;
    }
    return view;
  };
  const a = makeView(base);
  const b = makeView(base.map((value, x) => value + 0.1 * noise[x]));
  return { a, b };
}

// ---------------------------------------------------------------------------------------------------
// Comparisons.

/** |actual - expected| / |expected|; 0 when both are 0. */
export function relativeError(actual: number, expected: number): number {
  if (actual === expected) return 0;
  return Math.abs(actual - expected) / Math.abs(expected);
}

/** ||actual - expected|| / ||expected|| (Euclidean norms); 0 when both are all zero. */
export function relativeNormError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) {
    throw new Error(`relativeNormError: lengths differ (${actual.length} vs ${expected.length})`);
  }
  let diffSquares = 0;
  let expectedSquares = 0;
  for (let x = 0; x < expected.length; x++) {
    diffSquares += (actual[x] - expected[x]) ** 2;
    expectedSquares += expected[x] ** 2;
  }
  if (diffSquares === 0) return 0;
  return Math.sqrt(diffSquares / expectedSquares);
}

/** Multiplies a gradient by an upstream scale (for comparing backward(scale)). */
export function scaled(values: ArrayLike<number>, scale: number): Float64Array {
  return Float64Array.from(values, (value) => value * scale);
}
