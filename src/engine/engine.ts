// The VICReg loss engine: createVICRegLoss() and the object it returns. Its calls run in order
// (lifecycle.ts) over explicit state (state.ts): forward.ts, backward.ts and encode.ts do the work.
import { OptionError } from '../errors.js';
import { acquireDevice, deviceHandle, type DeviceHandle } from '../runtime/device.js';
import { LANGUAGE_FEATURES } from '../variants/registry.js';
import type { BackwardOptions, Float16ArrayLike, VICRegGradients, VICRegLoss, VICRegOptions } from '../types.js';
import { backward } from './backward.js';
import { exportVariantChoices, validateVariantChoices } from './choices.js';
import { deviceChoices } from './choice.js';
import { resolveCoefficients } from '../coefficients.js';
import { encode, encodeSync } from './encode.js';
import { forward } from './forward.js';
import { serialize, watchLoss } from './lifecycle.js';
import type { Engine } from './state.js';
import { freeWorkspace } from './workspace.js';

export { cheaperForm, MIN_DUAL_SHARE } from './forward.js';

export async function createVICRegLoss(options: VICRegOptions = {}): Promise<VICRegLoss> {
  resolveOptions(options);   // bad options fail before a device is acquired
  return engineObject(createEngine(await acquireDevice(options.device, LANGUAGE_FEATURES), options));
}

/** The engine on a caller's device, created synchronously (for synchronous frameworks: the tfjs op). */
export function createVICRegLossOnDevice(device: GPUDevice, options: Omit<VICRegOptions, 'device'> = {}): VICRegLoss {
  return engineObject(createEngine(deviceHandle(device), options));
}

function resolveOptions(options: VICRegOptions) {
  const coefficients = resolveCoefficients(options);
  if (options.maxBindingSize !== undefined && !(typeof options.maxBindingSize === 'number' && options.maxBindingSize > 0)) {
    throw new OptionError(`option maxBindingSize must be a positive number of bytes, got ${String(options.maxBindingSize)}`);
  }
  if (options.variantChoices !== undefined) validateVariantChoices(options.variantChoices);
  return coefficients;
}

function createEngine(handle: DeviceHandle, options: VICRegOptions): Engine {
  const coefficients = resolveOptions(options);
  const choices = options.variantChoices;
  const e: Engine = {
    options, coefficients, handle, destroyed: false, lostForward: false,
    calls: { tail: Promise.resolve(), pending: 0 },
    openEncodes: new Set(),
    // A copy, as validated: the caller may change theirs, and seeding happens per device, later.
    seed: choices && { ...choices, choices: { ...choices.choices } },
    seeded: new WeakSet(),
  };
  watchLoss(e, handle);
  return e;
}

/** Releases every buffer and pending encode(); destroys the device only if the engine acquired it. */
function destroyEngine(e: Engine): void {
  if (e.destroyed) return;
  e.destroyed = true;
  for (const release of [...e.openEncodes]) release();
  freeWorkspace(e);
  if (e.handle.owned) e.handle.device.destroy();
}

function engineObject(e: Engine): VICRegLoss {
  return {
    forward: (a, b, shape, opts) => serialize(e, () => forward(e, a, b, shape, opts)),
    backward: <G extends Float32Array | Uint16Array | Float16ArrayLike | GPUBuffer = Float32Array>(scale?: number, opts?: BackwardOptions) =>
      serialize(e, () => backward(e, scale, opts)) as Promise<VICRegGradients<G>>,
    encode: (args) => serialize(e, () => encode(e, args)),
    encodeSync: (args) => encodeSync(e, args),
    get device() { return e.handle.device; },
    get adapterName() { return e.handle.adapterName; },
    options: e.coefficients,
    get lastPlan() { return e.plan; },
    variantChoices: () => {
      deviceChoices(e);   // seeded ones count from the start
      return exportVariantChoices(e.handle.device, e.handle.adapterName);
    },
    destroy: () => destroyEngine(e),
  };
}
