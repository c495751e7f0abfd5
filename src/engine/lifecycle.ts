// An engine's life: calls run one after another in the order they were made; every error leaves as a
// typed VICRegError; a lost device is reported, and replaced where the engine owns it.
import { DeviceError, StateError, VICRegError } from '../errors.js';
import { acquireDevice, type DeviceHandle } from '../runtime/device.js';
import { LANGUAGE_FEATURES } from '../variants/registry.js';
import { carryVariantChoices } from './choices.js';
import type { Engine } from './state.js';
import { freeWorkspace } from './workspace.js';

const describeLoss = (info: GPUDeviceLostInfo) => `${info.reason}${info.message ? `: ${info.message}` : ''}`;

/** Notes the loss of the engine's device (the next call reports it, or replaces the device). */
export function watchLoss(e: Engine, h: DeviceHandle): void {
  h.device.lost.then((info) => {
    if (h === e.handle && !e.destroyed) e.lost = `the device was lost (${describeLoss(info)})`;
  });
}

/**
 * An error as a VICRegError: WebGPU's own (an aborted mapAsync when the device is lost, say) become
 * DeviceErrors, naming the loss when that is what happened.
 */
export async function typedError(e: Engine, error: unknown, device: GPUDevice): Promise<VICRegError> {
  if (error instanceof VICRegError) return error;
  // device.lost resolves a moment after the failing call: give it that moment.
  const info = await Promise.race([device.lost, new Promise<undefined>((r) => setTimeout(r, 50))]);
  if (info) {
    e.lostForward = true;
    return new DeviceError(`the device was lost (${describeLoss(info)}) while this call ran`);
  }
  return new DeviceError(`WebGPU failed: ${(error as Error)?.message ?? String(error)}`);
}

/** Runs `call` after every call made before it, with its errors typed. */
export function serialize<T>(e: Engine, call: () => Promise<T>): Promise<T> {
  const guarded = async () => {
    const device = e.handle.device;
    try {
      return await call();
    } catch (error) {
      throw await typedError(e, error, device);
    }
  };
  e.calls.pending += 1;
  const run = e.calls.tail.then(guarded, guarded).finally(() => { e.calls.pending -= 1; });
  e.calls.tail = run.catch(() => undefined);
  return run;
}

/** The device to run on: a StateError after destroy(); after a loss, a fresh one where the engine owns its device, else a DeviceError. */
export async function ensureDevice(e: Engine): Promise<GPUDevice> {
  if (e.destroyed) throw new StateError('this VICReg loss was destroyed');
  if (e.lost) {
    if (!e.handle.owned) throw new DeviceError(`${e.lost}; the device was passed in by the caller, so it cannot be replaced`);
    // A backward still paired with a forward on the lost device says so.
    freeWorkspace(e);
    if (e.saved) e.lostForward = true;
    e.saved = undefined;
    const before = e.handle;
    e.handle = await acquireDevice(undefined, LANGUAGE_FEATURES);
    // The choices made on the lost device hold on its successor, the same adapter.
    if (e.handle.adapterName === before.adapterName) carryVariantChoices(before.device, e.handle.device);
    e.lost = undefined;
    watchLoss(e, e.handle);
  }
  return e.handle.device;
}
