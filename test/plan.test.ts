// src/manifest/plan.ts (the loss as data, for native hosts) against the engine: every formula string is
// evaluated for many shapes and coefficient sets and compared with what the engine computes (the
// variants' programs, src/variants: dispatch geometry, partial counts, binding order, pipeline
// constants; shared.ts: stats layout, uniforms; coefficients.ts: gradient coefficients, variance scale;
// forward.ts: form choice, fallback threshold, keepsMatrix; backward.ts and passes.ts: the blocked
// backward's column blocks, their uniforms and steps; state.ts: the binding limit checks).
// Also: the formula evaluator itself, and kernels/manifest.json being what the generator makes now.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DEFAULTS, gradientCoefficients, resolveCoefficients, varianceScale } from '../src/coefficients.js';
import type { Dispatch } from '../src/runtime/gpu.js';
import type { DeviceTraits } from '../src/runtime/device.js';
import { REGISTRY } from '../src/variants/registry.js';
import {
  backwardParams, columnBlockGram, columnBlockWidth, columnStats, formDecision, lossTerms, PACKED, PACKING, side as sideOf, statsLayout, UNIFORM_BYTES,
} from '../src/variants/shared.js';
import { columnGroups } from '../src/variants/lavapipe/shuffle.js';
import { floatToHalf, halfBytes, halfDims, halfToFloat } from '../src/variants/half.js';
import {
  BUFFERS, DEFAULT_COEFFICIENTS, HOST, KERNELS, MIN_DUAL_SHARE as PLAN_MIN_DUAL_SHARE, PRESETS, VARIANTS, backwardPasses, forwardPasses,
  hasBlockedPlan, passesOf, planForms, planVariables, type GroupLoop, type KernelId, type PassPlan, type Role,
} from '../src/manifest/plan.js';
import { cheaperForm, keepsMatrix, MIN_DUAL_SHARE } from '../src/engine/forward.js';
import { columnBlocks } from '../src/engine/backward.js';
import { blockedBackwardSteps } from '../src/engine/passes.js';
import { checkBinding, type Engine } from '../src/engine/state.js';
import type { Workspace } from '../src/engine/workspace.js';
import { LimitError, MiB } from '../src/errors.js';
import type { Form, Preset } from '../src/types.js';
import type { ManifestVariant } from '../src/manifest/plan.js';
import { bind, evaluate, namesIn } from '../scripts/formula.js';
import { buildManifest } from '../scripts/manifest.js';
import { reflect } from '../scripts/wgsl-reflect.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FORM_NAMES: Form[] = ['primal', 'dual'];
// The variants the manifest plans ('windows' is the engine's only: plan.ts ManifestVariant).
const VARIANT_NAMES: ManifestVariant[] = ['tiled', 'subgroup', 'workgroup'];
/** With 'shuffle' (lanes 8, d % 4 == 0): the blocked checks cover every plan. */
const ALL_VARIANTS: ManifestVariant[] = [...VARIANT_NAMES, 'shuffle'];

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

/** The subgroup sizes the plans are checked at: a CPU adapter's 4 and 8, NVIDIA's 32, AMD's and Adreno's 64. */
const LANES = [4, 8, 32, 64];

/** maxBinding where a test does not vary it: 4 GiB - 4, past every shape's needs here. */
const WIDE_LIMIT = 2 ** 32 - 4;

function envFor(n: number, d: number, c = COEFFICIENT_SETS[0], lanes = 8, maxBinding = WIDE_LIMIT) {
  return { n, d, lambda: c.lambda, mu: c.mu, nu: c.nu, gamma: c.gamma, eps: c.eps, k: evaluate(PRESETS[c.preset].k, {}), lanes, maxLanes: lanes, maxBinding };
}

const dispatch = (id: KernelId, env: Record<string, number>) => KERNELS[id].dispatch.map((f) => evaluate(f, env));

/** An adapter with subgroups of `lanes`. */
const traitsOf = (lanes: number): DeviceTraits => ({ features: new Set(['subgroups']), subgroupMinSize: lanes, subgroupMaxSize: lanes, language: new Set() });
/** Whether a variant runs an n x d problem (in either form: the manifest's variants need the same of both). */
const runs = (variant: ManifestVariant, n: number, d: number, lanes = 8) => !REGISTRY[variant].refuse({ traits: traitsOf(lanes), n, d, form: 'primal', bindingLimit: Infinity });

/**
 * A device that makes stand-in buffers (a variant's scratch, on no GPU): each is its label, so a
 * binding shows what it is.
 */
const standInDevice = {
  createBuffer: ({ label, size, usage }: GPUBufferDescriptor) => ({ label, size, usage, destroy() {} }),
  createTexture: ({ label }: GPUTextureDescriptor) => ({ label, destroy() {}, createView: () => ({ label }) }),
  queue: { writeBuffer() {}, writeTexture() {} },
} as unknown as GPUDevice;
const LOGICAL = ['z', 'other', 'stats', 'partials', 'matrix', 'dims', 'grad', 'params', 'upstream'] as const;
const logical = Object.fromEntries(LOGICAL.map((role) => [role, { label: role }])) as unknown as Record<typeof LOGICAL[number], GPUBuffer>;
/** The role of a binding: a logical buffer's name, or a scratch buffer's kind. */
/** A dispatch's workgroup counts (the engine's passes here are never indirect). */
const counts = (x: Dispatch) => x.workgroups as readonly number[];
const roleOf = (binding: unknown): string => {
  const label = (binding as { label: string; buffer?: { label: string } }).buffer?.label ?? (binding as { label: string }).label;
  return /params/.test(label) ? 'params' : /panels/.test(label) ? 'panel' : label;
};

/** A variant's dispatches for view A of an n x d problem, as the engine builds them, each pipeline its kernel's name. */
function programDispatches(variant: ManifestVariant, form: Form, n: number, d: number, lanes = 8) {
  const TRAITS = traitsOf(lanes);
  const kernels = REGISTRY[variant].forms[form]!;
  const views = [logical.z, logical.other];
  const context = { d, traits: TRAITS, views };
  const gramSpecs = kernels.gram.specs({ ...context, writeMatrix: true });
  const gradientSpecs = kernels.gradient.specs({ ...context, accumulate: false });
  const scratch = kernels.scratch?.({ device: standInDevice, n, d, rows: n, coefficients: DEFAULTS, traits: TRAITS, views: [0], partialsPerView: 0, checkBinding: () => undefined });
  const asPipelines = (specs: { name: string }[]) => specs.map((spec) => spec.name as unknown as GPUComputePipeline);
  const gram = kernels.gram.steps({
    view: 0, rows: n, d, traits: TRAITS, views, pipelines: asPipelines(gramSpecs), scratch,
    buffers: { z: logical.z, stats: logical.stats, partials: logical.partials, matrix: logical.matrix, dims: logical.dims },
  }) as Dispatch[];
  const gradient = kernels.gradient.steps({
    view: 0, rows: n, d, traits: TRAITS, views, pipelines: asPipelines(gradientSpecs), scratch,
    buffers: { z: logical.z, other: logical.other, stats: logical.stats, matrix: logical.matrix, grad: logical.grad, upstream: logical.upstream, params: logical.params },
  }) as Dispatch[];
  return { kernels, gramSpecs, gradientSpecs, gram, gradient, scratch };
}
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
      for (const lanes of LANES) {
        for (const variant of VARIANT_NAMES) expect(!!evaluate(VARIANTS[variant].requires.when, { n, d, lanes, maxLanes: lanes }), `${variant} ${n}x${d}`).toBe(runs(variant, n, d, lanes));
        // Sizes that vary between dispatches (subgroupMinSize < subgroupMaxSize, as on Intel GPUs).
        const varying = { features: new Set(['subgroups']), subgroupMinSize: lanes, subgroupMaxSize: 4 * lanes, language: new Set<string>() };
        for (const variant of VARIANT_NAMES) {
          const refused = !!REGISTRY[variant].refuse({ traits: varying, n, d, form: 'primal', bindingLimit: Infinity });
          expect(!!evaluate(VARIANTS[variant].requires.when, { n, d, lanes, maxLanes: 4 * lanes }), `${variant} ${n}x${d}, lanes ${lanes}..${4 * lanes}`).toBe(!refused);
        }
      }
    }
    for (const [shares, keep] of [[[0.9, 0.6], true], [[0.5, 0.7], true], [[0.49, 0.9], false], [[NaN, 1], false], [[1, NaN], false]] as const) {
      const env = { offDiagonalShareA: shares[0], offDiagonalShareB: shares[1], minDualShare: HOST.fallback.minDualShare };
      expect(!!evaluate(HOST.fallback.keepWhen, env), `shares ${shares}`).toBe(keep);
    }
  });

  it("dispatch counts and partial counts are the variants' programs'", () => {
    for (const [[n, d], lanes] of all.flatMap((shape) => LANES.map((lanes) => [shape, lanes] as const))) {
      const env = envFor(n, d, undefined, lanes);
      expect(dispatch('column_stats', env)).toEqual(three(columnStats.workgroups(d)));
      expect(dispatch('loss_terms', env)).toEqual(three(lossTerms.workgroups()));
      expect(dispatch('form_decision', env)).toEqual(three(formDecision.workgroups()));
      for (const variant of VARIANT_NAMES) {
        if (!runs(variant, n, d, lanes)) continue;
        for (const form of FORM_NAMES) {
          const vars = bind(env, planVariables(variant, form));
          const { kernels, gram, gradient } = programDispatches(variant, form, n, d, lanes);
          const label = `${variant} ${form} ${n}x${d} lanes ${lanes}`;
          expect(vars.side, label).toBe(sideOf(form, n, d));
          expect(vars.partialsPerView, label).toBe(kernels.gram.partials(n, d, traitsOf(lanes)));
          // The engine runs a Gram's vec4 file where d % 4 == 0: the plan's kernel, reading Z as vec4s.
          expect(gram.map((x) => String(x.pipeline).replace(/_vec4$/, '')), label).toEqual([VARIANTS[variant].gram[form]]);
          expect(dispatch(VARIANTS[variant].gram[form], vars), label).toEqual(three(counts(gram[0])));
          const main = gradient.filter((x) => String(x.pipeline) === VARIANTS[variant].backward[form]);
          expect(main.length, label).toBeGreaterThan(0);
          for (const x of main) expect(dispatch(VARIANTS[variant].backward[form], vars), label).toEqual(three(counts(x)));
          const mirroredId = VARIANTS[variant].mirroredBackward?.[form];
          const mirrored = gradient.filter((x) => x.label.includes('mirrored'));
          expect(mirrored.length, label).toBe(mirroredId ? 1 : 0);
          if (mirroredId) expect(dispatch(mirroredId, vars), label).toEqual(three(counts(mirrored[0])));
          const packId = VARIANTS[variant].groupedBackward?.[form];
          if (packId) {
            const groups = columnGroups(n, d);
            expect([vars.panels, vars.panelGroups, vars.panelWidth], label).toEqual([Number(groups.panels), groups.groups, groups.width]);
            expect(main.length, label).toBe(groups.groups);
            const packs = gradient.filter((x) => String(x.pipeline) === packId);
            // The engine skips the copy where the groups read Z itself; the plan dispatches no workgroups.
            expect(packs.length, label).toBe(groups.panels ? groups.groups : 0);
            expect(dispatch(packId, vars), label).toEqual(groups.panels ? three(counts(packs[0])) : [0, counts(main[0])[1], 1]);
            // Every column in exactly one group, no group wholly past d.
            expect(groups.groups * groups.width >= d && (groups.groups - 1) * groups.width < d && groups.width % 64 === 0, label).toBe(true);
          } else {
            expect(main.length, label).toBe(1);
          }
        }
      }
    }
  });

  it("uniform values are what the engine writes (shared.ts), the coefficients coefficients.ts's", () => {
    for (const [n, d] of all.filter((_, i) => i % 7 === 0)) {
      const layout = statsLayout(d);
      for (const c of COEFFICIENT_SETS) {
        const env = envFor(n, d, c);
        const k = gradientCoefficients(c, n, d);
        for (const v of [0, 1] as const) {
          const p = BUFFERS[`backwardParams${'AB'[v]}`].values!;
          const value = (field: string) => evaluate(p[field], env);
          // backwardParams(): [n, d, shift, center, variance, columnStart 0, matrixStride d, PACKING[v]] and coefficients.
          expect([value('n'), value('d'), value('shiftOffset'), value('centerOffset'), value('varOffset'), value('columnStart'), value('matrixStride'), value('packing')])
            .toEqual([n, d, layout.shift[v], layout.center[v], layout.variance[v], 0, d, PACKING[v]]);
          expect(close(value('invCoef'), k.invCoef) && close(value('varWeight'), k.varWeight) && close(value('covCoef'), k.covCoef),
            `${n}x${d} ${JSON.stringify(c)}`).toBe(true);
          expect([value('gamma'), value('eps')]).toEqual([c.gamma, c.eps]);
        }
        for (const variant of VARIANT_NAMES) {
          for (const form of FORM_NAMES) {
            const vars = bind(env, planVariables(variant, form));
            const side = sideOf(form, n, d);
            const partials = REGISTRY[variant].forms[form]!.gram.partials(n, d, traitsOf(8));
            for (const v of [0, 1] as const) {
              const g = BUFFERS[`gramDims${'AB'[v]}`].values!;
              // gramDims() as workspace.ts formBuffers() writes it: [n, d, ceil(side/32), v * partialsPerView, shift, center, 0, 0, v]; the engine's
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
    const plan = manifest.loss.plans.shuffle as unknown as { dual: { uniforms: Record<string, { fields: { name: string; type: string; offset: number }[] }> } };
    const fields = plan.dual.uniforms.groupParamsA.fields;
    for (const [n, d] of all.filter((_, i) => i % 11 === 0).concat([[512, 516], [2048, 8192], [600, 1156]])) {
      if (d % 4 !== 0) continue;
      for (const c of COEFFICIENT_SETS.slice(0, 2)) {
        const vars = bind(envFor(n, d, c, 8), planVariables('shuffle', 'dual'));
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
      for (const variant of ALL_VARIANTS) {
        if (!runs(variant, n, d)) continue;
        // primalBlocked at a limit that leaves the narrowest blocks (64 columns, or more where the view needs more).
        for (const [form, maxBinding] of [...FORM_NAMES.map((f) => [f, WIDE_LIMIT] as const), ...(hasBlockedPlan(variant) ? [['primalBlocked', Math.max(4 * n * d, 4 * d * 64)] as const] : [])]) {
          const vars = bind(envFor(n, d, undefined, 8, maxBinding), planVariables(variant, form));
          for (const pass of passesOf([...forwardPasses(variant, form), ...backwardPasses(variant, form)])) {
            for (const [name, b] of Object.entries(KERNELS[pass.kernel].bindings as Record<string, { role: Role; count: string }>)) {
              const buffer = BUFFERS[pass.buffers[b.role]!];
              if (buffer.kind === 'uniform') continue;
              const elementFloats = name.endsWith('4') ? 4 : 1;   // z4, other4, covOffDiag4, grad4: vec4<f32>
              // A pass that reaches fewer floats than the kernel's count (a column block; no matrix) says so.
              const floats = pass.floats?.[b.role];
              const needs = floats ? evaluate(floats, vars) : evaluate(b.count, vars) * elementFloats;
              expect(needs, `${variant} ${form} ${pass.label} ${name} ${n}x${d}`).toBeLessThanOrEqual(evaluate(buffer.count!, vars));
              if (buffer.scope !== 'group') expect(4 * evaluate(buffer.count!, vars), `${variant} ${form} ${pass.kernel} ${name} ${n}x${d}: within maxBinding`).toBeLessThanOrEqual(form === 'primalBlocked' ? maxBinding : Infinity);
            }
          }
        }
      }
    }
  });

  it("binding roles in WGSL order are the programs' binding order; overrides are the specs' constants", () => {
    const roles = (id: KernelId) => reflect(readFileSync(join(ROOT, 'kernels', KERNELS[id].file), 'utf8')).bindings
      .map((b) => (KERNELS[id].bindings as Record<string, { role: string }>)[b.name].role);
    /** Constants as numbers: values, bools as 1 or 0, formulas evaluated with lanes = 8. */
    const constants = (c: Readonly<Record<string, number | boolean | string>> | undefined) =>
      Object.fromEntries(Object.entries(c ?? {}).map(([k, v]) => [k, typeof v === 'string' ? evaluate(v, { lanes: 8 }) : Number(v)]));
    for (const variant of VARIANT_NAMES) {
      for (const form of FORM_NAMES) {
        // A shape where every pass runs (panels from 512 rows).
        const { gramSpecs, gradientSpecs, gram, gradient } = programDispatches(variant, form, 520, 1156);
        for (const x of [...gram, ...gradient]) {
          const id = String(x.pipeline) as KernelId;
          const spec = [...gramSpecs, ...gradientSpecs].find((s) => s.name === id)!;
          expect(roles(id), `${variant} ${form} ${x.label}`).toEqual(x.bindings.map(roleOf));
          expect(constants(KERNELS[id].overrides), id).toEqual(constants({ ...spec.constants, ...('WRITE_MATRIX' in (spec.constants ?? {}) ? { WRITE_MATRIX: true } : {}) }));
          expect(spec.code, id).toBe(readFileSync(join(ROOT, 'kernels', KERNELS[id].file), 'utf8'));
        }
        expect([VARIANTS[variant].gram[form], VARIANTS[variant].backward[form], VARIANTS[variant].mirroredBackward?.[form], VARIANTS[variant].groupedBackward?.[form]]
          .filter(Boolean).sort()).toEqual([...new Set([...gram, ...gradient].map((x) => String(x.pipeline).replace(/_vec4$/, '')))].sort());
      }
    }
    // The engine binds column_stats as [a, b, stats, flags, dims] and loss_terms as [stats, flags, partials, result, params] (passes.ts).
    expect(roles('column_stats')).toEqual(['a', 'b', 'stats', 'flags', 'dims']);
    expect(roles('loss_terms')).toEqual(['stats', 'flags', 'partials', 'result', 'params']);
    expect(constants(KERNELS.column_stats.overrides)).toEqual(constants(columnStats.spec.constants));
    expect(constants(KERNELS.loss_terms.overrides)).toEqual(constants(lossTerms.spec.constants));
  });

  it("uniform structs parsed from the WGSL fit shared.ts's UNIFORM_BYTES", () => {
    const manifest = buildManifest(ROOT);
    const size = (id: KernelId, struct: string) => (manifest.kernels[id].structs as Record<string, { size: number }>)[struct].size;
    const round16 = (x: number) => Math.ceil(x / 16) * 16;
    expect(round16(size('column_stats', 'Dims'))).toBe(UNIFORM_BYTES.dims);
    expect(size('tiled/primal_gram', 'GramDims')).toBe(UNIFORM_BYTES.gramDims);
    expect(size('subgroup/dual_gram', 'GramDims')).toBe(UNIFORM_BYTES.gramDims);
    expect(size('loss_terms', 'TermParams')).toBe(UNIFORM_BYTES.termParams);
    expect(size('tiled/dual_gradient', 'BackwardParams')).toBe(UNIFORM_BYTES.backwardParams);
    expect(size('form_decision', 'DecisionParams')).toBe(UNIFORM_BYTES.decisionParams);
  });

  it('every formula of each plan evaluates to a finite number for every shape', () => {
    for (const [n, d] of all.filter((_, i) => i % 3 === 0)) {
      for (const variant of VARIANT_NAMES) {
        for (const form of planForms(variant)) {
          // The formulas this plan reads: its kernels' dispatches, constants and bindings, the buffers they bind, the host's.
          const passes = passesOf([...forwardPasses(variant, form), ...backwardPasses(variant, form)]);
          const formulas: [string, string][] = [
            ...HOST.shape.require.map((f) => ['shape', f] as [string, string]), ['form choice', HOST.formChoice.dualWhen], ['blocked', HOST.blocked.when],
            ...HOST.limit.reject.flatMap((r) => [['limit', r.when], ['limit', r.bytes]] as [string, string][]),
          ];
          for (const pass of passes) {
            const k = KERNELS[pass.kernel];
            (pass.dispatch ?? k.dispatch).forEach((f) => formulas.push([`${pass.kernel} dispatch`, f]));
            for (const f of Object.values(pass.floats ?? {})) formulas.push([`${pass.label} floats`, f!]);
            for (const [name, v] of Object.entries(k.overrides)) if (typeof v === 'string') formulas.push([`${pass.kernel} ${name}`, v]);
            for (const [name, b] of Object.entries(k.bindings)) formulas.push([`${pass.kernel} ${name}`, b.count]);
            for (const name of Object.values(pass.buffers)) {
              const b = BUFFERS[name!];
              if (b.count) formulas.push([`buffer ${name}`, b.count]);
              for (const [field, f] of Object.entries(b.values ?? {})) formulas.push([`${name}.${field}`, f]);
            }
          }
          for (const lanes of LANES) {
            // primalBlocked where it runs: a limit that holds a view and 64 columns of Coff.
            const maxBinding = form === 'primalBlocked' ? Math.max(4 * n * d, 4 * d * 64) : WIDE_LIMIT;
            const vars = bind(envFor(n, d, COEFFICIENT_SETS[1], lanes, maxBinding), planVariables(variant, form));
            // g: the last column group or block (the formulas of 'group' uniforms and of a loop's dispatches name it).
            const g = (vars.panelGroups ?? vars.blocks ?? 1) - 1;
            for (const [where, f] of formulas) expect(Number.isFinite(evaluate(f, { ...vars, g })), `${variant} ${form} ${where}: ${f} at ${n}x${d}`).toBe(true);
          }
        }
      }
    }
  });
});

/** An engine as far as bindingLimit(), checkBinding() and columnBlocks() read one: a device limit of `limit`, the coefficients. */
const engineAt = (limit: number, c = COEFFICIENT_SETS[0]) =>
  ({ handle: { device: { limits: { maxStorageBufferBindingSize: limit } } }, options: {}, coefficients: c }) as unknown as Engine;

/** Binding limits for a shape: around each multiple of 64 columns of Coff, a view's bytes, a primal matrix's, and the devices' usual ones. */
function limitsFor(n: number, d: number): number[] {
  const limits = [4 * n * d, 4 * (d * d + d), 4 * (d * d + d) - 4, 4 * d * d, 128 * 2 ** 20, 2 ** 31 - 4, 2 ** 32 - 4];
  for (const columns of [64, 128, 192, 256, 1024]) limits.push(4 * d * columns - 4, 4 * d * columns, 4 * d * columns + 4);
  return limits;
}

describe('the primalBlocked plans against the engine\'s blocked backward (backward.ts columnBlocks, passes.ts blockedBackwardSteps)', () => {
  const all = shapes().filter((_, i) => i % 4 === 0).concat([[300, 300], [40, 300], [23, 200], [61, 260], [24, 8192], [5000, 4999]]);
  const manifest = buildManifest(ROOT);

  it('exists for every variant whose primal gradient reads column blocks (its columnBlocks), with primal_gram_columns as the engine builds it', () => {
    for (const variant of ALL_VARIANTS) {
      const blocks = !!REGISTRY[variant].forms.primal?.gradient.columnBlocks;
      expect(hasBlockedPlan(variant), variant).toBe(blocks);
      expect('primalBlocked' in manifest.loss.plans[variant], variant).toBe(blocks);
    }
    expect(KERNELS.primal_gram_columns.overrides).toEqual(columnBlockGram.spec.constants);
    expect(readFileSync(join(ROOT, 'kernels', KERNELS.primal_gram_columns.file), 'utf8')).toBe(columnBlockGram.spec.code);
  });

  it("blocked.when is the engine's keepsMatrix false; blockWidth and blocks are columnBlockWidth's; the limit rules are the engine's checks", () => {
    for (const [n, d] of all) {
      for (const limit of limitsFor(n, d)) {
        const e = engineAt(limit);
        const env = envFor(n, d, undefined, 8, limit);
        const label = `${n}x${d} limit ${limit}`;
        expect(!!evaluate(HOST.blocked.when, env), label).toBe(!keepsMatrix(e, 'primal', d, true));
        const vars = bind(env, planVariables('tiled', 'primalBlocked'));
        const width = columnBlockWidth(d, limit);
        expect(vars.blockWidth, label).toBe(width);
        const throws = (f: () => void) => { try { f(); return false; } catch (error) { expect(error).toBeInstanceOf(LimitError); return true; } };
        const [view, dual, block] = HOST.limit.reject;
        expect(!!evaluate(view.when, env), label).toBe(throws(() => checkBinding(e, 'a view', n * d * 4)));
        expect(!!evaluate(dual.when, env), label).toBe(throws(() => checkBinding(e, 'the dual matrix', PACKED.floats('dual', n, d) * 4)));
        expect(!!evaluate(block.when, env), label).toBe(width === 0);
        expect([view.forms, dual.forms, block.forms]).toEqual([['primal', 'dual', 'primalBlocked'], ['dual'], ['primalBlocked']]);
        if (width === 0) {
          expect(() => columnBlocks(e, standInDevice, { n, d } as Workspace), label).toThrow(LimitError);
          expect(() => columnBlocks(e, standInDevice, { n, d } as Workspace), label).toThrow(`needs ${MiB(evaluate(block.bytes, env))}`);
          continue;
        }
        // The engine's blocks: the plan's g = 0 .. blocks-1, from g*blockWidth, min(blockWidth, d - g*blockWidth) wide.
        const { blocks } = columnBlocks(e, standInDevice, { n, d } as Workspace);
        expect(vars.blocks, label).toBe(blocks.length);
        const dims = BUFFERS.blockDimsA.values!;
        blocks.forEach((b, g) => expect([evaluate(dims.blockStart, { ...vars, g }), evaluate(dims.blockWidth, { ...vars, g })], `${label} block ${g}`).toEqual([b.start, b.width]));
      }
    }
  });

  it("each block's uniforms are the bytes the engine writes (gramDims, backwardParams of the block)", () => {
    type Uniform = { fields: { name: string; type: string; offset: number; value: string }[] };
    const uniforms = (manifest.loss.plans.tiled as unknown as { primalBlocked: { uniforms: Record<string, Uniform> } }).primalBlocked.uniforms;
    for (const [n, d] of all.filter((_, i) => i % 3 === 0)) {
      for (const c of COEFFICIENT_SETS.slice(0, 2)) {
        for (const limit of [4 * d * 64, 4 * d * 192 + 4, Math.max(4 * n * d, 4 * d * 64)]) {
          const vars = bind(envFor(n, d, c, 8, limit), planVariables('tiled', 'primalBlocked'));
          // What columnBlocks() writes into each block's uniforms, by buffer.
          const written = new Map<unknown, ArrayBuffer>();
          const device = {
            ...standInDevice,
            queue: { writeBuffer: (buffer: unknown, _offset: number, data: ArrayBufferView | ArrayBuffer) => written.set(buffer, ArrayBuffer.isView(data) ? data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer : data) },
          } as unknown as GPUDevice;
          const { blocks } = columnBlocks(engineAt(limit, c), device, { n, d } as Workspace);
          blocks.forEach((block, g) => {
            for (const v of [0, 1] as const) {
              for (const [name, buffer] of [[`blockDims${'AB'[v]}`, block.dims[v]], [`blockParams${'AB'[v]}`, block.params[v]]] as const) {
                const bytes = new DataView(written.get(buffer)!);
                for (const f of uniforms[name].fields) {
                  const expected = evaluate(f.value, { ...vars, g });
                  const actual = f.type === 'f32' ? bytes.getFloat32(f.offset, true) : bytes.getUint32(f.offset, true);
                  const label = `${n}x${d} limit ${limit} block ${g} ${name}.${f.name}: ${actual} vs ${expected}`;
                  expect(f.type === 'f32' ? Math.abs(actual - Math.fround(expected)) <= 1e-7 * Math.abs(expected) : actual === expected, label).toBe(true);
                }
              }
            }
          });
        }
      }
    }
  });

  it("the loop's passes are the engine's steps, block by block: kernels, workgroups, bindings; the forward's Gram keeps no matrix", () => {
    for (const [[n, d], lanes] of all.flatMap((shape) => [8, 32].map((lanes) => [shape, lanes] as const))) {
      for (const variant of ALL_VARIANTS.filter((v) => hasBlockedPlan(v) && runs(v, n, d, lanes))) {
        const traits = traitsOf(lanes);
        const kernels = REGISTRY[variant].forms.primal!;
        const limit = Math.max(4 * n * d, 4 * d * 64, 4 * d * 128 + (n % 7) * 4 * d);
        if (columnBlockWidth(d, limit) === 0) continue;
        const vars = bind(envFor(n, d, undefined, lanes, limit), planVariables(variant, 'primalBlocked'));
        const label = `${variant} ${n}x${d} lanes ${lanes} limit ${limit}`;
        // The engine's steps, its stand-in buffers labeled with the plan's names.
        const named = (label: string) => ({ label }) as unknown as GPUBuffer;
        const { blocks } = columnBlocks(engineAt(limit), standInDevice, { n, d } as Workspace);
        const names = new Map<unknown, string>();
        blocks.forEach((b, g) => [0, 1].forEach((v) => { names.set(b.dims[v], `blockDims${'AB'[v]} ${g}`); names.set(b.params[v], `blockParams${'AB'[v]} ${g}`); }));
        const specs = kernels.gradient.specs({ d, traits, views: [], accumulate: false });
        const steps = blockedBackwardSteps(
          { rows: n, d, traits, views: [named('A'), named('B')], stats: named('stats') },
          {
            program: kernels.gradient, pipelines: specs.map((spec) => spec.name as unknown as GPUComputePipeline), matrix: named('columnBlock'),
            grads: [named('gradA'), named('gradB')], upstream: named('upstream'), params: [],
          },
          columnBlockGram.spec.name as unknown as GPUComputePipeline, blocks,
        ) as Dispatch[];
        const engine = steps.map((x) => ({
          kernel: String(x.pipeline), workgroups: three(counts(x)),
          bindings: x.bindings.map((b) => names.get(b) ?? (b as unknown as { label: string }).label),
        }));
        // The plan's loop, unrolled; bindings in WGSL binding order, a group-scope buffer as its instance g.
        const [loop] = backwardPasses(variant, 'primalBlocked') as GroupLoop[];
        expect(loop.forEachGroup, label).toBe('blocks');
        const entries = (manifest.loss.plans[variant] as unknown as { primalBlocked: { backward: { passes: { bindings: { binding: number; buffer: string }[] }[] }[] } }).primalBlocked.backward[0].passes;
        const plan = Array.from({ length: vars.blocks }, (_, g) => loop.passes.map((pass: PassPlan, i) => ({
          kernel: pass.kernel,
          workgroups: (pass.dispatch ?? KERNELS[pass.kernel].dispatch).map((f) => evaluate(f, { ...vars, g })),
          bindings: [...entries[i].bindings].sort((x, y) => x.binding - y.binding).map((b) => (BUFFERS[b.buffer].scope === 'group' ? `${b.buffer} ${g}` : b.buffer)),
        }))).flat();
        expect(plan, label).toEqual(engine);
        // The forward: the primal Gram as the engine builds it where the matrix is not kept (WRITE_MATRIX false).
        const gramSpec = kernels.gram.specs({ d, traits, views: [], writeMatrix: false })[0];
        for (const pass of forwardPasses(variant, 'primalBlocked').filter((p) => p.kernel === VARIANTS[variant].gram.primal)) {
          const constants = { ...KERNELS[pass.kernel].overrides, ...pass.overrides };
          const numbers = (c: Record<string, unknown>) => Object.fromEntries(Object.entries(c).map(([k, v]) => [k, typeof v === 'string' ? evaluate(v, { lanes }) : Number(v)]));
          expect(numbers(constants), label).toEqual(numbers(gramSpec.constants!));
          expect(pass.buffers.matrix, label).toBe('noMatrix');
        }
      }
    }
  });
});

describe("the float16 passes (loss.float16) against the engine's conversions (src/variants/half.ts)", () => {
  const manifest = JSON.parse(readFileSync(fileURLToPath(new URL('../kernels/manifest.json', import.meta.url)), 'utf8'));
  const float16 = manifest.loss.float16;

  it('dispatch counts, buffer sizes and the uniform are what the engine uses, for every size up to past 65535 workgroups', () => {
    for (const [n, d] of [[2, 1], [3, 5], [33, 65], [256, 1024], [2048, 8192], [4096, 16384], [65536, 1025]]) {
      const count = n * d;
      for (const pass of [...float16.forward, ...float16.backward]) {
        const expected = pass.kernel === 'half_to_float' ? halfToFloat.workgroups(count) : floatToHalf.workgroups(count);
        expect(pass.dispatch.map((f: string) => evaluate(f, { n, d })), `${pass.label} ${n}x${d}`).toEqual([...expected, 1]);
      }
      for (const name of ['A16', 'B16', 'gradA16', 'gradB16']) expect(evaluate(manifest.loss.buffers[name].bytes, { n, d }), name).toBe(halfBytes(count));
      const fields = float16.uniforms.halfDims.fields as { name: string; value: string; offset: number }[];
      const bytes = new Uint32Array(4);
      for (const f of fields) bytes[f.offset / 4] = evaluate(f.value, { n, d });
      expect([...bytes]).toEqual([...halfDims(count)]);
    }
  });

  it("the passes' constants are the engine's specs', ACCUMULATE off (hosts set it to add)", () => {
    const constants = (pass: { constants: Record<string, string> }) => Object.fromEntries(Object.entries(pass.constants).map(([k, v]) => [k, evaluate(v, {})]));
    for (const pass of float16.forward) expect(constants(pass)).toEqual(halfToFloat.spec.constants);
    for (const pass of float16.backward) expect(constants(pass)).toEqual({ ...floatToHalf.spec(false).constants, ACCUMULATE: 0 });
  });
});

describe('kernels/manifest.json', () => {
  it('is what scripts/manifest.ts generates from the current sources (run npm run build)', () => {
    const path = join(ROOT, 'kernels', 'manifest.json');
    expect(existsSync(path), 'kernels/manifest.json is missing: npm run build').toBe(true);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual(JSON.parse(JSON.stringify(buildManifest(ROOT))));
  });
});
