// loss_terms.wgsl: the final reduction of the loss and its three terms, in one workgroup.
//
// Math (column_stats gives varA, varB, sqDiff; partials from the Gram kernels):
//   invariance = (1/(n d)) sum_j sqDiff_j
//   variance   = k (1/d) sum_j [ max(0, gamma - sqrt(varA_j + eps)) + max(0, gamma - sqrt(varB_j + eps)) ]
//   per view Z: P_Z = sum of Z's partials
//     primal form (tiled/primal_gram): P_Z = sum_{l != m} C_lm^2 already;   off_Z = P_Z
//     dual form (tiled/dual_gram):            P_Z = ||C||_F^2;  off_Z = P_Z - sum_j var_j^2 (C's diagonal)
//   covariance = (1/d) (off_A + off_B)
//   loss       = lambda invariance + mu variance + nu covariance
//   share_Z    = off_Z / P_Z: the off-diagonal share of ||C||_F^2 (1 in the primal form, and when P_Z = 0);
//                in the dual form a small share means off_Z lost float32 accuracy to cancellation, and
//                the ops fall back to the primal form.
//   flags      = bit 0: A has a NaN/Inf somewhere, bit 1: B has (from column_stats' first-bad-row flags)
// Every thread sums a fixed strided slice, then a fixed tree combines the threads: the same inputs give
// bitwise the same result on every run.
//
// Bindings (group 0):
//   0  stats     storage, read        array<f32>  column_stats layout (7*d)
//   1  flags     storage, read        array<u32>  4*d (column_stats layout; the first 2*d are read)
//   2  partials  storage, read        array<f32>  view A's partialCount partials from 0, view B's from
//                                                 partialOffsetB
//   3  result    storage, read_write  array<f32>  8: [loss, invariance, variance, covariance, flags,
//                                                     shareA, shareB, 0]
//   4  params    uniform              TermParams
// Dispatch: (1, 1, 1) workgroup of WG threads (a power of two).
// Variant: the only one (a few thousand values).

struct TermParams {
  n: u32, d: u32, partialCount: u32, dualForm: u32,
  partialOffsetB: u32, _pad0: u32, _pad1: u32, _pad2: u32,
  lambda: f32, mu: f32, nu: f32, gamma: f32,
  eps: f32, varianceScale: f32, _pad3: f32, _pad4: f32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<storage, read> stats: array<f32>;
@group(0) @binding(1) var<storage, read> flags: array<u32>;
@group(0) @binding(2) var<storage, read> partials: array<f32>;
@group(0) @binding(3) var<storage, read_write> result: array<f32>;
@group(0) @binding(4) var<uniform> params: TermParams;

// Per-thread sums, then the tree: [sqDiff, hinge, P_A, P_B, diagA, diagB].
const SUMS: u32 = 6u;
var<workgroup> sums: array<array<f32, SUMS>, WG>;
var<workgroup> anyBad: atomic<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) t: u32) {
  let d = params.d;
  if (t == 0u) { atomicStore(&anyBad, 0u); }
  var s = array<f32, SUMS>();
  var bad = 0u;
  for (var j = t; j < d; j += WG) {
    let varA = stats[4u * d + j];
    let varB = stats[5u * d + j];
    s[0] += stats[6u * d + j];
    s[1] += max(0.0, params.gamma - sqrt(varA + params.eps)) + max(0.0, params.gamma - sqrt(varB + params.eps));
    s[4] = fma(varA, varA, s[4]);
    s[5] = fma(varB, varB, s[5]);
    bad |= select(0u, 1u, flags[j] != 0u) | select(0u, 2u, flags[d + j] != 0u);
  }
  for (var p = t; p < params.partialCount; p += WG) {
    s[2] += partials[p];
    s[3] += partials[params.partialOffsetB + p];
  }
  sums[t] = s;
  workgroupBarrier();
  atomicOr(&anyBad, bad);   // integer OR: order-independent, so still deterministic
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (t < stride) {
      for (var q = 0u; q < SUMS; q++) { sums[t][q] += sums[t + stride][q]; }
    }
    workgroupBarrier();
  }
  if (t == 0u) {
    let total = sums[0];
    let dual = params.dualForm != 0u;
    let offA = select(total[2], total[2] - total[4], dual);
    let offB = select(total[3], total[3] - total[5], dual);
    let df = f32(d);
    let invariance = total[0] / (f32(params.n) * df);
    let variance = params.varianceScale * total[1] / df;
    let covariance = (offA + offB) / df;
    result[0] = params.lambda * invariance + params.mu * variance + params.nu * covariance;
    result[1] = invariance;
    result[2] = variance;
    result[3] = covariance;
    result[4] = f32(atomicLoad(&anyBad));
    result[5] = select(1.0, offA / total[2], total[2] > 0.0);
    result[6] = select(1.0, offB / total[3], total[3] > 0.0);
    result[7] = 0.0;
  }
}
