// Device scratch (the performance issue: at most min(n, d)^2 floats plus O(n + d) besides inputs and
// gradients): after forward + backward on host arrays, the engine's own buffers (bufferCounts) minus the
// device copies of the inputs, the gradients and their readback staging must fit the packed matrix of
// both views, side^2 + side floats (side = min(n, d) in the cheaper form), plus the Gram partials (at most
// side^2/128 floats), 16 (n + d) floats and 8 KiB, and from 512 rows the dual backward's column panels
// (n x 512 floats at most, subgroup.ts PANEL_MAX_STRIPS); and the packed matrix must be there. (Two
// unpacked matrices, as before, fail every shape below.)
// With the 'windows' variant (dual form), the matrix is blocked (nb^2 + nb blocks of 128 x 128, nb =
// ceil(n/128)), and its panel buffer and texture (a column group: n x 512 floats from 512 rows, at most
// 512 x 512 below; windows.ts windowColumnGroups) and the per-dispatch records come on top: O(n + d) too.
// encode() with encodeFallback 'none' on a dual problem holds no primal matrix either.
import { describe, expect, it } from 'vitest';
import { bufferCounts, createVICRegLoss } from '../src/index.js';
import { DEFAULTS } from '../src/coefficients.js';
import { blockedMatrixFloats, windowPanelFloats, windowRecords, windowTextureSize } from '../src/variants/lavapipe/windows.js';
import type { Variant } from '../src/types.js';
import { randomViews } from './reference/float64.js';

const F = 4;   // bytes per float
/** Everything but the packed matrix: partials, statistics, flags, uniforms, result buffers. */
const smallBytes = (n: number, d: number, side: number) => F * (Math.ceil(side * side / 128) + 16 * (n + d) + (n >= 512 && n < d ? 512 * n : 0)) + 8192;
/** What the 'windows' variant holds past the packed matrix and smallBytes (its panels replace the subgroup one). */
const windowBytes = (n: number, d: number) => F * (blockedMatrixFloats(n) - (n * n + n) + windowPanelFloats(n, d) + 4 * windowTextureSize(n, d).reduce((a, b) => a * b))
  + 2 * windowRecords(DEFAULTS, n, d, n, 0, 0).bytes.byteLength;
const extraBytes = (variant: Variant, n: number, d: number) => (variant === 'windows' ? windowBytes(n, d) : 0);

describe('device scratch: one packed min(n, d)^2 + min(n, d) matrix, plus O(n + d)', () => {
  const shapes: [number, number][] = [[64, 512], [200, 130], [256, 1024], [1024, 256], [97, 97], [520, 1156]];
  for (const [n, d] of shapes) {
    it(`${n} x ${d} (${n < d ? 'dual' : 'primal'} form)`, async () => {
      const vic = await createVICRegLoss();
      try {
        const before = bufferCounts.bytes;
        const { a, b } = randomViews(n, d, n + d);
        await vic.forward(a, b, [n, d]);
        await vic.backward();
        expect(vic.lastPlan!.fellBack).toBe(false);
        const side = Math.min(n, d);
        // Inputs copied to the device, gradients, and the gradients' readback staging: 6 n d floats.
        const scratch = bufferCounts.bytes - before - 6 * n * d * F;
        const matrix = (side * side + side) * F;
        expect(scratch).toBeGreaterThanOrEqual(matrix);
        const variant = vic.lastPlan!.variant;
        expect(scratch, `scratch ${scratch} B, packed matrix ${matrix} B, variant ${variant}`).toBeLessThanOrEqual(matrix + smallBytes(n, d, side) + extraBytes(variant, n, d));
      } finally {
        vic.destroy();
      }
    });
  }

  it("encode() on a dual problem: with encodeFallback 'none', no primal matrix on standby", async () => {
    const [n, d] = [48, 640];
    const lean = await createVICRegLoss({ encodeFallback: 'none' });
    const usage = 0x80 | 0x08 | 0x04;   // STORAGE | COPY_DST | COPY_SRC
    const caller: GPUBuffer[] = [];
    const buffer = (data?: Float32Array) => {
      const g = lean.device.createBuffer({ size: n * d * F, usage });
      if (data) lean.device.queue.writeBuffer(g, 0, data as Float32Array<ArrayBuffer>);
      caller.push(g);
      return g;
    };
    try {
      const { a, b } = randomViews(n, d, 7);
      const before = bufferCounts.bytes;
      const pending = await lean.encode({ a: buffer(a), b: buffer(b), shape: [n, d], gradA: buffer(), gradB: buffer() });
      await pending.read();
      // The caller's buffers are not the engine's (bufferCounts counts only its own).
      const scratch = bufferCounts.bytes - before;
      expect(scratch).toBeGreaterThanOrEqual((n * n + n) * F);
      expect(scratch).toBeLessThanOrEqual((n * n + n) * F + smallBytes(n, d, n) + windowBytes(n, d));
      expect(scratch).toBeLessThan(d * d * F);   // what the primal matrix alone would take
    } finally {
      caller.forEach((g) => g.destroy());
      lean.destroy();
    }
  });

});

// readback (runtime/gpu.ts) makes a host path's new arrays while the device works; they must still be
// new per call, hold what the caller-array path writes, and stay untouched by later calls.
describe('host gradients', () => {
  it('host gradients are new arrays each call, the same bits as into caller arrays, and later calls leave them alone', async () => {
    const [n, d] = [33, 300];
    const vic = await createVICRegLoss();
    try {
      const first = randomViews(n, d, 11);
      await vic.forward(first.a, first.b, [n, d]);
      const g1 = await vic.backward();
      const kept = [Float32Array.from(g1.gradA as Float32Array), Float32Array.from(g1.gradB as Float32Array)];
      const out = { gradA: new Float32Array(n * d).fill(NaN), gradB: new Float32Array(n * d).fill(NaN) };
      await vic.forward(first.a, first.b, [n, d]);
      await vic.backward(1, { out });
      expect(new Uint32Array(out.gradA.buffer)).toEqual(new Uint32Array(kept[0].buffer));
      expect(new Uint32Array(out.gradB.buffer)).toEqual(new Uint32Array(kept[1].buffer));
      const second = randomViews(n, d, 12);
      await vic.forward(second.a, second.b, [n, d]);
      const g2 = await vic.backward();
      expect(g2.gradA).not.toBe(g1.gradA);
      expect((g2.gradA as Float32Array).buffer).not.toBe((g1.gradA as Float32Array).buffer);
      expect((g2.gradB as Float32Array).buffer).not.toBe((g1.gradB as Float32Array).buffer);
      expect(g2.gradA).not.toEqual(g1.gradA);
      expect(new Uint32Array((g1.gradA as Float32Array).buffer)).toEqual(new Uint32Array(kept[0].buffer));
      expect(new Uint32Array((g1.gradB as Float32Array).buffer)).toEqual(new Uint32Array(kept[1].buffer));
    } finally {
      vic.destroy();
    }
  });
});
