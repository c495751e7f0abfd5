// The two register-block variants: every thread accumulates an 8 x 8 block of the Gram matrix or of the
// gradient's matrix product (64 registers), and a group of 4 threads covers 16 x 16, so that each value
// a thread loads feeds 8 multiply-adds. 'subgroup': the 4 threads are a quad of a subgroup, and each
// loads half of what it needs and receives the other half from its partners (quadSwapX/Y): 8 loads per
// 64 multiply-adds, at any subgroup size from 4. 'tiled': no optional feature; each thread loads all of
// it. A workgroup's tile is 16 QUADS_X columns by 16 QUADS_Y rows; Gram tiles wholly below the diagonal
// write zero partials and return.
import subgroupPrimalGram from '../../kernels/subgroup/primal_gram.wgsl';
import subgroupPrimalGramVec4 from '../../kernels/subgroup/primal_gram_vec4.wgsl';
import subgroupDualGram from '../../kernels/subgroup/dual_gram.wgsl';
import subgroupDualGramVec4 from '../../kernels/subgroup/dual_gram_vec4.wgsl';
import subgroupPrimalGradient from '../../kernels/subgroup/primal_gradient.wgsl';
import subgroupDualGradient from '../../kernels/subgroup/dual_gradient.wgsl';
import tiledPrimalGram from '../../kernels/tiled/primal_gram.wgsl';
import tiledDualGram from '../../kernels/tiled/dual_gram.wgsl';
import tiledPrimalGradient from '../../kernels/tiled/primal_gradient.wgsl';
import tiledDualGradient from '../../kernels/tiled/dual_gradient.wgsl';
import { blockBackwardBindings, common, view, type Formula, type KernelPlan, type VariantPlan } from './kernel-plans.js';
import type { KernelSpec } from '../runtime/gpu.js';
import type { Form } from '../types.js';
import type { FormKernels, GradientProgram, GramProgram, VariantDescription } from './program.js';
import type { DeviceTraits } from '../runtime/device.js';
import { ceilDiv, PACKED, side } from './shared.js';

/** Rows or columns of one group of 4 threads' block: 2 x 8. */
const QUAD_SIDE = 16;

type Kernel = 'gram' | 'primalGradient' | 'dualGradient';

/** How a variant's workgroups are made: its threads and tile shapes, as numbers and as the manifest's formulas. */
interface Shape {
  /** Threads per workgroup on this device. */
  threads(traits: DeviceTraits): number;
  /** The same as a manifest formula. */
  threadsFormula: Formula;
  /** The override that sets the threads. */
  threadsConstant: 'WG' | 'LANES';
  /** Quads side by side in a kernel's tile (the rest stacked): the kernels' QUADS_X. */
  quadsX(kernel: Kernel, threads: number): number;
  quadsXFormula(kernel: Kernel): Formula;
  /** Partial sums per Gram workgroup: one per quad, or one per workgroup. */
  partialsPerWorkgroup(threads: number): number;
  partialsFormula: Formula;
}

/** A tile's columns and rows for `threads` threads and qx quads side by side. */
const tileOf = (threads: number, qx: number) => ({ columns: QUAD_SIDE * qx, rows: (QUAD_SIDE * threads) / 4 / qx });

function gram(name: string, code: { scalar: string; vec4?: string }, form: Form, shape: Shape): GramProgram {
  const workgroups = (n: number, d: number, traits: DeviceTraits) => {
    const threads = shape.threads(traits);
    const tile = tileOf(threads, shape.quadsX('gram', threads));
    return [ceilDiv(side(form, n, d), tile.columns), ceilDiv(side(form, n, d), tile.rows)] as const;
  };
  return {
    kernel: name,
    specs: ({ writeMatrix, traits, d }) => {
      const threads = shape.threads(traits);
      const vec4 = code.vec4 && d % 4 === 0;
      return [{
        name: vec4 ? `${name}_vec4` : name, code: vec4 ? code.vec4! : code.scalar,
        constants: { [shape.threadsConstant]: threads, QUADS_X: shape.quadsX('gram', threads), WRITE_MATRIX: writeMatrix },
      }];
    },
    partials: (n, d, traits) => workgroups(n, d, traits).reduce((a, b) => a * b) * shape.partialsPerWorkgroup(shape.threads(traits)),
    workgroups,
    steps: ({ rows, d, traits, pipelines, buffers, view }) => [{
      label: `${name} ${'AB'[view]}`, pipeline: pipelines[0], workgroups: workgroups(rows, d, traits),
      bindings: [buffers.z, buffers.stats, buffers.partials, buffers.matrix, buffers.dims],
    }],
  };
}

function gradient(name: string, code: string, kernel: 'primalGradient' | 'dualGradient', shape: Shape): GradientProgram {
  const workgroups = (rows: number, columns: number, traits: DeviceTraits) => {
    const threads = shape.threads(traits);
    const tile = tileOf(threads, shape.quadsX(kernel, threads));
    return [ceilDiv(columns, tile.columns), ceilDiv(rows, tile.rows)] as const;
  };
  return {
    kernel: name,
    specs: ({ accumulate, traits }): KernelSpec[] => {
      const threads = shape.threads(traits);
      return [{ name, code, constants: { [shape.threadsConstant]: threads, QUADS_X: shape.quadsX(kernel, threads), ACCUMULATE: accumulate } }];
    },
    workgroups: (n, d, traits) => ({ main: workgroups(n, d, traits) }),
    columnBlocks: kernel === 'primalGradient',
    steps: ({ rows, d, traits, pipelines, buffers, view, indirect, block }) => [{
      label: `${name} ${'AB'[view]}`, pipeline: pipelines[0], workgroups: indirect?.('main') ?? workgroups(rows, block?.width ?? d, traits),
      bindings: [buffers.z, buffers.other, buffers.stats, buffers.matrix, buffers.grad, buffers.params, buffers.upstream],
    }],
  };
}

interface Sources { primalGram: string; primalGramVec4?: string; dualGram: string; dualGramVec4?: string; primalGradient: string; dualGradient: string }

const formsOf = (folder: string, code: Sources, shape: Shape) => ({
  primal: {
    gram: gram(`${folder}/primal_gram`, { scalar: code.primalGram, vec4: code.primalGramVec4 }, 'primal', shape),
    gradient: gradient(`${folder}/primal_gradient`, code.primalGradient, 'primalGradient', shape),
    matrix: PACKED,
  },
  dual: {
    gram: gram(`${folder}/dual_gram`, { scalar: code.dualGram, vec4: code.dualGramVec4 }, 'dual', shape),
    gradient: gradient(`${folder}/dual_gradient`, code.dualGradient, 'dualGradient', shape),
    matrix: PACKED,
  },
} satisfies Record<Form, FormKernels>);

/**
 * The plan for native hosts (src/manifest/plan.ts): the same geometry as formulas in `threads` (a
 * number, or `lanes`). The Gram runs its scalar file (the engine takes the vec4 one where d % 4 == 0).
 */
function manifestOf(folder: string, shape: Shape, note: string, requires: VariantPlan['requires'], vec4: boolean): VariantPlan {
  const t = shape.threadsFormula;
  const qx = { gram: shape.quadsXFormula('gram'), primalGradient: shape.quadsXFormula('primalGradient'), dualGradient: shape.quadsXFormula('dualGradient') };
  const tile = (q: Formula) => ({ columns: `(16*${q})`, rows: `(4*${t}/${q})` });
  const kernel = (name: string, purpose: string, overrides: KernelPlan['overrides'], dispatch: KernelPlan['dispatch'], bindings: KernelPlan['bindings']) =>
    [`${folder}/${name}`, { file: `${folder}/${name}.wgsl`, purpose, overrides, dispatch, bindings }] as const;
  const gramDispatch = (s: Formula): KernelPlan['dispatch'] => [`ceil(${s}/${tile(qx.gram).columns})`, `ceil(${s}/${tile(qx.gram).rows})`, '1'];
  const primalGradientDispatch = (columns: Formula): KernelPlan['dispatch'] =>
    [`ceil(${columns}/${tile(qx.primalGradient).columns})`, `ceil(n/${tile(qx.primalGradient).rows})`, '1'];
  return {
    note, requires,
    kernels: Object.fromEntries([
      kernel('primal_gram', 'primal: tiles of C = Zc^T Zc/(n-1) on and above the diagonal; partial sums of squared off-diagonal entries; writes Coff',
        { [shape.threadsConstant]: t, QUADS_X: qx.gram, WRITE_MATRIX: true }, gramDispatch('d'),
        { z: view('n*d'), stats: common.stats, partials: common.partials, covOffDiag: common.covOffDiag, dims: common.dims }),
      kernel('dual_gram', 'dual: tiles of K = Zc Zc^T on and above the diagonal; partial sums of (K/(n-1))^2; writes K',
        { [shape.threadsConstant]: t, QUADS_X: qx.gram, WRITE_MATRIX: true }, gramDispatch('n'),
        { z: view('n*d'), stats: common.stats, partials: common.partials, gram: common.gram, dims: common.dims }),
      // The engine's Gram kernels where d % 4 == 0 (a plan may run them in place of the scalar ones there).
      ...(vec4 ? [
        kernel('primal_gram_vec4', `as ${folder}/primal_gram, reading Z as vec4s (d % 4 == 0)`,
          { [shape.threadsConstant]: t, QUADS_X: qx.gram, WRITE_MATRIX: true }, gramDispatch('d'),
          { z: view('n*d/4'), stats: common.stats, partials: common.partials, covOffDiag: common.covOffDiag, dims: common.dims }),
        kernel('dual_gram_vec4', `as ${folder}/dual_gram, reading Z as vec4s (d % 4 == 0)`,
          { [shape.threadsConstant]: t, QUADS_X: qx.gram, WRITE_MATRIX: true }, gramDispatch('n'),
          { z: view('n*d/4'), stats: common.stats, partials: common.partials, gram: common.gram, dims: common.dims }),
      ] : []),
      kernel('primal_gradient', 'primal gradient of one view: Zc Coff plus the invariance and variance terms, written once',
        { [shape.threadsConstant]: t, QUADS_X: qx.primalGradient, ACCUMULATE: false }, primalGradientDispatch('d'), blockBackwardBindings('covOffDiag')),
      kernel('dual_gradient', 'dual gradient of one view: K Zc/(n-1) - Zc diag(var) plus the invariance and variance terms',
        { [shape.threadsConstant]: t, QUADS_X: qx.dualGradient, ACCUMULATE: false },
        [`ceil(d/${tile(qx.dualGradient).columns})`, `ceil(n/${tile(qx.dualGradient).rows})`, '1'], blockBackwardBindings('gram')),
    ]),
    gram: { primal: `${folder}/primal_gram`, dual: `${folder}/dual_gram` },
    backward: { primal: `${folder}/primal_gradient`, dual: `${folder}/dual_gradient` },
    primalGradientDispatch,
    partialsPerView: Object.fromEntries((['primal', 'dual'] as const).map((form) => {
      const [x, y] = gramDispatch(form === 'primal' ? 'd' : 'n');
      return [form, `${x}*${y}*${shape.partialsFormula}`];
    })) as Record<Form, Formula>,
  };
}

/** 'tiled': workgroups of 64 threads, 4 x 4 quads: 64 x 64 tiles. */
const TILED_THREADS = 64;
const TILED_QUADS_X = 4;
const tiledShape: Shape = {
  threads: () => TILED_THREADS, threadsFormula: String(TILED_THREADS), threadsConstant: 'WG',
  quadsX: () => TILED_QUADS_X, quadsXFormula: () => String(TILED_QUADS_X),
  partialsPerWorkgroup: () => 1, partialsFormula: '1',
};

export const tiled: VariantDescription = {
  name: 'tiled',
  family: 'portable',
  summary: 'workgroups of 64 threads, an 8 x 8 register block each (64 x 64 tiles), every operand loaded from storage; any shape',
  requirements: 'nothing optional',
  refuse: () => undefined,
  forms: formsOf('tiled', { primalGram: tiledPrimalGram, dualGram: tiledDualGram, primalGradient: tiledPrimalGradient, dualGradient: tiledDualGradient }, tiledShape),
  preference: 3,
  manifest: manifestOf('tiled', tiledShape, 'portable: 64 threads per workgroup, 8 x 8 register blocks (64 x 64 tiles), any shape', { features: [], when: '1' }, false),
};

/** The adapter's subgroup sizes, in words. */
export const subgroupSizes = (t: DeviceTraits) => (!t.features.has('subgroups') ? 'none'
  : t.subgroupMinSize === undefined ? 'sizes unknown' : t.subgroupMinSize === t.subgroupMaxSize ? `${t.subgroupMinSize}` : `${t.subgroupMinSize}-${t.subgroupMaxSize}`);

/**
 * 'subgroup' threads: the adapter's smallest subgroup size, so that a workgroup is one subgroup whatever
 * size a dispatch gets (its quads: lanes 4q .. 4q+3).
 */
const subgroupShape: Shape = {
  threads: (t) => t.subgroupMinSize!, threadsFormula: 'lanes', threadsConstant: 'LANES',
  // A row of quads (QUADS_Y = 1), but for the primal gradient a column of them: its tiles then cross Coff's
  // diagonal, where it reads entry by entry, in a band 16 columns wide.
  quadsX: (kernel, threads) => (kernel === 'primalGradient' ? 1 : threads / 4),
  quadsXFormula: (kernel) => (kernel === 'primalGradient' ? '1' : '(lanes/4)'),
  partialsPerWorkgroup: (threads) => threads / 4, partialsFormula: '(lanes/4)',
};

/** Whether the adapter's subgroups run these kernels: a known smallest size, a power of two from 4. */
const lanesFit = (t: DeviceTraits) => {
  const lanes = t.subgroupMinSize;
  return t.features.has('subgroups') && lanes !== undefined && lanes >= 4 && (lanes & (lanes - 1)) === 0;
};

export const subgroup: VariantDescription = {
  name: 'subgroup',
  family: 'portable',
  summary: "one subgroup per workgroup, an 8 x 8 register block per lane; each quad of lanes shares its operands by quadSwapX/Y (half the loads)",
  requirements: "the 'subgroups' feature with known subgroup sizes (any power of two from 4)",
  refuse: ({ traits }) => (lanesFit(traits) ? undefined : {
    kind: 'option', reason: `the 'subgroups' feature with known subgroup sizes from 4 (this device: ${subgroupSizes(traits)})`,
  }),
  forms: formsOf('subgroup', {
    primalGram: subgroupPrimalGram, primalGramVec4: subgroupPrimalGramVec4, dualGram: subgroupDualGram, dualGramVec4: subgroupDualGramVec4,
    primalGradient: subgroupPrimalGradient, dualGradient: subgroupDualGradient,
  }, subgroupShape),
  preference: 2,
  manifest: manifestOf('subgroup', subgroupShape, "one subgroup per workgroup (lanes = the adapter's smallest subgroup size), 8 x 8 register blocks shared by quads", {
    features: ['subgroups'], subgroups: "the adapter's subgroupMinSize known and a power of two from 4: bind it as lanes", when: 'lanes >= 4',
  }, true),
};
