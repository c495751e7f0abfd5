// lavapipe/primal_gradient_mirrored_shuffle.wgsl: the second pass of the primal gradient on a packed matrix:
// adds the part of Zc Coff that lavapipe/primal_gradient_shuffle.wgsl cannot read by rows.
//
// The packed buffer (the Gram kernels' packedIndex) holds each view's symmetric Coff once: view A's
// entry (j, k), j <= k, in row j; view B's entry (j, k), j < k, in row k. Row k of the buffer therefore
// holds only part of row k of a view's Coff, and the first pass sums that part (view A: Coff_kj for
// k <= j; view B: k > j). The rest, Coff_kj = Coff_jk, lies in row j of the buffer, along k (view A:
// k > j; view B: k < j), so this pass contracts row j of the buffer with row i of Zc, both along k:
//
// Math (Z the view, n x d; Zc = (Z - shift) - center from column_stats; S_jk the buffer's row j with the
// mask above, S_jk = Coff_kj where kept, 0 elsewhere):
//   grad_ij += upstream[0] * covCoef * sum_k Zc_ik S_jk             (covCoef = 4 nu / (d (n-1)))
//   It always adds: it runs after the first pass, which wrote (or, with ACCUMULATE, added) the rest.
//
// Each workgroup is one subgroup of LANES = 8 invocations and owns a SHARED x (LANES * OWN) block of the
// gradient: rows i0 .. i0 + SHARED - 1 shared by all lanes, OWN columns j per lane (j0 + c*LANES +
// lane). The contraction runs along k, 4 at a time (vec4 loads). Per step a lane loads SHARED / LANES
// vec4s of Zc's shared rows and OWN vec4s of the buffer's rows j; the shared ones reach the other lanes
// by subgroupShuffle (shift and center too: one load per lane). Only the k range that can be kept for
// the workgroup's columns is visited.
// Why this shape (lavapipe, Mesa 25.0, read from its generated code with GALLIVM_DEBUG=asm): every write to
// a variable carried across loop iterations is a blend with the execution mask plus a spill, so each
// accumulator takes 4 multiply-adds per write (a dot product of vec4s); and the
// SHARED_PER_LANE blocks are spelled out as calls of accumulateBlock, so that every accumulator index is a
// constant (Mesa leaves a loop that big rolled, and then indexes the accumulators lane by lane through the
// stack; docs/lavapipe.md, "shuffle").
//
// Bindings (group 0):
//   0  z4          storage, read        array<vec4<f32>>  n*d/4 this view
//   1  stats       storage, read        array<f32>        column_stats layout
//   2  covOffDiag4 storage, read        array<vec4<f32>>  (d*d+d)/4 both views' Coff, packed
//   3  grad        storage, read_write  array<f32>        n*d
//   4  params      uniform              BackwardParams (as tiled/primal_gradient.wgsl; packing 1 view A,
//                                       2 view B; columnStart, matrixStride unused)
//   5  upstream    storage, read        array<f32>        1: the upstream gradient
// Dispatch: (ceil(d / (LANES*OWN)), ceil(n / SHARED), 1) workgroups of LANES threads.
// Requires: d % 4 == 0; the 'subgroups' feature with a subgroup size of exactly LANES.
// Variant: "shuffle" (lavapipe: subgroups of exactly 8), the second pass of its packed primal backward.

enable subgroups;

struct BackwardParams {
  n: u32, d: u32, shiftOffset: u32, centerOffset: u32,
  varOffset: u32, columnStart: u32, matrixStride: u32, packing: u32,
  invCoef: f32, varWeight: f32, covCoef: f32, gamma: f32,
  eps: f32, panels: u32, _pad4: f32, _pad5: f32,
}

const LANES: u32 = 8u;
const SHARED_PER_LANE: u32 = 4u;
const SHARED: u32 = LANES * SHARED_PER_LANE;   // shared rows of the gradient per workgroup
const_assert SHARED_PER_LANE == 4u;   // the accumulateBlock calls below are spelled out for 4 blocks
const OWN: u32 = 8u;                           // columns of the gradient per lane

@group(0) @binding(0) var<storage, read> z4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var<storage, read> covOffDiag4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<uniform> params: BackwardParams;
@group(0) @binding(5) var<storage, read> upstream: array<f32>;

// Rows p*LANES .. p*LANES + LANES - 1 of the block += Zc(those rows, 4 k's) . own (Coff's 4 k's per column);
// mine is this lane's Zc(shared row p, the 4 k's), shuffled to the others.
fn accumulateDots(acc: ptr<function, array<array<f32, OWN>, SHARED>>, p: u32, mine: vec4<f32>,
                   own: ptr<function, array<vec4<f32>, OWN>>) {
  for (var s = 0u; s < LANES; s++) {
    let row = subgroupShuffle(mine, s);
    for (var c = 0u; c < OWN; c++) { (*acc)[p * LANES + s][c] += dot(row, (*own)[c]); }
  }
}

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let n = params.n;
  let d = params.d;
  let d4 = d / 4u;
  let lower = params.packing == 2u;
  let i0 = wid.y * SHARED;
  let j0 = wid.x * LANES * OWN;
  let jEnd = min(j0 + LANES * OWN, d);

  var sharedBase: array<u32, SHARED_PER_LANE>;
  for (var p = 0u; p < SHARED_PER_LANE; p++) { sharedBase[p] = min(i0 + p * LANES + lane, n - 1u) * d4; }
  var column: array<u32, OWN>;
  for (var c = 0u; c < OWN; c++) { column[c] = min(j0 + c * LANES + lane, d - 1u); }

  // View A keeps k > j (j >= j0), view B keeps k < j (j < jEnd).
  let k4Start = select(j0 / 4u, 0u, lower);
  let k4End = select(d4, (jEnd + 3u) / 4u, lower);
  var acc: array<array<f32, OWN>, SHARED>;
  for (var k4 = k4Start; k4 < k4End; k4++) {
    // shift and center of columns 4 k4 .. 4 k4 + 3: one load per lane (lanes 0-3 shift, 4-7 center), then shuffles.
    let statsLane = stats[select(params.centerOffset, params.shiftOffset, lane < 4u) + 4u * k4 + (lane & 3u)];
    let shift = vec4<f32>(subgroupShuffle(statsLane, 0u), subgroupShuffle(statsLane, 1u), subgroupShuffle(statsLane, 2u), subgroupShuffle(statsLane, 3u));
    let center = vec4<f32>(subgroupShuffle(statsLane, 4u), subgroupShuffle(statsLane, 5u), subgroupShuffle(statsLane, 6u), subgroupShuffle(statsLane, 7u));
    let k = vec4<u32>(4u * k4) + vec4<u32>(0u, 1u, 2u, 3u);
    var own: array<vec4<f32>, OWN>;
    for (var c = 0u; c < OWN; c++) {
      let j = vec4<u32>(column[c]);
      let kept = select(k > j, k < j, lower);
      own[c] = select(vec4<f32>(0.0), covOffDiag4[column[c] * d4 + k4], kept);
    }
    accumulateDots(&acc, 0u, (z4[sharedBase[0] + k4] - shift) - center, &own);
    accumulateDots(&acc, 1u, (z4[sharedBase[1] + k4] - shift) - center, &own);
    accumulateDots(&acc, 2u, (z4[sharedBase[2] + k4] - shift) - center, &own);
    accumulateDots(&acc, 3u, (z4[sharedBase[3] + k4] - shift) - center, &own);
  }

  let scale = upstream[0] * params.covCoef;
  for (var r = 0u; r < SHARED; r++) {
    // Shared row r = p * LANES + s, as shuffled above.
    let i = i0 + r;
    if (i >= n) { continue; }
    for (var c = 0u; c < OWN; c++) {
      let j = j0 + c * LANES + lane;
      if (j < d) { grad[i * d + j] += scale * acc[r][c]; }
    }
  }
}
