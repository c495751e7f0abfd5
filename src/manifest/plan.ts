// The loss as data, for hosts that run kernels/*.wgsl without this package (native apps: C++ with Dawn,
// Rust with wgpu). scripts/manifest.ts joins it with what it reads from the WGSL sources (bindings,
// overrides, workgroup sizes, struct layouts) into kernels/manifest.json; docs/native.md explains it.
//
// Every size, dispatch count and uniform value is a formula string (grammar: scripts/formula.ts) in the
// names of INPUTS and of the plan's variables, never a number worked out by hand: test/plan.test.ts
// evaluates them against the functions the engine itself calls (kernels.ts, coefficients.ts, vicreg.ts).
import type { Form, Variant } from '../types.js';
import { DEFAULTS } from '../engine/coefficients.js';

export type Formula = string;

/** Names a host binds before evaluating any formula. */
export const INPUTS: Readonly<Record<string, string>> = {
  n: 'rows of each view (the batch size), >= 2',
  d: 'columns of each view (the embedding dimension), >= 1',
  lambda: 'invariance weight',
  mu: 'variance weight',
  nu: 'covariance weight',
  gamma: 'target standard deviation of each feature',
  eps: 'added to the variance under the square root',
  k: "the preset's variance scale (PRESETS)",
};

/** variance = k (v(A) + v(B)). */
export const PRESETS: Readonly<Record<'paper' | 'official', { k: Formula }>> = {
  paper: { k: '1' },
  official: { k: '1/2' },
};

export const DEFAULT_COEFFICIENTS = {
  lambda: DEFAULTS.lambda, mu: DEFAULTS.mu, nu: DEFAULTS.nu, gamma: DEFAULTS.gamma, eps: DEFAULTS.eps, preset: DEFAULTS.preset,
} as const;

/** Below this off-diagonal share of ||C||_F^2 the dual form's result is redone in the primal form (vicreg.ts). */
export const MIN_DUAL_SHARE = 0.5;

/** What a binding is for; a pass maps each role to a named buffer. */
export type Role = 'a' | 'b' | 'z' | 'other' | 'stats' | 'flags' | 'partials' | 'matrix' | 'result' | 'grad' | 'params' | 'upstream' | 'dims' | 'args' | 'panel';

export interface KernelPlan {
  file: string;
  purpose: string;
  /** Pipeline constants the engine sets (the other overrides keep their WGSL defaults). */
  overrides: Readonly<Record<string, number | boolean>>;
  /** Workgroup counts x, y, z. */
  dispatch: readonly [Formula, Formula, Formula];
  /** Per WGSL binding name: its role, and how many elements of its type the kernel needs. */
  bindings: Readonly<Record<string, { role: Role; count: Formula }>>;
}

const TILED = { WG: 8 } as const;
const WORKGROUP = { WG: 16 } as const;
/**
 * The subgroup Gram kernels run one workgroup per tile on or above the diagonal (S-row by 2S-column
 * tiles; S = 32, both forms), in rows of at most 65535 workgroups (the WGSL's upperTileCount).
 */
const UPPER_TILES: Formula = 'ceil(side/64)*(ceil(side/64)-1) + min(2*ceil(side/64), ceil(side/32))';
const UPPER_TILE_DISPATCH = ['min(upperTiles, 65535)', 'ceil(upperTiles/65535)', '1'] as const;
const view = (count: Formula) => ({ role: 'z' as const, count });
const common = {
  stats: { role: 'stats', count: '7*d' },
  partials: { role: 'partials', count: '2*partialsPerView' },
  dims: { role: 'dims', count: '1' },
  other: { role: 'other', count: 'n*d' },
  grad: { role: 'grad', count: 'n*d' },
  params: { role: 'params', count: '1' },
  upstream: { role: 'upstream', count: '1' },
  /** The packed matrices of both views (BUFFERS.matrix in that form). */
  covOffDiag: { role: 'matrix', count: 'd*d+d' },
  gram: { role: 'matrix', count: 'n*n+n' },
} as const;
/** A 'tiled' or 'workgroup' backward kernel's bindings, its matrix binding named as in its WGSL. */
const blockBackwardBindings = (matrix: 'covOffDiag' | 'gram') => ({
  z: view('n*d'), other: common.other, stats: common.stats, [matrix]: common[matrix], grad: common.grad, params: common.params, upstream: common.upstream,
});

export const KERNELS = {
  column_stats: {
    file: 'column_stats.wgsl',
    purpose: 'per column of A and B: shift + center (the mean), unbiased variance, sum of (A-B)^2, first NaN/Inf',
    overrides: { WG: 64 },
    dispatch: ['ceil(d/64)', '1', '1'],
    bindings: { a: { role: 'a', count: 'n*d' }, b: { role: 'b', count: 'n*d' }, stats: common.stats, flags: { role: 'flags', count: '4*d' }, dims: common.dims },
  },
  loss_terms: {
    file: 'loss_terms.wgsl',
    purpose: 'one workgroup: the loss, its three terms, the non-finite flags, the off-diagonal shares',
    overrides: { WG: 256 },
    dispatch: ['1', '1', '1'],
    bindings: { stats: common.stats, flags: { role: 'flags', count: '4*d' }, partials: common.partials, result: { role: 'result', count: '8' }, params: common.params },
  },
  form_decision: {
    file: 'form_decision.wgsl',
    purpose: "device-side dual->primal decision writing indirect dispatch arguments (the engine's encode()); not used by the plans below",
    overrides: {},
    dispatch: ['1', '1', '1'],
    bindings: { result: { role: 'result', count: '8' }, args: { role: 'args', count: '15' }, params: common.params },
  },
  'tiled/primal_gram': {
    file: 'tiled/primal_gram.wgsl',
    purpose: 'primal: tiles of C = Zc^T Zc/(n-1) on and above the diagonal; partial sums of squared off-diagonal entries; writes Coff',
    overrides: { ...TILED, WRITE_MATRIX: true },
    dispatch: ['ceil(d/32)', 'ceil(d/32)', '1'],
    bindings: { z: view('n*d'), stats: common.stats, partials: common.partials, covOffDiag: common.covOffDiag, dims: common.dims },
  },
  'subgroup/primal_gram': {
    file: 'subgroup/primal_gram.wgsl',
    purpose: 'tiled/primal_gram with subgroup shuffles (subgroup size 8, d % 4 == 0)',
    overrides: { WRITE_MATRIX: true },
    dispatch: UPPER_TILE_DISPATCH,
    bindings: { z: view('n*d'), stats: common.stats, partials: common.partials, covOffDiag: common.covOffDiag, dims: common.dims, z4: view('n*d/4') },
  },
  'tiled/dual_gram': {
    file: 'tiled/dual_gram.wgsl',
    purpose: 'dual: tiles of K = Zc Zc^T on and above the diagonal; partial sums of (K/(n-1))^2; writes K',
    overrides: { ...TILED, WRITE_MATRIX: true },
    dispatch: ['ceil(n/32)', 'ceil(n/32)', '1'],
    bindings: { z: view('n*d'), stats: common.stats, partials: common.partials, gram: common.gram, dims: common.dims },
  },
  'subgroup/dual_gram': {
    file: 'subgroup/dual_gram.wgsl',
    purpose: 'tiled/dual_gram with subgroup shuffles (subgroup size 8, d % 4 == 0)',
    overrides: { WRITE_MATRIX: true },
    dispatch: UPPER_TILE_DISPATCH,
    bindings: { z4: view('n*d/4'), stats: common.stats, partials: common.partials, gram: common.gram, dims: common.dims },
  },
  'workgroup/primal_gram': {
    file: 'workgroup/primal_gram.wgsl',
    purpose: 'tiled/primal_gram with 64 x 64 tiles staged through workgroup memory (for GPUs)',
    overrides: { ...WORKGROUP, WRITE_MATRIX: true },
    dispatch: ['ceil(d/64)', 'ceil(d/64)', '1'],
    bindings: { z: view('n*d'), stats: common.stats, partials: common.partials, covOffDiag: common.covOffDiag, dims: common.dims },
  },
  'workgroup/dual_gram': {
    file: 'workgroup/dual_gram.wgsl',
    purpose: 'tiled/dual_gram with 64 x 64 tiles staged through workgroup memory (for GPUs)',
    overrides: { ...WORKGROUP, WRITE_MATRIX: true },
    dispatch: ['ceil(n/64)', 'ceil(n/64)', '1'],
    bindings: { z: view('n*d'), stats: common.stats, partials: common.partials, gram: common.gram, dims: common.dims },
  },
  'workgroup/primal_gradient': {
    file: 'workgroup/primal_gradient.wgsl',
    purpose: 'tiled/primal_gradient with 64 x 64 blocks staged through workgroup memory (for GPUs)',
    overrides: { ...WORKGROUP, ACCUMULATE: false },
    dispatch: ['ceil(d/64)', 'ceil(n/64)', '1'],
    bindings: blockBackwardBindings('covOffDiag'),
  },
  'workgroup/dual_gradient': {
    file: 'workgroup/dual_gradient.wgsl',
    purpose: 'tiled/dual_gradient with 64 x 64 blocks staged through workgroup memory (for GPUs)',
    overrides: { ...WORKGROUP, ACCUMULATE: false },
    dispatch: ['ceil(d/64)', 'ceil(n/64)', '1'],
    bindings: blockBackwardBindings('gram'),
  },
  'tiled/primal_gradient': {
    file: 'tiled/primal_gradient.wgsl',
    purpose: 'primal gradient of one view: Zc Coff plus the invariance and variance terms, written once',
    overrides: { ...TILED, ACCUMULATE: false },
    dispatch: ['ceil(d/32)', 'ceil(n/32)', '1'],
    bindings: blockBackwardBindings('covOffDiag'),
  },
  'subgroup/primal_gradient': {
    file: 'subgroup/primal_gradient.wgsl',
    purpose: 'tiled/primal_gradient with subgroup shuffles (subgroup size 8, d % 4 == 0)',
    overrides: { ACCUMULATE: false },
    dispatch: ['ceil(d/64)', 'ceil(n/32)', '1'],
    bindings: {
      z4: view('n*d/4'), other4: { role: 'other', count: 'n*d/4' }, stats: common.stats, covOffDiag4: { role: 'matrix', count: '(d*d+d)/4' },
      grad4: { role: 'grad', count: 'n*d/4' }, params: common.params, upstream: common.upstream,
    },
  },
  'subgroup/primal_gradient_mirrored': {
    file: 'subgroup/primal_gradient_mirrored.wgsl',
    purpose: 'second pass of subgroup/primal_gradient on the packed matrix: adds the part of Zc Coff stored in the mirrored rows (always adds)',
    overrides: {},
    dispatch: ['ceil(d/64)', 'ceil(n/32)', '1'],
    bindings: {
      z4: view('n*d/4'), stats: common.stats, covOffDiag4: { role: 'matrix', count: '(d*d+d)/4' }, grad: common.grad,
      params: common.params, upstream: common.upstream,
    },
  },
  'tiled/dual_gradient': {
    file: 'tiled/dual_gradient.wgsl',
    purpose: 'dual gradient of one view: K Zc/(n-1) - Zc diag(var) plus the invariance and variance terms',
    overrides: { ...TILED, ACCUMULATE: false },
    dispatch: ['ceil(d/32)', 'ceil(n/32)', '1'],
    bindings: blockBackwardBindings('gram'),
  },
  'subgroup/dual_gradient': {
    file: 'subgroup/dual_gradient.wgsl',
    purpose: 'tiled/dual_gradient with subgroup shuffles (subgroup size 8, d % 4 == 0); one column group (panelWidth columns from params.columnStart) per dispatch, Zc read from the panels where params.panels',
    overrides: { ACCUMULATE: false },
    dispatch: ['ceil(n/32)', 'panelWidth/64', '1'],
    bindings: {
      z4: view('n*d/4'), other4: { role: 'other', count: 'n*d/4' }, stats: common.stats, gram: common.gram,
      grad4: { role: 'grad', count: 'n*d/4' }, params: common.params, upstream: common.upstream, panel4: { role: 'panel', count: 'panels*n*panelWidth/4' },
      gram4: { role: 'matrix', count: 'floor((n*n+n)/4)' },
    },
  },
  'subgroup/centered_panels': {
    file: 'subgroup/centered_panels.wgsl',
    purpose: "copies one column group of Zc into 64-column panels for subgroup/dual_gradient (no workgroups where panels = 0)",
    overrides: {},
    dispatch: ['panels*ceil(n/32)', 'panelWidth/64', '1'],
    bindings: { z4: view('n*d/4'), stats: common.stats, panel4: { role: 'panel', count: 'panels*n*panelWidth/4' }, params: common.params },
  },
} as const satisfies Record<string, KernelPlan>;

export type KernelId = keyof typeof KERNELS;

export interface BufferPlan {
  kind: 'storage' | 'uniform';
  /** Storage: its element type (f32 or u32). Uniform: the WGSL struct (its layout comes from the kernels). */
  type: string;
  /** Storage: elements. */
  count?: Formula;
  /**
   * 'problem': one per (n, d). 'form': one per form (after the dual->primal fallback both sets are live).
   * 'group': one per column group g = 0 .. panelGroups-1, bound by the passes of a group loop; its value
   * formulas may name g.
   */
  scope: 'problem' | 'form' | 'group';
  /** What the host writes into it before the passes that read it. */
  hostWrites?: string;
  /** What the host reads back from it. */
  hostReads?: string;
  note?: string;
  /** Uniform: field -> value. Fields not named (padding, unused modes) are 0. */
  values?: Readonly<Record<string, Formula>>;
}

const coefficientsOf = { lambda: 'lambda', mu: 'mu', nu: 'nu', gamma: 'gamma', eps: 'eps' };
const backwardParamsValues = (v: 0 | 1): Record<string, Formula> => ({
  n: 'n', d: 'd', ...statsOffsets(v), varOffset: v ? '5*d' : '4*d', columnStart: '0', matrixStride: 'd', packing: v ? '2' : '1',
  invCoef: '2*lambda/(n*d)', varWeight: '-mu*k/(d*(n-1))', covCoef: '4*nu/(d*(n-1))', gamma: 'gamma', eps: 'eps',
});
/** The stats buffer holds [shiftA | shiftB | centerA | centerB | varA | varB | sqDiff], d floats each. */
const statsOffsets = (v: 0 | 1) => ({ shiftOffset: v ? 'd' : '0', centerOffset: v ? '3*d' : '2*d' });

export const BUFFERS: Readonly<Record<string, BufferPlan>> = {
  A: { kind: 'storage', type: 'f32', count: 'n*d', scope: 'problem', hostWrites: 'view A: n x d float32, row-major' },
  B: { kind: 'storage', type: 'f32', count: 'n*d', scope: 'problem', hostWrites: 'view B: n x d float32, row-major' },
  stats: {
    kind: 'storage', type: 'f32', count: '7*d', scope: 'problem',
    note: '[shiftA | shiftB | centerA | centerB | varA | varB | sqDiff], d each; mean = shift + center',
  },
  flags: {
    kind: 'storage', type: 'u32', count: '4*d', scope: 'problem',
    hostReads: 'only when result.nonFinite != 0: [rowA + 1 | rowB + 1 | bitsA | bitsB], d each; row + 1 = 0 means the column is finite',
  },
  partials: { kind: 'storage', type: 'f32', count: '2*partialsPerView', scope: 'form', note: "view A's partial sums from 0, view B's from partialsPerView" },
  matrix: {
    kind: 'storage', type: 'f32', count: 'side*side+side', scope: 'form',
    note: "both views' Coff (primal) or K (dual), written by forward, read by backward, packed: view A's entry (i, k), i <= k, at i*side + k; " +
      "view B's at k*side + i for i < k and at side*side + i for i = k (the kernels' packedIndex)",
  },
  result: { kind: 'storage', type: 'f32', count: '8', scope: 'problem', hostReads: 'after forward: HOST.result' },
  upstream: { kind: 'storage', type: 'f32', count: '1', scope: 'problem', hostWrites: 'before backward: the upstream gradient (1 for dLoss/dA, dLoss/dB)' },
  gradA: { kind: 'storage', type: 'f32', count: 'n*d', scope: 'problem', hostReads: 'after backward: upstream * dLoss/dA, n x d row-major' },
  gradB: { kind: 'storage', type: 'f32', count: 'n*d', scope: 'problem', hostReads: 'after backward: upstream * dLoss/dB, n x d row-major' },
  statsDims: { kind: 'uniform', type: 'Dims', scope: 'problem', values: { n: 'n', d: 'd' } },
  gramDimsA: {
    kind: 'uniform', type: 'GramDims', scope: 'form',
    values: { n: 'n', d: 'd', tiles: 'tiles', partialOffset: '0', ...statsOffsets(0), lowerHalf: '0' },
  },
  gramDimsB: {
    kind: 'uniform', type: 'GramDims', scope: 'form',
    values: { n: 'n', d: 'd', tiles: 'tiles', partialOffset: 'partialsPerView', ...statsOffsets(1), lowerHalf: '1' },
  },
  termParams: {
    kind: 'uniform', type: 'TermParams', scope: 'form',
    values: { n: 'n', d: 'd', partialCount: 'partialsPerView', dualForm: 'dual', partialOffsetB: 'partialsPerView', ...coefficientsOf, varianceScale: 'k' },
  },
  ...Object.fromEntries(([0, 1] as const).map((v) => [`backwardParams${'AB'[v]}`, {
    kind: 'uniform', type: 'BackwardParams', scope: 'problem',
    values: backwardParamsValues(v),
  } satisfies BufferPlan])),
  panel: {
    kind: 'storage', type: 'f32', count: 'max(4, panels*n*panelWidth)', scope: 'form',
    note: 'one column group of Zc in 64-column panels (subgroup/centered_panels), rewritten for every group; 4 floats where panels = 0 (bound, not read)',
  },
  ...Object.fromEntries(([0, 1] as const).map((v) => [`groupParams${'AB'[v]}`, {
    kind: 'uniform', type: 'BackwardParams', scope: 'group',
    values: { ...backwardParamsValues(v), columnStart: 'g*panelWidth', panels: 'panels' },
  } satisfies BufferPlan])),
};

/** Per form: the Gram matrix's side, and 1 for the dual form (loss_terms then subtracts C's diagonal). */
export const FORMS: Readonly<Record<Form, Readonly<Record<string, Formula>>>> = {
  primal: { side: 'd', dual: '0' },
  dual: { side: 'n', dual: '1' },
};

export interface VariantPlan {
  note: string;
  /** Device features the kernels enable; a fixed subgroup size (adapter's min = max); a shape condition. */
  requires: { features: readonly string[]; subgroupSize?: number; when: Formula };
  gram: Readonly<Record<Form, KernelId>>;
  backward: Readonly<Record<Form, KernelId>>;
  /** Per form, a second backward pass per view, run right after the first (it adds to the gradient). */
  mirroredBackward?: Readonly<Partial<Record<Form, KernelId>>>;
  /** Per form, a backward kernel that runs per column group, each group after this panel copy. */
  groupedBackward?: Readonly<Partial<Record<Form, KernelId>>>;
  /** Partial sums one Gram dispatch writes per view. */
  partialsPerView: Readonly<Record<Form, Formula>>;
}

/**
 * The variants native hosts get plans for. 'windows' (kernels.ts) is the engine's only: per view and
 * column group it fills a texture with copies and runs a dispatch (Gram) or one per 128-row block row
 * and 8 blocks of K (backward, each binding its own uniform windows), which these formulas do not
 * describe yet.
 */
export type ManifestVariant = Exclude<Variant, 'windows'>;

export const VARIANTS: Readonly<Record<ManifestVariant, VariantPlan>> = {
  tiled: {
    note: 'portable: (8, 8) workgroups with 4 x 4 register blocks, any shape; the choice for GPUs',
    requires: { features: [], when: '1' },
    gram: { primal: 'tiled/primal_gram', dual: 'tiled/dual_gram' },
    backward: { primal: 'tiled/primal_gradient', dual: 'tiled/dual_gradient' },
    partialsPerView: { primal: 'ceil(d/32)*ceil(d/32)', dual: 'ceil(n/32)*ceil(n/32)' },
  },
  subgroup: {
    note: 'one subgroup of 8 per workgroup, values shared by subgroupShuffle; for adapters where each lane load is costly (lavapipe)',
    requires: { features: ['subgroups'], subgroupSize: 8, when: 'd % 4 == 0' },
    gram: { primal: 'subgroup/primal_gram', dual: 'subgroup/dual_gram' },
    backward: { primal: 'subgroup/primal_gradient', dual: 'subgroup/dual_gradient' },
    mirroredBackward: { primal: 'subgroup/primal_gradient_mirrored' },
    groupedBackward: { dual: 'subgroup/centered_panels' },
    partialsPerView: { primal: 'upperTiles*8', dual: 'upperTiles*8' },
  },
  workgroup: {
    note: '(16, 16) workgroups, 64 x 64 tiles staged through workgroup memory, 4 x 4 register blocks; any shape; the textbook GPU kernel (not yet measured on a GPU)',
    requires: { features: [], when: '1' },
    gram: { primal: 'workgroup/primal_gram', dual: 'workgroup/dual_gram' },
    backward: { primal: 'workgroup/primal_gradient', dual: 'workgroup/dual_gradient' },
    partialsPerView: { primal: 'ceil(d/64)*ceil(d/64)', dual: 'ceil(n/64)*ceil(n/64)' },
  },
};

/**
 * The dual subgroup backward's column groups (kernels.ts columnGroups): from 512 rows on, groups of at
 * most 8 strips of 64 columns, equal widths, read from panels; below, one group of all columns, read
 * from Z itself.
 */
const COLUMN_GROUPS: Record<string, Formula> = {
  panels: 'n >= 512',
  panelGroups: 'panels*ceil(ceil(d/64)/8) + 1 - panels',
  panelWidth: '64*ceil(ceil(d/64)/panelGroups)',
};

/** The names a plan (variant, form) adds to INPUTS, in evaluation order. */
export function planVariables(variant: ManifestVariant, form: Form): Record<string, Formula> {
  return { ...FORMS[form], tiles: 'ceil(side/32)', upperTiles: UPPER_TILES, partialsPerView: VARIANTS[variant].partialsPerView[form], ...COLUMN_GROUPS };
}

export interface PassPlan {
  label: string;
  kernel: KernelId;
  /** Role -> named buffer (BUFFERS). */
  buffers: Partial<Record<Role, string>>;
}

/** Passes run in order once per column group g = 0 .. count-1, binding each 'group' buffer's instance g. */
export interface GroupLoop {
  forEachGroup: Formula;
  passes: PassPlan[];
}

const VIEWS = ['A', 'B'] as const;

/** Forward: statistics, one Gram pass per view, the terms. Then the host reads `result`. */
export function forwardPasses(variant: ManifestVariant, form: Form): PassPlan[] {
  return [
    { label: 'column_stats', kernel: 'column_stats', buffers: { a: 'A', b: 'B', stats: 'stats', flags: 'flags', dims: 'statsDims' } },
    ...VIEWS.map((v) => ({
      label: `gram ${v}`, kernel: VARIANTS[variant].gram[form],
      buffers: { z: v, stats: 'stats', partials: 'partials', matrix: 'matrix', dims: `gramDims${v}` },
    })),
    { label: 'loss_terms', kernel: 'loss_terms', buffers: { stats: 'stats', flags: 'flags', partials: 'partials', result: 'result', params: 'termParams' } },
  ];
}

/**
 * Backward (after the forward of the same form): one fused gradient pass per view, and the variant's
 * mirrored pass after it where it has one; or, for a grouped kernel, per view a loop over the column
 * groups of the panel copy and the pass.
 */
export function backwardPasses(variant: ManifestVariant, form: Form): (PassPlan | GroupLoop)[] {
  const mirrored = VARIANTS[variant].mirroredBackward?.[form];
  const panels = VARIANTS[variant].groupedBackward?.[form];
  return VIEWS.flatMap((v, i): (PassPlan | GroupLoop)[] => {
    const buffers = {
      z: v, other: VIEWS[1 - i], stats: 'stats', matrix: 'matrix', grad: `grad${v}`, params: `backwardParams${v}`, upstream: 'upstream',
    };
    const first = { label: `backward ${v}`, kernel: VARIANTS[variant].backward[form], buffers };
    if (panels) {
      const grouped = { ...buffers, params: `groupParams${v}`, panel: 'panel' };
      return [{
        forEachGroup: 'panelGroups',
        passes: [{ label: `panels ${v}`, kernel: panels, buffers: grouped }, { ...first, buffers: grouped }],
      }];
    }
    return mirrored ? [first, { label: `backward ${v} (mirrored)`, kernel: mirrored, buffers }] : [first];
  });
}

/** The passes of a pass list, loops flattened (each once). */
export const passesOf = (steps: readonly (PassPlan | GroupLoop)[]): PassPlan[] => steps.flatMap((s) => ('passes' in s ? s.passes : [s]));

/** The host's decisions, as data: `when`/`keepWhen` are formulas (comparisons give 1 or 0). */
export const HOST = {
  shape: { require: ['n >= 2', 'd >= 1'], note: 'n = 1 has no unbiased variance' },
  formChoice: { dualWhen: 'n < d', note: 'the cheaper form by multiply-adds: primal ~ n d^2, dual ~ n^2 d' },
  variantChoice: "'tiled' and 'workgroup' run anywhere; 'subgroup' only where its requires hold (the engine times those that can run once per device and shape class)",
  result: {
    buffer: 'result',
    /** result[i] is fields[i] (float32). */
    fields: ['loss', 'invariance', 'variance', 'covariance', 'nonFinite', 'offDiagonalShareA', 'offDiagonalShareB', 'unused'],
  },
  nonFinite: {
    when: 'nonFinite != 0',
    bits: { A: 1, B: 2 },
    note: 'an input holds NaN or Inf (nonFinite = 1: in A, 2: in B, 3: both); the terms are meaningless. The flags buffer locates it: per view, the smallest nonzero row + 1 over the columns, and that element\'s bits',
  },
  fallback: {
    from: 'dual',
    to: 'primal',
    keepWhen: 'min(offDiagonalShareA, offDiagonalShareB) >= minDualShare',
    minDualShare: MIN_DUAL_SHARE,
    note: 'in the dual form the off-diagonal sum is total - diagonal, which cancels when the diagonal dominates; otherwise (a NaN share included, since it compares false) run the whole primal forward, from column_stats, and use its result; backward then runs the primal passes',
  },
  overflow: { note: 'a term that is not finite while nonFinite == 0 means a float32 sum overflowed: inputs too large' },
  steps: [
    'check shape.require; bind INPUTS (k from the preset) and the plan variables of the chosen form',
    'form = formChoice.dualWhen ? dual : primal; allocate the buffers the plan names; write inputs and uniforms',
    'run forward passes in order; read result',
    'nonFinite.when -> error; fallback: form dual and not keepWhen -> run the primal forward, read result again',
    'a non-finite term -> overflow error; else the terms are result[0..3]',
    'backward: write upstream; run the backward passes of the form that produced the result (a forEachGroup loop: its passes once per column group g, with group g\'s instance of each group-scope buffer); read gradA, gradB',
  ],
} as const;
