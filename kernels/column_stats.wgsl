// column_stats.wgsl: fused column statistics of both views and the invariance partial sums.
//
// Math (per column j, over the n rows i; A, B are n x d, row-major):
//   meanA_j = (1/n) sum_i A_ij                 varA_j = (1/(n-1)) sum_i (A_ij - meanA_j)^2
//   meanB_j, varB_j likewise                   sqDiff_j = sum_i (A_ij - B_ij)^2
//   The mean is stored as shift_j + center_j, shift_j = Z_0j (the column's first element) and
//   center_j = mean_j - shift_j, and kernels center as (Z_ij - shift_j) - center_j: the first subtraction
//   is exact for nearby values, so a large common offset (1e4) costs no accuracy, where rounding
//   mean_j to float32 would shift every centered value by up to half an ulp of the offset.
//   flags: for each view, the first row whose element in column j is NaN or Inf (row + 1; 0 if none), and
//   that element's bits, so the host can name the view, row, column and value without reading inputs.
// One pass over A and B. The sums are of shifted values (x - x_0j, with x_0j the column's first
// element), so var = (S2 - S1^2/n)/(n-1) does not cancel catastrophically for a large common offset,
// unlike E[x^2] - E[x]^2; and they are accumulated in blocks of ROW_BLOCK rows, which bounds the
// rounding error of long columns (a two-level summation).
// Finiteness is read from the exponent bits: WGSL lets compilers assume float values are finite, so a
// comparison like x != x may be optimized away.
//
// Bindings (group 0):
//   0  a       storage, read        array<f32>   n*d
//   1  b       storage, read        array<f32>   n*d
//   2  stats   storage, read_write  array<f32>   7*d: [shiftA | shiftB | centerA | centerB | varA | varB | sqDiff],
//                                                d each
//   3  flags   storage, read_write  array<u32>   4*d: [rowA + 1 | rowB + 1 | bitsA | bitsB], d each
//   4  dims    uniform              Dims { n, d }
// Dispatch: (ceil(d / WG), 1, 1) workgroups of WG threads; one thread per column. Adjacent threads read
// adjacent columns of a row, so loads are contiguous across the workgroup.
// Variant: scalar, one column per thread (the only one; this pass is memory-bound and small).

struct Dims { n: u32, d: u32 }

override WG: u32 = 64;
const ROW_BLOCK: u32 = 64u;
const EXPONENT_MASK: u32 = 0x7f800000u;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> flags: array<u32>;
@group(0) @binding(4) var<uniform> dims: Dims;

fn isNonFinite(x: f32) -> bool {
  return (bitcast<u32>(x) & EXPONENT_MASK) == EXPONENT_MASK;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  let n = dims.n;
  let d = dims.d;
  if (j >= d) { return; }

  let shiftA = a[j];
  let shiftB = b[j];
  var sumA = 0.0; var sumSqA = 0.0;
  var sumB = 0.0; var sumSqB = 0.0;
  var sqDiff = 0.0;
  var badRowA = 0u; var badRowB = 0u;
  var badBitsA = 0u; var badBitsB = 0u;

  for (var i0 = 0u; i0 < n; i0 += ROW_BLOCK) {
    var blockA = 0.0; var blockSqA = 0.0;
    var blockB = 0.0; var blockSqB = 0.0;
    var blockDiff = 0.0;
    let i1 = min(i0 + ROW_BLOCK, n);
    for (var i = i0; i < i1; i++) {
      let x = a[i * d + j];
      let y = b[i * d + j];
      if (badRowA == 0u && isNonFinite(x)) { badRowA = i + 1u; badBitsA = bitcast<u32>(x); }
      if (badRowB == 0u && isNonFinite(y)) { badRowB = i + 1u; badBitsB = bitcast<u32>(y); }
      let xs = x - shiftA;
      let ys = y - shiftB;
      blockA += xs; blockSqA = fma(xs, xs, blockSqA);
      blockB += ys; blockSqB = fma(ys, ys, blockSqB);
      let diff = x - y;
      blockDiff = fma(diff, diff, blockDiff);
    }
    sumA += blockA; sumSqA += blockSqA;
    sumB += blockB; sumSqB += blockSqB;
    sqDiff += blockDiff;
  }

  let nf = f32(n);
  let meanShiftA = sumA / nf;
  let meanShiftB = sumB / nf;
  // max(0, .): rounding may leave a tiny negative sum of squares for a constant column.
  let varA = max(0.0, sumSqA - sumA * meanShiftA) / (nf - 1.0);
  let varB = max(0.0, sumSqB - sumB * meanShiftB) / (nf - 1.0);

  stats[j] = shiftA;
  stats[d + j] = shiftB;
  stats[2u * d + j] = meanShiftA;
  stats[3u * d + j] = meanShiftB;
  stats[4u * d + j] = varA;
  stats[5u * d + j] = varB;
  stats[6u * d + j] = sqDiff;
  flags[j] = badRowA;
  flags[d + j] = badRowB;
  flags[2u * d + j] = badBitsA;
  flags[3u * d + j] = badBitsB;
}
