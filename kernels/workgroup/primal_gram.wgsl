// workgroup/primal_gram.wgsl: as tiled/primal_gram.wgsl (the covariance matrix of one view,
// with the sum of its squared off-diagonal entries reduced in the epilogue, primal d x d form), staged
// through workgroup memory: the shape GPUs want (each element of Z is read from global memory once per
// tile, by one thread, and then shared by the workgroup).
//
// Math (Z one view, n x d row-major; Zc = (Z - shift) - center from column_stats):
//   C_lm = (1/(n-1)) sum_i Zc_il Zc_im                              (l, m in [0, d))
//   partials[tile] = w * sum over the tile's entries with l != m of C_lm^2, w = 1 on diagonal tiles, 2
//   above (tiles below the diagonal are not computed); sum over all tiles = sum_{l != m} C_lm^2.
//   If WRITE_MATRIX: Coff (C with a zero diagonal) packed with the other view's (packedIndex below),
//   entries l <= m.
//
// Each workgroup is (WG, WG) threads and computes a TILE x TILE tile of C, TILE = 4*WG, each thread a 4 x 4
// register block. The contraction runs over n in steps of DEPTH rows: the workgroup stages those rows of
// Zc, at the tile's columns (centered as loaded), in workgroup memory, then every thread reads its 4 + 4
// values per row from there.
//
// Bindings (group 0):
//   0  z           storage, read        array<f32>  n*d
//   1  stats       storage, read        array<f32>  column_stats layout; shift, center at shiftOffset, centerOffset
//   2  partials    storage, read_write  array<f32>  one per workgroup per view: partialOffset + wid.y*gx + wid.x
//                                                   (0 below the diagonal)
//   3  covOffDiag  storage, read_write  array<f32>  d*d+d, both views packed, when WRITE_MATRIX (any small
//                                                   buffer otherwise)
//   4  dims        uniform              GramDims { n, d, tiles (unused), partialOffset, shiftOffset,
//                                                   centerOffset, lowerHalf: 0 view A, 1 view B }
// Dispatch: (gx, gx, 1) workgroups, gx = ceil(d / TILE); workgroups below the diagonal write a zero partial
// and return.
// Variant: "workgroup": workgroup-memory tiles, for GPUs. WG*WG must be a power of two (tree reduction).

struct GramDims { n: u32, d: u32, tiles: u32, partialOffset: u32, shiftOffset: u32, centerOffset: u32, blockStart: u32, blockWidth: u32, lowerHalf: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

override WG: u32 = 16;
override WRITE_MATRIX: bool = true;
const DEPTH: u32 = 16u;   // rows of Z per staging step

@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;
@group(0) @binding(3) var<storage, read_write> covOffDiag: array<f32>;
@group(0) @binding(4) var<uniform> dims: GramDims;

// [i][c]: Zc of row i0 + i at the tile's column c (columns l0 + c, m0 + c), as vec4s of 4 columns.
var<workgroup> columnsL: array<vec4<f32>, DEPTH * WG>;
var<workgroup> columnsM: array<vec4<f32>, DEPTH * WG>;
var<workgroup> threadSums: array<f32, WG * WG>;

// The packed layout of the matrix buffer, shared by both views (side s): view A's symmetric matrix on
// and above the diagonal, entry (i, k), i <= k, at i*s + k; view B's strictly below it, at k*s + i; B's
// diagonal after the s x s square, at s*s + i.
fn packedIndex(i: u32, k: u32, s: u32, lowerHalf: bool) -> u32 {
  if (!lowerHalf) { return i * s + k; }
  return select(k * s + i, s * s + i, i == k);
}

fn centered(row: u32, column: u32) -> f32 {
  let n = dims.n;
  let d = dims.d;
  let value = z[min(row, n - 1u) * d + min(column, d - 1u)];
  let c = min(column, d - 1u);
  return select(0.0, (value - stats[dims.shiftOffset + c]) - stats[dims.centerOffset + c], row < n && column < d);
}

@compute @workgroup_size(WG, WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {
  let tile = 4u * WG;
  let partialIndex = dims.partialOffset + wid.y * groups.x + wid.x;
  if (wid.y > wid.x) {
    if (lidx == 0u) { partials[partialIndex] = 0.0; }
    return;
  }
  let n = dims.n;
  let d = dims.d;
  let l0 = wid.y * tile;
  let m0 = wid.x * tile;

  var acc: array<vec4<f32>, 4>;
  for (var i0 = 0u; i0 < n; i0 += DEPTH) {
    // Stage DEPTH rows at the tile's columns: consecutive threads read consecutive columns of a row.
    for (var e = lidx; e < tile * DEPTH; e += WG * WG) {
      let i = e / tile;
      let c = e % tile;
      columnsL[i * WG + c / 4u][c % 4u] = centered(i0 + i, l0 + c);
      columnsM[i * WG + c / 4u][c % 4u] = centered(i0 + i, m0 + c);
    }
    workgroupBarrier();
    for (var i = 0u; i < DEPTH; i++) {
      let a = columnsL[i * WG + lid.y];
      let b = columnsM[i * WG + lid.x];
      acc[0] += a.x * b;
      acc[1] += a.y * b;
      acc[2] += a.z * b;
      acc[3] += a.w * b;
    }
    workgroupBarrier();
  }

  let inv = 1.0 / f32(n - 1u);
  let mirror = wid.y < wid.x;
  let lower = dims.lowerHalf != 0u;
  var sumSq = 0.0;
  for (var r = 0u; r < 4u; r++) {
    for (var c = 0u; c < 4u; c++) {
      let l = l0 + 4u * lid.y + r;
      let m = m0 + 4u * lid.x + c;
      if (l < d && m < d) {
        let value = select(acc[r][c] * inv, 0.0, l == m);
        sumSq = fma(value, value, sumSq);
        if (WRITE_MATRIX && l <= m) { covOffDiag[packedIndex(l, m, d, lower)] = value; }
      }
    }
  }

  // Deterministic tree over the workgroup's threads (no float atomics).
  threadSums[lidx] = sumSq;
  workgroupBarrier();
  for (var stride = WG * WG / 2u; stride > 0u; stride >>= 1u) {
    if (lidx < stride) { threadSums[lidx] += threadSums[lidx + stride]; }
    workgroupBarrier();
  }
  if (lidx == 0u) {
    partials[partialIndex] = select(1.0, 2.0, mirror) * threadSums[0];
  }
}
