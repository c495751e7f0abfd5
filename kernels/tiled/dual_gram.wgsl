// sample_gram.wgsl: the n x n Gram matrix of one centered view, tile by tile, with the sum of squares of
// all its entries reduced in the epilogue ("dual" form: cost O(n^2 d), used when n < d).
//
// Math (Z one view, n x d row-major; Zc = (Z - shift) - center, from column_stats):
//   K_ik = sum_j Zc_ij Zc_kj                                          (i, k in [0, n))
//   partials[tile] = w * sum over the tile's entries of (K_ik / (n-1))^2,
//   w = 1 on diagonal tiles, 2 above the diagonal (K is symmetric; tiles below it are not computed).
//   sum over all tiles = ||K||_F^2 / (n-1)^2 = ||C||_F^2               (C = Zc^T Zc / (n-1))
//   loss_terms.wgsl subtracts the diagonal of C, sum_j var_j^2, to get sum_{l != m} C_lm^2.
//   If WRITE_MATRIX: gram = K, written in full (each tile above the diagonal also mirrored), for
//   covariance_backward_dual.wgsl.
// Centering happens as Z is loaded (see column_stats.wgsl for why in two steps).
//
// Bindings (group 0):
//   0  z         storage, read        array<f32>  n*d
//   1  stats     storage, read        array<f32>  column_stats layout; this view's shift and center at
//                                                 shiftOffset, centerOffset
//   2  partials  storage, read_write  array<f32>  tiles*tiles per view (entry partialOffset + tileRow*tiles
//                                                 + tileCol; 0 below the diagonal)
//   3  gram      storage, read_write  array<f32>  n*n when WRITE_MATRIX (any small buffer otherwise)
//   4  dims      uniform              GramDims { n, d, tiles, partialOffset, shiftOffset, centerOffset }
// Dispatch: (tiles, tiles, 1) workgroups, tiles = ceil(n / (4*WG)); workgroup (WG, WG) threads; each
// thread accumulates a 4 x 4 register block of K, so a workgroup covers a (4*WG) x (4*WG) tile.
// Workgroups below the diagonal write a zero partial and return.
// Variant: "tiled": register blocks, no workgroup memory in the main loop; portable (the one for GPUs).
// WG*WG must be a power of two (tree reduction).

struct GramDims { n: u32, d: u32, tiles: u32, partialOffset: u32, shiftOffset: u32, centerOffset: u32, _pad0: u32, _pad1: u32, lowerHalf: u32, _pad2: u32, _pad3: u32, _pad4: u32 }

override WG: u32 = 8;
override WRITE_MATRIX: bool = true;
const BLOCK: u32 = 4u;   // rows and columns of K per thread

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
@group(0) @binding(3) var<storage, read_write> gram: array<f32>;
@group(0) @binding(4) var<uniform> dims: GramDims;

var<workgroup> threadSums: array<f32, WG * WG>;

@compute @workgroup_size(WG, WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) lidx: u32) {
  let tileRow = wid.y;
  let tileCol = wid.x;
  let partialIndex = dims.partialOffset + tileRow * dims.tiles + tileCol;
  if (tileRow > tileCol) {
    if (lidx == 0u) { partials[partialIndex] = 0.0; }
    return;
  }
  let n = dims.n;
  let d = dims.d;
  let offs = vec4<u32>(0u, 1u, 2u, 3u);
  let rowsI = vec4<u32>(tileRow * WG * BLOCK + lid.y * BLOCK) + offs;   // this thread's rows of K
  let rowsK = vec4<u32>(tileCol * WG * BLOCK + lid.x * BLOCK) + offs;   // this thread's columns of K
  // Out-of-range rows are clamped for the load and zeroed by the mask, so they add nothing.
  let baseI = min(rowsI, vec4<u32>(n - 1u)) * d;
  let baseK = min(rowsK, vec4<u32>(n - 1u)) * d;
  let maskI = select(vec4<f32>(0.0), vec4<f32>(1.0), rowsI < vec4<u32>(n));
  let maskK = select(vec4<f32>(0.0), vec4<f32>(1.0), rowsK < vec4<u32>(n));

  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var j = 0u; j < d; j++) {
    let shift = vec4<f32>(stats[dims.shiftOffset + j]);
    let center = vec4<f32>(stats[dims.centerOffset + j]);
    let zi = ((vec4<f32>(z[baseI.x + j], z[baseI.y + j], z[baseI.z + j], z[baseI.w + j]) - shift) - center) * maskI;
    let zk = ((vec4<f32>(z[baseK.x + j], z[baseK.y + j], z[baseK.z + j], z[baseK.w + j]) - shift) - center) * maskK;
    acc0 = fma(vec4<f32>(zi.x), zk, acc0);
    acc1 = fma(vec4<f32>(zi.y), zk, acc1);
    acc2 = fma(vec4<f32>(zi.z), zk, acc2);
    acc3 = fma(vec4<f32>(zi.w), zk, acc3);
  }

  let block = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
  let inv = 1.0 / f32(n - 1u);
  let mirror = tileRow < tileCol;
  var sumSq = 0.0;
  for (var r = 0u; r < BLOCK; r++) {
    for (var c = 0u; c < BLOCK; c++) {
      let i = rowsI[r];
      let k = rowsK[c];
      if (i < n && k < n) {
        let value = block[r][c];
        let scaled = value * inv;
        sumSq = fma(scaled, scaled, sumSq);
        if (WRITE_MATRIX && i <= k) {
          gram[packedIndex(i, k, n, dims.lowerHalf != 0u)] = value;
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
