// lavapipe/dual_gradient_windows.wgsl: as tiled/dual_gradient.wgsl (the whole gradient of the loss
// with respect to one view, dual n x n form), for adapters where a storage-buffer load costs a branch per
// lane but a uniform-buffer load and a storage-texture load do not (lavapipe).
//
// Math (Z the view, O the other view, both n x d; var_j and Zc = (Z - shift) - center from column_stats;
// K = Zc Zc^T from lavapipe/dual_gram_windows.wgsl, in 128 x 128 blocks):
//   grad_ij (=, or += when not the first pass or ACCUMULATE) upstream[0] * ( invCoef (Z_ij - O_ij)
//       + varCoef_j Zc_ij + covCoef (sum_k K_ik Zc_kj / (n-1) - var_j Zc_ij) )
//   varCoef_j = varWeight / std_j if std_j = sqrt(var_j + eps) < gamma, else 0
// One dispatch covers one block row P of the gradient (rows 128 P .. 128 P + 127), one column group (the
// panel texture's strips) and up to WINDOWS blocks of columns of K (block.blocks): the host runs, per
// block row, all of K's blocks, block P itself first, then those the view keeps by rows,
// then those it keeps by columns (flags bit 8 + w: window w is read by columns), WINDOWS at a time; so
// up to 1024 rows a block row is one dispatch, and each gradient element is written once. The first
// dispatch of a block row writes the invariance, variance and -var Zc terms with its part of the sum; the
// later ones (n > 1024) add their part. Each
// workgroup is one subgroup of LANES = 8 and owns 32 rows x 64 columns (lane: 8 columns as 2 vec4s; rows
// 4 lane + m hold its K values, passed to the other lanes by subgroupShuffle), as
// lavapipe/dual_gradient_shuffle.wgsl.
// Why windows (Mesa 25.0, read from lp_bld_nir_soa.c and GALLIVM_DEBUG=asm): a storage-buffer load becomes,
// per lane, a branch on the execution mask, a bounds check and a second branch; a uniform-buffer load is
// a branch-free gather, and a storage-texture load a call without per-lane branches. With no storage load
// in the loop, LLVM keeps the loop one basic block, free of per-lane branches (docs/lavapipe.md,
// "windows"). A uniform binding holds 64 KiB, one 128 x 128 block of K: hence the dispatch per block row
// and chunk.
// K's blocks (src/variants/lavapipe/windows.ts blockedMatrixFloats): block (r, c) at (r nb + c) 16384
// floats, nb = ceil(n/128); view A's entry (i, k) at (row % 128) 128 + col % 128 of block (row/128,
// col/128) with (row, col) = (min(i,k), max(i,k)), view B's with (max, min): so view A keeps block (P, Q) by rows where P < Q and by
// columns (as block (Q, P)) where P > Q, view B the other way. The diagonal blocks are kept whole, view A's
// at (P, P) and view B's after the others, at (nb^2 + P) 16384, so block P itself is read by rows too,
// as any other block, with no read both ways at once and no correction for B's diagonal.
//
// Bindings (group 0):
//   0  z4        storage, read        array<vec4<f32>>  n*d/4 this view
//   1  other4    storage, read        array<vec4<f32>>  n*d/4 the other view
//   2  stats     storage, read        array<f32>        column_stats layout
//   3  grad4     storage, read_write  array<vec4<f32>>  n*d/4
//   4  params    uniform              BackwardParams (as tiled/primal_gradient.wgsl; columnStart: the group's)
//   5  upstream  storage, read        array<f32>        1: the upstream gradient
//   6  panel     texture_storage_2d_array<rgba32float, read>  16 x n x strips: the group's columns,
//                strip q in layer q, columns 4x .. 4x+3 of the strip at (x, row): Zc (lavapipe/centered_panels.wgsl,
//                then copyBufferToTexture), or with RAW_PANEL Z itself (copyBufferToTexture from the view,
//                one copy per strip), centered here as loaded with the same two subtractions, so the
//                gradient is bitwise the same either way
//   7  block     uniform              BlockParams
//   8 .. 15 k0 .. k7  uniform         array<vec4<f32>, 4096>  K's block for (P, blocks[w]), where the view
//                keeps it (any block where w >= blockCount)
// Dispatch: (4, strips, 1) workgroups of LANES threads: x the 32-row block within P, y the strip. Row
// blocks past n and strips past d return at once.
// Rows of the texture past n (read by the last step when n % 4 != 0) are out of bounds: WGSL then gives
// some texel's value (finite: the inputs were checked) or zero, and K's entries there are zeros, so they
// add nothing.
// Requires: d % 4 == 0 (RAW_PANEL: d % 64 == 0, the copy's bytesPerRow); the 'subgroups' feature with a subgroup size of exactly LANES; read-only
// storage textures (the readonly_and_readwrite_storage_textures language feature); pointer parameters
// in the uniform address space (unrestricted_pointer_parameters).
// Variant: "windows" (lavapipe); RAW_PANEL where the view can be copied (COPY_SRC usage, d % 64 == 0),
// which spares the pack pass over the view.

enable subgroups;
requires readonly_and_readwrite_storage_textures;
requires unrestricted_pointer_parameters;

struct BackwardParams {
  n: u32, d: u32, shiftOffset: u32, centerOffset: u32,
  varOffset: u32, columnStart: u32, matrixStride: u32, packing: u32,
  invCoef: f32, varWeight: f32, covCoef: f32, gamma: f32,
  eps: f32, panels: u32, _pad4: f32, _pad5: f32,
}

// blockRow: P; blockCount: windows bound (at most WINDOWS); flags: bit 0 the first dispatch of this block
// row (writes), bit 8 + w window w holds the view's block by columns (the host picks the view's blocks);
// blocks: the block of
// columns (k / 128) of each window.
struct BlockParams { blockRow: u32, blockCount: u32, flags: u32, _pad0: u32, blocks: array<vec4<u32>, 2> }

override ACCUMULATE: bool = false;
override RAW_PANEL: bool = false;   // the texture holds Z, not Zc (see panel above)
const LANES: u32 = 8u;
const SHARED: u32 = 32u;
const OWN4: u32 = 2u;
const BLOCK: u32 = 128u;
const BLOCK_FLOATS: u32 = BLOCK * BLOCK;
const BLOCK4: u32 = BLOCK / 4u;
const WINDOWS: u32 = 8u;
alias Window = array<vec4<f32>, 4096>;
alias Acc = array<array<vec4<f32>, OWN4>, SHARED>;
alias ZcRows = array<array<vec4<f32>, OWN4>, 4>;
const_assert BLOCK_FLOATS == 4u * 4096u;

@group(0) @binding(0) var<storage, read> z4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> other4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad4: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> params: BackwardParams;
@group(0) @binding(5) var<storage, read> upstream: array<f32>;
@group(0) @binding(6) var panel: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(7) var<uniform> block: BlockParams;
@group(0) @binding(8) var<uniform> k0: Window;
@group(0) @binding(9) var<uniform> k1: Window;
@group(0) @binding(10) var<uniform> k2: Window;
@group(0) @binding(11) var<uniform> k3: Window;
@group(0) @binding(12) var<uniform> k4: Window;
@group(0) @binding(13) var<uniform> k5: Window;
@group(0) @binding(14) var<uniform> k6: Window;
@group(0) @binding(15) var<uniform> k7: Window;

fn statsVec4(offset: u32, column: u32) -> vec4<f32> {
  let o = offset + column;
  return vec4<f32>(stats[o], stats[o + 1u], stats[o + 2u], stats[o + 3u]);
}

// K over this lane's rows (local i0l + m, m = 0 .. 3) and the window's columns kl .. kl+3, as vec4s of the
// 4 columns (a uniform load gathers each component apart, so a vec4 costs four scalars, but one address).
// By rows: the window holds the entries at (row, column); by columns: at (column, row).
fn byRows(win: ptr<uniform, Window>, i0l: u32, kl: u32) -> array<vec4<f32>, 4> {
  return array<vec4<f32>, 4>((*win)[(i0l + 0u) * BLOCK4 + kl / 4u], (*win)[(i0l + 1u) * BLOCK4 + kl / 4u],
                             (*win)[(i0l + 2u) * BLOCK4 + kl / 4u], (*win)[(i0l + 3u) * BLOCK4 + kl / 4u]);
}
fn byColumns(win: ptr<uniform, Window>, i0l: u32, kl: u32) -> array<vec4<f32>, 4> {
  let c0 = (*win)[(kl + 0u) * BLOCK4 + i0l / 4u];
  let c1 = (*win)[(kl + 1u) * BLOCK4 + i0l / 4u];
  let c2 = (*win)[(kl + 2u) * BLOCK4 + i0l / 4u];
  let c3 = (*win)[(kl + 3u) * BLOCK4 + i0l / 4u];
  return array<vec4<f32>, 4>(vec4<f32>(c0.x, c1.x, c2.x, c3.x), vec4<f32>(c0.y, c1.y, c2.y, c3.y),
                             vec4<f32>(c0.z, c1.z, c2.z, c3.z), vec4<f32>(c0.w, c1.w, c2.w, c3.w));
}
// Rows 4 s + m of the block (s = each lane) += K(those rows, k .. k+3) Zc(k .. k+3, own columns).
fn accumulateBlock(acc: ptr<function, Acc>, m: u32, mine: vec4<f32>, zc: ptr<function, ZcRows>) {
  for (var s = 0u; s < LANES; s++) {
    let kv = subgroupShuffle(mine, s);
    for (var c = 0u; c < OWN4; c++) {
      (*acc)[4u * s + m][c] += kv.x * (*zc)[0][c] + kv.y * (*zc)[1][c] + kv.z * (*zc)[2][c] + kv.w * (*zc)[3][c];
    }
  }
}

// K over this lane's rows and the 4 columns kl .. kl+3 of window w, read as the window holds them:
// by rows, or by columns (`columns`).
fn windowK(w: u32, i0l: u32, kl: u32, columns: bool) -> array<vec4<f32>, 4> {
  switch (w) {
    case 0u: { return gatherK(&k0, i0l, kl, columns); }
    case 1u: { return gatherK(&k1, i0l, kl, columns); }
    case 2u: { return gatherK(&k2, i0l, kl, columns); }
    case 3u: { return gatherK(&k3, i0l, kl, columns); }
    case 4u: { return gatherK(&k4, i0l, kl, columns); }
    case 5u: { return gatherK(&k5, i0l, kl, columns); }
    case 6u: { return gatherK(&k6, i0l, kl, columns); }
    default: { return gatherK(&k7, i0l, kl, columns); }
  }
}
fn gatherK(win: ptr<uniform, Window>, i0l: u32, kl: u32, columns: bool) -> array<vec4<f32>, 4> {
  if (columns) { return byColumns(win, i0l, kl); }
  return byRows(win, i0l, kl);
}

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let n = params.n;
  let d4 = params.d / 4u;
  let i0 = block.blockRow * BLOCK + wid.x * SHARED;
  let j40 = params.columnStart / 4u + wid.y * (LANES * OWN4);
  if (i0 >= n || j40 >= d4) { return; }
  let strip = wid.y;
  let i0l = wid.x * SHARED + 4u * lane;         // this lane's K rows i0 + 4 lane + m, within the block row
  // Up to n rounded to 4: K's padding entries are zeros (lavapipe/dual_gram_windows), so the last partial step
  // adds nothing (the texture's rows past n: see the header).
  let kMax = (n + 3u) / 4u * 4u;
  // RAW_PANEL: this lane's columns' shift and center, to center the texture's Z as it is loaded.
  var laneShift: array<vec4<f32>, OWN4>;
  var laneCenter: array<vec4<f32>, OWN4>;
  if (RAW_PANEL) {
    for (var c = 0u; c < OWN4; c++) {
      let j = 4u * (j40 + c * LANES + lane);
      laneShift[c] = statsVec4(params.shiftOffset, j);
      laneCenter[c] = statsVec4(params.centerOffset, j);
    }
  }
  let count = block.blockCount;
  var acc: Acc;
  // One loop over every window's columns, the window picked per step by a switch: the loop's body (the
  // multiply-adds, 2048 per lane and step) exists once. A loop per window would repeat it 8 times, and
  // lavapipe's LLVM then compiles the kernel for tens of seconds; the switch costs a few branches per step.
  for (var w = 0u; w < count; w++) {
    let kb = block.blocks[w / 4u][w % 4u] * BLOCK;
    let columns = ((block.flags >> (8u + w)) & 1u) != 0u;
    for (var k = kb; k < min(kb + BLOCK, kMax); k += 4u) {
      let kv = windowK(w, i0l, k - kb, columns);
      var zc: ZcRows;
      for (var q = 0u; q < 4u; q++) {
        for (var c = 0u; c < OWN4; c++) {
          let texel = textureLoad(panel, vec2<u32>(c * LANES + lane, k + q), strip);
          if (RAW_PANEL) { zc[q][c] = (texel - laneShift[c]) - laneCenter[c]; } else { zc[q][c] = texel; }
        }
      }
      accumulateBlock(&acc, 0u, kv[0], &zc);
      accumulateBlock(&acc, 1u, kv[1], &zc);
      accumulateBlock(&acc, 2u, kv[2], &zc);
      accumulateBlock(&acc, 3u, kv[3], &zc);
    }
  }

  let scale = upstream[0];
  let inv = 1.0 / f32(n - 1u);
  let first = (block.flags & 1u) != 0u;
  for (var c = 0u; c < OWN4; c++) {
    let j4 = j40 + c * LANES + lane;
    if (j4 >= d4) { continue; }
    let shift = statsVec4(params.shiftOffset, 4u * j4);
    let center = statsVec4(params.centerOffset, 4u * j4);
    let variance = statsVec4(params.varOffset, 4u * j4);
    let stdDev = sqrt(variance + vec4<f32>(params.eps));
    let varCoef = select(vec4<f32>(0.0), vec4<f32>(params.varWeight) / stdDev, stdDev < vec4<f32>(params.gamma));
    for (var r = 0u; r < SHARED; r++) {
      let i = i0 + r;
      if (i >= n) { continue; }
      let index = i * d4 + j4;
      let sum = acc[r][c];
      if (first) {
        var x: vec4<f32>;
        // The texture's load is branch-free on lavapipe, a storage load is not (the header).
        if (RAW_PANEL) { x = textureLoad(panel, vec2<u32>(c * LANES + lane, i), strip); } else { x = z4[index]; }
        let zci = (x - shift) - center;
        let g = params.invCoef * (x - other4[index]) + varCoef * zci + params.covCoef * (sum * inv - variance * zci);
        if (ACCUMULATE) { grad4[index] += scale * g; } else { grad4[index] = scale * g; }
        continue;
      }
      grad4[index] += scale * (params.covCoef * inv) * sum;
    }
  }
}
