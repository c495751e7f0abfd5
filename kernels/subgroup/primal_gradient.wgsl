// subgroup/primal_gradient.wgsl: the whole gradient of the loss with respect to one view (primal d x d form, from
// Coff: packed, packing 1 or 2, or a plain matrix or column block, packing 0), written once.
//
// Math (Z this view, O the other; Zc = (Z - shift) - center; var_j from column_stats):
//   grad_ij (=, or += when ACCUMULATE) upstream[0] * ( invCoef (Z_ij - O_ij) + varCoef_j Zc_ij
//                                                     + covCoef sum_k Zc_ik Coff_kj )
//   varCoef_j = varWeight / std_j if std_j = sqrt(var_j + eps) < gamma, else 0.
//
// Shape: every thread accumulates an 8 x 8 block of Zc Coff over k; per k it loads Zc at 4 of its rows and Coff
// at 4 of its columns and gets the other 4 + 4 from its quad partners (quadSwapX / quadSwapY).
// The workgroup's tile is 16*QUADS_Y rows x 16*QUADS_X columns (QUADS_Y = LANES/4/QUADS_X). Coff is read
// without per-entry index arithmetic: for k below the tile's columns every (k, j) is on one side of the
// diagonal and sits at k*strideK + jTerm_j (view A: row k of the buffer; view B: row j), above them on the
// other side (the other way round); only the 16*QUADS_X values of k inside the tile's columns use packedIndex.
// Packing 0 (a plain matrix or column block at k*matrixStride + (j - columnStart)) is one such range.
//
// Bindings (group 0):
//   0  z           storage, read        array<f32>  n*d   this view
//   1  other       storage, read        array<f32>  n*d   the other view
//   2  stats       storage, read        array<f32>  column_stats layout
//   3  covOffDiag  storage, read        array<f32>  d*d+d both views' Coff packed (packing 1: A, 2: B) or a plain
//                                                   matrix / column block (packing 0)
//   4  grad        storage, read_write  array<f32>  n*d
//   5  params      uniform              BackwardParams
//   6  upstream    storage, read        array<f32>  1
// Dispatch: (ceil(columns / (16*QUADS_X)), ceil(n / (16*QUADS_Y)), 1) workgroups of LANES threads, columns = d
// or the block's width (matrixStride). Any n >= 2, d >= 1.
// Requires: the 'subgroups' feature; LANES, a power of two from 4, at most the adapter's smallest subgroup
// size, so that a workgroup is one subgroup (lanes 0 .. LANES - 1) whatever size a dispatch gets, and its
// quads are lanes 4q .. 4q+3.
// Variant: "subgroup" (portable: subgroup operations at any subgroup size from 4).

enable subgroups;

struct BackwardParams {
  n: u32, d: u32, shiftOffset: u32, centerOffset: u32,
  varOffset: u32, columnStart: u32, matrixStride: u32, packing: u32,
  invCoef: f32, varWeight: f32, covCoef: f32, gamma: f32,
  eps: f32, panels: u32, _pad4: f32, _pad5: f32,
}
override LANES: u32 = 4u;            // at most the adapter's smallest subgroup size, a power of two from 4
override QUADS_X: u32 = 1u;          // quads side by side in the workgroup's tile (divides LANES / 4); 1 keeps the band narrow
override QUADS_Y: u32 = LANES / 4u / QUADS_X;   // derived: leave unset
override ACCUMULATE: bool = false;
@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> other: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read> covOffDiag: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
@group(0) @binding(5) var<uniform> params: BackwardParams;
@group(0) @binding(6) var<storage, read> upstream: array<f32>;

// The packed layout of the matrix buffer, shared by both views (side s): view A's symmetric matrix on
// and above the diagonal, entry (i, k), i <= k, at i*s + k; view B's strictly below it, at k*s + i; B's
// diagonal after the s x s square, at s*s + i. s*s + s floats hold both views' matrices.
fn packedIndex(i: u32, k: u32, s: u32, lowerHalf: bool) -> u32 {
  if (!lowerHalf) { return i * s + k; }
  return select(k * s + i, s * s + i, i == k);
}
// Coff_kj of this view: packed (packing 1: view A, 2: view B), or with packing 0 from a plain matrix or
// column block at k*matrixStride + (j - columnStart).
fn coffAt(k: u32, j: u32) -> f32 {
  if (params.packing == 0u) { return covOffDiag[k * params.matrixStride + (j - params.columnStart)]; }
  return covOffDiag[packedIndex(min(k, j), max(k, j), params.d, params.packing == 2u)];
}
// A thread's 8 x 8 block as four 4 x 4 blocks: a<R><C>[r][c] is row r of row group R, column c of column group C.
struct Acc { a00: mat4x4<f32>, a01: mat4x4<f32>, a10: mat4x4<f32>, a11: mat4x4<f32> }
fn zeroAcc() -> Acc { return Acc(mat4x4<f32>(), mat4x4<f32>(), mat4x4<f32>(), mat4x4<f32>()); }
fn rank1(acc: mat4x4<f32>, a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(fma(vec4<f32>(a.x), b, acc[0]), fma(vec4<f32>(a.y), b, acc[1]),
                     fma(vec4<f32>(a.z), b, acc[2]), fma(vec4<f32>(a.w), b, acc[3]));
}
// Entry (r, c) of the 8 x 8 block, from the blocks in order a00, a01, a10, a11.
fn entry(blocks: ptr<function, array<mat4x4<f32>, 4>>, r: u32, c: u32) -> f32 {
  return (*blocks)[((r >> 2u) << 1u) + (c >> 2u)][r & 3u][c & 3u];
}
// One step of the contraction: a, ap the thread's two groups of 4 rows, b, bp its two groups of 4 columns.
fn update(acc: Acc, a: vec4<f32>, ap: vec4<f32>, b: vec4<f32>, bp: vec4<f32>) -> Acc {
  return Acc(rank1(acc.a00, a, b), rank1(acc.a01, a, bp), rank1(acc.a10, ap, b), rank1(acc.a11, ap, bp));
}
// One step with a quad's sharing: a, the lane's own 4 rows, b, its own 4 columns; the other 4 rows come
// from the X partner (lane ^ 1), the other 4 columns from the Y partner (lane ^ 2).
fn quadUpdate(acc: Acc, a: vec4<f32>, b: vec4<f32>) -> Acc {
  return update(acc, a, quadSwapX(a), b, quadSwapY(b));
}

fn rowOf(r: u32, qx: u32, qy: u32) -> u32 { return 8u * qy + 4u * select(qx, 1u - qx, r >= 4u) + (r & 3u); }
fn colOf(c: u32, qx: u32, qy: u32) -> u32 { return 8u * qx + 4u * select(qy, 1u - qy, c >= 4u) + (c & 3u); }

// Zc at column k of 4 rows (row bases b = i*d).
fn zcAt(b: vec4<u32>, k: u32) -> vec4<f32> {
  let s = stats[params.shiftOffset + k];
  let t = stats[params.centerOffset + k];
  return (vec4<f32>(z[b.x + k], z[b.y + k], z[b.z + k], z[b.w + k]) - s) - t;
}
// Coff at 4 columns of one row k, at a + jTerm (a = k*strideK).
fn coff4(a: u32, jTerm: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(covOffDiag[a + jTerm.x], covOffDiag[a + jTerm.y], covOffDiag[a + jTerm.z], covOffDiag[a + jTerm.w]);
}
fn coffGeneral(k: u32, j: vec4<u32>) -> vec4<f32> { return vec4<f32>(coffAt(k, j.x), coffAt(k, j.y), coffAt(k, j.z), coffAt(k, j.w)); }

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let n = params.n;
  let d = params.d;
  let columnEnd = min(d, params.columnStart + params.matrixStride);
  let tileI = wid.y * 16u * QUADS_Y;
  let tileJ = params.columnStart + wid.x * 16u * QUADS_X;
  // Quad q = lane / 4 of the workgroup covers a 16 x 16 block; its lane (qx, qy) = (lane & 1, (lane >> 1) & 1)
  // owns rows 8 qy .. 8 qy + 7 and columns 8 qx .. 8 qx + 7 of it, each as two groups of 4: its own group
  // (rows 8 qy + 4 qx + 0..3, columns 8 qx + 4 qy + 0..3) and its partners' (4 (1 - qx), 4 (1 - qy)).
  let quad = lane >> 2u;
  let qx = lane & 1u;
  let qy = (lane >> 1u) & 1u;
  let offs = vec4<u32>(0u, 1u, 2u, 3u);
  let iq = tileI + (quad / QUADS_X) * 16u;
  let jq = tileJ + (quad % QUADS_X) * 16u;
  // Rows (as row bases i*d) and columns read, clamped: past n or the block they only feed entries never written.
  let b0 = min(vec4<u32>(iq + 8u * qy + 4u * qx) + offs, vec4<u32>(n - 1u)) * d;
  let j0 = min(vec4<u32>(jq + 8u * qx + 4u * qy) + offs, vec4<u32>(columnEnd - 1u));
  // k in [0, bandStart) and [bandEnd, d): all of the tile's (k, j) on one side of the diagonal.
  let packed = params.packing != 0u;
  let bandStart = select(d, min(tileJ, d), packed);
  let bandEnd = select(d, min(tileJ + 16u * QUADS_X, d), packed);
  var acc = zeroAcc();
  for (var range = 0u; range < 2u; range++) {
    let kStart = select(bandEnd, 0u, range == 0u);
    let kEnd = select(d, bandStart, range == 0u);
    // Row form (k*s + j): packing 0; view A below the band (k < j); view B above it.
    let rowForm = !packed || ((range == 0u) == (params.packing == 1u));
    let strideK = select(1u, select(d, params.matrixStride, !packed), rowForm);
    let jBase = select(vec4<u32>(0u), vec4<u32>(params.columnStart), !packed);
    let jt0 = select((j0 - jBase) * d, j0 - jBase, vec4<bool>(rowForm));
    let kPairs = kStart + ((kEnd - kStart) & ~1u);
    for (var k = kStart; k < kPairs; k += 2u) {
      let a = k * strideK;
      acc = quadUpdate(acc, zcAt(b0, k), coff4(a, jt0));
      acc = quadUpdate(acc, zcAt(b0, k + 1u), coff4(a + strideK, jt0));
    }
    if (kPairs < kEnd) {
      acc = quadUpdate(acc, zcAt(b0, kPairs), coff4(kPairs * strideK, jt0));
    }
  }
  for (var k = bandStart; k < bandEnd; k++) {
    acc = quadUpdate(acc, zcAt(b0, k), coffGeneral(k, j0));
  }

  var blocks = array<mat4x4<f32>, 4>(acc.a00, acc.a01, acc.a10, acc.a11);
  let scale = upstream[0];
  for (var c = 0u; c < 8u; c++) {
    let j = jq + colOf(c, qx, qy);
    if (j >= columnEnd) { continue; }
    let shift = stats[params.shiftOffset + j];
    let center = stats[params.centerOffset + j];
    let stdDev = sqrt(stats[params.varOffset + j] + params.eps);
    let varCoef = select(0.0, params.varWeight / stdDev, stdDev < params.gamma);
    for (var r = 0u; r < 8u; r++) {
      let i = iq + rowOf(r, qx, qy);
      if (i >= n) { continue; }
      let index = i * d + j;
      let x = z[index];
      let g = params.invCoef * (x - other[index]) + varCoef * ((x - shift) - center) + params.covCoef * entry(&blocks, r, c);
      if (ACCUMULATE) { grad[index] += scale * g; } else { grad[index] = scale * g; }
    }
  }
}
