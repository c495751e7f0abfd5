// The interface every kernel variant implements, per form: a Gram program (forward: one view's Gram
// matrix and its partial sums of squares), a gradient program (backward: one view's whole gradient), the
// layout of the matrix the first writes and the second reads, and the scratch both need. The engine
// records their steps without knowing which variant it runs (the registry, registry.ts, lists them).
import type { Coefficients } from '../coefficients.js';
import type { VariantPlan } from './kernel-plans.js';
import type { Buffer, KernelSpec, Step, Texture } from '../runtime/gpu.js';
import type { DeviceTraits } from '../runtime/device.js';
import type { Form, Variant } from '../types.js';

/** Where the device finds a dispatch's workgroup counts (dispatchWorkgroupsIndirect). */
export interface IndirectArgs { indirect: GPUBuffer; offset: number }

/** The two dispatch shapes a gradient program can have: its main pass, and a second (mirrored) pass. */
export type PassKind = 'main' | 'mirrored';

/**
 * How a Gram matrix is kept between forward and backward. Programs that share a layout can be paired
 * (a Gram of one variant, a gradient of another); a variant with a layout of its own pairs only with itself.
 */
export interface MatrixLayout {
  name: string;
  /** Floats of the matrix buffer holding both views' matrices for an n x d problem of the form. */
  floats(form: Form, n: number, d: number): number;
  /** Also bound as uniform windows (the buffer then needs UNIFORM usage). */
  uniform: boolean;
  /** The Gram sums into it group by group, so it is needed whether or not a backward follows. */
  gramAccumulates: boolean;
}

/** A variant's own per-shape buffers (uniform records, panels, textures), made on first need and freed with the workspace. */
export interface VariantScratch {
  /** Buffers and textures to fill with NaN in poisoned runs (tests). */
  poisonable(): { buffers: Buffer[]; textures: Texture[] };
  destroy(): void;
}

/** What a variant's scratch is made for: the problem (n x d, its coefficients) and the rows its passes run on (n, or a trial's). */
export interface ScratchSetup {
  device: GPUDevice;
  n: number;
  d: number;
  rows: number;
  coefficients: Coefficients;
  traits: DeviceTraits;
  /** Views the passes run (a trial runs view A only); view v's partial sums start at v * partialsPerView. */
  views: readonly (0 | 1)[];
  partialsPerView: number;
  /** Checks a binding size against the limit in force (a LimitError naming `what` past it). */
  checkBinding(what: string, bytes: number): void;
}

/** What both programs' pipelines depend on besides the kernel itself. */
export interface SpecContext {
  d: number;
  traits: DeviceTraits;
  /** The two views' buffers (a variant may copy them as they are where their usage allows). */
  views: readonly GPUBuffer[];
}

/** One view's Gram pass, as the engine hands it to a program. */
export interface GramPass<S extends VariantScratch = VariantScratch> {
  view: 0 | 1;
  /** Rows the pass runs on: n, or a variant trial's. */
  rows: number;
  d: number;
  traits: DeviceTraits;
  views: readonly GPUBuffer[];
  /** The pipelines of specs(), in their order. */
  pipelines: readonly GPUComputePipeline[];
  buffers: { z: GPUBuffer; stats: GPUBuffer; partials: GPUBuffer; matrix: GPUBuffer; dims: GPUBuffer };
  scratch?: S;
}

/** One view's gradient pass. */
export interface GradientPass<S extends VariantScratch = VariantScratch> {
  view: 0 | 1;
  rows: number;
  d: number;
  traits: DeviceTraits;
  views: readonly GPUBuffer[];
  pipelines: readonly GPUComputePipeline[];
  buffers: { z: GPUBuffer; other: GPUBuffer; stats: GPUBuffer; matrix: GPUBuffer; grad: GPUBuffer; upstream: GPUBuffer; params: GPUBuffer };
  scratch?: S;
  /** On standby (encode()'s primal form behind the dual one): where each pass finds its workgroups. */
  indirect?: (pass: PassKind) => IndirectArgs;
  /** A plain column block of Coff (a d x d matrix past the binding limit), `params` describing it. */
  block?: { width: number };
}

export interface GramProgram<S extends VariantScratch = VariantScratch> {
  /** The kernel's name (labels, the bench). */
  kernel: string;
  specs(c: SpecContext & { writeMatrix: boolean }): KernelSpec[];
  /** Partial sums one view's pass writes (loss_terms reads this many per view). */
  partials(n: number, d: number, traits: DeviceTraits): number;
  /** The workgroups of its one dispatch per view, for programs the device may run on standby (encode()). */
  workgroups?(n: number, d: number, traits: DeviceTraits): readonly [number, number];
  steps(pass: GramPass<S>): Step[];
}

export interface GradientProgram<S extends VariantScratch = VariantScratch> {
  kernel: string;
  specs(c: SpecContext & { accumulate: boolean }): KernelSpec[];
  /** Its dispatches' workgroups by kind (all dispatches of a kind alike), for encode()'s device-side decision. */
  workgroups(n: number, d: number, traits: DeviceTraits): { main: readonly [number, number]; mirrored?: readonly [number, number] };
  /** Whether it can read one plain column block of Coff at a time (primal form past the binding limit). */
  columnBlocks: boolean;
  steps(pass: GradientPass<S>): Step[];
}

/** A variant's kernels for one form. */
export interface FormKernels<S extends VariantScratch = VariantScratch> {
  gram: GramProgram<S>;
  gradient: GradientProgram<S>;
  matrix: MatrixLayout;
  /** The scratch its passes need, where they need any. */
  scratch?(setup: ScratchSetup): S;
}

/** Why a variant cannot run: an OptionError (the device or shape lacks what it needs) or a LimitError (over a binding limit). */
export interface Refusal { kind: 'option' | 'limit'; reason: string }

/** The problem a requirement is checked against. */
export interface Situation {
  traits: DeviceTraits;
  n: number;
  d: number;
  form: Form;
  /** The most bytes one binding may take here. */
  bindingLimit: number;
}

/** One variant: what it needs and the kernels it runs per form. */
export interface VariantDescription {
  name: Variant;
  /**
   * 'portable': built by the rules GPUs reward, for any adapter that offers what it requires.
   * 'lavapipe': exists for how one CPU driver (Mesa's lavapipe) compiles storage loads; kept apart.
   */
  family: 'portable' | 'lavapipe';
  summary: string;
  /** What it requires, in words (errors, test output, docs). */
  requirements: string;
  /** WGSL language features its kernels require (the device is probed for them where nothing else tells). */
  language?: readonly string[];
  /** Why it cannot run in this situation, or undefined where it can. */
  refuse(s: Situation): Refusal | undefined;
  /** Its kernels per form (each variant's scratch is its own type); a form it has none for runs `standIn`'s. */
  forms: Partial<Record<Form, FormKernels<any>>>;
  standIn?: Variant;
  /** Rank where no trial decides (lower first). */
  preference: number;
  /** How a native host runs it, as formulas (kernels/manifest.json; src/manifest/plan.ts), where it can. */
  manifest?: VariantPlan;
}
