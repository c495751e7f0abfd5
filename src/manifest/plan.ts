// The loss as data, for hosts that run kernels/*.wgsl without this package (native apps: C++ with Dawn,
// Rust with wgpu). scripts/manifest.ts joins it with what it reads from the WGSL sources (bindings,
// overrides, workgroup sizes, struct layouts) into kernels/manifest.json; docs/native.md explains it.
// Each variant describes its own kernels and plan (its `manifest`, src/variants); this module holds what
// every plan shares and collects the variants' from the registry.
//
// Every size, dispatch count, pipeline constant and uniform value is a formula string (grammar:
// scripts/formula.ts) in the names of INPUTS and of the plan's variables, never a number worked out by
// hand: test/plan.test.ts evaluates them against the functions the engine itself calls.
import type { Form } from '../types.js';
import { DEFAULTS } from '../coefficients.js';
import { MIN_DUAL_SHARE } from '../engine/forward.js';
import { REGISTRY, VARIANTS as DESCRIPTIONS } from '../variants/registry.js';
import { columnBlockGram, columnBlockWidthFormula, narrowestBlockBytes } from '../variants/shared.js';
import { floatToHalf, halfDispatchFormula, halfToFloat, halfWordsFormula } from '../variants/half.js';
import { common, view, type Formula, type KernelId, type KernelPlan, type Role, type VariantPlan } from '../variants/kernel-plans.js';

export type { Formula, KernelId, KernelPlan, Role, VariantPlan } from '../variants/kernel-plans.js';

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
  lanes: "the adapter's subgroupMinSize (0 without subgroups): the subgroup plan's lanes, and part of the shuffle plan's requires",
  maxLanes: "the adapter's subgroupMaxSize (0 without subgroups): read by the shuffle plan's requires, which needs a size fixed at 8",
  maxBinding: "the most bytes one storage binding may take: the device's maxStorageBufferBindingSize, or less where the host caps it " +
    "(the engine's maxBindingSize option); read by loss.host.blocked, loss.host.limit and the primalBlocked plans' blockWidth",
};

/** variance = k (v(A) + v(B)). */
export const PRESETS: Readonly<Record<'paper' | 'official', { k: Formula }>> = {
  paper: { k: '1' },
  official: { k: '1/2' },
};

export const DEFAULT_COEFFICIENTS = {
  lambda: DEFAULTS.lambda, mu: DEFAULTS.mu, nu: DEFAULTS.nu, gamma: DEFAULTS.gamma, eps: DEFAULTS.eps, preset: DEFAULTS.preset,
} as const;

/** Below this off-diagonal share of ||C||_F^2 the dual form's result is redone in the primal form (engine/forward.ts). */
export { MIN_DUAL_SHARE };

/** The kernels every plan runs. */
/** The float16 conversions run over one view's n*d elements. */
const HALF_WORDS = halfWordsFormula('n*d');
const HALF_DISPATCH = halfDispatchFormula('n*d');

const SHARED_KERNELS = {
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
  primal_gram_columns: {
    file: 'primal_gram_columns.wgsl',
    purpose: "one block of columns of one view's Coff, all d rows (GramDims.blockStart, GramDims.blockWidth), into a plain d x width matrix: the primalBlocked plans' backward",
    overrides: columnBlockGram.spec.constants,
    // A block of the widest width; the primalBlocked passes dispatch over each block's own width.
    dispatch: columnBlockGram.dispatch('blockWidth'),
    bindings: { z: view('n*d'), stats: common.stats, covOffDiag: { role: 'matrix', count: 'd*blockWidth' }, dims: common.dims },
  },
  half_to_float: {
    file: 'half_to_float.wgsl',
    purpose: 'one view from float16 (two per u32 word) to float32: the float16 forward, before column_stats',
    overrides: halfToFloat.spec.constants,
    dispatch: HALF_DISPATCH,
    bindings: { half: { role: 'half', count: HALF_WORDS }, out: view('n*d'), dims: common.dims },
  },
  float_to_half: {
    file: 'float_to_half.wgsl',
    purpose: "one view's float32 gradient rounded to float16 (ties to even), written or added (ACCUMULATE), ORing the overflow flag: the float16 backward, after the gradient passes",
    overrides: floatToHalf.spec(false).constants!,
    dispatch: HALF_DISPATCH,
    bindings: { grad: common.grad, out: { role: 'half', count: HALF_WORDS }, overflow: { role: 'overflow', count: '1' }, dims: common.dims },
  },
} satisfies Record<string, KernelPlan>;

/** Every kernel a plan runs: the shared ones and each variant's (its manifest). */
export const KERNELS: Readonly<Record<string, KernelPlan>> = Object.assign({}, SHARED_KERNELS, ...DESCRIPTIONS.map((v) => v.manifest?.kernels ?? {}));


export interface BufferPlan {
  kind: 'storage' | 'uniform';
  /** Storage: its element type (f32 or u32). Uniform: the WGSL struct (its layout comes from the kernels). */
  type: string;
  /** Storage: elements. */
  count?: Formula;
  /**
   * 'problem': one per (n, d). 'form': one per form (after the dual->primal fallback both sets are live).
   * 'group': one per group g = 0 .. forEachGroup-1 of the loop whose passes bind it (a column group,
   * a column block); its value formulas may name g.
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
/** Column block g of the primalBlocked backward: its first column, and its width (the last block's is what remains of d). */
const BLOCK_START: Formula = 'g*blockWidth';
const BLOCK_COLUMNS: Formula = 'min(blockWidth, d - g*blockWidth)';
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
  A16: { kind: 'storage', type: 'u32', count: HALF_WORDS, scope: 'problem', hostWrites: 'float16 views: view A, n*d binary16 values, two per u32 word (element 2w in the low 16 bits of word w)' },
  B16: { kind: 'storage', type: 'u32', count: HALF_WORDS, scope: 'problem', hostWrites: 'float16 views: view B, as A16' },
  gradA16: { kind: 'storage', type: 'u32', count: HALF_WORDS, scope: 'problem', hostReads: 'float16 gradients: upstream * dLoss/dA rounded to binary16, two per u32 word' },
  gradB16: { kind: 'storage', type: 'u32', count: HALF_WORDS, scope: 'problem', hostReads: 'float16 gradients: upstream * dLoss/dB, as gradA16' },
  halfDims: { kind: 'uniform', type: 'HalfDims', scope: 'problem', values: { count: 'n*d' } },
  overflow: {
    kind: 'storage', type: 'u32', count: '1', scope: 'problem',
    hostWrites: 'before the float16 backward passes: 0', hostReads: 'after them: 1 where a float16 gradient is Inf or NaN (a loss scaler skips the step), else 0',
  },
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
    note: 'one column group of Zc in 64-column panels (lavapipe/centered_panels), rewritten for every group; 4 floats where panels = 0 (bound, not read)',
  },
  ...Object.fromEntries(([0, 1] as const).map((v) => [`groupParams${'AB'[v]}`, {
    kind: 'uniform', type: 'BackwardParams', scope: 'group',
    values: { ...backwardParamsValues(v), columnStart: 'g*panelWidth', panels: 'panels' },
  } satisfies BufferPlan])),
  noMatrix: {
    kind: 'storage', type: 'f32', count: '4', scope: 'problem',
    note: "bound as the Gram kernels' matrix where they keep none (WRITE_MATRIX = 0: the primalBlocked forward); never read or written",
  },
  columnBlock: {
    kind: 'storage', type: 'f32', count: 'd*blockWidth', scope: 'form',
    note: "one block of one view's Coff: all d rows of the block's columns, row-major with the block's width as row stride; " +
      'primal_gram_columns writes it and the primal gradient reads it (packing 0), rewritten for every view and block',
  },
  ...Object.fromEntries(([0, 1] as const).map((v) => [`blockDims${'AB'[v]}`, {
    kind: 'uniform', type: 'GramDims', scope: 'group',
    values: { n: 'n', d: 'd', tiles: 'tiles', partialOffset: '0', ...statsOffsets(v), blockStart: BLOCK_START, blockWidth: BLOCK_COLUMNS, lowerHalf: String(v) },
  } satisfies BufferPlan])),
  ...Object.fromEntries(([0, 1] as const).map((v) => [`blockParams${'AB'[v]}`, {
    kind: 'uniform', type: 'BackwardParams', scope: 'group',
    values: { ...backwardParamsValues(v), columnStart: BLOCK_START, matrixStride: BLOCK_COLUMNS, packing: '0' },
  } satisfies BufferPlan])),
};

/**
 * The forms a plan has: the engine's two, and 'primalBlocked', the primal form past the binding limit
 * (the engine's blocked backward: the forward keeps no matrix, and backward forms Coff one block of
 * columns at a time), where the variant's primal gradient reads column blocks.
 */
export type PlanForm = Form | 'primalBlocked';

/** The engine's form a plan form runs. */
export const engineForm = (form: PlanForm): Form => (form === 'dual' ? 'dual' : 'primal');

/** Per form: the Gram matrix's side, and 1 for the dual form (loss_terms then subtracts C's diagonal). */
export const FORMS: Readonly<Record<PlanForm, Readonly<Record<string, Formula>>>> = {
  primal: { side: 'd', dual: '0' },
  dual: { side: 'n', dual: '1' },
  primalBlocked: { side: 'd', dual: '0' },
};

/** The primalBlocked plans' own variables: the engine's columnBlockWidth for the limit maxBinding, and the blocks of it d takes. */
const BLOCKED_VARIABLES: Readonly<Record<string, Formula>> = { blockWidth: columnBlockWidthFormula('maxBinding'), blocks: 'ceil(d/blockWidth)' };

/**
 * The variants native hosts get plans for: those of the registry with a manifest. 'windows' is the
 * engine's only: per view and column group it fills a texture with copies and runs a dispatch (Gram) or
 * one per 128-row block row and 8 blocks of K (backward, each binding its own uniform windows), which
 * these formulas do not describe.
 */
export type ManifestVariant = 'tiled' | 'subgroup' | 'workgroup' | 'shuffle';

export const VARIANTS: Readonly<Record<ManifestVariant, VariantPlan>> = Object.fromEntries(
  DESCRIPTIONS.filter((v) => v.manifest).map((v) => [v.name, v.manifest!])) as Record<ManifestVariant, VariantPlan>;

/** Whether a variant has a primalBlocked plan: where the engine's blocked backward can run its primal gradient (its `columnBlocks`). */
export function hasBlockedPlan(variant: ManifestVariant): boolean {
  if (!REGISTRY[variant].forms.primal?.gradient.columnBlocks) return false;
  if (!VARIANTS[variant].primalGradientDispatch) throw new Error(`variant ${variant}: its primal gradient reads column blocks, but its plan has no primalGradientDispatch`);
  return true;
}

/** The forms a variant's plan has, in the manifest's order. */
export const planForms = (variant: ManifestVariant): PlanForm[] => ['primal', 'dual', ...(hasBlockedPlan(variant) ? ['primalBlocked' as const] : [])];

/** The names a plan (variant, form) adds to INPUTS, in evaluation order. */
export function planVariables(variant: ManifestVariant, form: PlanForm): Record<string, Formula> {
  return {
    ...FORMS[form], tiles: 'ceil(side/32)', ...REGISTRY[variant].manifest!.variables, partialsPerView: VARIANTS[variant].partialsPerView[engineForm(form)],
    ...(form === 'primalBlocked' ? BLOCKED_VARIABLES : {}),
  };
}

export interface PassPlan {
  label: string;
  kernel: KernelId;
  /** Role -> named buffer (BUFFERS). */
  buffers: Partial<Record<Role, string>>;
  /** Pipeline constants this pass sets otherwise than the kernel's `overrides` (WRITE_MATRIX = 0 where no matrix is kept). */
  overrides?: Readonly<Record<string, number | boolean | Formula>>;
  /** Workgroup counts where they are not the kernel's `dispatch` (a column block's); in a group loop they may name g. */
  dispatch?: KernelPlan['dispatch'];
  /** Per role: the floats the bound buffer must hold in this pass, where fewer than the kernel's binding count (a column block; no matrix). */
  floats?: Partial<Record<Role, Formula>>;
}

/** Passes run in order once per column group g = 0 .. count-1, binding each 'group' buffer's instance g. */
export interface GroupLoop {
  forEachGroup: Formula;
  passes: PassPlan[];
}

const VIEWS = ['A', 'B'] as const;

/**
 * Forward: statistics, one Gram pass per view, the terms. Then the host reads `result`. In the
 * primalBlocked form, the primal forward keeping no matrix (the engine's keepsMatrix false: WRITE_MATRIX
 * = 0, `noMatrix` bound in its place).
 */
export function forwardPasses(variant: ManifestVariant, form: PlanForm): PassPlan[] {
  const blocked = form === 'primalBlocked';
  return [
    { label: 'column_stats', kernel: 'column_stats', buffers: { a: 'A', b: 'B', stats: 'stats', flags: 'flags', dims: 'statsDims' } },
    ...VIEWS.map((v): PassPlan => ({
      label: `gram ${v}`, kernel: VARIANTS[variant].gram[engineForm(form)],
      buffers: { z: v, stats: 'stats', partials: 'partials', matrix: blocked ? 'noMatrix' : 'matrix', dims: `gramDims${v}` },
      // 16 bytes: WebGPU's smallest binding of any array the kernels declare (one vec4).
      ...(blocked ? { overrides: { WRITE_MATRIX: false }, floats: { matrix: BUFFERS.noMatrix.count! } } : {}),
    })),
    { label: 'loss_terms', kernel: 'loss_terms', buffers: { stats: 'stats', flags: 'flags', partials: 'partials', result: 'result', params: 'termParams' } },
  ];
}

/**
 * Backward (after the forward of the same form): one fused gradient pass per view, and the variant's
 * mirrored pass after it where it has one; or, for a grouped kernel, per view a loop over the column
 * groups of the panel copy and the pass.
 */
export function backwardPasses(variant: ManifestVariant, form: PlanForm): (PassPlan | GroupLoop)[] {
  if (form === 'primalBlocked') return blockedBackwardPasses(variant);
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

/**
 * The primalBlocked backward (the engine's blockedBackwardSteps): for each column block g, per view,
 * primal_gram_columns forms the block of Coff in `columnBlock`, then the primal gradient computes those
 * columns of the gradient from it (BackwardParams packing 0, columnStart, matrixStride = the block's
 * width), dispatched over the block's columns only.
 */
function blockedBackwardPasses(variant: ManifestVariant): GroupLoop[] {
  const gradientDispatch = VARIANTS[variant].primalGradientDispatch!;
  return [{
    forEachGroup: 'blocks',
    passes: VIEWS.flatMap((v, i): PassPlan[] => [
      {
        label: `Coff block ${v}`, kernel: 'primal_gram_columns', dispatch: columnBlockGram.dispatch(BLOCK_COLUMNS),
        buffers: { z: v, stats: 'stats', matrix: 'columnBlock', dims: `blockDims${v}` },
      },
      {
        label: `backward ${v}`, kernel: VARIANTS[variant].backward.primal, dispatch: gradientDispatch(BLOCK_COLUMNS),
        buffers: { z: v, other: VIEWS[1 - i], stats: 'stats', matrix: 'columnBlock', grad: `grad${v}`, params: `blockParams${v}`, upstream: 'upstream' },
        floats: { matrix: BUFFERS.columnBlock.count! },
      },
    ]),
  }];
}

/**
 * float16 views and gradients, for every plan and form (the engine's float16 path): the views are
 * widened into the float32 A and B before a forward, and the float32 gradients rounded into float16
 * ones after a backward, with the overflow flag (cleared first).
 */
export const FLOAT16 = {
  note: 'float16 views: write A16/B16, run `forward` here, then the form\'s forward on A and B (float32 buffers the host allocates). ' +
    'float16 gradients: after the form\'s backward into gradA/gradB (float32), write 0 to overflow, run `backward` here (ACCUMULATE = 1 adds into gradA16/gradB16), read gradA16, gradB16 and overflow.',
  forward: VIEWS.map((v): PassPlan => ({ label: `${v} float16 -> float32`, kernel: 'half_to_float', buffers: { half: `${v}16`, z: v, dims: 'halfDims' } })),
  backward: VIEWS.map((v): PassPlan => ({
    label: `grad ${v} float32 -> float16`, kernel: 'float_to_half', buffers: { grad: `grad${v}`, half: `grad${v}16`, overflow: 'overflow', dims: 'halfDims' },
  })),
};

/** The passes of a pass list, loops flattened (each once). */
export const passesOf = (steps: readonly (PassPlan | GroupLoop)[]): PassPlan[] => steps.flatMap((s) => ('passes' in s ? s.passes : [s]));

/** The variants in the order the engine's variant 'auto' takes them (their preference). */
const PREFERENCE_ORDER = [...DESCRIPTIONS].sort((a, b) => a.preference - b.preference).map((v) => v.name);

/** The bytes of one binding the engine checks against its limit: a view, and the dual form's matrix. */
const VIEW_BYTES: Formula = `4*${common.grad.count}`;
const PACKED_BYTES = (side: 'n' | 'd'): Formula => `4*(${side}*${side}+${side})`;

/** The host's decisions, as data: `when`/`keepWhen` are formulas (comparisons give 1 or 0). */
export const HOST = {
  shape: { require: ['n >= 2', 'd >= 1'], note: 'n = 1 has no unbiased variance' },
  formChoice: { dualWhen: 'n < d', note: 'the cheaper form by multiply-adds: primal ~ n d^2, dual ~ n^2 d' },
  variantChoice:
    `'tiled' and 'workgroup' run anywhere; 'subgroup' and 'shuffle' only where their requires hold. The engine's variant 'auto' takes the first that can run ` +
    `in the registry's order (${PREFERENCE_ORDER.join(', ')}; 'windows' has no plan here); its 'measure' times those that can run once per device and shape class`,
  blocked: {
    from: 'primal',
    to: 'primalBlocked',
    when: `${PACKED_BYTES('d')} > maxBinding`,
    note: "the primal form's packed matrix (both views' d x d Coff) does not fit one binding: run the plan's primalBlocked form in its place, " +
      'from the form choice or after the dual->primal fallback alike (its forward keeps no matrix and gives the same result; its backward forms ' +
      'Coff one block of blockWidth columns at a time). A plan without primalBlocked cannot run the primal form here: a limit error naming these bytes',
  },
  limit: {
    input: 'maxBinding',
    reject: [
      { forms: ['primal', 'dual', 'primalBlocked'], when: `${VIEW_BYTES} > maxBinding`, bytes: VIEW_BYTES, what: 'an n x d float32 view (A, B, gradA, gradB)' },
      { forms: ['dual'], when: `${PACKED_BYTES('n')} > maxBinding`, bytes: PACKED_BYTES('n'), what: "the dual form's packed matrix (both views' n x n K)" },
      {
        forms: ['primalBlocked'], when: `${narrowestBlockBytes} > maxBinding`, bytes: narrowestBlockBytes,
        what: 'one column block of the d x d covariance at its narrowest (64 columns): blockWidth = 0',
      },
    ],
    note: 'the problem cannot run in that form: raise a limit error naming `bytes` and maxBinding. Check the rules of the form before its forward ' +
      '(after blocked, and again for the form the fallback goes to); the engine checks the view when the shape is new, the dual matrix before ' +
      "the dual forward, and the column block at backward. Any other storage buffer of the plan whose bytes exceed maxBinding (the shuffle dual plan's panel) is a limit error too",
  },
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
    note: 'in the dual form the off-diagonal sum is total - diagonal, which cancels when the diagonal dominates; otherwise (a NaN share included, since it compares false) run the whole primal forward, from column_stats, and use its result; backward then runs the primal passes. ' +
      "The primal form here is 'primal' or, where blocked.when holds, 'primalBlocked' (its limit rules checked first)",
  },
  overflow: { note: 'a term that is not finite while nonFinite == 0 means a float32 sum overflowed: inputs too large' },
  steps: [
    'check shape.require; bind INPUTS (k from the preset, maxBinding from the device or your cap)',
    'form = formChoice.dualWhen ? dual : primal; primal and blocked.when -> primalBlocked; any limit.reject rule of the form -> limit error; ' +
      'bind the plan variables of the form; allocate the buffers the plan names (a storage buffer over maxBinding -> limit error); write inputs and uniforms',
    'run forward passes in order; read result',
    'nonFinite.when -> error; fallback: form dual and not keepWhen -> primal (primalBlocked where blocked.when; its limit rules), run its forward, read result again',
    'a non-finite term -> overflow error; else the terms are result[0..3]',
    'backward: write upstream; run the backward passes of the form that produced the result (a forEachGroup loop: its passes once per group g, g bound in their dispatch formulas, with group g\'s instance of each group-scope buffer); read gradA, gradB',
  ],
} as const;
