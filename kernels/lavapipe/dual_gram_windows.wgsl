// lavapipe/dual_gram_windows.wgsl: as tiled/dual_gram.wgsl (the n x n Gram matrix K = Zc Zc^T of one view, with the
// sum of squares of its entries reduced in the epilogue, dual form), for adapters where a storage-buffer
// load costs a branch per lane but a storage-texture load does not (lavapipe).
//
// Math (Zc = (Z - shift) - center, from column_stats):
//   K_ik (=, or += after the first group) sum over this group's columns j of Zc_ij Zc_kj
//   where flags bit 1 (the last group): partials[p] = sum over this lane's entries with i <= k < n of
//   w (K_ik / (n-1))^2, w = 2 if i < k, 1 if i = k, so the sum over all p = ||K||_F^2 / (n-1)^2.
// The columns come in the backward's column groups (src/variants/lavapipe/windows.ts windowColumnGroups: 8 strips of 64 columns
// from 512 rows, up to 64 below); per group the host fills the panel texture the backward reads (a strip a layer) and runs one
// dispatch of this kernel over every tile on or above K's diagonal, which adds the group's part to
// the running sums it loads from K and stores back. Each workgroup is one subgroup of LANES = 8 and owns
// a 32 x 64 tile (rows shared by the lanes and passed by subgroupShuffle, 8 columns a lane), as
// lavapipe/dual_gram_shuffle.wgsl.
// Why a texture (Mesa 25.0, lp_bld_nir_soa.c): a storage-buffer load becomes a branch per lane on the
// execution mask and on its bounds; a texture load is a call without per-lane branches. The same
// texture as the backward's means no panel of its own: where the view can be copied (RAW_PANEL) the
// group's strips are copied into it as they are, with no pass over the view, and K is one dispatch per
// group: a texture has no 64 KiB window to cut the work into (docs/lavapipe.md, "windows").
// RAW_PANEL: the texture holds Z itself, centered here as it is loaded with the same two subtractions
// as everywhere else; before each strip, lanes 0-3 load its shift and lanes 4-7 its center, each lane
// for a quarter of the strip's texels, and each step takes its 4 columns' by subgroupShuffle. Without it the texture holds
// Zc (lavapipe/centered_panels.wgsl, then copyBufferToTexture).
// K's layout (src/variants/lavapipe/windows.ts blockedMatrixFloats): 128 x 128 blocks of 16384 floats, nb = ceil(n/128); block
// (r, c) at (r nb + c) 16384, and view B's diagonal blocks after those, block (P, P) at (nb^2 + P) 16384.
// View A's entry (i, k), i <= k, in block (i/128, k/128) at (i % 128) 128 + k % 128; view B's at the
// transposed place, (k/128, i/128) and (k % 128) 128 + i % 128. The diagonal blocks (A's in place, B's
// after) are kept whole, both triangles (the last group writes each entry there twice), so that the
// backward reads them as any other block. Entries past n, up to 128 nb, are written as zeros (the
// backward reads them without a mask).
//
// Bindings (group 0):
//   0  partials  storage, read_write  array<f32>        LANES per tile: partialOffset + t*LANES + lane
//   1  gram      storage, read_write  array<f32>        the blocked matrix, both views
//   2  stats     storage, read        array<f32>        column_stats layout (RAW_PANEL: shift, center)
//   3  dims      uniform              WindowDims
//   4  panel     texture_storage_2d_array<rgba32float, read>  16 x n x strips: the group's strip q in
//                layer q, columns 4x .. 4x+3 of the strip at (x, row); rows past n are out of bounds,
//                which WGSL answers with some texel or zero: they reach only entries past n, written 0
// Dispatch: (tiles, 1, 1) workgroups of LANES threads, tiles = X (X + 1) for X = 128 nb / 64 column
// tiles: the tiles on or above the diagonal, column tile by column tile (blockedTile).
// Requires: the 'subgroups' feature with a subgroup size of exactly LANES; read-only storage textures
// (the readonly_and_readwrite_storage_textures language feature).
// Variant: "windows" (lavapipe).

enable subgroups;
requires readonly_and_readwrite_storage_textures;

// n; strips: this group's strips; partialOffset: this view's first partial; flags: bit 0 first group,
// bit 1 last group; lowerHalf: 1 for view B; columnStart: the group's first column; shiftOffset,
// centerOffset: in stats.
struct WindowDims { n: u32, strips: u32, partialOffset: u32, flags: u32, lowerHalf: u32, columnStart: u32, shiftOffset: u32, centerOffset: u32 }

override RAW_PANEL: bool = false;   // the texture holds Z, not Zc (see panel above)
const LANES: u32 = 8u;
const SHARED: u32 = 32u;
const OWN: u32 = 8u;
const TILE_COLUMNS: u32 = LANES * OWN;
const STRIP4: u32 = 16u;     // texels per strip row
const BLOCK: u32 = 128u;
const BLOCK_FLOATS: u32 = BLOCK * BLOCK;
alias Acc = array<array<f32, OWN>, SHARED>;

@group(0) @binding(0) var<storage, read_write> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> gram: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<uniform> dims: WindowDims;
@group(0) @binding(4) var panel: texture_storage_2d_array<rgba32float, read>;

// Tile t's (column tile, row tile): column tile x has row tiles 0 .. 2x + 1 (as lavapipe/dual_gram_shuffle.wgsl).
fn blockedTile(t: u32) -> vec2<u32> {
  var x = u32((sqrt(4.0 * f32(t) + 1.0) - 1.0) * 0.5);
  // Correct f32 rounding to the exact column tile: x (x + 1) <= t < (x + 1) (x + 2).
  if ((x + 1u) * (x + 2u) <= t) { x += 1u; }
  if (x * (x + 1u) > t) { x -= 1u; }
  return vec2<u32>(x, t - x * (x + 1u));
}

// Where the view keeps K's entry (i, k), i <= k (in a diagonal block, its upper triangle).
fn blockedIndex(i: u32, k: u32, nb: u32, lower: bool) -> u32 {
  let P = i / BLOCK;
  let Q = k / BLOCK;
  if (P == Q) { return select(P * nb + P, nb * nb + P, lower) * BLOCK_FLOATS + (i % BLOCK) * BLOCK + k % BLOCK; }
  if (!lower) { return (P * nb + Q) * BLOCK_FLOATS + (i % BLOCK) * BLOCK + k % BLOCK; }
  return (Q * nb + P) * BLOCK_FLOATS + (k % BLOCK) * BLOCK + i % BLOCK;
}

// Entry (k, i), i < k, of a diagonal block (the lower triangle's copy of blockedIndex(i, k)).
fn mirrorIndex(i: u32, k: u32, nb: u32, lower: bool) -> u32 {
  let P = i / BLOCK;
  return select(P * nb + P, nb * nb + P, lower) * BLOCK_FLOATS + (k % BLOCK) * BLOCK + i % BLOCK;
}

// Zc at texel x of strip q, row `row`: the texel, centered here with RAW_PANEL.
fn panelZc(x: u32, row: u32, q: u32, shift: vec4<f32>, center: vec4<f32>) -> vec4<f32> {
  let texel = textureLoad(panel, vec2<u32>(x, row), q);
  if (RAW_PANEL) { return (texel - shift) - center; }
  return texel;
}

// Rows p*LANES .. p*LANES + LANES - 1 of the tile += the 4 columns of Zc in mine (lane s's) . own.
fn accumulateBlock(acc: ptr<function, Acc>, p: u32, mine: vec4<f32>, own: ptr<function, array<vec4<f32>, OWN>>) {
  for (var s = 0u; s < LANES; s++) {
    let row = subgroupShuffle(mine, s);
    for (var c = 0u; c < OWN; c++) { (*acc)[p * LANES + s][c] += dot(row, (*own)[c]); }
  }
}

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let n = dims.n;
  let t = wid.x;
  let tile = blockedTile(t);
  let i0 = tile.y * SHARED;
  let k0 = tile.x * TILE_COLUMNS;
  let nb = (n + BLOCK - 1u) / BLOCK;
  let first = (dims.flags & 1u) != 0u;
  let last = (dims.flags & 2u) != 0u;
  let lower = dims.lowerHalf != 0u;
  // A tile wholly past n (K's padding, up to 128 nb): zeros, written once.
  if (i0 >= n || k0 >= n) {
    if (first) {
      for (var r = 0u; r < SHARED; r++) {
        for (var c = 0u; c < OWN; c++) {
          let i = i0 + r;
          let k = k0 + c * LANES + lane;
          if (i <= k) { gram[blockedIndex(i, k, nb, lower)] = 0.0; }
          if (i < k && i / BLOCK == k / BLOCK) { gram[mirrorIndex(i, k, nb, lower)] = 0.0; }
        }
      }
    }
    if (last) { partials[dims.partialOffset + t * LANES + lane] = 0.0; }
    return;
  }

  var acc: Acc;
  if (!first) {
    for (var r = 0u; r < SHARED; r++) {
      for (var c = 0u; c < OWN; c++) {
        let i = i0 + r;
        let k = k0 + c * LANES + lane;
        if (i <= k) { acc[r][c] = gram[blockedIndex(i, k, nb, lower)]; }
      }
    }
  }
  for (var q = 0u; q < dims.strips; q++) {
    // RAW_PANEL: lane L holds, for texels 4h + (L % 4) of the strip, the shift (L < 4) or the center.
    var statsLane: array<vec4<f32>, 4>;
    if (RAW_PANEL) {
      let base = select(dims.centerOffset, dims.shiftOffset, lane < 4u) + dims.columnStart + q * 4u * STRIP4 + 4u * (lane % 4u);
      for (var h = 0u; h < 4u; h++) {
        let o = base + 16u * h;
        statsLane[h] = vec4<f32>(stats[o], stats[o + 1u], stats[o + 2u], stats[o + 3u]);
      }
    }
    for (var x = 0u; x < STRIP4; x++) {
      var shift = vec4<f32>(0.0);
      var center = vec4<f32>(0.0);
      if (RAW_PANEL) {
        let h = x / 4u;
        let quarter = select(select(statsLane[0], statsLane[1], h == 1u), select(statsLane[2], statsLane[3], h == 3u), h >= 2u);
        shift = subgroupShuffle(quarter, x % 4u);
        center = subgroupShuffle(quarter, 4u + x % 4u);
      }
      var own: array<vec4<f32>, OWN>;
      for (var c = 0u; c < OWN; c++) { own[c] = panelZc(x, k0 + c * LANES + lane, q, shift, center); }
      var mine: array<vec4<f32>, 4>;
      for (var p = 0u; p < 4u; p++) { mine[p] = panelZc(x, i0 + p * LANES + lane, q, shift, center); }
      accumulateBlock(&acc, 0u, mine[0], &own);
      accumulateBlock(&acc, 1u, mine[1], &own);
      accumulateBlock(&acc, 2u, mine[2], &own);
      accumulateBlock(&acc, 3u, mine[3], &own);
    }
  }

  let inv = 1.0 / f32(n - 1u);
  var sumSq = 0.0;
  for (var r = 0u; r < SHARED; r++) {
    let i = i0 + r;   // shared row r = p * LANES + s, as shuffled above
    for (var c = 0u; c < OWN; c++) {
      let k = k0 + c * LANES + lane;
      if (i <= k) {
        // Entries past n (from rows the texture does not have): zeros.
        let value = select(0.0, acc[r][c], i < n && k < n);
        let scaled = value * inv;
        sumSq += select(2.0, 1.0, i == k) * scaled * scaled;
        gram[blockedIndex(i, k, nb, lower)] = value;
        if (last && i < k && i / BLOCK == k / BLOCK) { gram[mirrorIndex(i, k, nb, lower)] = value; }
      }
    }
  }
  if (last) { partials[dims.partialOffset + t * LANES + lane] = sumSq; }
}
