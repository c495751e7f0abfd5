// GPU-resident use: forward on GPUBuffers, backward returning GPUBuffers, and the no-sync encode() path
// writing into caller-owned gradient buffers (poisoned with NaN first, so an unwritten element fails),
// overwrite and accumulate, the upstream scale as a number and as a device value, lazy reads, several
// calls in flight, the device-side dual -> primal fallback, and bad buffers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BufferError, bufferCounts, createVICRegLoss, LimitError, NonFiniteError, ShapeError, type VICRegLoss, type VICRegTerms } from '../src/index.js';
import { dominantFeatureViews, randomViews, referenceVICReg, relativeError, relativeNormError, scaled } from './reference/float64.js';
import { cannotRun, titled } from './reference/adapter.js';

const STORAGE = 0x80, COPY_SRC = 0x04, COPY_DST = 0x08, MAP_READ = 0x01;
const TERMS = ['loss', 'invariance', 'variance', 'covariance'] as const;

let vic: VICRegLoss;
let device: GPUDevice;
beforeAll(async () => {
  vic = await createVICRegLoss({ poisonScratch: true });
  device = vic.device;
});
afterAll(() => vic?.destroy());

const live: GPUBuffer[] = [];
afterAll(() => live.forEach((b) => b.destroy()));

function upload(data: Float32Array, usage = STORAGE | COPY_SRC | COPY_DST): GPUBuffer {
  const buffer = device.createBuffer({ size: data.byteLength, usage });
  device.queue.writeBuffer(buffer, 0, data as Float32Array<ArrayBuffer>);
  live.push(buffer);
  return buffer;
}

async function download(buffer: GPUBuffer, floats: number): Promise<Float32Array> {
  const staging = device.createBuffer({ size: floats * 4, usage: MAP_READ | COPY_DST });
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(buffer, 0, staging, 0, floats * 4);
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(1);
  const out = new Float32Array(staging.getMappedRange().slice(0));
  staging.destroy();
  return out;
}

function expectTerms(terms: VICRegTerms, reference: VICRegTerms, label: string) {
  for (const name of TERMS) expect(relativeError(terms[name], reference[name]), `${label} ${name}`).toBeLessThan(1e-5);
}

describe('forward and backward on GPUBuffers', () => {
  it('match the host path and the reference; gradients stay on the device', async () => {
    const [n, d] = [37, 120];
    const { a, b } = randomViews(n, d, 11);
    const terms = await vic.forward(upload(a), upload(b), [n, d]);
    const reference = referenceVICReg(a, b, [n, d]);
    expectTerms(terms, reference, 'resident');
    const { gradA, gradB } = await vic.backward<GPUBuffer>(2);
    expect(gradA.size).toBeGreaterThanOrEqual(n * d * 4);
    expect(relativeNormError(await download(gradA, n * d), scaled(reference.gradA, 2))).toBeLessThan(1e-4);
    expect(relativeNormError(await download(gradB, n * d), scaled(reference.gradB, 2))).toBeLessThan(1e-4);
    // The host path on the same inputs gives bitwise the same terms.
    expect(await vic.forward(a, b, [n, d])).toEqual(terms);
  });

  it('reject buffers that are too small or not STORAGE, and mixed inputs, with typed errors', async () => {
    const { a, b } = randomViews(4, 8, 12);
    await expect(vic.forward(upload(a.subarray(0, 31)), upload(b), [4, 8])).rejects.toThrow(BufferError);
    await expect(vic.forward(upload(a.subarray(0, 31)), upload(b), [4, 8])).rejects.toThrow(/A is a GPUBuffer of 124 bytes.*needs n\*d\*4 = 128/);
    await expect(vic.forward(upload(a, COPY_DST), upload(b), [4, 8])).rejects.toThrow(/without STORAGE usage/);
    await expect(vic.forward(upload(a), b, [4, 8])).rejects.toThrow(ShapeError);
    expectTerms(await vic.forward(upload(a), upload(b), [4, 8]), referenceVICReg(a, b, [4, 8]), 'after errors');
    // Host arrays to copy into make no sense when the gradients stay on the device.
    await expect(vic.backward(1, { out: { gradA: new Float32Array(32), gradB: new Float32Array(32) } })).rejects.toThrow(/after a forward on GPUBuffers the gradients stay on the device/);
    expect((await vic.backward<GPUBuffer>()).gradA.size).toBeGreaterThanOrEqual(4 * 8 * 4);
  });
});

describe('encode(): forward and backward with no wait on the device', () => {
  const poisoned = (floats: number) => upload(new Float32Array(floats).fill(NaN));

  it('overwrites caller-owned gradients (poisoned first) and leaves the terms to read lazily', async () => {
    for (const [n, d] of [[30, 100], [100, 30], [64, 256]] as const) {
      const { a, b } = randomViews(n, d, n + d);
      const gradA = poisoned(n * d), gradB = poisoned(n * d);
      const pending = await vic.encode({ a: upload(a), b: upload(b), shape: [n, d], gradA, gradB, scale: -0.5 });
      const reference = referenceVICReg(a, b, [n, d]);
      expectTerms(await pending.read(), reference, `${n}x${d}`);
      expect(await pending.read()).toEqual(await pending.read());
      expect(relativeNormError(await download(gradA, n * d), scaled(reference.gradA, -0.5)), `${n}x${d} gradA`).toBeLessThan(1e-4);
      expect(relativeNormError(await download(gradB, n * d), scaled(reference.gradB, -0.5)), `${n}x${d} gradB`).toBeLessThan(1e-4);
    }
  });

  // The shuffle variant forced: its dual gradient runs column group by column group ('auto' takes 'windows'
  // on lavapipe, which test/windows.test.ts covers).
  const panelsWhy = cannotRun('shuffle', 'dual', 520, 1156);
  it.skipIf(panelsWhy)(titled('with column panels (n >= 512; the dual backward then runs group by group on indirect arguments): bitwise the host path', panelsWhy), async () => {
    const [n, d] = [520, 1156];
    const sub = await createVICRegLoss({ poisonScratch: true, variant: 'shuffle', device });
    try {
      const { a, b } = randomViews(n, d, 77);
      const gradA = poisoned(n * d), gradB = poisoned(n * d);
      const pending = await sub.encode({ a: upload(a), b: upload(b), shape: [n, d], gradA, gradB, scale: -0.5 });
      const terms = await pending.read();
      expect({ ...(await sub.forward(a, b, [n, d])), gradientOverflow: false }).toEqual(terms);
      expect(sub.lastPlan).toMatchObject({ form: 'dual', fellBack: false, variant: 'shuffle' });
      const host = await sub.backward(-0.5);
      expect(Buffer.from((await download(gradA, n * d)).buffer).equals(Buffer.from(host.gradA.buffer))).toBe(true);
      expect(Buffer.from((await download(gradB, n * d)).buffer).equals(Buffer.from(host.gradB.buffer))).toBe(true);
    } finally {
      sub.destroy();
    }
  });

  it('accumulates into the gradients, with the scale given as a device value', async () => {
    const [n, d] = [21, 52];
    const { a, b } = randomViews(n, d, 31);
    const before = randomViews(n, d, 32);
    const gradA = upload(before.a), gradB = upload(before.b);
    const scale = upload(new Float32Array([3]));
    const pending = await vic.encode({ a: upload(a), b: upload(b), shape: [n, d], gradA, gradB, scale, accumulate: true });
    await pending.read();
    const reference = referenceVICReg(a, b, [n, d]);
    const expectedA = Float64Array.from(reference.gradA, (g, i) => before.a[i] + 3 * g);
    const expectedB = Float64Array.from(reference.gradB, (g, i) => before.b[i] + 3 * g);
    expect(relativeNormError(await download(gradA, n * d), expectedA)).toBeLessThan(1e-5);
    expect(relativeNormError(await download(gradB, n * d), expectedB)).toBeLessThan(1e-5);
  });

  it('keeps several calls in flight in one caller encoder; each reads its own terms', async () => {
    const [n, d] = [16, 40];
    const batches = [41, 42, 43].map((seed) => randomViews(n, d, seed));
    const encoder = device.createCommandEncoder();
    const pendings = [];
    for (const { a, b } of batches) {
      pendings.push(await vic.encode({ a: upload(a), b: upload(b), shape: [n, d], gradA: poisoned(n * d), gradB: poisoned(n * d), encoder }));
    }
    device.queue.submit([encoder.finish()]);
    const results = await Promise.all(pendings.map((p) => p.read()));
    results.forEach((terms, i) => expectTerms(terms, referenceVICReg(batches[i].a, batches[i].b, [n, d]), `call ${i}`));
  });

  it('falls back from the dual to the primal form on the device (one feature x300, n = d/8)', async () => {
    const [n, d] = [32, 256];
    const { a, b } = dominantFeatureViews(n, d, 51);
    const gradA = poisoned(n * d), gradB = poisoned(n * d);
    const pending = await vic.encode({ a: upload(a), b: upload(b), shape: [n, d], gradA, gradB });
    const reference = referenceVICReg(a, b, [n, d]);
    expectTerms(await pending.read(), reference, 'fallback');
    expect(relativeNormError(await download(gradA, n * d), reference.gradA)).toBeLessThan(1e-4);
  });

  it("with encodeFallback 'none': keeps no primal matrices, is exact on ordinary input, and rejects at read() where the dual form lost accuracy", async () => {
    const lean = await createVICRegLoss({ encodeFallback: 'none', poisonScratch: true });
    const standby = await createVICRegLoss({ poisonScratch: true, device: lean.device });
    try {
      const [n, d] = [32, 256];
      const uploadTo = (x: Float32Array) => {
        const buffer = lean.device.createBuffer({ size: x.byteLength, usage: STORAGE | COPY_SRC | COPY_DST });
        lean.device.queue.writeBuffer(buffer, 0, x as Float32Array<ArrayBuffer>);
        live.push(buffer);
        return buffer;
      };
      const grads = () => [lean.device.createBuffer({ size: n * d * 4, usage: STORAGE | COPY_SRC | COPY_DST }), lean.device.createBuffer({ size: n * d * 4, usage: STORAGE | COPY_SRC | COPY_DST })];
      // Ordinary input: the dual form is accurate; the same terms as with the primal form on standby.
      const { a, b } = randomViews(n, d, 52);
      const [ga, gb] = grads();
      live.push(ga, gb);
      const ordinary = await (await lean.encode({ a: uploadTo(a), b: uploadTo(b), shape: [n, d], gradA: ga, gradB: gb })).read();
      expectTerms(ordinary, referenceVICReg(a, b, [n, d]), 'ordinary');
      // With the primal form on standby, the engine holds the packed d x d matrices too (d^2 + d floats).
      const before = bufferCounts.bytes;
      const [sa, sb] = grads();
      live.push(sa, sb);
      const sameOnStandby = await (await standby.encode({ a: uploadTo(a), b: uploadTo(b), shape: [n, d], gradA: sa, gradB: sb })).read();
      expectTerms(sameOnStandby, referenceVICReg(a, b, [n, d]), 'standby');
      expect(bufferCounts.bytes - before, 'standby keeps the primal packed matrix').toBeGreaterThanOrEqual((d * d + d) * 4);
      // Diagonal-dominated input: the dual form cannot be trusted, and there is no fallback.
      const dominant = dominantFeatureViews(n, d, 53);
      const [da, db] = grads();
      live.push(da, db);
      const pending = await lean.encode({ a: uploadTo(dominant.a), b: uploadTo(dominant.b), shape: [n, d], gradA: da, gradB: db });
      await expect(pending.read()).rejects.toThrow(/encodeFallback is 'none'/);
      await expect(pending.read()).rejects.toBeInstanceOf(LimitError);
    } finally {
      lean.destroy();
      standby.destroy();
    }
  });

  it('rejects at read() a non-finite input, naming view, row and column', async () => {
    const [n, d] = [6, 12];
    const { a, b } = randomViews(n, d, 61);
    b[4 * d + 7] = Infinity;
    const pending = await vic.encode({ a: upload(a), b: upload(b), shape: [n, d], gradA: poisoned(n * d), gradB: poisoned(n * d) });
    await expect(pending.read()).rejects.toThrow(NonFiniteError);
    await expect(pending.read()).rejects.toMatchObject({ view: 'B', row: 4, column: 7 });
  });

  it('validates its buffers', async () => {
    const { a, b } = randomViews(4, 8, 71);
    const ok = { a: upload(a), b: upload(b), shape: [4, 8] as const, gradA: poisoned(32), gradB: poisoned(32) };
    await expect(vic.encode({ ...ok, gradA: poisoned(31) })).rejects.toThrow(/gradA is a GPUBuffer of 124 bytes/);
    await expect(vic.encode({ ...ok, gradB: upload(new Float32Array(32), COPY_DST) })).rejects.toThrow(/gradB .*without STORAGE/);
    await expect(vic.encode({ ...ok, a: a as unknown as GPUBuffer })).rejects.toThrow(/encode\(\) takes GPUBuffers/);
    await expect(vic.encode({ ...ok, scale: NaN })).rejects.toThrow(/scale must be a finite number/);
    expectTerms(await (await vic.encode(ok)).read(), referenceVICReg(a, b, [4, 8]), 'after errors');
  });
});
