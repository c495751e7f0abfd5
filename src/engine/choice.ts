// Which variant runs a role (a form's Gram, a Gram with its backward, a backward): forced by the option,
// the only one that can, the device's cached choice, the registry's preference ('auto'), or with
// 'measure' a timed trial on the first use of a shape class on a device, whose choice is cached for the
// device. 'auto' never times: a trial compiles every candidate, seconds on a CPU adapter before the first
// result. Candidates come from the registry.
import { LimitError, MiB, OptionError } from '../errors.js';
import { kernelsOf, preferred, refusal, REGISTRY, runnable, runsFor } from '../variants/registry.js';
import type { Form, Variant } from '../types.js';
import { choiceKey, choicesOf, seedVariantChoices, type ChoiceRole } from './choices.js';
import { bindingLimit, limitName, situation, type Engine } from './state.js';
import type { VariantTrial } from './trial.js';
import { timedSetup } from '../runtime/setup-time.js';

/**
 * Trials run on at most TRIAL_ROWS rows, halved until they cost at most TRIAL_MAX_MACS multiply-adds, and
 * not on fewer than TRIAL_MIN_ROWS (a kernel's time is then no longer its time on a full problem).
 */
export const TRIAL_ROWS = 256;
const TRIAL_MIN_ROWS = 16;
const TRIAL_MAX_MACS = 1e8;
/** Timed runs of each variant, round robin after one untimed run of each; the best of each decides. */
const TRIAL_RUNS = 3;

/** What narrows a backward's candidates: the layout its forward's Gram wrote, and a column-block backward. */
export interface Constraint { gramVariant?: Variant; blocked?: boolean }

const formOf = (role: ChoiceRole) => role.split('|')[1] as Form;

/** This device's variant choices, seeded from the engine's option on its first use of each device. */
export function deviceChoices(e: Engine): Map<string, Variant> {
  const device = e.handle.device;
  if (!e.seeded.has(device)) {
    e.seeded.add(device);
    seedVariantChoices(device, e.handle.adapterName, e.seed);
  }
  return choicesOf(device);
}

/**
 * The variants that can run a role here (`supported`, which names the choice's key), and of those the
 * ones to choose from (`allowed`): a backward reads the layout its forward's Gram wrote, and past the
 * binding limit it must read plain column blocks.
 */
export function candidates(e: Engine, role: ChoiceRole, n: number, d: number, c: Constraint = {}): { supported: Variant[]; allowed: Variant[] } {
  const form = formOf(role);
  const supported = runnable(situation(e, n, d, form));
  if (!role.startsWith('backward|')) return { supported, allowed: supported };
  const layout = c.gramVariant && kernelsOf(c.gramVariant, form).matrix.name;
  const allowed = supported.filter((v) => {
    const kernels = kernelsOf(v, form);
    return (!layout || kernels.matrix.name === layout) && (!c.blocked || kernels.gradient.columnBlocks);
  });
  return { supported, allowed };
}

/** The variant the option forces for a form (its stand-in's where it has none), or a typed error naming why it cannot run. */
function forcedVariant(e: Engine, form: Form, n: number, d: number): Variant | undefined {
  if (e.coefficients.variant === 'auto' || e.coefficients.variant === 'measure') return undefined;
  const runs = runsFor(e.coefficients.variant, form).name;
  const refused = refusal(runs, situation(e, n, d, form));
  if (!refused) return runs;
  if (refused.kind === 'limit') throw new LimitError(`variant '${runs}' needs ${refused.reason}, over ${limitName(e)} of ${MiB(bindingLimit(e))}`);
  throw new OptionError(`variant '${runs}' cannot run here: it needs ${refused.reason}`);
}

/** The variant for a role without a trial: forced, cached, or the static preference. */
export function cachedOrPreferred(e: Engine, role: ChoiceRole, n: number, d: number, c: Constraint = {}): Variant {
  const forced = forcedVariant(e, formOf(role), n, d);
  if (forced) return forced;
  const { supported, allowed } = candidates(e, role, n, d, c);
  const cached = deviceChoices(e).get(choiceKey(role, n, d, supported));
  return cached && allowed.includes(cached) ? cached : preferred(allowed);
}

/**
 * The variant for a role: forced; else the only one allowed; else the cached choice for this device and
 * shape class; else, with 'measure', a timed trial of each on the rows trialRows finds for `cost` (the
 * choice then cached); else the static preference. The trial's scratch is released at the end, run or not.
 */
export async function chooseVariant(e: Engine, role: ChoiceRole, n: number, d: number, cost: (rows: number) => number,
  trial: VariantTrial, c: Constraint = {}): Promise<Variant> {
  try {
    const forced = forcedVariant(e, formOf(role), n, d);
    if (forced) return forced;
    const { supported, allowed } = candidates(e, role, n, d, c);
    if (allowed.length === 0) throw new OptionError(`no kernel variant can run the ${role.replace('|', ' of the ')} form here`);
    if (allowed.length === 1) return allowed[0];
    const cache = deviceChoices(e);
    const key = choiceKey(role, n, d, supported);
    const cached = cache.get(key);
    if (cached && allowed.includes(cached)) return cached;
    const rows = e.coefficients.variant === 'measure' ? trialRows(n, cost) : undefined;
    // Only measured choices are kept (and exported): the static preference is found again each time.
    if (rows === undefined) return preferred(allowed);
    const choice = await timedSetup(e.handle.device, 'trials', () => timeVariants(allowed, rows, trial));
    cache.set(key, choice);
    return choice;
  } finally {
    trial.release();
  }
}

/** The rows a trial runs on: up to TRIAL_ROWS, halved until `cost` is within budget; undefined where even TRIAL_MIN_ROWS (or n) is past it. */
export function trialRows(n: number, cost: (rows: number) => number): number | undefined {
  let rows = Math.min(n, TRIAL_ROWS);
  while (cost(rows) > TRIAL_MAX_MACS && rows / 2 >= TRIAL_MIN_ROWS) rows /= 2;
  return cost(rows) <= TRIAL_MAX_MACS ? Math.floor(rows) : undefined;
}

/** The fastest of `variants` by the best of TRIAL_RUNS runs each, after one untimed run of each (compiling, making scratch). */
async function timeVariants(variants: readonly Variant[], rows: number, trial: VariantTrial): Promise<Variant> {
  for (const variant of variants) await trial.run(variant, rows);
  // Round robin, so that drift on a shared machine (tens of percent within a minute) hits every variant
  // alike, and the best of each, so that one slowed run does not decide.
  const best = new Map(variants.map((v) => [v, Infinity]));
  for (let run = 0; run < TRIAL_RUNS; run++) {
    for (const variant of variants) {
      const start = performance.now();
      await trial.run(variant, rows);
      best.set(variant, Math.min(best.get(variant)!, performance.now() - start));
    }
  }
  return variants.reduce((x, y) => (best.get(y)! < best.get(x)! ? y : x));
}

/**
 * The role whose choice names a form's Gram variant: with a backward to follow and candidates that keep
 * the matrix in different layouts (a Gram's choice then fixes its backward's), the pair's; else the Gram's.
 */
export function gramRole(e: Engine, form: Form, keepMatrix: boolean, n: number, d: number): ChoiceRole {
  const layouts = new Set(candidates(e, `gram|${form}`, n, d).supported.map((v) => REGISTRY[v].forms[form]!.matrix.name));
  return `${keepMatrix && layouts.size > 1 ? 'pair' : 'gram'}|${form}`;
}
