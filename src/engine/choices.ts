// The kernel-variant choices of `variant: 'measure'`: measured per device and shape class, cached in memory
// per device, and exportable as JSON so a caller can keep them (on disk, in localStorage) and seed a later
// process with them: that process then skips the trials, and the synchronous paths (encodeSync, the tfjs
// op), which never run a trial, use measured choices instead of the static preference.
import { OptionError } from '../errors.js';
import { VARIANT_NAMES, type Form, type Variant, type VariantChoices } from '../types.js';
import { FORMS, KERNELS_DIGEST } from '../variants/registry.js';

/** The `format` of exported choices; a file of another format is rejected, not guessed at. */
export const VARIANT_CHOICES_FORMAT = 'vicreg-wgsl/variant-choices/1';

// 'pair': the Gram variant when a backward follows and the Gram's choice fixes the backward's (its
// matrix layout is its own): the pair is timed together. 'gram': the Gram variant otherwise (no backward to follow, or
// no such variant among the candidates).
const ROLES = ['gram', 'pair', 'backward'] as const;

const sizeClass = (x: number) => Math.ceil(Math.log2(x));

/** What a choice is for: the Gram kernel (alone, or with the backward that follows it) or the backward kernel, of one form. */
export type ChoiceRole = `${typeof ROLES[number]}|${Form}`;

/**
 * The key of a choice: the role, the shape class (powers of two of n and d), and the variants that can
 * run (a shape of the class with d % 4 != 0 must not reuse a choice of 'subgroup' made for one with
 * d % 4 == 0).
 */
export function choiceKey(role: ChoiceRole, n: number, d: number, supported: readonly Variant[]): string {
  return `${role}|${sizeClass(n)}|${sizeClass(d)}|${supported.join(',')}`;
}

/** Per device: key -> variant. Shared by every engine on the device. */
const cache = new WeakMap<GPUDevice, Map<string, Variant>>();

/** The device's choices (created empty on first use). */
export function choicesOf(device: GPUDevice): Map<string, Variant> {
  let choices = cache.get(device);
  if (!choices) cache.set(device, (choices = new Map()));
  return choices;
}

const KEY = new RegExp(`^(${ROLES.join('|')})\\|(${FORMS.join('|')})\\|(\\d{1,2})\\|(\\d{1,2})\\|([a-z,]+)$`);

/**
 * What is wrong with a value given as exported choices, or undefined if it is well-formed. Choices from
 * another adapter or another build of the kernels are well-formed; seedVariantChoices() skips them.
 */
export function variantChoicesProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return `expected an object, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`;
  }
  const v = value as Record<string, unknown>;
  if (v.format !== VARIANT_CHOICES_FORMAT) return `format must be '${VARIANT_CHOICES_FORMAT}', got ${JSON.stringify(v.format)}`;
  if (typeof v.adapter !== 'string') return 'adapter must be a string';
  if (typeof v.kernels !== 'string') return 'kernels must be a string';
  if (typeof v.choices !== 'object' || v.choices === null || Array.isArray(v.choices)) return 'choices must be an object of key -> variant';
  for (const [key, variant] of Object.entries(v.choices as Record<string, unknown>)) {
    const match = KEY.exec(key);
    const supported = match ? match[5].split(',') : [];
    if (!match || supported.some((s) => !(VARIANT_NAMES as readonly string[]).includes(s))) {
      return `choice key ${JSON.stringify(key)} is not role|form|ceil(log2 n)|ceil(log2 d)|variants`;
    }
    if (typeof variant !== 'string' || !supported.includes(variant)) {
      return `choice ${JSON.stringify(key)} must be one of its variants (${supported.join(', ')}), got ${JSON.stringify(variant)}`;
    }
  }
  return undefined;
}

/** Throws an OptionError naming the problem of a malformed `variantChoices` option. */
export function validateVariantChoices(value: unknown): asserts value is VariantChoices {
  const problem = variantChoicesProblem(value);
  if (problem) throw new OptionError(`option variantChoices: ${problem} (pass what variantChoices() returned, or leave it out)`);
}

/** Sets each choice the device has none for yet (so a choice already made on it stays). */
function fillMissing(device: GPUDevice, entries: Iterable<[string, Variant]>): void {
  const target = choicesOf(device);
  for (const [key, variant] of entries) if (!target.has(key)) target.set(key, variant);
}

/** Adds the seed's choices to the device's, if the seed was made on this adapter with these kernels. */
export function seedVariantChoices(device: GPUDevice, adapterName: string, seed: VariantChoices | undefined): void {
  if (seed && seed.adapter === adapterName && seed.kernels === KERNELS_DIGEST) fillMissing(device, Object.entries(seed.choices));
}

/** Copies the choices made on one device to another of the same adapter. */
export function carryVariantChoices(from: GPUDevice, to: GPUDevice): void {
  fillMissing(to, choicesOf(from));
}

/** The device's choices, as JSON-ready data (keys sorted, so equal caches give equal files). */
export function exportVariantChoices(device: GPUDevice, adapterName: string): VariantChoices {
  const entries = [...choicesOf(device)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return { format: VARIANT_CHOICES_FORMAT, adapter: adapterName, kernels: KERNELS_DIGEST, choices: Object.fromEntries(entries) };
}
