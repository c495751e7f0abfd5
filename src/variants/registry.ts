// The registry of kernel variants: one description each (what it requires, its kernels per form), which
// the engine, its variant trials, the manifest generator, the tests and the bench all iterate over.
import type { KernelSpec } from '../runtime/gpu.js';
import type { Form, Variant } from '../types.js';
import { VARIANT_NAMES } from '../types.js';
import { windows } from './lavapipe/windows.js';
import type { FormKernels, Refusal, Situation, VariantDescription } from './program.js';
import type { DeviceTraits } from '../runtime/device.js';
import { columnBlockGram, columnStats, formDecision, lossTerms } from './shared.js';
import { floatToHalf, halfToFloat } from './half.js';
import { shuffle } from './lavapipe/shuffle.js';
import { subgroup, tiled } from './register-blocks.js';
import { workgroup } from './workgroup.js';

export const REGISTRY: Readonly<Record<Variant, VariantDescription>> = { tiled, subgroup, workgroup, shuffle, windows };

/** Every variant, in a fixed order (the order exported choice keys list them in). */
export const VARIANTS: readonly VariantDescription[] = VARIANT_NAMES.map((name) => REGISTRY[name]);

export const FORMS: readonly Form[] = ['primal', 'dual'];

/** The variant whose kernels run a form for `variant` (itself, or its stand-in where it has none for the form). */
export function runsFor(variant: Variant, form: Form): VariantDescription {
  const description = REGISTRY[variant];
  if (description.forms[form]) return description;
  if (!description.standIn) throw new Error(`variant ${variant} has no ${form} kernels and no stand-in`);
  return runsFor(description.standIn, form);
}

/** A variant's kernels for a form (its stand-in's where it has none). */
export const kernelsOf = (variant: Variant, form: Form): FormKernels => runsFor(variant, form).forms[form]!;

/** Why the variant that runs `form` for `variant` cannot run here, or undefined. */
export const refusal = (variant: Variant, s: Situation): Refusal | undefined => runsFor(variant, s.form).refuse(s);

/** The variants with kernels of their own for the form that can run here, in registry order. */
export const runnable = (s: Situation): Variant[] => VARIANTS.filter((v) => v.forms[s.form] && !v.refuse(s)).map((v) => v.name);

/** The variant taken where no trial decides: the first by preference among `among`. */
export const preferred = (among: readonly Variant[]): Variant =>
  [...among].sort((a, b) => REGISTRY[a].preference - REGISTRY[b].preference)[0];

/** The traits under which every kernel is built for the digest (its pipelines do not depend on the device otherwise). */
const DIGEST_TRAITS: DeviceTraits = { features: new Set(['subgroups']), subgroupMinSize: 8, subgroupMaxSize: 8, language: new Set() };

/** Every pipeline the engine can build: the shared kernels and each variant's, in every specialization. */
export function allKernelSpecs(traits: DeviceTraits = DIGEST_TRAITS): KernelSpec[] {
  const specs: KernelSpec[] = [columnStats.spec, lossTerms.spec, formDecision.spec, columnBlockGram.spec,
    halfToFloat.spec, floatToHalf.spec(false), floatToHalf.spec(true)];
  // Views a variant may copy as they are, and views it must not (their usage lacks COPY_SRC); a d that
  // allows vec4 loads and copies, and one that allows neither.
  const viewSets = [[0x80 | 0x04], [0x80]].map((usage) => [usage, usage].map((u) => ({ usage: u[0] }) as unknown as GPUBuffer));
  for (const variant of VARIANTS) {
    for (const form of FORMS) {
      const kernels = variant.forms[form];
      if (!kernels) continue;
      for (const [views, d] of viewSets.flatMap((views) => [64, 66].map((d) => [views, d] as const))) {
        const context = { d, traits, views };
        for (const flag of [true, false]) {
          specs.push(...kernels.gram.specs({ ...context, writeMatrix: flag }), ...kernels.gradient.specs({ ...context, accumulate: flag }));
        }
      }
    }
  }
  const seen = new Set<string>();
  return specs.filter((s) => {
    const key = `${s.name}|${JSON.stringify(s.constants ?? {})}`;
    return seen.has(key) ? false : (seen.add(key), true);
  });
}

/**
 * A digest (FNV-1a, 32 bits, hex) of every pipeline's source and override constants: the identity of
 * this build's kernels, which exported variant choices carry, so that choices measured with other
 * kernels or other tile constants are not reused.
 */
export const KERNELS_DIGEST = (() => {
  let hash = 0x811c9dc5;
  for (const spec of allKernelSpecs()) {
    const text = `${spec.name}|${JSON.stringify(spec.constants ?? {})}|${spec.code}`;
    for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
    hash = Math.imul(hash ^ 0xff, 0x01000193) >>> 0;   // a separator, so that boundaries count
  }
  return hash.toString(16).padStart(8, '0');
})();

/** The WGSL language features any variant requires (a device with no GPU object to ask is probed for these). */
export const LANGUAGE_FEATURES: readonly string[] = [...new Set(VARIANTS.flatMap((v) => v.language ?? []))];
