// The 'shuffle' variant, which exists for one CPU driver: on Mesa's lavapipe each lane's storage load is a
// separate bounds-checked scalar load, while a subgroup shuffle is one vector permute. Each workgroup is
// one subgroup of 8; a value every lane needs is loaded by one lane and passed to the others by
// subgroupShuffle, so each operand is read from memory once per workgroup and feeds a 32 x 64 block of
// accumulators per workgroup (256 a lane, which only a CPU driver's vector registers and stack hold
// cheaply). Its Gram kernels run one workgroup per tile on or above the diagonal; the primal gradient
// reads the packed matrix by rows in a first pass and the rest in a mirrored pass; the dual gradient
// runs column group by column group, from 512 rows reading Zc from centered panels.
import primalGram from '../../../kernels/lavapipe/primal_gram_shuffle.wgsl';
import dualGram from '../../../kernels/lavapipe/dual_gram_shuffle.wgsl';
import primalGradient from '../../../kernels/lavapipe/primal_gradient_shuffle.wgsl';
import primalGradientMirrored from '../../../kernels/lavapipe/primal_gradient_mirrored_shuffle.wgsl';
import dualGradient from '../../../kernels/lavapipe/dual_gradient_shuffle.wgsl';
import centeredPanels from '../../../kernels/lavapipe/centered_panels.wgsl';
import { common, view, type Formula, type VariantPlan } from '../kernel-plans.js';
import { destroyBuffer, storageBuffer, uniformBuffer, type Buffer, type KernelSpec } from '../../runtime/gpu.js';
import type { FormKernels, GradientProgram, GramProgram, VariantDescription, VariantScratch } from '../program.js';
import type { DeviceTraits } from '../../runtime/device.js';
import { subgroupSizes } from '../register-blocks.js';
import { backwardParams, ceilDiv, MAX_WORKGROUPS_PER_DIMENSION, PACKED, UNIFORM_BYTES, type ColumnGroups } from '../shared.js';

/** Lanes per workgroup: the kernels are written for subgroups of exactly 8 (their LANES). */
export const LANES = 8;
/** Rows shared by the lanes: a Gram tile is SHARED x 2 SHARED, a gradient block SHARED x STRIP. */
export const SHARED = 32;
/** Columns per gradient workgroup and per Gram tile: a strip of 8 per lane (centered_panels.wgsl's). */
export const STRIP = 64;

/** Whether the adapter's subgroups are the kernels': exactly LANES wide, whatever the dispatch. */
export const lanesFit = (t: DeviceTraits) => t.features.has('subgroups') && t.subgroupMinSize === LANES && t.subgroupMaxSize === LANES;

/**
 * Tiles of a side x side matrix on or above its diagonal, SHARED rows by 2 SHARED columns: column block
 * x holds row tiles 0 .. 2x + 1, the blocks before it x (x + 1); only the last block can be cut short by
 * the edge (the kernels' upperTileCount).
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
export const centeredPanelsSpec: KernelSpec = { name: 'lavapipe/centered_panels', code: centeredPanels };

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
  kernel: 'lavapipe/primal_gram_shuffle',
  specs: ({ writeMatrix }) => [{ name: 'lavapipe/primal_gram_shuffle', code: primalGram, constants: { WRITE_MATRIX: writeMatrix } }],
  partials: (_n, d) => upperTileCount(d) * LANES,
  workgroups: (_n, d) => upperTileWorkgroups(upperTileCount(d)),
  steps: ({ d, pipelines, buffers, view, }) => [{
    label: `lavapipe/primal_gram_shuffle ${'AB'[view]}`, pipeline: pipelines[0], workgroups: upperTileWorkgroups(upperTileCount(d)),
    bindings: [buffers.z, buffers.stats, buffers.partials, buffers.matrix, buffers.dims, buffers.z],
  }],
};

/** The primal gradient's workgroups: SHARED rows by a strip of columns. */
const primalGradientWorkgroups = (rows: number, columns: number) => [ceilDiv(columns, STRIP), ceilDiv(rows, SHARED)] as const;

const primalGradientProgram: GradientProgram = {
  kernel: 'lavapipe/primal_gradient_shuffle',
  specs: ({ accumulate }): KernelSpec[] => [
    { name: 'lavapipe/primal_gradient_shuffle', code: primalGradient, constants: { ACCUMULATE: accumulate } },
    { name: 'lavapipe/primal_gradient_mirrored_shuffle', code: primalGradientMirrored },
  ],
  workgroups: (n, d) => ({ main: primalGradientWorkgroups(n, d), mirrored: primalGradientWorkgroups(n, d) }),
  columnBlocks: true,
  steps: ({ rows, d, pipelines, buffers, view, indirect, block }) => {
    const label = `lavapipe/primal_gradient_shuffle ${'AB'[view]}`;
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
  kernel: 'lavapipe/dual_gram_shuffle',
  specs: ({ writeMatrix }) => [{ name: 'lavapipe/dual_gram_shuffle', code: dualGram, constants: { WRITE_MATRIX: writeMatrix } }],
  partials: (n, _d) => upperTileCount(n) * LANES,
  workgroups: (n, _d) => upperTileWorkgroups(upperTileCount(n)),
  steps: ({ rows, pipelines, buffers, view }) => [{
    label: `lavapipe/dual_gram_shuffle ${'AB'[view]}`, pipeline: pipelines[0], workgroups: upperTileWorkgroups(upperTileCount(rows)),
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
  kernel: 'lavapipe/dual_gradient_shuffle',
  specs: ({ accumulate }) => [
    { name: 'lavapipe/dual_gradient_shuffle', code: dualGradient, constants: { ACCUMULATE: accumulate } },
    centeredPanelsSpec,
  ],
  workgroups: (n, d) => ({ main: dualGradientWorkgroups(n, d) }),
  columnBlocks: false,
  steps: ({ rows, d, pipelines, buffers, view, indirect, scratch }) => {
    const label = `lavapipe/dual_gradient_shuffle ${'AB'[view]}`;
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
  scratch: ({ device, n, d, rows, coefficients, views, traits, checkBinding }) => {
    const groups = columnGroups(rows, d);
    const panelBytes = groups.panels ? rows * groups.width * 4 : 16;
    checkBinding(`the dual gradient's column panels (${rows} x ${groups.width})`, panelBytes);
    const params: Buffer[][] = [[], []];
    for (const view of views) {
      for (let index = 0; index < groups.groups; index++) {
        const buffer = uniformBuffer(device, `shuffle dual gradient params ${'AB'[view]} group ${index}`, UNIFORM_BYTES.backwardParams);
        device.queue.writeBuffer(buffer.gpu, 0, backwardParams(coefficients, n, d, rows, view, undefined, { index, of: groups }));
        params[view].push(buffer);
      }
    }
    const panel = storageBuffer(device, 'shuffle dual gradient panels', panelBytes);
    return {
      groups, params, panel,
      poisonable: () => ({ buffers: [panel], textures: [] }),
      destroy: () => [...params.flat(), panel].forEach(destroyBuffer),
    };
  },
};

/** The Gram kernels' dispatch: one workgroup per tile on or above the diagonal, in rows of at most 65535 (upperTileWorkgroups). */
const UPPER_TILE_DISPATCH = ['min(upperTiles, 65535)', 'ceil(upperTiles/65535)', '1'] as const;

/** primalGradientWorkgroups as manifest formulas, over `columns` columns. */
const primalGradientDispatch = (columns: Formula) => [`ceil(${columns}/${STRIP})`, `ceil(n/${SHARED})`, '1'] as const;

/** The plan for native hosts (src/manifest/plan.ts): the formulas of the functions above. */
const manifest: VariantPlan = {
  note: 'for lavapipe: one subgroup of 8 per workgroup, values shared by subgroupShuffle',
  requires: { features: ['subgroups'], subgroups: `the adapter's subgroupMinSize and subgroupMaxSize both ${LANES}`, when: `(d % 4 == 0) * (lanes == ${LANES}) * (maxLanes == ${LANES})` },
  variables: {
    upperTiles: `ceil(side/${2 * SHARED})*(ceil(side/${2 * SHARED})-1) + min(2*ceil(side/${2 * SHARED}), ceil(side/${SHARED}))`,
    panels: `n >= ${PANEL_MIN_ROWS}`,
    panelGroups: `panels*ceil(ceil(d/${STRIP})/${PANEL_MAX_STRIPS}) + 1 - panels`,
    panelWidth: `${STRIP}*ceil(ceil(d/${STRIP})/panelGroups)`,
  },
  kernels: {
    'lavapipe/primal_gram_shuffle': {
      file: 'lavapipe/primal_gram_shuffle.wgsl',
      purpose: 'primal Gram with subgroup shuffles (d % 4 == 0)',
      overrides: { WRITE_MATRIX: true },
      dispatch: UPPER_TILE_DISPATCH,
      bindings: { z: view('n*d'), stats: common.stats, partials: common.partials, covOffDiag: common.covOffDiag, dims: common.dims, z4: view('n*d/4') },
    },
    'lavapipe/dual_gram_shuffle': {
      file: 'lavapipe/dual_gram_shuffle.wgsl',
      purpose: 'dual Gram with subgroup shuffles (d % 4 == 0)',
      overrides: { WRITE_MATRIX: true },
      dispatch: UPPER_TILE_DISPATCH,
      bindings: { z4: view('n*d/4'), stats: common.stats, partials: common.partials, gram: common.gram, dims: common.dims },
    },
    'lavapipe/primal_gradient_shuffle': {
      file: 'lavapipe/primal_gradient_shuffle.wgsl',
      purpose: 'primal gradient with subgroup shuffles (d % 4 == 0), reading the packed Coff by rows',
      overrides: { ACCUMULATE: false },
      dispatch: primalGradientDispatch('d'),
      bindings: {
        z4: view('n*d/4'), other4: { role: 'other', count: 'n*d/4' }, stats: common.stats, covOffDiag4: { role: 'matrix', count: '(d*d+d)/4' },
        grad4: { role: 'grad', count: 'n*d/4' }, params: common.params, upstream: common.upstream,
      },
    },
    'lavapipe/primal_gradient_mirrored_shuffle': {
      file: 'lavapipe/primal_gradient_mirrored_shuffle.wgsl',
      purpose: 'second pass of lavapipe/primal_gradient_shuffle on the packed matrix: adds the part of Zc Coff stored in the mirrored rows (always adds)',
      overrides: {},
      dispatch: [`ceil(d/${STRIP})`, `ceil(n/${SHARED})`, '1'],
      bindings: {
        z4: view('n*d/4'), stats: common.stats, covOffDiag4: { role: 'matrix', count: '(d*d+d)/4' }, grad: common.grad,
        params: common.params, upstream: common.upstream,
      },
    },
    'lavapipe/dual_gradient_shuffle': {
      file: 'lavapipe/dual_gradient_shuffle.wgsl',
      purpose: 'dual gradient with subgroup shuffles (d % 4 == 0); one column group (panelWidth columns from params.columnStart) per dispatch, Zc read from the panels where params.panels',
      overrides: { ACCUMULATE: false },
      dispatch: [`ceil(n/${SHARED})`, `panelWidth/${STRIP}`, '1'],
      bindings: {
        z4: view('n*d/4'), other4: { role: 'other', count: 'n*d/4' }, stats: common.stats, gram: common.gram,
        grad4: { role: 'grad', count: 'n*d/4' }, params: common.params, upstream: common.upstream, panel4: { role: 'panel', count: 'panels*n*panelWidth/4' },
        gram4: { role: 'matrix', count: 'floor((n*n+n)/4)' },
      },
    },
    'lavapipe/centered_panels': {
      file: 'lavapipe/centered_panels.wgsl',
      purpose: 'copies one column group of Zc into 64-column panels for lavapipe/dual_gradient_shuffle (no workgroups where panels = 0)',
      overrides: {},
      dispatch: [`panels*ceil(n/${SHARED})`, `panelWidth/${STRIP}`, '1'],
      bindings: { z4: view('n*d/4'), stats: common.stats, panel4: { role: 'panel', count: 'panels*n*panelWidth/4' }, params: common.params },
    },
  },
  gram: { primal: 'lavapipe/primal_gram_shuffle', dual: 'lavapipe/dual_gram_shuffle' },
  backward: { primal: 'lavapipe/primal_gradient_shuffle', dual: 'lavapipe/dual_gradient_shuffle' },
  primalGradientDispatch,
  mirroredBackward: { primal: 'lavapipe/primal_gradient_mirrored_shuffle' },
  groupedBackward: { dual: 'lavapipe/centered_panels' },
  partialsPerView: { primal: `upperTiles*${LANES}`, dual: `upperTiles*${LANES}` },
};

export const shuffle: VariantDescription = {
  name: 'shuffle',
  family: 'lavapipe',
  summary: 'for lavapipe: one subgroup of 8 per workgroup, each operand loaded by one lane and passed to the others by subgroupShuffle',
  requirements: `the 'subgroups' feature with a subgroup size of exactly ${LANES}, and d % 4 == 0 (vec4 loads)`,
  refuse: ({ traits, d }) => (lanesFit(traits) && d % 4 === 0 ? undefined : {
    kind: 'option',
    reason: `the 'subgroups' feature with subgroup size ${LANES} (this device: ${subgroupSizes(traits)}) and d % 4 == 0 (d = ${d})`,
  }),
  forms: {
    primal: { gram: primalGramProgram, gradient: primalGradientProgram, matrix: PACKED },
    dual: dualKernels,
  },
  preference: 1,
  manifest,
};
