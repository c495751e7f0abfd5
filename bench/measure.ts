// Counting and comparing: timing statistics, flop counts, and the agreement checks that keep a fast
// but wrong kernel from posting a number.
import { relativeError, relativeNormError } from '../test/reference/float64.js';

export interface TimingStats {
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** Every timed run, in order. */
  runsMs: number[];
}

export function timingStats(runsMs: number[]): TimingStats {
  const sorted = [...runsMs].sort((x, y) => x - y);
  const middle = sorted.length >> 1;
  const medianMs = sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
  return { medianMs, minMs: sorted[0], maxMs: sorted[sorted.length - 1], runsMs };
}

/** Runs `work` and returns its result with its wall time in milliseconds. */
export async function timed<T>(work: () => Promise<T>): Promise<{ result: T; ms: number }> {
  const start = performance.now();
  const result = await work();
  return { result, ms: performance.now() - start };
}

// ---------------------------------------------------------------------------------------------------
// Flops. Only the O(n d^2) / O(n^2 d) products count; the O(n d) work (statistics, elementwise terms,
// transfers) is left out. A multiply-add is 2 flops.

export const FLOP_CONVENTION = [
  'effective GFLOP/s = standard flops / time, where standard flops are those of the textbook d x d',
  'algorithm as autograd runs it: per view, forward C = Zc^T Zc (n d^2 multiply-adds) and backward',
  'dL/dZc = Zc (G + G^T) as two products (2 n d^2), so 2 views x 3 n d^2 x 2 = 12 n d^2 flops for',
  'forward + backward and 4 n d^2 for forward only; no symmetry credit. The same count is used for tfjs.',
  'form GFLOP/s = the useful flops of the form the engine used: primal forward n d(d+1)/2 and backward',
  'n d^2 multiply-adds per view (upper triangle of the symmetric C, then Zc Coff); dual forward',
  'd n(n+1)/2 and backward n^2 d (upper triangle of K = Zc Zc^T, then K Zc); when the dual form fell',
  'back to primal, both forwards count.',
].join(' ');

export interface FlopCounts {
  standardForwardBackward: number;
  standardForward: number;
  formForwardBackward: number;
  formForward: number;
}

export type Form = 'primal' | 'dual';

/** Useful multiply-adds per view of each form: its symmetric Gram (upper triangle), its backward product. */
function formMultiplyAdds(form: Form, n: number, d: number): { gram: number; backward: number } {
  return form === 'primal'
    ? { gram: (n * d * (d + 1)) / 2, backward: n * d * d }
    : { gram: (d * n * (n + 1)) / 2, backward: n * n * d };
}

export function flopCounts(n: number, d: number, form: Form, fellBack: boolean): FlopCounts {
  const views = 2;
  const flopsPerMultiplyAdd = 2;
  const used = formMultiplyAdds(form, n, d);
  const abandonedGram = fellBack ? formMultiplyAdds('dual', n, d).gram : 0;
  const formForward = views * flopsPerMultiplyAdd * (used.gram + abandonedGram);
  return {
    standardForwardBackward: views * flopsPerMultiplyAdd * 3 * n * d * d,
    standardForward: views * flopsPerMultiplyAdd * n * d * d,
    formForwardBackward: formForward + views * flopsPerMultiplyAdd * used.backward,
    formForward,
  };
}

export const gflops = (flops: number, ms: number) => flops / (ms * 1e6);

// ---------------------------------------------------------------------------------------------------
// Agreement checks.

export interface TermsAndGradients {
  loss: number;
  invariance: number;
  variance: number;
  covariance: number;
  gradA: ArrayLike<number>;
  gradB: ArrayLike<number>;
}

export type Terms = Omit<TermsAndGradients, 'gradA' | 'gradB'>;

/** What a reference offers: all terms or some, whole gradients or some rows of them. */
export interface ReferenceValues {
  terms: Partial<Terms>;
  gradA: ArrayLike<number>;
  gradB: ArrayLike<number>;
  /** When set, gradA/gradB hold only these rows of the n x d gradients, concatenated. */
  rows?: number[];
}

export const TERM_NAMES = ['loss', 'invariance', 'variance', 'covariance'] as const;

export interface Tolerance {
  /** Relative error allowed on each loss term. */
  term: number;
  /** Relative norm error ||x - ref|| / ||ref|| allowed on each gradient. */
  gradient: number;
}

/** tfjs-webgpu computes in float32 with less careful reductions: loose bounds (from the issue). */
export const TFJS_TOLERANCE: Tolerance = { term: 1e-3, gradient: 1e-2 };
/** Against float64, what float32 allows with a wide margin (the tests use 1e-5 / 1e-4 on small shapes). */
export const FLOAT64_TOLERANCE: Tolerance = { term: 1e-4, gradient: 1e-3 };
/**
 * GPU-resident paths against the host path: the same kernels on the same data, bitwise equal in
 * practice; the margin only allows for a different reduction order.
 */
export const SAME_ENGINE_TOLERANCE: Tolerance = { term: 1e-6, gradient: 1e-5 };

export interface Comparison {
  against: string;
  /** Which result of ours was compared, where not the host-path forward + backward (e.g. 'encode()'). */
  subject?: string;
  /** What was compared, in words (everything, or which part). */
  scope: string;
  pass: boolean;
  tolerance: Tolerance;
  /** Relative error of each term (and of the forward-only run's terms, where given). */
  termErrors: Record<string, number>;
  gradAError?: number;
  gradBError?: number;
  /** What disagreed, in words; empty when everything agreed. */
  failures: string[];
  /** Set when this reference disagreed but a more trusted one showed that the reference was wrong. */
  overruled?: string;
}

/** The given rows of a row-major matrix with `d` columns, concatenated. */
function pickRows(matrix: ArrayLike<number>, d: number, rows: number[]): Float64Array {
  const out = new Float64Array(rows.length * d);
  for (const [r, i] of rows.entries()) for (let j = 0; j < d; j++) out[r * d + j] = matrix[i * d + j];
  return out;
}

/**
 * Compares the engine's forward + backward result (and its forward-only terms, where given) with a
 * reference, on whatever the reference offers. NaN errors fail (`!(error <= bound)` is true for NaN).
 */
export function compare(
  against: string,
  scope: string,
  ours: TermsAndGradients,
  oursForwardOnly: Terms | undefined,
  reference: ReferenceValues,
  d: number,
  tolerance: Tolerance,
): Comparison {
  const failures: string[] = [];
  const termErrors: Record<string, number> = {};
  const results: [string, Terms][] = [['', ours]];
  if (oursForwardOnly) results.push(['forward-only ', oursForwardOnly]);
  for (const [label, result] of results) {
    for (const name of TERM_NAMES) {
      const expected = reference.terms[name];
      if (expected === undefined) continue;
      const error = relativeError(result[name], expected);
      termErrors[`${label}${name}`] = error;
      if (!(error <= tolerance.term)) {
        failures.push(`${label}${name} ${result[name]} vs ${expected} (relative error ${error.toExponential(2)} > ${tolerance.term})`);
      }
    }
  }
  const rows = reference.rows;
  const gradAError = relativeNormError(rows ? pickRows(ours.gradA, d, rows) : ours.gradA, reference.gradA);
  const gradBError = relativeNormError(rows ? pickRows(ours.gradB, d, rows) : ours.gradB, reference.gradB);
  for (const [name, error] of [['gradA', gradAError], ['gradB', gradBError]] as const) {
    if (!(error <= tolerance.gradient)) {
      failures.push(`${name}${rows ? ` (rows ${rows.join(', ')})` : ''} relative norm error ${error.toExponential(2)} > ${tolerance.gradient}`);
    }
  }
  return { against, scope, pass: failures.length === 0, tolerance, termErrors, gradAError, gradBError, failures };
}

/** The float32 references of other implementations: the ones float64 can prove wrong. */
const FLOAT32_REFERENCES = new Set(['tfjs-webgpu']);

/**
 * The row's verdict from its comparisons. float64 arbitrates: where ours agrees with the whole float64
 * reference, a disagreeing float32 reference (tfjs) is marked overruled instead of failing the row.
 * (Not the resident paths' checks against the host path: both sides of those are ours.)
 */
export function judge(checks: Comparison[]): 'ok' | 'mismatch' | 'unchecked' {
  if (checks.length === 0) return 'unchecked';
  const float64Agrees = checks.some((c) => c.against === 'float64' && c.scope === 'all' && c.pass);
  for (const c of checks) {
    if (!c.pass && FLOAT32_REFERENCES.has(c.against) && float64Agrees) {
      c.overruled = 'ours agrees with the whole float64 reference: this reference\'s result is the wrong one';
    }
  }
  return checks.every((c) => c.pass || c.overruled) ? 'ok' : 'mismatch';
}
