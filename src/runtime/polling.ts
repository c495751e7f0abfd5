// Waiting on the device without spinning a CPU core (Node.js with dawn.node only).
//
// dawn.node (the `webgpu` package) resolves its promises (mapAsync, onSubmittedWorkDone, ...) by calling
// wgpuInstanceProcessEvents from a setImmediate callback that re-queues itself for as long as any of them
// is pending (Dawn's AsyncRunner; crbug.com/dawn/1127). While the GPU works, the main thread therefore
// runs at 100% of a core. On a CPU adapter (lavapipe) that core is one the "GPU" itself needed: on a
// 2-core machine forward+backward at 1024x1024 took ~400 ms with the spin and ~255 ms without it.
//
// quietly() lets a wait spin for its first SPIN_MS (tiny work keeps its latency), then defers Dawn's
// poll to a 1 ms timer until the wait ends. Dawn's callback is told apart from others by being a native
// function: JavaScript callbacks pass through to the real setImmediate untouched. Where there is no
// setImmediate (browsers) or the caller opted out (setQuietPolling(false)), quietly() just awaits.

/**
 * How long a wait polls as Dawn does before switching to timers: short enough that the spin takes little
 * from a CPU adapter, long enough that tiny problems (under a millisecond) keep their latency. Measured
 * at 256 x 1024 on lavapipe (forward, backward): 8.5 ms, 12.2 ms with 2 ms of spin; 7.3 ms, 10.3 ms with
 * 0.5 ms; 9.5 ms, 10.6 ms with none (every wait then pays a 1 ms timer); medians of 15 resident calls
 * from a scratch script during development, not kept.
 */
const SPIN_MS = 0.5;
/** Poll interval after that (Node's timer resolution). */
const POLL_MS = 1;
/**
 * A keyed wait (the same readback of the same workspace, say) whose last run took less than this polls
 * as Dawn does throughout: a 1 ms timer is then a large share of the wait, and the spin a short one.
 * Forward + backward at 64 x 512 on lavapipe: 4.0-4.1 ms deferred, 1.7-1.8 ms with this rule (`npm run
 * bench -- --phases --shapes 64x512,128x512,256x1024 --runs 40`, before and after it). Longer waits stay
 * deferred, since there the spin takes a core the adapter needs: at 256 x 1024 every wait spinning
 * (`--phases --shapes 64x512,256x1024 --variant windows --runs 40 --dawn-polling`) took 22.4-31.4 ms
 * against 19.8-24.3 deferred (the same without the flag; three alternating pairs).
 */
export const SHORT_WAIT_MS = 2;
/** The last duration of each keyed wait; weak, so a key (a staging buffer, say) takes its entry with it. */
const lastWaits = new WeakMap<object, number>();

/** Whether the next wait under `key` will poll as Dawn does (its last run was short). */
export function waitSpins(key: object): boolean {
  return (lastWaits.get(key) ?? Infinity) < SHORT_WAIT_MS;
}

type SetImmediate = (callback: (...args: unknown[]) => void, ...args: unknown[]) => unknown;

let enabled = true;
let active = 0;
let since = 0;
let original: SetImmediate | undefined;
let installed: SetImmediate | undefined;

const nativeSource = /\{\s*\[native code\]\s*\}\s*$/;
const isNative = (f: unknown) => typeof f === 'function' && nativeSource.test(Function.prototype.toString.call(f));

/** Turn the deferral on (the default) or off, process-wide. */
export function setQuietPolling(on: boolean): void {
  enabled = on;
}

function install(): void {
  const host = globalThis as { setImmediate?: SetImmediate };
  const real = host.setImmediate;
  if (!real) return;
  original = real;
  since = performance.now();
  const deferring: SetImmediate = (callback, ...args) =>
    isNative(callback) && performance.now() - since >= SPIN_MS
      ? setTimeout(callback, POLL_MS, ...args)
      : real(callback, ...args);
  // Keep what hangs off the real one (util.promisify's custom form, say).
  Object.defineProperties(deferring, Object.getOwnPropertyDescriptors(real));
  installed = deferring;
  host.setImmediate = deferring;
}

function uninstall(): void {
  const host = globalThis as { setImmediate?: SetImmediate };
  // Someone else replaced it meanwhile: leave theirs in place.
  if (installed && host.setImmediate === installed) host.setImmediate = original;
  installed = original = undefined;
}

/**
 * Awaits the promise `start` returns (a dawn.node wait: mapAsync, onSubmittedWorkDone), with Dawn's
 * event polling deferred to timers after the first SPIN_MS. Nested and concurrent calls share one
 * deferral. With a `key` (an object standing for this kind of wait, such as the buffer it maps), a wait
 * whose last run under that key took less than SHORT_WAIT_MS is not deferred (another wait's deferral, if one is pending, still applies).
 */
export async function quietly<T>(start: () => Promise<T>, key?: object): Promise<T> {
  if (!enabled || typeof (globalThis as { setImmediate?: unknown }).setImmediate !== 'function') return start();
  const began = performance.now();
  const defer = key === undefined || !waitSpins(key);
  if (defer && active++ === 0) install();
  try {
    return await start();
  } finally {
    if (defer && --active === 0) uninstall();
    if (key !== undefined) lastWaits.set(key, performance.now() - began);
  }
}
