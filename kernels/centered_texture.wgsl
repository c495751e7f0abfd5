// centered_texture.wgsl: one group of columns of a view, centered, copied into a storage texture of
// 64-column strips, for the windowed dual backward (covariance_backward_dual_windows.wgsl) to read.
//
// Math (Z one view, n x d row-major; Zc = (Z - shift) - center from column_stats, the same two
// subtractions every kernel that reads Z does):
//   panel[layer q, texel (t, r)] = Zc[r, c0 + 64 q + 4 t .. + 3]   (0 past d, and for r >= n)
//   for strips q = 0 .. width/64 - 1, rows r = 0 .. m-1 (m = n rounded up to 4), t = 0 .. 15;
//   c0 = params.columnStart.
// Why a texture: on lavapipe a storage-buffer load in the backward's loop costs a branch per lane; a
// storage-texture load does not (covariance_backward_dual_windows.wgsl).
//
// Bindings (group 0):
//   0  z4      storage, read     array<vec4<f32>>  n*d/4: Z as vec4s
//   1  stats   storage, read     array<f32>        column_stats layout; shift, center at shiftOffset, centerOffset
//   2  panel   texture_storage_2d_array<rgba32float, write>  16 x m x (width/64)
//   3  params  uniform           BackwardParams (as covariance_backward.wgsl; n, d, shiftOffset,
//                                centerOffset and columnStart are read)
// Dispatch: (4, width / 64, 1) workgroups of 16 threads, the windowed backward's own geometry (so that
// both can share indirect dispatch arguments). Workgroup (x, y) copies the rows r of strip y with
// (r / 32) % 4 == x; thread t copies texel column t.
// Requires: d % 4 == 0.
// Variant: the only one (used with the "windows" dual backward).

struct BackwardParams {
  n: u32, d: u32, shiftOffset: u32, centerOffset: u32,
  varOffset: u32, columnStart: u32, matrixStride: u32, packing: u32,
  invCoef: f32, varWeight: f32, covCoef: f32, gamma: f32,
  eps: f32, panels: u32, _pad4: f32, _pad5: f32,
}

const ROWS: u32 = 32u;          // the backward's row block
const STRIP4: u32 = 16u;        // vec4s per 64-column strip

@group(0) @binding(0) var<storage, read> z4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var panel: texture_storage_2d_array<rgba32float, write>;
@group(0) @binding(3) var<uniform> params: BackwardParams;

@compute @workgroup_size(16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let n = params.n;
  let d4 = params.d / 4u;
  let strip4 = params.columnStart / 4u + wid.y * STRIP4;
  if (strip4 >= d4) { return; }   // a strip of the last group wholly past d: the backward skips it too
  let j4 = strip4 + t;
  let inside = j4 < d4;
  let src = min(j4, d4 - 1u);
  let so = params.shiftOffset + 4u * src;
  let co = params.centerOffset + 4u * src;
  let shift = vec4<f32>(stats[so], stats[so + 1u], stats[so + 2u], stats[so + 3u]);
  let center = vec4<f32>(stats[co], stats[co + 1u], stats[co + 2u], stats[co + 3u]);
  let m = (n + 3u) / 4u * 4u;
  for (var r0 = wid.x * ROWS; r0 < m; r0 += 4u * ROWS) {
    for (var r = r0; r < min(r0 + ROWS, m); r++) {
      let zc = (z4[min(r, n - 1u) * d4 + src] - shift) - center;
      textureStore(panel, vec2<u32>(t, r), wid.y, select(vec4<f32>(0.0), zc, inside && r < n));
    }
  }
}
