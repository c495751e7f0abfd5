// lavapipe/dual_gram_shuffle.wgsl: as tiled/dual_gram.wgsl (the n x n Gram matrix K = Zc Zc^T of one view, with the
// sum of squares of its entries reduced in the epilogue, dual form), for adapters where every
// storage-buffer load is expensive per lane and subgroup shuffles are cheap (lavapipe).
//
// Math (Z one view, n x d row-major; Zc = (Z - shift) - center from column_stats):
//   K_ik = sum_j Zc_ij Zc_kj
//   partials[p] = sum over this lane's entries with i <= k of w (K_ik / (n-1))^2, w = 2 if i < k, 1 if
//   i = k (entries with i > k are left to the mirrored tile), so sum over all p = ||K||_F^2 / (n-1)^2.
//   If WRITE_MATRIX: gram = K, written at (i, k) and (k, i).
//
// Each workgroup is one subgroup of LANES = 8 invocations and owns a SHARED x (LANES * OWN) tile of K:
// rows i0 .. i0 + SHARED - 1 are shared by all lanes, and each lane owns OWN rows k (k0 + c*LANES + lane).
// The contraction runs along rows of Z, 4 columns at a time (vec4 loads). Per step a lane loads
// SHARED / LANES shared vec4s and OWN vec4s of its own; the shared ones reach the other lanes by
// subgroupShuffle, and so do shift and center (one load per lane, not eight).
// Why this shape (lavapipe, Mesa 25.0, read from its generated code with GALLIVM_DEBUG=asm): every write to
// a variable carried across loop iterations is a blend with the execution mask plus a spill, so each
// accumulator takes 4 multiply-adds per write (a dot product of vec4s); and the
// SHARED_PER_LANE blocks are spelled out as calls of accumulateBlock, so that every accumulator index is a
// constant (Mesa leaves a loop that big rolled, and then indexes the accumulators lane by lane through the
// stack; docs/lavapipe.md, "shuffle").
//
// Bindings (group 0):
//   0  z4        storage, read        array<vec4<f32>>  n*d/4: Z as vec4s
//   1  stats     storage, read        array<f32>        column_stats layout; shift, center at shiftOffset, centerOffset
//   2  partials  storage, read_write  array<f32>        LANES per tile per view: partialOffset + t*LANES + lane (t the tile's index, below)
//   3  gram      storage, read_write  array<f32>        n*n+n, both views' K packed (packedIndex), when
//                                                     WRITE_MATRIX (any small buffer otherwise)
//   4  dims      uniform              GramDims { n, d, tiles (unused), partialOffset, shiftOffset, centerOffset }
// Dispatch: T = upperTileCount(n) workgroups of LANES threads, one per tile on or above the
// diagonal (TILE_COLUMNS = 2 * SHARED wide), as (gx, gy, 1) = (min(T, 65535), ceil(T / 65535), 1); t = wid.y *
// gx + wid.x, and workgroups with t >= T return. upperTile(t) gives the tile (see below for the order).
// Requires: d % 4 == 0; the 'subgroups' feature with a subgroup size of exactly LANES.
// Variant: "shuffle" (lavapipe: subgroups of exactly 8).

enable subgroups;

struct GramDims { n: u32, d: u32, tiles: u32, partialOffset: u32, shiftOffset: u32, centerOffset: u32, blockStart: u32, blockWidth: u32, lowerHalf: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

override WRITE_MATRIX: bool = true;
const LANES: u32 = 8u;
const SHARED_PER_LANE: u32 = 4u;
const SHARED: u32 = LANES * SHARED_PER_LANE;   // shared rows of K per workgroup
const_assert SHARED_PER_LANE == 4u;   // the accumulateBlock calls below are spelled out for 4 blocks
const OWN: u32 = 8u;                           // rows of K (columns of the tile) per lane

const TILE_COLUMNS: u32 = LANES * OWN;
const_assert TILE_COLUMNS == 2u * SHARED;

// Workgroups enumerate only the tiles on or above the diagonal, column block by column block, so that
// every workgroup does the same work: an adapter that splits the dispatch into equal contiguous ranges
// per thread (lavapipe) then keeps all its threads busy. A tile is SHARED rows by TILE_COLUMNS =
// 2 * SHARED columns, so column block x has row tiles 0 .. 2x + 1 on or above the diagonal and the
// blocks before x hold x (x + 1) tiles; only the last block can be cut short by the matrix's edge.
fn upperTileCount(side: u32) -> u32 {
  let columnTiles = (side + TILE_COLUMNS - 1u) / TILE_COLUMNS;
  let rowTiles = (side + SHARED - 1u) / SHARED;
  return (columnTiles - 1u) * columnTiles + min(2u * columnTiles, rowTiles);
}

// (column block, row tile) of tile t in that order.
fn upperTile(t: u32, side: u32) -> vec2<u32> {
  let columnTiles = (side + TILE_COLUMNS - 1u) / TILE_COLUMNS;
  var x = u32((sqrt(4.0 * f32(t) + 1.0) - 1.0) * 0.5);
  // Correct f32 rounding to the exact block: x (x + 1) <= t < (x + 1) (x + 2).
  if ((x + 1u) * (x + 2u) <= t) { x += 1u; }
  if (x * (x + 1u) > t) { x -= 1u; }
  x = min(x, columnTiles - 1u);
  return vec2<u32>(x, t - x * (x + 1u));
}

// The packed layout of the matrix buffer, shared by both views (side s): view A's symmetric matrix on
// and above the diagonal, entry (i, k), i <= k, at i*s + k; view B's strictly below it, at k*s + i; B's
// diagonal after the s x s square, at s*s + i. s*s + s floats hold both views' matrices.
fn packedIndex(i: u32, k: u32, s: u32, lowerHalf: bool) -> u32 {
  if (!lowerHalf) { return i * s + k; }
  return select(k * s + i, s * s + i, i == k);
}

// Rows p*LANES .. p*LANES + LANES - 1 of the tile += the 4 columns of Zc in mine (lane s's) . own.
fn accumulateDots(acc: ptr<function, array<array<f32, OWN>, SHARED>>, p: u32, mine: vec4<f32>,
                   own: ptr<function, array<vec4<f32>, OWN>>) {
  for (var s = 0u; s < LANES; s++) {
    let row = subgroupShuffle(mine, s);
    for (var c = 0u; c < OWN; c++) { (*acc)[p * LANES + s][c] += dot(row, (*own)[c]); }
  }
}

@group(0) @binding(0) var<storage, read> z4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;
@group(0) @binding(3) var<storage, read_write> gram: array<f32>;
@group(0) @binding(4) var<uniform> dims: GramDims;

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32) {
  let n = dims.n;
  let d4 = dims.d / 4u;
  let t = wid.y * groups.x + wid.x;   // this workgroup's tile in the triangle order
  if (t >= upperTileCount(n)) { return; }
  let tile = upperTile(t, n);
  let i0 = tile.y * SHARED;
  let k0 = tile.x * TILE_COLUMNS;
  let partialIndex = dims.partialOffset + t * LANES + lane;

  var sharedBase: array<u32, SHARED_PER_LANE>;
  for (var p = 0u; p < SHARED_PER_LANE; p++) { sharedBase[p] = min(i0 + p * LANES + lane, n - 1u) * d4; }
  var ownBase: array<u32, OWN>;
  for (var c = 0u; c < OWN; c++) { ownBase[c] = min(k0 + c * LANES + lane, n - 1u) * d4; }
  let so = dims.shiftOffset;
  let co = dims.centerOffset;

  var acc: array<array<f32, OWN>, SHARED>;
  for (var j4 = 0u; j4 < d4; j4++) {
    let j = 4u * j4;
    let statsLane = stats[select(co, so, lane < 4u) + j + (lane & 3u)];
    let shift = vec4<f32>(subgroupShuffle(statsLane, 0u), subgroupShuffle(statsLane, 1u), subgroupShuffle(statsLane, 2u), subgroupShuffle(statsLane, 3u));
    let center = vec4<f32>(subgroupShuffle(statsLane, 4u), subgroupShuffle(statsLane, 5u), subgroupShuffle(statsLane, 6u), subgroupShuffle(statsLane, 7u));
    var own: array<vec4<f32>, OWN>;
    for (var c = 0u; c < OWN; c++) { own[c] = (z4[ownBase[c] + j4] - shift) - center; }
    accumulateDots(&acc, 0u, (z4[sharedBase[0] + j4] - shift) - center, &own);
    accumulateDots(&acc, 1u, (z4[sharedBase[1] + j4] - shift) - center, &own);
    accumulateDots(&acc, 2u, (z4[sharedBase[2] + j4] - shift) - center, &own);
    accumulateDots(&acc, 3u, (z4[sharedBase[3] + j4] - shift) - center, &own);
  }

  let inv = 1.0 / f32(n - 1u);
  var sumSq = 0.0;
  for (var r = 0u; r < SHARED; r++) {
    let i = i0 + r;   // shared row r = p * LANES + s, as shuffled above
    for (var c = 0u; c < OWN; c++) {
      let k = k0 + c * LANES + lane;
      if (i < n && k < n && i <= k) {
        let value = acc[r][c];
        let scaled = value * inv;
        sumSq += select(2.0, 1.0, i == k) * scaled * scaled;
        if (WRITE_MATRIX) { gram[packedIndex(i, k, n, dims.lowerHalf != 0u)] = value; }
      }
    }
  }
  partials[partialIndex] = sumSq;
}
