// quietly(): while one of the engine's waits is pending, dawn.node's event poll (a native function it
// passes to setImmediate again and again) is deferred to 1 ms timers after the first 0.5 ms; JavaScript
// callbacks pass through; setImmediate is restored afterwards; a keyed wait whose last run was short
// (SHORT_WAIT_MS) is not deferred. Then, with the engine: its waits defer
// Dawn's poll, and the results are bitwise those of an engine that lets Dawn spin.
import { afterAll, describe, expect, it } from 'vitest';
import { createVICRegLoss, quietly, setQuietPolling } from '../src/index.js';
import { SHORT_WAIT_MS, waitSpins } from '../src/runtime/polling.js';
import { randomViews } from './reference/float64.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const kind = (handle: unknown) => (handle as object).constructor.name;

describe('quietly()', () => {
  afterAll(() => setQuietPolling(true));

  it('defers native callbacks after the spin phase, passes JavaScript ones through, and restores setImmediate', async () => {
    const real = globalThis.setImmediate;
    const seen: string[] = [];
    await quietly(async () => {
      expect(globalThis.setImmediate).not.toBe(real);
      await sleep(10);
      const deferred = globalThis.setImmediate(Math.random as () => void);   // Math.random is native, as Dawn's poll is
      const passed = globalThis.setImmediate(() => undefined);
      seen.push(kind(deferred), kind(passed));
    });
    expect(seen).toEqual(['Timeout', 'Immediate']);
    expect(globalThis.setImmediate).toBe(real);
  });

  it('shares one deferral among overlapping waits and returns what the wait returns', async () => {
    const real = globalThis.setImmediate;
    let inner: unknown;
    const outer = quietly(async () => {
      await sleep(20);
      return 'outer';
    });
    const second = quietly(async () => {
      inner = globalThis.setImmediate;
      await sleep(5);
      return 'second';
    });
    expect(await second).toBe('second');
    expect(globalThis.setImmediate).toBe(inner);   // the outer wait is still pending
    expect(await outer).toBe('outer');
    expect(globalThis.setImmediate).toBe(real);
  });

  it('restores setImmediate when the wait rejects, and leaves a replacement made meanwhile', async () => {
    const real = globalThis.setImmediate;
    await expect(quietly(async () => { throw new Error('lost'); })).rejects.toThrow('lost');
    expect(globalThis.setImmediate).toBe(real);
    const theirs = ((fn: () => void) => real(fn)) as unknown as typeof setImmediate;
    await quietly(async () => {
      globalThis.setImmediate = theirs;
    });
    expect(globalThis.setImmediate).toBe(theirs);
    globalThis.setImmediate = real;
  });

  it('a keyed wait whose last run was short is not deferred; after a long one it is', async () => {
    const real = globalThis.setImmediate;
    const key = {};
    expect(waitSpins(key)).toBe(false);   // never seen: deferred
    await quietly(() => sleep(SHORT_WAIT_MS + 8), key);
    expect(waitSpins(key)).toBe(false);
    let during: unknown;
    await quietly(async () => {
      during = globalThis.setImmediate;
    }, key);
    expect(during).not.toBe(real);        // the last run was long: deferred, and this one is short
    expect(waitSpins(key)).toBe(true);
    await quietly(async () => {
      during = globalThis.setImmediate;
      await sleep(SHORT_WAIT_MS + 8);
    }, key);
    expect(during).toBe(real);            // spun throughout, and took long: the next is deferred again
    expect(waitSpins(key)).toBe(false);
    // Another pending wait's deferral still applies to a spinning one.
    await quietly(async () => undefined, key);
    expect(waitSpins(key)).toBe(true);
    const outer = quietly(() => sleep(20));
    await quietly(async () => {
      during = globalThis.setImmediate;
    }, key);
    expect(during).not.toBe(real);
    await outer;
    expect(globalThis.setImmediate).toBe(real);
  });

  it('does nothing when turned off', async () => {
    const real = globalThis.setImmediate;
    setQuietPolling(false);
    await quietly(async () => {
      expect(globalThis.setImmediate).toBe(real);
    });
    setQuietPolling(true);
  });
});

describe('the engine waits quietly', () => {
  it("defers Dawn's poll during its waits, with bitwise the results of letting Dawn spin", async () => {
    const [n, d] = [384, 1024];
    const { a, b } = randomViews(n, d, 77, { scale: 1 });
    const vic = await createVICRegLoss();
    const realTimeout = globalThis.setTimeout;
    let deferredPolls = 0;
    const counting = ((fn: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
      if (/\[native code\]/.test(Function.prototype.toString.call(fn))) deferredPolls += 1;
      return realTimeout(fn, ms, ...args);
    }) as typeof setTimeout;
    try {
      globalThis.setTimeout = counting;
      const quiet = { terms: await vic.forward(a, b, [n, d]), grads: await vic.backward() };
      globalThis.setTimeout = realTimeout;
      expect(deferredPolls, "Dawn's poll deferred to timers during the waits").toBeGreaterThan(0);

      setQuietPolling(false);
      deferredPolls = 0;
      globalThis.setTimeout = counting;
      const loud = { terms: await vic.forward(a, b, [n, d]), grads: await vic.backward() };
      globalThis.setTimeout = realTimeout;
      expect(deferredPolls).toBe(0);
      expect(loud.terms).toEqual(quiet.terms);
      expect(Buffer.from(loud.grads.gradA.buffer).equals(Buffer.from(quiet.grads.gradA.buffer))).toBe(true);
      expect(Buffer.from(loud.grads.gradB.buffer).equals(Buffer.from(quiet.grads.gradB.buffer))).toBe(true);
    } finally {
      globalThis.setTimeout = realTimeout;
      setQuietPolling(true);
      vic.destroy();
    }
  });
});
