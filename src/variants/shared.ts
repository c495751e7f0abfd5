// What every variant shares: the kernels that run whatever the variant (column statistics, the loss
// terms, encode()'s device-side form decision, the column-block Gram of a d x d matrix past the binding
// limit), the uniforms' layouts and values, and the packed layout of the Gram matrices.
import columnStatsWgsl from '../../kernels/column_stats.wgsl';
import lossTermsWgsl from '../../kernels/loss_terms.wgsl';
import formDecisionWgsl from '../../kernels/form_decision.wgsl';
import primalGramColumnsWgsl from '../../kernels/primal_gram_columns.wgsl';
import { gradientCoefficients, type Coefficients } from '../coefficients.js';
import type { KernelSpec } from '../runtime/gpu.js';
import type { Form } from '../types.js';
import type { MatrixLayout } from './program.js';
import type { Formula } from './kernel-plans.js';

export const ceilDiv = (a: number, b: number) => Math.ceil(a / b);

/** Threads per workgroup of column_stats (one column each). */
const COLUMN_STATS_WG = 64;
const LOSS_TERMS_WG = 256;

export const columnStats = {
  spec: { name: 'column_stats', code: columnStatsWgsl, constants: { WG: COLUMN_STATS_WG } } satisfies KernelSpec,
  workgroups: (d: number) => [ceilDiv(d, COLUMN_STATS_WG)] as const,
};

export const lossTerms = {
  spec: { name: 'loss_terms', code: lossTermsWgsl, constants: { WG: LOSS_TERMS_WG } } satisfies KernelSpec,
  workgroups: () => [1] as const,
};

export const formDecision = {
  spec: { name: 'form_decision', code: formDecisionWgsl } satisfies KernelSpec,
  workgroups: () => [1] as const,
};

/** Side of the Gram matrix: d (primal, C = Zc^T Zc/(n-1)) or n (dual, K = Zc Zc^T). */
export const side = (form: Form, n: number, d: number) => (form === 'primal' ? d : n);

/** GramDims.tiles: 32 x 32 tiles per side (the unit the plans count Gram tiles in). */
const TILE = 32;

/** primal_gram_columns.wgsl's workgroup: (8, 8) threads, a 4 x 4 register block each. */
const COLUMNS_WG = 8;
/** Rows and columns of Coff one primal_gram_columns workgroup covers. */
const COLUMNS_TILE = 4 * COLUMNS_WG;

/**
 * One block of columns of Coff (all d rows), for a d x d matrix past the binding limit; a gradient
 * program with `columnBlocks` then reads it. `dispatch`: its workgroups as manifest formulas
 * (src/manifest/plan.ts), `width` the block's columns.
 */
export const columnBlockGram = {
  spec: { name: 'primal_gram_columns', code: primalGramColumnsWgsl, constants: { WG: COLUMNS_WG } } satisfies KernelSpec,
  workgroups: (d: number, width: number) => [ceilDiv(width, COLUMNS_TILE), ceilDiv(d, COLUMNS_TILE)] as const,
  dispatch: (width: Formula): readonly [Formula, Formula, Formula] => [`ceil(${width}/${COLUMNS_TILE})`, `ceil(d/${COLUMNS_TILE})`, '1'],
};

/** Column blocks are a multiple of this wide (so that vec4 kernels can read them). */
const COLUMN_BLOCK_UNIT = 64;

/** Columns per block of Coff that fit `limit` bytes: a multiple of 64 (so vec4 kernels can use it), or 0. */
export function columnBlockWidth(d: number, limit: number): number {
  return Math.min(Math.ceil(d / COLUMN_BLOCK_UNIT) * COLUMN_BLOCK_UNIT, Math.floor(limit / (4 * d) / COLUMN_BLOCK_UNIT) * COLUMN_BLOCK_UNIT);
}
/** columnBlockWidth as a manifest formula, the limit named `limit`; and the bytes of the narrowest block (width 0 past them). */
export const columnBlockWidthFormula = (limit: Formula): Formula =>
  `min(ceil(d/${COLUMN_BLOCK_UNIT})*${COLUMN_BLOCK_UNIT}, floor(${limit}/(4*d)/${COLUMN_BLOCK_UNIT})*${COLUMN_BLOCK_UNIT})`;
export const narrowestBlockBytes: Formula = `4*d*${COLUMN_BLOCK_UNIT}`;

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

/**
 * The Gram kernels write, and the gradient kernels read, both views' symmetric matrices packed into one
 * buffer of side^2 + side floats (the kernels' packedIndex): view A on and above the diagonal, view B
 * below it, B's diagonal after the side x side square. GramDims.lowerHalf is the view (0 A, 1 B);
 * BackwardParams.packing is PACKING[view], or PACKING_PLAIN for a plain matrix or column block.
 */
export const packedMatrixFloats = (side: number) => side * side + side;
export const PACKING = [1, 2] as const;
export const PACKING_PLAIN = 0;

/** The layout every portable variant writes and reads. */
export const PACKED: MatrixLayout = { name: 'packed', floats: (form, n, d) => packedMatrixFloats(side(form, n, d)), uniform: false, gramAccumulates: false };

/** Uniform buffer sizes in bytes: the WGSL structs' sizes rounded up to 16 (Dims is 8 bytes in the WGSL). */
export const UNIFORM_BYTES = { dims: 16, gramDims: 48, termParams: 64, backwardParams: 64, decisionParams: 48 } as const;

/**
 * GramDims, the Gram kernels' uniform, for one view of an n x d problem (n = the rows a variant trial
 * uses): its partials from `partialOffset`, its statistics, `lowerHalf` = the view (packedIndex); with
 * `block`, the column block primal_gram_columns.wgsl computes.
 */
export function gramDims(form: Form, n: number, d: number, view: 0 | 1, partialOffset: number, block?: { start: number; width: number }): Uint32Array<ArrayBuffer> {
  const layout = statsLayout(d);
  const tiles = ceilDiv(side(form, n, d), TILE);
  return new Uint32Array([n, d, tiles, partialOffset, layout.shift[view], layout.center[view], block?.start ?? 0, block?.width ?? 0, view, 0, 0, 0]);
}

/** How a kernel that runs column group by column group splits the columns: `groups` of `width` (a multiple of 64; the last may run past d). */
export interface ColumnGroups { panels: boolean; groups: number; width: number }

/**
 * BackwardParams, the gradient kernels' uniform, for one view: the gradient coefficients of an n x d
 * problem, on `rows` rows (n but in a variant trial); the packed matrix (PACKING[view]), or with `block`
 * a plain column block of Coff (PACKING_PLAIN); with `group`, column group `index` of a grouped kernel.
 */
export function backwardParams(c: Coefficients, n: number, d: number, rows: number, view: 0 | 1,
  block?: { start: number; width: number }, group?: { index: number; of: ColumnGroups }): ArrayBuffer {
  const layout = statsLayout(d);
  const k = gradientCoefficients(c, n, d);
  const params = new ArrayBuffer(UNIFORM_BYTES.backwardParams);
  const columnStart = block?.start ?? (group ? group.index * group.of.width : 0);
  new Uint32Array(params, 0, 8).set([rows, d, layout.shift[view], layout.center[view], layout.variance[view],
    columnStart, block?.width ?? d, block ? PACKING_PLAIN : PACKING[view]]);
  new Float32Array(params, 32, 8).set([k.invCoef, k.varWeight, k.covCoef, c.gamma, c.eps, 0, 0, 0]);
  new Uint32Array(params, 52, 1).set([group?.of.panels ? 1 : 0]);
  return params;
}

/** The largest count per dimension a dispatch may have (WebGPU's guaranteed maxComputeWorkgroupsPerDimension). */
export const MAX_WORKGROUPS_PER_DIMENSION = 65535;
