// covariance_backward_dual.wgsl: the whole gradient of the loss with respect to one view, in one pass
// ("dual" n x n form: uses K written by sample_gram.wgsl; cost O(n^2 d)).
//
// Math (Z the view, O the other view, both n x d; var_j of Z and Zc = (Z - shift) - center from
// column_stats; K = Zc Zc^T):
//   Zc Coff = K Zc / (n-1) - Zc diag(var)           (math doc, "dual form")
//   grad_ij (=, or += when ACCUMULATE) scale * ( invCoef * (Z_ij - O_ij)
//                     + varCoef_j * Zc_ij
//                     + covCoef * ( sum_k K_ik Zc_kj / (n-1) - var_j Zc_ij ) )
//   invCoef = 2 lambda / (n d);  varCoef_j = varWeight / std_j if std_j < gamma, else 0,
//   varWeight = -mu k / (d (n-1)), std_j = sqrt(var_j + eps);  covCoef = 4 nu / (d (n-1)).
// The ops choose this form only when the off-diagonal share of ||C||_F^2 is large enough that the
// subtraction above keeps float32 accuracy; otherwise they use covariance_backward.wgsl.
//
// Bindings (group 0):
//   0  z         storage, read        array<f32>  n*d   this view
//   1  other     storage, read        array<f32>  n*d   the other view
//   2  stats     storage, read        array<f32>  column_stats layout
//   3  gram      storage, read        array<f32>  n*n   K of this view
//   4  grad      storage, read_write  array<f32>  n*d
//   5  params    uniform              BackwardParams (as covariance_backward.wgsl; columnStart and
//                                     matrixStride unused here)
//   6  upstream  storage, read        array<f32>  1: the upstream gradient (scale)
// Dispatch: (ceil(d / (4*WG)), ceil(n / (4*WG)), 1) workgroups of (WG, WG) threads; each thread computes
// a 4 x 4 block of the gradient (4 rows, 4 columns).
// Variant: "tiled": register blocks, no workgroup memory; portable (the one for GPUs).

struct BackwardParams {
  n: u32, d: u32, shiftOffset: u32, centerOffset: u32,
  varOffset: u32, columnStart: u32, matrixStride: u32, packing: u32,
  invCoef: f32, varWeight: f32, covCoef: f32, gamma: f32,
  eps: f32, panels: u32, _pad4: f32, _pad5: f32,
}

override WG: u32 = 8;
// Add into grad (a caller's autograd accumulating) instead of overwriting it.
override ACCUMULATE: bool = false;
const BLOCK: u32 = 4u;

@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> other: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read> gram: array<f32>;
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

@compute @workgroup_size(WG, WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let n = params.n;
  let d = params.d;
  let offs = vec4<u32>(0u, 1u, 2u, 3u);
  let rows = vec4<u32>(wid.y * WG * BLOCK + lid.y * BLOCK) + offs;
  let cols = vec4<u32>(wid.x * WG * BLOCK + lid.x * BLOCK) + offs;
  let rc = min(rows, vec4<u32>(n - 1u));
  let lower = params.packing == 2u;
  let cc = min(cols, vec4<u32>(d - 1u));
  let so = params.shiftOffset;
  let co = params.centerOffset;
  let shifts = vec4<f32>(stats[so + cc.x], stats[so + cc.y], stats[so + cc.z], stats[so + cc.w]);
  let centers = vec4<f32>(stats[co + cc.x], stats[co + cc.y], stats[co + cc.z], stats[co + cc.w]);

  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var k = 0u; k < n; k++) {
    let lo = min(rc, vec4<u32>(k));
    let hi = max(rc, vec4<u32>(k));
    let kr = vec4<f32>(gram[packedIndex(lo.x, hi.x, n, lower)], gram[packedIndex(lo.y, hi.y, n, lower)],
                       gram[packedIndex(lo.z, hi.z, n, lower)], gram[packedIndex(lo.w, hi.w, n, lower)]);
    let zk = k * d;
    let zc = (vec4<f32>(z[zk + cc.x], z[zk + cc.y], z[zk + cc.z], z[zk + cc.w]) - shifts) - centers;
    acc0 = fma(vec4<f32>(kr.x), zc, acc0);
    acc1 = fma(vec4<f32>(kr.y), zc, acc1);
    acc2 = fma(vec4<f32>(kr.z), zc, acc2);
    acc3 = fma(vec4<f32>(kr.w), zc, acc3);
  }

  let product = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
  let inv = 1.0 / f32(n - 1u);
  for (var c = 0u; c < BLOCK; c++) {
    let j = cols[c];
    if (j >= d) { continue; }
    let variance = stats[params.varOffset + j];
    let stdDev = sqrt(variance + params.eps);
    let varCoef = select(0.0, params.varWeight / stdDev, stdDev < params.gamma);
    for (var r = 0u; r < BLOCK; r++) {
      let i = rows[r];
      if (i >= n) { continue; }
      let index = i * d + j;
      let x = z[index];
      let zc = (x - shifts[c]) - centers[c];
      let covGrad = product[r][c] * inv - variance * zc;
      let g = params.invCoef * (x - other[index]) + varCoef * zc + params.covCoef * covGrad;
      if (ACCUMULATE) { grad[index] += upstream[0] * g; } else { grad[index] = upstream[0] * g; }
    }
  }
}
