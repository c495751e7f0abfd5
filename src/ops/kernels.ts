// The WGSL kernels, imported as text (one kernel per file in kernels/), their override constants and
// dispatch geometry.
import columnStatsWgsl from '../../kernels/column_stats.wgsl';
import gramOffDiagSquaresWgsl from '../../kernels/gram_offdiag_squares.wgsl';
import covarianceBackwardWgsl from '../../kernels/covariance_backward.wgsl';
import sampleGramWgsl from '../../kernels/sample_gram.wgsl';
import covarianceBackwardDualWgsl from '../../kernels/covariance_backward_dual.wgsl';
import lossTermsWgsl from '../../kernels/loss_terms.wgsl';
import type { KernelSpec } from '../runtime/gpu.js';

const ceilDiv = (a: number, b: number) => Math.ceil(a / b);

/** Threads per workgroup of column_stats (one column each). */
const COLUMN_STATS_WG = 64;
/** Gram and backward kernels: WG x WG threads, each a 4 x 4 register block (BLOCK in the WGSL). */
const TILE_WG = 8;
const TILE_BLOCK = 4;
const TILE = TILE_WG * TILE_BLOCK;
const LOSS_TERMS_WG = 256;

export const columnStats = {
  spec: { name: 'column_stats', code: columnStatsWgsl, constants: { WG: COLUMN_STATS_WG } } satisfies KernelSpec,
  workgroups: (d: number) => [ceilDiv(d, COLUMN_STATS_WG)] as const,
};

export const lossTerms = {
  spec: { name: 'loss_terms', code: lossTermsWgsl, constants: { WG: LOSS_TERMS_WG } } satisfies KernelSpec,
  workgroups: () => [1] as const,
};

/**
 * The two ways to get the covariance term (math doc): 'primal' forms C = Zc^T Zc/(n-1) (d x d) at
 * O(n d^2); 'dual' forms K = Zc Zc^T (n x n) at O(n^2 d).
 */
export type Form = 'primal' | 'dual';

export interface FormKernels {
  /** The Gram kernel; with writeMatrix it also keeps the matrix for backward. */
  gram(writeMatrix: boolean): KernelSpec;
  /** The fused gradient kernel. */
  backward: KernelSpec;
  /** Side of the Gram matrix: d (primal) or n (dual). */
  side(n: number, d: number): number;
}

export const forms: Record<Form, FormKernels> = {
  primal: {
    gram: (writeMatrix) => ({ name: 'gram_offdiag_squares', code: gramOffDiagSquaresWgsl, constants: { WG: TILE_WG, WRITE_MATRIX: writeMatrix } }),
    backward: { name: 'covariance_backward', code: covarianceBackwardWgsl, constants: { WG: TILE_WG } },
    side: (_n, d) => d,
  },
  dual: {
    gram: (writeMatrix) => ({ name: 'sample_gram', code: sampleGramWgsl, constants: { WG: TILE_WG, WRITE_MATRIX: writeMatrix } }),
    backward: { name: 'covariance_backward_dual', code: covarianceBackwardDualWgsl, constants: { WG: TILE_WG } },
    side: (n, _d) => n,
  },
};

/** Gram tiles per side of a matrix (only those on and above the diagonal do work). */
export const gramTiles = (side: number) => ceilDiv(side, TILE);
export const gramWorkgroups = (side: number) => [gramTiles(side), gramTiles(side)] as const;

/** Backward dispatch over the n x d gradient (both forms). */
export const backwardWorkgroups = (n: number, d: number) => [ceilDiv(d, TILE), ceilDiv(n, TILE)] as const;

/**
 * Offsets (in floats) of the column_stats output, d each: [shiftA | shiftB | centerA | centerB | varA |
 * varB | sqDiff]; mean = shift + center (column_stats.wgsl says why it is kept in two parts).
 */
export const statsLayout = (d: number) => ({
  shift: [0, d] as const,
  center: [2 * d, 3 * d] as const,
  variance: [4 * d, 5 * d] as const,
  sqDiff: 6 * d,
  floats: 7 * d,
});

/** Uniform struct sizes in bytes (16-byte multiples), as declared in the WGSL. */
export const UNIFORM_BYTES = { dims: 16, gramDims: 32, termParams: 48, backwardParams: 64 } as const;
