// Kept bind groups (runtime/gpu.ts): the engine re-encodes its pass lists on every call, and the bind
// groups of a call are those of the call before when it binds the same buffers. Checked here: a repeated
// call of a shape makes no bind group and gives bitwise the first call's results (forced variants, both
// forms); a new shape's workspace replaces the old one's bind groups rather than adding to them, and
// destroy() drops them all; destroyBuffer drops what binds the buffer; the per-pipeline bound holds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVICRegLoss } from '../src/index.js';
import { columnStats, statsLayout, UNIFORM_BYTES } from '../src/ops/kernels.js';
import { acquireDevice, type DeviceHandle } from '../src/runtime/device.js';
import {
  BIND_GROUPS_PER_PIPELINE, destroyBuffer, encodeDispatch, keptBindGroups, pipeline, storageBuffer, uniformBuffer, type Buffer,
} from '../src/runtime/gpu.js';
import type { Variant } from '../src/types.js';
import { randomViews } from './reference/float64.js';

let handle: DeviceHandle;
let made = 0;
beforeAll(async () => {
  handle = await acquireDevice();
  const { device } = handle;
  const create = device.createBindGroup.bind(device);
  device.createBindGroup = (descriptor: GPUBindGroupDescriptor) => {
    made += 1;
    return create(descriptor);
  };
});
afterAll(() => handle?.device.destroy());

const bits = (x: Float32Array) => new Uint32Array(x.buffer, x.byteOffset, x.length);

describe('kept bind groups', () => {
  const cases: [number, number, Variant][] = [[37, 260, 'subgroup'], [37, 260, 'windows'], [37, 260, 'tiled'], [150, 44, 'subgroup']];
  for (const [n, d, variant] of cases) {
    it(`${n} x ${d}, ${variant}: the second call makes no bind group and gives bitwise the same results`, async () => {
      const vic = await createVICRegLoss({ device: handle.device, variant });
      try {
        const { a, b } = randomViews(n, d, n * 3 + d);
        const run = async () => {
          const terms = await vic.forward(a, b, [n, d]);
          const grads = await vic.backward();
          return { loss: terms.loss, gradA: grads.gradA as Float32Array, gradB: grads.gradB as Float32Array };
        };
        const before = made;
        const first = await run();
        const firstMade = made - before;
        expect(firstMade).toBeGreaterThan(0);
        const second = await run();
        expect(made - before - firstMade, 'bind groups made by the second call').toBe(0);
        expect(second.loss).toBe(first.loss);
        expect(bits(second.gradA)).toEqual(bits(first.gradA));
        expect(bits(second.gradB)).toEqual(bits(first.gradB));
      } finally {
        vic.destroy();
      }
    });
  }

  it("a new shape's workspace replaces the old one's bind groups; destroy() drops them", async () => {
    const { device } = handle;
    const stats = await pipeline(device, columnStats.spec);
    const start = keptBindGroups(stats);
    const vic = await createVICRegLoss({ device, variant: 'subgroup' });
    for (const [n, d] of [[20, 64], [24, 68], [28, 72]] as const) {
      const { a, b } = randomViews(n, d, n + d);
      await vic.forward(a, b, [n, d]);
      await vic.backward();
      expect(keptBindGroups(stats), `after ${n} x ${d}`).toBe(start + 1);
    }
    vic.destroy();
    expect(keptBindGroups(stats)).toBe(start);
  });

  it('destroyBuffer drops the bind groups that bind the buffer; the per-pipeline bound holds', async () => {
    const { device } = handle;
    const d = 8;
    const stats = await pipeline(device, columnStats.spec);
    const start = keptBindGroups(stats);
    const shared: Buffer[] = [storageBuffer(device, 'a', 4 * d), storageBuffer(device, 'b', 4 * d), storageBuffer(device, 'stats', statsLayout(d).floats * 4),
      storageBuffer(device, 'flags', 16 * d)];
    const dims: Buffer[] = [];
    const encodeWith = (u: Buffer) => {
      const encoder = device.createCommandEncoder();
      encodeDispatch(device, encoder, { label: 'stats', pipeline: stats, workgroups: columnStats.workgroups(d), bindings: [...shared.map((s) => s.gpu), u.gpu] });
      encoder.finish();
    };
    for (let i = 0; i < 3; i++) {
      dims.push(uniformBuffer(device, 'dims', UNIFORM_BYTES.dims));
      encodeWith(dims[i]);
    }
    expect(keptBindGroups(stats)).toBe(start + 3);
    destroyBuffer(dims[1]);
    expect(keptBindGroups(stats)).toBe(start + 2);
    destroyBuffer(shared[0]);
    expect(keptBindGroups(stats)).toBe(start);
    shared[0] = storageBuffer(device, 'a again', 4 * d);
    // Past the bound, the least recently used go: a stream of distinct uniform buffers keeps the count there.
    const extra = BIND_GROUPS_PER_PIPELINE - start + 5;
    const stream: Buffer[] = [];
    for (let i = 0; i < extra; i++) {
      stream.push(uniformBuffer(device, 'dims', UNIFORM_BYTES.dims));
      encodeWith(stream[i]);
    }
    expect(keptBindGroups(stats)).toBe(BIND_GROUPS_PER_PIPELINE);
    // The most recent ones are kept: encoding with the last buffer again makes none.
    const before = made;
    encodeWith(stream[extra - 1]);
    expect(made).toBe(before);
    encodeWith(stream[0]);   // dropped by the bound: made again
    expect(made).toBe(before + 1);
    [...shared, ...dims.filter((_, i) => i !== 1), ...stream].forEach(destroyBuffer);
    expect(keptBindGroups(stats)).toBe(start);
  });
});
