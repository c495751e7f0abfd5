// Generates kernels/manifest.json (run by scripts/build.mjs): everything a native host (C++ with Dawn,
// Rust with wgpu) needs to run the kernels without this package. It joins what the WGSL sources declare
// (bindings, overrides, workgroup sizes, struct layouts; read by scripts/wgsl-reflect.ts) with the loss's
// description in src/manifest/plan.ts (sizes, dispatch counts, uniform values, the passes, the host's rules),
// and fails when the two disagree. docs/native.md explains the result.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BUFFERS, DEFAULT_COEFFICIENTS, FLOAT16, HOST, INPUTS, KERNELS, PRESETS, VARIANTS, backwardPasses, forwardPasses, planForms, planVariables, type ManifestVariant,
  passesOf, type GroupLoop, type KernelId, type PassPlan,
} from '../src/manifest/plan.js';
import { evaluate, FORMULA_GRAMMAR, namesIn } from './formula.js';
import { reflect, workgroupBytes, type Reflection, type StructLayout } from './wgsl-reflect.js';

const ELEMENT_BYTES: Record<string, number> = { f32: 4, u32: 4, 'atomic<u32>': 4, 'vec4<f32>': 16 };
/** The names the plans bind (planVariables), over every variant and form. */
const PLAN_NAMES = [...new Set((Object.keys(VARIANTS) as ManifestVariant[]).flatMap((v) => planForms(v).flatMap((form) => Object.keys(planVariables(v, form)))))];
/** What each plan variable means, for the manifest's reader; buildManifest checks that every name has one. */
const PLAN_VARIABLE_NOTES: Record<string, string> = {
  side: 'side of the Gram matrix: d (primal, C = Zc^T Zc/(n-1)) or n (dual, K = Zc Zc^T)',
  dual: '1 in the dual form, 0 in the primal form',
  tiles: '32 x 32 tiles per side of the Gram matrix (GramDims.tiles)',
  upperTiles: "the shuffle Gram kernels' tiles (32 x 8 lanes) on or above the diagonal: one workgroup each (their upperTileCount)",
  partialsPerView: 'partial sums one Gram pass writes per view',
  panels: '1 where the dual shuffle backward reads Zc from column panels (lavapipe/centered_panels), else 0',
  panelGroups: 'iterations of a group loop (forEachGroup): column groups of the dual shuffle backward; 1 where panels = 0',
  panelWidth: 'columns per group (a multiple of 8 lanes; the last group may run past d)',
  blockWidth: "primalBlocked: columns per block of Coff, the most that fit maxBinding (d*blockWidth floats) as a multiple of 64, at most d rounded up to 64; 0: the problem cannot run (loss.host.limit). Block g has min(blockWidth, d - g*blockWidth) columns from g*blockWidth",
  blocks: 'primalBlocked: iterations of its backward loop (forEachGroup): the column blocks, ceil(d/blockWidth)',
};

function check(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`manifest: ${message}`);
}

/** A formula may name only INPUTS (and, unless `problemOnly`, the plan variables). */
function checkNames(formula: string, where: string, extra: string[] = [], problemOnly = false) {
  const allowed = new Set([...Object.keys(INPUTS), ...(problemOnly ? [] : PLAN_NAMES), ...extra]);
  for (const name of namesIn(formula)) check(allowed.has(name), `${where}: formula ${JSON.stringify(formula)} names unknown ${name}`);
}

/** "4*n*d" for a product; parenthesized otherwise. */
const times = (bytes: number, count: string) =>
  count === '1' ? String(bytes) : /^[\w*/.]+$/.test(count) ? `${bytes}*${count}` : `${bytes}*(${count})`;

/** A pipeline constant as a formula: a number, a bool as 1 or 0, or a formula in the inputs (`lanes`). */
const asFormula = (v: number | boolean | string) => (typeof v === 'boolean' ? String(Number(v)) : String(v));

/**
 * A WGSL expression (a workgroup size) as a formula in the inputs: each name replaced by the formula the
 * plan sets for it, or its number (a const, or an override's numeric default); evaluated where it names
 * no input.
 */
function inInputs(expression: string, formulas: Record<string, string>, numbers: Record<string, number>): string {
  const formula = expression.replace(/\b(\d+)[uif]\b/g, '$1').replace(/\b[A-Za-z_]\w*\b/g, (name) =>
    (name in formulas ? `(${formulas[name]})` : name in numbers ? String(numbers[name]) : name));
  return namesIn(formula).length === 0 ? String(evaluate(formula, {})) : formula.replace(/^\((\w+)\)$/, '$1');
}

function kernelEntry(id: KernelId, r: Reflection) {
  const k = KERNELS[id];
  check(r.entryPoint === 'main', `${k.file}: entry point ${r.entryPoint}, expected main`);
  const declared = new Set(r.overrides.map((o) => o.name));
  for (const name of Object.keys(k.overrides)) check(declared.has(name), `${k.file}: plan sets override ${name}, which the WGSL does not declare`);
  const constants = Object.fromEntries(Object.entries(k.overrides).map(([n, v]) => [n, asFormula(v)]));
  Object.values(constants).forEach((f) => checkNames(f, `${k.file} constants`, [], true));
  // Numbers for the overrides the plan leaves at their WGSL defaults, where those are numbers.
  const numbers: Record<string, number> = { ...r.constants };
  for (const o of r.overrides) {
    if (o.name in constants && namesIn(constants[o.name]).length === 0) numbers[o.name] = evaluate(constants[o.name], {});
    else if (!(o.name in constants) && o.default !== undefined && /^(\d+u?|true|false)$/.test(o.default)) numbers[o.name] = o.type === 'bool' ? Number(o.default === 'true') : Number(o.default.replace(/u$/, ''));
  }
  const env = numbers;
  const planBindings = k.bindings as Record<string, { role: string; count: string }>;
  const names = r.bindings.map((b) => b.name);
  check(names.length === Object.keys(planBindings).length && names.every((n) => n in planBindings),
    `${k.file}: WGSL bindings [${names}] vs plan [${Object.keys(planBindings)}]`);
  const bindings = r.bindings.map((b) => {
    check(b.group === 0, `${k.file}: binding ${b.name} is in group ${b.group}; the plans use group 0 only`);
    const { role, count } = planBindings[b.name];
    checkNames(count, `${k.file} binding ${b.name}`);
    const struct = r.structs[b.element];
    check(b.buffer === 'uniform' ? struct : ELEMENT_BYTES[b.element], `${k.file}: binding ${b.name} of unknown type ${b.type}`);
    return {
      group: b.group, binding: b.binding, name: b.name, role, buffer: b.buffer, access: b.access, type: b.element,
      count, bytes: struct ? String(struct.size) : times(ELEMENT_BYTES[b.element], count),
    };
  });
  k.dispatch.forEach((f) => checkNames(f, `${k.file} dispatch`));
  const structs = Object.fromEntries(r.bindings.filter((b) => b.buffer === 'uniform').map((b) => [b.element, r.structs[b.element]]));
  return {
    file: k.file,
    entryPoint: r.entryPoint,
    purpose: k.purpose,
    enables: r.enables,
    /** Each override, with the formula the plan sets it to (null: its WGSL default). */
    overrides: r.overrides.map((o) => ({ ...o, value: constants[o.name] ?? null })),
    /** Pipeline constants as formulas in the inputs (bools as 1/0): evaluate each for WebGPU. */
    constants,
    workgroupSize: [...r.workgroupSize, '1', '1'].slice(0, 3).map((e) => inInputs(e, constants, numbers)),
    workgroupMemoryBytes: Object.values(r.workgroupVars).reduce((sum, t) => sum + workgroupBytes(t, env), 0),
    dispatch: k.dispatch,
    bindings,
    structs,
  };
}

type KernelEntry = ReturnType<typeof kernelEntry>;

/** A pass: its kernel's constants (with the pass's own overrides), dispatch (the pass's where it has one; `g` named only in a loop) and bindings. */
function passEntry(pass: PassPlan, kernel: KernelEntry, inLoop = false) {
  const overrides = Object.fromEntries(Object.entries(pass.overrides ?? {}).map(([name, v]) => {
    check(kernel.overrides.some((o) => o.name === name), `pass ${pass.label}: sets override ${name}, which ${kernel.file} does not declare`);
    const formula = asFormula(v);
    checkNames(formula, `pass ${pass.label} constants`, [], true);
    return [name, formula];
  }));
  const dispatch = pass.dispatch ?? kernel.dispatch;
  dispatch.forEach((f) => checkNames(f, `pass ${pass.label} dispatch`, inLoop ? ['g'] : []));
  for (const role of Object.keys(pass.floats ?? {})) check(kernel.bindings.some((b) => b.role === role), `pass ${pass.label}: floats for role ${role}, which ${kernel.file} does not bind`);
  const bindings = kernel.bindings.map((b) => {
    const buffer = pass.buffers[b.role as keyof PassPlan['buffers']];
    check(buffer && BUFFERS[buffer], `pass ${pass.label}: no buffer for ${kernel.file}'s ${b.name} (role ${b.role})`);
    const plan = BUFFERS[buffer];
    check(plan.kind === b.buffer, `pass ${pass.label}: ${buffer} is ${plan.kind}, bound to ${b.buffer} binding ${b.name}`);
    // In memory a vec4<f32> array is f32s, and an atomic<u32> a u32.
    const compatible = b.buffer === 'uniform' ? plan.type === b.type : plan.type === b.type || (plan.type === 'f32' && b.type === 'vec4<f32>') || (plan.type === 'u32' && b.type === 'atomic<u32>');
    check(compatible, `pass ${pass.label}: ${buffer} (${plan.type}) bound to ${b.name} (${b.type})`);
    const floats = pass.floats?.[b.role as keyof PassPlan['buffers']];
    if (floats) checkNames(floats, `pass ${pass.label} binding ${b.name}`);
    return { binding: b.binding, name: b.name, buffer, access: b.access, ...(floats ? { bytes: times(4, floats) } : {}) };
  });
  const writes = [...new Set(bindings.filter((b) => b.access === 'read_write').map((b) => b.buffer))];
  const reads = [...new Set(bindings.filter((b) => b.access === 'read').map((b) => b.buffer))];
  // WebGPU rejects a buffer bound writable and also bound again in the same dispatch.
  for (const w of writes) check(bindings.filter((b) => b.buffer === w).length === 1, `pass ${pass.label}: ${w} is written and bound twice`);
  return {
    label: pass.label, kernel: pass.kernel,
    constants: { ...kernel.constants, ...overrides }, workgroupSize: kernel.workgroupSize, dispatch,
    /** `bytes`, where present: what this pass needs of the buffer, less than the kernel's binding (a column block; no matrix). */
    bindings: bindings.map(({ binding, name, buffer, ...rest }) => ({ binding, name, buffer, ...('bytes' in rest ? { bytes: rest.bytes } : {}) })), reads, writes,
  };
}

/** A uniform's layout with each field's value formula; the kernels binding it must agree on the layout. */
function uniformEntry(name: string, layouts: StructLayout[]) {
  const plan = BUFFERS[name];
  const [layout] = layouts;
  for (const other of layouts) {
    check(other.size === layout.size && other.fields.every((f, i) => f.offset === layout.fields[i]?.offset && f.type === layout.fields[i]?.type),
      `uniform ${name}: kernels disagree on the layout of ${plan.type}`);
  }
  const values = plan.values ?? {};
  for (const field of Object.keys(values)) check(layout.fields.some((f) => f.name === field), `uniform ${name}: ${plan.type} has no field ${field}`);
  for (const formula of Object.values(values)) checkNames(formula, `uniform ${name}`, plan.scope === 'group' ? ['g'] : [], plan.scope === 'problem');
  return {
    struct: layout.name, bytes: layout.size,
    fields: layout.fields.map((f) => ({ name: f.name, type: f.type, offset: f.offset, value: values[f.name] ?? '0' })),
  };
}

export function buildManifest(root: string) {
  const described = Object.keys(PLAN_VARIABLE_NOTES);
  check(PLAN_NAMES.length === described.length && PLAN_NAMES.every((name) => described.includes(name)),
    `plan variables [${PLAN_NAMES}] and their notes [${described}] differ`);
  const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version as string;
  const reflections = Object.fromEntries((Object.keys(KERNELS) as KernelId[]).map((id) =>
    [id, reflect(readFileSync(join(root, 'kernels', KERNELS[id].file), 'utf8'))]));
  const kernels = Object.fromEntries((Object.keys(KERNELS) as KernelId[]).map((id) => [id, kernelEntry(id, reflections[id])])) as Record<KernelId, KernelEntry>;

  // A uniform's size is its struct's, and must be the same in every plan.
  const uniformBytes: Record<string, number> = {};
  const plans = Object.fromEntries((Object.keys(VARIANTS) as ManifestVariant[]).map((variant) => {
    const v = VARIANTS[variant];
    checkNames(v.requires.when, `variant ${variant} requires`, [], true);
    for (const kernelId of [...Object.values(v.gram), ...Object.values(v.backward)]) {
      check(v.requires.features.every((f) => kernels[kernelId].enables.includes(f)) && kernels[kernelId].enables.every((e) => v.requires.features.includes(e)),
        `${kernelId}: enables [${kernels[kernelId].enables}], variant ${variant} requires [${v.requires.features}]`);
    }
    const byForm = Object.fromEntries(planForms(variant).map((form) => {
      const variables = planVariables(variant, form);
      Object.values(variables).forEach((f) => checkNames(f, `variant ${variant} form ${form} variables`));
      const entry = (p: PassPlan) => passEntry(p, kernels[p.kernel]);
      const forward = forwardPasses(variant, form).map(entry);
      const backward = backwardPasses(variant, form).map((step: PassPlan | GroupLoop) => {
        if (!('passes' in step)) return entry(step);
        checkNames(step.forEachGroup, `variant ${variant} form ${form} group loop`);
        return { forEachGroup: step.forEachGroup, passes: step.passes.map((p) => passEntry(p, kernels[p.kernel], true)) };
      });
      const all = passesOf([...forwardPasses(variant, form), ...backwardPasses(variant, form)]).map((p) => passEntry(p, kernels[p.kernel], true));
      // A 'group' buffer has one instance per group: only a loop's passes can bind it.
      for (const p of [...forward, ...backward].filter((s) => !('passes' in s)) as ReturnType<typeof passEntry>[]) {
        for (const b of p.bindings) check(BUFFERS[b.buffer].scope !== 'group', `pass ${p.label}: binds ${b.buffer}, one per column group, outside a group loop`);
      }
      const buffers = [...new Set(all.flatMap((p) => p.bindings.map((b) => b.buffer)))];
      const uniforms = Object.fromEntries(buffers.filter((b) => BUFFERS[b].kind === 'uniform').map((b) => {
        const layouts = all.flatMap((p) => p.bindings.filter((x) => x.buffer === b).map(() => kernels[p.kernel].structs[BUFFERS[b].type]));
        const entry = uniformEntry(b, layouts);
        check((uniformBytes[b] ??= entry.bytes) === entry.bytes, `uniform ${b}: sizes differ between plans`);
        return [b, entry];
      }));
      // An array: each may use the ones before it, and JSON object order is not kept by every parser.
      return [form, { variables: Object.entries(variables).map(([name, value]) => ({ name, value })), buffers, uniforms, forward, backward }];
    }));
    return [variant, { note: v.note, requires: v.requires, ...byForm }];
  }));

  const halfDims = uniformEntry('halfDims', ['half_to_float', 'float_to_half'].map((k) => kernels[k].structs[BUFFERS.halfDims.type]));
  uniformBytes.halfDims = halfDims.bytes;
  const float16 = {
    note: FLOAT16.note,
    buffers: [...new Set([...FLOAT16.forward, ...FLOAT16.backward].flatMap((p) => Object.values(p.buffers)))],
    uniforms: { halfDims },
    forward: FLOAT16.forward.map((p) => passEntry(p, kernels[p.kernel])),
    backward: FLOAT16.backward.map((p) => passEntry(p, kernels[p.kernel])),
  };

  const buffers = Object.fromEntries(Object.entries(BUFFERS).map(([name, b]) => {
    if (b.count) checkNames(b.count, `buffer ${name}`, [], b.scope === 'problem');
    const usage = b.kind === 'uniform' ? ['UNIFORM', 'COPY_DST'] : ['STORAGE', ...(b.hostWrites ? ['COPY_DST'] : []), ...(b.hostReads ? ['COPY_SRC'] : [])];
    const { values: _values, ...rest } = b;
    return [name, { ...rest, bytes: b.kind === 'uniform' ? String(uniformBytes[name]) : times(4, b.count!), usage }];
  }));

  const result = HOST.result.fields;
  checkNames(HOST.nonFinite.when, 'HOST.nonFinite', [...result], true);
  checkNames(HOST.fallback.keepWhen, 'HOST.fallback', [...result, 'minDualShare'], true);
  checkNames(HOST.formChoice.dualWhen, 'HOST.formChoice', [], true);
  checkNames(HOST.blocked.when, 'HOST.blocked', [], true);
  for (const rule of HOST.limit.reject) {
    checkNames(rule.when, 'HOST.limit', [], true);
    checkNames(rule.bytes, 'HOST.limit', [], true);
    check(rule.when === `${rule.bytes} > ${HOST.limit.input}`, `HOST.limit: ${rule.when} is not bytes > ${HOST.limit.input}`);
  }
  check(HOST.limit.input in INPUTS, `HOST.limit: ${HOST.limit.input} is not an input`);
  HOST.shape.require.forEach((f) => checkNames(f, 'HOST.shape', [], true));

  const entries = Object.values(kernels);
  const max = (f: (k: KernelEntry) => number) => Math.max(...entries.map(f));
  /** The largest of the kernels' formulas: a number, or max(number, the formulas that name inputs). */
  const largest = (f: (k: KernelEntry) => string) => {
    const formulas = [...new Set(entries.map(f))];
    const numbers = formulas.filter((x) => namesIn(x).length === 0).map((x) => evaluate(x, {}));
    const named = formulas.filter((x) => namesIn(x).length > 0);
    return named.length ? `max(${[Math.max(...numbers), ...named].join(', ')})` : String(Math.max(...numbers));
  };
  return {
    $comment: 'Generated by scripts/manifest.ts (npm run build) from kernels/*.wgsl and src/manifest/plan.ts (with the variants it collects); do not edit. See docs/native.md.',
    manifestVersion: 1,
    package: { name: 'vicreg-wgsl', version },
    formulas: {
      grammar: FORMULA_GRAMMAR,
      inputs: INPUTS,
      planVariables: PLAN_VARIABLE_NOTES,
    },
    coefficients: { defaults: DEFAULT_COEFFICIENTS, presets: PRESETS },
    kernels,
    loss: { buffers, plans, host: HOST, float16 },
    requirements: {
      features: Object.fromEntries(Object.entries(VARIANTS).map(([name, v]) => [name, v.requires.features])),
      limits: {
        maxStorageBufferBindingSize: {
          bytes: 'max(4*n*d, 4*(side*side+side))',
          note: 'the largest binding: a view or gradient (n*d floats) or the packed Gram matrices of both views (side*side+side floats); ' +
            'in the primalBlocked form, which keeps no d x d matrix, a view or one column block (d*blockWidth floats, within maxBinding by construction). Bind maxBinding to what the device allows (loss.host.blocked, loss.host.limit)',
        },
        maxBufferSize: { bytes: 'max(4*n*d, 4*(side*side+side))' },
        maxStorageBuffersPerShaderStage: max((k) => k.bindings.filter((b) => b.buffer === 'storage').length),
        maxUniformBuffersPerShaderStage: max((k) => k.bindings.filter((b) => b.buffer === 'uniform').length),
        maxComputeInvocationsPerWorkgroup: largest((k) => k.workgroupSize.filter((x) => x !== '1').join('*') || '1'),
        maxComputeWorkgroupSizeX: largest((k) => k.workgroupSize[0]),
        maxComputeWorkgroupSizeY: largest((k) => k.workgroupSize[1]),
        maxComputeWorkgroupStorageSize: max((k) => k.workgroupMemoryBytes),
        maxComputeWorkgroupsPerDimension: { note: 'at least every evaluated dispatch count' },
      },
      determinism: 'every reduction is a fixed tree over fixed per-thread slices; no float atomics (loss_terms ORs its non-finite flags with an integer atomic, which is order-independent): the same inputs give bitwise the same loss and gradients on the same device',
    },
  };
}

/** JSON with short arrays and small flat objects on one line. */
function format(value: unknown, indent = ''): string {
  const inner = indent + '  ';
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  const flat = Array.isArray(value) ? value.every((v) => v === null || typeof v !== 'object') : Object.values(value).every((v) => v === null || typeof v !== 'object' || (Array.isArray(v) && v.length === 0));
  const oneLine = Array.isArray(value)
    ? `[${value.map((v) => format(v)).join(', ')}]`
    : `{ ${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${format(v)}`).join(', ')} }`;
  if (flat && oneLine.length + indent.length <= 180) return Array.isArray(value) || Object.keys(value).length ? oneLine : '{}';
  const parts = Array.isArray(value)
    ? value.map((v) => inner + format(v, inner))
    : Object.entries(value).map(([k, v]) => `${inner}${JSON.stringify(k)}: ${format(v, inner)}`);
  return parts.length ? `${Array.isArray(value) ? '[' : '{'}\n${parts.join(',\n')}\n${indent}${Array.isArray(value) ? ']' : '}'}` : Array.isArray(value) ? '[]' : '{}';
}

export const manifestText = (root: string) => `${format(buildManifest(root))}\n`;

/** Writes kernels/manifest.json under `root`; returns its path. */
export function writeManifest(root: string): string {
  const path = join(root, 'kernels', 'manifest.json');
  writeFileSync(path, manifestText(root));
  return path;
}
