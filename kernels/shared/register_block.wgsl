// The register-block kernels' (tiled/, subgroup/) 8 x 8 block per thread: four mat4x4 accumulators, a
// contraction step as four rank-1 updates, where an entry of the block sits in the tile, and 4 statistics.
// A definition several kernels carry (kernels/shared/README.md).

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

fn rowOf(r: u32, qx: u32, qy: u32) -> u32 { return 8u * qy + 4u * select(qx, 1u - qx, r >= 4u) + (r & 3u); }

fn colOf(c: u32, qx: u32, qy: u32) -> u32 { return 8u * qx + 4u * select(qy, 1u - qy, c >= 4u) + (c & 3u); }

fn stat4(o: u32, c: vec4<u32>) -> vec4<f32> { return vec4<f32>(stats[o + c.x], stats[o + c.y], stats[o + c.z], stats[o + c.w]); }
