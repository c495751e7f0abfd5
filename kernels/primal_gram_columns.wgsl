// primal_gram_columns.wgsl: one block of columns of one view's Coff (the covariance with its diagonal set
// to 0), for a d x d matrix past the device's binding size limit: backward then forms Coff one block of
// columns at a time and runs a gradient kernel on each (packing 0).
//
// Math (Z one view, n x d row-major; Zc = (Z - shift) - center from column_stats, as Z is loaded):
//   C_lm = (1/(n-1)) sum_i Zc_il Zc_im      for all rows l in [0, d), columns m in [blockStart, blockStart + blockWidth)
//   covOffDiag[l * blockWidth + (m - blockStart)] = C_lm, 0 where l = m
// Centering happens as Z is loaded, as (Z - shift) - center (see column_stats.wgsl); never as
// Z^T Z - n mean mean^T, which cancels for large offsets.
//
// Bindings (group 0):
//   0  z           storage, read        array<f32>  n*d
//   1  stats       storage, read        array<f32>  column_stats layout; this view's shift and center at
//                                                 shiftOffset, centerOffset
//   2  covOffDiag  storage, read_write  array<f32>  d*blockWidth: the block, row-major
//   3  dims        uniform              GramDims { n, d, .., shiftOffset, centerOffset, blockStart, blockWidth }
// Dispatch: (ceil(blockWidth / (4*WG)), ceil(d / (4*WG)), 1) workgroups of (WG, WG) threads; each thread
// accumulates a 4 x 4 register block of C.
// Variant: every variant's blocked backward (the primal form past the binding limit).

struct GramDims { n: u32, d: u32, tiles: u32, partialOffset: u32, shiftOffset: u32, centerOffset: u32, blockStart: u32, blockWidth: u32, lowerHalf: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

override WG: u32 = 8;
const BLOCK: u32 = 4u;   // rows and columns of C per thread

@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> covOffDiag: array<f32>;
@group(0) @binding(3) var<uniform> dims: GramDims;

@compute @workgroup_size(WG, WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let n = dims.n;
  let d = dims.d;
  let columnEnd = min(d, dims.blockStart + dims.blockWidth);
  let offs = vec4<u32>(0u, 1u, 2u, 3u);
  let l = vec4<u32>(wid.y * WG * BLOCK + lid.y * BLOCK) + offs;                    // this thread's rows of C
  let m = vec4<u32>(dims.blockStart + wid.x * WG * BLOCK + lid.x * BLOCK) + offs;  // this thread's columns of C
  // Out-of-range rows and columns are clamped for the load and never written.
  let lc = min(l, vec4<u32>(d - 1u));
  let mc = min(m, vec4<u32>(columnEnd - 1u));
  let so = dims.shiftOffset;
  let co = dims.centerOffset;
  let shiftL = vec4<f32>(stats[so + lc.x], stats[so + lc.y], stats[so + lc.z], stats[so + lc.w]);
  let shiftM = vec4<f32>(stats[so + mc.x], stats[so + mc.y], stats[so + mc.z], stats[so + mc.w]);
  let centerL = vec4<f32>(stats[co + lc.x], stats[co + lc.y], stats[co + lc.z], stats[co + lc.w]);
  let centerM = vec4<f32>(stats[co + mc.x], stats[co + mc.y], stats[co + mc.z], stats[co + mc.w]);

  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var i = 0u; i < n; i++) {
    let row = i * d;
    let zl = (vec4<f32>(z[row + lc.x], z[row + lc.y], z[row + lc.z], z[row + lc.w]) - shiftL) - centerL;
    let zm = (vec4<f32>(z[row + mc.x], z[row + mc.y], z[row + mc.z], z[row + mc.w]) - shiftM) - centerM;
    acc0 = fma(vec4<f32>(zl.x), zm, acc0);
    acc1 = fma(vec4<f32>(zl.y), zm, acc1);
    acc2 = fma(vec4<f32>(zl.z), zm, acc2);
    acc3 = fma(vec4<f32>(zl.w), zm, acc3);
  }

  let inv = 1.0 / f32(n - 1u);
  let block = array<vec4<f32>, 4>(acc0 * inv, acc1 * inv, acc2 * inv, acc3 * inv);
  for (var r = 0u; r < BLOCK; r++) {
    for (var c = 0u; c < BLOCK; c++) {
      if (l[r] < d && m[c] < columnEnd) {
        covOffDiag[l[r] * dims.blockWidth + (m[c] - dims.blockStart)] = select(block[r][c], 0.0, l[r] == m[c]);
      }
    }
  }
}
