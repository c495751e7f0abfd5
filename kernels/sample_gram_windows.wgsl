// sample_gram_windows.wgsl: as sample_gram.wgsl (the n x n Gram matrix K = Zc Zc^T of one view, with the
// sum of squares of its entries reduced in the epilogue, dual form), for adapters where a storage-buffer
// load costs a branch per lane but a uniform-buffer load does not (lavapipe).
//
// Math (Zc = (Z - shift) - center, as centered_panels.wgsl copies it into 64-column strips):
//   K_ik += sum over this group's columns j of Zc_ij Zc_kj   (= where flags bit 0: the first group)
//   where flags bit 1 (the last group): partials[p] = sum over this lane's entries with i <= k of
//   w (K_ik / (n-1))^2, w = 2 if i < k, 1 if i = k, so the sum over all p = ||K||_F^2 / (n-1)^2.
// The columns come in groups of at most STRIPS strips; per group, the host copies them into a panel
// buffer (centered_panels.wgsl, rows padded to a multiple of 256), and one dispatch per super-tile
// (a, b), a <= b, of 256 x 256 entries adds that group's part to K's entries (256 a .. + 255, 256 b ..
// + 255). Each workgroup is one subgroup of LANES = 8 and owns a 32 x 64 tile (rows shared by the lanes,
// 8 columns a lane), as sample_gram_subgroup.wgsl; the tile's running sums are loaded from K and stored
// back between groups.
// Why windows (Mesa 25.0, lp_bld_nir_soa.c): a storage-buffer load becomes a branch per lane on the
// execution mask and on its bounds; a uniform-buffer load is a branch-free gather. A uniform binding
// holds 64 KiB: one strip's 256 rows. Reading both tiles' rows from windows, a kernel of this shape with
// the running sums loaded and stored per dispatch ran 150 ms against 266 ms for the same work read from
// storage buffers (scratch benchmark, README "Performance").
// K's layout (kernels.ts blockedMatrix): 128 x 128 blocks, block (r, c) at (r nb + c) 16384 floats, nb =
// ceil(n/128); view A's entry (i, k), i <= k, in block (i/128, k/128) at (i % 128) 128 + k % 128; view B's
// at the transposed place, (k/128, i/128) and (k % 128) 128 + i % 128, but its diagonal after the blocks,
// at nb^2 16384 + i. Entries (i, k) with i > k are not kept: the tile holding (k, i) has them. Entries past
// n, up to 128 nb, are zeros.
//
// Bindings (group 0):
//   0  partials  storage, read_write  array<f32>        LANES per tile: partialOffset + t*LANES + lane
//   1  gram      storage, read_write  array<f32>        the blocked matrix, both views
//   2  dims      uniform              WindowDims
//   3 .. 7   a0 .. a4  uniform        array<vec4<f32>, 4096>  rows 256 a .. + 255 of the group's strip s
//   8 .. 12  b0 .. b4  uniform        the same for rows 256 b .. (the same windows when a = b); strips past
//                                     the group's `strips` may be any window
// Dispatch: (tiles, 1, 1) workgroups of LANES threads: 32 for a < b (8 row tiles x 4 column tiles), and
// for a = b the 20 on or above the diagonal in the order of upperTile. Tiles past 128 nb write a zero
// partial (in the last group) and return.
// Requires: the 'subgroups' feature with a subgroup size of exactly LANES; pointer parameters in the
// uniform address space (unrestricted_pointer_parameters).
// Variant: "windows" (lavapipe).

enable subgroups;
requires unrestricted_pointer_parameters;

// n; strips: this group's strips (at most STRIPS); partialOffset: this super-tile's first partial;
// flags: bit 0 first group, bit 1 last group; a, b: the super-tile; lowerHalf: 1 for view B.
struct WindowDims { n: u32, strips: u32, partialOffset: u32, flags: u32, a: u32, b: u32, lowerHalf: u32, _pad0: u32 }

const LANES: u32 = 8u;
const SHARED: u32 = 32u;
const OWN: u32 = 8u;
const TILE_COLUMNS: u32 = LANES * OWN;
const WINDOW_ROWS: u32 = 256u;
const STRIP4: u32 = 16u;     // vec4s per strip row
const STRIPS: u32 = 5u;
const BLOCK: u32 = 128u;
const BLOCK_FLOATS: u32 = BLOCK * BLOCK;
alias Window = array<vec4<f32>, 4096>;
alias Acc = array<array<f32, OWN>, SHARED>;
const_assert WINDOW_ROWS * STRIP4 == 4096u;

@group(0) @binding(0) var<storage, read_write> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> gram: array<f32>;
@group(0) @binding(2) var<uniform> dims: WindowDims;
@group(0) @binding(3) var<uniform> a0: Window;
@group(0) @binding(4) var<uniform> a1: Window;
@group(0) @binding(5) var<uniform> a2: Window;
@group(0) @binding(6) var<uniform> a3: Window;
@group(0) @binding(7) var<uniform> a4: Window;
@group(0) @binding(8) var<uniform> b0: Window;
@group(0) @binding(9) var<uniform> b1: Window;
@group(0) @binding(10) var<uniform> b2: Window;
@group(0) @binding(11) var<uniform> b3: Window;
@group(0) @binding(12) var<uniform> b4: Window;

// The tiles on or above the diagonal of a 256 x 256 super-tile, column block by column block (as
// sample_gram_subgroup.wgsl's upperTile): column block x has row tiles 0 .. 2x + 1.
fn upperTile(t: u32) -> vec2<u32> {
  var x = 0u;
  for (var c = 1u; c < WINDOW_ROWS / TILE_COLUMNS; c++) { if (c * (c + 1u) <= t) { x = c; } }
  return vec2<u32>(x, t - x * (x + 1u));
}

// Where the view keeps K's entry (i, k), i <= k.
fn blockedIndex(i: u32, k: u32, nb: u32, lower: bool) -> u32 {
  if (!lower) { return ((i / BLOCK) * nb + k / BLOCK) * BLOCK_FLOATS + (i % BLOCK) * BLOCK + k % BLOCK; }
  if (i == k) { return nb * nb * BLOCK_FLOATS + i; }
  return ((k / BLOCK) * nb + i / BLOCK) * BLOCK_FLOATS + (k % BLOCK) * BLOCK + i % BLOCK;
}

// Rows p*LANES .. p*LANES + LANES - 1 of the tile += the 4 columns of Zc in mine (lane s's) . own.
fn accumulateBlock(acc: ptr<function, Acc>, p: u32, mine: vec4<f32>, own: ptr<function, array<vec4<f32>, OWN>>) {
  for (var s = 0u; s < LANES; s++) {
    let row = subgroupShuffle(mine, s);
    for (var c = 0u; c < OWN; c++) { (*acc)[p * LANES + s][c] += dot(row, (*own)[c]); }
  }
}

// The tile's part from one strip: shared rows il (local to window wa), own rows kl (local to wb).
fn accumulateStrip(acc: ptr<function, Acc>, wa: ptr<uniform, Window>, wb: ptr<uniform, Window>, il: u32, kl: u32, lane: u32) {
  for (var j4 = 0u; j4 < STRIP4; j4++) {
    var own: array<vec4<f32>, OWN>;
    for (var c = 0u; c < OWN; c++) { own[c] = (*wb)[(kl + c * LANES + lane) * STRIP4 + j4]; }
    accumulateBlock(acc, 0u, (*wa)[(il + 0u * LANES + lane) * STRIP4 + j4], &own);
    accumulateBlock(acc, 1u, (*wa)[(il + 1u * LANES + lane) * STRIP4 + j4], &own);
    accumulateBlock(acc, 2u, (*wa)[(il + 2u * LANES + lane) * STRIP4 + j4], &own);
    accumulateBlock(acc, 3u, (*wa)[(il + 3u * LANES + lane) * STRIP4 + j4], &own);
  }
}

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let n = dims.n;
  let t = wid.x;
  var tile: vec2<u32>;   // (column tile, row tile) within the super-tile
  if (dims.a == dims.b) { tile = upperTile(t); } else { tile = vec2<u32>(t / 8u, t % 8u); }
  let il = tile.y * SHARED;
  let kl = tile.x * TILE_COLUMNS;
  let i0 = dims.a * WINDOW_ROWS + il;
  let k0 = dims.b * WINDOW_ROWS + kl;
  let nb = (n + BLOCK - 1u) / BLOCK;
  // Tiles in K's padding (rows or columns from n to 128 nb) run too: the panel's padding rows are zeros,
  // so they write exact zeros there, which the backward then reads past n without a mask.
  let side = nb * BLOCK;
  let first = (dims.flags & 1u) != 0u;
  let last = (dims.flags & 2u) != 0u;
  if (i0 >= side || k0 >= side) {
    if (last) { partials[dims.partialOffset + t * LANES + lane] = 0.0; }
    return;
  }
  let lower = dims.lowerHalf != 0u;

  var acc: Acc;
  if (!first) {
    for (var r = 0u; r < SHARED; r++) {
      for (var c = 0u; c < OWN; c++) {
        let i = i0 + r;
        let k = k0 + c * LANES + lane;
        if (i < side && k < side && i <= k) { acc[r][c] = gram[blockedIndex(i, k, nb, lower)]; }
      }
    }
  }
  let strips = dims.strips;
  if (strips > 0u) { accumulateStrip(&acc, &a0, &b0, il, kl, lane); }
  if (strips > 1u) { accumulateStrip(&acc, &a1, &b1, il, kl, lane); }
  if (strips > 2u) { accumulateStrip(&acc, &a2, &b2, il, kl, lane); }
  if (strips > 3u) { accumulateStrip(&acc, &a3, &b3, il, kl, lane); }
  if (strips > 4u) { accumulateStrip(&acc, &a4, &b4, il, kl, lane); }

  let inv = 1.0 / f32(n - 1u);
  var sumSq = 0.0;
  for (var r = 0u; r < SHARED; r++) {
    let i = i0 + r;   // shared row r = p * LANES + s, as shuffled above
    for (var c = 0u; c < OWN; c++) {
      let k = k0 + c * LANES + lane;
      if (i < side && k < side && i <= k) {
        let value = acc[r][c];
        let scaled = value * inv;
        if (i < n && k < n) { sumSq += select(2.0, 1.0, i == k) * scaled * scaled; }
        gram[blockedIndex(i, k, nb, lower)] = value;
      }
    }
  }
  if (last) { partials[dims.partialOffset + t * LANES + lane] = sumSq; }
}
