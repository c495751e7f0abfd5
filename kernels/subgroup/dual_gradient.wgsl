// subgroup/dual_gradient.wgsl: the whole gradient of the loss with respect to one view (dual n x n form, from
// the packed K, packing 1 or 2), written once.
//
// Math (Zc = (Z - shift) - center; K = Zc Zc^T; var_j from column_stats):
//   grad_ij (=, or += when ACCUMULATE) upstream[0] * ( invCoef (Z_ij - O_ij) + varCoef_j Zc_ij
//                     + covCoef (sum_k K_ik Zc_kj / (n-1) - var_j Zc_ij) )
//   varCoef_j = varWeight / std_j if std_j = sqrt(var_j + eps) < gamma, else 0.
//
// Shape: every thread accumulates an 8 x 8 block of K Zc over k; per k it loads K at 4 of its rows and Zc at 4 of
// its columns and gets the other 4 + 4 from its quad partners (quadSwapX / quadSwapY).
// The workgroup's tile is 16*QUADS_Y rows x 16*QUADS_X columns (QUADS_Y = LANES/4/QUADS_X). K is read
// without per-entry index arithmetic: for k below the tile's rows every (i, k) is on one side of the diagonal
// and sits at k*strideK + iTerm_i, above them on the other; only the 16*QUADS_Y values of k inside the tile's
// rows use packedIndex.
//
// Bindings (group 0):
//   0  z         storage, read        array<f32>  n*d   this view
//   1  other     storage, read        array<f32>  n*d   the other view
//   2  stats     storage, read        array<f32>  column_stats layout
//   3  gram      storage, read        array<f32>  n*n+n both views' K, packed (packing 1: A, 2: B)
//   4  grad      storage, read_write  array<f32>  n*d
//   5  params    uniform              BackwardParams (columnStart, matrixStride unused)
//   6  upstream  storage, read        array<f32>  1
// Dispatch: (ceil(d / (16*QUADS_X)), ceil(n / (16*QUADS_Y)), 1) workgroups of LANES threads. Any n >= 2, d >= 1.
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
override QUADS_X: u32 = LANES / 4u;   // quads side by side in the workgroup's tile (must divide LANES / 4)
override QUADS_Y: u32 = LANES / 4u / QUADS_X;   // derived: leave unset
override ACCUMULATE: bool = false;
@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> other: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read> gram: array<f32>;
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
// K_ik of this view, from the packed matrix (packing 1: view A, 2: view B).
fn gramAt(i: u32, k: u32) -> f32 {
  return gram[packedIndex(min(i, k), max(i, k), params.n, params.packing == 2u)];
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

// K at 4 rows of one column k, at a + iTerm (a = k*strideK).
fn gram4(a: u32, iTerm: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(gram[a + iTerm.x], gram[a + iTerm.y], gram[a + iTerm.z], gram[a + iTerm.w]);
}
fn gramGeneral(i: vec4<u32>, k: u32) -> vec4<f32> { return vec4<f32>(gramAt(i.x, k), gramAt(i.y, k), gramAt(i.z, k), gramAt(i.w, k)); }
// Zc at row k (base b = k*d) and 4 columns j with their shift s and center t.
fn zcRow4(b: u32, j: vec4<u32>, s: vec4<f32>, t: vec4<f32>) -> vec4<f32> {
  return (vec4<f32>(z[b + j.x], z[b + j.y], z[b + j.z], z[b + j.w]) - s) - t;
}
fn stat4(o: u32, c: vec4<u32>) -> vec4<f32> { return vec4<f32>(stats[o + c.x], stats[o + c.y], stats[o + c.z], stats[o + c.w]); }

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let n = params.n;
  let d = params.d;
  let tileI = wid.y * 16u * QUADS_Y;
  let tileJ = wid.x * 16u * QUADS_X;
  // Quad q = lane / 4 of the workgroup covers a 16 x 16 block; its lane (qx, qy) = (lane & 1, (lane >> 1) & 1)
  // owns rows 8 qy .. 8 qy + 7 and columns 8 qx .. 8 qx + 7 of it, each as two groups of 4: its own group
  // (rows 8 qy + 4 qx + 0..3, columns 8 qx + 4 qy + 0..3) and its partners' (4 (1 - qx), 4 (1 - qy)).
  let quad = lane >> 2u;
  let qx = lane & 1u;
  let qy = (lane >> 1u) & 1u;
  let offs = vec4<u32>(0u, 1u, 2u, 3u);
  let iq = tileI + (quad / QUADS_X) * 16u;
  let jq = tileJ + (quad % QUADS_X) * 16u;
  // Rows and columns read, clamped: past n or d they only feed entries never written.
  let i0 = min(vec4<u32>(iq + 8u * qy + 4u * qx) + offs, vec4<u32>(n - 1u));
  let j0 = min(vec4<u32>(jq + 8u * qx + 4u * qy) + offs, vec4<u32>(d - 1u));
  let so = params.shiftOffset;
  let co = params.centerOffset;
  let s0 = stat4(so, j0); let t0 = stat4(co, j0);
  // k in [0, bandStart) and [bandEnd, n): all of the tile's (i, k) on one side of the diagonal.
  let bandStart = min(tileI, n);
  let bandEnd = min(tileI + 16u * QUADS_Y, n);
  var acc = zeroAcc();
  for (var range = 0u; range < 2u; range++) {
    let kStart = select(bandEnd, 0u, range == 0u);
    let kEnd = select(n, bandStart, range == 0u);
    // Row form (k*n + i): view A below the band (k < i: entry (k, i) of the upper triangle); view B above it.
    let rowForm = (range == 0u) == (params.packing != 2u);
    let strideK = select(1u, n, rowForm);
    let it0 = select(i0 * n, i0, vec4<bool>(rowForm));
    let kPairs = kStart + ((kEnd - kStart) & ~1u);
    for (var k = kStart; k < kPairs; k += 2u) {
      let a = k * strideK;
      acc = quadUpdate(acc, gram4(a, it0), zcRow4(k * d, j0, s0, t0));
      acc = quadUpdate(acc, gram4(a + strideK, it0), zcRow4(k * d + d, j0, s0, t0));
    }
    if (kPairs < kEnd) {
      acc = quadUpdate(acc, gram4(kPairs * strideK, it0), zcRow4(kPairs * d, j0, s0, t0));
    }
  }
  for (var k = bandStart; k < bandEnd; k++) {
    acc = quadUpdate(acc, gramGeneral(i0, k), zcRow4(k * d, j0, s0, t0));
  }

  var blocks = array<mat4x4<f32>, 4>(acc.a00, acc.a01, acc.a10, acc.a11);
  let scale = upstream[0];
  let inv = 1.0 / f32(n - 1u);
  for (var c = 0u; c < 8u; c++) {
    let j = jq + colOf(c, qx, qy);
    if (j >= d) { continue; }
    let shift = stats[so + j];
    let center = stats[co + j];
    let variance = stats[params.varOffset + j];
    let stdDev = sqrt(variance + params.eps);
    let varCoef = select(0.0, params.varWeight / stdDev, stdDev < params.gamma);
    for (var r = 0u; r < 8u; r++) {
      let i = iq + rowOf(r, qx, qy);
      if (i >= n) { continue; }
      let index = i * d + j;
      let x = z[index];
      let zc = (x - shift) - center;
      let covGrad = entry(&blocks, r, c) * inv - variance * zc;
      let g = params.invCoef * (x - other[index]) + varCoef * zc + params.covCoef * covGrad;
      if (ACCUMULATE) { grad[index] += scale * g; } else { grad[index] = scale * g; }
    }
  }
}
