// What this process's WebGPU adapter offers, read once when a test file is collected (a device made and
// destroyed), so that tests can run every kernel variant that runs here and name each one that cannot,
// with why, as skipped: nothing in the suite assumes one adapter.
import { acquireDevice } from '../../src/runtime/device.js';
import type { DeviceTraits } from '../../src/runtime/device.js';
import { LANGUAGE_FEATURES, REGISTRY, refusal, VARIANTS } from '../../src/variants/registry.js';
import type { Form, Variant } from '../../src/types.js';

export interface AdapterFacts {
  name: string;
  traits: DeviceTraits;
  maxStorageBufferBindingSize: number;
}

async function probe(): Promise<AdapterFacts> {
  const handle = await acquireDevice(undefined, LANGUAGE_FEATURES);
  const facts = { name: handle.adapterName, traits: handle.traits, maxStorageBufferBindingSize: handle.device.limits.maxStorageBufferBindingSize };
  handle.device.destroy();
  return facts;
}

export const adapter: AdapterFacts = await probe();

/** Why `variant` (its stand-in's kernels where it has none for the form) cannot run an n x d problem in `form` here, or undefined. */
export function cannotRun(variant: Variant, form: Form, n: number, d: number, bindingLimit = adapter.maxStorageBufferBindingSize): string | undefined {
  const refused = refusal(variant, { traits: adapter.traits, n, d, form, bindingLimit });
  return refused && `variant '${variant}' cannot run ${form} ${n} x ${d} on ${adapter.name}: it needs ${refused.reason}`;
}

/** The variants with kernels of their own for `form`, split into those that run an n x d problem here and those that do not (with why). */
export function variantsHere(form: Form, n: number, d: number, among: readonly Variant[] = VARIANTS.map((v) => v.name)) {
  const own = among.filter((v) => REGISTRY[v].forms[form]);
  const why = own.map((v) => [v, cannotRun(v, form, n, d)] as const);
  return { runs: why.filter(([, w]) => !w).map(([v]) => v), skipped: why.filter(([, w]) => w) as [Variant, string][] };
}

/** A test title that says, where the test cannot run here, that it is skipped and why. */
export const titled = (title: string, why: string | undefined) => (why ? `${title} [skipped: ${why}]` : title);
