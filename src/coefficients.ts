// The loss's coefficients: defaults, validation, and the derived constants the kernels use. One place
// for each formula of the math (docs/math.md).
import { OptionError } from './errors.js';
import { VARIANT_NAMES, type Preset, type ResolvedOptions, type VICRegOptions } from './types.js';

export type Coefficients = ResolvedOptions;

export const DEFAULTS: Coefficients = { lambda: 25, mu: 25, nu: 1, gamma: 1, eps: 1e-4, preset: 'paper', form: 'auto', variant: 'auto', encodeFallback: 'standby' };

/** k in the math doc: the variance term is k (v(A) + v(B)). */
export function varianceScale(preset: Preset): number {
  return preset === 'official' ? 0.5 : 1;
}

export function resolveCoefficients(options: VICRegOptions = {}): Coefficients {
  const resolved = { ...DEFAULTS };
  for (const name of ['lambda', 'mu', 'nu', 'gamma', 'eps'] as const) {
    const value = options[name];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw new OptionError(`option ${name} must be a finite number, got ${String(value)}`);
    }
    resolved[name] = value;
  }
  if (resolved.gamma < 0) throw new OptionError(`option gamma must be >= 0, got ${resolved.gamma}`);
  if (resolved.eps < 0) throw new OptionError(`option eps must be >= 0, got ${resolved.eps}`);
  if (options.preset !== undefined) {
    if (options.preset !== 'paper' && options.preset !== 'official') {
      throw new OptionError(`option preset must be 'paper' or 'official', got ${JSON.stringify(options.preset)}`);
    }
    resolved.preset = options.preset;
  }
  if (options.form !== undefined) {
    if (!['auto', 'primal', 'dual'].includes(options.form)) {
      throw new OptionError(`option form must be 'auto', 'primal' or 'dual', got ${JSON.stringify(options.form)}`);
    }
    resolved.form = options.form;
  }
  if (options.variant !== undefined) {
    const names = ['auto', 'measure', ...VARIANT_NAMES];
    if (!names.includes(options.variant)) {
      throw new OptionError(`option variant must be ${names.slice(0, -1).map((v) => `'${v}'`).join(', ')} or '${names.at(-1)}', got ${JSON.stringify(options.variant)}`);
    }
    resolved.variant = options.variant;
  }
  if (options.encodeFallback !== undefined) {
    if (options.encodeFallback !== 'standby' && options.encodeFallback !== 'none') {
      throw new OptionError(`option encodeFallback must be 'standby' or 'none', got ${JSON.stringify(options.encodeFallback)}`);
    }
    resolved.encodeFallback = options.encodeFallback;
  }
  return Object.freeze(resolved);
}

/** The constant factors of the gradient (math doc, "Backward"), for an n x d problem. */
export function gradientCoefficients(c: Coefficients, n: number, d: number) {
  return {
    /** d invariance / dZ = invCoef (Z - O) */
    invCoef: (2 * c.lambda) / (n * d),
    /** d variance / dZ_ij = varWeight Zc_ij / std_j where std_j < gamma */
    varWeight: (-c.mu * varianceScale(c.preset)) / (d * (n - 1)),
    /** d covariance / dZ = covCoef Zc Coff */
    covCoef: (4 * c.nu) / (d * (n - 1)),
  };
}
