// dense: one tiled matrix product with an optional epilogue, for every matmul of the MLP.
//
//   C[m, n] = epilogue( sum_{k < K} opA(A)[m, k] * opB(B)[k, n] )     for m < M, n < N
//
//   opA(A) = A (stored M x K) or, with TRANS_A, A^T (A stored K x M); opB(B) = B (stored K x N) or, with
//   TRANS_B, B^T (B stored N x K). All float32, row-major. The MLP uses it three ways:
//     forward        Y = X W + b (then ReLU)         no transposes, EPILOGUE 2 or 1
//     weight grad    dW = X^T dPre                   TRANS_A,       EPILOGUE 0
//     input grad     dX = (dPre W^T) * (X > 0)       TRANS_B,       EPILOGUE 3 (the ReLU mask of the layer below) or 0
//
// Epilogues (EPILOGUE):
//   0  C = sum
//   1  C = sum + aux[n]                          (bias)
//   2  C = max(sum + aux[n], 0)                  (bias, ReLU)
//   3  C = select(0, sum, aux[m * N + n] > 0)    (mask by another M x N buffer; select, so a masked NaN is still 0)
//
// Entry points (the same bindings, results and dispatch):
//   main       any shape.
//   main_vec4  reads A and B as vec4s; requires that the stored rows of A and B hold a multiple of 4 floats
//              (K, or M with TRANS_A; N, or K with TRANS_B).
//
// Bindings (group 0):
//   binding 0  a     storage, read        M*K floats; array<f32> (main), array<vec4<f32>> (main_vec4)
//   binding 1  b     storage, read        K*N floats; array<f32> (main), array<vec4<f32>> (main_vec4)
//   binding 2  c     storage, read_write  array<f32>, M*N floats; every element is written
//   binding 3  aux   storage, read        array<f32>, the bias (N floats) or the mask (M*N floats); unread by epilogue 0
//   binding 4  dims  uniform              Dims { M, N, K }
//
// Dispatch: workgroup_size(WG_X, WG_Y); each workgroup computes a (WG_Y*16) x (WG_X*8) tile of C (64 x 64 by
// default), dispatchWorkgroups(ceil(N / (WG_X*8)), ceil(M / (WG_Y*16))). Each invocation computes a 16 x 8
// block: rows 4*(lid.y + q*WG_Y) + (0..3) for q < 4, columns 4*(lid.x + p*WG_X) + (0..3) for p < 2, so it
// reads its operands from workgroup memory as vec4s (4 of A's and 2 of B's per step of k for 128
// multiply-adds). K is walked in slices of TILE_K staged in workgroup memory, k-major as vec4s along m and
// n; elements past M, N or K stage as 0 and are not stored, so no shape needs padding. Each element's sum
// runs over k in increasing order (a multiply, then an add), so results are deterministic, and the two
// entry points give the same bits.
//
// Overrides: TRANS_A, TRANS_B (bool, default false), EPILOGUE (u32, default 0), and the tunables WG_X, WG_Y
// (workgroup shape, default 8 x 4) and TILE_K (K slice, a multiple of 4, default 16). The 16 x 8 block per
// invocation is fixed (its accumulators are spelled out, so every index into them is a constant).

struct Dims {
  m: u32,
  n: u32,
  k: u32,
  _pad: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override EPILOGUE: u32 = 0u;
override WG_X: u32 = 8u;
override WG_Y: u32 = 4u;
override TILE_K: u32 = 16u;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(0) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;
@group(0) @binding(4) var<uniform> dims: Dims;

// The K slice of opA's and opB's tiles, k-major: tile_a[kk * WG_Y * 4 + i] holds rows 4i .. 4i+3 of the tile
// at k0 + kk, tile_b[kk * WG_X * 2 + j] columns 4j .. 4j+3.
var<workgroup> tile_a: array<vec4<f32>, TILE_K * WG_Y * 4>;
var<workgroup> tile_b: array<vec4<f32>, TILE_K * WG_X * 2>;

// An invocation's 16 x 8 block as eight 4 x 4 blocks: a<R><C>[r][c] is row r of row group R, column c of column group C.
struct Acc {
  a00: mat4x4<f32>, a01: mat4x4<f32>, a10: mat4x4<f32>, a11: mat4x4<f32>,
  a20: mat4x4<f32>, a21: mat4x4<f32>, a30: mat4x4<f32>, a31: mat4x4<f32>,
}
fn zeroAcc() -> Acc {
  return Acc(mat4x4<f32>(), mat4x4<f32>(), mat4x4<f32>(), mat4x4<f32>(), mat4x4<f32>(), mat4x4<f32>(), mat4x4<f32>(), mat4x4<f32>());
}

fn rank1(acc: mat4x4<f32>, x: vec4<f32>, y: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(acc[0] + x.x * y, acc[1] + x.y * y, acc[2] + x.z * y, acc[3] + x.w * y);
}

// The products of one TILE_K slice staged in workgroup memory, k in increasing order.
fn multiplySlice(acc_in: Acc, lx: u32, ly: u32) -> Acc {
  var acc = acc_in;
  let sa = WG_Y * 4u;
  let sb = WG_X * 2u;
  for (var kk = 0u; kk < TILE_K; kk++) {
    let x0 = tile_a[kk * sa + ly];
    let x1 = tile_a[kk * sa + ly + WG_Y];
    let x2 = tile_a[kk * sa + ly + 2u * WG_Y];
    let x3 = tile_a[kk * sa + ly + 3u * WG_Y];
    let y0 = tile_b[kk * sb + lx];
    let y1 = tile_b[kk * sb + lx + WG_X];
    acc = Acc(rank1(acc.a00, x0, y0), rank1(acc.a01, x0, y1), rank1(acc.a10, x1, y0), rank1(acc.a11, x1, y1),
              rank1(acc.a20, x2, y0), rank1(acc.a21, x2, y1), rank1(acc.a30, x3, y0), rank1(acc.a31, x3, y1));
  }
  return acc;
}

// Writes row r of a 4 x 4 block at (gm, gn0 .. gn0+3) through the epilogue; columns past N are skipped.
fn storeRow(v: vec4<f32>, gm: u32, gn0: u32) {
  for (var j = 0u; j < 4u; j++) {
    let gn = gn0 + j;
    if (gn >= dims.n) {
      return;
    }
    var s = v[j];
    if (EPILOGUE == 1u || EPILOGUE == 2u) {
      s += aux[gn];
    }
    if (EPILOGUE == 2u) {
      s = max(s, 0.0);
    }
    if (EPILOGUE == 3u) {
      s = select(0.0, s, aux[gm * dims.n + gn] > 0.0);
    }
    c[gm * dims.n + gn] = s;
  }
}

fn storeBlock(acc: Acc, lx: u32, ly: u32, wid: vec3<u32>) {
  let row0 = wid.y * WG_Y * 16u;
  let col0 = wid.x * WG_X * 8u;
  let blocks = array<mat4x4<f32>, 8>(acc.a00, acc.a01, acc.a10, acc.a11, acc.a20, acc.a21, acc.a30, acc.a31);
  for (var q = 0u; q < 8u; q++) {
    let gm0 = row0 + 4u * (ly + (q >> 1u) * WG_Y);
    let gn0 = col0 + 4u * (lx + (q & 1u) * WG_X);
    for (var r = 0u; r < 4u; r++) {
      if (gm0 + r < dims.m) {
        storeRow(blocks[q][r], gm0 + r, gn0);
      }
    }
  }
}

// opA(A)[gm, gk] and opB(B)[gk, gn], 0 outside the matrices.
fn loadA(gm: u32, gk: u32) -> f32 {
  if (gm >= dims.m || gk >= dims.k) {
    return 0.0;
  }
  return a[select(gm * dims.k + gk, gk * dims.m + gm, TRANS_A)];
}
fn loadB(gk: u32, gn: u32) -> f32 {
  if (gn >= dims.n || gk >= dims.k) {
    return 0.0;
  }
  return b[select(gk * dims.n + gn, gn * dims.k + gk, TRANS_B)];
}

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let row0 = wid.y * WG_Y * 16u;
  let col0 = wid.x * WG_X * 8u;
  let threads = WG_X * WG_Y;
  let t = lid.y * WG_X + lid.x;
  let sa = WG_Y * 4u;
  let sb = WG_X * 2u;
  var acc = zeroAcc();
  for (var k0 = 0u; k0 < dims.k; k0 += TILE_K) {
    // Each staged vec4 is 4 consecutive rows (columns) at one k; consecutive invocations take consecutive
    // addresses of the stored matrix where they can (along m with TRANS_A, along k without).
    for (var e = t; e < TILE_K * sa; e += threads) {
      let kk = select(e % TILE_K, e / sa, TRANS_A);
      let i = select(e / TILE_K, e % sa, TRANS_A);
      let gm = row0 + 4u * i;
      let gk = k0 + kk;
      tile_a[kk * sa + i] = vec4<f32>(loadA(gm, gk), loadA(gm + 1u, gk), loadA(gm + 2u, gk), loadA(gm + 3u, gk));
    }
    for (var e = t; e < TILE_K * sb; e += threads) {
      let kk = select(e / sb, e % TILE_K, TRANS_B);
      let j = select(e % sb, e / TILE_K, TRANS_B);
      let gn = col0 + 4u * j;
      let gk = k0 + kk;
      tile_b[kk * sb + j] = vec4<f32>(loadB(gk, gn), loadB(gk, gn + 1u), loadB(gk, gn + 2u), loadB(gk, gn + 3u));
    }
    workgroupBarrier();
    acc = multiplySlice(acc, lid.x, lid.y);
    // The next slice overwrites the tiles only after every invocation has read this one.
    workgroupBarrier();
  }
  storeBlock(acc, lid.x, lid.y, wid);
}

// A vec4 of the stored A (B) at row r, floats 4q .. 4q+3, where the row holds w floats (a multiple of 4):
// 0 if r >= rows or 4q >= w.
fn loadA4(r: u32, q: u32, rows: u32, w: u32) -> vec4<f32> {
  if (r >= rows || 4u * q >= w) {
    return vec4<f32>();
  }
  return a4[r * (w / 4u) + q];
}
fn loadB4(r: u32, q: u32, rows: u32, w: u32) -> vec4<f32> {
  if (r >= rows || 4u * q >= w) {
    return vec4<f32>();
  }
  return b4[r * (w / 4u) + q];
}

@compute @workgroup_size(WG_X, WG_Y)
fn main_vec4(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let row0 = wid.y * WG_Y * 16u;
  let col0 = wid.x * WG_X * 8u;
  let threads = WG_X * WG_Y;
  let t = lid.y * WG_X + lid.x;
  let sa = WG_Y * 4u;
  let sb = WG_X * 2u;
  let k4 = TILE_K / 4u;
  var acc = zeroAcc();
  for (var k0 = 0u; k0 < dims.k; k0 += TILE_K) {
    // Staged in 4 x 4 blocks (4 rows or columns of the tile by 4 k), 4 vec4 loads each: along m (n) as they
    // are staged where A is stored K x M (B is stored K x N), along k and transposed otherwise.
    for (var e = t; e < k4 * sa; e += threads) {
      let kq = select(e % k4, e / sa, TRANS_A);
      let i = select(e / k4, e % sa, TRANS_A);
      let gm = row0 + 4u * i;
      let gk = k0 + 4u * kq;
      let base = 4u * kq * sa + i;
      if (TRANS_A) {
        for (var r = 0u; r < 4u; r++) {
          tile_a[base + r * sa] = loadA4(gk + r, gm / 4u, dims.k, dims.m);
        }
      } else {
        let v = mat4x4<f32>(loadA4(gm, gk / 4u, dims.m, dims.k), loadA4(gm + 1u, gk / 4u, dims.m, dims.k),
                            loadA4(gm + 2u, gk / 4u, dims.m, dims.k), loadA4(gm + 3u, gk / 4u, dims.m, dims.k));
        let vt = transpose(v);
        for (var r = 0u; r < 4u; r++) {
          tile_a[base + r * sa] = vt[r];
        }
      }
    }
    for (var e = t; e < k4 * sb; e += threads) {
      let kq = select(e / sb, e % k4, TRANS_B);
      let j = select(e % sb, e / k4, TRANS_B);
      let gn = col0 + 4u * j;
      let gk = k0 + 4u * kq;
      let base = 4u * kq * sb + j;
      if (TRANS_B) {
        let v = mat4x4<f32>(loadB4(gn, gk / 4u, dims.n, dims.k), loadB4(gn + 1u, gk / 4u, dims.n, dims.k),
                            loadB4(gn + 2u, gk / 4u, dims.n, dims.k), loadB4(gn + 3u, gk / 4u, dims.n, dims.k));
        let vt = transpose(v);
        for (var r = 0u; r < 4u; r++) {
          tile_b[base + r * sb] = vt[r];
        }
      } else {
        for (var r = 0u; r < 4u; r++) {
          tile_b[base + r * sb] = loadB4(gk + r, gn / 4u, dims.k, dims.n);
        }
      }
    }
    workgroupBarrier();
    acc = multiplySlice(acc, lid.x, lid.y);
    workgroupBarrier();
  }
  storeBlock(acc, lid.x, lid.y, wid);
}
