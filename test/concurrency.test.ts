// Concurrency and determinism: calls fired without awaiting run in the order they were made and give
// bitwise the results of the same calls made one by one; instances sharing one device do not disturb
// each other; and repeated runs are bitwise identical for every kernel variant and form.
//
// CI: ~15 s here. Full: VICREG_CONCURRENCY_FULL=1 npx vitest run test/concurrency.test.ts (~7 minutes:
// 1,000 repeated runs per case, and a 256 x 1024 shape).
//
// Bitwise comparisons are made on one device: the 'auto' kernel variant is chosen per device by a timed
// trial, and the variants sum in different orders (the last bits of the results differ between them).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVICRegLoss, StateError, type VICRegLoss, type VICRegTerms } from '../src/index.js';
import type { Form, Variant } from '../src/types.js';
import { FORMS, runsFor, VARIANTS } from '../src/variants/registry.js';
import { cannotRun, titled } from './reference/adapter.js';
import { dominantFeatureViews, randomViews, referenceVICReg, relativeError, relativeNormError } from './reference/float64.js';

type Shape = [number, number];
type Gradients = { gradA: Float32Array; gradB: Float32Array };
const TERMS = ['loss', 'invariance', 'variance', 'covariance'] as const;

const bits = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
/** Terms equal as float bits (Object.is: also tells -0 from 0 and matches NaN). */
function expectSameTerms(actual: VICRegTerms, expected: VICRegTerms, label: string) {
  for (const name of TERMS) expect(Object.is(actual[name], expected[name]), `${label} ${name}: ${actual[name]} vs ${expected[name]}`).toBe(true);
}
function expectSameGradients(actual: Gradients, expected: Gradients, label: string) {
  expect(bits(actual.gradA).equals(bits(expected.gradA)), `${label} gradA bitwise`).toBe(true);
  expect(bits(actual.gradB).equals(bits(expected.gradB)), `${label} gradB bitwise`).toBe(true);
}
function expectMatchesReference(terms: VICRegTerms, grads: Gradients | undefined, a: Float32Array, b: Float32Array, shape: Shape, options: Parameters<typeof referenceVICReg>[3], scale: number, label: string) {
  const reference = referenceVICReg(a, b, shape, options);
  for (const name of TERMS) expect(relativeError(terms[name], reference[name]), `${label} ${name}`).toBeLessThan(1e-5);
  if (!grads) return;
  expect(relativeNormError(grads.gradA, reference.gradA.map((g) => g * scale)), `${label} gradA`).toBeLessThan(1e-4);
  expect(relativeNormError(grads.gradB, reference.gradB.map((g) => g * scale)), `${label} gradB`).toBeLessThan(1e-4);
}

const cleanup: (() => void)[] = [];
afterAll(() => cleanup.forEach((dispose) => dispose()));

describe('calls in flight on one instance', () => {
  let vic: VICRegLoss;
  beforeAll(async () => {
    vic = await createVICRegLoss();
    cleanup.push(() => vic.destroy());
  });

  // Three inputs, two shapes (the workspace is rebuilt between them), different upstream scales: a
  // backward that paired with the wrong forward, or ran before its forward finished, gives other numbers.
  const X = { shape: [40, 96] as Shape, ...randomViews(40, 96, 1) };
  const Y = { shape: [70, 24] as Shape, ...randomViews(70, 24, 2) };
  const Z = { shape: [40, 96] as Shape, ...randomViews(40, 96, 3, { scale: 2 }) };

  it('f1, b1, f2, b2, f3, b3 fired together equal the same calls made one by one, bitwise; each backward pairs with the forward before it', async () => {
    // Sequential first: also compiles the pipelines and fixes the variant choices on this device.
    const sequential = {
      f1: await vic.forward(X.a, X.b, X.shape), b1: await vic.backward(0.5),
      f2: await vic.forward(Y.a, Y.b, Y.shape), b2: await vic.backward(),
      f3: await vic.forward(Z.a, Z.b, Z.shape), b3: await vic.backward(-2),
    };
    // The check is sensitive: each backward's gradients differ from the others'.
    expect(bits(sequential.b1.gradA).equals(bits(sequential.b3.gradA))).toBe(false);
    expectMatchesReference(sequential.f1, sequential.b1, X.a, X.b, X.shape, {}, 0.5, 'sequential 1');
    expectMatchesReference(sequential.f2, sequential.b2, Y.a, Y.b, Y.shape, {}, 1, 'sequential 2');
    expectMatchesReference(sequential.f3, sequential.b3, Z.a, Z.b, Z.shape, {}, -2, 'sequential 3');

    for (let round = 0; round < 5; round++) {
      const inFlight = [
        vic.forward(X.a, X.b, X.shape), vic.backward(0.5),
        vic.forward(Y.a, Y.b, Y.shape), vic.backward(),
        vic.forward(Z.a, Z.b, Z.shape), vic.backward(-2),
      ] as const;
      const [f1, b1, f2, b2, f3, b3] = await Promise.all(inFlight);
      expectSameTerms(f1, sequential.f1, `round ${round} f1`);
      expectSameGradients(b1, sequential.b1, `round ${round} b1`);
      expectSameTerms(f2, sequential.f2, `round ${round} f2`);
      expectSameGradients(b2, sequential.b2, `round ${round} b2`);
      expectSameTerms(f3, sequential.f3, `round ${round} f3`);
      expectSameGradients(b3, sequential.b3, `round ${round} b3`);
    }
  });

  it('a failing call in the middle does not disturb the calls around it; backward after a { grad: false } forward rejects in order', async () => {
    const sequential = { f1: await vic.forward(X.a, X.b, X.shape), b1: await vic.backward(), f3: await vic.forward(Z.a, Z.b, Z.shape), b3: await vic.backward() };
    const bad = X.a.slice();
    bad[7] = Number.NaN;
    const calls = [
      vic.forward(X.a, X.b, X.shape), vic.backward(),
      vic.forward(bad, X.b, X.shape), vic.backward(), // rejects: NaN; then no forward to pair with
      vic.forward(Y.a, Y.b, Y.shape, { grad: false }), vic.backward(), // rejects: the forward kept no matrix
      vic.forward(Z.a, Z.b, Z.shape), vic.backward(),
    ];
    const outcomes = await Promise.allSettled(calls);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'rejected', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    const value = <T>(i: number) => (outcomes[i] as PromiseFulfilledResult<T>).value;
    expectSameTerms(value<VICRegTerms>(0), sequential.f1, 'f1');
    expectSameGradients(value<Gradients>(1), sequential.b1, 'b1');
    expect((outcomes[3] as PromiseRejectedResult).reason).toBeInstanceOf(StateError);
    expect((outcomes[5] as PromiseRejectedResult).reason).toBeInstanceOf(StateError);
    expectSameTerms(value<VICRegTerms>(6), sequential.f3, 'f3');
    expectSameGradients(value<Gradients>(7), sequential.b3, 'b3');
  });

  it('encode() calls in flight between forward/backward calls read their own terms and gradients, bitwise as alone', async () => {
    const device = vic.device;
    const own: GPUBuffer[] = [];
    cleanup.push(() => own.forEach((buffer) => buffer.destroy()));
    const upload = (data: Float32Array) => {
      const buffer = device.createBuffer({ size: data.byteLength, usage: 0x80 | 0x08 | 0x04 });
      device.queue.writeBuffer(buffer, 0, data as Float32Array<ArrayBuffer>);
      own.push(buffer);
      return buffer;
    };
    const download = async (buffer: GPUBuffer, floats: number) => {
      const staging = device.createBuffer({ size: floats * 4, usage: 0x01 | 0x08 });
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(buffer, 0, staging, 0, floats * 4);
      device.queue.submit([encoder.finish()]);
      await staging.mapAsync(1);
      const out = new Float32Array(staging.getMappedRange().slice(0));
      staging.destroy();
      return out;
    };
    const size = X.shape[0] * X.shape[1];
    const argsFor = (views: typeof X) => ({
      a: upload(views.a), b: upload(views.b), shape: views.shape, gradA: upload(new Float32Array(size)), gradB: upload(new Float32Array(size)),
    });
    // Alone.
    const aloneArgs = [argsFor(X), argsFor(Z)];
    const alone = [];
    for (const args of aloneArgs) {
      const terms = await (await vic.encode(args)).read();
      alone.push({ terms, gradA: await download(args.gradA, size), gradB: await download(args.gradB, size) });
    }
    const sequentialY = { f: await vic.forward(Y.a, Y.b, Y.shape), b: await vic.backward() };
    // In flight together with host calls on another shape.
    const mixedArgs = [argsFor(X), argsFor(Z)];
    const [e1, f, b, e2] = await Promise.all([vic.encode(mixedArgs[0]), vic.forward(Y.a, Y.b, Y.shape), vic.backward(), vic.encode(mixedArgs[1])]);
    const reads = await Promise.all([e1.read(), e2.read()]);
    expectSameTerms(f, sequentialY.f, 'forward between encodes');
    expectSameGradients(b, sequentialY.b, 'backward between encodes');
    for (const [i, args] of mixedArgs.entries()) {
      expectSameTerms(reads[i], alone[i].terms, `encode ${i} terms`);
      expectSameGradients({ gradA: await download(args.gradA, size), gradB: await download(args.gradB, size) }, alone[i], `encode ${i}`);
    }
    expectMatchesReference(reads[1], { gradA: alone[1].gradA, gradB: alone[1].gradB }, Z.a, Z.b, Z.shape, {}, 1, 'encode Z');
  });
});

describe('several instances on one device', () => {
  // Different coefficients per instance, so that mixing up their buffers or parameters would show.
  const configs = [
    {},
    { preset: 'official' as const, lambda: 5 },
    { mu: 3, nu: 7, gamma: 0.8, eps: 1e-3 },
    { form: 'primal' as const, lambda: 1, mu: 1, nu: 1 },
  ];
  const inputs = [{ shape: [48, 128] as Shape, ...randomViews(48, 128, 21) }, { shape: [90, 36] as Shape, ...randomViews(90, 36, 22) }];
  let instances: VICRegLoss[];
  beforeAll(async () => {
    const owner = await createVICRegLoss(configs[0]);
    instances = [owner, ...(await Promise.all(configs.slice(1).map((options) => createVICRegLoss({ ...options, device: owner.device }))))];
    cleanup.push(() => instances.forEach((vic) => vic.destroy()));
  });

  /** Each instance: forward + backward on every input, awaited one by one within the instance. */
  const run = (vic: VICRegLoss) => Promise.all(inputs.map(({ a, b, shape }) => Promise.all([vic.forward(a, b, shape), vic.backward(1.5)])));

  it('used concurrently, each gives bitwise the results it gives alone', async () => {
    const alone = [];
    for (const vic of instances) alone.push(await run(vic));
    for (const [k, vic] of instances.entries()) {
      expect(vic.device).toBe(instances[0].device);
      for (const [i, { a, b, shape }] of inputs.entries()) {
        const [terms, grads] = alone[k][i];
        expectMatchesReference(terms, grads, a, b, shape, configs[k], 1.5, `instance ${k} input ${i}`);
      }
    }
    // Different coefficients give different losses: a mix-up could not pass unnoticed.
    expect(new Set(alone.map((results) => results[0][0].loss)).size).toBe(instances.length);

    for (let round = 0; round < 3; round++) {
      const together = await Promise.all(instances.map(run));
      for (const [k] of instances.entries()) {
        for (const [i] of inputs.entries()) {
          expectSameTerms(together[k][i][0], alone[k][i][0], `round ${round} instance ${k} input ${i}`);
          expectSameGradients(together[k][i][1], alone[k][i][1], `round ${round} instance ${k} input ${i}`);
        }
      }
    }
  });

  it('destroying one while the others have calls in flight leaves the others correct', async () => {
    const [owner, ...borrowers] = instances;
    const expected = await Promise.all(borrowers.map(run));
    const extra = await createVICRegLoss({ device: owner.device, lambda: 2 });
    const inFlight = borrowers.map(run);
    const extraCall = extra.forward(inputs[0].a, inputs[0].b, inputs[0].shape);
    extra.destroy(); // a borrower's destroy() must not touch the shared device
    // Made before destroy(): it may run or be refused, but it must settle, and only with a StateError.
    const [extraOutcome] = await Promise.allSettled([extraCall]);
    if (extraOutcome.status === 'rejected') expect(extraOutcome.reason).toBeInstanceOf(StateError);
    await expect(extra.forward(inputs[0].a, inputs[0].b, inputs[0].shape)).rejects.toBeInstanceOf(StateError);
    const results = await Promise.all(inFlight);
    for (const [k, result] of results.entries()) {
      for (const [i] of inputs.entries()) {
        expectSameTerms(result[i][0], expected[k][i][0], `borrower ${k} input ${i}`);
        expectSameGradients(result[i][1], expected[k][i][1], `borrower ${k} input ${i}`);
      }
    }
  });
});

describe("encode() into a caller's encoder, with calls made before the caller submits", () => {
  // The encoded work is not submitted yet when these calls come: the engine keeps the buffers it uses
  // alive, and read() says when it came too early.
  const shape: Shape = [16, 40];
  const other: Shape = [30, 20];
  const views = randomViews(...shape, 41);
  const otherViews = randomViews(...other, 42);

  async function setup() {
    const vic = await createVICRegLoss();
    cleanup.push(() => vic.destroy());
    const device = vic.device;
    const upload = (data: Float32Array) => {
      const buffer = device.createBuffer({ size: data.byteLength, usage: 0x80 | 0x08 | 0x04 });
      device.queue.writeBuffer(buffer, 0, data as Float32Array<ArrayBuffer>);
      cleanup.push(() => buffer.destroy());
      return buffer;
    };
    const size = shape[0] * shape[1];
    const args = { a: upload(views.a), b: upload(views.b), shape, gradA: upload(new Float32Array(size)), gradB: upload(new Float32Array(size)) };
    return { vic, device, args };
  }

  it('a forward of another shape before the submit keeps the buffers the encoded work uses alive', async () => {
    const { vic, device, args } = await setup();
    const encoder = device.createCommandEncoder();
    const pending = await vic.encode({ ...args, encoder });
    await vic.forward(otherViews.a, otherViews.b, other); // another shape: a new workspace; the old one waits
    device.queue.submit([encoder.finish()]);
    expectMatchesReference(await pending.read(), undefined, views.a, views.b, shape, {}, 1, 'read()');
  });

  it('read() before the caller submits rejects with a StateError; after the submit it gives the terms', async () => {
    const { vic, device, args } = await setup();
    const encoder = device.createCommandEncoder();
    const pending = await vic.encode({ ...args, encoder });
    await expect(pending.read()).rejects.toThrow(/read\(\) came before the work of this encode\(\) ran/);
    device.queue.submit([encoder.finish()]);
    expectMatchesReference(await pending.read(), undefined, views.a, views.b, shape, {}, 1, 'read() after submit');
  });

  it('the same calls in the documented order (submit, then the other shape) are right', async () => {
    const { vic, device, args } = await setup();
    const encoder = device.createCommandEncoder();
    const pending = await vic.encode({ ...args, encoder });
    device.queue.submit([encoder.finish()]);
    await vic.forward(otherViews.a, otherViews.b, other);
    expectMatchesReference(await pending.read(), undefined, views.a, views.b, shape, {}, 1, 'read()');
  });
});

describe('repeated runs are bitwise identical', () => {
  // CI: 100 runs per case. Full: VICREG_CONCURRENCY_FULL=1 npx vitest run test/concurrency.test.ts
  // (1,000 runs per case, and a third shape, 256 x 1024, at 200 runs; about 7 minutes here).
  const FULL = process.env.VICREG_CONCURRENCY_FULL === '1';
  const runsAt = ([n, d]: Shape) => (!FULL ? 100 : n * d > 100_000 ? 200 : 1_000);
  // d % 4 == 0 for the subgroup variant; n < d, so dual is the cheaper form. 129 x 260: not a multiple
  // of any tile. Each shape's runs use one input.
  const shapes: Shape[] = FULL ? [[33, 64], [129, 260], [256, 1024]] : [[33, 64], [129, 260]];
  const cases: { variant: Variant; form: Form; views: 'random' | 'dominant'; shape: Shape }[] = [];
  // Every variant of the registry, in each form it has kernels of its own for (a fallback from the dual
  // form runs its primal kernels, or its stand-in's).
  for (const shape of shapes) {
    for (const { name: variant, forms } of VARIANTS) {
      for (const form of FORMS) if (forms[form]) cases.push({ variant, form, views: 'random', shape });
      // One feature x300: the dual form's off-diagonal share is tiny, so it falls back to primal.
      if (forms.dual) cases.push({ variant, form: 'dual', views: 'dominant', shape });
    }
  }

  for (const { variant, form, views, shape } of cases) {
    const fallback = views === 'dominant';
    const RUNS = runsAt(shape);
    const why = cannotRun(variant, form, ...shape) ?? (fallback ? cannotRun(variant, 'primal', ...shape) : undefined);
    it.skipIf(why)(titled(`${RUNS} runs at ${shape.join(' x ')}, variant ${variant}, form ${form}${fallback ? ' falling back to primal (one dominant feature)' : ''}: same loss, terms and gradients, bit for bit`, why), async () => {
      const vic = await createVICRegLoss({ variant, form });
      cleanup.push(() => vic.destroy());
      const { a, b } = fallback ? dominantFeatureViews(...shape, 31) : randomViews(...shape, 30);
      const first = { terms: await vic.forward(a, b, shape), grads: await vic.backward() };
      expect(vic.lastPlan).toMatchObject({ variant: runsFor(variant, fallback ? 'primal' : form).name, form: fallback ? 'primal' : form, fellBack: fallback });
      expectMatchesReference(first.terms, first.grads, a, b, shape, {}, 1, `${variant} ${form}`);
      const differing: number[] = [];
      for (let run = 1; run < RUNS; run++) {
        const terms = await vic.forward(a, b, shape);
        const grads = await vic.backward();
        const same = TERMS.every((name) => Object.is(terms[name], first.terms[name]))
          && bits(grads.gradA).equals(bits(first.grads.gradA)) && bits(grads.gradB).equals(bits(first.grads.gradB));
        if (!same) differing.push(run);
      }
      expect(differing, 'runs whose results differ from the first in any bit').toEqual([]);
    }, FULL ? 600_000 : 120_000);
  }
});
