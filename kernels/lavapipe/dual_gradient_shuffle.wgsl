// lavapipe/dual_gradient_shuffle.wgsl: as tiled/dual_gradient.wgsl (the whole gradient of the loss
// with respect to one view, dual n x n form), for adapters where every storage-buffer load is expensive
// per lane and subgroup shuffles are cheap (lavapipe).
//
// Math (Z the view, O the other view, both n x d; var_j and Zc = (Z - shift) - center from column_stats;
// K = Zc Zc^T from tiled/dual_gram*):
//   grad_ij (=, or += when ACCUMULATE) upstream[0] * ( invCoef (Z_ij - O_ij) + varCoef_j Zc_ij
//                                     + covCoef (sum_k K_ik Zc_kj / (n-1) - var_j Zc_ij) )
//   varCoef_j = varWeight / std_j if std_j = sqrt(var_j + eps) < gamma, else 0
//
// Each workgroup is one subgroup of LANES = 8 invocations and owns a SHARED x (LANES * 4 * OWN4) block of
// the gradient: rows i0 .. i0 + SHARED - 1 shared by all lanes, 4 * OWN4 columns per lane. Per 4 steps
// k0 .. k0+3 a lane loads, for its SHARED / LANES = 4 shared rows i0 + 4 lane + m, K_ik over those 4 k,
// and OWN4 vec4s of each of rows k0 .. k0+3 of Zc; the shared values reach the other lanes by
// subgroupShuffle. Where n % 4 == 0, K comes in vec4s: left and right of the block's own 32 columns
// all its rows are on one side of the diagonal, so the packed buffer holds them either by rows (one vec4
// per row and 4 k) or by columns (one vec4 per k and the lane's 4 rows); inside that band, and for any
// n % 4 != 0, entry by entry (16 scalar loads where the vec4 sides take 4).
// One dispatch covers one column group (params.columnStart, the dispatch's width); where params.panels,
// Zc comes from the group's panels (lavapipe/centered_panels.wgsl, run just before: each workgroup's 64-column
// strip is contiguous there, where in Z it is one 256-byte piece per row, and per page from d = 1024),
// else from Z itself, centered here. Both give the same values, so the same gradient bit for bit.
// Why this shape (lavapipe, Mesa 25.0, read from its generated code with GALLIVM_DEBUG=asm): every write to
// a variable carried across loop iterations is a blend with the execution mask plus a spill, so each
// accumulator takes 4 multiply-adds per write (4 steps along the contraction at a time); and the
// SHARED_PER_LANE blocks are spelled out as calls of accumulateBlock, so that every accumulator index is a
// constant (Mesa leaves a loop that big rolled, and then indexes the accumulators lane by lane through the
// stack; docs/lavapipe.md, "shuffle").
//
// Bindings (group 0):
//   0  z4      storage, read        array<vec4<f32>>  n*d/4 this view
//   1  other4  storage, read        array<vec4<f32>>  n*d/4 the other view
//   2  stats   storage, read        array<f32>        column_stats layout
//   3  gram    storage, read        array<f32>        n*n+n both views' K, packed (packedIndex; params.packing
//                                                     1: view A, 2: view B)
//   4  grad4   storage, read_write  array<vec4<f32>>  n*d/4
//   5  params  uniform              BackwardParams (as tiled/primal_gradient.wgsl)
//   6  upstream storage, read       array<f32>        1: the upstream gradient
//   7  panel4  storage, read        array<vec4<f32>>  n*width/4 where params.panels (else any small buffer):
//                                                     Zc's strip q at (q n + k) 16 .. + 15 (lavapipe/centered_panels.wgsl)
//   8  gram4   storage, read        array<vec4<f32>>  the buffer of binding 3 again, as vec4s (read where n % 4 == 0)
// Dispatch: (ceil(n / SHARED), width / (LANES*4*OWN4), 1) workgroups of LANES threads per column group of
// `width` columns (src/variants/lavapipe/shuffle.ts columnGroups): row blocks along x, so that consecutive
// workgroups (an adapter runs x fastest) share one strip of Zc while they stream K's rows; the other
// order re-reads Z from memory for every workgroup. Strips wholly past d return at once.
// Requires: d % 4 == 0; the 'subgroups' feature with a subgroup size of exactly LANES.
// Variant: "shuffle" (lavapipe: subgroups of exactly 8).

enable subgroups;

struct BackwardParams {
  n: u32, d: u32, shiftOffset: u32, centerOffset: u32,
  varOffset: u32, columnStart: u32, matrixStride: u32, packing: u32,
  invCoef: f32, varWeight: f32, covCoef: f32, gamma: f32,
  eps: f32, panels: u32, _pad4: f32, _pad5: f32,
}

override ACCUMULATE: bool = false;
const LANES: u32 = 8u;
const SHARED_PER_LANE: u32 = 4u;
const SHARED: u32 = LANES * SHARED_PER_LANE;
const_assert SHARED_PER_LANE == 4u;   // the accumulateBlock calls below are spelled out for 4 blocks
const OWN4: u32 = 2u;
const STRIP4: u32 = LANES * OWN4;   // vec4s per 64-column strip (lavapipe/centered_panels.wgsl's STRIP4)

@group(0) @binding(0) var<storage, read> z4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> other4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read> gram: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad4: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> params: BackwardParams;
@group(0) @binding(6) var<storage, read> upstream: array<f32>;
@group(0) @binding(7) var<storage, read> panel4: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> gram4: array<vec4<f32>>;

fn statsVec4(offset: u32, column: u32) -> vec4<f32> {
  let o = offset + column;
  return vec4<f32>(stats[o], stats[o + 1u], stats[o + 2u], stats[o + 3u]);
}

// The packed layout of the matrix buffer, shared by both views (side s): view A's symmetric matrix on
// and above the diagonal, entry (i, k), i <= k, at i*s + k; view B's strictly below it, at k*s + i; B's
// diagonal after the s x s square, at s*s + i (as the Gram kernels write it).
fn packedIndex(i: u32, k: u32, s: u32, lowerHalf: bool) -> u32 {
  if (!lowerHalf) { return i * s + k; }
  return select(k * s + i, s * s + i, i == k);
}

// K_row,k0 .. K_row,k0+3 (0 past n), entry by entry.
fn gramRow4(row: u32, k0: u32, n: u32, lower: bool) -> vec4<f32> {
  var v: vec4<f32>;
  for (var q = 0u; q < 4u; q++) {
    let k = min(k0 + q, n - 1u);
    v[q] = select(0.0, gram[packedIndex(min(row, k), max(row, k), n, lower)], k0 + q < n);
  }
  return v;
}

// This lane's rows i0 + 4 lane + m (m = 0 .. 3), K over k0 .. k0+3, as the vec4 loads of the two
// halves allow (n % 4 == 0): where the packed buffer holds entry (row, k) at row*n + k ("by rows": view
// A right of the diagonal, view B left of it), one vec4 per row; where it holds it at k*n + row ("by
// columns": the other halves), one vec4 per k over the lane's 4 rows, transposed here.
fn gramRowsByRows(rows: ptr<function, array<u32, SHARED_PER_LANE>>, k0: u32, n4: u32) -> array<vec4<f32>, 4> {
  return array<vec4<f32>, 4>(gram4[(*rows)[0] * n4 + k0 / 4u], gram4[(*rows)[1] * n4 + k0 / 4u],
                             gram4[(*rows)[2] * n4 + k0 / 4u], gram4[(*rows)[3] * n4 + k0 / 4u]);
}
fn gramRowsByColumns(firstRow4: u32, k0: u32, n4: u32) -> array<vec4<f32>, 4> {
  let c0 = gram4[k0 * n4 + firstRow4];
  let c1 = gram4[(k0 + 1u) * n4 + firstRow4];
  let c2 = gram4[(k0 + 2u) * n4 + firstRow4];
  let c3 = gram4[(k0 + 3u) * n4 + firstRow4];
  return array<vec4<f32>, 4>(vec4<f32>(c0.x, c1.x, c2.x, c3.x), vec4<f32>(c0.y, c1.y, c2.y, c3.y),
                             vec4<f32>(c0.z, c1.z, c2.z, c3.z), vec4<f32>(c0.w, c1.w, c2.w, c3.w));
}

// Rows 4 s + m of the block (s = each lane) += K(those rows, k0 .. k0+3) Zc(k0 .. k0+3, own columns).
fn accumulateBlock(acc: ptr<function, array<array<vec4<f32>, OWN4>, SHARED>>, m: u32, mine: vec4<f32>,
                   zc: ptr<function, array<array<vec4<f32>, OWN4>, 4>>) {
  for (var s = 0u; s < LANES; s++) {
    let kv = subgroupShuffle(mine, s);
    for (var c = 0u; c < OWN4; c++) {
      (*acc)[SHARED_PER_LANE * s + m][c] += kv.x * (*zc)[0][c] + kv.y * (*zc)[1][c] + kv.z * (*zc)[2][c] + kv.w * (*zc)[3][c];
    }
  }
}

// Zc(k0 .. k0+3, this lane's own columns): from the panel, or from Z centered here (the same values).
var<private> panels: bool;
var<private> panelRow0: u32;
var<private> own4: array<u32, OWN4>;
var<private> ownShift: array<vec4<f32>, OWN4>;
var<private> ownCenter: array<vec4<f32>, OWN4>;
fn zcRows(k0: u32, n: u32, d4: u32, lane: u32) -> array<array<vec4<f32>, OWN4>, 4> {
  var zc: array<array<vec4<f32>, OWN4>, 4>;
  if (panels) {
    for (var q = 0u; q < 4u; q++) {
      let k = min(k0 + q, n - 1u);
      for (var c = 0u; c < OWN4; c++) { zc[q][c] = panel4[(panelRow0 + k) * STRIP4 + c * LANES + lane]; }
    }
  } else {
    for (var q = 0u; q < 4u; q++) {
      let k = min(k0 + q, n - 1u);
      for (var c = 0u; c < OWN4; c++) { zc[q][c] = (z4[k * d4 + own4[c]] - ownShift[c]) - ownCenter[c]; }
    }
  }
  return zc;
}

fn accumulateStep(acc: ptr<function, array<array<vec4<f32>, OWN4>, SHARED>>, kv: array<vec4<f32>, 4>,
                  k0: u32, n: u32, d4: u32, lane: u32) {
  var zc = zcRows(k0, n, d4, lane);
  accumulateBlock(acc, 0u, kv[0], &zc);
  accumulateBlock(acc, 1u, kv[1], &zc);
  accumulateBlock(acc, 2u, kv[2], &zc);
  accumulateBlock(acc, 3u, kv[3], &zc);
}

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let n = params.n;
  let d4 = params.d / 4u;
  let i0 = wid.x * SHARED;
  let j40 = params.columnStart / 4u + wid.y * STRIP4;   // this workgroup's first column, as a vec4 index
  if (j40 >= d4) { return; }                             // a strip of the last group wholly past d
  panels = params.panels != 0u;
  panelRow0 = wid.y * n;                                 // its strip's first row in the panel

  let lower = params.packing == 2u;
  var myRows: array<u32, SHARED_PER_LANE>;
  for (var m = 0u; m < SHARED_PER_LANE; m++) { myRows[m] = min(i0 + SHARED_PER_LANE * lane + m, n - 1u); }
  for (var c = 0u; c < OWN4; c++) {
    own4[c] = min(j40 + c * LANES + lane, d4 - 1u);
    ownShift[c] = statsVec4(params.shiftOffset, 4u * own4[c]);
    ownCenter[c] = statsVec4(params.centerOffset, 4u * own4[c]);
  }

  // k left of the block, through the block, right of it. Left and right use vec4 loads where n % 4 == 0
  // (the block's rows are then all on one side of the diagonal); the block itself, and everything when
  // n % 4 != 0, goes entry by entry. Rows past n read other rows' entries (in bounds) and are not written.
  var acc: array<array<vec4<f32>, OWN4>, SHARED>;
  let n4 = n / 4u;
  let byVec4 = n % 4u == 0u;
  let blockStart = select(0u, i0, byVec4);
  let blockEnd = select(n, min(i0 + SHARED, n), byVec4);
  // The half a view's packed matrix holds decides which side reads by rows; one loop per case, so that
  // no branch runs per step.
  let firstRow4 = i0 / 4u + lane;
  if (lower) {
    for (var k0 = 0u; k0 < blockStart; k0 += 4u) { accumulateStep(&acc, gramRowsByRows(&myRows, k0, n4), k0, n, d4, lane); }
  } else {
    for (var k0 = 0u; k0 < blockStart; k0 += 4u) { accumulateStep(&acc, gramRowsByColumns(firstRow4, k0, n4), k0, n, d4, lane); }
  }
  for (var k0 = blockStart; k0 < blockEnd; k0 += 4u) {
    let kv = array<vec4<f32>, 4>(gramRow4(myRows[0], k0, n, lower), gramRow4(myRows[1], k0, n, lower),
                                 gramRow4(myRows[2], k0, n, lower), gramRow4(myRows[3], k0, n, lower));
    accumulateStep(&acc, kv, k0, n, d4, lane);
  }
  if (lower) {
    for (var k0 = blockEnd; k0 < n; k0 += 4u) { accumulateStep(&acc, gramRowsByColumns(firstRow4, k0, n4), k0, n, d4, lane); }
  } else {
    for (var k0 = blockEnd; k0 < n; k0 += 4u) { accumulateStep(&acc, gramRowsByRows(&myRows, k0, n4), k0, n, d4, lane); }
  }

  let scale = upstream[0];
  let inv = 1.0 / f32(n - 1u);
  for (var c = 0u; c < OWN4; c++) {
    let j4 = j40 + c * LANES + lane;
    if (j4 >= d4) { continue; }
    let variance = statsVec4(params.varOffset, 4u * j4);
    let stdDev = sqrt(variance + vec4<f32>(params.eps));
    let varCoef = select(vec4<f32>(0.0), vec4<f32>(params.varWeight) / stdDev, stdDev < vec4<f32>(params.gamma));
    for (var r = 0u; r < SHARED; r++) {
      let i = i0 + r;
      if (i >= n) { continue; }
      let index = i * d4 + j4;
      let x = z4[index];
      let zci = (x - ownShift[c]) - ownCenter[c];
      let covGrad = acc[r][c] * inv - variance * zci;
      let g = params.invCoef * (x - other4[index]) + varCoef * zci + params.covCoef * covGrad;
      if (ACCUMULATE) { grad4[index] += scale * g; } else { grad4[index] = scale * g; }
    }
  }
}
