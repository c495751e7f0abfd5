// sgd_update: one step of plain gradient descent on the weights, in place.
//
//   W[e] = W[e] - lr * dW[e]        for every element e < count (count = p*d)
//
// Bindings (group 0):
//   binding 0  w       array<f32>  storage, read_write  count floats, updated in place
//   binding 1  grad    array<f32>  storage, read        count floats (dW)
//   binding 2  params  Params      uniform              { count, lr }
//
// Dispatch: workgroup_size(64), one invocation per element: dispatchWorkgroups(ceil(count / 64)).
// Invocations past the end return.

struct Params {
  count: u32,
  lr: f32,
}

@group(0) @binding(0) var<storage, read_write> w: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let e = id.x;
  if (e >= params.count) {
    return;
  }
  w[e] = w[e] - params.lr * grad[e];
}
