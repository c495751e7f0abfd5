// An engine's state, explicit: its options, the device it runs on (and whether it was lost), the
// workspace of the current shape, what the last forward kept for its backward, and the call queue.
// The other engine modules are free functions over it.
import { LimitError, MiB } from '../errors.js';
import type { DeviceHandle } from '../runtime/device.js';
import type { Situation } from '../variants/program.js';
import type { Form, ForwardPlan, VariantChoices, VICRegOptions } from '../types.js';
import type { Coefficients } from '../coefficients.js';
import type { Workspace } from './workspace.js';
import type { Dtype, HostView, Variant } from '../types.js';

/** What a forward keeps for the backward that pairs with it. */
export interface Saved {
  n: number;
  d: number;
  grad: boolean;
  form: Form;
  /** The views' buffers (the engine's copies of host arrays, or the caller's GPUBuffers). */
  views: [GPUBuffer, GPUBuffer];
  onDevice: boolean;
  /** The primal Coff is past the binding limit: backward forms it one block of columns at a time. */
  blocked: boolean;
  /** The Gram's variant: its matrix layout decides which gradient programs can read it. */
  variant: Variant;
  /** The views' element type (the float32 views above are copies where it is float16), and a host view, whose kind float16 gradients take. */
  dtype: Dtype;
  hostView?: HostView;
}

export interface Engine {
  readonly options: VICRegOptions;
  readonly coefficients: Coefficients;
  handle: DeviceHandle;
  /** Why the device was lost, until a call replaces it (an engine that owns its device) or reports it. */
  lost?: string;
  destroyed: boolean;
  workspace?: Workspace;
  saved?: Saved;
  /** The device was lost after the last forward: the backward paired with it cannot run. */
  lostForward: boolean;
  plan?: ForwardPlan;
  /** Calls run one after another in the order they were made (backward pairs with the forward before it). */
  calls: { tail: Promise<unknown>; pending: number };
  /** release() of every encode() not yet read or released, so destroy() can free them. */
  openEncodes: Set<() => void>;
  /** The variantChoices option (a copy, as validated), seeded into each device the engine runs on, once. */
  seed?: VariantChoices;
  seeded: WeakSet<GPUDevice>;
}

/** The most bytes one binding may take: the device's limit, or the caller's lower cap. */
export const bindingLimit = (e: Engine) => Math.min(e.handle.device.limits.maxStorageBufferBindingSize, e.options.maxBindingSize ?? Infinity);

/** Names the binding limit in force: the device's, or the caller's maxBindingSize. */
export const limitName = (e: Engine) =>
  (bindingLimit(e) < e.handle.device.limits.maxStorageBufferBindingSize ? 'the maxBindingSize option' : "the device's maxStorageBufferBindingSize");

/** A LimitError where `bytes` in one binding is past the limit in force. */
export function checkBinding(e: Engine, what: string, bytes: number): void {
  const limit = bindingLimit(e);
  if (bytes > limit) throw new LimitError(`${what} needs ${MiB(bytes)}, over ${limitName(e)} of ${MiB(limit)}`);
}

/** The situation a variant's requirements are checked against. */
export const situation = (e: Engine, n: number, d: number, form: Form): Situation =>
  ({ traits: e.handle.traits, n, d, form, bindingLimit: bindingLimit(e) });
