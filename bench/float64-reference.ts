// A float64 CPU computation of the VICReg loss, its terms and gradients, to check the engine in the
// bench where tfjs is skipped (docs/vicreg-math.md). It picks the cheaper exact form in float64: the
// d x d covariance when d <= n, the n x n sample Gram matrix K = Zc Zc^T when n < d. (In float64 the
// dual form's "total - diagonal" keeps ~1e-16/share relative accuracy: no fallback needed.)
// Independent of src/ on purpose. Cost: about 2 min(n d^2, n^2 d) multiply-adds per view.

export interface Coefficients {
  lambda: number;
  mu: number;
  nu: number;
  gamma: number;
  eps: number;
  /** Variance scale: 1 (preset 'paper') or 1/2 ('official'). */
  varianceScale: number;
}

export interface Float64Result {
  loss: number;
  invariance: number;
  variance: number;
  covariance: number;
  gradA: Float64Array;
  gradB: Float64Array;
}

/** Multiply-adds of one float64 reference run, to decide whether it is cheap enough. */
export function float64MultiplyAdds(n: number, d: number): number {
  // Per view: a symmetric Gram (half) and one full product; two views.
  return 2 * 1.5 * Math.min(n * d * d, n * n * d);
}

interface ViewTerms {
  /** v(Z) = (1/d) sum_j max(0, gamma - std_j) */
  hinge: number;
  /** c(Z) = (1/d) sum_{l != m} C_lm^2 */
  offDiagonal: number;
  /** mu k dv/dZ + nu dc/dZ, n x d */
  grad: Float64Array;
}

/** Column statistics of one view: Zc, the unbiased variance, std = sqrt(var + eps), v(Z). */
function columnStatistics(z: Float32Array, n: number, d: number, c: Coefficients) {
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += z[i * d + j];
  for (let j = 0; j < d; j++) mean[j] /= n;
  const centered = new Float64Array(n * d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) centered[i * d + j] = z[i * d + j] - mean[j];
  const variance = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) variance[j] += centered[i * d + j] ** 2;
  const std = new Float64Array(d);
  let hingeSum = 0;
  for (let j = 0; j < d; j++) {
    variance[j] /= n - 1;
    std[j] = Math.sqrt(variance[j] + c.eps);
    hingeSum += Math.max(0, c.gamma - std[j]);
  }
  return { centered, variance, std, hinge: hingeSum / d };
}

type ColumnStatistics = ReturnType<typeof columnStatistics>;

/** Row i of mu k dv/dZ + nu dc/dZ into out[outOffset ..], given row i of Zc Coff. */
function gradientRow(stats: ColumnStatistics, zcCoffRow: Float64Array, i: number, n: number, d: number, c: Coefficients, out: Float64Array, outOffset: number) {
  const hingeScale = (c.mu * c.varianceScale) / (d * (n - 1));
  const covScale = (c.nu * 4) / (d * (n - 1));
  for (let j = 0; j < d; j++) {
    const zc = stats.centered[i * d + j];
    // relu has derivative 0 at the kink (strict <), as in PyTorch.
    const hingeGrad = stats.std[j] < c.gamma ? -zc / stats.std[j] : 0;
    out[outOffset + j] = hingeScale * hingeGrad + covScale * zcCoffRow[j];
  }
}

function viewTerms(z: Float32Array, n: number, d: number, c: Coefficients): ViewTerms {
  const stats = columnStatistics(z, n, d, c);
  // zcCoff = Zc Coff (n x d), where Coff is C = Zc^T Zc / (n-1) with its diagonal zeroed.
  const { offDiagonalSquares, zcCoff } = n < d
    ? dualCovariance(stats.centered, stats.variance, n, d)
    : primalCovariance(stats.centered, n, d);
  const grad = new Float64Array(n * d);
  for (let i = 0; i < n; i++) gradientRow(stats, zcCoff.subarray(i * d, (i + 1) * d), i, n, d, c, grad, i * d);
  return { hinge: stats.hinge, offDiagonal: offDiagonalSquares / d, grad };
}

/** d x d form: C = Zc^T Zc / (n-1) (upper triangle, mirrored), its off-diagonal squares, Zc Coff. */
function primalCovariance(centered: Float64Array, n: number, d: number) {
  const cov = new Float64Array(d * d);
  for (let i = 0; i < n; i++) {
    const row = i * d;
    for (let l = 0; l < d; l++) {
      const zl = centered[row + l];
      const covRow = l * d;
      for (let m = l; m < d; m++) cov[covRow + m] += zl * centered[row + m];
    }
  }
  let offDiagonalSquares = 0;
  for (let l = 0; l < d; l++) {
    cov[l * d + l] = 0;
    for (let m = l + 1; m < d; m++) {
      const value = cov[l * d + m] / (n - 1);
      cov[l * d + m] = value;
      cov[m * d + l] = value;
      offDiagonalSquares += 2 * value * value;
    }
  }
  const zcCoff = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    const row = i * d;
    for (let m = 0; m < d; m++) {
      const zm = centered[row + m];
      const covRow = m * d;
      for (let j = 0; j < d; j++) zcCoff[row + j] += zm * cov[covRow + j];
    }
  }
  return { offDiagonalSquares, zcCoff };
}

/**
 * n x n form: K = Zc Zc^T; sum_{l != m} C_lm^2 = ||K||_F^2/(n-1)^2 - sum_j var_j^2;
 * Zc Coff = K Zc/(n-1) - Zc diag(var).
 */
function dualCovariance(centered: Float64Array, variance: Float64Array, n: number, d: number) {
  const gram = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = i; k < n; k++) {
      let dot = 0;
      for (let j = 0; j < d; j++) dot += centered[i * d + j] * centered[k * d + j];
      gram[i * n + k] = dot;
      gram[k * n + i] = dot;
    }
  }
  let gramSquares = 0;
  for (let x = 0; x < n * n; x++) gramSquares += gram[x] * gram[x];
  let diagonalSquares = 0;
  for (let j = 0; j < d; j++) diagonalSquares += variance[j] * variance[j];
  const offDiagonalSquares = gramSquares / (n - 1) ** 2 - diagonalSquares;

  const zcCoff = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    const out = i * d;
    for (let k = 0; k < n; k++) {
      const weight = gram[i * n + k] / (n - 1);
      const row = k * d;
      for (let j = 0; j < d; j++) zcCoff[out + j] += weight * centered[row + j];
    }
    for (let j = 0; j < d; j++) zcCoff[out + j] -= centered[out + j] * variance[j];
  }
  return { offDiagonalSquares, zcCoff };
}

export function float64VICReg(a: Float32Array, b: Float32Array, n: number, d: number, c: Coefficients): Float64Result {
  let squaredDiffSum = 0;
  for (let x = 0; x < n * d; x++) squaredDiffSum += (a[x] - b[x]) ** 2;
  const invariance = squaredDiffSum / (n * d);
  const termsA = viewTerms(a, n, d, c);
  const termsB = viewTerms(b, n, d, c);
  const variance = c.varianceScale * (termsA.hinge + termsB.hinge);
  const covariance = termsA.offDiagonal + termsB.offDiagonal;
  const invarianceScale = (2 * c.lambda) / (n * d);
  const gradA = termsA.grad;
  const gradB = termsB.grad;
  for (let x = 0; x < n * d; x++) {
    const diff = invarianceScale * (a[x] - b[x]);
    gradA[x] += diff;
    gradB[x] -= diff;
  }
  return { loss: c.lambda * invariance + c.mu * variance + c.nu * covariance, invariance, variance, covariance, gradA, gradB };
}

export interface Float64SampledResult {
  invariance: number;
  variance: number;
  /** The sampled row indices. */
  rows: number[];
  /** The gradients' sampled rows, concatenated (rows.length x d). */
  gradARows: Float64Array;
  gradBRows: Float64Array;
}

/**
 * The cheap part of the reference, for shapes too big for the whole: the invariance and variance
 * terms (O(n d)) and a few rows of each gradient. Row i of Zc Coff is (K_i Zc)/(n-1) - Zc_i diag(var)
 * with K_i = Zc_i Zc^T, so each row costs 2 n d multiply-adds whatever the form. The covariance term
 * (and so the loss) needs all of K or C and is not checked here.
 */
export function float64SampledRows(a: Float32Array, b: Float32Array, n: number, d: number, c: Coefficients, rows: number[]): Float64SampledResult {
  let squaredDiffSum = 0;
  for (let x = 0; x < n * d; x++) squaredDiffSum += (a[x] - b[x]) ** 2;
  const invariance = squaredDiffSum / (n * d);
  const invarianceScale = (2 * c.lambda) / (n * d);
  const hinges: number[] = [];
  const gradRows: Float64Array[] = [];
  for (const [view, z] of [a, b].entries()) {
    const stats = columnStatistics(z, n, d, c);
    hinges.push(stats.hinge);
    const out = new Float64Array(rows.length * d);
    const zcCoffRow = new Float64Array(d);
    for (const [r, i] of rows.entries()) {
      zcCoffRow.fill(0);
      for (let k = 0; k < n; k++) {
        let dot = 0;
        for (let j = 0; j < d; j++) dot += stats.centered[i * d + j] * stats.centered[k * d + j];
        const weight = dot / (n - 1);
        for (let j = 0; j < d; j++) zcCoffRow[j] += weight * stats.centered[k * d + j];
      }
      for (let j = 0; j < d; j++) zcCoffRow[j] -= stats.centered[i * d + j] * stats.variance[j];
      gradientRow(stats, zcCoffRow, i, n, d, c, out, r * d);
      const sign = view === 0 ? 1 : -1;
      for (let j = 0; j < d; j++) out[r * d + j] += sign * invarianceScale * (a[i * d + j] - b[i * d + j]);
    }
    gradRows.push(out);
  }
  return { invariance, variance: c.varianceScale * (hinges[0] + hinges[1]), rows, gradARows: gradRows[0], gradBRows: gradRows[1] };
}
