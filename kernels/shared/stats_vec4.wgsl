// The shuffle and windows kernels' read of column_stats for 4 consecutive columns.
// A definition several kernels carry (kernels/shared/README.md).

fn statsVec4(offset: u32, column: u32) -> vec4<f32> {
  let o = offset + column;
  return vec4<f32>(stats[o], stats[o + 1u], stats[o + 2u], stats[o + 3u]);
}
