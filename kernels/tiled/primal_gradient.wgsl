// covariance_backward.wgsl: the whole gradient of the loss with respect to one view, in one pass
// ("primal" d x d form: uses Coff written by gram_offdiag_squares.wgsl).
//
// Math (Z the view, O the other view, both n x d; var_j of Z and Zc = (Z - shift) - center from
// column_stats):
//   grad_ij (=, or += when ACCUMULATE) scale * ( invCoef * (Z_ij - O_ij)
//                     + varCoef_j * Zc_ij
//                     + covCoef * sum_m Zc_im Coff_mj )
//   invCoef   = 2 lambda / (n d)                      (d invariance / dZ; the sign flips with the view
//                                                       because Z - O does)
//   varCoef_j = -mu k / (d (n-1) std_j) if std_j < gamma, else 0,   std_j = sqrt(var_j + eps)
//               (k: 1 "paper", 1/2 "official"; at std_j = gamma exactly the hinge has no gradient, as relu)
//   covCoef   = 4 nu / (d (n-1))
// The matrix product is the main loop; the invariance and variance terms are added in its epilogue, so
// the gradient is written once.
//
// Bindings (group 0):
//   0  z           storage, read        array<f32>  n*d   this view
//   1  other       storage, read        array<f32>  n*d   the other view
//   2  stats       storage, read        array<f32>  column_stats layout
//   3  covOffDiag  storage, read        array<f32>  d*d   Coff of this view
//   4  grad        storage, read_write  array<f32>  n*d
//   5  params      uniform              BackwardParams; Coff_kj is read at k*matrixStride + (j - columnStart):
//                                       the whole matrix (columnStart 0, matrixStride d), or one block of
//                                       columns columnStart .. columnStart + matrixStride - 1 when Coff
//                                       is past the binding size limit (then only those columns of the
//                                       gradient are computed). The subgroup dual backward reads
//                                       columnStart as its column group's first column and `panels` (1:
//                                       Zc from centered_panels.wgsl's panels); the other kernels ignore
//                                       `panels`
//   6  upstream    storage, read        array<f32>  1: the upstream gradient (scale), so a training loop can
//                                                   pass it as a device value without a host round trip
// Dispatch: (ceil(columns / (4*WG)), ceil(n / (4*WG)), 1) workgroups of (WG, WG) threads, columns = d
// or the block's width; each thread computes a 4 x 4 block of the gradient (4 rows, 4 columns).
// Variant: "tiled": register blocks, no workgroup memory; portable (the one for GPUs).

struct BackwardParams {
  n: u32, d: u32, shiftOffset: u32, centerOffset: u32,
  varOffset: u32, columnStart: u32, matrixStride: u32, packing: u32,
  invCoef: f32, varWeight: f32, covCoef: f32, gamma: f32,
  eps: f32, panels: u32, _pad4: f32, _pad5: f32,
}
// varWeight = -mu k / (d (n-1)): varCoef_j = varWeight / std_j where the hinge is active.

override WG: u32 = 8;
// Add into grad (a caller's autograd accumulating) instead of overwriting it.
override ACCUMULATE: bool = false;
const BLOCK: u32 = 4u;

@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> other: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read> covOffDiag: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
@group(0) @binding(5) var<uniform> params: BackwardParams;
@group(0) @binding(6) var<storage, read> upstream: array<f32>;

// The packed layout of the matrix buffer, shared by both views (side s): view A's symmetric matrix on
// and above the diagonal, entry (i, k), i <= k, at i*s + k; view B's strictly below it, at k*s + i; B's
// diagonal after the s x s square, at s*s + i (as the Gram kernels write it).
fn packedIndex(i: u32, k: u32, s: u32, lowerHalf: bool) -> u32 {
  if (!lowerHalf) { return i * s + k; }
  return select(k * s + i, s * s + i, i == k);
}

// Coff_kj of this view: packed (packing 1: view A, 2: view B), or with packing 0 from a plain matrix or
// column block at k*matrixStride + (j - columnStart).
fn coffAt(k: u32, j: u32) -> f32 {
  if (params.packing == 0u) { return covOffDiag[k * params.matrixStride + (j - params.columnStart)]; }
  return covOffDiag[packedIndex(min(k, j), max(k, j), params.d, params.packing == 2u)];
}

@compute @workgroup_size(WG, WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let n = params.n;
  let d = params.d;
  let offs = vec4<u32>(0u, 1u, 2u, 3u);
  let rows = vec4<u32>(wid.y * WG * BLOCK + lid.y * BLOCK) + offs;
  let columnEnd = min(d, params.columnStart + params.matrixStride);
  let cols = vec4<u32>(params.columnStart + wid.x * WG * BLOCK + lid.x * BLOCK) + offs;
  let rc = min(rows, vec4<u32>(n - 1u));
  let cc = min(cols, vec4<u32>(columnEnd - 1u));
  let rowBase = rc * d;

  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var k = 0u; k < d; k++) {
    let shift = vec4<f32>(stats[params.shiftOffset + k]);
    let center = vec4<f32>(stats[params.centerOffset + k]);
    let zc = (vec4<f32>(z[rowBase.x + k], z[rowBase.y + k], z[rowBase.z + k], z[rowBase.w + k]) - shift) - center;
    let coff = vec4<f32>(coffAt(k, cc.x), coffAt(k, cc.y), coffAt(k, cc.z), coffAt(k, cc.w));
    acc0 = fma(vec4<f32>(zc.x), coff, acc0);
    acc1 = fma(vec4<f32>(zc.y), coff, acc1);
    acc2 = fma(vec4<f32>(zc.z), coff, acc2);
    acc3 = fma(vec4<f32>(zc.w), coff, acc3);
  }

  let product = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
  for (var c = 0u; c < BLOCK; c++) {
    let j = cols[c];
    if (j >= columnEnd) { continue; }
    let shift = stats[params.shiftOffset + j];
    let center = stats[params.centerOffset + j];
    let stdDev = sqrt(stats[params.varOffset + j] + params.eps);
    let varCoef = select(0.0, params.varWeight / stdDev, stdDev < params.gamma);
    for (var r = 0u; r < BLOCK; r++) {
      let i = rows[r];
      if (i >= n) { continue; }
      let index = i * d + j;
      let x = z[index];
      let g = params.invCoef * (x - other[index]) + varCoef * ((x - shift) - center) + params.covCoef * product[r][c];
      if (ACCUMULATE) { grad[index] += upstream[0] * g; } else { grad[index] = upstream[0] * g; }
    }
  }
}
