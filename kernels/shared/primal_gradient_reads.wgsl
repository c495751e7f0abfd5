// The primal gradient kernels' reads of Coff (packed, or a plain matrix or column block) and of Zc.
// A definition several kernels carry (kernels/shared/README.md).

// Coff_kj of this view: packed (packing 1: view A, 2: view B), or with packing 0 from a plain matrix or
// column block at k*matrixStride + (j - columnStart).
fn coffAt(k: u32, j: u32) -> f32 {
  if (params.packing == 0u) { return covOffDiag[k * params.matrixStride + (j - params.columnStart)]; }
  return covOffDiag[packedIndex(min(k, j), max(k, j), params.d, params.packing == 2u)];
}

// Coff at 4 columns of one row k, at a + jTerm (a = k*strideK).
fn coff4(a: u32, jTerm: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(covOffDiag[a + jTerm.x], covOffDiag[a + jTerm.y], covOffDiag[a + jTerm.z], covOffDiag[a + jTerm.w]);
}

fn coffGeneral(k: u32, j: vec4<u32>) -> vec4<f32> { return vec4<f32>(coffAt(k, j.x), coffAt(k, j.y), coffAt(k, j.z), coffAt(k, j.w)); }

// Zc at column k of 4 rows (row bases b = i*d).
fn zcAt(b: vec4<u32>, k: u32) -> vec4<f32> {
  let s = stats[params.shiftOffset + k];
  let t = stats[params.centerOffset + k];
  return (vec4<f32>(z[b.x + k], z[b.y + k], z[b.z + k], z[b.w + k]) - s) - t;
}
