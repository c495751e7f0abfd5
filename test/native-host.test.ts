// A generic host that knows only kernels/manifest.json and the WGSL files, as a native app (C++ with
// Dawn, Rust with wgpu) would: it imports nothing from src/. It allocates the named buffers from their
// size formulas, fills the uniforms from their layouts and value formulas, builds pipelines with the
// listed constants, runs the forward passes, reads the result, applies the host rules (non-finite input,
// dual->primal fallback, the primal form past the binding limit in column blocks, problems past the
// limit), runs the backward passes and reads the gradients. docs/native.md describes these same steps.
// Checked against the float64 reference.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { create } from 'webgpu';
import { evaluate, type Env } from '../scripts/formula.js';
import { titled } from './reference/adapter.js';
import {
  dominantFeatureViews, randomViews, referenceVICReg, relativeError, relativeNormError, scaled, type ReferenceOptions, type ViewPair,
} from './reference/float64.js';

// --- The parts of the manifest this host reads ------------------------------------------------------

interface Field { name: string; type: 'u32' | 'f32' | 'i32'; offset: number; value: string }
interface Pass {
  label: string;
  kernel: string;
  /** Formulas in the inputs (lanes). */
  constants: Record<string, string>;
  /** Formulas; in a group loop they may name g. */
  dispatch: [string, string, string];
  bindings: { binding: number; buffer: string }[];
}
/** Passes run once per group g = 0 .. forEachGroup-1, each binding its group's instance of a 'group' buffer. */
interface GroupLoop { forEachGroup: string; passes: Pass[] }
interface FormPlan {
  /** In order: each may use the ones before it. */
  variables: { name: string; value: string }[];
  buffers: string[];
  uniforms: Record<string, { bytes: number; fields: Field[] }>;
  forward: Pass[];
  backward: (Pass | GroupLoop)[];
}
/** The engine's two forms, and the primal form past the binding limit (column blocks). */
type Form = 'primal' | 'dual' | 'primalBlocked';
interface Manifest {
  kernels: Record<string, { file: string; entryPoint: string }>;
  coefficients: { presets: Record<string, { k: string }> };
  loss: {
    buffers: Record<string, { kind: 'storage' | 'uniform'; bytes: string; scope: 'problem' | 'form' | 'group'; usage: string[] }>;
    plans: Record<string, { requires: { features: string[]; subgroups?: string; when: string } } & Record<'primal' | 'dual', FormPlan> & { primalBlocked?: FormPlan }>;
    host: {
      shape: { require: string[] };
      formChoice: { dualWhen: string };
      result: { buffer: string; fields: string[] };
      nonFinite: { when: string; bits: Record<string, number> };
      fallback: { from: Form; to: Form; keepWhen: string; minDualShare: number };
      blocked: { from: Form; to: Form; when: string };
      limit: { input: string; reject: { forms: Form[]; when: string; bytes: string; what: string }[] };
    };
  };
}

const KERNELS = new URL('../kernels/', import.meta.url);
const manifest = JSON.parse(readFileSync(new URL('manifest.json', KERNELS), 'utf8')) as Manifest;

// WebGPU's GPUBufferUsage / GPUMapMode values (not globals in Node).
const USAGE: Record<string, number> = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 };
const MAP_READ = 0x1;

// --- The host ------------------------------------------------------------------------------------

interface Coefficients { lambda: number; mu: number; nu: number; gamma: number; eps: number; preset: 'paper' | 'official' }

interface HostRun {
  form: Form;
  /** The plan variables of that form (blockWidth, blocks in primalBlocked). */
  vars?: Record<string, number>;
  fellBack: boolean;
  result: Record<string, number>;
  /** After a fallback: the dual form's result, whose shares decided it. */
  dualResult?: Record<string, number>;
  /** Set when the input is not finite (then nothing else is): per view, [row, column] of the first bad element. */
  nonFinite?: Record<string, [number, number]>;
  gradA?: Float32Array;
  gradB?: Float32Array;
}

class ManifestHost {
  private pipelines = new Map<string, GPUComputePipeline>();

  constructor(private device: GPUDevice, private lanes: number, private maxLanes: number) {}

  private pipeline(pass: Pass): GPUComputePipeline {
    const constants = Object.fromEntries(Object.entries(pass.constants).map(([name, f]) => [name, evaluate(f, { lanes: this.lanes })]));
    const key = `${pass.kernel} ${JSON.stringify(constants)}`;
    let pipeline = this.pipelines.get(key);
    if (!pipeline) {
      const kernel = manifest.kernels[pass.kernel];
      const module = this.device.createShaderModule({ label: kernel.file, code: readFileSync(new URL(kernel.file, KERNELS), 'utf8') });
      pipeline = this.device.createComputePipeline({
        label: pass.kernel, layout: 'auto', compute: { module, entryPoint: kernel.entryPoint, constants },
      });
      this.pipelines.set(key, pipeline);
    }
    return pipeline;
  }

  /**
   * Forward, host rules, backward: the steps of docs/native.md. `maxBinding`: the binding limit the host
   * keeps to (the device's maxStorageBufferBindingSize unless lowered).
   */
  async run(a: Float32Array, b: Float32Array, [n, d]: [number, number], c: Coefficients, variant: string, scale = 1,
    maxBinding = this.device.limits.maxStorageBufferBindingSize): Promise<HostRun> {
    const { loss } = manifest;
    const plan = loss.plans[variant];
    const host = loss.host;
    // 1. Inputs: the shape, the coefficients (k from the preset), lanes, the binding limit.
    const inputs: Env = {
      n, d, lambda: c.lambda, mu: c.mu, nu: c.nu, gamma: c.gamma, eps: c.eps, k: evaluate(manifest.coefficients.presets[c.preset].k, {}), lanes: this.lanes, maxLanes: this.maxLanes,
      [host.limit.input]: maxBinding,
    };
    for (const rule of host.shape.require) if (!evaluate(rule, inputs)) throw new Error(`shape [${n}, ${d}] fails ${rule}`);
    if (!evaluate(plan.requires.when, inputs)) throw new Error(`variant ${variant} needs ${plan.requires.when}`);

    // The form a choice or the fallback names, past the binding limit: primalBlocked where the primal
    // matrix does not fit; a limit error where the form cannot run at all.
    const limited = (form: Form): Form => {
      if (form === host.blocked.from && evaluate(host.blocked.when, inputs)) {
        if (!plan[host.blocked.to as 'primalBlocked']) throw new LimitError(`variant ${variant} has no ${host.blocked.to} plan: ${host.blocked.when}`);
        form = host.blocked.to;
      }
      for (const rule of host.limit.reject) {
        if (rule.forms.includes(form) && evaluate(rule.when, inputs)) throw new LimitError(`${rule.what} needs ${evaluate(rule.bytes, inputs)} bytes, over maxBinding ${maxBinding}`);
      }
      return form;
    };

    // 2. Buffers: problem-scope ones shared, form-scope ones per form (the fallback needs both).
    const shared = new Map<string, GPUBuffer>();
    const all: GPUBuffer[] = [];
    const prepare = (form: Form) => {
      const vars: Record<string, number> = { ...inputs };
      for (const v of plan[form]!.variables) vars[v.name] = evaluate(v.value, vars);
      const buffers = new Map<string, GPUBuffer>();
      for (const name of plan[form]!.buffers) {
        const spec = loss.buffers[name];
        if (spec.scope === 'group') continue;   // made per group, when a group loop runs
        let buffer = spec.scope === 'problem' ? shared.get(name) : undefined;
        if (!buffer) {
          const size = evaluate(spec.bytes, vars);
          if (spec.kind === 'storage' && size > maxBinding) throw new LimitError(`${name} needs ${size} bytes, over maxBinding ${maxBinding}`);
          buffer = this.device.createBuffer({ label: name, size, usage: spec.usage.reduce((u, flag) => u | USAGE[flag], 0) });
          all.push(buffer);
          if (spec.scope === 'problem') shared.set(name, buffer);
          const uniform = plan[form]!.uniforms[name];
          if (uniform) this.device.queue.writeBuffer(buffer, 0, packUniform(uniform.bytes, uniform.fields, vars));
        }
        buffers.set(name, buffer);
      }
      return { vars, buffers };
    };

    // A 'group' uniform's instance for group g: its value formulas see g.
    const groupBuffer = (form: Form, name: string, vars: Env, g: number) => {
      const uniform = plan[form]!.uniforms[name];
      const groupVars = { ...vars, g };
      const buffer = this.device.createBuffer({ label: `${name} ${g}`, size: evaluate(loss.buffers[name].bytes, groupVars), usage: USAGE.UNIFORM | USAGE.COPY_DST });
      all.push(buffer);
      this.device.queue.writeBuffer(buffer, 0, packUniform(uniform.bytes, uniform.fields, groupVars));
      return buffer;
    };

    // 3. Encode a list of passes: pipeline with the constants, bind group by binding number, dispatch; a
    // group loop's passes once per group, in order, g bound for their dispatch formulas.
    const encode = (encoder: GPUCommandEncoder, steps: (Pass | GroupLoop)[], set: ReturnType<typeof prepare>, form: Form) => {
      for (const step of steps) {
        if ('passes' in step) {
          for (let g = 0; g < evaluate(step.forEachGroup, set.vars); g++) {
            const perGroup = new Map(set.buffers);
            for (const pass of step.passes) {
              for (const x of pass.bindings) {
                if (loss.buffers[x.buffer].scope === 'group' && !perGroup.has(x.buffer)) perGroup.set(x.buffer, groupBuffer(form, x.buffer, set.vars, g));
              }
            }
            encode(encoder, step.passes, { vars: { ...set.vars, g }, buffers: perGroup }, form);
          }
          continue;
        }
        const pass = step;
        const { vars, buffers } = set;
        const pipeline = this.pipeline(pass);
        const bindGroup = this.device.createBindGroup({
          layout: pipeline.getBindGroupLayout(0),
          entries: pass.bindings.map((x) => ({ binding: x.binding, resource: { buffer: buffers.get(x.buffer)! } })),
        });
        const [x, y, z] = pass.dispatch.map((f) => evaluate(f, vars));
        if (x * y * z === 0) continue;   // no workgroups: a pass that does not apply to this shape
        const compute = encoder.beginComputePass({ label: pass.label });
        compute.setPipeline(pipeline);
        compute.setBindGroup(0, bindGroup);
        compute.dispatchWorkgroups(x, y, z);
        compute.end();
      }
    };

    const forward = async (form: Form) => {
      const set = prepare(form);
      this.device.queue.writeBuffer(set.buffers.get('A')!, 0, a as Float32Array<ArrayBuffer>);
      this.device.queue.writeBuffer(set.buffers.get('B')!, 0, b as Float32Array<ArrayBuffer>);
      const encoder = this.device.createCommandEncoder();
      encode(encoder, plan[form]!.forward, set, form);
      const [bytes] = await this.read(encoder, [set.buffers.get(host.result.buffer)!]);
      const values = new Float32Array(bytes);
      return { set, result: Object.fromEntries(host.result.fields.map((name, i) => [name, values[i]])) };
    };

    try {
      // 4. Form (primalBlocked for primal past the limit; a form past it altogether is a limit error), forward, result.
      let form = limited(evaluate(host.formChoice.dualWhen, inputs) ? 'dual' : 'primal');
      let { set, result } = await forward(form);
      // 5. Host rules: a non-finite input ends the call; the dual form falls back where it lost accuracy.
      if (evaluate(host.nonFinite.when, result)) {
        const [flagBytes] = await this.read(this.device.createCommandEncoder(), [set.buffers.get('flags')!]);
        return { form, fellBack: false, result, nonFinite: locateNonFinite(new Uint32Array(flagBytes), d, result.nonFinite, host.nonFinite.bits) };
      }
      let dualResult: Record<string, number> | undefined;
      if (form === host.fallback.from && !evaluate(host.fallback.keepWhen, { ...result, minDualShare: host.fallback.minDualShare })) {
        form = limited(host.fallback.to);
        dualResult = result;
        ({ set, result } = await forward(form));
      }
      // 6. Backward of the form whose result is used: upstream scale, the passes, the gradients.
      this.device.queue.writeBuffer(set.buffers.get('upstream')!, 0, new Float32Array([scale]));
      const encoder = this.device.createCommandEncoder();
      encode(encoder, plan[form]!.backward, set, form);
      const [gradA, gradB] = await this.read(encoder, [set.buffers.get('gradA')!, set.buffers.get('gradB')!]);
      return { form, vars: set.vars, fellBack: !!dualResult, result, dualResult, gradA: new Float32Array(gradA), gradB: new Float32Array(gradB) };
    } finally {
      for (const buffer of all) buffer.destroy();
    }
  }

  /** Copies each buffer into a mappable one, submits, maps, returns copies of the bytes. */
  private async read(encoder: GPUCommandEncoder, sources: GPUBuffer[]): Promise<ArrayBuffer[]> {
    const staging = sources.map((s) => this.device.createBuffer({ size: s.size, usage: USAGE.MAP_READ | USAGE.COPY_DST }));
    sources.forEach((s, i) => encoder.copyBufferToBuffer(s, 0, staging[i], 0, s.size));
    this.device.queue.submit([encoder.finish()]);
    await Promise.all(staging.map((s) => s.mapAsync(MAP_READ)));
    const out = staging.map((s) => s.getMappedRange().slice(0));
    staging.forEach((s) => s.destroy());
    return out;
  }
}

/** A problem past the binding limit (as the engine's LimitError): the message names the bytes needed. */
class LimitError extends Error {}

/** A uniform's bytes: each field's formula evaluated and stored as its WGSL type, little-endian. */
function packUniform(bytes: number, fields: Field[], vars: Env): ArrayBuffer {
  const data = new ArrayBuffer(bytes);
  const view = new DataView(data);
  for (const f of fields) {
    const value = evaluate(f.value, vars);
    if (f.type === 'f32') view.setFloat32(f.offset, value, true);
    else {
      if (!Number.isInteger(value)) throw new Error(`${f.name} = ${f.value} = ${value} is not an integer`);
      if (f.type === 'u32') view.setUint32(f.offset, value, true);
      else view.setInt32(f.offset, value, true);
    }
  }
  return data;
}

/** flags = [rowA + 1 | rowB + 1 | bitsA | bitsB], d each: per flagged view, the first bad row and its column. */
function locateNonFinite(flags: Uint32Array, d: number, nonFinite: number, bits: Record<string, number>): Record<string, [number, number]> {
  const out: Record<string, [number, number]> = {};
  Object.entries(bits).forEach(([view, bit], v) => {
    if (!(nonFinite & bit)) return;
    let best = -1;
    for (let j = 0; j < d; j++) if (flags[v * d + j] !== 0 && (best < 0 || flags[v * d + j] < flags[v * d + best])) best = j;
    out[view] = [flags[v * d + best] - 1, best];
  });
  return out;
}

// --- The tests -----------------------------------------------------------------------------------

const gpu = create([]);   // kept referenced for the device's lifetime (Dawn crashes if it is collected)
const adapter = (await gpu.requestAdapter())!;
// lanes: the adapter's smallest subgroup size (0 where it has no subgroups; only the subgroup plan reads it).
const lanes = (adapter.features.has('subgroups') && (adapter.info as GPUAdapterInfo & { subgroupMinSize?: number }).subgroupMinSize) || 0;
const maxLanes = (lanes && (adapter.info as GPUAdapterInfo & { subgroupMaxSize?: number }).subgroupMaxSize) || 0;
// Whether the device is made with the 'subgroups' feature (the subgroup and shuffle plans need it).
const subgroups = lanes > 0 && !!evaluate(manifest.loss.plans.subgroup.requires.when, { n: 2, d: 4, lanes });

const PAPER: Coefficients = { lambda: 25, mu: 25, nu: 1, gamma: 1, eps: 1e-4, preset: 'paper' };
const OFFICIAL: Coefficients = { lambda: 3.5, mu: 7, nu: 0.3, gamma: 0.7, eps: 1e-3, preset: 'official' };
const TERMS = ['loss', 'invariance', 'variance', 'covariance'] as const;

let device: GPUDevice;
let host: ManifestHost;

beforeAll(async () => {
  device = await adapter.requestDevice({
    requiredLimits: { maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize, maxBufferSize: adapter.limits.maxBufferSize },
    requiredFeatures: subgroups ? ['subgroups'] : [],
  });
  device.pushErrorScope('validation');
  host = new ManifestHost(device, lanes, maxLanes);
});

afterAll(async () => {
  const error = await device?.popErrorScope();
  device?.destroy();
  expect(error?.message, 'WebGPU validation error').toBeUndefined();
  expect(gpu).toBeDefined();
});

interface Case { label: string; shape: [number, number]; views: ViewPair; c: Coefficients; scale?: number; form: Form; fellBack?: boolean; maxBinding?: number }

async function expectMatches(variant: string, { label, shape, views, c, scale = 1, form, fellBack = false, maxBinding }: Case) {
  const run = await host.run(views.a, views.b, shape, c, variant, scale, maxBinding);
  const { preset, ...rest } = c;
  const reference = referenceVICReg(views.a, views.b, shape, { ...rest, preset } satisfies ReferenceOptions);
  expect(run.nonFinite).toBeUndefined();
  expect({ form: run.form, fellBack: run.fellBack }, label).toEqual({ form, fellBack });
  for (const term of TERMS) {
    expect(relativeError(run.result[term], reference[term]), `${label}: ${term} ${run.result[term]} vs ${reference[term]}`).toBeLessThan(1e-5);
  }
  expect(relativeNormError(run.gradA!, scaled(reference.gradA, scale)), `${label}: gradA`).toBeLessThan(1e-4);
  expect(relativeNormError(run.gradB!, scaled(reference.gradB, scale)), `${label}: gradB`).toBeLessThan(1e-4);
  return run;
}

describe("native host, 'tiled' variant (portable)", () => {
  const cases: Case[] = [
    { label: 'n < d, paper', shape: [37, 300], views: randomViews(37, 300, 901), c: PAPER, form: 'dual' },
    { label: 'n < d, official non-default, scale -2.5', shape: [45, 133], views: randomViews(45, 133, 902), c: OFFICIAL, scale: -2.5, form: 'dual' },
    { label: 'n > d, paper', shape: [100, 67], views: randomViews(100, 67, 903), c: PAPER, form: 'primal' },
    { label: 'n > d, official non-default', shape: [129, 45], views: randomViews(129, 45, 904), c: OFFICIAL, scale: 0.5, form: 'primal' },
    { label: 'dominant feature 32x256 (forces the fallback)', shape: [32, 256], views: dominantFeatureViews(32, 256, 421), c: PAPER, form: 'primal', fellBack: true },
    {
      label: 'dominant feature in column 101, 40x300 official', shape: [40, 300], views: dominantFeatureViews(40, 300, 905, { column: 101 }),
      c: OFFICIAL, form: 'primal', fellBack: true,
    },
  ];
  for (const testCase of cases) {
    it(`${testCase.label} (${testCase.shape.join('x')})`, async () => {
      const run = await expectMatches('tiled', testCase);
      if (run.fellBack) expect(Math.min(run.dualResult!.offDiagonalShareA, run.dualResult!.offDiagonalShareB)).toBeLessThan(0.01);
    });
  }

  it('a non-finite input is flagged and located from the flags buffer', async () => {
    const [n, d] = [20, 50];
    const { a, b } = randomViews(n, d, 906);
    b[7 * d + 13] = NaN;
    b[9 * d + 2] = Infinity;
    const run = await host.run(a, b, [n, d], PAPER, 'tiled');
    expect(run.result.nonFinite).toBe(manifest.loss.host.nonFinite.bits.B);
    expect(run.nonFinite).toEqual({ B: [7, 13] });
    expect(run.gradA).toBeUndefined();
  });

  it('is deterministic: the same input gives bitwise the same loss and gradients', async () => {
    const { a, b } = randomViews(33, 70, 907);
    const first = await host.run(a, b, [33, 70], PAPER, 'tiled');
    const second = await host.run(a, b, [33, 70], PAPER, 'tiled');
    expect(second.result).toEqual(first.result);
    expect(Buffer.from(second.gradA!.buffer).equals(Buffer.from(first.gradA!.buffer))).toBe(true);
  });
});

// The subgroup variant needs subgroups (lanes = the adapter's smallest size, from 4); on an adapter
// without them this block is skipped, and its title says why.
const subgroupWhy = subgroups ? undefined : `the subgroup plan needs the 'subgroups' feature with known sizes from 4 (this adapter: ${lanes || 'none'})`;
describe.skipIf(subgroupWhy)(titled("native host, 'subgroup' variant (lanes = the adapter's subgroup size, d % 4 == 0)", subgroupWhy), () => {
  const cases: Case[] = [
    { label: 'n < d, paper', shape: [36, 200], views: randomViews(36, 200, 911), c: PAPER, form: 'dual' },
    { label: 'n > d, official non-default', shape: [90, 52], views: randomViews(90, 52, 912), c: OFFICIAL, scale: 1.5, form: 'primal' },
    { label: 'dominant feature (fallback)', shape: [32, 256], views: dominantFeatureViews(32, 256, 421), c: PAPER, form: 'primal', fellBack: true },
    // From 512 rows the dual backward reads column panels, 3 groups of 448 columns here (the last past d).
    { label: 'n < d with column panels, official non-default', shape: [520, 1156], views: randomViews(520, 1156, 913), c: OFFICIAL, scale: -1.5, form: 'dual' },
  ];
  for (const testCase of cases) it(`${testCase.label} (${testCase.shape.join('x')})`, () => expectMatches('subgroup', testCase).then(() => undefined));
});

describe("native host, 'workgroup' variant (workgroup-memory tiles)", () => {
  const cases: Case[] = [
    { label: 'n < d, paper', shape: [70, 133], views: randomViews(70, 133, 921), c: PAPER, form: 'dual' },
    { label: 'n > d, official non-default', shape: [130, 67], views: randomViews(130, 67, 922), c: OFFICIAL, scale: -0.5, form: 'primal' },
    { label: 'dominant feature (fallback)', shape: [32, 256], views: dominantFeatureViews(32, 256, 421), c: PAPER, form: 'primal', fellBack: true },
  ];
  for (const testCase of cases) it(`${testCase.label} (${testCase.shape.join('x')})`, () => expectMatches('workgroup', testCase).then(() => undefined));
});

// Past the binding limit: a maxBinding lowered below the primal form's packed matrix (4*(d*d+d) bytes).
// n = d = 300 takes the primal form and then primalBlocked, in blocks of 256 and 44 columns; the
// dominant feature falls back from the dual form to primalBlocked, in blocks of 128, 128, 44.
const blockedVariants = Object.keys(manifest.loss.plans).filter((v) => manifest.loss.plans[v].primalBlocked);
const usable = (variant: string) => {
  const plan = manifest.loss.plans[variant];
  if (plan.requires.features.includes('subgroups') && !subgroups) return `the ${variant} plan needs the 'subgroups' feature`;
  return evaluate(plan.requires.when, { n: 300, d: 300, lanes, maxLanes }) ? undefined : `the ${variant} plan needs ${plan.requires.when} (lanes = ${lanes})`;
};
describe('native host, the primal form past the binding limit (primalBlocked, a lowered maxBinding)', () => {
  it('has a primalBlocked plan for every variant whose primal gradient reads column blocks', () => {
    expect(blockedVariants.sort()).toEqual(['shuffle', 'subgroup', 'tiled', 'workgroup']);
  });
  for (const variant of blockedVariants) {
    const why = usable(variant);
    const cases: (Case & { blocks: number })[] = [
      { label: 'n = d, paper', shape: [300, 300], views: randomViews(300, 300, 931), c: PAPER, form: 'primalBlocked', maxBinding: 4 * 300 * 300, blocks: 2 },
      {
        label: 'dominant feature in column 101 (fallback), official non-default, scale -2.5', shape: [40, 300], views: dominantFeatureViews(40, 300, 905, { column: 101 }),
        c: OFFICIAL, scale: -2.5, form: 'primalBlocked', fellBack: true, maxBinding: 4 * 300 * 128, blocks: 3,
      },
    ];
    for (const testCase of cases) {
      it.skipIf(why)(titled(`${variant}: ${testCase.label} (${testCase.shape.join('x')}, maxBinding ${testCase.maxBinding}: ${testCase.blocks} blocks)`, why), async () => {
        const run = await expectMatches(variant, testCase);
        expect(run.vars!.blocks).toBe(testCase.blocks);
      });
    }
  }

  it('a problem past the limit altogether is a limit error naming the bytes', async () => {
    // A view over the limit.
    const small = randomViews(20, 50, 941);
    await expect(host.run(small.a, small.b, [20, 50], PAPER, 'tiled', 1, 4 * 20 * 50 - 4)).rejects.toThrow(/view .* needs 4000 bytes, over maxBinding 3996/);
    // The fallback's primal form, past the limit even in 64-column blocks (4*256*64 bytes).
    const dominant = dominantFeatureViews(32, 256, 421);
    await expect(host.run(dominant.a, dominant.b, [32, 256], PAPER, 'tiled', 1, 4 * 32 * 256)).rejects.toThrow(/column block .* needs 65536 bytes, over maxBinding 32768/);
  });
});
