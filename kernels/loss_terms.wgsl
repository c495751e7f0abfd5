// loss_terms.wgsl: the final reduction of the loss and its three terms, in one workgroup.
//
// Math (column_stats gives meanA, meanB, varA, varB, sqDiff; partials from gram_offdiag_squares):
//   invariance = (1/(n d)) sum_j sqDiff_j
//   variance   = k (1/d) sum_j [ max(0, gamma - sqrt(varA_j + eps)) + max(0, gamma - sqrt(varB_j + eps)) ]
//   covariance = (1/d) (sum_t partialsA_t + sum_t partialsB_t)
//   loss       = lambda invariance + mu variance + nu covariance
//   flags      = OR of the column finiteness flags (bit 0: A has NaN/Inf, bit 1: B has)
// Every thread sums a fixed strided slice, then a fixed tree combines the threads: the same inputs give
// bitwise the same result on every run.
//
// Bindings (group 0):
//   0  stats     storage, read        array<f32>  column_stats layout (5*d)
//   1  flags     storage, read        array<u32>  d
//   2  partials  storage, read        array<f32>  2*partialCount: view A's tiles, then view B's
//   3  result    storage, read_write  array<f32>  8: [loss, invariance, variance, covariance, flags, 0, 0, 0]
//   4  params    uniform              TermParams
// Dispatch: (1, 1, 1) workgroup of WG threads.
// Variant: the only one (a few thousand values).

struct TermParams {
  n: u32, d: u32, partialCount: u32, _pad0: u32,
  lambda: f32, mu: f32, nu: f32, gamma: f32,
  eps: f32, varianceScale: f32, _pad1: f32, _pad2: f32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<storage, read> stats: array<f32>;
@group(0) @binding(1) var<storage, read> flags: array<u32>;
@group(0) @binding(2) var<storage, read> partials: array<f32>;
@group(0) @binding(3) var<storage, read_write> result: array<f32>;
@group(0) @binding(4) var<uniform> params: TermParams;

var<workgroup> sumDiff: array<f32, WG>;
var<workgroup> sumHinge: array<f32, WG>;
var<workgroup> sumCov: array<f32, WG>;
var<workgroup> anyBad: atomic<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) t: u32) {
  let d = params.d;
  if (t == 0u) { atomicStore(&anyBad, 0u); }
  var diff = 0.0;
  var hinge = 0.0;
  var bad = 0u;
  for (var j = t; j < d; j += WG) {
    diff += stats[4u * d + j];
    hinge += max(0.0, params.gamma - sqrt(stats[2u * d + j] + params.eps))
           + max(0.0, params.gamma - sqrt(stats[3u * d + j] + params.eps));
    bad |= flags[j];
  }
  var cov = 0.0;
  for (var p = t; p < 2u * params.partialCount; p += WG) {
    cov += partials[p];
  }
  sumDiff[t] = diff;
  sumHinge[t] = hinge;
  sumCov[t] = cov;
  workgroupBarrier();
  atomicOr(&anyBad, bad);   // integer OR: order-independent, so still deterministic
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (t < stride) {
      sumDiff[t] += sumDiff[t + stride];
      sumHinge[t] += sumHinge[t + stride];
      sumCov[t] += sumCov[t + stride];
    }
    workgroupBarrier();
  }
  if (t == 0u) {
    let df = f32(d);
    let invariance = sumDiff[0] / (f32(params.n) * df);
    let variance = params.varianceScale * sumHinge[0] / df;
    let covariance = sumCov[0] / df;
    result[0] = params.lambda * invariance + params.mu * variance + params.nu * covariance;
    result[1] = invariance;
    result[2] = variance;
    result[3] = covariance;
    result[4] = f32(atomicLoad(&anyBad));
    result[5] = 0.0;
    result[6] = 0.0;
    result[7] = 0.0;
  }
}
