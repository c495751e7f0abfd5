import type { Form } from '../types.js';

// The vocabulary of the manifest's plans (src/manifest/plan.ts, kernels/manifest.json): formulas, what a
// kernel binds and dispatches, what a variant's plan names. The variants describe their own kernels in
// it (src/variants); plan.ts collects them.

export type Formula = string;

/** A kernel's id: its file under kernels/ without .wgsl. */
export type KernelId = string;

/** What a binding is for; a pass maps each role to a named buffer. */
export type Role = 'a' | 'b' | 'z' | 'other' | 'stats' | 'flags' | 'partials' | 'matrix' | 'result' | 'grad' | 'params' | 'upstream' | 'dims' | 'args' | 'panel' | 'half' | 'overflow';

export interface KernelPlan {
  file: string;
  purpose: string;
  /** Pipeline constants the engine sets, as values or formulas (the other overrides keep their WGSL defaults). */
  overrides: Readonly<Record<string, number | boolean | Formula>>;
  /** Workgroup counts x, y, z. */
  dispatch: readonly [Formula, Formula, Formula];
  /** Per WGSL binding name: its role, and how many elements of its type the kernel needs. */
  bindings: Readonly<Record<string, { role: Role; count: Formula }>>;
}

/** Binding plans the kernels share: a view, and the buffers most kernels bind. */
export const view = (count: Formula) => ({ role: 'z' as const, count });
export const common = {
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
/** A 'tiled' or 'workgroup' gradient kernel's bindings, its matrix binding named as in its WGSL. */
export const blockBackwardBindings = (matrix: 'covOffDiag' | 'gram') => ({
  z: view('n*d'), other: common.other, stats: common.stats, [matrix]: common[matrix], grad: common.grad, params: common.params, upstream: common.upstream,
});

export interface VariantPlan {
  note: string;
  /**
   * Device features the kernels enable; what the plan needs of the adapter's subgroups, in words (the
   * host binds `lanes` from them); a condition on the shape (and lanes).
   */
  requires: { features: readonly string[]; subgroups?: string; when: Formula };
  /** The variant's own kernels (KERNELS holds them with the shared ones). */
  kernels: Readonly<Record<KernelId, KernelPlan>>;
  /** Names the plan binds after the form's and the tiled kernels' `tiles`, in evaluation order. */
  variables?: Readonly<Record<string, Formula>>;
  gram: Readonly<Record<Form, KernelId>>;
  backward: Readonly<Record<Form, KernelId>>;
  /** Per form, a second backward pass per view, run right after the first (it adds to the gradient). */
  mirroredBackward?: Readonly<Partial<Record<Form, KernelId>>>;
  /**
   * Where the primal gradient reads plain column blocks of Coff (its program's `columnBlocks`): its
   * dispatch over `columns` columns of the gradient (d for the whole; a formula that binds tighter than /).
   */
  primalGradientDispatch?: (columns: Formula) => KernelPlan['dispatch'];
  /** Per form, a backward kernel that runs per column group, each group after this panel copy. */
  groupedBackward?: Readonly<Partial<Record<Form, KernelId>>>;
  /** Partial sums one Gram dispatch writes per view. */
  partialsPerView: Readonly<Record<Form, Formula>>;
}

