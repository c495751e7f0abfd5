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
 * deferral.
 */
export async function quietly<T>(start: () => Promise<T>): Promise<T> {
  if (!enabled || typeof (globalThis as { setImmediate?: unknown }).setImmediate !== 'function') return start();
  if (active++ === 0) install();
  try {
    return await start();
  } finally {
    if (--active === 0) uninstall();
  }
}
