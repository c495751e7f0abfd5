// The bench's float64 CPU check of the engine, for shapes where tfjs is skipped (docs/vicreg-math.md).
// It takes the cheaper exact form: for n >= d the d x d covariance, which is test/reference/float64.ts
// itself; for n < d the n x n sample Gram matrix K = Zc Zc^T, which that reference does not have.
// (In float64 the dual form's "total - diagonal" keeps ~1e-16/share relative accuracy: no fallback
// needed.) For shapes too big for either, a sampled check (a few gradient rows). Independent of src/ on
// purpose. Cost: about 2 min(n d^2, n^2 d) multiply-adds per view.

import {
  referenceVICReg, resolveOptions, varianceWeight, type ReferenceOptions, type ReferenceResult,
} from '../test/reference/float64.js';

type Options = Required<ReferenceOptions>;

/** Multiply-adds of one float64 reference run, to decide whether it is cheap enough. */
export function float64MultiplyAdds(n: number, d: number): number {
  // Per view: a symmetric Gram (half) and one full product; two views.
  return 2 * 1.5 * Math.min(n * d * d, n * n * d);
}

/** mean over n*d of (A - B)^2: the invariance term (F.mse_loss). */
function meanSquaredDifference(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  for (let x = 0; x < a.length; x++) sum += (a[x] - b[x]) ** 2;
  return sum / a.length;
}

/** Column statistics of one view: Zc, the unbiased variance, std = sqrt(var + eps), v(Z). */
function columnStatistics(z: Float32Array, n: number, d: number, o: Options) {
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
    std[j] = Math.sqrt(variance[j] + o.eps);
    hingeSum += Math.max(0, o.gamma - std[j]);
  }
  return { centered, variance, std, hinge: hingeSum / d };
}

type ColumnStatistics = ReturnType<typeof columnStatistics>;

/** Row i of mu k dv/dZ + nu dc/dZ into out[outOffset ..], given row i of Zc Coff. */
function gradientRow(stats: ColumnStatistics, zcCoffRow: Float64Array, i: number, n: number, d: number, o: Options, out: Float64Array, outOffset: number) {
  const hingeScale = (o.mu * varianceWeight(o.preset)) / (d * (n - 1));
  const covScale = (o.nu * 4) / (d * (n - 1));
  for (let j = 0; j < d; j++) {
    const zc = stats.centered[i * d + j];
    // relu has derivative 0 at the kink (strict <), as in PyTorch.
    const hingeGrad = stats.std[j] < o.gamma ? -zc / stats.std[j] : 0;
    out[outOffset + j] = hingeScale * hingeGrad + covScale * zcCoffRow[j];
  }
}

/** One view in the n x n form: v(Z), c(Z) = (1/d) sum_{l != m} C_lm^2, and mu k dv/dZ + nu dc/dZ (n x d). */
function dualViewTerms(z: Float32Array, n: number, d: number, o: Options) {
  const stats = columnStatistics(z, n, d, o);
  // zcCoff = Zc Coff (n x d), where Coff is C = Zc^T Zc / (n-1) with its diagonal zeroed.
  const { offDiagonalSquares, zcCoff } = dualCovariance(stats.centered, stats.variance, n, d);
  const grad = new Float64Array(n * d);
  for (let i = 0; i < n; i++) gradientRow(stats, zcCoff.subarray(i * d, (i + 1) * d), i, n, d, o, grad, i * d);
  return { hinge: stats.hinge, offDiagonal: offDiagonalSquares / d, grad };
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

/** The loss, its terms and both gradients in float64, in the cheaper exact form for the shape. */
export function float64VICReg(a: Float32Array, b: Float32Array, n: number, d: number, options: ReferenceOptions = {}): ReferenceResult {
  // n >= d: the d x d form is the cheaper one, and that is the test suite's reference.
  if (n >= d) return referenceVICReg(a, b, [n, d], options);
  const o = resolveOptions(options);
  const invariance = meanSquaredDifference(a, b);
  const termsA = dualViewTerms(a, n, d, o);
  const termsB = dualViewTerms(b, n, d, o);
  const variance = varianceWeight(o.preset) * (termsA.hinge + termsB.hinge);
  const covariance = termsA.offDiagonal + termsB.offDiagonal;
  const invarianceScale = (2 * o.lambda) / (n * d);
  const gradA = termsA.grad;
  const gradB = termsB.grad;
  for (let x = 0; x < n * d; x++) {
    const diff = invarianceScale * (a[x] - b[x]);
    gradA[x] += diff;
    gradB[x] -= diff;
  }
  return { loss: o.lambda * invariance + o.mu * variance + o.nu * covariance, invariance, variance, covariance, gradA, gradB };
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
export function float64SampledRows(
  a: Float32Array, b: Float32Array, n: number, d: number, options: ReferenceOptions, rows: number[],
): Float64SampledResult {
  const o = resolveOptions(options);
  const invariance = meanSquaredDifference(a, b);
  const invarianceScale = (2 * o.lambda) / (n * d);
  const hinges: number[] = [];
  const gradRows: Float64Array[] = [];
  for (const [view, z] of [a, b].entries()) {
    const stats = columnStatistics(z, n, d, o);
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
      gradientRow(stats, zcCoffRow, i, n, d, o, out, r * d);
      const sign = view === 0 ? 1 : -1;
      for (let j = 0; j < d; j++) out[r * d + j] += sign * invarianceScale * (a[i * d + j] - b[i * d + j]);
    }
    gradRows.push(out);
  }
  return { invariance, variance: varianceWeight(o.preset) * (hinges[0] + hinges[1]), rows, gradARows: gradRows[0], gradBRows: gradRows[1] };
}
