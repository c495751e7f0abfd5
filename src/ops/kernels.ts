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
import sampleGramWindowsWgsl from '../../kernels/sample_gram_windows.wgsl';
import covarianceBackwardDualWindowsWgsl from '../../kernels/covariance_backward_dual_windows.wgsl';
import { Usage, type Binding, type Dispatch, type KernelSpec, type Step } from '../runtime/gpu.js';
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
 * - 'windows': the dual form only (the primal form runs 'subgroup' where it is forced): the subgroup
 *   kernels' shape, but every operand of the inner loops read through 64 KiB uniform-buffer windows or a
 *   storage texture, never a storage buffer (on lavapipe a storage load is a branch per lane; a uniform
 *   load is a branch-free gather). Per column group: texture copies, then one Gram dispatch, or one
 *   backward dispatch per block row and 8 blocks of K (windowGramPassList, windowBackwardPassList). Needs what 'subgroup' needs
 *   and the WGSL language features of WINDOW_LANGUAGE_FEATURES (runtime/device.ts), n <= WINDOWS_MAX_ROWS.
 */
export const VARIANTS: readonly Variant[] = ['tiled', 'subgroup', 'workgroup', 'windows'];

export interface DeviceTraits {
  subgroupSize?: number;
  /** The WGSL language features the 'windows' kernels require (runtime/device.ts WINDOW_LANGUAGE_FEATURES). */
  windowLanguage?: boolean;
}

/**
 * Whether a variant can run on this device for an n x d problem in this form ('windows' is a dual-form
 * variant; where it is forced, the primal form runs 'subgroup': formVariant).
 */
export function variantSupported(variant: Variant, traits: DeviceTraits, n: number, d: number, form: Form): boolean {
  const subgroup = traits.subgroupSize === SUBGROUP_LANES && d % 4 === 0;
  if (variant === 'subgroup') return subgroup;
  if (variant === 'windows') return subgroup && !!traits.windowLanguage && form === 'dual' && n <= WINDOWS_MAX_ROWS;
  return true;
}

/** The variant a form runs for a chosen one: 'windows' has no primal kernels, whose lavapipe twin is 'subgroup'. */
export const formVariant = (variant: Variant, form: Form): Variant => (variant === 'windows' && form === 'primal' ? 'subgroup' : variant);

/** Logical buffers of a Gram dispatch, mapped to each kernel's bindings by `bindings`. */
export interface GramBuffers { z: GPUBuffer; stats: GPUBuffer; partials: GPUBuffer; matrix: GPUBuffer; dims: GPUBuffer }
/** Logical buffers of a backward dispatch. */
export interface BackwardBuffers {
  z: GPUBuffer; other: GPUBuffer; stats: GPUBuffer; matrix: GPUBuffer; grad: GPUBuffer; params: GPUBuffer; upstream: GPUBuffer;
  /** The centered column panels (centered_panels.wgsl), or any small buffer where the kernel reads Z directly. */
  panel: GPUBuffer;
}
/** What the 'windows' kernels bind besides those: the view's records (windowRecords) and the scratch they copy Zc into. */
export interface WindowBuffers {
  /** windowRecords(...).bytes, a UNIFORM buffer, for the view being run. */
  records: GPUBuffer;
  /** The panels (centered_panels.wgsl) of a column group: STORAGE | COPY_SRC, windowPanelFloats(n, d) floats (unused where the views are copied as they are). */
  panel: GPUBuffer;
  /** The Gram's and the backward's panels: a 16 x n x strips rgba32float texture (windowTextureSize), filled per group (windowTextureSteps). */
  texture: { gpu: GPUTexture; view: GPUTextureView };
}

export interface GramKernel {
  spec(writeMatrix: boolean): KernelSpec;
  /** Workgroups for an n x d view. */
  workgroups(n: number, d: number): readonly [number, number];
  /** Partial sums one view's dispatch writes (loss_terms reads this many per view). */
  partials(n: number, d: number): number;
  bindings(b: GramBuffers): GPUBuffer[];
  /**
   * A 'windows' kernel: per column group (windowColumnGroups) the group's texture filled by a panel copy
   * (`pack`) or, `raw` (windowRawPanel), by copies of the view's strips, and one dispatch (windowGramPassList).
   */
  windows?: { pack: KernelSpec; raw(): KernelSpec };
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
  /**
   * A 'windows' kernel: per column group (windowColumnGroups) a panel copy (`pack`) copied on into the texture and, per block row,
   * dispatches over K's blocks (windowBackwardDispatches); or, `raw` (where the view can be copied:
   * windowRawPanel), the view's strips copied straight into the texture, and the kernel's RAW_PANEL pipeline.
   */
  windows?: { pack: KernelSpec; raw(accumulate: boolean): KernelSpec };
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
/** centered_panels.wgsl: a column group of Zc in 64-column panels (the subgroup dual backward's; the windows kernels' where the view cannot be copied as it is). */
const panelsSpec: KernelSpec = { name: 'centered_panels', code: centeredPanelsWgsl };

/** The dual subgroup backward's column groups: equal widths, as few groups as the panel size allows. */
export function columnGroups(n: number, d: number): ColumnGroups {
  return n < PANEL_MIN_ROWS ? { panels: false, groups: 1, width: ceilDiv(d, STRIP) * STRIP } : panelColumnGroups(d);
}
/** Column groups read from panels: as few as `most` strips a group (PANEL_MAX_STRIPS) allow, of equal widths. */
function panelColumnGroups(d: number, most = PANEL_MAX_STRIPS): ColumnGroups {
  const strips = ceilDiv(d, STRIP);
  const groups = ceilDiv(strips, most);
  return { panels: true, groups, width: ceilDiv(strips, groups) * STRIP };
}

// 'windows' geometry (sample_gram_windows.wgsl, covariance_backward_dual_windows.wgsl, centered_panels.wgsl).
/** A uniform binding's size (the least maxUniformBufferBindingSize a device may have): one window of K. */
export const WINDOW_BYTES = 65536;
/** K's blocks: BLOCK x BLOCK floats, one window. */
export const BLOCK = 128;
/** K's blocks per backward dispatch (covariance_backward_dual_windows.wgsl's WINDOWS). */
export const BACKWARD_WINDOWS = 8;
/** Past this, the backward's dispatches per group (n/128)^2/8 grow too many. */
export const WINDOWS_MAX_ROWS = 4096;
/** Per-dispatch uniform records, at 256 bytes: the offset alignment every device accepts. */
export const RECORD_BYTES = 256;

export const blockCount = (n: number) => ceilDiv(n, BLOCK);
/** The blocked matrix of both views (sample_gram_windows.wgsl's layout): nb^2 blocks, then B's nb diagonal blocks. */
export const blockedMatrixFloats = (n: number) => (blockCount(n) ** 2 + blockCount(n)) * BLOCK * BLOCK;
/** The panel buffer: one column group (windowColumnGroups) of n rows. */
export const windowPanelFloats = (n: number, d: number) => windowColumnGroups(n, d).width * n;

/**
 * The Gram's and the backward's column groups: equal widths, at most PANEL_MAX_STRIPS strips (as the
 * subgroup backward's) from PANEL_MIN_ROWS rows, and below that as many as keep the texture within
 * PANEL_MIN_ROWS x 512 floats (1 MiB), up to WINDOW_GROUP_MAX_STRIPS: fewer groups mean fewer dispatches
 * and fewer rounds of the Gram's running sums (README, Algorithm).
 */
export function windowColumnGroups(n: number, d: number): ColumnGroups {
  return panelColumnGroups(d, Math.min(WINDOW_GROUP_MAX_STRIPS, Math.max(PANEL_MAX_STRIPS, Math.floor((PANEL_MAX_STRIPS * PANEL_MIN_ROWS) / Math.max(n, 1)))));
}
const WINDOW_GROUP_MAX_STRIPS = 64;
/** Strips of column group g within d (the last group's may be fewer than its layers). */
export const windowGroupStrips = (groups: ColumnGroups, d: number, g: number) => Math.min(groups.width / STRIP, ceilDiv(d, STRIP) - g * (groups.width / STRIP));
/** The windows Gram's tiles: those on or above the diagonal of K's blocked side, 128 nb (the subgroup Gram's order). */
export const windowGramTiles = (n: number) => upperTileCount(blockCount(n) * BLOCK);
/** The panel texture for groups `width` columns wide: 16 texels wide (a strip), n rows, a layer per strip. */
// n rows exactly: the raw copy has no more (the kernels' reads past n: their headers).
const windowTextureOf = (rows: number, width: number) => [STRIP / 4, rows, width / STRIP] as const;
export const windowTextureSize = (n: number, d: number) => windowTextureOf(n, windowColumnGroups(n, d).width);

/** Where view `view` keeps K's block (P, Q): A by (min, max), B by (max, min), B's diagonal blocks after the nb^2 (sample_gram_windows.wgsl). */
export function storedBlock(view: 0 | 1, P: number, Q: number, nb: number): number {
  if (P === Q) return view === 0 ? P * nb + P : nb * nb + P;
  const [r, c] = (view === 0) === (P <= Q) ? [P, Q] : [Q, P];
  return r * nb + c;
}

/**
 * One dispatch of the windowed backward: block row P over K's blocks `blocks`, window w read by columns
 * where `byColumns[w]`; flags as BlockParams' (the by-columns windows in bits 8 + w).
 */
export interface WindowBackwardDispatch { P: number; blocks: number[]; byColumns: boolean[]; flags: number }

/** BlockParams' flags: bit 8 + w, window w holds the view's block by columns (covariance_backward_dual_windows.wgsl). */
const BY_COLUMNS_BIT = 8;

/**
 * A view's windowed backward, per column group: for each block row P, all of K's blocks, P itself first,
 * then those the view keeps by rows, then those it keeps by columns, BACKWARD_WINDOWS at a time: one
 * dispatch per block row up to BACKWARD_WINDOWS blocks (n <= 1024), so each gradient element is written
 * once there. (Separate dispatches for the two orientations, as before, wrote the rows of every block
 * row but the first and last twice: `npm run ab` at 256 x 1024, README "Performance".)
 */
export function windowBackwardDispatches(n: number, view: 0 | 1): WindowBackwardDispatch[] {
  const nb = blockCount(n);
  const out: WindowBackwardDispatch[] = [];
  for (let P = 0; P < nb; P++) {
    const after = Array.from({ length: nb - P - 1 }, (_, i) => P + 1 + i);
    const before = Array.from({ length: P }, (_, i) => i);
    const [byRows, byColumns] = view === 0 ? [after, before] : [before, after];
    const all = [P, ...byRows, ...byColumns];
    for (let c = 0; c * BACKWARD_WINDOWS < all.length; c++) {
      const blocks = all.slice(c * BACKWARD_WINDOWS, (c + 1) * BACKWARD_WINDOWS);
      const columns = blocks.map((_, w) => c * BACKWARD_WINDOWS + w > byRows.length);
      const flags = (c === 0 ? 1 : 0) | columns.reduce((f, x, w) => f | (x ? 1 << (BY_COLUMNS_BIT + w) : 0), 0);
      out.push({ P, blocks, byColumns: columns, flags });
    }
  }
  return out;
}

/**
 * One view's uniform records for the 'windows' kernels, RECORD_BYTES apart: the Gram's WindowDims per
 * column group, then the backward's BlockParams per windowBackwardDispatches entry, then BackwardParams
 * per column group (the panel copies' and the backward's). `rows` = n but in a trial; the view's
 * partials from `partialBase`.
 */
export function windowRecords(c: Coefficients, n: number, d: number, rows: number, view: 0 | 1, partialBase: number) {
  const backward = windowBackwardDispatches(rows, view);
  const groups = windowColumnGroups(rows, d);
  const at = { gramDims: 0, blocks: groups.groups, backwardParams: groups.groups + backward.length };
  const count = at.backwardParams + groups.groups;
  const bytes = new ArrayBuffer(count * RECORD_BYTES);
  const layout = statsLayout(d);
  for (let g = 0; g < groups.groups; g++) {
    const flags = (g === 0 ? 1 : 0) | (g === groups.groups - 1 ? 2 : 0);
    new Uint32Array(bytes, (at.gramDims + g) * RECORD_BYTES, 8)
      .set([rows, windowGroupStrips(groups, d, g), partialBase, flags, view, g * groups.width, layout.shift[view], layout.center[view]]);
  }
  backward.forEach((dispatch, i) => {
    const record = new Uint32Array(bytes, (at.blocks + i) * RECORD_BYTES, 12);
    record.set([dispatch.P, dispatch.blocks.length, dispatch.flags, 0]);
    record.set(dispatch.blocks, 4);
  });
  for (let g = 0; g < groups.groups; g++) {
    new Uint8Array(bytes, (at.backwardParams + g) * RECORD_BYTES, UNIFORM_BYTES.backwardParams)
      .set(new Uint8Array(backwardParams(c, n, d, rows, view, undefined, { index: g, of: groups })));
  }
  return { bytes, at, backward, groups };
}
export type WindowRecords = ReturnType<typeof windowRecords>;

const record = (buffer: GPUBuffer, index: number, size: number): GPUBufferBinding => ({ buffer, offset: index * RECORD_BYTES, size });
const window = (buffer: GPUBuffer, index: number): GPUBufferBinding => ({ buffer, offset: index * WINDOW_BYTES, size: WINDOW_BYTES });

/**
 * Whether the windowed kernels can copy the views' strips straight into their texture (RAW_PANEL): each
 * view copyable and a row of Z a multiple of 256 bytes (copyBufferToTexture's bytesPerRow).
 */
export const windowRawPanel = (views: readonly GPUBuffer[], d: number) => d % STRIP === 0 && views.every((v) => (v.usage & Usage.COPY_SRC) !== 0);

/**
 * Column group g of the view into the texture: with `raw` (windowRawPanel) a copy of each of the group's
 * strips of Z into its layer, else the group's panel copy (centered_panels.wgsl, `pack`) and that
 * panel's copy into the texture. (A kernel writing the texture by textureStore ran at 1.0 GB/s on
 * lavapipe, the pack and its copy at 1.9 GB/s: README "Algorithm"; the raw copies spare the pack's pass
 * over the view.) `workgroups`: the pack's (the backward's own, or its indirect arguments).
 */
function windowTextureSteps(label: string, pack: GPUComputePipeline | undefined, buffers: { z: GPUBuffer; stats: GPUBuffer } & WindowBuffers, records: WindowRecords,
  rows: number, g: number, workgroups: Dispatch['workgroups'], raw?: { d: number }): Step[] {
  const { groups, at } = records;
  const [texels, height, layers] = windowTextureOf(rows, groups.width);
  if (raw) {
    // Strip q of the group is rows x 64 floats of Z from column g width + 64 q: a layer each (strips past d: none).
    return Array.from({ length: windowGroupStrips(groups, raw.d, g) }, (_, q) => ({
      label: `${label}: texture ${g} strip ${q}`,
      copy: { buffer: buffers.z, offset: (g * groups.width + q * STRIP) * 4, bytesPerRow: raw.d * 4, rowsPerImage: height, texture: buffers.texture.gpu, origin: [0, 0, q], size: [texels, height, 1] },
    }));
  }
  if (!pack) throw new Error(`${label}: the packed texture needs the centered_panels pipeline`);
  return [
    { label: `${label}: panels ${g}`, pipeline: pack, workgroups, bindings: [buffers.z, buffers.stats, buffers.panel, record(buffers.records, at.backwardParams + g, UNIFORM_BYTES.backwardParams)] },
    { label: `${label}: texture ${g}`, copy: { buffer: buffers.panel, bytesPerRow: STRIP * 4, rowsPerImage: rows, texture: buffers.texture.gpu, size: [texels, height, layers] } },
  ];
}

/** One view's windowed Gram: per column group, the group's texture (windowTextureSteps) and one dispatch over K's upper tiles. */
export function windowGramPassList(label: string, pipes: { gram: GPUComputePipeline; pack?: GPUComputePipeline }, buffers: Omit<GramBuffers, 'dims'> & WindowBuffers,
  records: WindowRecords, rows: number, raw?: { d: number }): Step[] {
  const { groups, at } = records;
  const steps: Step[] = [];
  for (let g = 0; g < groups.groups; g++) {
    steps.push(...windowTextureSteps(label, pipes.pack, buffers, records, rows, g, windowBackwardWorkgroups(groups.width), raw));
    steps.push({
      label: `${label}: group ${g}`, pipeline: pipes.gram, workgroups: [windowGramTiles(rows)],
      bindings: [buffers.partials, buffers.matrix, buffers.stats, record(buffers.records, at.gramDims + g, 32), buffers.texture.view],
    });
  }
  return steps;
}

/**
 * One view's windowed backward: per column group, the group's texture (windowTextureSteps; with `raw`
 * the RAW_PANEL pipeline as `main`), then windowBackwardDispatches.
 */
export function windowBackwardPassList(label: string, pipes: { main: GPUComputePipeline; pack?: GPUComputePipeline },
  buffers: Omit<BackwardBuffers, 'params' | 'panel'> & WindowBuffers, records: WindowRecords, rows: number, view: 0 | 1,
  indirect?: { indirect: GPUBuffer; offset: number }, raw?: { d: number }): Step[] {
  const { groups, backward, at } = records;
  const nb = blockCount(rows);
  const workgroups = indirect ?? windowBackwardWorkgroups(groups.width);
  const steps: Step[] = [];
  for (let g = 0; g < groups.groups; g++) {
    const params = record(buffers.records, at.backwardParams + g, UNIFORM_BYTES.backwardParams);
    steps.push(...windowTextureSteps(label, pipes.pack, buffers, records, rows, g, workgroups, raw));
    backward.forEach((dispatch, i) => {
      const windows = Array.from({ length: BACKWARD_WINDOWS }, (_, w) => window(buffers.matrix, w < dispatch.blocks.length ? storedBlock(view, dispatch.P, dispatch.blocks[w], nb) : 0));
      steps.push({
        label: `${label}: group ${g} block row ${dispatch.P}, blocks ${dispatch.blocks.map((Q, w) => `${Q}${dispatch.byColumns[w] ? ' (by columns)' : ''}`).join(', ')}`,
        pipeline: pipes.main, workgroups,
        bindings: [buffers.z, buffers.other, buffers.stats, buffers.grad, params, buffers.upstream, buffers.texture.view,
          record(buffers.records, at.blocks + i, 48), ...windows],
      });
    });
  }
  return steps;
}
/** The windows kernels' pipelines, with RAW_PANEL where the views are copied into the texture as they are. */
const windowsGramSpec = (raw: boolean): KernelSpec => ({ name: 'sample_gram_windows', code: sampleGramWindowsWgsl, ...(raw ? { constants: { RAW_PANEL: true } } : {}) });
const windowsBackwardSpec = (accumulate: boolean, raw: boolean): KernelSpec =>
  ({ name: 'covariance_backward_dual_windows', code: covarianceBackwardDualWindowsWgsl, constants: { ACCUMULATE: accumulate, ...(raw ? { RAW_PANEL: true } : {}) } });

/** Per dispatch: the 32-row blocks of a 128-row block row along x, the group's strips along y. */
const windowBackwardWorkgroups = (width: number) => [BLOCK / SUBGROUP_SHARED, width / STRIP] as const;

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

/** The primal form's subgroup kernels (also what it runs where 'windows' is forced: formVariant). */
const primalSubgroupGram: GramKernel = {
  spec: (writeMatrix) => ({ name: 'gram_offdiag_squares_subgroup', code: gramOffDiagSquaresSubgroupWgsl, constants: { WRITE_MATRIX: writeMatrix } }),
  workgroups: (_n, d) => upperTileWorkgroups(upperTileCount(d)),
  partials: (_n, d) => upperTileCount(d) * SUBGROUP_LANES,
  bindings: (b) => [b.z, b.stats, b.partials, b.matrix, b.dims, b.z],
};
const primalSubgroupBackward: BackwardKernel = {
  spec: (accumulate) => ({ name: 'covariance_backward_subgroup', code: covarianceBackwardSubgroupWgsl, constants: { ACCUMULATE: accumulate } }),
  workgroups: subgroupBackwardWorkgroups,
  bindings: (b) => [b.z, b.other, b.stats, b.matrix, b.grad, b.params, b.upstream],
  mirrored: {
    spec: { name: 'covariance_backward_mirrored_subgroup', code: covarianceBackwardMirroredSubgroupWgsl },
    workgroups: subgroupBackwardWorkgroups,   // the first pass's blocks
    bindings: (b) => [b.z, b.stats, b.matrix, b.grad, b.params, b.upstream],
  },
};

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
      subgroup: primalSubgroupGram,
      // 'windows' has no primal kernels: the primal form runs 'subgroup' where it is forced (formVariant).
      windows: primalSubgroupGram,
    },
    backward: {
      tiled: blockBackward('covariance_backward', covarianceBackwardWgsl, TILED_WG),
      workgroup: blockBackward('covariance_backward_workgroup', covarianceBackwardWorkgroupWgsl, WORKGROUP_WG),
      subgroup: primalSubgroupBackward,
      windows: primalSubgroupBackward,
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
      windows: {
        spec: () => windowsGramSpec(false),
        // One dispatch per column group (windowGramPassList builds them).
        workgroups: (n) => [windowGramTiles(n), 1],
        partials: (n) => windowGramTiles(n) * SUBGROUP_LANES,
        bindings: () => { throw new Error('sample_gram_windows runs through windowGramPassList'); },
        windows: { pack: panelsSpec, raw: () => windowsGramSpec(true) },
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
          pack: { spec: panelsSpec, bindings: (b) => [b.z, b.stats, b.panel, b.params] },
        },
      },
      windows: {
        spec: (accumulate) => windowsBackwardSpec(accumulate, false),
        workgroups: (n, d) => windowBackwardWorkgroups(windowColumnGroups(n, d).width),
        bindings: () => { throw new Error('covariance_backward_dual_windows runs through windowBackwardPassList'); },
        windows: {
          pack: panelsSpec,
          raw: (accumulate) => windowsBackwardSpec(accumulate, true),
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
 * pass or its panel copy where it has one (for 'windows', its copy; with `rawPanel`, its RAW_PANEL pass
 * alone: it copies no panel).
 */
export function backwardSpecs(kernel: BackwardKernel, accumulate: boolean, rawPanel = false): KernelSpec[] {
  if (kernel.windows) return rawPanel ? [kernel.windows.raw(accumulate)] : [kernel.spec(accumulate), kernel.windows.pack];
  return [kernel.spec(accumulate), ...(kernel.mirrored ? [kernel.mirrored.spec] : []), ...(kernel.grouped ? [kernel.grouped.pack.spec] : [])];
}

/** A Gram kernel's pipelines: its own, then its panel copy where it has one ('windows'; with `rawPanel`, its RAW_PANEL pass alone). */
export function gramSpecs(kernel: GramKernel, writeMatrix: boolean, rawPanel = false): KernelSpec[] {
  if (kernel.windows) return rawPanel ? [kernel.windows.raw()] : [kernel.spec(writeMatrix), kernel.windows.pack];
  return [kernel.spec(writeMatrix)];
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
      const gram = forms[form].gram[variant];
      const backward = forms[form].backward[variant];
      specs.push(...gramSpecs(gram, true), ...gramSpecs(gram, false), ...(gram.windows ? gramSpecs(gram, true, true) : []));
      specs.push(...backwardSpecs(backward, false), ...backwardSpecs(backward, true), ...(backward.windows ? [...backwardSpecs(backward, false, true), ...backwardSpecs(backward, true, true)] : []));
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
