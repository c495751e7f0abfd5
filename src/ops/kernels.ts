// The WGSL kernels, imported as text (one kernel per file in kernels/), and their dispatch geometry.
import columnStatsWgsl from '../../kernels/column_stats.wgsl';
import gramOffDiagSquaresWgsl from '../../kernels/gram_offdiag_squares.wgsl';
import covarianceBackwardWgsl from '../../kernels/covariance_backward.wgsl';
import lossTermsWgsl from '../../kernels/loss_terms.wgsl';
import type { KernelSpec } from '../runtime/gpu.js';

const ceilDiv = (a: number, b: number) => Math.ceil(a / b);

/** Threads per workgroup of column_stats (one column each). */
const COLUMN_STATS_WG = 64;
/** Gram and backward kernels: WG x WG threads, each a 4 x 4 register block. */
const TILE_WG = 8;
const TILE_BLOCK = 4;
export const TILE = TILE_WG * TILE_BLOCK;
const LOSS_TERMS_WG = 256;

export const columnStats = {
  spec: { name: 'column_stats', code: columnStatsWgsl, constants: { WG: COLUMN_STATS_WG } } satisfies KernelSpec,
  workgroups: (d: number) => [ceilDiv(d, COLUMN_STATS_WG)] as const,
};

export const gramOffDiagSquares = {
  spec: (writeMatrix: boolean): KernelSpec => ({
    name: 'gram_offdiag_squares', code: gramOffDiagSquaresWgsl, constants: { WG: TILE_WG, WRITE_MATRIX: writeMatrix },
  }),
  tiles: (d: number) => ceilDiv(d, TILE),
  workgroups: (d: number) => [ceilDiv(d, TILE), ceilDiv(d, TILE)] as const,
};

export const covarianceBackward = {
  spec: { name: 'covariance_backward', code: covarianceBackwardWgsl, constants: { WG: TILE_WG } } satisfies KernelSpec,
  workgroups: (n: number, d: number) => [ceilDiv(d, TILE), ceilDiv(n, TILE)] as const,
};

export const lossTerms = {
  spec: { name: 'loss_terms', code: lossTermsWgsl, constants: { WG: LOSS_TERMS_WG } } satisfies KernelSpec,
  workgroups: () => [1] as const,
};

/** Offsets (in floats) of the column_stats output: [meanA | meanB | varA | varB | sqDiff], d each. */
export const statsLayout = (d: number) => ({
  mean: [0, d] as const,
  variance: [2 * d, 3 * d] as const,
  sqDiff: 4 * d,
  floats: 5 * d,
});
