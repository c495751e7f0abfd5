// The two square-tile variants: 'tiled' ((8, 8) threads, each a 4 x 4 register block, operands loaded
// straight from storage) and 'workgroup' ((16, 16) threads over 64 x 64 tiles staged through workgroup
// memory, the textbook GPU kernel). Any shape, no optional feature; one dispatch per view and pass.
import tiledPrimalGram from '../../kernels/tiled/primal_gram.wgsl';
import tiledDualGram from '../../kernels/tiled/dual_gram.wgsl';
import tiledPrimalGradient from '../../kernels/tiled/primal_gradient.wgsl';
import tiledDualGradient from '../../kernels/tiled/dual_gradient.wgsl';
import workgroupPrimalGram from '../../kernels/workgroup/primal_gram.wgsl';
import workgroupDualGram from '../../kernels/workgroup/dual_gram.wgsl';
import workgroupPrimalGradient from '../../kernels/workgroup/primal_gradient.wgsl';
import workgroupDualGradient from '../../kernels/workgroup/dual_gradient.wgsl';
import type { Form } from '../types.js';
import type { FormKernels, GradientProgram, GramProgram, VariantDescription } from './program.js';
import { ceilDiv, PACKED, side, TILED_WG } from './shared.js';

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

const kernels = (folder: string, wg: number, code: { primalGram: string; dualGram: string; primalGradient: string; dualGradient: string }) => ({
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

export const tiled: VariantDescription = {
  name: 'tiled',
  family: 'portable',
  summary: '(8, 8) workgroups, a 4 x 4 register block per thread, operands loaded from storage; any shape',
  requirements: 'nothing optional',
  refuse: () => undefined,
  forms: kernels('tiled', TILED_WG, { primalGram: tiledPrimalGram, dualGram: tiledDualGram, primalGradient: tiledPrimalGradient, dualGradient: tiledDualGradient }),
  preference: 3,
};

/** 'workgroup' geometry: (16, 16) threads with 4 x 4 blocks cover a 64 x 64 tile. */
const WORKGROUP_WG = 16;

export const workgroup: VariantDescription = {
  name: 'workgroup',
  family: 'portable',
  summary: '(16, 16) workgroups over 64 x 64 tiles staged through workgroup memory, 4 x 4 register blocks; any shape',
  requirements: 'nothing optional',
  refuse: () => undefined,
  forms: kernels('workgroup', WORKGROUP_WG, { primalGram: workgroupPrimalGram, dualGram: workgroupDualGram, primalGradient: workgroupPrimalGradient, dualGradient: workgroupDualGradient }),
  preference: 2,
};
