// weight_gradient: the gradient of the loss with respect to the shared weights W, given Z_a = X_a W and
// Z_b = X_b W and the upstream gradients dZ_a = dL/dZ_a, dZ_b = dL/dZ_b (both views use the same W, so
// their contributions add):
//
//   dW = X_a^T dZ_a + X_b^T dZ_b
//   dW[k, j] = sum_{i < n} X_a[i, k] * dZ_a[i, j] + X_b[i, k] * dZ_b[i, j]     for k < p, j < d
//
// X_a, X_b are n x p; dZ_a, dZ_b are n x d; dW is p x d; all float32, row-major.
//
// Bindings (group 0):
//   binding 0  xa    array<f32>  storage, read        n*p floats
//   binding 1  dza   array<f32>  storage, read        n*d floats
//   binding 2  xb    array<f32>  storage, read        n*p floats
//   binding 3  dzb   array<f32>  storage, read        n*d floats
//   binding 4  dw    array<f32>  storage, read_write  p*d floats; every element is written (overwritten)
//   binding 5  dims  Dims        uniform              { n, p, d }
//
// Dispatch: workgroup_size(8, 8), one invocation per element of dW: global_id.x = column j,
// global_id.y = row k; dispatchWorkgroups(ceil(d / 8), ceil(p / 8)). Invocations past the edge return.

struct Dims {
  n: u32,
  p: u32,
  d: u32,
  _pad: u32,
}

@group(0) @binding(0) var<storage, read> xa: array<f32>;
@group(0) @binding(1) var<storage, read> dza: array<f32>;
@group(0) @binding(2) var<storage, read> xb: array<f32>;
@group(0) @binding(3) var<storage, read> dzb: array<f32>;
@group(0) @binding(4) var<storage, read_write> dw: array<f32>;
@group(0) @binding(5) var<uniform> dims: Dims;

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let j = id.x;
  let k = id.y;
  if (k >= dims.p || j >= dims.d) {
    return;
  }
  var sum = 0.0;
  for (var i = 0u; i < dims.n; i++) {
    sum += xa[i * dims.p + k] * dza[i * dims.d + j] + xb[i * dims.p + k] * dzb[i * dims.d + j];
  }
  dw[k * dims.d + j] = sum;
}
