// Bad input through the public API: each must reject with its typed error (src/errors.ts), and the
// instance must go on computing correct losses afterwards.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVICRegLoss, type VICRegLoss } from '../src/index.js';
import { NonFiniteError, OptionError, ShapeError, StateError, VICRegError } from '../src/errors.js';
import { randomViews, referenceVICReg, relativeError, relativeNormError } from './reference/float64.js';
import { destroyBuffer, readback, readbackBuffer, storageBuffer } from '../src/runtime/gpu.js';

type ErrorClass = new (...args: never[]) => VICRegError;

/** Awaits a call that must fail (by throwing or by rejecting) and returns what it threw. */
async function failure(call: () => unknown): Promise<unknown> {
  try {
    await call();
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

/** The call fails with an instance of `errorClass`, a VICRegError with a one-line message. */
async function expectTypedError(call: () => unknown, errorClass: ErrorClass): Promise<VICRegError> {
  const error = await failure(call);
  expect(error).toBeInstanceOf(errorClass);
  expect(error).toBeInstanceOf(VICRegError);
  const typed = error as VICRegError;
  expect(typed.message.length).toBeGreaterThan(0);
  expect(typed.message).not.toContain('\n');
  return typed;
}

const SHAPE: [number, number] = [6, 5];
const GOOD = randomViews(...SHAPE, 900);

/** The instance still computes the right loss and gradients (checked against the float64 reference). */
async function expectStillCorrect(vic: VICRegLoss): Promise<void> {
  const terms = await vic.forward(GOOD.a, GOOD.b, SHAPE);
  const grads = await vic.backward();
  const reference = referenceVICReg(GOOD.a, GOOD.b, SHAPE, {});
  expect(relativeError(terms.loss, reference.loss)).toBeLessThan(1e-5);
  expect(relativeNormError(grads.gradA, reference.gradA)).toBeLessThan(1e-4);
  expect(relativeNormError(grads.gradB, reference.gradB)).toBeLessThan(1e-4);
}

describe('typed errors from a live instance', () => {
  let vic: VICRegLoss;
  beforeAll(async () => {
    vic = await createVICRegLoss();
  });
  afterAll(() => vic?.destroy());

  it('backward before any forward: StateError', async () => {
    const error = await expectTypedError(() => vic.backward(), StateError);
    expect(error.code).toBe('state');
    await expectStillCorrect(vic);
  });

  const tooFewRows: [string, [number, number]][] = [
    ['n = 1', [1, 5]],
    ['n = 0', [0, 5]],
  ];
  for (const [name, shape] of tooFewRows) {
    it(`${name}: ShapeError (no unbiased variance)`, async () => {
      const size = Math.max(shape[0] * shape[1], 0);
      const error = await expectTypedError(() => vic.forward(new Float32Array(size), new Float32Array(size), shape), ShapeError);
      expect(error.code).toBe('shape');
      await expectStillCorrect(vic);
    });
  }

  const badDims: [string, [number, number]][] = [
    ['non-integer n', [2.5, 4]],
    ['non-integer d', [4, 2.5]],
    ['negative n', [-3, 4]],
    ['negative d', [4, -3]],
    ['zero d', [4, 0]],
    ['NaN n', [Number.NaN, 4]],
    ['infinite d', [4, Number.POSITIVE_INFINITY]],
  ];
  for (const [name, shape] of badDims) {
    it(`${name} ${JSON.stringify(shape)}: ShapeError`, async () => {
      const data = new Float32Array(12);
      await expectTypedError(() => vic.forward(data, data, shape), ShapeError);
      await expectStillCorrect(vic);
    });
  }

  it('a shape that is not [n, d]: ShapeError', async () => {
    const data = new Float32Array(24);
    await expectTypedError(() => vic.forward(data, data, [24] as unknown as [number, number]), ShapeError);
    await expectTypedError(() => vic.forward(data, data, [2, 3, 4] as unknown as [number, number]), ShapeError);
    await expectStillCorrect(vic);
  });

  it('length of A does not match [n, d]: ShapeError', async () => {
    await expectTypedError(() => vic.forward(GOOD.a.subarray(1), GOOD.b, SHAPE), ShapeError);
    await expectTypedError(() => vic.forward(new Float32Array(31), new Float32Array(31), SHAPE), ShapeError);
    await expectStillCorrect(vic);
  });

  it('length of B does not match [n, d]: ShapeError', async () => {
    await expectTypedError(() => vic.forward(GOOD.a, GOOD.b.subarray(0, 29), SHAPE), ShapeError);
    await expectTypedError(() => vic.forward(GOOD.a, new Float32Array(60), SHAPE), ShapeError);
    await expectStillCorrect(vic);
  });

  // Each non-finite value is placed at a known (view, row, column); the error must name that spot.
  const nonFinite: { view: 'A' | 'B'; row: number; column: number; value: number }[] = [
    { view: 'A', row: 0, column: 0, value: Number.NaN },
    { view: 'A', row: 3, column: 2, value: Number.POSITIVE_INFINITY },
    { view: 'A', row: 5, column: 4, value: Number.NEGATIVE_INFINITY },
    { view: 'B', row: 2, column: 1, value: Number.NaN },
    { view: 'B', row: 4, column: 3, value: Number.POSITIVE_INFINITY },
  ];
  for (const { view, row, column, value } of nonFinite) {
    it(`${value} in ${view}[${row}, ${column}]: NonFiniteError naming view, row and column`, async () => {
      const a = GOOD.a.slice();
      const b = GOOD.b.slice();
      (view === 'A' ? a : b)[row * SHAPE[1] + column] = value;
      const error = (await expectTypedError(() => vic.forward(a, b, SHAPE), NonFiniteError)) as NonFiniteError;
      expect(error.code).toBe('non-finite');
      expect(error.view).toBe(view);
      expect(error.row).toBe(row);
      expect(error.column).toBe(column);
      expect(Object.is(error.value, value)).toBe(true);
      await expectStillCorrect(vic);
    });
  }

  it('non-finite values in both views: reports one of them, at its true position', async () => {
    const a = GOOD.a.slice();
    const b = GOOD.b.slice();
    a[1 * SHAPE[1] + 3] = Number.NaN;
    b[4 * SHAPE[1] + 0] = Number.POSITIVE_INFINITY;
    const error = (await expectTypedError(() => vic.forward(a, b, SHAPE), NonFiniteError)) as NonFiniteError;
    const position = [error.view, error.row, error.column];
    expect([['A', 1, 3], ['B', 4, 0]]).toContainEqual(position);
    await expectStillCorrect(vic);
  });

  it('two non-finite values in one column: names the first, past row blocks and in a 4-row group or the tail', async () => {
    const [n, d] = [151, 7];
    for (const [first, second, view] of [[70, 130, 'A'], [149, 150, 'B'], [64, 65, 'A']] as const) {
      const a = new Float32Array(n * d).map((_, i) => Math.sin(i));
      const b = a.map((x, i) => x + 0.1 * Math.cos(3 * i));
      const z = view === 'A' ? a : b;
      z[second * d + 2] = Number.NaN;
      z[first * d + 2] = Number.NEGATIVE_INFINITY;
      const error = (await expectTypedError(() => vic.forward(a, b, [n, d]), NonFiniteError)) as NonFiniteError;
      expect([error.view, error.row, error.column, error.value]).toEqual([view, first, 2, Number.NEGATIVE_INFINITY]);
    }
    await expectStillCorrect(vic);
  });

  it('backward after a forward with { grad: false }: StateError', async () => {
    await vic.forward(GOOD.a, GOOD.b, SHAPE, { grad: false });
    await expectTypedError(() => vic.backward(), StateError);
    await expectStillCorrect(vic);
  });

  it('a non-finite backward scale: OptionError', async () => {
    await vic.forward(GOOD.a, GOOD.b, SHAPE);
    await expectTypedError(() => vic.backward(Number.NaN), OptionError);
    await expectTypedError(() => vic.backward(Number.POSITIVE_INFINITY), OptionError);
    await expectStillCorrect(vic);
  });

  const n = SHAPE[0] * SHAPE[1];
  const shared = new Float32Array(2 * n);
  const badOut: [string, unknown, ErrorClass, RegExp][] = [
    ['not an object', 5, OptionError, /out must be/],
    ['gradB missing', { gradA: new Float32Array(n) }, ShapeError, /out\.gradB must be a Float32Array \(float32 gradients\), got undefined/],
    ['a Float64Array', { gradA: new Float64Array(n), gradB: new Float32Array(n) }, ShapeError, /out\.gradA must be a Float32Array \(float32 gradients\), got Float64Array/],
    ['one element short', { gradA: new Float32Array(n), gradB: new Float32Array(n - 1) }, ShapeError, new RegExp(`out\\.gradB has ${n - 1} elements; .*needs n\\*d = ${n}`)],
    ['the same array twice', { gradA: shared.subarray(0, n), gradB: shared.subarray(0, n) }, OptionError, /overlap/],
    ['overlapping views', { gradA: shared.subarray(0, n), gradB: shared.subarray(n - 1, 2 * n - 1) }, OptionError, /overlap/],
  ];
  for (const [name, out, errorClass, message] of badOut) {
    it(`backward's out, ${name}: ${errorClass.name}, and the arrays are left alone`, async () => {
      await vic.forward(GOOD.a, GOOD.b, SHAPE);
      shared.fill(7);
      const error = await expectTypedError(() => vic.backward(1, { out: out as never }), errorClass);
      expect(error.message).toMatch(message);
      expect(shared.every((x) => x === 7)).toBe(true);
      await expectStillCorrect(vic);
    });
  }
  it('a destination array detached while readback waits: ShapeError, and the staging buffer is unmapped for the next call', async () => {
    const device = vic.device;
    const data = Float32Array.from({ length: 16 }, (_, i) => i + 0.5);
    const source = storageBuffer(device, 'detach test source', data.byteLength);
    const staging = readbackBuffer(device, 'detach test staging', data.byteLength);
    try {
      device.queue.writeBuffer(source.gpu, 0, data);
      const into = new Float32Array(16);
      // readback() encodes, submits and starts mapping before its first await; the detach comes after.
      const pending = readback(device, device.createCommandEncoder(), [{ source: source.gpu, staging, bytes: data.byteLength, into }]);
      structuredClone(into.buffer, { transfer: [into.buffer] });
      const error = await expectTypedError(() => pending, ShapeError);
      expect(error.message).toMatch(/no longer holds 64 bytes/);
      expect(staging.gpu.mapState).toBe('unmapped');
      const again = new Float32Array(16);
      await readback(device, device.createCommandEncoder(), [{ source: source.gpu, staging, bytes: data.byteLength, into: again }]);
      expect(Array.from(again)).toEqual(Array.from(data));
    } finally {
      destroyBuffer(source);
      destroyBuffer(staging);
    }
    await expectStillCorrect(vic);
  });

  it("backward's out, adjacent views of one ArrayBuffer: accepted and filled", async () => {
    await vic.forward(GOOD.a, GOOD.b, SHAPE);
    const grads = await vic.backward(1, { out: { gradA: shared.subarray(0, n), gradB: shared.subarray(n) } });
    const reference = referenceVICReg(GOOD.a, GOOD.b, SHAPE, {});
    expect(relativeNormError(shared.subarray(0, n), reference.gradA)).toBeLessThan(1e-4);
    expect(relativeNormError(shared.subarray(n), reference.gradB)).toBeLessThan(1e-4);
    expect(grads.gradA.buffer).toBe(shared.buffer);
  });
});

describe('bad options: OptionError from createVICRegLoss', () => {
  const badOptions: [string, Record<string, unknown>][] = [
    ['negative gamma', { gamma: -1 }],
    ['unknown preset', { preset: 'torch' }],
    ['NaN lambda', { lambda: Number.NaN }],
    ['infinite mu', { mu: Number.POSITIVE_INFINITY }],
    ['negative eps', { eps: -1e-4 }],
    ['non-number nu', { nu: '1' }],
    ['unknown encodeFallback', { encodeFallback: 'always' }],
    ['unknown variant', { variant: 'fast' }],
  ];
  for (const [name, options] of badOptions) {
    it(name, async () => {
      const error = await expectTypedError(() => createVICRegLoss(options as never), OptionError);
      expect(error.code).toBe('option');
    });
  }

  it('valid non-default options are accepted and resolved', async () => {
    const vic = await createVICRegLoss({ lambda: 3.5, mu: 7, nu: 0.3, gamma: 0.7, eps: 1e-3, preset: 'official' });
    try {
      expect(vic.options).toMatchObject({ lambda: 3.5, mu: 7, nu: 0.3, gamma: 0.7, eps: 1e-3, preset: 'official' });
    } finally {
      vic.destroy();
    }
  });
});

describe('use after destroy', () => {
  it('forward and backward reject with StateError; destroy twice is harmless', async () => {
    const vic = await createVICRegLoss();
    await expectStillCorrect(vic);
    vic.destroy();
    await expectTypedError(() => vic.forward(GOOD.a, GOOD.b, SHAPE), StateError);
    await expectTypedError(() => vic.backward(), StateError);
    expect(() => vic.destroy()).not.toThrow();
  });

  it('destroying one instance leaves another working', async () => {
    const first = await createVICRegLoss();
    const second = await createVICRegLoss();
    try {
      first.destroy();
      await expectStillCorrect(second);
    } finally {
      second.destroy();
    }
  });
});
