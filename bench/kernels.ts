// Kernel-level timings for `npm run bench -- --kernels`: each Gram and backward kernel of each form and
// supported variant alone, on device-resident random data, REPS dispatches in one submission (so the
// submission and the wait are shared), the median over ROUNDS such submissions. Only the timing is of
// interest here: the loss bench and the tests check what these kernels compute.
//
// Flops: a Gram kernel's useful work is the upper triangle of the side x side matrix, side (side + 1) / 2
// dot products of length n (primal, side d) or d (dual, side n); "GEMM-equivalent" counts the whole
// matrix, side^2 dot products, as a general matrix product would (the issue's "GFLOP/s-equivalent").
// A backward kernel does n d side multiply-adds (Zc Coff or K Zc), its mirrored pass included where the
// variant has one; the dual shuffle backward includes its panel copies (lavapipe/centered_panels, also timed alone).
// column_stats is reported in GB/s of the two n x d views it reads, lavapipe/centered_panels in GB/s of the one it copies.
import { acquireDevice } from '../src/runtime/device.js';
import { createBuffer, destroyBuffer, encodeStep, pipeline, storageBuffer, uniformBuffer, Usage, type Buffer, type Step } from '../src/runtime/gpu.js';
import { quietly } from '../src/runtime/polling.js';
import { DEFAULTS } from '../src/coefficients.js';
import { gradientSteps, gramSteps, type PassScope } from '../src/engine/passes.js';
import { FORMS, LANGUAGE_FEATURES, VARIANTS } from '../src/variants/registry.js';
import { backwardParams, columnStats, gramDims, side as sideOf, statsLayout, UNIFORM_BYTES } from '../src/variants/shared.js';
import type { Form, Variant } from '../src/types.js';

const REPS = 5;
const ROUNDS = 5;

export interface KernelTiming {
  n: number;
  d: number;
  form: Form | 'both';
  variant: Variant | 'only';
  kernel: string;
  ms: number;
  /** Useful GFLOP/s (Gram: upper triangle; backward: n d side), or for the copies (column_stats, lavapipe/centered_panels) GB/s read. */
  rate: number;
  unit: 'GFLOP/s' | 'GB/s';
  /** Gram kernels: GFLOP/s counting the whole side x side matrix. */
  gemmEquivalent?: number;
}

/** Median time of the steps (dispatches and copies); a WebGPU validation error (a bind group that no longer fits its kernel, say) throws, so no time of an invalid submission is posted. */
async function timeDispatches(device: GPUDevice, dispatches: Step[]): Promise<number> {
  const times: number[] = [];
  for (let round = 0; round <= ROUNDS; round++) {
    device.pushErrorScope('validation');
    const encoder = device.createCommandEncoder({ label: 'kernel bench' });
    for (let r = 0; r < REPS; r++) for (const step of dispatches) encodeStep(device, encoder, step);
    const start = performance.now();
    device.queue.submit([encoder.finish()]);
    await quietly(() => device.queue.onSubmittedWorkDone());
    if (round > 0) times.push((performance.now() - start) / REPS);   // round 0 warms up
    const error = await quietly(() => device.popErrorScope());
    if (error) throw new Error(`kernel bench: WebGPU validation failed: ${error.message}`);
  }
  times.sort((x, y) => x - y);
  return times[times.length >> 1];
}

/** Times every kernel of both forms and every variant the device supports, at n x d. */
export async function benchKernels(shapes: [number, number][], only: Variant | 'auto' | 'measure', progress: (line: string) => void): Promise<{ adapter: string; rows: KernelTiming[] }> {
  const handle = await acquireDevice(undefined, LANGUAGE_FEATURES);
  const { device } = handle;
  const rows: KernelTiming[] = [];
  try {
    for (const [n, d] of shapes) {
      const made: Buffer[] = [];
      const make = (b: Buffer) => (made.push(b), b);
      const random = (count: number, spread: number) => Float32Array.from({ length: count }, (_, i) => spread * Math.sin(i * 12.9898 + n * 78.233 + d));
      const views = [make(storageBuffer(device, 'A', n * d * 4)), make(storageBuffer(device, 'B', n * d * 4))];
      for (const v of views) device.queue.writeBuffer(v.gpu, 0, random(n * d, 1));
      const layout = statsLayout(d);
      const stats = make(storageBuffer(device, 'stats', layout.floats * 4));
      const flags = make(storageBuffer(device, 'flags', 4 * d * 4));
      const statsDims = make(uniformBuffer(device, 'stats dims', UNIFORM_BYTES.dims));
      device.queue.writeBuffer(statsDims.gpu, 0, new Uint32Array([n, d, 0, 0]));
      const statsPipe = await pipeline(device, columnStats.spec);
      const statsDispatch: Step = {
        label: 'column_stats', pipeline: statsPipe, workgroups: columnStats.workgroups(d),
        bindings: [views[0].gpu, views[1].gpu, stats.gpu, flags.gpu, statsDims.gpu],
      };
      const statsMs = await timeDispatches(device, [statsDispatch]);
      rows.push({ n, d, form: 'both', variant: 'only', kernel: 'column_stats', ms: statsMs, rate: (2 * n * d * 4) / statsMs / 1e6, unit: 'GB/s' });
      progress(`kernels ${n}x${d}: column_stats ${statsMs.toFixed(2)} ms`);

      const grad = make(storageBuffer(device, 'grad', n * d * 4));
      const upstream = make(storageBuffer(device, 'upstream', 4));
      device.queue.writeBuffer(upstream.gpu, 0, new Float32Array([1]));
      const params = make(uniformBuffer(device, 'backward params', UNIFORM_BYTES.backwardParams));
      device.queue.writeBuffer(params.gpu, 0, backwardParams(DEFAULTS, n, d, n, 0));
      const dims = make(uniformBuffer(device, 'gram dims', UNIFORM_BYTES.gramDims));
      const viewBuffers = [views[0].gpu, views[1].gpu] as const;
      const scope: PassScope = { rows: n, d, traits: handle.traits, views: viewBuffers, stats: stats.gpu };
      const limit = device.limits.maxStorageBufferBindingSize;
      for (const form of FORMS) {
        const side = sideOf(form, n, d);
        const contraction = form === 'primal' ? n : d;
        device.queue.writeBuffer(dims.gpu, 0, gramDims(form, n, d, 0, 0));
        for (const variant of VARIANTS) {
          const kernels = variant.forms[form];
          if (!kernels || (only !== 'auto' && only !== 'measure' && only !== variant.name)) continue;
          const refused = variant.refuse({ traits: handle.traits, n, d, form, bindingLimit: limit });
          const matrixBytes = kernels.matrix.floats(form, n, d) * 4;
          if (refused || matrixBytes > limit) {
            progress(`kernels ${n}x${d}: ${form}/${variant.name} skipped (${refused ? `it needs ${refused.reason}` : `its matrix, ${(matrixBytes / 2 ** 20).toFixed(0)} MiB, is past the binding limit`})`);
            continue;
          }
          const matrix = make(createBuffer(device, `${form} matrix`, matrixBytes, Usage.STORAGE | Usage.COPY_DST | (kernels.matrix.uniform ? Usage.UNIFORM : 0)));
          const partials = make(storageBuffer(device, 'partials', kernels.gram.partials(n, d, handle.traits) * 4));
          // The variant's scratch, as the engine makes it (its views are copyable, as the engine's copies of host arrays are).
          const scratch = kernels.scratch?.({
            device, n, d, rows: n, coefficients: DEFAULTS, traits: handle.traits, views: [0], partialsPerView: 0, checkBinding: () => undefined,
          });
          const context = { d, traits: handle.traits, views: viewBuffers };
          const gramPipes = await Promise.all(kernels.gram.specs({ ...context, writeMatrix: true }).map((spec) => pipeline(device, spec)));
          const gramDispatches = gramSteps(scope, { program: kernels.gram, pipelines: gramPipes, partials: partials.gpu, matrix: matrix.gpu, dims: [dims.gpu], scratch }, 0);
          const copies = (steps: Step[], main: GPUComputePipeline) => steps.filter((x) => 'copy' in x || x.pipeline !== main);
          const gramMs = await timeDispatches(device, gramDispatches);
          const useful = (side * (side + 1)) / 2 * contraction;
          const gramCopies = copies(gramDispatches, gramPipes[0]).length > 0;
          rows.push({
            n, d, form, variant: variant.name, kernel: `${kernels.gram.kernel}${gramCopies ? ' + texture copies' : ''}`, ms: gramMs,
            rate: (2 * useful) / gramMs / 1e6, gemmEquivalent: (2 * side * side * contraction) / gramMs / 1e6, unit: 'GFLOP/s',
          });
          // The gradient as the engine runs it: with its mirrored pass, or per column group with its
          // copies (panels, texture copies), which are also timed alone.
          const pipes = await Promise.all(kernels.gradient.specs({ ...context, accumulate: false }).map((spec) => pipeline(device, spec)));
          const backwardDispatches = gradientSteps(scope, {
            program: kernels.gradient, pipelines: pipes, matrix: matrix.gpu, grads: [grad.gpu, grad.gpu], upstream: upstream.gpu, params: [params.gpu], scratch,
          }, 0);
          const packs = backwardDispatches.filter((x) => 'copy' in x || (x.pipeline !== pipes[0] && !x.label.includes('mirrored')));
          if (packs.length) {
            const packMs = await timeDispatches(device, packs);
            const what = [...new Set(packs.map((x) => ('copy' in x ? 'copyBufferToTexture' : x.label.replace(/^.*: (\w+).*$/, '$1'))))].join(' + ');
            rows.push({ n, d, form, variant: variant.name, kernel: `${kernels.gradient.kernel}: ${what}`, ms: packMs, rate: (n * d * 4) / packMs / 1e6, unit: 'GB/s' });
          }
          const backwardMs = await timeDispatches(device, backwardDispatches);
          const mirrored = backwardDispatches.some((x) => x.label.includes('mirrored'));
          rows.push({
            n, d, form, variant: variant.name, kernel: `${kernels.gradient.kernel}${mirrored ? ' + mirrored' : ''}${packs.length ? ' + copies' : ''}`, ms: backwardMs,
            rate: (2 * n * d * side) / backwardMs / 1e6, unit: 'GFLOP/s',
          });
          progress(`kernels ${n}x${d}: ${form}/${variant.name} gram ${gramMs.toFixed(2)} ms, backward ${backwardMs.toFixed(2)} ms`);
          scratch?.destroy();
        }
      }
      made.forEach(destroyBuffer);
    }
  } finally {
    device.destroy();
  }
  return { adapter: handle.adapterName, rows };
}
