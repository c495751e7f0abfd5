// The 'windows' variant, which exists for one CPU driver: on Mesa's lavapipe every storage-buffer load is
// a bounds-checked scalar load per lane, while a uniform-buffer load is a branch-free gather and a
// storage texture is read whole texels at a time. Its dual-form kernels (the shuffle kernels' shape)
// therefore read every operand of their inner loops through 64 KiB uniform windows of K or a texture of
// Zc's columns, never a storage buffer. Per view and column group: the group's strips copied into the
// texture, then one Gram dispatch over K's upper tiles, or one gradient dispatch per 128-row block row
// and 8 of K's blocks. K is kept in 128 x 128 blocks of its own layout, which only this gradient reads.
// The primal form runs the 'shuffle' kernels.
import dualGramWindows from '../../../kernels/lavapipe/dual_gram_windows.wgsl';
import dualGradientWindows from '../../../kernels/lavapipe/dual_gradient_windows.wgsl';
import { MiB } from '../../errors.js';
import type { Coefficients } from '../../coefficients.js';
import {
  createBuffer, destroyBuffer, destroyTexture, storageTexture, uniformBuffer, Usage, type Buffer, type Dispatch, type KernelSpec, type Step, type Texture,
} from '../../runtime/gpu.js';
import type { FormKernels, GradientProgram, GramProgram, MatrixLayout, VariantDescription, VariantScratch } from '../program.js';
import { backwardParams, ceilDiv, statsLayout, UNIFORM_BYTES, type ColumnGroups } from '../shared.js';
import { subgroupSizes } from '../register-blocks.js';
import { centeredPanelsSpec, LANES, lanesFit, PANEL_MAX_STRIPS, PANEL_MIN_ROWS, panelColumnGroups, SHARED, STRIP, upperTileCount } from './shuffle.js';

/** WGSL language features the kernels require (read-only storage textures, uniform pointer parameters). */
export const WINDOW_LANGUAGE_FEATURES = ['readonly_and_readwrite_storage_textures', 'unrestricted_pointer_parameters'] as const;

/** A uniform binding's size (the least maxUniformBufferBindingSize a device may have): one window of K. */
export const WINDOW_BYTES = 65536;
/** K's blocks: BLOCK x BLOCK floats, one window. */
export const BLOCK = 128;
/** K's blocks per gradient dispatch (dual_gradient_windows.wgsl's WINDOWS). */
export const BACKWARD_WINDOWS = 8;
/** Past this, the gradient's dispatches per group (n/128)^2/8 grow too many. */
export const WINDOWS_MAX_ROWS = 4096;
/** Per-dispatch uniform records, at 256 bytes: the offset alignment every device accepts. */
export const RECORD_BYTES = 256;

export const blockCount = (n: number) => ceilDiv(n, BLOCK);
/** The blocked matrix of both views (dual_gram_windows.wgsl's layout): nb^2 blocks, then B's nb diagonal blocks. */
export const blockedMatrixFloats = (n: number) => (blockCount(n) ** 2 + blockCount(n)) * BLOCK * BLOCK;
/** The panel buffer: one column group (windowColumnGroups) of n rows. */
export const windowPanelFloats = (n: number, d: number) => windowColumnGroups(n, d).width * n;

/**
 * The Gram's and the gradient's column groups: equal widths, at most PANEL_MAX_STRIPS strips (as the
 * shuffle gradient's) from PANEL_MIN_ROWS rows, and below that as many as keep the texture within
 * PANEL_MIN_ROWS x 512 floats (1 MiB), up to WINDOW_GROUP_MAX_STRIPS: fewer groups mean fewer dispatches
 * and fewer rounds of the Gram's running sums.
 */
export function windowColumnGroups(n: number, d: number): ColumnGroups {
  return panelColumnGroups(d, Math.min(WINDOW_GROUP_MAX_STRIPS, Math.max(PANEL_MAX_STRIPS, Math.floor((PANEL_MAX_STRIPS * PANEL_MIN_ROWS) / Math.max(n, 1)))));
}
const WINDOW_GROUP_MAX_STRIPS = 64;
/** Strips of column group g within d (the last group's may be fewer than its layers). */
export const windowGroupStrips = (groups: ColumnGroups, d: number, g: number) => Math.min(groups.width / STRIP, ceilDiv(d, STRIP) - g * (groups.width / STRIP));
/** The Gram's tiles: those on or above the diagonal of K's blocked side, 128 nb (the subgroup Gram's order). */
export const windowGramTiles = (n: number) => upperTileCount(blockCount(n) * BLOCK);
/** The panel texture for groups `width` columns wide: 16 texels wide (a strip), n rows (the raw copy has no more), a layer per strip. */
const windowTextureOf = (rows: number, width: number) => [STRIP / 4, rows, width / STRIP] as const;
export const windowTextureSize = (n: number, d: number) => windowTextureOf(n, windowColumnGroups(n, d).width);

/** Where view `view` keeps K's block (P, Q): A by (min, max), B by (max, min), B's diagonal blocks after the nb^2. */
export function storedBlock(view: 0 | 1, P: number, Q: number, nb: number): number {
  if (P === Q) return view === 0 ? P * nb + P : nb * nb + P;
  const [r, c] = (view === 0) === (P <= Q) ? [P, Q] : [Q, P];
  return r * nb + c;
}

/**
 * One dispatch of the windowed gradient: block row P over K's blocks `blocks`, window w read by columns
 * where `byColumns[w]`; flags as BlockParams' (the by-columns windows in bits 8 + w).
 */
export interface WindowBackwardDispatch { P: number; blocks: number[]; byColumns: boolean[]; flags: number }

/** BlockParams' flags: bit 8 + w, window w holds the view's block by columns (dual_gradient_windows.wgsl). */
const BY_COLUMNS_BIT = 8;

/**
 * A view's windowed gradient, per column group: for each block row P, all of K's blocks, P itself first,
 * then those the view keeps by rows, then those it keeps by columns, BACKWARD_WINDOWS at a time: one
 * dispatch per block row up to BACKWARD_WINDOWS blocks (n <= 1024), so each gradient element is written
 * once there.
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
 * One view's uniform records, RECORD_BYTES apart: the Gram's WindowDims per column group, then the
 * gradient's BlockParams per windowBackwardDispatches entry, then BackwardParams per column group (the
 * panel copies' and the gradient's). `rows` = n but in a trial; the view's partials from `partialBase`.
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
 * Whether the kernels can copy the views' strips straight into their texture (RAW_PANEL): each view
 * copyable and a row of Z a multiple of 256 bytes (copyBufferToTexture's bytesPerRow).
 */
export const windowRawPanel = (views: readonly GPUBuffer[], d: number) => d % STRIP === 0 && views.every((v) => (v.usage & Usage.COPY_SRC) !== 0);

/** The records of both views (or a trial's one), the panel buffer the pack fills, and the texture. */
export interface WindowScratch extends VariantScratch {
  records: Buffer[];
  layout: WindowRecords[];
  panel: Buffer;
  texture: Texture;
}

/**
 * Column group g of the view into the texture: with `raw` (windowRawPanel) a copy of each of the group's
 * strips of Z into its layer, else the group's panel copy (lavapipe/centered_panels.wgsl, `pack`) and that
 * panel's copy into the texture (on lavapipe a kernel writing the texture by textureStore is slower than
 * the pack and its copy). `workgroups`: the pack's (the gradient's own, or its indirect arguments).
 */
function windowTextureSteps(label: string, pack: GPUComputePipeline | undefined, z: GPUBuffer, stats: GPUBuffer, scratch: WindowScratch, view: 0 | 1,
  rows: number, g: number, workgroups: Dispatch['workgroups'], raw?: { d: number }): Step[] {
  const { groups, at } = scratch.layout[view];
  const [texels, height, layers] = windowTextureOf(rows, groups.width);
  if (raw) {
    // Strip q of the group is rows x 64 floats of Z from column g width + 64 q: a layer each (strips past d: none).
    return Array.from({ length: windowGroupStrips(groups, raw.d, g) }, (_, q) => ({
      label: `${label}: texture ${g} strip ${q}`,
      copy: { buffer: z, offset: (g * groups.width + q * STRIP) * 4, bytesPerRow: raw.d * 4, rowsPerImage: height, texture: scratch.texture.gpu, origin: [0, 0, q], size: [texels, height, 1] },
    }));
  }
  if (!pack) throw new Error(`${label}: the packed texture needs the lavapipe/centered_panels pipeline`);
  return [
    { label: `${label}: panels ${g}`, pipeline: pack, workgroups, bindings: [z, stats, scratch.panel.gpu, record(scratch.records[view].gpu, at.backwardParams + g, UNIFORM_BYTES.backwardParams)] },
    { label: `${label}: texture ${g}`, copy: { buffer: scratch.panel.gpu, bytesPerRow: STRIP * 4, rowsPerImage: rows, texture: scratch.texture.gpu, size: [texels, height, layers] } },
  ];
}

/** Per dispatch: the 32-row blocks of a 128-row block row along x, the group's strips along y. */
const windowBackwardWorkgroups = (width: number) => [BLOCK / SHARED, width / STRIP] as const;

const gramSpec = (raw: boolean): KernelSpec => ({ name: 'lavapipe/dual_gram_windows', code: dualGramWindows, ...(raw ? { constants: { RAW_PANEL: true } } : {}) });
const gradientSpec = (accumulate: boolean, raw: boolean): KernelSpec =>
  ({ name: 'lavapipe/dual_gradient_windows', code: dualGradientWindows, constants: { ACCUMULATE: accumulate, ...(raw ? { RAW_PANEL: true } : {}) } });

/** One view's Gram: per column group, the group's texture and one dispatch over K's upper tiles (a running sum across groups). */
const gramProgram: GramProgram<WindowScratch> = {
  kernel: 'lavapipe/dual_gram_windows',
  // With the views copied as they are, the RAW_PANEL pipeline alone; else the kernel and its panel copy.
  specs: ({ views, d }) => (windowRawPanel(views, d) ? [gramSpec(true)] : [gramSpec(false), centeredPanelsSpec]),
  partials: (n) => windowGramTiles(n) * LANES,
  steps: ({ rows, d, views, view, pipelines, buffers, scratch }) => {
    const label = `lavapipe/dual_gram_windows ${'AB'[view]}`;
    const raw = windowRawPanel(views, d) ? { d } : undefined;
    const { groups, at } = scratch!.layout[view];
    const steps: Step[] = [];
    for (let g = 0; g < groups.groups; g++) {
      steps.push(...windowTextureSteps(label, pipelines[1], buffers.z, buffers.stats, scratch!, view, rows, g, windowBackwardWorkgroups(groups.width), raw));
      steps.push({
        label: `${label}: group ${g}`, pipeline: pipelines[0], workgroups: [windowGramTiles(rows)],
        bindings: [buffers.partials, buffers.matrix, buffers.stats, record(scratch!.records[view].gpu, at.gramDims + g, 32), scratch!.texture.view],
      });
    }
    return steps;
  },
};

/** One view's gradient: per column group, the group's texture, then windowBackwardDispatches. */
const gradientProgram: GradientProgram<WindowScratch> = {
  kernel: 'lavapipe/dual_gradient_windows',
  specs: ({ views, d, accumulate }) => (windowRawPanel(views, d) ? [gradientSpec(accumulate, true)] : [gradientSpec(accumulate, false), centeredPanelsSpec]),
  workgroups: (n, d) => ({ main: windowBackwardWorkgroups(windowColumnGroups(n, d).width) }),
  columnBlocks: false,
  steps: ({ rows, d, views, view, pipelines, buffers, scratch, indirect }) => {
    const label = `lavapipe/dual_gradient_windows ${'AB'[view]}`;
    const raw = windowRawPanel(views, d) ? { d } : undefined;
    const { groups, backward, at } = scratch!.layout[view];
    const records = scratch!.records[view].gpu;
    const nb = blockCount(rows);
    const workgroups = indirect?.('main') ?? windowBackwardWorkgroups(groups.width);
    const steps: Step[] = [];
    for (let g = 0; g < groups.groups; g++) {
      const params = record(records, at.backwardParams + g, UNIFORM_BYTES.backwardParams);
      steps.push(...windowTextureSteps(label, pipelines[1], buffers.z, buffers.stats, scratch!, view, rows, g, workgroups, raw));
      backward.forEach((dispatch, i) => {
        const windows = Array.from({ length: BACKWARD_WINDOWS }, (_, w) => window(buffers.matrix, w < dispatch.blocks.length ? storedBlock(view, dispatch.P, dispatch.blocks[w], nb) : 0));
        steps.push({
          label: `${label}: group ${g} block row ${dispatch.P}, blocks ${dispatch.blocks.map((Q, w) => `${Q}${dispatch.byColumns[w] ? ' (by columns)' : ''}`).join(', ')}`,
          pipeline: pipelines[0], workgroups,
          bindings: [buffers.z, buffers.other, buffers.stats, buffers.grad, params, buffers.upstream, scratch!.texture.view,
            record(records, at.blocks + i, 48), ...windows],
        });
      });
    }
    return steps;
  },
};

/** K in 128 x 128 blocks, each bound as a uniform window by the gradient. */
const BLOCKED: MatrixLayout = { name: 'windows-blocked', floats: (_form, n) => blockedMatrixFloats(n), uniform: true, gramAccumulates: true };

const dualKernels: FormKernels<WindowScratch> = {
  gram: gramProgram,
  gradient: gradientProgram,
  matrix: BLOCKED,
  scratch: ({ device, n, d, rows, coefficients, views, partialsPerView }) => {
    const layout: WindowRecords[] = [];
    const records: Buffer[] = [];
    for (const view of views) {
      layout[view] = windowRecords(coefficients, n, d, rows, view, view * partialsPerView);
      records[view] = uniformBuffer(device, `window records ${'AB'[view]}`, layout[view].bytes.byteLength);
      device.queue.writeBuffer(records[view].gpu, 0, layout[view].bytes);
    }
    const panel = createBuffer(device, 'window panels', windowPanelFloats(rows, d) * 4, Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST);
    const texture = storageTexture(device, 'window column panels (texture)', windowTextureSize(rows, d));
    return {
      records, layout, panel, texture,
      poisonable: () => ({ buffers: [panel], textures: [texture] }),
      destroy: () => {
        [...records.filter(Boolean), panel].forEach(destroyBuffer);
        destroyTexture(texture);
      },
    };
  },
};

/** Whether the adapter runs the kernels: the subgroup kernels' requirement and the WGSL language features. */
const hasLanguage = (language: ReadonlySet<string>) => WINDOW_LANGUAGE_FEATURES.every((f) => language.has(f));

export const windows: VariantDescription = {
  name: 'windows',
  family: 'lavapipe',
  summary: "the dual form's subgroup kernels with every inner-loop operand read through uniform windows or a storage texture (for lavapipe)",
  language: WINDOW_LANGUAGE_FEATURES,
  requirements: `what 'shuffle' needs (subgroup size ${LANES}), the WGSL language features ${WINDOW_LANGUAGE_FEATURES.join(' and ')}, and n <= ${WINDOWS_MAX_ROWS}; the primal form runs 'shuffle'`,
  refuse: ({ traits, n, d, form, bindingLimit }) => {
    if (!lanesFit(traits) || d % 4 !== 0 || !hasLanguage(traits.language) || n > WINDOWS_MAX_ROWS) {
      return {
        kind: 'option',
        reason: `the 'subgroups' feature with subgroup size ${LANES} (this device: ${subgroupSizes(traits)}) and d % 4 == 0 (d = ${d}), `
          + `the WGSL language features ${WINDOW_LANGUAGE_FEATURES.join(' and ')} (this device: ${hasLanguage(traits.language) ? 'has them' : 'lacks them or cannot tell'}), `
          + `and n <= ${WINDOWS_MAX_ROWS} (n = ${n})`,
      };
    }
    if (form === 'dual') {
      const [what, floats] = blockedMatrixFloats(n) >= windowPanelFloats(n, d)
        ? [`its ${n} x ${n} blocked matrix`, blockedMatrixFloats(n)] : ['its column panels', windowPanelFloats(n, d)];
      if (floats * 4 > bindingLimit) return { kind: 'limit', reason: `${what} (${MiB(floats * 4)}) in one binding` };
    }
    return undefined;
  },
  forms: { dual: dualKernels },
  standIn: 'shuffle',
  preference: 0,
};
