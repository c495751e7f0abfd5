// float16 views and gradients: the loss and both gradients against the float64 reference computed on
// the float16-rounded inputs, from host arrays, GPUBuffers and encode(), in both gradient types, on every
// variant that runs here; the overflow flag exactly where a scaled float16 gradient is not finite; every
// binary16 value through the conversions unchanged; and the typed errors of mismatched types and sizes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BufferError, createVICRegLoss, OptionError, ShapeError, type VICRegLoss, type VICRegOptions } from '../src/index.js';
import type { Form, Variant } from '../src/types.js';
import { cannotRun, titled } from './reference/adapter.js';
import {
  collapsedViews, dominantFeatureViews, largeOffsetViews, randomViews, referenceVICReg, relativeError, relativeNormError, scaled,
  type ReferenceOptions, type ViewPair,
} from './reference/float64.js';
import { fromHalfBits, halfView, isFiniteHalf, MAX_HALF, toHalfBits } from './reference/half.js';

const STORAGE = 0x80, COPY_SRC = 0x04, COPY_DST = 0x08, MAP_READ = 0x01;
const TERMS = ['loss', 'invariance', 'variance', 'covariance'] as const;
/** The issue's tolerances: terms as float32's, gradients 1e-4 in float32 and 2e-3 once rounded to float16. */
const TERM_TOLERANCE = 1e-5;
const FLOAT32_GRADIENT_TOLERANCE = 1e-4;
const FLOAT16_GRADIENT_TOLERANCE = 2e-3;

const OFFICIAL: ReferenceOptions = { preset: 'official', lambda: 3.5, mu: 7, nu: 0.3, gamma: 0.7, eps: 1e-3 };

/** Both views rounded to float16: their bits, and the reference on the values they hold. */
function halfCase(views: ViewPair, shape: [number, number], options: ReferenceOptions = {}) {
  const [a, b] = [halfView(views.a), halfView(views.b)];
  return { a: a.bits, b: b.bits, reference: referenceVICReg(a.values, b.values, shape, options) };
}

const decode = (bits: Uint16Array) => Float64Array.from(bits, fromHalfBits);

function expectTerms(terms: Record<(typeof TERMS)[number], number>, reference: ReturnType<typeof referenceVICReg>, label: string) {
  for (const t of TERMS) expect(relativeError(terms[t], reference[t]), `${label}: ${t}`).toBeLessThan(TERM_TOLERANCE);
}

async function readBuffer(device: GPUDevice, source: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
  const staging = device.createBuffer({ size: bytes, usage: MAP_READ | COPY_DST });
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(source, 0, staging, 0, bytes);
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(MAP_READ);
  const out = staging.getMappedRange().slice(0);
  staging.destroy();
  return out;
}

/** A GPUBuffer of float16 bits, padded to whole words. */
function halfBuffer(device: GPUDevice, bits: Uint16Array | undefined, count: number): GPUBuffer {
  const buffer = device.createBuffer({ size: 4 * Math.ceil(count / 2), usage: STORAGE | COPY_SRC | COPY_DST });
  if (bits) {
    const padded = new Uint16Array(2 * Math.ceil(count / 2));
    padded.set(bits);
    device.queue.writeBuffer(buffer, 0, padded);
  }
  return buffer;
}

let vic: VICRegLoss;
beforeAll(async () => {
  vic = await createVICRegLoss({ ...OFFICIAL, poisonScratch: true } as VICRegOptions);
});
afterAll(() => vic?.destroy());

interface Case { label: string; shape: [number, number]; views: () => ViewPair; options: ReferenceOptions }
const CASES: Case[] = [
  { label: 'dual, paper defaults', shape: [37, 300], views: () => randomViews(37, 300, 1601), options: {} },
  { label: 'primal, official non-default', shape: [100, 67], views: () => randomViews(100, 67, 1602), options: OFFICIAL },
  { label: 'an odd n*d (the last word half padding)', shape: [33, 65], views: () => randomViews(33, 65, 1603), options: OFFICIAL },
  { label: 'the smallest shape', shape: [2, 1], views: () => randomViews(2, 1, 1604), options: {} },
  { label: 'a 1e3 offset', shape: [64, 96], views: () => largeOffsetViews(64, 96, 1605, 1e3), options: {} },
  { label: 'collapsed features', shape: [50, 36], views: () => collapsedViews(50, 36, 1606), options: OFFICIAL },
  { label: 'one dominant feature (the dual form falls back)', shape: [32, 256], views: () => dominantFeatureViews(32, 256, 421), options: {} },
];

describe('float16 views from the host (Uint16Arrays of binary16 bits)', () => {
  for (const c of CASES) {
    it(`${c.label} (${c.shape.join('x')}): terms, and float16 and float32 gradients`, async () => {
      const engine = await createVICRegLoss({ ...c.options, poisonScratch: true } as VICRegOptions);
      try {
        const { a, b, reference } = halfCase(c.views(), c.shape, c.options);
        expectTerms(await engine.forward(a, b, c.shape), reference, c.label);
        const half = await engine.backward<Uint16Array>();
        expect(half.gradA).toBeInstanceOf(Uint16Array);
        expect(half.overflow).toBe(false);
        expect(relativeNormError(decode(half.gradA), reference.gradA), 'float16 dL/dA').toBeLessThan(FLOAT16_GRADIENT_TOLERANCE);
        expect(relativeNormError(decode(half.gradB), reference.gradB), 'float16 dL/dB').toBeLessThan(FLOAT16_GRADIENT_TOLERANCE);
        const single = await engine.backward(-2.5, { dtype: 'float32' });
        expect(relativeNormError(single.gradA, scaled(reference.gradA, -2.5)), 'float32 dL/dA').toBeLessThan(FLOAT32_GRADIENT_TOLERANCE);
        expect(relativeNormError(single.gradB, scaled(reference.gradB, -2.5)), 'float32 dL/dB').toBeLessThan(FLOAT32_GRADIENT_TOLERANCE);
        // float16 gradients are the float32 ones rounded: each bit pattern is the rounding of that value.
        const rounded = Uint16Array.from(await engine.backward(1, { dtype: 'float32' }).then((g) => g.gradA), toHalfBits);
        expect(Buffer.from(half.gradA.buffer, half.gradA.byteOffset, half.gradA.byteLength).equals(Buffer.from(rounded.buffer))).toBe(true);
      } finally {
        engine.destroy();
      }
    });
  }

  it('the same loss and float32 gradients, bitwise, as the float32 path on the same (rounded) values', async () => {
    const shape: [number, number] = [45, 133];
    const views = randomViews(...shape, 1607);
    const [a, b] = [halfView(views.a), halfView(views.b)];
    const terms16 = await vic.forward(a.bits, b.bits, shape);
    const grads16 = await vic.backward(1, { dtype: 'float32' });
    const terms32 = await vic.forward(a.values, b.values, shape);
    const grads32 = await vic.backward();
    expect(terms16).toEqual(terms32);
    expect(Buffer.from(grads16.gradA.buffer).equals(Buffer.from(grads32.gradA.buffer))).toBe(true);
  });

  it('backward into caller-owned float16 arrays (out), and float32 gradients of float32 views in float16', async () => {
    const shape: [number, number] = [20, 30];
    const { a, b, reference } = halfCase(randomViews(...shape, 1608), shape, OFFICIAL);
    await vic.forward(a, b, shape);
    const out = { gradA: new Uint16Array(600), gradB: new Uint16Array(600) };
    const result = await vic.backward(1, { out });
    expect(result.gradA).toBe(out.gradA);
    expect(relativeNormError(decode(out.gradB), reference.gradB)).toBeLessThan(FLOAT16_GRADIENT_TOLERANCE);
    await vic.forward(Float32Array.from(a, fromHalfBits), Float32Array.from(b, fromHalfBits), shape);
    const narrowed = await vic.backward<Uint16Array>(1, { dtype: 'float16' });
    expect(relativeNormError(decode(narrowed.gradA), reference.gradA)).toBeLessThan(FLOAT16_GRADIENT_TOLERANCE);
  });

  const Float16 = (globalThis as { Float16Array?: new (values: ArrayLike<number>) => ArrayBufferView & ArrayLike<number> }).Float16Array;
  const noFloat16 = Float16 ? undefined : `this runtime (Node ${process.versions.node}) has no Float16Array`;
  it.skipIf(noFloat16)(titled('Float16Arrays in, Float16Arrays out', noFloat16), async () => {
    const shape: [number, number] = [24, 40];
    const views = randomViews(...shape, 1609);
    const [a, b] = [new Float16!(views.a), new Float16!(views.b)];
    const reference = referenceVICReg(Float32Array.from(a as ArrayLike<number>), Float32Array.from(b as ArrayLike<number>), shape, OFFICIAL);
    expectTerms(await vic.forward(a as Uint16Array, b as Uint16Array, shape), reference, 'Float16Array');
    const { gradA } = await vic.backward();
    expect(gradA.constructor).toBe(Float16);
    expect(relativeNormError(Float64Array.from(gradA as ArrayLike<number>), reference.gradA)).toBeLessThan(FLOAT16_GRADIENT_TOLERANCE);
  });
});

describe('float16 on the device', () => {
  it('forward on float16 GPUBuffers, backward into the engine\'s float16 buffers with the flag on the device', async () => {
    const shape: [number, number] = [41, 90];
    const { a, b, reference } = halfCase(randomViews(...shape, 1610), shape, OFFICIAL);
    const count = shape[0] * shape[1];
    const [bufA, bufB] = [halfBuffer(vic.device, a, count), halfBuffer(vic.device, b, count)];
    try {
      expectTerms(await vic.forward(bufA, bufB, shape, { dtype: 'float16' }), reference, 'GPUBuffers');
      const grads = await vic.backward<GPUBuffer>();
      const gradA = new Uint16Array(await readBuffer(vic.device, grads.gradA, 4 * Math.ceil(count / 2)), 0, count);
      expect(relativeNormError(decode(gradA), reference.gradA)).toBeLessThan(FLOAT16_GRADIENT_TOLERANCE);
      expect(new Uint32Array(await readBuffer(vic.device, grads.overflow!, 4))[0]).toBe(0);
    } finally {
      bufA.destroy();
      bufB.destroy();
    }
  });

  it('encode(): float16 views and gradients, accumulated, with a GPUBuffer scale; read() and the device flag agree', async () => {
    const shape: [number, number] = [36, 200];
    const { a, b, reference } = halfCase(randomViews(...shape, 1611), shape, OFFICIAL);
    const count = shape[0] * shape[1];
    const device = vic.device;
    const made = [halfBuffer(device, a, count), halfBuffer(device, b, count), halfBuffer(device, undefined, count), halfBuffer(device, undefined, count)];
    const scale = device.createBuffer({ size: 4, usage: STORAGE | COPY_DST });
    device.queue.writeBuffer(scale, 0, new Float32Array([-1.5]));
    try {
      // Written once (-1.5 g), then added to (-1.5 g more): -3 g, rounded twice.
      for (const accumulate of [false, true]) {
        const pending = await vic.encode({ a: made[0], b: made[1], shape, gradA: made[2], gradB: made[3], dtype: 'float16', scale, accumulate });
        expect(pending.overflow).toBeDefined();
        const terms = await pending.read();
        expect(terms.gradientOverflow).toBe(false);
        expectTerms(terms, reference, 'encode');
      }
      const gradB = new Uint16Array(await readBuffer(device, made[3], 4 * Math.ceil(count / 2)), 0, count);
      expect(relativeNormError(decode(gradB), scaled(reference.gradB, -3))).toBeLessThan(2 * FLOAT16_GRADIENT_TOLERANCE);
    } finally {
      [...made, scale].forEach((x) => x.destroy());
    }
  });

  it('encode(): float16 views with float32 gradients, no flag', async () => {
    const shape: [number, number] = [30, 50];
    const { a, b, reference } = halfCase(randomViews(...shape, 1612), shape, {});
    const engine = await createVICRegLoss();
    const device = engine.device;
    const count = shape[0] * shape[1];
    const made = [halfBuffer(device, a, count), halfBuffer(device, b, count)];
    const grads = [0, 1].map(() => device.createBuffer({ size: 4 * count, usage: STORAGE | COPY_SRC }));
    try {
      const pending = await engine.encode({ a: made[0], b: made[1], shape, gradA: grads[0], gradB: grads[1], dtype: 'float16', gradDtype: 'float32' });
      expect(pending.overflow).toBeUndefined();
      expect((await pending.read()).gradientOverflow).toBe(false);
      expect(relativeNormError(new Float32Array(await readBuffer(device, grads[0], 4 * count)), reference.gradA)).toBeLessThan(FLOAT32_GRADIENT_TOLERANCE);
    } finally {
      [...made, ...grads].forEach((x) => x.destroy());
      engine.destroy();
    }
  });
});

describe('the overflow flag: set exactly when a scaled float16 gradient is not finite', () => {
  const shape: [number, number] = [40, 64];
  const views = randomViews(...shape, 1613);
  const [a, b] = [halfView(views.a).bits, halfView(views.b).bits];

  /** The scale at which the largest gradient reaches `value`. */
  async function scaleFor(value: number) {
    await vic.forward(a, b, shape);
    const { gradA, gradB } = await vic.backward(1, { dtype: 'float32' });
    let largest = 0;
    for (const g of [gradA, gradB]) for (const x of g) largest = Math.max(largest, Math.abs(x));
    return value / largest;
  }

  async function expectFlag(scale: number, flagged: boolean) {
    await vic.forward(a, b, shape);
    const { gradA, gradB, overflow } = await vic.backward<Uint16Array>(scale);
    const notFinite = [...gradA, ...gradB].some((h) => !isFiniteHalf(h));
    expect(notFinite, `scale ${scale}: a gradient is ${flagged ? 'not ' : ''}finite`).toBe(flagged);
    expect(overflow, `scale ${scale}`).toBe(flagged);

    const device = vic.device;
    const count = shape[0] * shape[1];
    const made = [halfBuffer(device, a, count), halfBuffer(device, b, count), halfBuffer(device, undefined, count), halfBuffer(device, undefined, count)];
    try {
      const pending = await vic.encode({ a: made[0], b: made[1], shape, gradA: made[2], gradB: made[3], dtype: 'float16', scale });
      const terms = await pending.read().catch(() => undefined);
      expect(terms?.gradientOverflow, 'read()').toBe(flagged);
    } finally {
      made.forEach((x) => x.destroy());
    }
  }

  it('just below the largest half (65504): no flag, every gradient finite', async () => {
    await expectFlag(await scaleFor(MAX_HALF * 0.999), false);
  });

  it('past where rounding reaches Inf (65520): the flag, and an Inf among the gradients', async () => {
    await expectFlag(await scaleFor(65520 * 1.001), true);
  });

  it('the flag on the device, before any read: an optimizer pass can bind it', async () => {
    const device = vic.device;
    const count = shape[0] * shape[1];
    const made = [halfBuffer(device, a, count), halfBuffer(device, b, count), halfBuffer(device, undefined, count), halfBuffer(device, undefined, count)];
    try {
      const pending = await vic.encode({ a: made[0], b: made[1], shape, gradA: made[2], gradB: made[3], dtype: 'float16', scale: 1e12 });
      expect(new Uint32Array(await readBuffer(device, pending.overflow!, 4))[0]).toBe(1);
      pending.release();
    } finally {
      made.forEach((x) => x.destroy());
    }
  });
});

describe('the conversions', () => {
  it('every binary16 value, accumulated with a zero gradient, comes back unchanged (NaNs as NaNs), and flags only Inf and NaN', async () => {
    // 256 x 256 elements hold every 16-bit pattern once; with scale 0 the added gradient is +0.
    const shape: [number, number] = [256, 256];
    const count = 65536;
    const patterns = Uint16Array.from({ length: count }, (_, i) => i);
    const device = vic.device;
    const views = randomViews(...shape, 1614);
    const [a, b] = [halfView(views.a).bits, halfView(views.b).bits];
    const made = [halfBuffer(device, a, count), halfBuffer(device, b, count), halfBuffer(device, patterns, count), halfBuffer(device, patterns, count)];
    try {
      const pending = await vic.encode({ a: made[0], b: made[1], shape, gradA: made[2], gradB: made[3], dtype: 'float16', scale: 0, accumulate: true });
      expect((await pending.read()).gradientOverflow).toBe(true);
      const back = new Uint16Array(await readBuffer(device, made[2], 2 * count));
      for (let i = 0; i < count; i++) {
        const isNaN = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
        // -0 + 0 is +0 (round to nearest), so negative zero comes back positive.
        const expected = i === 0x8000 ? 0 : i;
        if (isNaN) expect((back[i] & 0x7c00) === 0x7c00 && (back[i] & 0x3ff) !== 0, `0x${i.toString(16)}`).toBe(true);
        else if (back[i] !== expected) expect(`0x${back[i].toString(16)}`, `0x${i.toString(16)}`).toBe(`0x${expected.toString(16)}`);
      }
    } finally {
      made.forEach((x) => x.destroy());
    }
  });
});

describe('every variant that runs here, on float16 views and gradients', () => {
  const shapes: [Form, [number, number]][] = [['dual', [36, 200]], ['primal', [90, 52]]];
  for (const variant of ['tiled', 'subgroup', 'workgroup', 'shuffle', 'windows'] as Variant[]) {
    for (const [form, shape] of shapes) {
      // A variant with no kernels of its own for the form runs its stand-in's: cannotRun asks about those.
      const why = cannotRun(variant, form, ...shape);
      it.skipIf(why)(titled(`${variant}, ${form} ${shape.join('x')}`, why), async () => {
        const engine = await createVICRegLoss({ ...OFFICIAL, variant, form, poisonScratch: true } as VICRegOptions);
        try {
          const { a, b, reference } = halfCase(randomViews(...shape, 1620), shape, OFFICIAL);
          expectTerms(await engine.forward(a, b, shape), reference, variant);
          const { gradA, gradB } = await engine.backward<Uint16Array>();
          expect(relativeNormError(decode(gradA), reference.gradA)).toBeLessThan(FLOAT16_GRADIENT_TOLERANCE);
          expect(relativeNormError(decode(gradB), reference.gradB)).toBeLessThan(FLOAT16_GRADIENT_TOLERANCE);
        } finally {
          engine.destroy();
        }
      });
    }
  }
});

describe('float16 errors: typed, and the engine stays usable', () => {
  const shape: [number, number] = [6, 5];
  const views = randomViews(...shape, 1615);
  const [a, b] = [halfView(views.a).bits, halfView(views.b).bits];

  it('types that disagree, a bad dtype, too small a buffer, out arrays of the other type, a NaN located', async () => {
    await expect(vic.forward(a, b, shape, { dtype: 'float32' })).rejects.toThrow(ShapeError);
    await expect(vic.forward(a, b, shape, { dtype: 'float32' })).rejects.toThrow(/A is a Uint16Array \(float16\) but the views are float32/);
    await expect(vic.forward(a, views.b, shape)).rejects.toThrow(/B is a Float32Array \(float32\) but the views are float16/);
    await expect(vic.forward(a, b, shape, { dtype: 'half' as never })).rejects.toThrow(OptionError);
    await expect(vic.forward(new Int16Array(30) as never, b, shape)).rejects.toThrow(/must be a Float32Array, a Uint16Array of float16 bits/);
    const small = vic.device.createBuffer({ size: 56, usage: STORAGE });   // 30 halves need 60 bytes
    await expect(vic.forward(small, small, shape, { dtype: 'float16' })).rejects.toThrow(BufferError);
    await expect(vic.forward(small, small, shape, { dtype: 'float16' })).rejects.toThrow(/needs ceil\(n\*d\/2\)\*4 = 60/);
    small.destroy();
    await vic.forward(a, b, shape);
    await expect(vic.backward(1, { out: { gradA: new Float32Array(30), gradB: new Float32Array(30) } })).rejects.toThrow(/out\.gradA must be a Uint16Array or Float16Array \(float16 gradients\), got Float32Array/);
    await expect(vic.backward(1, { dtype: 'float64' as never })).rejects.toThrow(OptionError);
    const bad = Uint16Array.from(a);
    bad[2 * 5 + 3] = 0x7e00;   // NaN at row 2, column 3
    await expect(vic.forward(bad, b, shape)).rejects.toThrow(/A\[2, 3\] is NaN \(view A, row 2, column 3\)/);
    const { reference } = halfCase(views, shape, OFFICIAL);
    expectTerms(await vic.forward(a, b, shape), reference, 'after the errors');
  });
});
