// subgroup/primal_gram_vec4.wgsl: the covariance matrix C = Zc^T Zc / (n-1) of one view (primal d x d form), tile by tile
// on and above its diagonal, with the sum of its squared off-diagonal entries reduced in the epilogue;
// its packed triangle (view A upper, view B lower) written with a zero diagonal (Coff) for backward.
//
// Math (Z one view, n x d row-major; Zc = (Z - shift) - center, centered as loaded, from column_stats):
//   C_lm = (1/(n-1)) sum_i Zc_il Zc_im;  sum over all partials = sum_(l != m) C_lm^2
//   (each entry l < m of the computed triangle counted twice, the diagonal 0).
//
// Shape: every thread accumulates an 8 x 8 block of C (64 registers) over the n rows of Z, loading per row
// 8 values of Z and receiving 8 more from its quad partners (quadSwapX: the X partner has the same columns'
// other rows, quadSwapY: the Y partner the same rows' other columns): 1 load per 8 FMAs.
// The workgroup's tile is 16*QUADS_Y rows x 16*QUADS_X columns of C (QUADS_Y = LANES/4/QUADS_X).
// Rows of Z are read in pairs (two steps per loop iteration).
//
// Bindings (group 0):
//   0  z           storage, read        array<f32>  n*d
//   1  stats       storage, read        array<f32>  column_stats layout; shift, center at shiftOffset, centerOffset
//   2  partials    storage, read_write  array<f32>  one per quad: partialOffset + (wid.y*gx + wid.x)*(LANES/4) + quad (0 where the tile is below the diagonal)
//   3  covOffDiag  storage, read_write  array<f32>  d*d+d, both views packed (packedIndex), when WRITE_MATRIX
//   4  dims        uniform              GramDims { n, d, tiles (unused), partialOffset, shiftOffset, centerOffset,
//                                                 lowerHalf: 0 view A, 1 view B }
// Dispatch: (gx, gy, 1) = (ceil(d / (16*QUADS_X)), ceil(d / (16*QUADS_Y)), 1) workgroups of LANES threads;
// partialsPerView = gx*gy*(LANES/4). Any n >= 2; d % 4 == 0 (z read as vec4s; else use the scalar file).
// Requires: the 'subgroups' feature; LANES, a power of two from 4, at most the adapter's smallest subgroup
// size, so that a workgroup is one subgroup (lanes 0 .. LANES - 1) whatever size a dispatch gets, and its
// quads are lanes 4q .. 4q+3.
// Variant: "subgroup" (portable: subgroup operations at any subgroup size from 4).

enable subgroups;

struct GramDims { n: u32, d: u32, tiles: u32, partialOffset: u32, shiftOffset: u32, centerOffset: u32, blockStart: u32, blockWidth: u32, lowerHalf: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
override WRITE_MATRIX: bool = true;
override LANES: u32 = 4u;            // at most the adapter's smallest subgroup size, a power of two from 4
override QUADS_X: u32 = LANES / 4u;   // quads side by side in the workgroup's tile (must divide LANES / 4)
override QUADS_Y: u32 = LANES / 4u / QUADS_X;   // derived: leave unset
@group(0) @binding(0) var<storage, read> z: array<vec4<f32>>;   // d % 4 == 0
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;
@group(0) @binding(3) var<storage, read_write> covOffDiag: array<f32>;
@group(0) @binding(4) var<uniform> dims: GramDims;

// The packed layout of the matrix buffer, shared by both views (side s): view A's symmetric matrix on
// and above the diagonal, entry (i, k), i <= k, at i*s + k; view B's strictly below it, at k*s + i; B's
// diagonal after the s x s square, at s*s + i. s*s + s floats hold both views' matrices.
fn packedIndex(i: u32, k: u32, s: u32, lowerHalf: bool) -> u32 {
  if (!lowerHalf) { return i * s + k; }
  return select(k * s + i, s * s + i, i == k);
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

fn stat4(o: u32, c: vec4<u32>) -> vec4<f32> { return vec4<f32>(stats[o + c.x], stats[o + c.y], stats[o + c.z], stats[o + c.w]); }
// Zc at row base b (= i*d/4) and the 4 columns 4c .. 4c+3, centered with their shift s and center t.
fn zcVec4(b: u32, c: u32, s: vec4<f32>, t: vec4<f32>) -> vec4<f32> {
  return (z[b + c] - s) - t;
}

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32) {
  let n = dims.n;
  let d = dims.d;
  let tileL = wid.y * 16u * QUADS_Y;
  let tileM = wid.x * 16u * QUADS_X;
  let partialBase = dims.partialOffset + (wid.y * groups.x + wid.x) * (LANES / 4u);
  if (tileL >= tileM + 16u * QUADS_X) {   // wholly below the diagonal
    if ((lane & 3u) == 0u) { partials[partialBase + (lane >> 2u)] = 0.0; }
    return;
  }
  // Quad q = lane / 4 of the workgroup covers a 16 x 16 block; its lane (qx, qy) = (lane & 1, (lane >> 1) & 1)
  // owns rows 8 qy .. 8 qy + 7 and columns 8 qx .. 8 qx + 7 of it, each as two groups of 4: its own group
  // (rows 8 qy + 4 qx + 0..3, columns 8 qx + 4 qy + 0..3) and its partners' (4 (1 - qx), 4 (1 - qy)).
  let quad = lane >> 2u;
  let qx = lane & 1u;
  let qy = (lane >> 1u) & 1u;
  let offs = vec4<u32>(0u, 1u, 2u, 3u);
  let lq = tileL + (quad / QUADS_X) * 16u;
  let mq = tileM + (quad % QUADS_X) * 16u;
  // Columns of Z read (rows l and columns m of C), clamped: past d they only feed entries never written.
  let l0 = min(vec4<u32>(lq + 8u * qy + 4u * qx) + offs, vec4<u32>(d - 1u));
  let m0 = min(vec4<u32>(mq + 8u * qx + 4u * qy) + offs, vec4<u32>(d - 1u));
  let so = dims.shiftOffset;
  let co = dims.centerOffset;
  let sl0 = stat4(so, l0); let cl0 = stat4(co, l0);
  let sm0 = stat4(so, m0); let cm0 = stat4(co, m0);
  let d4 = d >> 2u;   // vec4s per row of Z
  var acc = zeroAcc();
  let nPairs = n & ~1u;
  for (var i = 0u; i < nPairs; i += 2u) {
    let b = i * d4;
    acc = quadUpdate(acc, zcVec4(b, l0.x >> 2u, sl0, cl0), zcVec4(b, m0.x >> 2u, sm0, cm0));
    acc = quadUpdate(acc, zcVec4(b + d4, l0.x >> 2u, sl0, cl0), zcVec4(b + d4, m0.x >> 2u, sm0, cm0));
  }
  if (nPairs < n) {
    acc = quadUpdate(acc, zcVec4(nPairs * d4, l0.x >> 2u, sl0, cl0), zcVec4(nPairs * d4, m0.x >> 2u, sm0, cm0));
  }

  var blocks = array<mat4x4<f32>, 4>(acc.a00, acc.a01, acc.a10, acc.a11);
  let inv = 1.0 / f32(n - 1u);
  let lower = dims.lowerHalf != 0u;
  var sumSq = 0.0;
  for (var r = 0u; r < 8u; r++) {
    let l = lq + rowOf(r, qx, qy);
    for (var c = 0u; c < 8u; c++) {
      let m = mq + colOf(c, qx, qy);
      if (l < d && m < d && l <= m) {
        let value = select(entry(&blocks, r, c) * inv, 0.0, l == m);
        sumSq += select(2.0, 1.0, l == m) * value * value;
        if (WRITE_MATRIX) { covOffDiag[packedIndex(l, m, d, lower)] = value; }
      }
    }
  }
  // One partial per quad, summed in a fixed order (the same in every lane: a + b == b + a).
  let pairSum = sumSq + quadSwapX(sumSq);
  let quadSum = pairSum + quadSwapY(pairSum);
  if ((lane & 3u) == 0u) { partials[partialBase + quad] = quadSum; }
}
