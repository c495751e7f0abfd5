// Device loss with calls in flight: every pending call settles (none hangs) with a DeviceError that says
// the device was lost, or with a correct result where it ran on a fresh device; no rejection goes
// unhandled; an instance that owns its device re-acquires one on its next call; an instance on a
// caller's device keeps rejecting; and a process that loses its device mid-flight still exits.
//
// The device is lost with `device.destroy()`, the one loss WebGPU lets a program cause on purpose.
// CI: ~15 s here. Full (more loss/recovery cycles): VICREG_DEVICE_LOSS_FULL=1 npx vitest run test/device-loss.test.ts
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { create } from 'webgpu';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { bufferCounts, createVICRegLoss, DeviceError, StateError, type VICRegLoss, type VICRegTerms } from '../src/index.js';
import { randomViews, referenceVICReg, relativeError, relativeNormError } from './reference/float64.js';

type Shape = [number, number];
/** How long a call may take to settle after the loss before it counts as hung (lavapipe is slow, but not this slow). */
const SETTLE_MS = 20_000;
const LOST = /device was lost/;
const TERMS = ['loss', 'invariance', 'variance', 'covariance'] as const;

type Settled<T> = { status: 'fulfilled'; value: T } | { status: 'rejected'; reason: unknown };

/** Settles `promise` or fails the test if it neither resolves nor rejects within SETTLE_MS. */
function settleWithin<T>(promise: Promise<T>, label: string): Promise<Settled<T>> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label} did not settle within ${SETTLE_MS} ms after the device was lost (hang)`)), SETTLE_MS);
  });
  const settled = promise.then((value) => ({ status: 'fulfilled' as const, value }), (reason: unknown) => ({ status: 'rejected' as const, reason }));
  return Promise.race([settled, hung]).finally(() => clearTimeout(timer));
}

function expectLostError(outcome: Settled<unknown>, label: string): DeviceError {
  expect(outcome.status, `${label} should reject`).toBe('rejected');
  const reason = (outcome as { reason: unknown }).reason;
  expect(reason, label).toBeInstanceOf(DeviceError);
  expect((reason as DeviceError).code).toBe('device');
  expect((reason as DeviceError).message, label).toMatch(LOST);
  expect((reason as DeviceError).message).not.toContain('\n');
  return reason as DeviceError;
}

/** The float64 reference, computed once per input array. */
const references = new WeakMap<Float32Array, ReturnType<typeof referenceVICReg>>();
function reference(a: Float32Array, b: Float32Array, shape: Shape) {
  let result = references.get(a);
  if (!result) references.set(a, (result = referenceVICReg(a, b, shape)));
  return result;
}

function expectTermsMatch(terms: VICRegTerms, a: Float32Array, b: Float32Array, shape: Shape, label: string) {
  const expected = reference(a, b, shape);
  for (const name of TERMS) expect(relativeError(terms[name], expected[name]), `${label} ${name}`).toBeLessThan(1e-5);
}

function expectGradientsMatch(grads: { gradA: Float32Array; gradB: Float32Array }, a: Float32Array, b: Float32Array, shape: Shape, label: string) {
  const expected = reference(a, b, shape);
  expect(relativeNormError(grads.gradA, expected.gradA), `${label} gradA`).toBeLessThan(1e-4);
  expect(relativeNormError(grads.gradB, expected.gradB), `${label} gradB`).toBeLessThan(1e-4);
}

// Every test runs with a listener for unhandled rejections and asserts, after giving stray promises a
// moment to settle, that it saw none. (A rejection the engine drops would be reported here.)
let unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeEach(() => {
  unhandled = [];
  process.on('unhandledRejection', onUnhandled);
});
afterEach(async () => {
  await new Promise((resolve) => setTimeout(resolve, 200));
  process.off('unhandledRejection', onUnhandled);
  expect(unhandled, 'unhandled rejections during the test').toEqual([]);
});

const cleanup: (() => void)[] = [];
afterAll(() => cleanup.forEach((dispose) => dispose()));

/**
 * Loses `device` right after its k-th queue submit from now on, while that work is on the GPU and its
 * readback pending: a deterministic "mid-flight" loss (a timer would race the calls). Returns the
 * number of submits seen so far.
 */
function loseDeviceAfterSubmit(device: GPUDevice, k: number): () => number {
  const queue = device.queue;
  const submit = queue.submit.bind(queue);
  let submits = 0;
  queue.submit = (buffers: Iterable<GPUCommandBuffer>) => {
    submit(buffers);
    if (++submits === k) device.destroy();
  };
  return () => submits;
}

/** Creates an instance, destroyed after all tests. */
async function instance(options: Parameters<typeof createVICRegLoss>[0] = {}): Promise<VICRegLoss> {
  const vic = await createVICRegLoss(options);
  cleanup.push(() => vic.destroy());
  return vic;
}

const SHAPE: Shape = [128, 512];
const INPUTS = [1, 2, 3].map((seed) => randomViews(...SHAPE, seed));

describe('an instance that owns its device', () => {
  it('calls fired with the loss: the one on the lost device rejects with a DeviceError saying so; later calls run on a new device', async () => {
    const vic = await instance();
    const [x, y, z] = INPUTS;
    await vic.forward(x.a, x.b, SHAPE);
    await vic.backward();
    const countsBefore = { live: bufferCounts.live, bytes: bufferCounts.bytes };
    const lostDevice = vic.device;

    // Fired together, none awaited; the device goes while the first forward is being encoded.
    const f1 = vic.forward(x.a, x.b, SHAPE);
    const b1 = vic.backward();
    const f2 = vic.forward(y.a, y.b, SHAPE);
    const b2 = vic.backward();
    lostDevice.destroy();
    const [rf1, rb1, rf2, rb2] = await Promise.all([
      settleWithin(f1, 'forward 1'), settleWithin(b1, 'backward 1'), settleWithin(f2, 'forward 2'), settleWithin(b2, 'backward 2'),
    ]);

    // The first forward ran on the lost device (the loss is noticed asynchronously, after it started):
    // it rejects, and so does the backward paired with it. (Were the loss noticed before it started,
    // it would run on a new device and be right, as would its backward; the deterministic version of
    // this is the next test.)
    if (rf1.status === 'rejected') {
      expectLostError(rf1, 'forward in flight');
      expectLostError(rb1, 'backward paired with the lost forward');
    } else {
      expectTermsMatch(rf1.value, x.a, x.b, SHAPE, 'forward 1');
      expect(rb1.status).toBe('fulfilled');
    }
    // Calls that start after the loss run on a freshly acquired device and are correct.
    expect(rf2.status).toBe('fulfilled');
    expect(rb2.status).toBe('fulfilled');
    if (rf2.status === 'fulfilled') expectTermsMatch(rf2.value, y.a, y.b, SHAPE, 'forward after the loss');
    if (rb2.status === 'fulfilled') expectGradientsMatch(rb2.value, y.a, y.b, SHAPE, 'backward after the loss');
    expect(vic.device).not.toBe(lostDevice);
    // The lost device's buffers were freed and the same shape allocated again: same counts as before.
    expect({ live: bufferCounts.live, bytes: bufferCounts.bytes }).toEqual(countsBefore);

    // And it keeps working: a third input, forward and backward.
    expectTermsMatch(await vic.forward(z.a, z.b, SHAPE), z.a, z.b, SHAPE, 'next forward');
    expectGradientsMatch(await vic.backward(), z.a, z.b, SHAPE, 'next backward');
  });

  it('a loss right after each call submits its GPU work: exactly that call (and a backward paired with it) rejects; the rest are right', async () => {
    // The engine makes one submit per forward and per backward here (warmed up: no variant trials).
    const shape: Shape = [64, 256];
    const views = [11, 12, 13].map((seed) => randomViews(...shape, seed));
    const CALLS = 6; // forward and backward of each of the three inputs
    for (let k = 1; k <= CALLS; k++) {
      const vic = await createVICRegLoss();
      try {
        await vic.forward(views[0].a, views[0].b, shape);
        await vic.backward();
        const lostDevice = vic.device;
        const submits = loseDeviceAfterSubmit(lostDevice, k);
        const calls = views.flatMap(({ a, b }) => [vic.forward(a, b, shape) as Promise<unknown>, vic.backward() as Promise<unknown>]);
        const outcomes = await Promise.all(calls.map((call, i) => settleWithin(call, `k = ${k}, call ${i}`)));
        expect(submits(), `k = ${k}: submits on the lost device`).toBe(k);
        const lostCall = k - 1;
        for (const [i, outcome] of outcomes.entries()) {
          const input = Math.floor(i / 2);
          const isForward = i % 2 === 0;
          const label = `k = ${k}: ${isForward ? 'forward' : 'backward'} of input ${input}`;
          // The call whose work was on the GPU rejects; so does the backward paired with a lost forward.
          if (i === lostCall || (i === lostCall + 1 && lostCall % 2 === 0)) {
            expectLostError(outcome, label);
            continue;
          }
          expect(outcome.status, label).toBe('fulfilled');
          const value = (outcome as { value: unknown }).value;
          const { a, b } = views[input];
          if (isForward) expectTermsMatch(value as VICRegTerms, a, b, shape, label);
          else expectGradientsMatch(value as { gradA: Float32Array; gradB: Float32Array }, a, b, shape, label);
        }
        // The next call runs on a new device.
        expectTermsMatch(await vic.forward(views[2].a, views[2].b, shape), views[2].a, views[2].b, shape, `k = ${k}: next forward`);
        expect(vic.device).not.toBe(lostDevice);
      } finally {
        vic.destroy();
      }
    }
  });

  it('backward() right after a loss that took its forward rejects with a DeviceError, and does not hang', async () => {
    const vic = await instance();
    const [x] = INPUTS;
    await vic.forward(x.a, x.b, SHAPE);
    vic.device.destroy();
    await new Promise((resolve) => setTimeout(resolve, 50)); // let the loss be noticed
    expectLostError(await settleWithin(vic.backward(), 'backward'), 'backward after the loss');
    expectTermsMatch(await vic.forward(x.a, x.b, SHAPE), x.a, x.b, SHAPE, 'forward after');
  });

  it('encode(): a pending read() rejects with a DeviceError saying the device was lost; the next encode() works', async () => {
    const vic = await instance();
    const [n, d] = SHAPE;
    const upload = (device: GPUDevice, data: Float32Array) => {
      const buffer = device.createBuffer({ size: data.byteLength, usage: 0x80 | 0x08 | 0x04 });
      device.queue.writeBuffer(buffer, 0, data as Float32Array<ArrayBuffer>);
      return buffer;
    };
    const argsOn = (device: GPUDevice, { a, b }: { a: Float32Array; b: Float32Array }) => ({
      a: upload(device, a), b: upload(device, b), shape: SHAPE, gradA: upload(device, new Float32Array(n * d)), gradB: upload(device, new Float32Array(n * d)),
    });
    const [x] = INPUTS;
    const lostDevice = vic.device;
    const args = argsOn(lostDevice, x);
    expectTermsMatch(await (await vic.encode(args)).read(), x.a, x.b, SHAPE, 'before');
    const before = { live: bufferCounts.live, bytes: bufferCounts.bytes };
    const pending = [await vic.encode(args), await vic.encode(args)];
    const reads = pending.map((p) => p.read()); // both in flight
    lostDevice.destroy();
    for (const [i, read] of reads.entries()) expectLostError(await settleWithin(read, `read ${i}`), `read ${i}`);
    // A failed read releases its call's buffers, as a successful one does.
    expect({ live: bufferCounts.live, bytes: bufferCounts.bytes }).toEqual(before);
    // The engine moved to a new device; the caller's buffers must be made again on it.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expectTermsMatch(await vic.forward(x.a, x.b, SHAPE), x.a, x.b, SHAPE, 'forward after');
    expect(vic.device).not.toBe(lostDevice);
    const fresh = argsOn(vic.device, x);
    expectTermsMatch(await (await vic.encode(fresh)).read(), x.a, x.b, SHAPE, 'after');
  });
});

describe('repeated losses', () => {
  // CI: 3 cycles. Full: VICREG_DEVICE_LOSS_FULL=1 npx vitest run test/device-loss.test.ts (20 cycles).
  const CYCLES = process.env.VICREG_DEVICE_LOSS_FULL === '1' ? 20 : 3;
  it(`${CYCLES} cycles of loss with calls in flight and recovery: no hang, same buffer counts, same results each time`, async () => {
    const vic = await instance();
    const [x, y] = INPUTS;
    const first = { terms: await vic.forward(x.a, x.b, SHAPE), grads: await vic.backward() };
    const counts = { live: bufferCounts.live, bytes: bufferCounts.bytes };
    const devices = new Set<GPUDevice>([vic.device]);
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      loseDeviceAfterSubmit(vic.device, 1); // during the first forward
      const calls = [vic.forward(y.a, y.b, SHAPE), vic.backward(), vic.forward(x.a, x.b, SHAPE)];
      const outcomes = await Promise.all(calls.map((call, i) => settleWithin(call as Promise<unknown>, `cycle ${cycle} call ${i}`)));
      expectLostError(outcomes[0], `cycle ${cycle}: forward in flight`);
      expectLostError(outcomes[1], `cycle ${cycle}: backward paired with it`);
      expect(outcomes[2].status, `cycle ${cycle}: the next forward, on a new device`).toBe('fulfilled');
      const terms = await vic.forward(x.a, x.b, SHAPE);
      const grads = await vic.backward();
      devices.add(vic.device);
      // Within tolerance, not bitwise: each new device chooses its kernel variant by a timed trial.
      expectTermsMatch(terms, x.a, x.b, SHAPE, `cycle ${cycle}`);
      for (const name of TERMS) expect(relativeError(terms[name], first.terms[name]), `cycle ${cycle} ${name} vs first`).toBeLessThan(1e-5);
      expect(relativeNormError(grads.gradA, first.grads.gradA), `cycle ${cycle} gradA vs first`).toBeLessThan(1e-4);
      expect({ live: bufferCounts.live, bytes: bufferCounts.bytes }, `cycle ${cycle}: buffer counts`).toEqual(counts);
    }
    expect(devices.size).toBe(CYCLES + 1); // a fresh device each time
  }, 300_000);
});

describe("an instance on a caller's device", () => {
  it('device from the webgpu package: calls in flight and every later call reject with a DeviceError saying the device was lost', async () => {
    const gpu = create([]); // kept referenced to the end: Dawn crashes if it is collected while devices live
    const adapter = await gpu.requestAdapter();
    expect(adapter).toBeTruthy();
    const device = await adapter!.requestDevice();
    const countsBefore = { live: bufferCounts.live, bytes: bufferCounts.bytes };
    const vic = await instance({ device });
    const [x, y] = INPUTS;
    expectTermsMatch(await vic.forward(x.a, x.b, SHAPE), x.a, x.b, SHAPE, 'before');
    const inFlight: Promise<unknown>[] = [vic.forward(y.a, y.b, SHAPE), vic.backward(), vic.forward(x.a, x.b, SHAPE)];
    device.destroy();
    for (const [i, call] of inFlight.entries()) expectLostError(await settleWithin(call, `call ${i}`), `in-flight call ${i}`);
    // No replacement: the caller owns the device. It keeps rejecting, call after call, naming why.
    for (let attempt = 0; attempt < 3; attempt++) {
      const error = expectLostError(await settleWithin(vic.forward(x.a, x.b, SHAPE), `forward ${attempt}`), `forward ${attempt}`);
      expect(error.message).toMatch(/passed in by the caller/);
      expectLostError(await settleWithin(vic.backward(), `backward ${attempt}`), `backward ${attempt}`);
    }
    expect(vic.device).toBe(device);
    vic.destroy();
    expect({ live: bufferCounts.live, bytes: bufferCounts.bytes }).toEqual(countsBefore);
    await expect(vic.forward(x.a, x.b, SHAPE)).rejects.toBeInstanceOf(StateError);
    expect(gpu).toBeTruthy();
  });

  it("another instance's device: the borrower keeps rejecting, the owner re-acquires", async () => {
    const owner = await instance();
    const borrower = await instance({ device: owner.device });
    const [x] = INPUTS;
    const [ownerTerms, borrowerTerms] = await Promise.all([owner.forward(x.a, x.b, SHAPE), borrower.forward(x.a, x.b, SHAPE)]);
    expect(borrowerTerms).toEqual(ownerTerms);
    // Two calls on the shared device; it is lost during the first submit (whichever instance makes it).
    loseDeviceAfterSubmit(owner.device, 1);
    const calls = [owner.forward(x.a, x.b, SHAPE), borrower.forward(x.a, x.b, SHAPE)];
    const outcomes = await Promise.all(calls.map((call, i) => settleWithin(call, `call ${i}`)));
    // The borrower's call ran on the lost device (it has no other): it rejects. The owner's rejects if
    // it ran there too, else it ran on a new device and is right.
    expectLostError(outcomes[1], 'borrower in flight');
    if (outcomes[0].status === 'rejected') expectLostError(outcomes[0], 'owner in flight');
    else expectTermsMatch(outcomes[0].value, x.a, x.b, SHAPE, 'owner in flight');
    // Terms only within tolerance here, not bitwise: the new device may pick another kernel variant.
    expectTermsMatch(await owner.forward(x.a, x.b, SHAPE), x.a, x.b, SHAPE, 'owner after');
    expectLostError(await settleWithin(borrower.forward(x.a, x.b, SHAPE), 'borrower after'), 'borrower after');
  });
});

describe('a process that loses its device mid-flight', () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'vicreg-device-loss-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // The script: start a forward and its backward on an owned device, lose the device while the forward
  // runs, await both calls, print what they rejected with, then either call process.exit(0) or just
  // return (then nothing may keep the event loop alive). Bundled from src/ with esbuild as
  // scripts/build.mjs does (WGSL as text); `webgpu` stays a native external, imported by absolute URL
  // so that the bundle runs from a temporary directory.
  const script = `
    import { createVICRegLoss, DeviceError } from ${JSON.stringify(join(root, 'src/index.ts'))};
    const [n, d] = [128, 512];
    const a = Float32Array.from({ length: n * d }, (_, i) => Math.sin(i));
    const b = Float32Array.from({ length: n * d }, (_, i) => Math.cos(i * 1.1));
    const vic = await createVICRegLoss();
    await vic.forward(a, b, [n, d]);
    // Lose the device right after the next submit, while that forward runs (as loseDeviceAfterSubmit).
    const device = vic.device;
    const submit = device.queue.submit.bind(device.queue);
    device.queue.submit = (buffers) => { submit(buffers); device.destroy(); };
    const inFlight = [vic.forward(a, b, [n, d]), vic.backward()];
    for (const call of inFlight) {
      try {
        await call;
        console.log('RESOLVED');
      } catch (error) {
        console.log(error instanceof DeviceError ? 'DeviceError: ' + error.message : 'OTHER: ' + error);
      }
    }
    if (process.argv.includes('--exit')) process.exit(0);
  `;
  const bundle = join(dir, 'lose-device.mjs');
  beforeAll(async () => {
    await build({
      stdin: { contents: script, resolveDir: root, loader: 'ts', sourcefile: 'lose-device.ts' },
      bundle: true, format: 'esm', platform: 'node', target: 'node20', outfile: bundle, write: true, logLevel: 'silent',
      loader: { '.wgsl': 'text' },
      plugins: [{
        name: 'webgpu-by-url',
        setup(builder) {
          builder.onResolve({ filter: /^webgpu$/ }, () => ({ path: pathToFileURL(join(root, 'node_modules/webgpu/index.js')).href, external: true }));
        },
      }],
    });
  });

  /** Runs the bundle; a run past 60 s is killed (SIGKILL): that is the hang this test is about. */
  function runScript(args: string[]): Promise<{ code: number | null; signal: string | null; stdout: string }> {
    return new Promise((resolve) => {
      execFile(process.execPath, [bundle, ...args], { timeout: 60_000, killSignal: 'SIGKILL' }, (error, stdout) => {
        const code = error ? ((error as { code?: number }).code ?? null) : 0;
        resolve({ code: typeof code === 'number' ? code : null, signal: (error as { signal?: string } | null)?.signal ?? null, stdout });
      });
    });
  }

  for (const [name, args] of [['awaits the rejected call, then calls process.exit(0)', ['--exit']], ['awaits the rejected call and returns (no process.exit)', []]] as const) {
    it(`${name}: exits with status 0 within the timeout, having printed the DeviceError`, async () => {
      const run = await runScript([...args]);
      expect(run.signal, `killed after 60 s: the process hung (stdout: ${run.stdout})`).toBeNull();
      expect(run.code).toBe(0);
      const lines = run.stdout.trim().split('\n');
      expect(lines[0]).toMatch(/^DeviceError: .*device was lost/);
      // The backward paired with the lost forward rejects too.
      expect(lines[1]).toMatch(/^DeviceError: .*device was lost/);
    }, 90_000);
  }
});
