// The workgroup Gram kernels' read of one centered element of Z (0 outside the matrix).
// A definition several kernels carry (kernels/shared/README.md).

fn centered(row: u32, column: u32) -> f32 {
  let n = dims.n;
  let d = dims.d;
  let value = z[min(row, n - 1u) * d + min(column, d - 1u)];
  let c = min(column, d - 1u);
  return select(0.0, (value - stats[dims.shiftOffset + c]) - stats[dims.centerOffset + c], row < n && column < d);
}
