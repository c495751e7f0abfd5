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
import { common, type Formula, type KernelId, type KernelPlan, type Role, type VariantPlan } from '../variants/kernel-plans.js';

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
  lanes: "the subgroup kernels' lanes: the adapter's subgroupMinSize (read by the subgroup plan only; any value elsewhere)",
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
    note: 'one column group of Zc in 64-column panels (lavapipe/centered_panels), rewritten for every group; 4 floats where panels = 0 (bound, not read)',
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

/**
 * The variants native hosts get plans for: those of the registry with a manifest. 'windows' is the
 * engine's only: per view and column group it fills a texture with copies and runs a dispatch (Gram) or
 * one per 128-row block row and 8 blocks of K (backward, each binding its own uniform windows), which
 * these formulas do not describe.
 */
export type ManifestVariant = 'tiled' | 'subgroup' | 'workgroup' | 'shuffle';

export const VARIANTS: Readonly<Record<ManifestVariant, VariantPlan>> = Object.fromEntries(
  DESCRIPTIONS.filter((v) => v.manifest).map((v) => [v.name, v.manifest!])) as Record<ManifestVariant, VariantPlan>;

/** The names a plan (variant, form) adds to INPUTS, in evaluation order. */
export function planVariables(variant: ManifestVariant, form: Form): Record<string, Formula> {
  return { ...FORMS[form], tiles: 'ceil(side/32)', ...REGISTRY[variant].manifest!.variables, partialsPerView: VARIANTS[variant].partialsPerView[form] };
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
