// workgroup/dual_gradient.wgsl: as tiled/dual_gradient.wgsl (the whole gradient of the loss
// with respect to one view, dual n x n form, in one pass), staged through workgroup memory: the shape GPUs
// want.
//
// Math (Z the view, O the other view, both n x d; var_j of Z and Zc = (Z - shift) - center from
// column_stats; K = Zc Zc^T from tiled/dual_gram*):
//   grad_ij (=, or += when ACCUMULATE) upstream[0] * ( invCoef (Z_ij - O_ij) + varCoef_j Zc_ij
//                     + covCoef (sum_k K_ik Zc_kj / (n-1) - var_j Zc_ij) )
//   varCoef_j = varWeight / std_j if std_j = sqrt(var_j + eps) < gamma, else 0
//   (coefficients: see tiled/primal_gradient.wgsl and src/coefficients.ts)
//
// Each workgroup is (WG, WG) threads and computes a TILE x TILE block of the gradient, TILE = 4*WG, each
// thread a 4 x 4 register block. The contraction runs over k in steps of DEPTH: the workgroup stages K's
// DEPTH columns at its rows and Zc's DEPTH rows at its columns in workgroup memory, then every thread reads
// its 4 + 4 values per step from there. K comes from the packed matrix (packing 1: view A, 2: view B; an
// entry in the other half is read from its mirror; stages wholly in that half are read along the
// buffer's rows, so the reads stay contiguous).
//
// Bindings (group 0):
//   0  z         storage, read        array<f32>  n*d   this view
//   1  other     storage, read        array<f32>  n*d   the other view
//   2  stats     storage, read        array<f32>  column_stats layout
//   3  gram      storage, read        array<f32>  n*n+n both views' K, packed
//   4  grad      storage, read_write  array<f32>  n*d
//   5  params    uniform              BackwardParams (as tiled/primal_gradient.wgsl; columnStart and
//                                     matrixStride unused here)
//   6  upstream  storage, read        array<f32>  1: the upstream gradient
// Dispatch: (ceil(d / TILE), ceil(n / TILE), 1) workgroups of (WG, WG) threads.
// Variant: "workgroup": workgroup-memory tiles, for GPUs.

struct BackwardParams {
  n: u32, d: u32, shiftOffset: u32, centerOffset: u32,
  varOffset: u32, columnStart: u32, matrixStride: u32, packing: u32,
  invCoef: f32, varWeight: f32, covCoef: f32, gamma: f32,
  eps: f32, panels: u32, _pad4: f32, _pad5: f32,
}

override WG: u32 = 16;
// Add into grad (a caller's autograd accumulating) instead of overwriting it.
override ACCUMULATE: bool = false;
const DEPTH: u32 = 16u;   // steps of k per staging

@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> other: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read> gram: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
@group(0) @binding(5) var<uniform> params: BackwardParams;
@group(0) @binding(6) var<storage, read> upstream: array<f32>;

// [k][r]: K at row i0 + r (4 rows per vec4), column k0 + k.
var<workgroup> gramStage: array<vec4<f32>, DEPTH * WG>;
// [k][c]: Zc at row k0 + k, column j0 + c (4 columns per vec4).
var<workgroup> zcStage: array<vec4<f32>, DEPTH * WG>;

// The packed layout of the matrix buffer, shared by both views (side s): view A's symmetric matrix on
// and above the diagonal, entry (i, k), i <= k, at i*s + k; view B's strictly below it, at k*s + i; B's
// diagonal after the s x s square, at s*s + i (as the Gram kernels write it).
fn packedIndex(i: u32, k: u32, s: u32, lowerHalf: bool) -> u32 {
  if (!lowerHalf) { return i * s + k; }
  return select(k * s + i, s * s + i, i == k);
}

// K_ik of this view, from the packed matrix (packing 1: view A, 2: view B).
fn gramAt(i: u32, k: u32) -> f32 {
  return gram[packedIndex(min(i, k), max(i, k), params.n, params.packing == 2u)];
}

@compute @workgroup_size(WG, WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) lidx: u32) {
  let tile = 4u * WG;
  let n = params.n;
  let d = params.d;
  let i0 = wid.y * tile;
  let j0 = wid.x * tile;

  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < n; k0 += DEPTH) {
    let mirroredBlock = (params.packing == 1u && k0 + DEPTH - 1u < i0) || (params.packing == 2u && k0 > i0 + tile - 1u);
    for (var e = lidx; e < tile * DEPTH; e += WG * WG) {
      // K: consecutive threads read consecutive entries of the buffer. A block wholly in the view's
      // mirrored half (view A: k < i; view B: k > i) is stored along i (row k of the buffer), so there
      // consecutive threads take consecutive rows i; elsewhere, consecutive columns k of row i.
      let r = select(e / DEPTH, e % tile, mirroredBlock);
      let k = select(e % DEPTH, e / tile, mirroredBlock);
      let row = i0 + r;
      gramStage[k * WG + r / 4u][r % 4u] = select(0.0, gramAt(min(row, n - 1u), min(k0 + k, n - 1u)), row < n && k0 + k < n);
      // Zc: consecutive threads read consecutive columns j of a row k.
      let kk = e / tile;
      let c = e % tile;
      let zrow = k0 + kk;
      let column = min(j0 + c, d - 1u);
      let value = (z[min(zrow, n - 1u) * d + column] - stats[params.shiftOffset + column]) - stats[params.centerOffset + column];
      zcStage[kk * WG + c / 4u][c % 4u] = select(0.0, value, zrow < n && j0 + c < d);
    }
    workgroupBarrier();
    for (var k = 0u; k < DEPTH; k++) {
      let a = gramStage[k * WG + lid.y];
      let b = zcStage[k * WG + lid.x];
      acc[0] += a.x * b;
      acc[1] += a.y * b;
      acc[2] += a.z * b;
      acc[3] += a.w * b;
    }
    workgroupBarrier();
  }

  let scale = upstream[0];
  let inv = 1.0 / f32(n - 1u);
  for (var c = 0u; c < 4u; c++) {
    let j = j0 + 4u * lid.x + c;
    if (j >= d) { continue; }
    let shift = stats[params.shiftOffset + j];
    let center = stats[params.centerOffset + j];
    let variance = stats[params.varOffset + j];
    let stdDev = sqrt(variance + params.eps);
    let varCoef = select(0.0, params.varWeight / stdDev, stdDev < params.gamma);
    for (var r = 0u; r < 4u; r++) {
      let i = i0 + 4u * lid.y + r;
      if (i >= n) { continue; }
      let index = i * d + j;
      let x = z[index];
      let zc = (x - shift) - center;
      let covGrad = acc[r][c] * inv - variance * zc;
      let g = params.invCoef * (x - other[index]) + varCoef * zc + params.covCoef * covGrad;
      if (ACCUMULATE) { grad[index] += scale * g; } else { grad[index] = scale * g; }
    }
  }
}
