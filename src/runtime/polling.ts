// Waiting on the device without spinning a CPU core (Node.js with dawn.node only).
//
// dawn.node (the `webgpu` package) resolves its promises (mapAsync, onSubmittedWorkDone, ...) by calling
// wgpuInstanceProcessEvents from a setImmediate callback that re-queues itself for as long as any of them
// is pending (Dawn's AsyncRunner; crbug.com/dawn/1127). While the GPU works, the main thread therefore
// runs at 100% of a core. On a CPU adapter (lavapipe) that core is one the "GPU" itself needs, so the spin
// slows the very work it waits for (`npm run bench -- --dawn-polling` runs with it, for comparison).
//
// quietly() lets a wait spin for its first SPIN_MS (tiny work keeps its latency), then defers Dawn's
// poll to a 1 ms timer until the wait ends. Dawn's callback is told apart from others by being a native
// function: JavaScript callbacks pass through to the real setImmediate untouched. Where there is no
// setImmediate (browsers) or the caller opted out (setQuietPolling(false)), quietly() just awaits.

/**
 * How long a wait polls as Dawn does before switching to timers: short enough that the spin takes little
 * from a CPU adapter, long enough that tiny problems (under a millisecond) keep their latency; with none,
 * every wait would pay at least one 1 ms timer.
 */
const SPIN_MS = 0.5;
/** Poll interval after that (Node's timer resolution). */
const POLL_MS = 1;
/**
 * A keyed wait (the same readback of the same workspace, say) whose last run took less than this polls
 * as Dawn does throughout: a 1 ms timer is then a large share of the wait, and the spin a short one.
 * Longer waits stay deferred, since there the spin takes a core the adapter needs. `npm run bench --
 * --phases --shapes 64x512,256x1024` with and without `--dawn-polling` shows both sides of the rule.
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
