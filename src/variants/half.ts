// float16 views and gradients, for every variant: the views are widened to float32 before the float32
// kernels run (half_to_float.wgsl), and the gradients rounded to float16 after them (float_to_half.wgsl,
// which also flags overflow). The conversions are exact bit manipulations in core WGSL, so they need no
// shader-f16 and give the same bits on every adapter.
import halfToFloatWgsl from '../../kernels/half_to_float.wgsl';
import floatToHalfWgsl from '../../kernels/float_to_half.wgsl';
import type { KernelSpec } from '../runtime/gpu.js';
import { ceilDiv } from './shared.js';
import type { Formula } from './kernel-plans.js';

/** Threads per workgroup of the conversions (one u32 word, two halves, each). */
const HALF_WG = 256;
/** WebGPU's default maxComputeWorkgroupsPerDimension: larger views spread over y. */
const MAX_WORKGROUPS_X = 65535;

/** The bytes of a float16 buffer of `count` elements: whole u32 words, as the kernels read them. */
export const halfBytes = (count: number) => 4 * ceilDiv(count, 2);

/** The conversions' uniform (HalfDims): the elements of one view, padded to 16 bytes. */
export const halfDims = (count: number) => new Uint32Array([count, 0, 0, 0]);
export const HALF_DIMS_BYTES = 16;

function workgroups(count: number): readonly [number, number] {
  const groups = ceilDiv(ceilDiv(count, 2), HALF_WG);
  return [Math.min(groups, MAX_WORKGROUPS_X), ceilDiv(groups, MAX_WORKGROUPS_X)];
}

/** The same as formulas (the manifest's), for `count` elements: the u32 words, and the dispatch. */
export const halfWordsFormula = (count: Formula): Formula => `ceil(${count}/2)`;
export function halfDispatchFormula(count: Formula): readonly [Formula, Formula, Formula] {
  const groups = `ceil(ceil(${count}/2)/${HALF_WG})`;
  return [`min(${groups}, ${MAX_WORKGROUPS_X})`, `ceil(${groups}/${MAX_WORKGROUPS_X})`, '1'];
}

export const halfToFloat = {
  spec: { name: 'half_to_float', code: halfToFloatWgsl, constants: { WG: HALF_WG } } satisfies KernelSpec,
  workgroups,
};

export const floatToHalf = {
  spec: (accumulate: boolean): KernelSpec => ({ name: 'float_to_half', code: floatToHalfWgsl, constants: { WG: HALF_WG, ACCUMULATE: accumulate } }),
  workgroups,
};
