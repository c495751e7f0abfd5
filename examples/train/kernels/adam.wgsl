// adam: one Adam update of a parameter tensor from its gradient (Kingma & Ba, as tf.train.adam and torch.optim.Adam):
//
//   m = beta1 m + (1 - beta1) g
//   v = beta2 v + (1 - beta2) g^2
//   p = p - lr (m / c1) / (sqrt(v / c2) + epsilon)        c1 = 1 - beta1^t, c2 = 1 - beta2^t (t = step, from 1)
//
// elementwise over the whole tensor (arrayLength(&param) elements; the four buffers have the same length).
// c1 and c2 are computed on the host in float64 for the step and written to the uniform before the step.
//
// Bindings (group 0):
//   binding 0  param     array<f32>  storage, read_write  updated in place
//   binding 1  grad      array<f32>  storage, read
//   binding 2  m         array<f32>  storage, read_write  first moment (starts at 0)
//   binding 3  v         array<f32>  storage, read_write  second moment (starts at 0)
//   binding 4  settings  Settings    uniform              { lr, beta1, beta2, epsilon, c1, c2 }
//
// Dispatch: workgroup_size(WG), one invocation per element, element = (wid.y * num_workgroups.x + wid.x) * WG
// + lid.x: dispatchWorkgroups(x, y) with x * y >= ceil(count / WG), x <= 65535 (2-D only for huge tensors).
// Invocations past the end return.
//
// Overrides: WG (workgroup size, default 256).

struct Settings {
  lr: f32,
  beta1: f32,
  beta2: f32,
  epsilon: f32,
  c1: f32,
  c2: f32,
  _pad0: f32,
  _pad1: f32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<uniform> settings: Settings;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
  let e = (wid.y * groups.x + wid.x) * WG + lid.x;
  if (e >= arrayLength(&param)) {
    return;
  }
  let g = grad[e];
  let m1 = settings.beta1 * m[e] + (1.0 - settings.beta1) * g;
  let v1 = settings.beta2 * v[e] + (1.0 - settings.beta2) * g * g;
  m[e] = m1;
  v[e] = v1;
  param[e] -= settings.lr * (m1 / settings.c1) / (sqrt(v1 / settings.c2) + settings.epsilon);
}
