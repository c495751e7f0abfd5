// lavapipe/primal_gram_shuffle.wgsl: as tiled/primal_gram.wgsl (the covariance C of one view with the
// sum of its squared off-diagonal entries reduced in the epilogue, primal d x d form), for adapters where
// every storage-buffer load is expensive per lane and subgroup shuffles are cheap (lavapipe: each lane's
// load is a bounds-checked scalar load; a shuffle is one vector permute).
//
// Math (Z one view, n x d row-major; Zc = (Z - shift) - center from column_stats):
//   C_lm = (1/(n-1)) sum_i Zc_il Zc_im
//   partials[p] = sum over this lane's entries with l < m of 2 C_lm^2   (entries with l > m are left to
//   the mirrored tile; l = m is the diagonal, excluded), so sum over all p = sum_{l != m} C_lm^2.
//   If WRITE_MATRIX: covOffDiag = C with its diagonal set to 0, written at (l, m) and (m, l).
//
// Each workgroup is one subgroup of LANES = 8 invocations and owns a SHARED x (LANES * 4 * OWN4) tile of
// C: rows l0 .. l0 + SHARED - 1 are shared by all lanes, columns are owned per lane, 4 * OWN4 each (OWN4
// vec4s, interleaved across lanes so each vec4 load is 16 contiguous bytes). Per 4 rows i0 .. i0+3 of Z, a
// lane loads those rows' values of its SHARED / LANES shared columns and OWN4 vec4s of each row of its
// own; the shared values reach the other lanes by subgroupShuffle, not by loading them 8 times.
// Why this shape (lavapipe, Mesa 25.0, read from its generated code with GALLIVM_DEBUG=asm): every write to
// a variable carried across loop iterations is a blend with the execution mask plus a spill, so each
// accumulator takes 4 multiply-adds per write (4 rows of Z at a time); and the
// SHARED_PER_LANE blocks are spelled out as calls of accumulateBlock, so that every accumulator index is a
// constant (Mesa leaves a loop that big rolled, and then indexes the accumulators lane by lane through the
// stack; docs/lavapipe.md, "shuffle").
//
// Bindings (group 0):
//   0  z           storage, read        array<f32>        n*d  (the same buffer as binding 5)
//   1  stats       storage, read        array<f32>        column_stats layout; shift, center at shiftOffset, centerOffset
//   2  partials    storage, read_write  array<f32>        LANES per tile per view: partialOffset + t*LANES + lane (t the tile's index, below)
//   3  covOffDiag  storage, read_write  array<f32>        d*d+d, both views' Coff packed (packedIndex), when
//                                                       WRITE_MATRIX (any small buffer otherwise)
//   4  dims        uniform              GramDims { n, d, tiles (unused), partialOffset, shiftOffset, centerOffset }
//   5  z4          storage, read        array<vec4<f32>>  n*d/4: Z as vec4s
// Dispatch: T = upperTileCount(d) workgroups of LANES threads, one per tile on or above the
// diagonal (TILE_COLUMNS = 2 * SHARED wide), as (gx, gy, 1) = (min(T, 65535), ceil(T / 65535), 1); t = wid.y *
// gx + wid.x, and workgroups with t >= T return. upperTile(t) gives the tile (see below for the order).
// Requires: d % 4 == 0; the 'subgroups' feature with a subgroup size of exactly LANES, so a workgroup is
// one subgroup.
// Variant: "shuffle" (lavapipe: subgroups of exactly 8).

enable subgroups;

struct GramDims { n: u32, d: u32, tiles: u32, partialOffset: u32, shiftOffset: u32, centerOffset: u32, blockStart: u32, blockWidth: u32, lowerHalf: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

override WRITE_MATRIX: bool = true;
const LANES: u32 = 8u;
const SHARED_PER_LANE: u32 = 4u;
const SHARED: u32 = LANES * SHARED_PER_LANE;   // shared rows of C per workgroup
const_assert SHARED_PER_LANE == 4u;   // the accumulateBlock calls below are spelled out for 4 blocks
const OWN4: u32 = 2u;                          // vec4s of columns of C per lane

const TILE_COLUMNS: u32 = LANES * 4u * OWN4;
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

@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;
@group(0) @binding(3) var<storage, read_write> covOffDiag: array<f32>;
@group(0) @binding(4) var<uniform> dims: GramDims;
@group(0) @binding(5) var<storage, read> z4: array<vec4<f32>>;

fn statsVec4(offset: u32, column: u32) -> vec4<f32> {
  let o = offset + column;
  return vec4<f32>(stats[o], stats[o + 1u], stats[o + 2u], stats[o + 3u]);
}

// Zc(i0 .. i0+3, column): this lane's shared column over four rows of Z, 0 past row n - 1.
fn sharedColumn4(i0: u32, n: u32, d: u32, column: u32, shift: f32, center: f32) -> vec4<f32> {
  var v: vec4<f32>;
  for (var q = 0u; q < 4u; q++) {
    let i = min(i0 + q, n - 1u);
    v[q] = select(0.0, (z[i * d + column] - shift) - center, i0 + q < n);
  }
  return v;
}

// Rows p*LANES .. p*LANES + LANES - 1 of the tile += Zc(four rows of Z, those columns) . own (the same
// rows, this lane's columns); mine is this lane's shared column over the four rows, shuffled to the others.
fn accumulateBlock(acc: ptr<function, array<array<vec4<f32>, OWN4>, SHARED>>, p: u32, mine: vec4<f32>,
                   own: ptr<function, array<array<vec4<f32>, OWN4>, 4>>) {
  for (var s = 0u; s < LANES; s++) {
    let v = subgroupShuffle(mine, s);
    for (var c = 0u; c < OWN4; c++) {
      (*acc)[p * LANES + s][c] += v.x * (*own)[0][c] + v.y * (*own)[1][c] + v.z * (*own)[2][c] + v.w * (*own)[3][c];
    }
  }
}

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32) {
  let n = dims.n;
  let d = dims.d;
  let d4 = d / 4u;
  let t = wid.y * groups.x + wid.x;   // this workgroup's tile in the triangle order
  if (t >= upperTileCount(d)) { return; }
  let tile = upperTile(t, d);
  let l0 = tile.y * SHARED;
  let m0 = tile.x * TILE_COLUMNS;
  let partialIndex = dims.partialOffset + t * LANES + lane;

  // This lane's shared columns (rows of C), loaded for every lane to shuffle from.
  var sharedColumn: array<u32, SHARED_PER_LANE>;
  var sharedShift: array<f32, SHARED_PER_LANE>;
  var sharedCenter: array<f32, SHARED_PER_LANE>;
  for (var p = 0u; p < SHARED_PER_LANE; p++) {
    sharedColumn[p] = min(l0 + p * LANES + lane, d - 1u);
    sharedShift[p] = stats[dims.shiftOffset + sharedColumn[p]];
    sharedCenter[p] = stats[dims.centerOffset + sharedColumn[p]];
  }
  // This lane's own vec4 columns.
  var own4: array<u32, OWN4>;
  var ownShift: array<vec4<f32>, OWN4>;
  var ownCenter: array<vec4<f32>, OWN4>;
  for (var c = 0u; c < OWN4; c++) {
    own4[c] = min(m0 / 4u + c * LANES + lane, d4 - 1u);
    ownShift[c] = statsVec4(dims.shiftOffset, 4u * own4[c]);
    ownCenter[c] = statsVec4(dims.centerOffset, 4u * own4[c]);
  }

  var acc: array<array<vec4<f32>, OWN4>, SHARED>;
  for (var i0 = 0u; i0 < n; i0 += 4u) {
    // Rows i0 .. i0+3 of Z (clamped at n - 1; the shared values of rows past n are zeroed below).
    var own: array<array<vec4<f32>, OWN4>, 4>;
    for (var q = 0u; q < 4u; q++) {
      let i = min(i0 + q, n - 1u);
      for (var c = 0u; c < OWN4; c++) { own[q][c] = (z4[i * d4 + own4[c]] - ownShift[c]) - ownCenter[c]; }
    }
    accumulateBlock(&acc, 0u, sharedColumn4(i0, n, d, sharedColumn[0], sharedShift[0], sharedCenter[0]), &own);
    accumulateBlock(&acc, 1u, sharedColumn4(i0, n, d, sharedColumn[1], sharedShift[1], sharedCenter[1]), &own);
    accumulateBlock(&acc, 2u, sharedColumn4(i0, n, d, sharedColumn[2], sharedShift[2], sharedCenter[2]), &own);
    accumulateBlock(&acc, 3u, sharedColumn4(i0, n, d, sharedColumn[3], sharedShift[3], sharedCenter[3]), &own);
  }

  let inv = 1.0 / f32(n - 1u);
  var sumSq = 0.0;
  for (var r = 0u; r < SHARED; r++) {
    // Shared row r of this tile is column (p * LANES + s) of the lane layout above: r = p * LANES + s.
    let l = l0 + r;
    for (var c = 0u; c < OWN4; c++) {
      for (var e = 0u; e < 4u; e++) {
        let m = (m0 / 4u + c * LANES + lane) * 4u + e;
        if (l < d && m < d && l < m) {
          let value = acc[r][c][e] * inv;
          sumSq += 2.0 * value * value;
          if (WRITE_MATRIX) { covOffDiag[packedIndex(l, m, d, dims.lowerHalf != 0u)] = value; }
        } else if (WRITE_MATRIX && l == m && l < d) {
          covOffDiag[packedIndex(l, l, d, dims.lowerHalf != 0u)] = 0.0;
        }
      }
    }
  }
  partials[partialIndex] = sumSq;
}
