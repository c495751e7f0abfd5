// The 'subgroup' variant: each workgroup is one subgroup; a value every lane needs is loaded by one lane
// and passed to the others by subgroupShuffle, so each operand is read from memory once per workgroup
// and used for many multiply-adds. Gram kernels run one workgroup per tile on or above the diagonal;
// the primal gradient reads the packed matrix by rows in a first pass and the rest in a mirrored pass;
// the dual gradient runs column group by column group, from 512 rows reading Zc from centered panels.
import primalGram from '../../kernels/subgroup/primal_gram.wgsl';
import dualGram from '../../kernels/subgroup/dual_gram.wgsl';
import primalGradient from '../../kernels/subgroup/primal_gradient.wgsl';
import primalGradientMirrored from '../../kernels/subgroup/primal_gradient_mirrored.wgsl';
import dualGradient from '../../kernels/subgroup/dual_gradient.wgsl';
import centeredPanels from '../../kernels/subgroup/centered_panels.wgsl';
import { storageBuffer, uniformBuffer, destroyBuffer, type Buffer, type KernelSpec } from '../runtime/gpu.js';
import type { DeviceTraits, FormKernels, GradientProgram, GramProgram, VariantDescription, VariantScratch } from './program.js';
import { backwardParams, ceilDiv, MAX_WORKGROUPS_PER_DIMENSION, PACKED, UNIFORM_BYTES, type ColumnGroups } from './shared.js';

/** Lanes per workgroup (the kernels' LANES). */
export const LANES = 8;
/** Rows shared by the lanes in every subgroup kernel (Gram tiles: SHARED x 2 SHARED). */
export const SHARED = 32;
/** The gradient kernels' columns per lane: 2 vec4s. */
const OWN_COLUMNS = 8;
/** Columns per gradient workgroup: a strip (centered_panels.wgsl's). */
export const STRIP = LANES * OWN_COLUMNS;

/** The adapter's subgroup sizes, in words. */
export const subgroupSizes = (t: DeviceTraits) => (!t.features.has('subgroups') ? 'none'
  : t.subgroupMinSize === undefined ? 'sizes unknown' : t.subgroupMinSize === t.subgroupMaxSize ? `${t.subgroupMinSize}` : `${t.subgroupMinSize}-${t.subgroupMaxSize}`);

/** Whether the adapter's subgroups run these kernels: one subgroup of LANES per workgroup. */
const lanesFit = (t: DeviceTraits) => t.features.has('subgroups') && t.subgroupMinSize === LANES && t.subgroupMaxSize === LANES;

/**
 * Tiles of a side x side matrix on or above its diagonal, SHARED rows by TILE_COLUMNS = 2 SHARED columns:
 * column block x holds row tiles 0 .. 2x + 1, the blocks before it x (x + 1); only the last block can
 * be cut short by the edge (the kernels' upperTileCount).
 */
export function upperTileCount(side: number): number {
  const columnTiles = ceilDiv(side, 2 * SHARED);
  return (columnTiles - 1) * columnTiles + Math.min(2 * columnTiles, ceilDiv(side, SHARED));
}
/** One workgroup per tile, in rows of at most 65535; the workgroups past the count return at once. */
export const upperTileWorkgroups = (count: number) =>
  [Math.min(count, MAX_WORKGROUPS_PER_DIMENSION), ceilDiv(count, MAX_WORKGROUPS_PER_DIMENSION)] as const;

/**
 * The dual gradient streams each strip of Zc over all n rows; from PANEL_MIN_ROWS rows on it reads the
 * strips from panels (centered_panels.wgsl) holding at most PANEL_MAX_STRIPS strips at a time; below,
 * the copy costs more than it saves.
 */
export const PANEL_MIN_ROWS = 512;
export const PANEL_MAX_STRIPS = 8;
export const centeredPanelsSpec: KernelSpec = { name: 'subgroup/centered_panels', code: centeredPanels };

/** Column groups read from panels: as few as `most` strips a group allow, of equal widths. */
export function panelColumnGroups(d: number, most = PANEL_MAX_STRIPS): ColumnGroups {
  const strips = ceilDiv(d, STRIP);
  const groups = ceilDiv(strips, most);
  return { panels: true, groups, width: ceilDiv(strips, groups) * STRIP };
}

/** The dual gradient's column groups: one group of every column below PANEL_MIN_ROWS rows, else panelColumnGroups. */
export function columnGroups(n: number, d: number): ColumnGroups {
  return n < PANEL_MIN_ROWS ? { panels: false, groups: 1, width: ceilDiv(d, STRIP) * STRIP } : panelColumnGroups(d);
}

const primalGramProgram: GramProgram = {
  kernel: 'subgroup/primal_gram',
  specs: ({ writeMatrix }) => [{ name: 'subgroup/primal_gram', code: primalGram, constants: { WRITE_MATRIX: writeMatrix } }],
  partials: (_n, d) => upperTileCount(d) * LANES,
  workgroups: (_n, d) => upperTileWorkgroups(upperTileCount(d)),
  steps: ({ d, pipelines, buffers, view }) => [{
    label: `subgroup/primal_gram ${'AB'[view]}`, pipeline: pipelines[0], workgroups: upperTileWorkgroups(upperTileCount(d)),
    bindings: [buffers.z, buffers.stats, buffers.partials, buffers.matrix, buffers.dims, buffers.z],
  }],
};

/** The primal gradient's workgroups: SHARED rows by a strip of columns. */
const primalGradientWorkgroups = (rows: number, columns: number) => [ceilDiv(columns, STRIP), ceilDiv(rows, SHARED)] as const;

const primalGradientProgram: GradientProgram = {
  kernel: 'subgroup/primal_gradient',
  specs: ({ accumulate }) => [
    { name: 'subgroup/primal_gradient', code: primalGradient, constants: { ACCUMULATE: accumulate } },
    { name: 'subgroup/primal_gradient_mirrored', code: primalGradientMirrored },
  ],
  workgroups: (n, d) => ({ main: primalGradientWorkgroups(n, d), mirrored: primalGradientWorkgroups(n, d) }),
  columnBlocks: true,
  steps: ({ rows, d, pipelines, buffers, view, indirect, block }) => {
    const label = `subgroup/primal_gradient ${'AB'[view]}`;
    const main = {
      label, pipeline: pipelines[0], workgroups: indirect?.('main') ?? primalGradientWorkgroups(rows, block?.width ?? d),
      bindings: [buffers.z, buffers.other, buffers.stats, buffers.matrix, buffers.grad, buffers.params, buffers.upstream],
    };
    // A plain column block holds every Coff_kj it needs by rows: no mirrored pass.
    if (block) return [main];
    return [main, {
      label: `${label} (mirrored)`, pipeline: pipelines[1], workgroups: indirect?.('mirrored') ?? primalGradientWorkgroups(rows, d),
      bindings: [buffers.z, buffers.stats, buffers.matrix, buffers.grad, buffers.params, buffers.upstream],
    }];
  },
};

const dualGramProgram: GramProgram = {
  kernel: 'subgroup/dual_gram',
  specs: ({ writeMatrix }) => [{ name: 'subgroup/dual_gram', code: dualGram, constants: { WRITE_MATRIX: writeMatrix } }],
  partials: (n) => upperTileCount(n) * LANES,
  workgroups: (n) => upperTileWorkgroups(upperTileCount(n)),
  steps: ({ rows, pipelines, buffers, view }) => [{
    label: `subgroup/dual_gram ${'AB'[view]}`, pipeline: pipelines[0], workgroups: upperTileWorkgroups(upperTileCount(rows)),
    bindings: [buffers.z, buffers.stats, buffers.partials, buffers.matrix, buffers.dims],
  }],
};

/** The dual gradient's per-view, per-group parameters and the panel buffer its groups copy Zc into. */
export interface ColumnGroupScratch extends VariantScratch {
  groups: ColumnGroups;
  /** [view][group] BackwardParams. */
  params: Buffer[][];
  panel: Buffer;
}

/**
 * The dual gradient's workgroups, for one column group: row blocks along x, so that consecutive
 * workgroups share one strip of Zc's columns.
 */
const dualGradientWorkgroups = (rows: number, d: number) => [ceilDiv(rows, SHARED), columnGroups(rows, d).width / STRIP] as const;

const dualGradientProgram: GradientProgram<ColumnGroupScratch> = {
  kernel: 'subgroup/dual_gradient',
  specs: ({ accumulate }) => [
    { name: 'subgroup/dual_gradient', code: dualGradient, constants: { ACCUMULATE: accumulate } },
    centeredPanelsSpec,
  ],
  workgroups: (n, d) => ({ main: dualGradientWorkgroups(n, d) }),
  columnBlocks: false,
  steps: ({ rows, d, pipelines, buffers, view, indirect, scratch }) => {
    const label = `subgroup/dual_gradient ${'AB'[view]}`;
    const { groups, params, panel } = scratch!;
    const workgroups = indirect?.('main') ?? dualGradientWorkgroups(rows, d);
    return params[view].flatMap((groupParams, g) => [
      ...(groups.panels ? [{
        label: `${label}: panels ${g}`, pipeline: pipelines[1], workgroups,
        bindings: [buffers.z, buffers.stats, panel.gpu, groupParams.gpu],
      }] : []),
      {
        label: `${label}: columns ${g}`, pipeline: pipelines[0], workgroups,
        bindings: [buffers.z, buffers.other, buffers.stats, buffers.matrix, buffers.grad, groupParams.gpu, buffers.upstream, panel.gpu, buffers.matrix],
      },
    ]);
  },
};

const dualKernels: FormKernels<ColumnGroupScratch> = {
  gram: dualGramProgram as GramProgram<ColumnGroupScratch>,
  gradient: dualGradientProgram,
  matrix: PACKED,
  scratch: ({ device, n, d, rows, coefficients, views, checkBinding }) => {
    const groups = columnGroups(rows, d);
    const panelBytes = groups.panels ? rows * groups.width * 4 : 16;
    checkBinding(`the dual gradient's column panels (${rows} x ${groups.width})`, panelBytes);
    const params: Buffer[][] = [[], []];
    for (const view of views) {
      for (let index = 0; index < groups.groups; index++) {
        const buffer = uniformBuffer(device, `subgroup dual gradient params ${'AB'[view]} group ${index}`, UNIFORM_BYTES.backwardParams);
        device.queue.writeBuffer(buffer.gpu, 0, backwardParams(coefficients, n, d, rows, view, undefined, { index, of: groups }));
        params[view].push(buffer);
      }
    }
    const panel = storageBuffer(device, 'subgroup dual gradient panels', panelBytes);
    return {
      groups, params, panel,
      poisonable: () => ({ buffers: [panel], textures: [] }),
      destroy: () => [...params.flat(), panel].forEach(destroyBuffer),
    };
  },
};

export const subgroup: VariantDescription = {
  name: 'subgroup',
  family: 'portable',
  summary: 'one subgroup per workgroup; each operand loaded by one lane and passed to the others by subgroupShuffle',
  requirements: `the 'subgroups' feature with a subgroup size of ${LANES}, and d % 4 == 0 (vec4 loads)`,
  refuse: ({ traits, d }) => (lanesFit(traits) && d % 4 === 0 ? undefined : {
    kind: 'option',
    reason: `the 'subgroups' feature with subgroup size ${LANES} (this device: ${subgroupSizes(traits)}) and d % 4 == 0 (d = ${d})`,
  }),
  forms: {
    primal: { gram: primalGramProgram, gradient: primalGradientProgram, matrix: PACKED },
    dual: dualKernels,
  },
  preference: 1,
};
