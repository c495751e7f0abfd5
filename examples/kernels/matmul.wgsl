// matmul: the projector's forward pass for one view, Z = X W.
//
//   Z[i, j] = sum_{k < p} X[i, k] * W[k, j]        for i < n (samples), j < d (features)
//
// X is n x p, W is p x d, Z is n x d; all float32, row-major.
//
// Bindings (group 0):
//   binding 0  x     array<f32>  storage, read        n*p floats
//   binding 1  w     array<f32>  storage, read        p*d floats
//   binding 2  z     array<f32>  storage, read_write  n*d floats; every element is written
//   binding 3  dims  Dims        uniform              { n, p, d }
//
// Dispatch: workgroup_size(8, 8), one invocation per element of Z: global_id.x = column j,
// global_id.y = row i; dispatchWorkgroups(ceil(d / 8), ceil(n / 8)). Invocations past the edge return.
//
// A plain dot product per element: p is a few tens here, so a shared-memory tiled kernel would add length
// and buy nothing measurable.

struct Dims {
  n: u32,
  p: u32,
  d: u32,
  _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> z: array<f32>;
@group(0) @binding(3) var<uniform> dims: Dims;

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let j = id.x;
  let i = id.y;
  if (i >= dims.n || j >= dims.d) {
    return;
  }
  var sum = 0.0;
  for (var k = 0u; k < dims.p; k++) {
    sum += x[i * dims.p + k] * w[k * dims.d + j];
  }
  z[i * dims.d + j] = sum;
}
