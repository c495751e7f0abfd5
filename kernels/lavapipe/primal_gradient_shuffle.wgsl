// lavapipe/primal_gradient_shuffle.wgsl: as tiled/primal_gradient.wgsl (the whole gradient of the loss with
// respect to one view, primal d x d form), for adapters where every storage-buffer load is expensive per
// lane and subgroup shuffles are cheap (lavapipe).
//
// Math (Z the view, O the other view, both n x d; var_j and Zc = (Z - shift) - center from column_stats;
// Coff from tiled/primal_gram*):
//   grad_ij (=, or += when ACCUMULATE) upstream[0] * ( invCoef (Z_ij - O_ij) + varCoef_j Zc_ij
//                                                     + covCoef sum_k Zc_ik Coff_kj )
//   varCoef_j = varWeight / std_j if std_j = sqrt(var_j + eps) < gamma, else 0
//   (coefficients: see tiled/primal_gradient.wgsl and src/coefficients.ts)
// Packed matrix (params.packing 1: view A, 2: view B; the layout of the Gram kernels' packedIndex): this
// pass reads Coff by rows, which hold only part of each view's Coff (view A: Coff_kj for k <= j, view B:
// for k > j); it sums those and lavapipe/primal_gradient_mirrored_shuffle.wgsl adds the rest. Plain
// (packing 0: a whole matrix or a column block): this pass sums all of it.
//
// Each workgroup is one subgroup of LANES = 8 invocations and owns a SHARED x (LANES * 4 * OWN4) block of
// the gradient: rows i0 .. i0 + SHARED - 1 shared by all lanes, 4 * OWN4 columns per lane (OWN4 vec4s,
// interleaved across lanes). Per 4 steps k0 .. k0+3 a lane loads a vec4 Zc_i,k0..k0+3 of each of its
// SHARED / LANES shared rows and OWN4 vec4s of each of rows k0 .. k0+3 of Coff; the shared values reach
// the other lanes by subgroupShuffle, and so do shift and center (one load per lane).
// Why this shape (lavapipe, Mesa 25.0, read from its generated code with GALLIVM_DEBUG=asm): every write to
// a variable carried across loop iterations is a blend with the execution mask plus a spill, so each
// accumulator takes 4 multiply-adds per write (4 steps along the contraction at a time); and the
// SHARED_PER_LANE blocks are spelled out as calls of accumulateBlock, so that every accumulator index is a
// constant (Mesa leaves a loop that big rolled, and then indexes the accumulators lane by lane through the
// stack; docs/lavapipe.md, "shuffle").
//
// Bindings (group 0):
//   0  z4          storage, read        array<vec4<f32>>  n*d/4 this view
//   1  other4      storage, read        array<vec4<f32>>  n*d/4 the other view
//   2  stats       storage, read        array<f32>        column_stats layout
//   3  covOffDiag4 storage, read        array<vec4<f32>>  (d*d+d)/4 both views' Coff, packed (or a plain
//                                                     matrix or column block of this view's)
//   4  grad4       storage, read_write  array<vec4<f32>>  n*d/4
//   5  params      uniform              BackwardParams (as tiled/primal_gradient.wgsl: Coff_kj is read at
//                                                     k*matrixStride + (j - columnStart), a whole matrix
//                                                     or one block of columns; both multiples of 4)
//   6  upstream    storage, read        array<f32>        1: the upstream gradient
// Dispatch: (ceil(columns / (LANES*4*OWN4)), ceil(n / SHARED), 1) workgroups of LANES threads, columns =
// d or the block's width.
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

@group(0) @binding(0) var<storage, read> z4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> other4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read> covOffDiag4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> grad4: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> params: BackwardParams;
@group(0) @binding(6) var<storage, read> upstream: array<f32>;

fn statsVec4(offset: u32, column: u32) -> vec4<f32> {
  let o = offset + column;
  return vec4<f32>(stats[o], stats[o + 1u], stats[o + 2u], stats[o + 3u]);
}

// Rows p*LANES .. p*LANES + LANES - 1 of the block += Zc(those rows, k0 .. k0+3) Coff(k0 .. k0+3, own columns);
// mine is this lane's Zc(shared row p, k0 .. k0+3), shuffled to the others.
fn accumulateBlock(acc: ptr<function, array<array<vec4<f32>, OWN4>, SHARED>>, p: u32, mine: vec4<f32>,
                   coff: ptr<function, array<array<vec4<f32>, OWN4>, 4>>) {
  for (var s = 0u; s < LANES; s++) {
    let zc = subgroupShuffle(mine, s);
    for (var c = 0u; c < OWN4; c++) {
      (*acc)[p * LANES + s][c] += zc.x * (*coff)[0][c] + zc.y * (*coff)[1][c] + zc.z * (*coff)[2][c] + zc.w * (*coff)[3][c];
    }
  }
}

// Four steps k0 .. k0+3 (k0 % 4 == 0): acc[r][c] += sum_k Zc_(i0+r)k * Coff_kj over this lane's columns,
// Coff_kj from rows k of the matrix. `masked` (packed, near the diagonal) zeroes the columns whose
// Coff_kj a row does not hold; the two call sites pass a constant, so the unmasked steps carry no select.
fn rowStep4(k0: u32, masked: bool, lower: bool, lane: u32, sharedBase: ptr<function, array<u32, SHARED_PER_LANE>>,
            own4: ptr<function, array<u32, OWN4>>, acc: ptr<function, array<array<vec4<f32>, OWN4>, SHARED>>) {
  let stride4 = params.matrixStride / 4u;
  let start4 = params.columnStart / 4u;
  // shift and center of columns k0 .. k0+3: one load per lane (lanes 0-3 shift, 4-7 center), then shuffles.
  let statsLane = stats[select(params.centerOffset, params.shiftOffset, lane < 4u) + k0 + (lane & 3u)];
  let shift = vec4<f32>(subgroupShuffle(statsLane, 0u), subgroupShuffle(statsLane, 1u), subgroupShuffle(statsLane, 2u), subgroupShuffle(statsLane, 3u));
  let center = vec4<f32>(subgroupShuffle(statsLane, 4u), subgroupShuffle(statsLane, 5u), subgroupShuffle(statsLane, 6u), subgroupShuffle(statsLane, 7u));
  var coff: array<array<vec4<f32>, OWN4>, 4>;
  for (var q = 0u; q < 4u; q++) {
    let k = k0 + q;
    for (var c = 0u; c < OWN4; c++) {
      coff[q][c] = covOffDiag4[k * stride4 + (*own4)[c] - start4];
      if (masked) {
        let j = vec4<u32>(4u * (*own4)[c]) + vec4<u32>(0u, 1u, 2u, 3u);
        coff[q][c] = select(vec4<f32>(0.0), coff[q][c], select(j >= vec4<u32>(k), j < vec4<u32>(k), lower));
      }
    }
  }
  accumulateBlock(acc, 0u, (z4[((*sharedBase)[0] + k0) / 4u] - shift) - center, &coff);
  accumulateBlock(acc, 1u, (z4[((*sharedBase)[1] + k0) / 4u] - shift) - center, &coff);
  accumulateBlock(acc, 2u, (z4[((*sharedBase)[2] + k0) / 4u] - shift) - center, &coff);
  accumulateBlock(acc, 3u, (z4[((*sharedBase)[3] + k0) / 4u] - shift) - center, &coff);
}

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let n = params.n;
  let d = params.d;
  let d4 = d / 4u;
  let i0 = wid.y * SHARED;
  let j40 = params.columnStart / 4u + wid.x * LANES * OWN4;   // first vec4 column of this workgroup
  let end4 = min(d, params.columnStart + params.matrixStride) / 4u;

  var sharedBase: array<u32, SHARED_PER_LANE>;
  for (var p = 0u; p < SHARED_PER_LANE; p++) { sharedBase[p] = min(i0 + p * LANES + lane, n - 1u) * d; }
  var own4: array<u32, OWN4>;
  for (var c = 0u; c < OWN4; c++) { own4[c] = min(j40 + c * LANES + lane, end4 - 1u); }

  // Plain: every row k. Packed: only the rows k that hold this view's Coff_kj for some of the columns
  // jLo .. jHi - 1 (view A: k <= j; view B: k > j), masked in the window where that holds for some
  // columns only; the rest of Coff comes in the mirrored pass.
  let packed = params.packing != 0u;
  let lower = params.packing == 2u;
  let jLo = 4u * j40;
  let jHi = 4u * min(j40 + LANES * OWN4, end4);
  let wholeStart = select(0u, select(0u, jHi, lower), packed);
  let wholeEnd = select(d, select(jLo, d, lower), packed);
  // All four bounds are multiples of 4 (d % 4 == 0). The window starts at jLo for both views: view B's
  // step k = jLo holds none of the columns (j >= k), and the mask zeroes it.
  let windowEnd = select(0u, jHi, packed);
  var acc: array<array<vec4<f32>, OWN4>, SHARED>;
  for (var k0 = wholeStart; k0 < wholeEnd; k0 += 4u) { rowStep4(k0, false, lower, lane, &sharedBase, &own4, &acc); }
  for (var k0 = jLo; k0 < windowEnd; k0 += 4u) { rowStep4(k0, true, lower, lane, &sharedBase, &own4, &acc); }

  let scale = upstream[0];
  for (var c = 0u; c < OWN4; c++) {
    let j4 = j40 + c * LANES + lane;
    if (j4 >= end4) { continue; }
    let shift = statsVec4(params.shiftOffset, 4u * j4);
    let center = statsVec4(params.centerOffset, 4u * j4);
    let stdDev = sqrt(statsVec4(params.varOffset, 4u * j4) + vec4<f32>(params.eps));
    let varCoef = select(vec4<f32>(0.0), vec4<f32>(params.varWeight) / stdDev, stdDev < vec4<f32>(params.gamma));
    for (var r = 0u; r < SHARED; r++) {
      let i = i0 + r;
      if (i >= n) { continue; }
      let index = i * d4 + j4;
      let x = z4[index];
      let g = params.invCoef * (x - other4[index]) + varCoef * ((x - shift) - center) + params.covCoef * acc[r][c];
      if (ACCUMULATE) { grad4[index] += scale * g; } else { grad4[index] = scale * g; }
    }
  }
}
