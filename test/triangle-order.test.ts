// The shuffle Gram kernels (lavapipe) run one workgroup per tile on or above the diagonal, numbered t = wid.y * gx
// + wid.x over a dispatch of (gx, gy) workgroups. The engine uses gx = min(T, 65535), so gy > 1 only
// past 65535 tiles (n >= ~8200 dual), which lavapipe's binding limit never reaches; here the kernels
// run directly with small gx, so the workgroups past T and the 2-D numbering run too. Every result
// buffer is poisoned first, and each dispatch must give bitwise the 1-D dispatch's matrix and partials,
// which must match the float64 Gram matrix where the packed layout puts each view's entries (view A on
// and above the diagonal; view B below it, its diagonal after the square). Where this adapter cannot run
// the shuffle variant, each test is skipped, saying why.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireDevice, type DeviceHandle } from '../src/runtime/device.js';
import { destroyBuffer, encodeDispatch, pipeline, readback, readbackBuffer, storageBuffer, uniformBuffer, type Buffer, type Dispatch } from '../src/runtime/gpu.js';
import { REGISTRY } from '../src/variants/registry.js';
import { gramDims, packedMatrixFloats, side as sideOf, statsLayout, UNIFORM_BYTES } from '../src/variants/shared.js';
import type { Form } from '../src/types.js';
import { cannotRun, titled } from './reference/adapter.js';
import { randomViews } from './reference/float64.js';

let handle: DeviceHandle;
beforeAll(async () => {
  handle = await acquireDevice();
});
afterAll(() => handle?.device.destroy());

/** One view's Gram dispatch with zero shift and center (so Zc = Z), laid out as (gx, ceil(T / gx)). */
async function gram(form: Form, z: Float32Array, n: number, d: number, view: 0 | 1, gx?: number) {
  const { device } = handle;
  const program = REGISTRY.shuffle.forms[form]!.gram;
  const { traits } = handle;
  const side = sideOf(form, n, d);
  const partialCount = program.partials(n, d, traits);
  const [x1, y1] = program.workgroups!(n, d, traits);
  const tiles = x1 * y1;   // one row of workgroups here (well under 65535 tiles)
  const x = gx ?? x1;
  const buffers: Buffer[] = [];
  const make = (b: Buffer) => (buffers.push(b), b);
  const zBuffer = make(storageBuffer(device, 'z', z.byteLength));
  device.queue.writeBuffer(zBuffer.gpu, 0, z as Float32Array<ArrayBuffer>);
  const stats = make(storageBuffer(device, 'stats (zeros)', statsLayout(d).floats * 4));
  const partials = make(storageBuffer(device, 'partials', partialCount * 4));
  const floats = packedMatrixFloats(side);
  const matrix = make(storageBuffer(device, 'matrix', floats * 4));
  device.queue.writeBuffer(partials.gpu, 0, new Float32Array(partialCount).fill(NaN));
  device.queue.writeBuffer(matrix.gpu, 0, new Float32Array(floats).fill(NaN));
  const dims = make(uniformBuffer(device, 'dims', UNIFORM_BYTES.gramDims));
  device.queue.writeBuffer(dims.gpu, 0, gramDims(form, n, d, view, 0));
  const encoder = device.createCommandEncoder();
  const pipelines = await Promise.all(program.specs({ d, traits, views: [zBuffer.gpu, zBuffer.gpu], writeMatrix: true }).map((spec) => pipeline(device, spec)));
  const [step] = program.steps({
    view, rows: n, d, traits, views: [zBuffer.gpu, zBuffer.gpu], pipelines,
    buffers: { z: zBuffer.gpu, stats: stats.gpu, partials: partials.gpu, matrix: matrix.gpu, dims: dims.gpu },
  }) as Dispatch[];
  encodeDispatch(device, encoder, { ...step, workgroups: [x, Math.ceil(tiles / x)] });
  const stagings = [make(readbackBuffer(device, 'partials out', partialCount * 4)), make(readbackBuffer(device, 'matrix out', floats * 4))];
  const [p, m] = await readback(device, encoder, [
    { source: partials.gpu, staging: stagings[0], bytes: partialCount * 4 },
    { source: matrix.gpu, staging: stagings[1], bytes: floats * 4 },
  ]);
  buffers.forEach(destroyBuffer);
  return { partials: new Float32Array(p), matrix: new Float32Array(m) };
}

/** Z^T Z / (n-1) with a zero diagonal (primal), or Z Z^T (dual), in float64. */
function reference(form: Form, z: Float32Array, n: number, d: number): Float64Array {
  const side = form === 'primal' ? d : n;
  const out = new Float64Array(side * side);
  for (let i = 0; i < side; i++) {
    for (let k = 0; k < side; k++) {
      let s = 0;
      if (form === 'primal') for (let r = 0; r < n; r++) s += z[r * d + i] * z[r * d + k];
      else for (let j = 0; j < d; j++) s += z[i * d + j] * z[k * d + j];
      out[i * side + k] = form === 'primal' ? (i === k ? 0 : s / (n - 1)) : s;
    }
  }
  return out;
}

describe('shuffle Gram kernels: triangle order over 2-D dispatches, packed writes', () => {
  // Shapes whose last column block is cut short by the edge, and one where it is not.
  const cases: [Form, number, number][] = [['primal', 9, 132], ['primal', 5, 100], ['dual', 33, 12], ['dual', 47, 8]];
  for (const [form, n, d] of cases) {
    for (const view of [0, 1] as const) {
      const why = cannotRun('shuffle', form, n, d);
      it.skipIf(why)(titled(`${form} ${n}x${d}, view ${'AB'[view]}`, why), async () => {
        const { a: z } = randomViews(n, d, 4100 + n, { scale: 1 });
        const oneRow = await gram(form, z, n, d, view);
        const side = form === 'primal' ? d : n;
        const want = reference(form, z, n, d);
        let worst = 0;
        let norm = 0;
        let written = 0;
        for (let i = 0; i < side; i++) {
          for (let k = i; k < side; k++) {
            const at = view === 0 ? i * side + k : i === k ? side * side + i : k * side + i;
            worst = Math.max(worst, Math.abs(oneRow.matrix[at] - want[i * side + k]));
            norm = Math.max(norm, Math.abs(want[i * side + k]));
            written += 1;
          }
        }
        expect(worst / norm, 'packed entries against float64').toBeLessThan(1e-5);
        // Exactly the packed slots of this view were written; the rest keep their poison.
        expect(oneRow.matrix.filter((x) => !Number.isNaN(x)).length).toBe(written);
        expect(oneRow.partials.every(Number.isFinite), 'every partial written').toBe(true);
        for (const gx of [1, 3, 7]) {
          const folded = await gram(form, z, n, d, view, gx);
          expect(Buffer.from(folded.matrix.buffer).equals(Buffer.from(oneRow.matrix.buffer)), `gx ${gx} matrix`).toBe(true);
          expect(Buffer.from(folded.partials.buffer).equals(Buffer.from(oneRow.partials.buffer)), `gx ${gx} partials`).toBe(true);
        }
      });
    }
  }
});
