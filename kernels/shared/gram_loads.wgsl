// The register-block Gram kernels' loads of Zc: 4 columns of a row (primal), 4 consecutive values of a row (dual).
// A definition several kernels carry (kernels/shared/README.md).

// Zc at row base b (= i*d) and 4 clamped columns c, centered with their shift s and center t.
fn zc4(b: u32, c: vec4<u32>, s: vec4<f32>, t: vec4<f32>) -> vec4<f32> {
  return (vec4<f32>(z[b + c.x], z[b + c.y], z[b + c.z], z[b + c.w]) - s) - t;
}

// Zc at 4 consecutive columns j.. of the row at base b (= i*d), centered.
fn row4(b: u32, j: u32, s: vec4<f32>, t: vec4<f32>) -> vec4<f32> {
  return (vec4<f32>(z[b + j], z[b + j + 1u], z[b + j + 2u], z[b + j + 3u]) - s) - t;
}
