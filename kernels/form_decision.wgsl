// form_decision.wgsl: on the device, after the dual form's loss_terms, decides whether the dual form kept
// float32 accuracy, and writes the indirect dispatch arguments of the passes that follow: the primal
// form's Gram, loss_terms and backward passes run (non-zero workgroup counts) only when it did not, and
// the dual backward (with its column-panel copies, which share its arguments) only when it did. This lets a training loop encode forward and backward with no
// host round trip and still get the accuracy fallback (the host-driven forward() does the same by reading
// the shares back).
//
// Math: fallBack = min(shareA, shareB) < minShare, or a share is NaN (shares from loss_terms: the
//   off-diagonal part of ||C||_F^2 over the whole, per view).
//
// Bindings (group 0):
//   0  result  storage, read        array<f32>  8 (loss_terms layout; shares at 5 and 6)
//   1  args    storage, read_write  array<u32>  15: [primal gram x, y, z | primal loss_terms x, y, z |
//                                                    primal backward x, y, z | dual backward x, y, z |
//                                                    primal mirrored backward x, y, z (0 workgroups
//                                                    where the primal variant has no mirrored pass)]
//   2  params  uniform              DecisionParams
// Dispatch: (1, 1, 1) workgroup of 1 thread.
// Variant: the only one.

struct DecisionParams {
  primalGram: vec2<u32>, primalBackward: vec2<u32>,
  dualBackward: vec2<u32>, primalMirrored: vec2<u32>,
  minShare: f32, _pad2: f32, _pad3: f32, _pad4: f32,
}

@group(0) @binding(0) var<storage, read> result: array<f32>;
@group(0) @binding(1) var<storage, read_write> args: array<u32>;
@group(0) @binding(2) var<uniform> params: DecisionParams;

@compute @workgroup_size(1)
fn main() {
  let share = min(result[5], result[6]);
  // A NaN share fails the >= test, so it falls back too.
  let fallBack = !(share >= params.minShare);
  let onPrimal = select(0u, 1u, fallBack);
  let onDual = 1u - onPrimal;
  args[0] = params.primalGram.x * onPrimal; args[1] = params.primalGram.y; args[2] = 1u;
  args[3] = onPrimal; args[4] = 1u; args[5] = 1u;
  args[6] = params.primalBackward.x * onPrimal; args[7] = params.primalBackward.y; args[8] = 1u;
  args[9] = params.dualBackward.x * onDual; args[10] = params.dualBackward.y; args[11] = 1u;
  args[12] = params.primalMirrored.x * onPrimal; args[13] = params.primalMirrored.y; args[14] = 1u;
}
