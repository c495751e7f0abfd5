// Variant trials: a candidate's Gram or gradient steps run on the first rows of view A, timed by choice.ts.
// Everything a trial writes is its own (uniforms for its rows, a scratch gradient, the variants'
// scratch, matrices in layouts the workspace does not hold yet), made on a variant's first run and kept
// until the choice is made, so the timed runs allocate nothing; the caller's buffers are never written.
import { createBuffer, destroyBuffer, encodeStep, pipeline, storageBuffer, uniformBuffer, Usage, type Buffer, type Step } from '../runtime/gpu.js';
import { quietly } from '../runtime/polling.js';
import type { MatrixLayout, VariantScratch } from '../variants/program.js';
import { kernelsOf } from '../variants/registry.js';
import { backwardParams, gramDims, UNIFORM_BYTES } from '../variants/shared.js';
import type { Form, Variant } from '../types.js';
import { gradientSteps, gramSteps, type PassScope } from './passes.js';
import { checkBinding, type Engine } from './state.js';
import { formBuffers, type Workspace } from './workspace.js';

/** Runs one variant's kernels on the first `rows` rows and resolves when the device is done; `release` frees what the runs made. */
export interface VariantTrial { run(variant: Variant, rows: number): Promise<void>; release(): void }

/** A trial's own buffers, made on first need for its rows (every run of one choice has the same rows). */
interface TrialBuffers {
  matrix(layout: MatrixLayout, rows: number): GPUBuffer;
  scratch(variant: Variant, rows: number): VariantScratch | undefined;
  dims(rows: number): GPUBuffer;
  gradient(rows: number): { grad: GPUBuffer; params: GPUBuffer; upstream: GPUBuffer };
  release(): void;
}

function trialBuffers(e: Engine, device: GPUDevice, ws: Workspace, form: Form): TrialBuffers {
  const made: Buffer[] = [];
  const make = (b: Buffer) => (made.push(b), b);
  const matrices = new Map<string, GPUBuffer>();
  const scratches = new Map<Variant, VariantScratch | undefined>();
  let dims: Buffer | undefined;
  let gradient: { grad: GPUBuffer; params: GPUBuffer; upstream: GPUBuffer } | undefined;
  return {
    // The workspace's matrix where it holds one in this layout (the forward's, before a backward trial),
    // else one for the trial's rows.
    matrix(layout, rows) {
      let matrix = ws.forms[form]?.matrices.get(layout.name)?.gpu ?? matrices.get(layout.name);
      if (!matrix) {
        const bytes = layout.floats(form, rows, ws.d) * 4;
        checkBinding(e, `a variant trial's ${layout.name} matrix`, bytes);
        matrix = make(createBuffer(device, `trial ${layout.name} matrix`, bytes, Usage.STORAGE | (layout.uniform ? Usage.UNIFORM : 0))).gpu;
        matrices.set(layout.name, matrix);
      }
      return matrix;
    },
    scratch(variant, rows) {
      if (!scratches.has(variant)) {
        const kernels = kernelsOf(variant, form);
        scratches.set(variant, kernels.scratch?.({
          device, n: ws.n, d: ws.d, rows, coefficients: e.coefficients, traits: e.handle.traits, views: [0], partialsPerView: 0,
          checkBinding: (what, bytes) => checkBinding(e, what, bytes),
        }));
      }
      return scratches.get(variant);
    },
    dims(rows) {
      if (!dims) {
        dims = make(uniformBuffer(device, 'trial gram dims', UNIFORM_BYTES.gramDims));
        device.queue.writeBuffer(dims.gpu, 0, gramDims(form, rows, ws.d, 0, 0));
      }
      return dims.gpu;
    },
    gradient(rows) {
      if (!gradient) {
        const params = make(uniformBuffer(device, 'trial backward params', UNIFORM_BYTES.backwardParams));
        device.queue.writeBuffer(params.gpu, 0, backwardParams(e.coefficients, ws.n, ws.d, rows, 0));
        gradient = { grad: make(storageBuffer(device, 'trial gradient', rows * ws.d * 4)).gpu, params: params.gpu, upstream: make(storageBuffer(device, 'trial upstream', 4)).gpu };
      }
      return gradient;
    },
    release() {
      made.forEach(destroyBuffer);
      for (const s of scratches.values()) s?.destroy();
    },
  };
}

/** The steps, submitted; resolves when the device has run them. */
async function runSteps(device: GPUDevice, steps: Step[]): Promise<void> {
  const encoder = device.createCommandEncoder({ label: 'variant trial' });
  for (const step of steps) encodeStep(device, encoder, step);
  device.queue.submit([encoder.finish()]);
  await quietly(() => device.queue.onSubmittedWorkDone());
}

const scopeOf = (e: Engine, ws: Workspace, views: readonly [GPUBuffer, GPUBuffer], rows: number): PassScope =>
  ({ rows, d: ws.d, traits: e.handle.traits, views, stats: ws.stats.gpu });

function gramRunner(e: Engine, device: GPUDevice, ws: Workspace, form: Form, views: readonly [GPUBuffer, GPUBuffer], writeMatrix: boolean, buffers: TrialBuffers) {
  return async (variant: Variant, rows: number) => {
    const kernels = kernelsOf(variant, form);
    const pipelines = await Promise.all(kernels.gram.specs({ d: ws.d, traits: e.handle.traits, views, writeMatrix }).map((spec) => pipeline(device, spec)));
    const matrix = writeMatrix || kernels.matrix.gramAccumulates ? buffers.matrix(kernels.matrix, rows) : ws.placeholder.gpu;
    await runSteps(device, gramSteps(scopeOf(e, ws, views, rows), {
      program: kernels.gram, pipelines, partials: formBuffers(e, device, ws, form).partials.gpu, matrix, dims: [buffers.dims(rows)], scratch: buffers.scratch(variant, rows),
    }, 0));
  };
}

function gradientRunner(e: Engine, device: GPUDevice, ws: Workspace, form: Form, views: readonly [GPUBuffer, GPUBuffer], buffers: TrialBuffers) {
  return async (variant: Variant, rows: number) => {
    const kernels = kernelsOf(variant, form);
    const pipelines = await Promise.all(kernels.gradient.specs({ d: ws.d, traits: e.handle.traits, views, accumulate: false }).map((spec) => pipeline(device, spec)));
    const { grad, params, upstream } = buffers.gradient(rows);
    // The matrix's values do not change the time: the forward's, the pair's Gram trial's, or zeros.
    await runSteps(device, gradientSteps(scopeOf(e, ws, views, rows), {
      program: kernels.gradient, pipelines, matrix: buffers.matrix(kernels.matrix, rows), grads: [grad, grad], upstream, params: [params],
      scratch: buffers.scratch(variant, rows),
    }, 0));
  };
}

/** A trial of a form's Gram variants. */
export function gramTrial(e: Engine, device: GPUDevice, ws: Workspace, form: Form, views: readonly [GPUBuffer, GPUBuffer], writeMatrix: boolean): VariantTrial {
  const buffers = trialBuffers(e, device, ws, form);
  return { run: gramRunner(e, device, ws, form, views, writeMatrix, buffers), release: () => buffers.release() };
}

/** A trial of a form's gradient variants (on the forward's matrix where the workspace holds it in the candidate's layout). */
export function gradientTrial(e: Engine, device: GPUDevice, ws: Workspace, form: Form, views: readonly [GPUBuffer, GPUBuffer]): VariantTrial {
  const buffers = trialBuffers(e, device, ws, form);
  return { run: gradientRunner(e, device, ws, form, views, buffers), release: () => buffers.release() };
}

/**
 * A trial of each variant's Gram followed by its gradient, for where the Gram's choice fixes the
 * gradient's (layouts of their own), so that a faster gradient counts too; both share one scratch.
 */
export function pairTrial(e: Engine, device: GPUDevice, ws: Workspace, form: Form, views: readonly [GPUBuffer, GPUBuffer]): VariantTrial {
  const buffers = trialBuffers(e, device, ws, form);
  const gram = gramRunner(e, device, ws, form, views, true, buffers);
  const gradient = gradientRunner(e, device, ws, form, views, buffers);
  return {
    async run(variant, rows) {
      await gram(variant, rows);
      await gradient(variant, rows);
    },
    release: () => buffers.release(),
  };
}
