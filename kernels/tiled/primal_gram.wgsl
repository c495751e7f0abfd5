// gram_offdiag_squares.wgsl: the covariance matrix of one view, tile by tile, with the sum of its squared
// off-diagonal entries reduced in the epilogue ("primal" d x d form).
//
// Math (Z one view, n x d row-major; mean_j = shift_j + center_j from column_stats):
//   C_lm = (1/(n-1)) sum_i (Z_il - mean_l) (Z_im - mean_m)          (l, m in [0, d))
//   partials[tile] = w * sum over the tile's entries with l != m of C_lm^2,
//   w = 1 on diagonal tiles, 2 above the diagonal (C is symmetric; tiles below it are not computed).
//   sum over all tiles = sum_{l != m} C_lm^2                          (d * c(Z) in the math doc)
//   If WRITE_MATRIX: covOffDiag = C with its diagonal set to 0 (Coff), written in full (each tile above
//   the diagonal is also written mirrored), for covariance_backward.wgsl.
//   If COLUMN_BLOCK (for d x d matrices past the device's binding size limit: backward then works one
//   block of columns at a time): the workgroups cover columns blockStart .. blockStart + blockWidth - 1
//   and all rows, every tile is computed (no symmetry), Coff[l, m] is written at l*blockWidth +
//   (m - blockStart), and no partials are written.
// Centering happens as Z is loaded, as (Z - shift) - center (see column_stats.wgsl); never as
// Z^T Z - n mean mean^T, which cancels for large offsets.
//
// Bindings (group 0):
//   0  z           storage, read        array<f32>  n*d
//   1  stats       storage, read        array<f32>  column_stats layout; this view's shift and center at
//                                                 shiftOffset, centerOffset
//   2  partials    storage, read_write  array<f32>  tiles*tiles per view (entry partialOffset + tileRow*tiles + tileCol;
//                                                   0 below the diagonal)
//   3  covOffDiag  storage, read_write  array<f32>  d*d when WRITE_MATRIX (any small buffer otherwise)
//   4  dims        uniform              GramDims { n, d, tiles, partialOffset, shiftOffset, centerOffset,
//                                                 blockStart, blockWidth }
// Dispatch: (tiles, tiles, 1) workgroups, tiles = ceil(d / (4*WG)); workgroup (WG, WG) threads; each
// thread accumulates a 4 x 4 register block of C, so a workgroup covers a (4*WG) x (4*WG) tile.
// Workgroups below the diagonal write a zero partial and return. With COLUMN_BLOCK:
// (ceil(blockWidth / (4*WG)), tiles, 1).
// Variant: "tiled": register blocks, no workgroup memory in the main loop; portable (the one for GPUs).
// WG*WG must be a power of two (tree reduction).

struct GramDims { n: u32, d: u32, tiles: u32, partialOffset: u32, shiftOffset: u32, centerOffset: u32, blockStart: u32, blockWidth: u32, lowerHalf: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

override WG: u32 = 8;
override WRITE_MATRIX: bool = true;
override COLUMN_BLOCK: bool = false;
const BLOCK: u32 = 4u;   // rows and columns of C per thread

// The packed layout of the matrix buffer, shared by both views (side s): view A's symmetric matrix on
// and above the diagonal, entry (i, k), i <= k, at i*s + k; view B's strictly below it, at k*s + i; B's
// diagonal after the s x s square, at s*s + i. s*s + s floats hold both views' matrices.
fn packedIndex(i: u32, k: u32, s: u32, lowerHalf: bool) -> u32 {
  if (!lowerHalf) { return i * s + k; }
  return select(k * s + i, s * s + i, i == k);
}

@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;
@group(0) @binding(3) var<storage, read_write> covOffDiag: array<f32>;
@group(0) @binding(4) var<uniform> dims: GramDims;

var<workgroup> threadSums: array<f32, WG * WG>;

@compute @workgroup_size(WG, WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) lidx: u32) {
  let tileRow = wid.y;
  let tileCol = wid.x;
  let partialIndex = dims.partialOffset + tileRow * dims.tiles + tileCol;
  if (!COLUMN_BLOCK && tileRow > tileCol) {
    if (lidx == 0u) { partials[partialIndex] = 0.0; }
    return;
  }
  let n = dims.n;
  let d = dims.d;
  let firstColumn = select(0u, dims.blockStart, COLUMN_BLOCK);
  let columnEnd = select(d, min(d, dims.blockStart + dims.blockWidth), COLUMN_BLOCK);
  let offs = vec4<u32>(0u, 1u, 2u, 3u);
  let l = vec4<u32>(tileRow * WG * BLOCK + lid.y * BLOCK) + offs;                 // this thread's rows of C
  let m = vec4<u32>(firstColumn + tileCol * WG * BLOCK + lid.x * BLOCK) + offs;   // this thread's columns of C
  // Out-of-range columns are clamped for the load and zeroed by the mask, so they add nothing.
  let lc = min(l, vec4<u32>(d - 1u));
  let mc = min(m, vec4<u32>(columnEnd - 1u));
  let maskL = select(vec4<f32>(0.0), vec4<f32>(1.0), l < vec4<u32>(d));
  let maskM = select(vec4<f32>(0.0), vec4<f32>(1.0), m < vec4<u32>(columnEnd));
  let so = dims.shiftOffset;
  let co = dims.centerOffset;
  let shiftL = vec4<f32>(stats[so + lc.x], stats[so + lc.y], stats[so + lc.z], stats[so + lc.w]);
  let shiftM = vec4<f32>(stats[so + mc.x], stats[so + mc.y], stats[so + mc.z], stats[so + mc.w]);
  let centerL = vec4<f32>(stats[co + lc.x], stats[co + lc.y], stats[co + lc.z], stats[co + lc.w]);
  let centerM = vec4<f32>(stats[co + mc.x], stats[co + mc.y], stats[co + mc.z], stats[co + mc.w]);

  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var i = 0u; i < n; i++) {
    let row = i * d;
    let zl = ((vec4<f32>(z[row + lc.x], z[row + lc.y], z[row + lc.z], z[row + lc.w]) - shiftL) - centerL) * maskL;
    let zm = ((vec4<f32>(z[row + mc.x], z[row + mc.y], z[row + mc.z], z[row + mc.w]) - shiftM) - centerM) * maskM;
    acc0 = fma(vec4<f32>(zl.x), zm, acc0);
    acc1 = fma(vec4<f32>(zl.y), zm, acc1);
    acc2 = fma(vec4<f32>(zl.z), zm, acc2);
    acc3 = fma(vec4<f32>(zl.w), zm, acc3);
  }

  let inv = 1.0 / f32(n - 1u);
  let block = array<vec4<f32>, 4>(acc0 * inv, acc1 * inv, acc2 * inv, acc3 * inv);
  if (COLUMN_BLOCK) {
    for (var r = 0u; r < BLOCK; r++) {
      for (var c = 0u; c < BLOCK; c++) {
        if (l[r] < d && m[c] < columnEnd) {
          covOffDiag[l[r] * dims.blockWidth + (m[c] - firstColumn)] = select(block[r][c], 0.0, l[r] == m[c]);
        }
      }
    }
    return;
  }
  let mirror = tileRow < tileCol;
  var sumSq = 0.0;
  for (var r = 0u; r < BLOCK; r++) {
    for (var c = 0u; c < BLOCK; c++) {
      let row = l[r];
      let col = m[c];
      if (row < d && col < d) {
        let value = select(block[r][c], 0.0, row == col);
        sumSq = fma(value, value, sumSq);
        if (WRITE_MATRIX && row <= col) {
          covOffDiag[packedIndex(row, col, d, dims.lowerHalf != 0u)] = value;
        }
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
