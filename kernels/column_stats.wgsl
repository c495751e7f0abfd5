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
// One pass over A and B (and, for a column holding a NaN or Inf, a second one over that column to find
// its first: the main loop only notes that there is one, since a conditional write per element costs a
// masked blend on lavapipe). The sums are of shifted values (x - x_0j, with x_0j the column's first
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
// Variant: scalar, one column per thread, four rows per loop iteration (the only one; a small pass:
// 19 -> 12 ms at 2048 x 2048 with four rows a step, 71 -> 65 ms at 2048 x 8192, where it is bound by
// memory, a page per row; `npm run bench -- --kernels --shapes 2048x2048,2048x8192`).

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

fn anyNonFinite(x: vec4<f32>) -> bool {
  return any((bitcast<vec4<u32>>(x) & vec4<u32>(EXPONENT_MASK)) == vec4<u32>(EXPONENT_MASK));
}

// The first row of column j (of a or b) whose element is NaN or Inf, as row + 1 and that element's bits;
// (0, 0) if none. Runs only for a column the main loop flagged.
fn firstNonFinite(j: u32, n: u32, d: u32, ofB: bool) -> vec2<u32> {
  for (var i = 0u; i < n; i++) {
    let x = select(a[i * d + j], b[i * d + j], ofB);
    if (isNonFinite(x)) { return vec2<u32>(i + 1u, bitcast<u32>(x)); }
  }
  return vec2<u32>(0u, 0u);
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
  // Any non-finite element seen (per view, bit 0: A, bit 1: B); the first one is looked up afterwards.
  var seen = 0u;

  for (var i0 = 0u; i0 < n; i0 += ROW_BLOCK) {
    var blockA = 0.0; var blockSqA = 0.0;
    var blockB = 0.0; var blockSqB = 0.0;
    var blockDiff = 0.0;
    let i1 = min(i0 + ROW_BLOCK, n);
    // Four rows per iteration: each write to a loop-carried sum costs a masked blend on lavapipe (see
    // the subgroup kernels' headers), so each sum takes four rows at a time.
    var i = i0;
    for (; i + 4u <= i1; i += 4u) {
      let x = vec4<f32>(a[i * d + j], a[(i + 1u) * d + j], a[(i + 2u) * d + j], a[(i + 3u) * d + j]);
      let y = vec4<f32>(b[i * d + j], b[(i + 1u) * d + j], b[(i + 2u) * d + j], b[(i + 3u) * d + j]);
      seen |= select(0u, 1u, anyNonFinite(x)) | select(0u, 2u, anyNonFinite(y));
      let xs = x - vec4<f32>(shiftA);
      let ys = y - vec4<f32>(shiftB);
      let diff = x - y;
      blockA += (xs.x + xs.y) + (xs.z + xs.w); blockSqA += dot(xs, xs);
      blockB += (ys.x + ys.y) + (ys.z + ys.w); blockSqB += dot(ys, ys);
      blockDiff += dot(diff, diff);
    }
    for (; i < i1; i++) {
      let x = a[i * d + j];
      let y = b[i * d + j];
      seen |= select(0u, 1u, isNonFinite(x)) | select(0u, 2u, isNonFinite(y));
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

  var badA = vec2<u32>(0u, 0u);
  var badB = vec2<u32>(0u, 0u);
  if ((seen & 1u) != 0u) { badA = firstNonFinite(j, n, d, false); }
  if ((seen & 2u) != 0u) { badB = firstNonFinite(j, n, d, true); }

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
  flags[j] = badA.x;
  flags[d + j] = badB.x;
  flags[2u * d + j] = badA.y;
  flags[3u * d + j] = badB.y;
}
