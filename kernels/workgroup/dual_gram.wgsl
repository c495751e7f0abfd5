// workgroup/dual_gram.wgsl: as tiled/dual_gram.wgsl (the n x n Gram matrix K = Zc Zc^T of one view, with
// the sum of squares of its entries reduced in the epilogue, dual form), staged through workgroup memory:
// the shape GPUs want (each element of Z is read from global memory once per tile, by one thread, and
// then shared by the workgroup).
//
// Math (Z one view, n x d row-major; Zc = (Z - shift) - center from column_stats):
//   K_ik = sum_j Zc_ij Zc_kj                                          (i, k in [0, n))
//   partials[tile] = w * sum over the tile's entries of (K_ik / (n-1))^2, w = 1 on diagonal tiles, 2
//   above (tiles below the diagonal are not computed); sum over all tiles = ||K||_F^2 / (n-1)^2.
//   If WRITE_MATRIX: K packed with the other view's (packedIndex below), entries i <= k.
//
// Each workgroup is (WG, WG) threads and computes a TILE x TILE tile of K, TILE = 4*WG, each thread a 4 x 4
// register block. The contraction runs over d in steps of DEPTH columns: the workgroup stages the tile's
// rows of Zc (DEPTH columns each, centered as loaded) in workgroup memory, transposed, then every thread
// reads its 4 + 4 values per column from there.
//
// Bindings (group 0):
//   0  z         storage, read        array<f32>  n*d
//   1  stats     storage, read        array<f32>  column_stats layout; shift, center at shiftOffset, centerOffset
//   2  partials  storage, read_write  array<f32>  one per workgroup per view: partialOffset + wid.y*gx + wid.x
//                                                 (0 below the diagonal)
//   3  gram      storage, read_write  array<f32>  n*n+n, both views packed, when WRITE_MATRIX (any small
//                                                 buffer otherwise)
//   4  dims      uniform              GramDims { n, d, tiles (unused), partialOffset, shiftOffset, centerOffset,
//                                                 lowerHalf: 0 view A, 1 view B }
// Dispatch: (gx, gx, 1) workgroups, gx = ceil(n / TILE); workgroups below the diagonal write a zero partial
// and return.
// Variant: "workgroup": workgroup-memory tiles, for GPUs. WG*WG must be a power of two (tree reduction).

struct GramDims { n: u32, d: u32, tiles: u32, partialOffset: u32, shiftOffset: u32, centerOffset: u32, blockStart: u32, blockWidth: u32, lowerHalf: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

override WG: u32 = 16;
override WRITE_MATRIX: bool = true;
const DEPTH: u32 = 16u;   // columns of Z per staging step

@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;
@group(0) @binding(3) var<storage, read_write> gram: array<f32>;
@group(0) @binding(4) var<uniform> dims: GramDims;

// [j][r]: Zc of the tile's row r (rows i0 + r, k0 + r), column j0 + j; rows as vec4s of 4 rows.
var<workgroup> rowsI: array<vec4<f32>, DEPTH * WG>;
var<workgroup> rowsK: array<vec4<f32>, DEPTH * WG>;
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
  let i0 = wid.y * tile;
  let k0 = wid.x * tile;

  var acc: array<vec4<f32>, 4>;
  for (var j0 = 0u; j0 < d; j0 += DEPTH) {
    // Stage DEPTH columns of the tile's rows: consecutive threads read consecutive columns of a row.
    for (var e = lidx; e < tile * DEPTH; e += WG * WG) {
      let r = e / DEPTH;
      let j = e % DEPTH;
      rowsI[j * WG + r / 4u][r % 4u] = centered(i0 + r, j0 + j);
      rowsK[j * WG + r / 4u][r % 4u] = centered(k0 + r, j0 + j);
    }
    workgroupBarrier();
    for (var j = 0u; j < DEPTH; j++) {
      let a = rowsI[j * WG + lid.y];
      let b = rowsK[j * WG + lid.x];
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
      let i = i0 + 4u * lid.y + r;
      let k = k0 + 4u * lid.x + c;
      if (i < n && k < n) {
        let value = acc[r][c];
        let scaled = value * inv;
        sumSq = fma(scaled, scaled, sumSq);
        if (WRITE_MATRIX && i <= k) { gram[packedIndex(i, k, n, lower)] = value; }
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
