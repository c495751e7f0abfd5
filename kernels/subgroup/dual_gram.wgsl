// subgroup/dual_gram.wgsl: the n x n Gram matrix K = Zc Zc^T of one view (dual form), tile by tile on and above
// its diagonal, with the sum of squares of its entries reduced in the epilogue; its packed triangle
// (view A upper, view B lower) written for backward.
//
// Math (Zc = (Z - shift) - center, centered as loaded): K_ik = sum_j Zc_ij Zc_kj;
//   sum over all partials = ||K||_F^2 / (n-1)^2 (entries i < k of the computed triangle counted twice).
//
// Shape: every thread accumulates an 8 x 8 block of K over the d columns, 4 columns per loop iteration (each
// row's 4 consecutive values, then used column by column); it loads 4 of its 8 rows i and 4 of its 8 rows k,
// its quad partners pass it the others (quadSwapX / quadSwapY).
// The workgroup's tile is 16*QUADS_Y x 16*QUADS_X entries of K (QUADS_Y = LANES/4/QUADS_X).
//
// Bindings (group 0):
//   0  z         storage, read        array<f32>  n*d
//   1  stats     storage, read        array<f32>  column_stats layout; shift, center at shiftOffset, centerOffset
//   2  partials  storage, read_write  array<f32>  one per quad: partialOffset + (wid.y*gx + wid.x)*(LANES/4) + quad
//   3  gram      storage, read_write  array<f32>  n*n+n, both views packed, when WRITE_MATRIX
//   4  dims      uniform              GramDims { n, d, tiles (unused), partialOffset, shiftOffset, centerOffset, lowerHalf }
// Dispatch: (gx, gy, 1) = (ceil(n / (16*QUADS_X)), ceil(n / (16*QUADS_Y)), 1) workgroups of LANES threads;
// partialsPerView = gx*gy*(LANES/4). Any n >= 2, d >= 1 (d % 4 columns in a scalar tail loop).
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
@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;
@group(0) @binding(3) var<storage, read_write> gram: array<f32>;
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

// Zc at 4 consecutive columns j.. of the row at base b (= i*d), centered.
fn row4(b: u32, j: u32, s: vec4<f32>, t: vec4<f32>) -> vec4<f32> {
  return (vec4<f32>(z[b + j], z[b + j + 1u], z[b + j + 2u], z[b + j + 3u]) - s) - t;
}

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32) {
  let n = dims.n;
  let d = dims.d;
  let tileI = wid.y * 16u * QUADS_Y;
  let tileK = wid.x * 16u * QUADS_X;
  let partialBase = dims.partialOffset + (wid.y * groups.x + wid.x) * (LANES / 4u);
  if (tileI >= tileK + 16u * QUADS_X) {   // wholly below the diagonal
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
  let iq = tileI + (quad / QUADS_X) * 16u;
  let kq = tileK + (quad % QUADS_X) * 16u;
  // Row bases (row * d) of the rows read, clamped: rows past n only feed entries never written.
  let bI0 = min(vec4<u32>(iq + 8u * qy + 4u * qx) + offs, vec4<u32>(n - 1u)) * d;
  let bK0 = min(vec4<u32>(kq + 8u * qx + 4u * qy) + offs, vec4<u32>(n - 1u)) * d;
  let so = dims.shiftOffset;
  let co = dims.centerOffset;
  var acc = zeroAcc();
  let dQuads = d & ~3u;
  for (var j = 0u; j < dQuads; j += 4u) {
    let s = vec4<f32>(stats[so + j], stats[so + j + 1u], stats[so + j + 2u], stats[so + j + 3u]);
    let t = vec4<f32>(stats[co + j], stats[co + j + 1u], stats[co + j + 2u], stats[co + j + 3u]);
    let i0x = row4(bI0.x, j, s, t); let i0y = row4(bI0.y, j, s, t); let i0z = row4(bI0.z, j, s, t); let i0w = row4(bI0.w, j, s, t);
    let k0x = row4(bK0.x, j, s, t); let k0y = row4(bK0.y, j, s, t); let k0z = row4(bK0.z, j, s, t); let k0w = row4(bK0.w, j, s, t);
    acc = quadUpdate(acc, vec4<f32>(i0x.x, i0y.x, i0z.x, i0w.x), vec4<f32>(k0x.x, k0y.x, k0z.x, k0w.x));
    acc = quadUpdate(acc, vec4<f32>(i0x.y, i0y.y, i0z.y, i0w.y), vec4<f32>(k0x.y, k0y.y, k0z.y, k0w.y));
    acc = quadUpdate(acc, vec4<f32>(i0x.z, i0y.z, i0z.z, i0w.z), vec4<f32>(k0x.z, k0y.z, k0z.z, k0w.z));
    acc = quadUpdate(acc, vec4<f32>(i0x.w, i0y.w, i0z.w, i0w.w), vec4<f32>(k0x.w, k0y.w, k0z.w, k0w.w));
  }
  for (var j = dQuads; j < d; j++) {
    let s = stats[so + j];
    let t = stats[co + j];
    acc = quadUpdate(acc, (vec4<f32>(z[bI0.x + j], z[bI0.y + j], z[bI0.z + j], z[bI0.w + j]) - s) - t,
                 (vec4<f32>(z[bK0.x + j], z[bK0.y + j], z[bK0.z + j], z[bK0.w + j]) - s) - t);
  }

  var blocks = array<mat4x4<f32>, 4>(acc.a00, acc.a01, acc.a10, acc.a11);
  let inv = 1.0 / f32(n - 1u);
  let lower = dims.lowerHalf != 0u;
  var sumSq = 0.0;
  for (var r = 0u; r < 8u; r++) {
    let i = iq + rowOf(r, qx, qy);
    for (var c = 0u; c < 8u; c++) {
      let k = kq + colOf(c, qx, qy);
      if (i < n && k < n && i <= k) {
        let value = entry(&blocks, r, c);
        let scaled = value * inv;
        sumSq += select(2.0, 1.0, i == k) * scaled * scaled;
        if (WRITE_MATRIX) { gram[packedIndex(i, k, n, lower)] = value; }
      }
    }
  }
  // One partial per quad, summed in a fixed order (the same in every lane: a + b == b + a).
  let pairSum = sumSq + quadSwapX(sumSq);
  let quadSum = pairSum + quadSwapY(pairSum);
  if ((lane & 3u) == 0u) { partials[partialBase + quad] = quadSum; }
}
