// covariance_backward_dual_subgroup.wgsl: as covariance_backward_dual.wgsl (the whole gradient of the loss
// with respect to one view, dual n x n form), for adapters where every storage-buffer load is expensive
// per lane and subgroup shuffles are cheap (lavapipe).
//
// Math (Z the view, O the other view, both n x d; var_j and Zc = (Z - shift) - center from column_stats;
// K = Zc Zc^T from sample_gram*):
//   grad_ij (=, or += when ACCUMULATE) upstream[0] * ( invCoef (Z_ij - O_ij) + varCoef_j Zc_ij
//                                     + covCoef (sum_k K_ik Zc_kj / (n-1) - var_j Zc_ij) )
//   varCoef_j = varWeight / std_j if std_j = sqrt(var_j + eps) < gamma, else 0
//
// Each workgroup is one subgroup of LANES = 8 invocations and owns a SHARED x (LANES * 4 * OWN4) block of
// the gradient: rows i0 .. i0 + SHARED - 1 shared by all lanes, 4 * OWN4 columns per lane. Per 4 steps
// k0 .. k0+3 a lane loads, for each of its SHARED / LANES shared rows, K_ik over those 4 k, and OWN4
// vec4s of each of rows k0 .. k0+3 of Zc; the shared values reach the other lanes by subgroupShuffle.
// One dispatch covers one column group (params.columnStart, the dispatch's width); where params.panels,
// Zc comes from the group's panels (centered_panels.wgsl, run just before: each workgroup's 64-column
// strip is contiguous there, where in Z it is one 256-byte piece per row, and per page from d = 1024),
// else from Z itself, centered here. Both give the same values, so the same gradient bit for bit.
// Why this shape (lavapipe, Mesa 25.0, read from its generated code with GALLIVM_DEBUG=asm): every write to
// a variable carried across loop iterations is a blend with the execution mask plus a spill, so each
// accumulator takes 4 multiply-adds per write (4 steps along the contraction at a time); and the
// SHARED_PER_LANE blocks are spelled out as calls of accumulateBlock, so that every accumulator index is a
// constant (Mesa leaves a loop that big rolled, and a dynamically indexed accumulator ran 2.6-2.9x slower; see
// README, Performance).
//
// Bindings (group 0):
//   0  z4      storage, read        array<vec4<f32>>  n*d/4 this view
//   1  other4  storage, read        array<vec4<f32>>  n*d/4 the other view
//   2  stats   storage, read        array<f32>        column_stats layout
//   3  gram    storage, read        array<f32>        n*n+n both views' K, packed (packedIndex; params.packing
//                                                     1: view A, 2: view B)
//   4  grad4   storage, read_write  array<vec4<f32>>  n*d/4
//   5  params  uniform              BackwardParams (as covariance_backward.wgsl)
//   6  upstream storage, read       array<f32>        1: the upstream gradient
//   7  panel4  storage, read        array<vec4<f32>>  n*width/4 where params.panels (else any small buffer):
//                                                     Zc's strip q at (q n + k) 16 .. + 15 (centered_panels.wgsl)
// Dispatch: (ceil(n / SHARED), width / (LANES*4*OWN4), 1) workgroups of LANES threads per column group of
// `width` columns (kernels.ts columnGroups): row blocks along x, so that consecutive workgroups (an
// adapter runs x fastest) share one strip of Zc while they stream K's rows; at d = 8192 the other order
// re-read Z from memory for every workgroup (1.6x slower). Strips wholly past d return at once.
// Requires: d % 4 == 0; the 'subgroups' feature with a subgroup size of exactly LANES.
// Variant: "subgroup" (lavapipe).

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
const STRIP4: u32 = LANES * OWN4;   // vec4s per 64-column strip (centered_panels.wgsl's STRIP4)

@group(0) @binding(0) var<storage, read> z4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> other4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read> gram: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad4: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> params: BackwardParams;
@group(0) @binding(6) var<storage, read> upstream: array<f32>;
@group(0) @binding(7) var<storage, read> panel4: array<vec4<f32>>;

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

// K_row,k0 .. K_row,k0+3 (0 past n).
fn gramRow4(row: u32, k0: u32, n: u32, lower: bool) -> vec4<f32> {
  var v: vec4<f32>;
  for (var q = 0u; q < 4u; q++) {
    let k = min(k0 + q, n - 1u);
    v[q] = select(0.0, gram[packedIndex(min(row, k), max(row, k), n, lower)], k0 + q < n);
  }
  return v;
}

// Rows p*LANES .. p*LANES + LANES - 1 of the block += K(those rows, k0 .. k0+3) Zc(k0 .. k0+3, own columns).
fn accumulateBlock(acc: ptr<function, array<array<vec4<f32>, OWN4>, SHARED>>, p: u32, mine: vec4<f32>,
                   zc: ptr<function, array<array<vec4<f32>, OWN4>, 4>>) {
  for (var s = 0u; s < LANES; s++) {
    let kv = subgroupShuffle(mine, s);
    for (var c = 0u; c < OWN4; c++) {
      (*acc)[p * LANES + s][c] += kv.x * (*zc)[0][c] + kv.y * (*zc)[1][c] + kv.z * (*zc)[2][c] + kv.w * (*zc)[3][c];
    }
  }
}

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let n = params.n;
  let d4 = params.d / 4u;
  let i0 = wid.x * SHARED;
  let j40 = params.columnStart / 4u + wid.y * STRIP4;   // this workgroup's first column, as a vec4 index
  if (j40 >= d4) { return; }                             // a strip of the last group wholly past d
  let panels = params.panels != 0u;
  let strip = wid.y * n;                                 // its strip's first row in the panel

  let lower = params.packing == 2u;
  var sharedRow: array<u32, SHARED_PER_LANE>;
  for (var p = 0u; p < SHARED_PER_LANE; p++) { sharedRow[p] = min(i0 + p * LANES + lane, n - 1u); }
  var own4: array<u32, OWN4>;
  var ownShift: array<vec4<f32>, OWN4>;
  var ownCenter: array<vec4<f32>, OWN4>;
  for (var c = 0u; c < OWN4; c++) {
    own4[c] = min(j40 + c * LANES + lane, d4 - 1u);
    ownShift[c] = statsVec4(params.shiftOffset, 4u * own4[c]);
    ownCenter[c] = statsVec4(params.centerOffset, 4u * own4[c]);
  }

  var acc: array<array<vec4<f32>, OWN4>, SHARED>;
  for (var k0 = 0u; k0 < n; k0 += 4u) {
    var zc: array<array<vec4<f32>, OWN4>, 4>;
    if (panels) {
      for (var q = 0u; q < 4u; q++) {
        let k = min(k0 + q, n - 1u);
        for (var c = 0u; c < OWN4; c++) { zc[q][c] = panel4[(strip + k) * STRIP4 + c * LANES + lane]; }
      }
    } else {
      for (var q = 0u; q < 4u; q++) {
        let k = min(k0 + q, n - 1u);
        for (var c = 0u; c < OWN4; c++) { zc[q][c] = (z4[k * d4 + own4[c]] - ownShift[c]) - ownCenter[c]; }
      }
    }
    accumulateBlock(&acc, 0u, gramRow4(sharedRow[0], k0, n, lower), &zc);
    accumulateBlock(&acc, 1u, gramRow4(sharedRow[1], k0, n, lower), &zc);
    accumulateBlock(&acc, 2u, gramRow4(sharedRow[2], k0, n, lower), &zc);
    accumulateBlock(&acc, 3u, gramRow4(sharedRow[3], k0, n, lower), &zc);
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
