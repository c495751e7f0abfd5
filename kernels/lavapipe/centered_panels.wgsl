// lavapipe/centered_panels.wgsl: one group of columns of a view, centered, copied into 64-column panels, for the
// dual backward (lavapipe/dual_gradient_shuffle.wgsl) to stream, or for the windowed Gram and
// backward, whose host copies the panels into their texture (copyBufferToTexture: a strip is a layer, a
// row of 64 floats a row of 16 texels; lavapipe/dual_gram_windows.wgsl, lavapipe/dual_gradient_windows.wgsl)
// where the view cannot be copied into it as it is.
//
// Math (Z one view, n x d row-major; Zc = (Z - shift) - center from column_stats, the same two
// subtractions the kernels that read Z do, so the copy is bitwise what they would compute):
//   panel[(q n + r) 64 + t] = Zc[r, c0 + 64 q + t]   (0 where c0 + 64 q + t >= d)
//   for strips q = 0 .. width/64 - 1, rows r = 0 .. n-1, t = 0 .. 63; c0 = params.columnStart.
// Why: each workgroup of the dual backward streams one 64-column strip of Zc over all n rows. Read from
// Z, that strip is n pieces of 256 bytes, each on its own page when d >= 1024 (at 2048 x 8192: 2048 pages,
// more than the TLB holds, for every workgroup); in a panel it is n * 256 contiguous bytes. The copy costs
// one pass over the group's columns, which pays from 512 rows (docs/lavapipe.md, "shuffle").
//
// Bindings (group 0):
//   0  z4      storage, read        array<vec4<f32>>  n*d/4: Z as vec4s
//   1  stats   storage, read        array<f32>        column_stats layout; shift, center at shiftOffset, centerOffset
//   2  panel4  storage, read_write  array<vec4<f32>>  n*width/4 (width = the group's columns, a multiple of 64)
//   3  params  uniform              BackwardParams (as tiled/primal_gradient.wgsl; n, d, shiftOffset,
//                                   centerOffset and columnStart are read)
// Dispatch: (X, width / 64, 1) workgroups of 16 threads; workgroup (x, y) copies the row blocks
// ROWS x' .. ROWS x' + ROWS - 1 of strip y with x' = x, x + X, ...; thread t copies vec4 column t of the
// strip. X = ceil(n / ROWS) (one block each) for the subgroup dual backward, whose geometry this is (so
// that both can share indirect dispatch arguments), and 4 for the windowed Gram and backward, whose
// geometry that is, for the same reason.
// Requires: d % 4 == 0.
// Variant: "shuffle" and "windows" (lavapipe): the shuffle dual gradient's panels, the windows kernels' packed texture.

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
@group(0) @binding(2) var<storage, read_write> panel4: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> params: BackwardParams;

// Rows r0 .. r0 + ROWS - 1 (those below n) of the strip at base (rows), vec4 column t.
fn copyRows(r0: u32, base: u32, t: u32, src: u32, inside: bool, shift: vec4<f32>, center: vec4<f32>) {
  let n = params.n;
  let d4 = params.d / 4u;
  if (r0 + ROWS <= n) {
    for (var r = r0; r < r0 + ROWS; r += 4u) {
      let z0 = (z4[r * d4 + src] - shift) - center;
      let z1 = (z4[(r + 1u) * d4 + src] - shift) - center;
      let z2 = (z4[(r + 2u) * d4 + src] - shift) - center;
      let z3 = (z4[(r + 3u) * d4 + src] - shift) - center;
      panel4[(base + r) * STRIP4 + t] = select(vec4<f32>(0.0), z0, inside);
      panel4[(base + r + 1u) * STRIP4 + t] = select(vec4<f32>(0.0), z1, inside);
      panel4[(base + r + 2u) * STRIP4 + t] = select(vec4<f32>(0.0), z2, inside);
      panel4[(base + r + 3u) * STRIP4 + t] = select(vec4<f32>(0.0), z3, inside);
    }
  } else {
    for (var r = r0; r < n; r++) {
      let zc = (z4[r * d4 + src] - shift) - center;
      panel4[(base + r) * STRIP4 + t] = select(vec4<f32>(0.0), zc, inside);
    }
  }
}

@compute @workgroup_size(16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
  let n = params.n;
  let d4 = params.d / 4u;
  let strip4 = params.columnStart / 4u + wid.y * STRIP4;
  if (strip4 >= d4) { return; }   // a strip of the last group wholly past d: the backward skips it too
  let j4 = strip4 + t;
  let inside = j4 < d4;
  let column = 4u * min(j4, d4 - 1u);
  let so = params.shiftOffset + column;
  let co = params.centerOffset + column;
  let shift = vec4<f32>(stats[so], stats[so + 1u], stats[so + 2u], stats[so + 3u]);
  let center = vec4<f32>(stats[co], stats[co + 1u], stats[co + 2u], stats[co + 3u]);
  let src = min(j4, d4 - 1u);
  // Row blocks x, x + groups.x, ...: one each with the subgroup backward's geometry, 128 rows apart with
  // the windowed kernels' (4 along x).
  for (var r0 = wid.x * ROWS; r0 < n; r0 += groups.x * ROWS) { copyRows(r0, wid.y * n, t, src, inside, shift, center); }
}
