// covariance_backward_subgroup.wgsl: as covariance_backward.wgsl (the whole gradient of the loss with
// respect to one view, primal d x d form), for adapters where every storage-buffer load is expensive per
// lane and subgroup shuffles are cheap (lavapipe).
//
// Math (Z the view, O the other view, both n x d; var_j and Zc = (Z - shift) - center from column_stats;
// Coff from gram_offdiag_squares*):
//   grad_ij (=, or += when ACCUMULATE) upstream[0] * ( invCoef (Z_ij - O_ij) + varCoef_j Zc_ij
//                                                     + covCoef sum_k Zc_ik Coff_kj )
//   varCoef_j = varWeight / std_j if std_j = sqrt(var_j + eps) < gamma, else 0
//   (coefficients: see covariance_backward.wgsl and src/ops/coefficients.ts)
// Packed matrix (params.packing 1: view A, 2: view B; the layout of the Gram kernels' packedIndex): this
// pass reads Coff by rows, which hold only part of each view's Coff (view A: Coff_kj for k <= j, view B:
// for k > j); it sums those and covariance_backward_mirrored_subgroup.wgsl adds the rest. Plain
// (packing 0: a whole matrix or a column block): this pass sums all of it.
//
// Each workgroup is one subgroup of LANES = 8 invocations and owns a SHARED x (LANES * 4 * OWN4) block of
// the gradient: rows i0 .. i0 + SHARED - 1 shared by all lanes, 4 * OWN4 columns per lane (OWN4 vec4s,
// interleaved across lanes). Per step k a lane loads SHARED / LANES values Zc_ik of the shared rows and
// OWN4 vec4s of row k of Coff; the shared values reach the other lanes by subgroupShuffle.
//
// Bindings (group 0):
//   0  z           storage, read        array<f32>        n*d   this view (the same buffer as binding 7)
//   1  other4      storage, read        array<vec4<f32>>  n*d/4 the other view
//   2  stats       storage, read        array<f32>        column_stats layout
//   3  covOffDiag4 storage, read        array<vec4<f32>>  (d*d+d)/4 both views' Coff, packed (or a plain
//                                                     matrix or column block of this view's)
//   4  grad4       storage, read_write  array<vec4<f32>>  n*d/4
//   5  params      uniform              BackwardParams (as covariance_backward.wgsl: Coff_kj is read at
//                                                     k*matrixStride + (j - columnStart), a whole matrix
//                                                     or one block of columns; both multiples of 4)
//   6  upstream    storage, read        array<f32>        1: the upstream gradient
//   7  z4          storage, read        array<vec4<f32>>  n*d/4 this view as vec4s
// Dispatch: (ceil(columns / (LANES*4*OWN4)), ceil(n / SHARED), 1) workgroups of LANES threads, columns =
// d or the block's width.
// Requires: d % 4 == 0; the 'subgroups' feature with a subgroup size of exactly LANES.
// Variant: "subgroup" (lavapipe).

enable subgroups;

struct BackwardParams {
  n: u32, d: u32, shiftOffset: u32, centerOffset: u32,
  varOffset: u32, columnStart: u32, matrixStride: u32, packing: u32,
  invCoef: f32, varWeight: f32, covCoef: f32, gamma: f32,
  eps: f32, _pad3: f32, _pad4: f32, _pad5: f32,
}

override ACCUMULATE: bool = false;
const LANES: u32 = 8u;
const SHARED_PER_LANE: u32 = 2u;
const SHARED: u32 = LANES * SHARED_PER_LANE;
const OWN4: u32 = 4u;

@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> other4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read> covOffDiag4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> grad4: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> params: BackwardParams;
@group(0) @binding(6) var<storage, read> upstream: array<f32>;
@group(0) @binding(7) var<storage, read> z4: array<vec4<f32>>;

fn statsVec4(offset: u32, column: u32) -> vec4<f32> {
  let o = offset + column;
  return vec4<f32>(stats[o], stats[o + 1u], stats[o + 2u], stats[o + 3u]);
}

// One step k: acc[r][c] += Zc_(i0+r)k * Coff_kj over this lane's columns, Coff_kj from row k of the
// matrix. `masked` (packed, near the diagonal) zeroes the columns whose Coff_kj this row does not hold;
// the two call sites pass a constant, so the unmasked steps carry no select.
fn rowStep(k: u32, masked: bool, lower: bool, lane: u32, sharedBase: ptr<function, array<u32, SHARED_PER_LANE>>,
           own4: ptr<function, array<u32, OWN4>>, acc: ptr<function, array<array<vec4<f32>, OWN4>, SHARED>>) {
  let stride4 = params.matrixStride / 4u;
  let start4 = params.columnStart / 4u;
  let shift = stats[params.shiftOffset + k];
  let center = stats[params.centerOffset + k];
  var coff: array<vec4<f32>, OWN4>;
  for (var c = 0u; c < OWN4; c++) {
    coff[c] = covOffDiag4[k * stride4 + (*own4)[c] - start4];
    if (masked) {
      let j = vec4<u32>(4u * (*own4)[c]) + vec4<u32>(0u, 1u, 2u, 3u);
      coff[c] = select(vec4<f32>(0.0), coff[c], select(j >= vec4<u32>(k), j < vec4<u32>(k), lower));
    }
  }
  for (var p = 0u; p < SHARED_PER_LANE; p++) {
    let mine = (z[(*sharedBase)[p] + k] - shift) - center;
    for (var s = 0u; s < LANES; s++) {
      let zc = vec4<f32>(subgroupShuffle(mine, s));
      for (var c = 0u; c < OWN4; c++) { (*acc)[p * LANES + s][c] += zc * coff[c]; }
    }
  }
}

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let n = params.n;
  let d = params.d;
  let d4 = d / 4u;
  let i0 = wid.y * SHARED;
  let j40 = params.columnStart / 4u + wid.x * LANES * OWN4;   // first vec4 column of this workgroup
  let end4 = min(d, params.columnStart + params.matrixStride) / 4u;

  var sharedBase: array<u32, SHARED_PER_LANE>;
  for (var p = 0u; p < SHARED_PER_LANE; p++) { sharedBase[p] = min(i0 + p * LANES + lane, n - 1u) * d; }
  var own4: array<u32, OWN4>;
  for (var c = 0u; c < OWN4; c++) { own4[c] = min(j40 + c * LANES + lane, end4 - 1u); }

  // Plain: every row k. Packed: only the rows k that hold this view's Coff_kj for some of the columns
  // jLo .. jHi - 1 (view A: k <= j; view B: k > j), masked in the window where that holds for some
  // columns only; the rest of Coff comes in the mirrored pass.
  let packed = params.packing != 0u;
  let lower = params.packing == 2u;
  let jLo = 4u * j40;
  let jHi = 4u * min(j40 + LANES * OWN4, end4);
  let wholeStart = select(0u, select(0u, jHi, lower), packed);
  let wholeEnd = select(d, select(jLo, d, lower), packed);
  let windowStart = select(jLo, jLo + 1u, lower);
  let windowEnd = select(0u, jHi, packed);
  var acc: array<array<vec4<f32>, OWN4>, SHARED>;
  for (var k = wholeStart; k < wholeEnd; k++) { rowStep(k, false, lower, lane, &sharedBase, &own4, &acc); }
  for (var k = windowStart; k < windowEnd; k++) { rowStep(k, true, lower, lane, &sharedBase, &own4, &acc); }

  let scale = upstream[0];
  for (var c = 0u; c < OWN4; c++) {
    let j4 = j40 + c * LANES + lane;
    if (j4 >= end4) { continue; }
    let shift = statsVec4(params.shiftOffset, 4u * j4);
    let center = statsVec4(params.centerOffset, 4u * j4);
    let stdDev = sqrt(statsVec4(params.varOffset, 4u * j4) + vec4<f32>(params.eps));
    let varCoef = select(vec4<f32>(0.0), vec4<f32>(params.varWeight) / stdDev, stdDev < vec4<f32>(params.gamma));
    for (var r = 0u; r < SHARED; r++) {
      let i = i0 + r;
      if (i >= n) { continue; }
      let index = i * d4 + j4;
      let x = z4[index];
      let g = params.invCoef * (x - other4[index]) + varCoef * ((x - shift) - center) + params.covCoef * acc[r][c];
      if (ACCUMULATE) { grad4[index] += scale * g; } else { grad4[index] = scale * g; }
    }
  }
}
