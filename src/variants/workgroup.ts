// The 'workgroup' variant: (16, 16) threads over 64 x 64 tiles staged through workgroup memory, each
// thread a 4 x 4 register block: the textbook GPU kernel (each element of Z read from global memory once
// per tile, by one thread, and then shared by the workgroup). Any shape, no optional feature.
import workgroupPrimalGram from '../../kernels/workgroup/primal_gram.wgsl';
import workgroupDualGram from '../../kernels/workgroup/dual_gram.wgsl';
import workgroupPrimalGradient from '../../kernels/workgroup/primal_gradient.wgsl';
import workgroupDualGradient from '../../kernels/workgroup/dual_gradient.wgsl';
import { blockBackwardBindings, common, view, type Formula, type KernelPlan, type VariantPlan } from './kernel-plans.js';
import type { Form } from '../types.js';
import type { FormKernels, GradientProgram, GramProgram, VariantDescription } from './program.js';
import { ceilDiv, PACKED, side } from './shared.js';

/** A Gram kernel of (wg, wg) threads per (4 wg) x (4 wg) tile of the side x side matrix, a grid of tiles. */
function squareGram(name: string, code: string, form: Form, wg: number): GramProgram {
  const tiles = (n: number, d: number) => ceilDiv(side(form, n, d), 4 * wg);
  return {
    kernel: name,
    specs: ({ writeMatrix }) => [{ name, code, constants: { WG: wg, WRITE_MATRIX: writeMatrix } }],
    partials: (n, d) => tiles(n, d) ** 2,
    workgroups: (n, d) => [tiles(n, d), tiles(n, d)],
    steps: ({ rows, d, pipelines, buffers, view }) => [{
      label: `${name} ${'AB'[view]}`, pipeline: pipelines[0], workgroups: [tiles(rows, d), tiles(rows, d)],
      bindings: [buffers.z, buffers.stats, buffers.partials, buffers.matrix, buffers.dims],
    }],
  };
}

/** A gradient kernel of (wg, wg) threads per (4 wg) x (4 wg) block of the n x d gradient (of a column block's width). */
function squareGradient(name: string, code: string, wg: number, columnBlocks: boolean): GradientProgram {
  const workgroups = (rows: number, columns: number) => [ceilDiv(columns, 4 * wg), ceilDiv(rows, 4 * wg)] as const;
  return {
    kernel: name,
    specs: ({ accumulate }) => [{ name, code, constants: { WG: wg, ACCUMULATE: accumulate } }],
    workgroups: (n, d) => ({ main: workgroups(n, d) }),
    columnBlocks,
    steps: ({ rows, d, pipelines, buffers, view, indirect, block }) => [{
      label: `${name} ${'AB'[view]}`, pipeline: pipelines[0], workgroups: indirect?.('main') ?? workgroups(rows, block?.width ?? d),
      bindings: [buffers.z, buffers.other, buffers.stats, buffers.matrix, buffers.grad, buffers.params, buffers.upstream],
    }],
  };
}

const kernelsOf = (folder: string, wg: number, code: { primalGram: string; dualGram: string; primalGradient: string; dualGradient: string }) => ({
  primal: {
    gram: squareGram(`${folder}/primal_gram`, code.primalGram, 'primal', wg),
    gradient: squareGradient(`${folder}/primal_gradient`, code.primalGradient, wg, true),
    matrix: PACKED,
  },
  dual: {
    gram: squareGram(`${folder}/dual_gram`, code.dualGram, 'dual', wg),
    gradient: squareGradient(`${folder}/dual_gradient`, code.dualGradient, wg, false),
    matrix: PACKED,
  },
} satisfies Record<Form, FormKernels>);

/** The plan for native hosts: its four kernels' files, constants, dispatches and bindings. */
function manifestOf(folder: string, wg: number, note: string, purposes: { gram: [string, string]; gradient: [string, string] }): VariantPlan {
  const tile = 4 * wg;
  const primalGradientDispatch = (columns: Formula): KernelPlan['dispatch'] => [`ceil(${columns}/${tile})`, `ceil(n/${tile})`, '1'];
  const kernel = (name: string, purpose: string, overrides: KernelPlan['overrides'], dispatch: KernelPlan['dispatch'], bindings: KernelPlan['bindings']) =>
    [`${folder}/${name}`, { file: `${folder}/${name}.wgsl`, purpose, overrides, dispatch, bindings }] as const;
  return {
    note,
    requires: { features: [], when: '1' },
    kernels: Object.fromEntries([
      kernel('primal_gram', purposes.gram[0], { WG: wg, WRITE_MATRIX: true }, [`ceil(d/${tile})`, `ceil(d/${tile})`, '1'],
        { z: view('n*d'), stats: common.stats, partials: common.partials, covOffDiag: common.covOffDiag, dims: common.dims }),
      kernel('dual_gram', purposes.gram[1], { WG: wg, WRITE_MATRIX: true }, [`ceil(n/${tile})`, `ceil(n/${tile})`, '1'],
        { z: view('n*d'), stats: common.stats, partials: common.partials, gram: common.gram, dims: common.dims }),
      kernel('primal_gradient', purposes.gradient[0], { WG: wg, ACCUMULATE: false }, primalGradientDispatch('d'), blockBackwardBindings('covOffDiag')),
      kernel('dual_gradient', purposes.gradient[1], { WG: wg, ACCUMULATE: false }, [`ceil(d/${tile})`, `ceil(n/${tile})`, '1'], blockBackwardBindings('gram')),
    ]),
    gram: { primal: `${folder}/primal_gram`, dual: `${folder}/dual_gram` },
    backward: { primal: `${folder}/primal_gradient`, dual: `${folder}/dual_gradient` },
    primalGradientDispatch,
    partialsPerView: { primal: `ceil(d/${tile})*ceil(d/${tile})`, dual: `ceil(n/${tile})*ceil(n/${tile})` },
  };
}

/** 'workgroup' geometry: (16, 16) threads with 4 x 4 blocks cover a 64 x 64 tile. */
const WORKGROUP_WG = 16;

export const workgroup: VariantDescription = {
  name: 'workgroup',
  family: 'portable',
  summary: '(16, 16) workgroups over 64 x 64 tiles staged through workgroup memory, 4 x 4 register blocks; any shape',
  requirements: 'nothing optional',
  refuse: () => undefined,
  forms: kernelsOf('workgroup', WORKGROUP_WG, { primalGram: workgroupPrimalGram, dualGram: workgroupDualGram, primalGradient: workgroupPrimalGradient, dualGradient: workgroupDualGradient }),
  preference: 4,
  manifest: manifestOf('workgroup', WORKGROUP_WG, 'portable: (16, 16) workgroups, 64 x 64 tiles staged through workgroup memory, 4 x 4 register blocks; any shape', {
    gram: ['tiled/primal_gram with 64 x 64 tiles staged through workgroup memory', 'tiled/dual_gram with 64 x 64 tiles staged through workgroup memory'],
    gradient: ['tiled/primal_gradient with 64 x 64 blocks staged through workgroup memory', 'tiled/dual_gradient with 64 x 64 blocks staged through workgroup memory'],
  }),
};
