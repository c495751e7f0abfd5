// The WGSL kernels, imported as text (one kernel per file in kernels/), their override constants,
// dispatch geometry, bindings, and which adapters each variant suits.
import columnStatsWgsl from '../../kernels/column_stats.wgsl';
import lossTermsWgsl from '../../kernels/loss_terms.wgsl';
import formDecisionWgsl from '../../kernels/form_decision.wgsl';
import gramOffDiagSquaresWgsl from '../../kernels/gram_offdiag_squares.wgsl';
import gramOffDiagSquaresSubgroupWgsl from '../../kernels/gram_offdiag_squares_subgroup.wgsl';
import sampleGramWgsl from '../../kernels/sample_gram.wgsl';
import sampleGramSubgroupWgsl from '../../kernels/sample_gram_subgroup.wgsl';
import covarianceBackwardWgsl from '../../kernels/covariance_backward.wgsl';
import covarianceBackwardSubgroupWgsl from '../../kernels/covariance_backward_subgroup.wgsl';
import covarianceBackwardMirroredSubgroupWgsl from '../../kernels/covariance_backward_mirrored_subgroup.wgsl';
import covarianceBackwardDualWgsl from '../../kernels/covariance_backward_dual.wgsl';
import covarianceBackwardDualSubgroupWgsl from '../../kernels/covariance_backward_dual_subgroup.wgsl';
import gramOffDiagSquaresWorkgroupWgsl from '../../kernels/gram_offdiag_squares_workgroup.wgsl';
import sampleGramWorkgroupWgsl from '../../kernels/sample_gram_workgroup.wgsl';
import covarianceBackwardWorkgroupWgsl from '../../kernels/covariance_backward_workgroup.wgsl';
import covarianceBackwardDualWorkgroupWgsl from '../../kernels/covariance_backward_dual_workgroup.wgsl';
import centeredPanelsWgsl from '../../kernels/centered_panels.wgsl';
import type { Dispatch, KernelSpec } from '../runtime/gpu.js';
import { gradientCoefficients, type Coefficients } from './coefficients.js';

const ceilDiv = (a: number, b: number) => Math.ceil(a / b);

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

/**
 * The two ways to get the covariance term (math doc): 'primal' forms C = Zc^T Zc/(n-1) (d x d) at
 * O(n d^2); 'dual' forms K = Zc Zc^T (n x n) at O(n^2 d).
 */
export type { Form, Variant } from '../types.js';
import type { Form, Variant } from '../types.js';

/**
 * Kernel variants of the Gram and backward kernels:
 * - 'tiled': (8, 8) workgroups, a 4 x 4 register block per thread, scalar loads, any shape. The portable
 *   choice, and the one whose shape (many threads, register blocks) suits GPUs.
 * - 'subgroup': one subgroup of 8 per workgroup; values every lane needs are loaded once and passed by
 *   subgroupShuffle. For adapters where each lane's storage load is a separate bounds-checked scalar load
 *   (lavapipe); needs the 'subgroups' feature with a fixed subgroup size of 8, and d % 4 == 0 (vec4 loads).
 * - 'workgroup': (16, 16) workgroups, a 4 x 4 register block per thread over 64 x 64 tiles staged through
 *   workgroup memory 16 deep, with barriers: the textbook GPU kernel (each element read from global
 *   memory once per tile). Any shape. Slow on lavapipe, where barriers and workgroup memory cost.
 */
export const VARIANTS: readonly Variant[] = ['tiled', 'subgroup', 'workgroup'];

export interface DeviceTraits {
  subgroupSize?: number;
}

/** Whether a variant can run on this device for this shape. */
export function variantSupported(variant: Variant, traits: DeviceTraits, d: number): boolean {
  return variant !== 'subgroup' || (traits.subgroupSize === SUBGROUP_LANES && d % 4 === 0);
}

/** Logical buffers of a Gram dispatch, mapped to each kernel's bindings by `bindings`. */
export interface GramBuffers { z: GPUBuffer; stats: GPUBuffer; partials: GPUBuffer; matrix: GPUBuffer; dims: GPUBuffer }
/** Logical buffers of a backward dispatch. */
export interface BackwardBuffers {
  z: GPUBuffer; other: GPUBuffer; stats: GPUBuffer; matrix: GPUBuffer; grad: GPUBuffer; params: GPUBuffer; upstream: GPUBuffer;
  /** The centered column panels (centered_panels.wgsl), or any small buffer where the kernel reads Z directly. */
  panel: GPUBuffer;
}

export interface GramKernel {
  spec(writeMatrix: boolean): KernelSpec;
  /** Workgroups for an n x d view. */
  workgroups(n: number, d: number): readonly [number, number];
  /** Partial sums one view's dispatch writes (loss_terms reads this many per view). */
  partials(n: number, d: number): number;
  bindings(b: GramBuffers): GPUBuffer[];
}

export interface BackwardKernel {
  spec(accumulate: boolean): KernelSpec;
  workgroups(n: number, d: number): readonly [number, number];
  bindings(b: BackwardBuffers): GPUBuffer[];
  /**
   * A second pass, after this one, for a kernel that reads the packed matrix by rows only: it adds the
   * rest of Zc Coff (always adding, whatever ACCUMULATE).
   */
  mirrored?: { spec: KernelSpec; workgroups(n: number, d: number): readonly [number, number]; bindings(b: BackwardBuffers): GPUBuffer[] };
  /**
   * A kernel that runs column group by column group (columnGroups), each group's pass right after
   * `pack` copies the group's centered columns into the panel buffer (where ColumnGroups.panels);
   * `workgroups` is then one group's dispatch, and `pack` has the same.
   */
  grouped?: { columnGroups(n: number, d: number): ColumnGroups; pack: { spec: KernelSpec; bindings(b: BackwardBuffers): GPUBuffer[] } };
}

/** How a grouped backward splits the columns: `groups` groups of `width` columns (a multiple of 64; the last may run past d). */
export interface ColumnGroups { panels: boolean; groups: number; width: number }

// 'tiled' geometry: (8, 8) threads with 4 x 4 blocks cover a 32 x 32 tile.
const TILED_WG = 8;
const TILE = TILED_WG * 4;
// 'workgroup' geometry: (16, 16) threads with 4 x 4 blocks cover a 64 x 64 tile.
const WORKGROUP_WG = 16;
// 'subgroup' geometry: SHARED rows x (8 lanes * OWN columns); constants as in the WGSL files.
const SUBGROUP_LANES = 8;
const SUBGROUP_SHARED = 32;                // rows shared by the lanes, every subgroup kernel (Gram tiles: 32 x 64)
const SUBGROUP_BACKWARD_OWN_COLUMNS = 8;   // the three backward kernels: gradient columns per lane
const STRIP = SUBGROUP_LANES * SUBGROUP_BACKWARD_OWN_COLUMNS;   // columns per backward workgroup (centered_panels.wgsl's strip)
/**
 * The dual subgroup backward streams each 64-column strip of Zc over all n rows; from n rows on, it
 * reads the strips from panels (centered_panels.wgsl) that hold at most PANEL_MAX_STRIPS strips at a
 * time (scratch: n x 512 floats at most). Below, the copy costs more than it saves (README, Performance).
 */
export const PANEL_MIN_ROWS = 512;
export const PANEL_MAX_STRIPS = 8;

/** The dual subgroup backward's column groups: equal widths, as few groups as the panel size allows. */
export function columnGroups(n: number, d: number): ColumnGroups {
  const strips = ceilDiv(d, STRIP);
  if (n < PANEL_MIN_ROWS) return { panels: false, groups: 1, width: strips * STRIP };
  const groups = ceilDiv(strips, PANEL_MAX_STRIPS);
  return { panels: true, groups, width: ceilDiv(strips, groups) * STRIP };
}

/** A 'tiled' or 'workgroup' Gram kernel: (wg, wg) threads per (4 wg) x (4 wg) tile, a grid of tiles. */
const blockGram = (name: string, code: string, side: (n: number, d: number) => number, wg: number): GramKernel => ({
  spec: (writeMatrix) => ({ name, code, constants: { WG: wg, WRITE_MATRIX: writeMatrix } }),
  workgroups: (n, d) => [ceilDiv(side(n, d), 4 * wg), ceilDiv(side(n, d), 4 * wg)],
  partials: (n, d) => ceilDiv(side(n, d), 4 * wg) ** 2,
  bindings: (b) => [b.z, b.stats, b.partials, b.matrix, b.dims],
});

/** A 'tiled' or 'workgroup' backward kernel: (wg, wg) threads per (4 wg) x (4 wg) block of the gradient. */
const blockBackward = (name: string, code: string, wg: number): BackwardKernel => ({
  spec: (accumulate) => ({ name, code, constants: { WG: wg, ACCUMULATE: accumulate } }),
  workgroups: (n, d) => [ceilDiv(d, 4 * wg), ceilDiv(n, 4 * wg)],
  bindings: (b) => [b.z, b.other, b.stats, b.matrix, b.grad, b.params, b.upstream],
});

/**
 * The subgroup Gram kernels' workgroups: one per tile on or above the diagonal (SHARED-row by
 * 2*SHARED-column tiles: LANES * 4 * OWN4 = 64 columns primal, LANES * OWN = 64 dual, as the WGSL
 * const_asserts; the count its upperTileCount gives), laid out in rows of at most
 * maxComputeWorkgroupsPerDimension; workgroups past the count return at once.
 */
function upperTileCount(side: number): number {
  const columnTiles = ceilDiv(side, 2 * SUBGROUP_SHARED);
  return (columnTiles - 1) * columnTiles + Math.min(2 * columnTiles, ceilDiv(side, SUBGROUP_SHARED));
}
const MAX_WORKGROUPS_PER_DIMENSION = 65535;
const upperTileWorkgroups = (count: number) =>
  [Math.min(count, MAX_WORKGROUPS_PER_DIMENSION), ceilDiv(count, MAX_WORKGROUPS_PER_DIMENSION)] as const;

const subgroupBackwardWorkgroups = (n: number, d: number) =>
  [ceilDiv(d, SUBGROUP_LANES * SUBGROUP_BACKWARD_OWN_COLUMNS), ceilDiv(n, SUBGROUP_SHARED)] as const;
/**
 * The dual one's, for one column group (columnGroups; the whole width below PANEL_MIN_ROWS): row blocks
 * along x, so that consecutive workgroups share one strip of Zc's columns.
 */
const subgroupDualBackwardWorkgroups = (n: number, d: number) =>
  [ceilDiv(n, SUBGROUP_SHARED), columnGroups(n, d).width / STRIP] as const;

export interface FormKernels {
  gram: Record<Variant, GramKernel>;
  backward: Record<Variant, BackwardKernel>;
  /** Side of the Gram matrix: d (primal) or n (dual). */
  side(n: number, d: number): number;
}

export const forms: Record<Form, FormKernels> = {
  primal: {
    side: (_n, d) => d,
    gram: {
      tiled: blockGram('gram_offdiag_squares', gramOffDiagSquaresWgsl, (_n, d) => d, TILED_WG),
      workgroup: blockGram('gram_offdiag_squares_workgroup', gramOffDiagSquaresWorkgroupWgsl, (_n, d) => d, WORKGROUP_WG),
      subgroup: {
        spec: (writeMatrix) => ({ name: 'gram_offdiag_squares_subgroup', code: gramOffDiagSquaresSubgroupWgsl, constants: { WRITE_MATRIX: writeMatrix } }),
        workgroups: (_n, d) => upperTileWorkgroups(upperTileCount(d)),
        partials: (_n, d) => upperTileCount(d) * SUBGROUP_LANES,
        bindings: (b) => [b.z, b.stats, b.partials, b.matrix, b.dims, b.z],
      },
    },
    backward: {
      tiled: blockBackward('covariance_backward', covarianceBackwardWgsl, TILED_WG),
      workgroup: blockBackward('covariance_backward_workgroup', covarianceBackwardWorkgroupWgsl, WORKGROUP_WG),
      subgroup: {
        spec: (accumulate) => ({ name: 'covariance_backward_subgroup', code: covarianceBackwardSubgroupWgsl, constants: { ACCUMULATE: accumulate } }),
        workgroups: subgroupBackwardWorkgroups,
        bindings: (b) => [b.z, b.other, b.stats, b.matrix, b.grad, b.params, b.upstream],
        mirrored: {
          spec: { name: 'covariance_backward_mirrored_subgroup', code: covarianceBackwardMirroredSubgroupWgsl },
          workgroups: subgroupBackwardWorkgroups,   // the first pass's blocks
          bindings: (b) => [b.z, b.stats, b.matrix, b.grad, b.params, b.upstream],
        },
      },
    },
  },
  dual: {
    side: (n, _d) => n,
    gram: {
      tiled: blockGram('sample_gram', sampleGramWgsl, (n, _d) => n, TILED_WG),
      workgroup: blockGram('sample_gram_workgroup', sampleGramWorkgroupWgsl, (n, _d) => n, WORKGROUP_WG),
      subgroup: {
        spec: (writeMatrix) => ({ name: 'sample_gram_subgroup', code: sampleGramSubgroupWgsl, constants: { WRITE_MATRIX: writeMatrix } }),
        workgroups: (n) => upperTileWorkgroups(upperTileCount(n)),
        partials: (n) => upperTileCount(n) * SUBGROUP_LANES,
        bindings: (b) => [b.z, b.stats, b.partials, b.matrix, b.dims],
      },
    },
    backward: {
      tiled: blockBackward('covariance_backward_dual', covarianceBackwardDualWgsl, TILED_WG),
      workgroup: blockBackward('covariance_backward_dual_workgroup', covarianceBackwardDualWorkgroupWgsl, WORKGROUP_WG),
      subgroup: {
        spec: (accumulate) => ({ name: 'covariance_backward_dual_subgroup', code: covarianceBackwardDualSubgroupWgsl, constants: { ACCUMULATE: accumulate } }),
        workgroups: subgroupDualBackwardWorkgroups,
        bindings: (b) => [b.z, b.other, b.stats, b.matrix, b.grad, b.params, b.upstream, b.panel, b.matrix],
        grouped: {
          columnGroups,
          pack: { spec: { name: 'centered_panels', code: centeredPanelsWgsl }, bindings: (b) => [b.z, b.stats, b.panel, b.params] },
        },
      },
    },
  },
};

/**
 * gram_offdiag_squares.wgsl in its COLUMN_BLOCK mode: one block of columns of Coff (all d rows), for a
 * d x d matrix past the binding size limit.
 */
export const columnBlockGram = {
  spec: { name: 'gram_offdiag_squares (column block)', code: gramOffDiagSquaresWgsl, constants: { WG: TILED_WG, WRITE_MATRIX: true, COLUMN_BLOCK: true } } satisfies KernelSpec,
  workgroups: (d: number, width: number) => [ceilDiv(width, TILE), ceilDiv(d, TILE)] as const,
};

/** Columns per block of Coff that fit `limit` bytes: a multiple of 64 (so vec4 kernels can use it), or 0. */
export function columnBlockWidth(d: number, limit: number): number {
  return Math.min(Math.ceil(d / 64) * 64, Math.floor(limit / (4 * d) / 64) * 64);
}

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
 * The Gram kernels write, and the backward kernels read, both views' symmetric matrices packed into one
 * buffer of side^2 + side floats (the kernels' packedIndex): view A on and above the diagonal, view B
 * below it, B's diagonal after the side x side square. GramDims.lowerHalf is the view (0 A, 1 B);
 * BackwardParams.packing is PACKING[view], or PACKING_PLAIN for a plain matrix or column block.
 */
export const packedMatrixFloats = (side: number) => side * side + side;
export const PACKING = [1, 2] as const;
export const PACKING_PLAIN = 0;

/** Uniform buffer sizes in bytes: the WGSL structs' sizes rounded up to 16 (Dims is 8 bytes in the WGSL). */
export const UNIFORM_BYTES = { dims: 16, gramDims: 48, termParams: 64, backwardParams: 64, decisionParams: 48 } as const;

/**
 * A backward kernel's pipelines, in the order backwardPassList takes them: its pass, then its mirrored
 * pass or its panel copy where it has one.
 */
export function backwardSpecs(kernel: BackwardKernel, accumulate: boolean): KernelSpec[] {
  return [kernel.spec(accumulate), ...(kernel.mirrored ? [kernel.mirrored.spec] : []), ...(kernel.grouped ? [kernel.grouped.pack.spec] : [])];
}

/**
 * One view's backward as dispatches, in order: the kernel's pass and, on the packed matrix, its mirrored
 * pass where it has one; or, for a grouped kernel, per column group its panel copy (where the groups use
 * panels) and its pass. `pipes` as backwardSpecs lists them; `params[g]` is column group g's
 * BackwardParams (one buffer for an ungrouped kernel; backwardParamsPerGroup); `rows` = n but in a
 * variant trial. `indirect` gives each pass's dispatch arguments on the device; `blockWidth` is the
 * width of a plain column block of Coff (no mirrored pass then).
 */
export function backwardPassList(kernel: BackwardKernel, label: string, pipes: readonly GPUComputePipeline[], buffers: Omit<BackwardBuffers, 'params'>,
  params: readonly GPUBuffer[], rows: number, d: number,
  options: { indirect?: (pass: 'main' | 'mirrored') => { indirect: GPUBuffer; offset: number }; blockWidth?: number } = {}): Dispatch[] {
  const { indirect, blockWidth } = options;
  if (kernel.grouped) {
    const pack = kernel.grouped.pack;
    const packPipe = pipes[kernel.mirrored ? 2 : 1];   // backwardSpecs' order
    const groups = kernel.grouped.columnGroups(rows, d);
    if (params.length !== groups.groups) throw new Error(`${label}: ${params.length} BackwardParams for ${groups.groups} column groups`);
    const workgroups = indirect?.('main') ?? kernel.workgroups(rows, d);
    return params.flatMap((groupParams, g) => [
      ...(groups.panels ? [{ label: `${label}: panels ${g}`, pipeline: packPipe, workgroups, bindings: pack.bindings({ ...buffers, params: groupParams }) }] : []),
      { label: `${label}: columns ${g}`, pipeline: pipes[0], workgroups, bindings: kernel.bindings({ ...buffers, params: groupParams }) },
    ]);
  }
  const all = { ...buffers, params: params[0] };
  const dispatches: Dispatch[] = [{ label, pipeline: pipes[0], workgroups: indirect?.('main') ?? kernel.workgroups(rows, blockWidth ?? d), bindings: kernel.bindings(all) }];
  if (kernel.mirrored && blockWidth === undefined) {
    dispatches.push({
      label: `${label} (mirrored)`, pipeline: pipes[1], workgroups: indirect?.('mirrored') ?? kernel.mirrored.workgroups(rows, d),
      bindings: kernel.mirrored.bindings(all),
    });
  }
  return dispatches;
}

/**
 * GramDims, the Gram kernels' uniform, for one view of an n x d problem (n = the rows a variant trial
 * uses): its partials from `partialOffset`, its statistics, `lowerHalf` = the view (packedIndex); with
 * `block`, the column block of gram_offdiag_squares's COLUMN_BLOCK mode.
 */
export function gramDims(form: Form, n: number, d: number, view: 0 | 1, partialOffset: number, block?: { start: number; width: number }): Uint32Array<ArrayBuffer> {
  const layout = statsLayout(d);
  const tiles = ceilDiv(forms[form].side(n, d), TILE);   // the tiled kernel's tiles per side
  return new Uint32Array([n, d, tiles, partialOffset, layout.shift[view], layout.center[view], block?.start ?? 0, block?.width ?? 0, view, 0, 0, 0]);
}

/**
 * BackwardParams, the backward kernels' uniform, for one view: the gradient coefficients of an n x d
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

/** One view's BackwardParams for a backward kernel: one per column group of a grouped kernel, else one. */
export function backwardParamsPerGroup(kernel: BackwardKernel, c: Coefficients, n: number, d: number, rows: number, view: 0 | 1): ArrayBuffer[] {
  if (!kernel.grouped) return [backwardParams(c, n, d, rows, view)];
  const groups = kernel.grouped.columnGroups(rows, d);
  return Array.from({ length: groups.groups }, (_, index) => backwardParams(c, n, d, rows, view, undefined, { index, of: groups }));
}

/** Every pipeline the engine can build: each kernel of both forms and every variant, as it is specialized. */
export function allKernelSpecs(): KernelSpec[] {
  const specs: KernelSpec[] = [columnStats.spec, lossTerms.spec, formDecision.spec, columnBlockGram.spec];
  for (const form of Object.keys(forms) as Form[]) {
    for (const variant of VARIANTS) {
      specs.push(forms[form].gram[variant].spec(true), forms[form].gram[variant].spec(false));
      specs.push(...backwardSpecs(forms[form].backward[variant], false), ...backwardSpecs(forms[form].backward[variant], true));
    }
  }
  return specs;
}

/**
 * A digest (FNV-1a, 32 bits, hex) of every pipeline's source and override constants: the identity of
 * this build's kernels, which exported variant choices carry, so that choices measured with other
 * kernels or other tile constants are not reused.
 */
export const KERNELS_DIGEST = (() => {
  let hash = 0x811c9dc5;
  for (const spec of allKernelSpecs()) {
    const text = `${spec.name}|${JSON.stringify(spec.constants ?? {})}|${spec.code}`;
    for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
    hash = Math.imul(hash ^ 0xff, 0x01000193) >>> 0;   // a separator, so that boundaries count
  }
  return hash.toString(16).padStart(8, '0');
})();
