// Kernel-level timings for `npm run bench -- --kernels`: each Gram and backward kernel of each form and
// supported variant alone, on device-resident random data, REPS dispatches in one submission (so the
// submission and the wait are shared), the median over ROUNDS such submissions. Only the timing is of
// interest here: the loss bench and the tests check what these kernels compute.
//
// Flops: a Gram kernel's useful work is the upper triangle of the side x side matrix, side (side + 1) / 2
// dot products of length n (primal, side d) or d (dual, side n); "GEMM-equivalent" counts the whole
// matrix, side^2 dot products, as a general matrix product would (the "GFLOP/s-equivalent").
// A backward kernel does n d side multiply-adds (Zc Coff or K Zc), its mirrored pass included where the
// variant has one; the dual subgroup backward includes its panel copies (centered_panels, also timed alone).
// column_stats is reported in GB/s of the two n x d views it reads, centered_panels in GB/s of the one it copies.
import { acquireDevice } from '../src/runtime/device.js';
import { createBuffer, destroyBuffer, destroyTexture, encodeStep, pipeline, storageBuffer, storageTexture, uniformBuffer, Usage, type Buffer, type Step } from '../src/runtime/gpu.js';
import { quietly } from '../src/runtime/polling.js';
import { DEFAULTS } from '../src/ops/coefficients.js';
import {
  backwardParamsPerGroup, backwardPassList, backwardSpecs, blockedMatrixFloats, columnStats, forms, gramDims, gramSpecs, packedMatrixFloats, statsLayout, UNIFORM_BYTES, VARIANTS, variantSupported,
  windowBackwardPassList, windowPanelFloats, windowRawPanel, windowGramPassList, windowRecords, windowTextureSize,
} from '../src/ops/kernels.js';
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
  /** Useful GFLOP/s (Gram: upper triangle; backward: n d side), or for the copies (column_stats, centered_panels) GB/s read. */
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
export async function benchKernels(shapes: [number, number][], only: Variant | 'auto', progress: (line: string) => void): Promise<{ adapter: string; rows: KernelTiming[] }> {
  const handle = await acquireDevice();
  const { device } = handle;
  const rows: KernelTiming[] = [];
  try {
    for (const [n, d] of shapes) {
      const made: Buffer[] = [];
      const textures: ReturnType<typeof storageTexture>[] = [];
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
      const placeholder = make(storageBuffer(device, 'no panel', 16));
      for (const form of ['primal', 'dual'] as Form[]) {
        const side = forms[form].side(n, d);
        const contraction = form === 'primal' ? n : d;
        const windows = variantSupported('windows', handle.features, n, d, form) && (only === 'auto' || only === 'windows');
        const matrixBytes = Math.max(packedMatrixFloats(side), windows ? blockedMatrixFloats(n) : 0) * 4;
        if (matrixBytes > device.limits.maxStorageBufferBindingSize) {
          progress(`kernels ${n}x${d}: ${form} skipped (its matrix, ${(matrixBytes / 2 ** 20).toFixed(0)} MiB, is past the binding limit)`);
          continue;
        }
        const matrix = make(createBuffer(device, `${form} matrix`, matrixBytes, Usage.STORAGE | Usage.COPY_DST | (windows ? Usage.UNIFORM : 0)));
        const dims = make(uniformBuffer(device, 'gram dims', UNIFORM_BYTES.gramDims));
        device.queue.writeBuffer(dims.gpu, 0, gramDims(form, n, d, 0, 0));
        for (const variant of VARIANTS) {
          if (!variantSupported(variant, handle.features, n, d, form) || (only !== 'auto' && only !== variant)) continue;
          const gram = forms[form].gram[variant];
          const partials = make(storageBuffer(device, 'partials', gram.partials(n, d) * 4));
          // 'windows' copies the views' strips as they are where it can (as the engine does: its views are copyable).
          const raw = variant === 'windows' && windowRawPanel([views[0].gpu, views[1].gpu], d);
          const gramPipes = await Promise.all(gramSpecs(gram, true, raw).map((spec) => pipeline(device, spec)));
          // 'windows': its records and scratch, as the engine makes them (vicreg.ts windowScratch).
          const window = variant === 'windows' ? (() => {
            const layout = windowRecords(DEFAULTS, n, d, n, 0, 0);
            const records = make(uniformBuffer(device, 'window records', layout.bytes.byteLength));
            device.queue.writeBuffer(records.gpu, 0, layout.bytes);
            const texture = storageTexture(device, 'window texture', windowTextureSize(n, d));
            textures.push(texture);
            return { layout, records: records.gpu, panel: make(createBuffer(device, 'window panels', windowPanelFloats(n, d) * 4, Usage.STORAGE | Usage.COPY_SRC)).gpu, texture };
          })() : undefined;
          const gramDispatches: Step[] = window
            ? windowGramPassList('gram', { gram: gramPipes[0], pack: gramPipes[1] }, { z: views[0].gpu, stats: stats.gpu, partials: partials.gpu, matrix: matrix.gpu, ...window }, window.layout, n, raw ? { d } : undefined)
            : [{
              label: 'gram', pipeline: gramPipes[0], workgroups: gram.workgroups(n, d),
              bindings: gram.bindings({ z: views[0].gpu, stats: stats.gpu, partials: partials.gpu, matrix: matrix.gpu, dims: dims.gpu }),
            }];
          const gramMs = await timeDispatches(device, gramDispatches);
          const useful = (side * (side + 1)) / 2 * contraction;
          rows.push({
            n, d, form, variant, kernel: `${gram.spec(true).name}${window ? (raw ? ' + texture copies' : ' + panels') : ''}`, ms: gramMs,
            rate: (2 * useful) / gramMs / 1e6, gemmEquivalent: (2 * side * side * contraction) / gramMs / 1e6, unit: 'GFLOP/s',
          });
          // The backward as the engine runs it (kernels.ts backwardPassList): with its mirrored pass, or per
          // column group with its panel copies, which are also timed alone.
          const backward = forms[form].backward[variant];
          const groups = backward.grouped?.columnGroups(n, d);
          const panel = groups?.panels ? make(storageBuffer(device, 'panel', n * groups.width * 4)).gpu : placeholder.gpu;
          const params = backwardParamsPerGroup(backward, DEFAULTS, n, d, n, 0).map((bytes) => {
            const buffer = make(uniformBuffer(device, 'backward params', UNIFORM_BYTES.backwardParams));
            device.queue.writeBuffer(buffer.gpu, 0, bytes);
            return buffer.gpu;
          });
          const pipes = await Promise.all(backwardSpecs(backward, false, raw).map((spec) => pipeline(device, spec)));
          const buffers = { z: views[0].gpu, other: views[1].gpu, stats: stats.gpu, matrix: matrix.gpu, grad: grad.gpu, upstream: upstream.gpu, panel };
          const backwardDispatches = window
            ? windowBackwardPassList('backward', { main: pipes[0], pack: pipes[1] }, { ...buffers, ...window }, window.layout, n, 0, undefined, raw ? { d } : undefined)
            : backwardPassList(backward, 'backward', pipes, buffers, params, n, d);
          const packPipe = backward.grouped ? pipes[pipes.length - 1] : window ? pipes[1] : undefined;
          // The panel copies, and with 'windows' their copies into the texture.
          const packs = backwardDispatches.filter((x) => 'copy' in x || x.pipeline === packPipe);
          if (packs.length) {
            const packMs = await timeDispatches(device, packs);
            const what = backward.grouped?.pack.spec.name ?? (raw ? 'copyBufferToTexture of the view' : `${backward.windows!.pack.name} + copyBufferToTexture`);
            rows.push({ n, d, form, variant, kernel: what, ms: packMs, rate: (n * d * 4) / packMs / 1e6, unit: 'GB/s' });
          }
          const backwardMs = await timeDispatches(device, backwardDispatches);
          rows.push({
            n, d, form, variant, kernel: `${backward.spec(false).name}${backward.mirrored ? ' + mirrored' : ''}${packs.length ? (raw ? ' + texture copies' : ' + panels') : ''}`, ms: backwardMs,
            rate: (2 * n * d * side) / backwardMs / 1e6, unit: 'GFLOP/s',
          });
          progress(`kernels ${n}x${d}: ${form}/${variant} gram ${gramMs.toFixed(2)} ms, backward ${backwardMs.toFixed(2)} ms`);
        }
      }
      made.forEach(destroyBuffer);
      textures.splice(0).forEach(destroyTexture);
    }
  } finally {
    device.destroy();
  }
  return { adapter: handle.adapterName, rows };
}
