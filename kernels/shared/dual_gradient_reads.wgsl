// The dual gradient kernels' reads of K (packed) and of Zc.
// A definition several kernels carry (kernels/shared/README.md).

// K_ik of this view, from the packed matrix (packing 1: view A, 2: view B).
fn gramAt(i: u32, k: u32) -> f32 {
  return gram[packedIndex(min(i, k), max(i, k), params.n, params.packing == 2u)];
}

// K at 4 rows of one column k, at a + iTerm (a = k*strideK).
fn gram4(a: u32, iTerm: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(gram[a + iTerm.x], gram[a + iTerm.y], gram[a + iTerm.z], gram[a + iTerm.w]);
}

fn gramGeneral(i: vec4<u32>, k: u32) -> vec4<f32> { return vec4<f32>(gramAt(i.x, k), gramAt(i.y, k), gramAt(i.z, k), gramAt(i.w, k)); }

// Zc at row k (base b = k*d) and 4 columns j with their shift s and center t.
fn zcRow4(b: u32, j: vec4<u32>, s: vec4<f32>, t: vec4<f32>) -> vec4<f32> {
  return (vec4<f32>(z[b + j.x], z[b + j.y], z[b + j.z], z[b + j.w]) - s) - t;
}
