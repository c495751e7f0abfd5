// src/ops/plan.ts (the loss as data, for native hosts) against the engine: every formula string is
// evaluated for many shapes and coefficient sets and compared with what the engine computes
// (kernels.ts: dispatch geometry, partial counts, stats layout, binding order, pipeline constants;
// coefficients.ts: gradient coefficients, variance scale; vicreg.ts: form choice, fallback threshold).
// Also: the formula evaluator itself, and kernels/manifest.json being what the generator makes now.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DEFAULTS, gradientCoefficients, resolveCoefficients, varianceScale } from '../src/ops/coefficients.js';
import {
  backwardParams, columnGroups, columnStats, formDecision, forms, lossTerms, PACKING, statsLayout, UNIFORM_BYTES, variantSupported,
  type BackwardKernel, type GramKernel,
} from '../src/ops/kernels.js';
import {
  BUFFERS, DEFAULT_COEFFICIENTS, HOST, KERNELS, MIN_DUAL_SHARE as PLAN_MIN_DUAL_SHARE, PRESETS, VARIANTS, backwardPasses, forwardPasses,
  passesOf, planVariables, type KernelId, type Role,
} from '../src/ops/plan.js';
import { cheaperForm, MIN_DUAL_SHARE } from '../src/ops/vicreg.js';
import type { Form, Preset } from '../src/types.js';
import type { ManifestVariant } from '../src/ops/plan.js';
import { bind, evaluate, namesIn } from '../scripts/formula.js';
import { buildManifest } from '../scripts/manifest.js';
import { reflect } from '../scripts/wgsl-reflect.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FORM_NAMES: Form[] = ['primal', 'dual'];
// The variants the manifest plans ('windows' is the engine's only: plan.ts ManifestVariant).
const VARIANT_NAMES: ManifestVariant[] = ['tiled', 'subgroup', 'workgroup'];

/** Shapes: the edges (n = 2, d = 1), tile boundaries +-1, and a seeded spread up to 5000. */
function shapes(): [number, number][] {
  const edges = [1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 257, 1000, 1024, 2049];
  const out: [number, number][] = [];
  for (const n of edges) for (const d of edges) if (n >= 2) out.push([n, d]);
  let seed = 12345;
  const next = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < 200; i++) out.push([2 + Math.floor(next() * 5000), 1 + Math.floor(next() * 5000)]);
  return out;
}

const COEFFICIENT_SETS = [
  { ...DEFAULTS },
  resolveCoefficients({ lambda: 3.5, mu: 7, nu: 0.3, gamma: 0.7, eps: 1e-3, preset: 'official' }),
  resolveCoefficients({ lambda: -1, mu: 0, nu: 12, gamma: 2, eps: 0, preset: 'paper' }),
];

function envFor(n: number, d: number, c = COEFFICIENT_SETS[0]) {
  return { n, d, lambda: c.lambda, mu: c.mu, nu: c.nu, gamma: c.gamma, eps: c.eps, k: evaluate(PRESETS[c.preset].k, {}) };
}

const dispatch = (id: KernelId, env: Record<string, number>) => KERNELS[id].dispatch.map((f) => evaluate(f, env));
/** The engine's workgroups padded to three dimensions. */
const three = (w: readonly number[]) => [w[0], w[1] ?? 1, w[2] ?? 1];
const close = (a: number, b: number) => Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(a), Math.abs(b));

describe('formula evaluator', () => {
  it('follows the grammar', () => {
    expect(evaluate('ceil(d/32)', { d: 33 })).toBe(2);
    expect(evaluate('2*lambda/(n*d)', { lambda: 25, n: 4, d: 5 })).toBe(2.5);
    expect(evaluate('-mu*k/(d*(n-1))', { mu: 25, k: 0.5, d: 5, n: 6 })).toBe(-0.5);
    expect(evaluate('1 + 2 * 3 - 4 / 2', {})).toBe(5);
    expect(evaluate('min(3, max(1, 2), 7) + floor(2.5) + 10 % 4', {})).toBe(6);
    expect(evaluate('n < d', { n: 2, d: 3 })).toBe(1);
    expect(evaluate('n + 1 >= d * 2', { n: 2, d: 3 })).toBe(0);
    expect(evaluate('x >= 0.5', { x: NaN })).toBe(0);
    expect(evaluate('1e-4 * 2', {})).toBe(2e-4);
    expect(namesIn('ceil(side/32)*tiles + min(n, d)')).toEqual(['side', 'tiles', 'n', 'd']);
    expect(bind({ n: 5, d: 9 }, { side: 'n', tiles: 'ceil(side/4)' })).toMatchObject({ side: 5, tiles: 2 });
  });

  it('rejects what it cannot read', () => {
    for (const bad of ['n +', 'ceil(d', 'd)', 'foo(1)', 'n $ d', '']) expect(() => evaluate(bad, { n: 1, d: 1 }), bad).toThrow();
    expect(() => evaluate('q * 2', {})).toThrow(/unbound name q/);
  });
});

describe('plan.ts against the engine', () => {
  const all = shapes();

  it('form choice, fallback threshold, defaults and presets are the engine\'s', () => {
    expect(PLAN_MIN_DUAL_SHARE).toBe(MIN_DUAL_SHARE);
    expect(HOST.fallback.minDualShare).toBe(MIN_DUAL_SHARE);
    expect(DEFAULT_COEFFICIENTS).toEqual({ lambda: DEFAULTS.lambda, mu: DEFAULTS.mu, nu: DEFAULTS.nu, gamma: DEFAULTS.gamma, eps: DEFAULTS.eps, preset: DEFAULTS.preset });
    for (const preset of ['paper', 'official'] as Preset[]) expect(evaluate(PRESETS[preset].k, {})).toBe(varianceScale(preset));
    for (const [n, d] of all) {
      expect(evaluate(HOST.formChoice.dualWhen, { n, d }) ? 'dual' : 'primal', `${n}x${d}`).toBe(cheaperForm(n, d));
      expect(!!evaluate(VARIANTS.subgroup.requires.when, { n, d })).toBe(variantSupported('subgroup', { subgroupSize: 8 }, n, d, 'primal'));
      expect(!!evaluate(VARIANTS.tiled.requires.when, { n, d })).toBe(variantSupported('tiled', {}, n, d, 'primal'));
      expect(!!evaluate(VARIANTS.workgroup.requires.when, { n, d })).toBe(variantSupported('workgroup', {}, n, d, 'primal'));
    }
    for (const [shares, keep] of [[[0.9, 0.6], true], [[0.5, 0.7], true], [[0.49, 0.9], false], [[NaN, 1], false], [[1, NaN], false]] as const) {
      const env = { offDiagonalShareA: shares[0], offDiagonalShareB: shares[1], minDualShare: HOST.fallback.minDualShare };
      expect(!!evaluate(HOST.fallback.keepWhen, env), `shares ${shares}`).toBe(keep);
    }
  });

  it('dispatch counts and partial counts are kernels.ts\'s', () => {
    for (const [n, d] of all) {
      const env = envFor(n, d);
      expect(dispatch('column_stats', env)).toEqual(three(columnStats.workgroups(d)));
      expect(dispatch('loss_terms', env)).toEqual(three(lossTerms.workgroups()));
      expect(dispatch('form_decision', env)).toEqual(three(formDecision.workgroups()));
      for (const variant of VARIANT_NAMES) {
        for (const form of FORM_NAMES) {
          const vars = bind(env, planVariables(variant, form));
          const gram: GramKernel = forms[form].gram[variant];
          const backward: BackwardKernel = forms[form].backward[variant];
          const label = `${variant} ${form} ${n}x${d}`;
          expect(vars.side, label).toBe(forms[form].side(n, d));
          expect(vars.partialsPerView, label).toBe(gram.partials(n, d));
          expect(dispatch(VARIANTS[variant].gram[form], vars), label).toEqual(three(gram.workgroups(n, d)));
          expect(dispatch(VARIANTS[variant].backward[form], vars), label).toEqual(three(backward.workgroups(n, d)));
          const mirrored = VARIANTS[variant].mirroredBackward?.[form];
          expect(mirrored !== undefined, label).toBe(backward.mirrored !== undefined);
          if (mirrored) expect(dispatch(mirrored, vars), label).toEqual(three(backward.mirrored!.workgroups(n, d)));
          const pack = VARIANTS[variant].groupedBackward?.[form];
          expect(pack !== undefined, label).toBe(backward.grouped !== undefined);
          if (pack) {
            const groups = backward.grouped!.columnGroups(n, d);
            expect([vars.panels, vars.panelGroups, vars.panelWidth], label).toEqual([Number(groups.panels), groups.groups, groups.width]);
            // The engine skips the copy where the groups read Z itself; the plan dispatches no workgroups.
            expect(dispatch(pack, vars), label).toEqual(groups.panels ? three(backward.workgroups(n, d)) : [0, backward.workgroups(n, d)[1], 1]);
            // Every column in exactly one group, no group wholly past d.
            expect(groups.groups * groups.width >= d && (groups.groups - 1) * groups.width < d && groups.width % 64 === 0, label).toBe(true);
          }
        }
      }
    }
  });

  it('uniform values are what vicreg.ts writes, the coefficients coefficients.ts\'s', () => {
    for (const [n, d] of all.filter((_, i) => i % 7 === 0)) {
      const layout = statsLayout(d);
      for (const c of COEFFICIENT_SETS) {
        const env = envFor(n, d, c);
        const k = gradientCoefficients(c, n, d);
        for (const v of [0, 1] as const) {
          const p = BUFFERS[`backwardParams${'AB'[v]}`].values!;
          const value = (field: string) => evaluate(p[field], env);
          // vicreg.ts backwardParams(): [n, d, shift, center, variance, columnStart 0, matrixStride d, PACKING[v]] and coefficients.
          expect([value('n'), value('d'), value('shiftOffset'), value('centerOffset'), value('varOffset'), value('columnStart'), value('matrixStride'), value('packing')])
            .toEqual([n, d, layout.shift[v], layout.center[v], layout.variance[v], 0, d, PACKING[v]]);
          expect(close(value('invCoef'), k.invCoef) && close(value('varWeight'), k.varWeight) && close(value('covCoef'), k.covCoef),
            `${n}x${d} ${JSON.stringify(c)}`).toBe(true);
          expect([value('gamma'), value('eps')]).toEqual([c.gamma, c.eps]);
        }
        for (const variant of VARIANT_NAMES) {
          for (const form of FORM_NAMES) {
            const vars = bind(env, planVariables(variant, form));
            const side = forms[form].side(n, d);
            const partials = forms[form].gram[variant].partials(n, d);
            for (const v of [0, 1] as const) {
              const g = BUFFERS[`gramDims${'AB'[v]}`].values!;
              // vicreg.ts formBuffers(): [n, d, ceil(side/32), v * partialsPerView, shift, center, 0, 0, v]; the engine's
              // partialsPerView is the largest over variants, the plan's the variant's own (both valid).
              expect(['n', 'd', 'tiles', 'partialOffset', 'shiftOffset', 'centerOffset', 'lowerHalf'].map((f) => evaluate(g[f], vars)))
                .toEqual([n, d, Math.ceil(side / 32), v * partials, layout.shift[v], layout.center[v], v]);
            }
            const t = BUFFERS.termParams.values!;
            expect(['n', 'd', 'partialCount', 'dualForm', 'partialOffsetB'].map((f) => evaluate(t[f], vars)))
              .toEqual([n, d, partials, form === 'dual' ? 1 : 0, partials]);
            expect(['lambda', 'mu', 'nu', 'gamma', 'eps', 'varianceScale'].map((f) => evaluate(t[f], vars)))
              .toEqual([c.lambda, c.mu, c.nu, c.gamma, c.eps, varianceScale(c.preset)]);
          }
        }
      }
    }
  });

  it("the grouped backward's per-group uniforms are the bytes backwardParams() writes", () => {
    const manifest = buildManifest(ROOT);
    const plan = manifest.loss.plans.subgroup as unknown as { dual: { uniforms: Record<string, { fields: { name: string; type: string; offset: number }[] }> } };
    const fields = plan.dual.uniforms.groupParamsA.fields;
    for (const [n, d] of all.filter((_, i) => i % 11 === 0).concat([[512, 516], [2048, 8192], [600, 1156]])) {
      if (d % 4 !== 0) continue;
      for (const c of COEFFICIENT_SETS.slice(0, 2)) {
        const vars = bind(envFor(n, d, c), planVariables('subgroup', 'dual'));
        const groups = columnGroups(n, d);
        for (const v of [0, 1] as const) {
          const values = BUFFERS[`groupParams${'AB'[v]}`].values!;
          for (let g = 0; g < groups.groups; g++) {
            const bytes = new DataView(backwardParams(c, n, d, n, v, undefined, { index: g, of: groups }));
            for (const f of fields) {
              const expected = evaluate(values[f.name] ?? '0', { ...vars, g });
              const actual = f.type === 'f32' ? bytes.getFloat32(f.offset, true) : bytes.getUint32(f.offset, true);
              expect(f.type === 'f32' ? Math.abs(actual - Math.fround(expected)) <= 1e-7 * Math.abs(expected) : actual === expected, `${n}x${d} group ${g} ${f.name}: ${actual} vs ${expected}`).toBe(true);
            }
          }
        }
      }
    }
  });

  it('buffer sizes cover what every binding needs', () => {
    for (const [n, d] of all.filter((_, i) => i % 5 === 0)) {
      expect(evaluate(BUFFERS.stats.count!, { d })).toBe(statsLayout(d).floats);
      for (const variant of VARIANT_NAMES) {
        if (!variantSupported(variant, { subgroupSize: 8 }, n, d, 'primal')) continue;
        for (const form of FORM_NAMES) {
          const vars = bind(envFor(n, d), planVariables(variant, form));
          for (const pass of passesOf([...forwardPasses(variant, form), ...backwardPasses(variant, form)])) {
            for (const [name, b] of Object.entries(KERNELS[pass.kernel].bindings as Record<string, { role: Role; count: string }>)) {
              const buffer = BUFFERS[pass.buffers[b.role]!];
              if (buffer.kind === 'uniform') continue;
              const elementFloats = name.endsWith('4') ? 4 : 1;   // z4, other4, covOffDiag4, grad4: vec4<f32>
              expect(evaluate(b.count, vars) * elementFloats, `${pass.label} ${name} ${n}x${d}`).toBeLessThanOrEqual(evaluate(buffer.count!, vars));
            }
          }
        }
      }
    }
  });

  it('binding roles in WGSL order are kernels.ts\'s binding order; overrides are the specs\' constants', () => {
    const roles = (id: KernelId) => reflect(readFileSync(join(ROOT, 'kernels', KERNELS[id].file), 'utf8')).bindings
      .map((b) => (KERNELS[id].bindings as Record<string, { role: string }>)[b.name].role);
    // kernels.ts's bindings() with each logical buffer standing for itself.
    const gramLogical = { z: 'z', stats: 'stats', partials: 'partials', matrix: 'matrix', dims: 'dims' } as unknown as Parameters<GramKernel['bindings']>[0];
    const backwardLogical = { z: 'z', other: 'other', stats: 'stats', matrix: 'matrix', grad: 'grad', params: 'params', upstream: 'upstream', panel: 'panel' } as unknown as Parameters<BackwardKernel['bindings']>[0];
    const constants = (c: Record<string, number | boolean> | undefined) => Object.fromEntries(Object.entries(c ?? {}).map(([k, v]) => [k, Number(v)]));
    for (const variant of VARIANT_NAMES) {
      for (const form of FORM_NAMES) {
        const gramId = VARIANTS[variant].gram[form];
        const backwardId = VARIANTS[variant].backward[form];
        expect(roles(gramId)).toEqual(forms[form].gram[variant].bindings(gramLogical));
        expect(roles(backwardId)).toEqual(forms[form].backward[variant].bindings(backwardLogical));
        expect(constants(KERNELS[gramId].overrides)).toEqual(constants(forms[form].gram[variant].spec(true).constants));
        expect(constants(KERNELS[backwardId].overrides)).toEqual(constants(forms[form].backward[variant].spec(false).constants));
        expect(forms[form].gram[variant].spec(true).code).toBe(readFileSync(join(ROOT, 'kernels', KERNELS[gramId].file), 'utf8'));
        const mirroredId = VARIANTS[variant].mirroredBackward?.[form];
        const mirrored = forms[form].backward[variant].mirrored;
        if (mirroredId && mirrored) {
          expect(roles(mirroredId)).toEqual(mirrored.bindings(backwardLogical));
          expect(constants(KERNELS[mirroredId].overrides)).toEqual(constants(mirrored.spec.constants));
          expect(mirrored.spec.code).toBe(readFileSync(join(ROOT, 'kernels', KERNELS[mirroredId].file), 'utf8'));
        }
        const packId = VARIANTS[variant].groupedBackward?.[form];
        const grouped = forms[form].backward[variant].grouped;
        if (packId && grouped) {
          expect(roles(packId)).toEqual(grouped.pack.bindings(backwardLogical));
          expect(constants(KERNELS[packId].overrides)).toEqual(constants(grouped.pack.spec.constants));
          expect(grouped.pack.spec.code).toBe(readFileSync(join(ROOT, 'kernels', KERNELS[packId].file), 'utf8'));
        }
      }
    }
    // vicreg.ts binds column_stats as [a, b, stats, flags, dims] and loss_terms as [stats, flags, partials, result, params].
    expect(roles('column_stats')).toEqual(['a', 'b', 'stats', 'flags', 'dims']);
    expect(roles('loss_terms')).toEqual(['stats', 'flags', 'partials', 'result', 'params']);
    expect(constants(KERNELS.column_stats.overrides)).toEqual(constants(columnStats.spec.constants));
    expect(constants(KERNELS.loss_terms.overrides)).toEqual(constants(lossTerms.spec.constants));
  });

  it('uniform structs parsed from the WGSL fit kernels.ts\'s UNIFORM_BYTES', () => {
    const manifest = buildManifest(ROOT);
    const size = (id: KernelId, struct: string) => (manifest.kernels[id].structs as Record<string, { size: number }>)[struct].size;
    const round16 = (x: number) => Math.ceil(x / 16) * 16;
    expect(round16(size('column_stats', 'Dims'))).toBe(UNIFORM_BYTES.dims);
    expect(size('gram_offdiag_squares', 'GramDims')).toBe(UNIFORM_BYTES.gramDims);
    expect(size('sample_gram_subgroup', 'GramDims')).toBe(UNIFORM_BYTES.gramDims);
    expect(size('loss_terms', 'TermParams')).toBe(UNIFORM_BYTES.termParams);
    expect(size('covariance_backward_dual', 'BackwardParams')).toBe(UNIFORM_BYTES.backwardParams);
    expect(size('form_decision', 'DecisionParams')).toBe(UNIFORM_BYTES.decisionParams);
  });

  it('every formula in the plan evaluates to a finite number for every shape', () => {
    const formulas: [string, string][] = [];
    for (const [id, k] of Object.entries(KERNELS)) {
      k.dispatch.forEach((f) => formulas.push([`${id} dispatch`, f]));
      for (const [name, b] of Object.entries(k.bindings)) formulas.push([`${id} ${name}`, b.count]);
    }
    for (const [name, b] of Object.entries(BUFFERS)) {
      if (b.count) formulas.push([`buffer ${name}`, b.count]);
      for (const [field, f] of Object.entries(b.values ?? {})) formulas.push([`${name}.${field}`, f]);
    }
    for (const f of HOST.shape.require) formulas.push(['shape', f]);
    formulas.push(['form choice', HOST.formChoice.dualWhen]);
    for (const [n, d] of all.filter((_, i) => i % 3 === 0)) {
      for (const variant of VARIANT_NAMES) {
        for (const form of FORM_NAMES) {
          const vars = bind(envFor(n, d, COEFFICIENT_SETS[1]), planVariables(variant, form));
          // g: the last column group (the formulas of 'group' uniforms name it).
          for (const [where, f] of formulas) expect(Number.isFinite(evaluate(f, { ...vars, g: vars.panelGroups - 1 })), `${where}: ${f} at ${n}x${d}`).toBe(true);
        }
      }
    }
  });
});

describe('kernels/manifest.json', () => {
  it('is what scripts/manifest.ts generates from the current sources (run npm run build)', () => {
    const path = join(ROOT, 'kernels', 'manifest.json');
    expect(existsSync(path), 'kernels/manifest.json is missing: npm run build').toBe(true);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual(JSON.parse(JSON.stringify(buildManifest(ROOT))));
  });
});
