// Soak: many forward/backward/encode calls on one instance must not leak (the engine's own GPU buffers,
// counted exactly by `bufferCounts`, and process memory) and must not drift (every iteration returns
// bitwise the same terms and gradients as the first, which match the float64 reference).
//
// CI size (default, ~15 s here): 3,000 iterations at 8 x 16 and 100 at 128 x 512.
// Full size:   VICREG_SOAK_FULL=1 npx vitest run test/soak.test.ts
//              10,000 iterations at 8 x 16 and 200 at 256 x 2048 (about a minute on lavapipe).
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';
import { bufferCounts, createVICRegLoss, NonFiniteError, OverflowError, ShapeError, type VICRegLoss, type VICRegTerms } from '../src/index.js';
import { randomViews, referenceVICReg, relativeError, relativeNormError } from './reference/float64.js';

const FULL = process.env.VICREG_SOAK_FULL === '1';
type Shape = [number, number];

/** `warmup`: iterations before the memory baseline is taken (see RSS_GROWTH_BOUND). */
const SMALL = { shape: [8, 16] as Shape, iterations: FULL ? 10_000 : 3_000, warmup: 1_000 };
const LARGE = { shape: (FULL ? [256, 2048] : [128, 512]) as Shape, iterations: FULL ? 200 : 100, warmup: 5 };
const TIMEOUT = FULL ? 900_000 : 120_000;

/**
 * Bound on rss growth (after a full GC) from the end of warm-up to the last iteration. rss is not
 * flat from the start even with no leak: Dawn's and lavapipe's allocator pools and glibc's arenas grow
 * for the first ~1,000 small iterations (measured: +25 to +55 MiB under vitest, and +40 MiB with no
 * engine at all, a bare Dawn copy + mapAsync loop), then stay within +-8 MiB (measured over 40,000
 * iterations at 8 x 16: 207 to 215 MiB). So the baseline is taken after 1,000 iterations, and 64 MiB
 * leaves ample room for that noise and for other processes' pressure on a loaded 2-core machine,
 * while a native leak of 32 KiB per iteration (CI) or 7 KiB (full run) crosses it.
 */
const RSS_GROWTH_BOUND = 64 * 2 ** 20;
/**
 * Bound on `external` growth (after a full GC): ArrayBuffers held outside the V8 heap, such as the
 * gradient arrays returned by backward(). After GC it is flat to within a few KiB here, so 1 MiB is
 * tight enough to catch the engine keeping each iteration's gradients (2 x 512 B x 2,000 iterations at
 * 8 x 16 = 2 MiB; 2 x 256 KiB per iteration at 128 x 512).
 */
const EXTERNAL_GROWTH_BOUND = 2 ** 20;

// A full GC before each memory sample, so that garbage not yet collected (the returned gradient
// arrays) does not read as growth. `--expose-gc` cannot be passed to vitest's workers from this file,
// so it is set at run time with v8.setFlagsFromString and the gc function taken from a new context
// (Node documents flag changes after start-up as unsupported; this one works on Node 20 and 22, and a
// Node where it does not fails here loudly rather than measuring uncollected garbage).
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

interface MemorySample { rss: number; external: number }
function memory(): MemorySample {
  gc();
  gc();
  const { rss, external } = process.memoryUsage();
  return { rss, external };
}

const snapshot = () => ({ live: bufferCounts.live, bytes: bufferCounts.bytes });
const sameBits = (x: Float32Array, y: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(y.buffer, y.byteOffset, y.byteLength));
const TERMS = ['loss', 'invariance', 'variance', 'covariance'] as const;

function expectMatchesReference(terms: VICRegTerms, grads: { gradA: Float32Array; gradB: Float32Array }, a: Float32Array, b: Float32Array, shape: Shape, label: string) {
  const reference = referenceVICReg(a, b, shape);
  for (const name of TERMS) expect(relativeError(terms[name], reference[name]), `${label} ${name}`).toBeLessThan(1e-5);
  expect(relativeNormError(grads.gradA, reference.gradA), `${label} gradA`).toBeLessThan(1e-4);
  expect(relativeNormError(grads.gradB, reference.gradB), `${label} gradB`).toBeLessThan(1e-4);
}

const MiB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const log: string[] = [];
afterAll(() => {
  if (log.length > 0) console.log(`soak (${FULL ? 'full' : 'CI'} size):\n  ${log.join('\n  ')}`);
});

/**
 * Runs forward + backward `iterations` times on one input and returns the iterations at which anything
 * drifted: bufferCounts (live or bytes) different from after the first iteration, or terms/gradients
 * not bitwise equal to the first ones. Collected, not asserted per iteration, so a failure names them all.
 */
async function soak(vic: VICRegLoss, shape: Shape, iterations: number, warmup: number) {
  const { a, b } = randomViews(...shape, 17);
  const first = { terms: await vic.forward(a, b, shape), grads: await vic.backward() };
  expectMatchesReference(first.terms, first.grads, a, b, shape, `${shape.join('x')} first iteration`);
  const counts = snapshot();
  const countDrift: number[] = [];
  const resultDrift: number[] = [];
  let baseline = memory();
  const trace: string[] = [];
  const start = performance.now();
  for (let i = 1; i < iterations; i++) {
    const terms = await vic.forward(a, b, shape);
    const grads = await vic.backward();
    if (bufferCounts.live !== counts.live || bufferCounts.bytes !== counts.bytes) countDrift.push(i);
    if (!TERMS.every((name) => Object.is(terms[name], first.terms[name])) || !sameBits(grads.gradA, first.grads.gradA) || !sameBits(grads.gradB, first.grads.gradB)) {
      resultDrift.push(i);
    }
    if (i === warmup) baseline = memory();
    if (i % Math.ceil(iterations / 10) === 0) trace.push(`${i}: ${MiB(memory().rss)}`);
  }
  const end = memory();
  const growth = { rss: end.rss - baseline.rss, external: end.external - baseline.external };
  log.push(`${shape.join('x')}: ${iterations} iterations in ${((performance.now() - start) / 1000).toFixed(1)} s; buffers ${counts.live} live, ${counts.bytes} bytes; `
    + `growth from iteration ${warmup}: rss ${MiB(growth.rss)}, external ${MiB(growth.external)}; rss by iteration: ${trace.join(', ')}`);
  return { countDrift, resultDrift, growth, counts };
}

/** A 4 x 8 batch and two gradient buffers on the instance's device, for an encode() call. */
function uploadEncodeArgs(vic: VICRegLoss): GPUBuffer[] {
  const { a, b } = randomViews(4, 8, 6);
  return [a, b, new Float32Array(32), new Float32Array(32)].map((data) => {
    const buffer = vic.device.createBuffer({ size: data.byteLength, usage: 0x80 | 0x08 | 0x04 });
    vic.device.queue.writeBuffer(buffer, 0, data as Float32Array<ArrayBuffer>);
    return buffer;
  });
}

describe('soak: repeated forward + backward on one instance', () => {
  for (const [name, { shape, iterations, warmup }] of [['small', SMALL], ['large', LARGE]] as const) {
    it(`${iterations} iterations at ${shape.join(' x ')} (${name}): buffer counts exactly flat, memory flat, results bitwise stable`, async () => {
      const before = snapshot();
      const vic = await createVICRegLoss();
      try {
        const { countDrift, resultDrift, growth, counts } = await soak(vic, shape, iterations, warmup);
        expect(counts.live).toBeGreaterThan(before.live); // the check below watches something real
        expect(countDrift, 'iterations whose bufferCounts differ from after the first').toEqual([]);
        expect(resultDrift, 'iterations whose results differ (bitwise) from the first').toEqual([]);
        expect(growth.rss).toBeLessThan(RSS_GROWTH_BOUND);
        expect(growth.external).toBeLessThan(EXTERNAL_GROWTH_BOUND);
      } finally {
        vic.destroy();
      }
      expect(snapshot()).toEqual(before);
    }, TIMEOUT);
  }

  it('error paths (non-finite input, overflow, bad shape, grad: false then backward) leak nothing', async () => {
    const shape: Shape = [8, 16];
    const { a, b } = randomViews(...shape, 23);
    const withNaN = a.slice();
    withNaN[5 * 16 + 3] = Number.NaN;
    const huge = a.map((x) => x * 1e12); // finite in float32; the covariance sums overflow
    const vic = await createVICRegLoss();
    try {
      const good = { terms: await vic.forward(a, b, shape), grads: await vic.backward() };
      // One round of every failure first: each may allocate its lazily made buffers once.
      const failures = async () => {
        await expect(vic.forward(withNaN, b, shape)).rejects.toBeInstanceOf(NonFiniteError);
        await expect(vic.forward(huge, b, shape)).rejects.toBeInstanceOf(OverflowError);
        await expect(vic.forward(a.subarray(1), b, shape)).rejects.toBeInstanceOf(ShapeError);
        await vic.forward(a, b, shape, { grad: false });
        await expect(vic.backward()).rejects.toThrow(/grad: false/);
      };
      await failures();
      await vic.forward(a, b, shape);
      await vic.backward();
      const counts = snapshot();
      const rounds = FULL ? 1_000 : 200;
      const drift: number[] = [];
      for (let round = 0; round < rounds; round++) {
        await failures();
        const terms = await vic.forward(a, b, shape);
        const grads = await vic.backward();
        if (bufferCounts.live !== counts.live || bufferCounts.bytes !== counts.bytes) drift.push(round);
        expect(terms).toEqual(good.terms);
        expect(sameBits(grads.gradA, good.grads.gradA)).toBe(true);
      }
      expect(drift).toEqual([]);
    } finally {
      vic.destroy();
    }
  }, TIMEOUT);
});

describe('shape changes between calls', () => {
  it('growing, shrinking and back: counts return to the same values for the same shape, results stay exact', async () => {
    // Each shape's workspace replaces the previous one; revisiting a shape must allocate exactly what
    // its first visit did and give bitwise the same results (and those match the reference).
    const path: Shape[] = [[8, 16], [64, 256], [128, 512], [64, 256], [8, 16], [2, 1], [300, 40], [8, 16], [128, 512], [2, 1], [8, 16]];
    const before = snapshot();
    const vic = await createVICRegLoss();
    const seen = new Map<string, { counts: ReturnType<typeof snapshot>; terms: VICRegTerms; gradA: Float32Array; gradB: Float32Array }>();
    try {
      for (const [step, shape] of path.entries()) {
        const key = shape.join('x');
        const { a, b } = randomViews(...shape, 100 + shape[0] + shape[1]);
        const terms = await vic.forward(a, b, shape);
        const { gradA, gradB } = await vic.backward();
        const counts = snapshot();
        const first = seen.get(key);
        if (!first) {
          expectMatchesReference(terms, { gradA, gradB }, a, b, shape, `step ${step} ${key}`);
          seen.set(key, { counts, terms, gradA, gradB });
          continue;
        }
        expect(counts, `step ${step} ${key}: buffer counts`).toEqual(first.counts);
        expect(terms, `step ${step} ${key}: terms`).toEqual(first.terms);
        expect(sameBits(gradA, first.gradA) && sameBits(gradB, first.gradB), `step ${step} ${key}: gradients bitwise`).toBe(true);
      }
      // The shapes really do allocate different amounts (else the count check would be vacuous).
      expect(new Set([...seen.values()].map((s) => s.counts.bytes)).size).toBe(seen.size);
    } finally {
      vic.destroy();
    }
    expect(snapshot()).toEqual(before);
  });
});

describe('destroy()', () => {
  it('returns bufferCounts to what they were before create, after every kind of call', async () => {
    const before = snapshot();
    const vic = await createVICRegLoss();
    const device = vic.device;
    const { a, b } = randomViews(37, 120, 5);
    await vic.forward(a, b, [37, 120]);
    await vic.backward(0.5);
    await vic.forward(a.subarray(0, 20 * 37), b.subarray(0, 20 * 37), [20, 37], { grad: false });
    // GPUBuffer inputs and encode(); the test's own buffers are not counted by bufferCounts.
    const upload = (data: Float32Array) => {
      const buffer = device.createBuffer({ size: data.byteLength, usage: 0x80 | 0x08 | 0x04 });
      device.queue.writeBuffer(buffer, 0, data as Float32Array<ArrayBuffer>);
      return buffer;
    };
    const [ga, gb, gradA, gradB] = [upload(a), upload(b), upload(new Float32Array(a.length)), upload(new Float32Array(a.length))];
    await vic.forward(ga, gb, [37, 120]);
    await vic.backward<GPUBuffer>();
    await (await vic.encode({ a: ga, b: gb, shape: [37, 120], gradA, gradB })).read();
    (await vic.encode({ a: ga, b: gb, shape: [37, 120], gradA, gradB })).release();
    expect(bufferCounts.live).toBeGreaterThan(before.live);
    vic.destroy();
    expect(snapshot()).toEqual(before);
    vic.destroy(); // twice is harmless
    expect(snapshot()).toEqual(before);
    [ga, gb, gradA, gradB].forEach((buffer) => buffer.destroy());
  });

  it('an unread, unreleased encode() call: release() after destroy() still frees its buffers', async () => {
    const before = snapshot();
    const vic = await createVICRegLoss();
    const own = uploadEncodeArgs(vic);
    const unread = await vic.encode({ a: own[0], b: own[1], shape: [4, 8], gradA: own[2], gradB: own[3] });
    vic.destroy();
    unread.release();
    expect(snapshot()).toEqual(before);
  });

  // destroy() releases every buffer, an encode() call that was neither read nor released included.
  it('destroy() alone releases an unread encode() call', async () => {
    const before = snapshot();
    const vic = await createVICRegLoss();
    const own = uploadEncodeArgs(vic);
    await vic.encode({ a: own[0], b: own[1], shape: [4, 8], gradA: own[2], gradB: own[3] });
    vic.destroy();
    expect(snapshot()).toEqual(before);
  });
});

describe('encode(): many calls', () => {
  it('with read() and with release() leak nothing, and the gradients stay right', async () => {
    const shape: Shape = [33, 64];
    const [n, d] = shape;
    const before = snapshot();
    const vic = await createVICRegLoss();
    const device = vic.device;
    const own: GPUBuffer[] = [];
    const upload = (data: Float32Array) => {
      const buffer = device.createBuffer({ size: data.byteLength, usage: 0x80 | 0x08 | 0x04 });
      device.queue.writeBuffer(buffer, 0, data as Float32Array<ArrayBuffer>);
      own.push(buffer);
      return buffer;
    };
    const download = async (buffer: GPUBuffer) => {
      const staging = device.createBuffer({ size: n * d * 4, usage: 0x01 | 0x08 });
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(buffer, 0, staging, 0, n * d * 4);
      device.queue.submit([encoder.finish()]);
      await staging.mapAsync(1);
      const out = new Float32Array(staging.getMappedRange().slice(0));
      staging.destroy();
      return out;
    };
    try {
      const { a, b } = randomViews(n, d, 29);
      const args = { a: upload(a), b: upload(b), shape, gradA: upload(new Float32Array(n * d)), gradB: upload(new Float32Array(n * d)) };
      const first = await (await vic.encode(args)).read();
      const counts = snapshot(); // after the first call: the workspace and its forms exist
      const rounds = FULL ? 2_500 : 400;
      const warmup = 150; // rounds before the memory baseline (see RSS_GROWTH_BOUND)
      const drift: string[] = [];
      let baseline = memory();
      for (let round = 0; round < rounds; round++) {
        const read = await vic.encode(args);
        expect(await read.read()).toEqual(first);
        if (bufferCounts.live !== counts.live || bufferCounts.bytes !== counts.bytes) drift.push(`${round} read`);
        const released = await vic.encode(args);
        released.release();
        released.release(); // idempotent
        if (bufferCounts.live !== counts.live || bufferCounts.bytes !== counts.bytes) drift.push(`${round} release`);
        // Several in flight in the caller's encoder, then all released or read.
        const encoder = device.createCommandEncoder();
        const batch = [await vic.encode({ ...args, encoder }), await vic.encode({ ...args, encoder })];
        device.queue.submit([encoder.finish()]);
        batch[0].release();
        expect(await batch[1].read()).toEqual(first);
        if (bufferCounts.live !== counts.live || bufferCounts.bytes !== counts.bytes) drift.push(`${round} batch`);
        if (round === warmup) baseline = memory();
      }
      const end = memory();
      expect(drift).toEqual([]);
      expect(end.rss - baseline.rss).toBeLessThan(RSS_GROWTH_BOUND);
      expect(end.external - baseline.external).toBeLessThan(EXTERNAL_GROWTH_BOUND);
      log.push(`encode ${shape.join('x')}: ${rounds} rounds of 4 calls; growth from round ${warmup}: rss ${MiB(end.rss - baseline.rss)}, external ${MiB(end.external - baseline.external)}`);
      const reference = referenceVICReg(a, b, shape);
      expect(relativeError(first.loss, reference.loss)).toBeLessThan(1e-5);
      expect(relativeNormError(await download(args.gradA), reference.gradA)).toBeLessThan(1e-4);
      expect(relativeNormError(await download(args.gradB), reference.gradB)).toBeLessThan(1e-4);
    } finally {
      vic.destroy();
      own.forEach((buffer) => buffer.destroy());
    }
    expect(snapshot()).toEqual(before);
  });
});
