// The passes of the loss as lists of steps, from a plan of what to bind: pure functions, no device work.
// Forward: column statistics, then a Gram per view, then the loss terms. Backward: one gradient pass per
// view. The variant's programs (src/variants) give each view's steps.
import type { Dispatch, Step } from '../runtime/gpu.js';
import type { GradientProgram, GramProgram, IndirectArgs, PassKind, VariantScratch } from '../variants/program.js';
import type { DeviceTraits } from '../runtime/device.js';
import { columnBlockGram, columnStats, lossTerms } from '../variants/shared.js';
import { BOTH } from './workspace.js';

/** What every pass of a call shares: the rows it runs on (n, or a variant trial's), the views, the device's traits. */
export interface PassScope {
  rows: number;
  d: number;
  traits: DeviceTraits;
  views: readonly [GPUBuffer, GPUBuffer];
  stats: GPUBuffer;
}

/** column_stats: per column of both views, shift + center (the mean), variance, sum of (A - B)^2, first non-finite. */
export function columnStatsStep(s: PassScope, pipeline: GPUComputePipeline, flags: GPUBuffer, dims: GPUBuffer): Step {
  return {
    label: 'column_stats', pipeline, workgroups: columnStats.workgroups(s.d),
    bindings: [s.views[0], s.views[1], s.stats, flags, dims],
  };
}

/** loss_terms: the loss, its three terms, the non-finite flag and the off-diagonal shares, from the statistics and partials. */
export function lossTermsStep(pipeline: GPUComputePipeline, stats: GPUBuffer, flags: GPUBuffer, partials: GPUBuffer, result: GPUBuffer, params: GPUBuffer,
  workgroups: Dispatch['workgroups'] = lossTerms.workgroups()): Step {
  return { label: 'loss_terms', pipeline, workgroups, bindings: [stats, flags, partials, result, params] };
}

/** A Gram program bound for both views: its pipelines, the form's buffers, its scratch. */
export interface GramPlan {
  program: GramProgram;
  pipelines: readonly GPUComputePipeline[];
  partials: GPUBuffer;
  matrix: GPUBuffer;
  dims: readonly GPUBuffer[];
  scratch?: VariantScratch;
}

/** One view's Gram steps. */
export function gramSteps(s: PassScope, g: GramPlan, view: 0 | 1): Step[] {
  return g.program.steps({
    view, rows: s.rows, d: s.d, traits: s.traits, views: s.views, pipelines: g.pipelines, scratch: g.scratch,
    buffers: { z: s.views[view], stats: s.stats, partials: g.partials, matrix: g.matrix, dims: g.dims[view] },
  });
}

/** What a forward binds besides the Gram plan. */
export interface ForwardPlanSteps {
  /** column_stats, unless the statistics are already on the device (the fallback's second forward). */
  stats?: { pipeline: GPUComputePipeline; flags: GPUBuffer; dims: GPUBuffer };
  gram: GramPlan;
  terms: { pipeline: GPUComputePipeline; flags: GPUBuffer; result: GPUBuffer; params: GPUBuffer };
}

/** Forward: column statistics, a Gram per view, the loss terms. */
export function forwardSteps(s: PassScope, f: ForwardPlanSteps): Step[] {
  return [
    ...(f.stats ? [columnStatsStep(s, f.stats.pipeline, f.stats.flags, f.stats.dims)] : []),
    ...BOTH.flatMap((view) => gramSteps(s, f.gram, view)),
    lossTermsStep(f.terms.pipeline, s.stats, f.terms.flags, f.gram.partials, f.terms.result, f.terms.params),
  ];
}

/** A gradient program bound for both views. */
export interface GradientPlan {
  program: GradientProgram;
  pipelines: readonly GPUComputePipeline[];
  matrix: GPUBuffer;
  grads: readonly [GPUBuffer, GPUBuffer];
  upstream: GPUBuffer;
  /** BackwardParams per view. */
  params: readonly GPUBuffer[];
  scratch?: VariantScratch;
  indirect?: (pass: PassKind) => IndirectArgs;
}

/** One view's gradient steps (`block`: a plain column block of Coff, its matrix and params in the plan). */
export function gradientSteps(s: PassScope, g: GradientPlan, view: 0 | 1, block?: { width: number }): Step[] {
  return g.program.steps({
    view, rows: s.rows, d: s.d, traits: s.traits, views: s.views, pipelines: g.pipelines, scratch: g.scratch, indirect: g.indirect, block,
    buffers: { z: s.views[view], other: s.views[1 - view], stats: s.stats, matrix: g.matrix, grad: g.grads[view], upstream: g.upstream, params: g.params[view] },
  });
}

/** Backward: one gradient pass per view. */
export function backwardSteps(s: PassScope, g: GradientPlan): Step[] {
  return BOTH.flatMap((view) => gradientSteps(s, g, view));
}

/** One block of Coff's columns, with its uniforms per view (GramDims and BackwardParams of the block). */
export interface ColumnBlock { start: number; width: number; dims: readonly GPUBuffer[]; params: readonly GPUBuffer[] }

/**
 * Backward past the binding limit (primal form): for each block of columns, per view, form Coff's block
 * (all d rows; primal_gram_columns.wgsl) into `matrix`, then those columns of the gradient.
 */
export function blockedBackwardSteps(s: PassScope, g: GradientPlan, blockGram: GPUComputePipeline, blocks: readonly ColumnBlock[]): Step[] {
  return blocks.flatMap((block) => BOTH.flatMap((view) => [
    {
      label: `Coff block ${'AB'[view]} ${block.start}`, pipeline: blockGram, workgroups: columnBlockGram.workgroups(s.d, block.width),
      bindings: [s.views[view], s.stats, g.matrix, block.dims[view]],
    },
    ...gradientSteps(s, { ...g, params: block.params }, view, { width: block.width }),
  ]));
}

/** The steps with their dispatches' workgroups read from the device (`indirect`), copies as they are: a form's passes on standby. */
export const onStandby = (steps: Step[], indirect: IndirectArgs): Step[] =>
  steps.map((step) => ('copy' in step ? step : { ...step, workgroups: indirect }));
