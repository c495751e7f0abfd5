// Kept bind groups (runtime/gpu.ts): the engine re-encodes its pass lists on every call, and the bind
// groups of a call are those of the call before when it binds the same buffers. Checked here: a repeated
// call of a shape makes no bind group and gives bitwise the first call's results (every variant of the
// registry that runs here, forced, both forms); each shape's first call makes its bind groups and its
// second none; and the kept bind groups
// keep no buffer alive: a caller's per-step GPUBuffers, dropped without destroy(), are collected (the
// cache holds its entries weakly, by what they bind).
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVICRegLoss, type VICRegLoss } from '../src/index.js';
import { acquireDevice, type DeviceHandle } from '../src/runtime/device.js';
import { Usage } from '../src/runtime/gpu.js';
import { VARIANTS } from '../src/variants/registry.js';
import { cannotRun, titled } from './reference/adapter.js';
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

interface Tracker { registry: FinalizationRegistry<number>; registered: number; collected: Set<number> }

/** One forward + backward on new GPUBuffers holding a and b, left to the garbage collector (tracked). */
async function stepOnFreshViews(vic: VICRegLoss, a: Float32Array, b: Float32Array, shape: [number, number], tracker: Tracker) {
  const views = [a, b].map((x) => {
    const buffer = vic.device.createBuffer({ size: x.byteLength, usage: Usage.STORAGE | Usage.COPY_DST });
    vic.device.queue.writeBuffer(buffer, 0, x as Float32Array<ArrayBuffer>);
    tracker.registry.register(buffer, tracker.registered++);
    return buffer;
  });
  await vic.forward(views[0], views[1], shape);
  await vic.backward();
}

describe('kept bind groups', () => {
  // 37 x 260 runs the dual form, 150 x 44 the primal one: each variant with kernels of its own for the form.
  const cases = VARIANTS.flatMap((v) => ([[37, 260, 'dual'], [150, 44, 'primal']] as const).filter(([, , form]) => v.forms[form]).map(([n, d, form]) => ({ n, d, form, variant: v.name })));
  for (const { n, d, form, variant } of cases) {
    const why = cannotRun(variant, form, n, d);
    it.skipIf(why)(titled(`${n} x ${d}, ${variant}: the second call makes no bind group and gives bitwise the same results`, why), async () => {
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

  it("each shape's first call makes its bind groups, its second none", async () => {
    const vic = await createVICRegLoss({ device: handle.device, variant: 'tiled' });
    try {
      for (const [n, d] of [[20, 64], [24, 68], [28, 72], [20, 64]] as const) {
        const { a, b } = randomViews(n, d, n + d);
        for (const call of ['first', 'second']) {
          const before = made;
          await vic.forward(a, b, [n, d]);
          await vic.backward();
          if (call === 'first') expect(made, `${n} x ${d}, first call`).toBeGreaterThan(before);
          else expect(made, `${n} x ${d}, second call`).toBe(before);
        }
      }
    } finally {
      vic.destroy();
    }
  });

  // Collection is observed through a FinalizationRegistry after forced collections (a WeakRef would keep
  // its target until the end of the job that made it).
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const uncollected = async (tracker: { registered: number; collected: Set<number> }) => {
    for (let i = 0; i < 20 && tracker.collected.size < tracker.registered; i++) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return tracker.registered - tracker.collected.size;
  };

  it("keeps no caller's buffer alive: per-step GPUBuffers dropped without destroy() are collected", async () => {
    const { device } = handle;
    const [n, d] = [12, 40];
    const vic = await createVICRegLoss({ device, variant: 'tiled' });
    try {
      const { a, b } = randomViews(n, d, 5);
      const collected = new Set<number>();
      const tracker: Tracker = { registry: new FinalizationRegistry<number>((i) => collected.add(i)), registered: 0, collected };
      for (let step = 0; step < 3; step++) {
        const before = made;
        await stepOnFreshViews(vic, a, b, [n, d], tracker);
        if (step > 0) expect(made, 'bind groups over the new views').toBeGreaterThan(before);
      }
      await vic.forward(a, b, [n, d]);   // the engine holds the last forward's views until the next forward
      expect(await uncollected(tracker), 'views still reachable').toBe(0);
    } finally {
      vic.destroy();
    }
  });
});
