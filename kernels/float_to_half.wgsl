// float_to_half.wgsl: one view's gradient from float32 to float16, written or added, with the overflow
// flag a loss scaler (GradScaler) reads to skip a step.
//
// Math: out_i = half(grad_i), or with ACCUMULATE half(float(out_i) + grad_i), rounded to the nearest
// binary16 (ties to even; past 65504, from 65520 on, that is Inf), for i < count; two halves per u32
// word, element 2w in the low 16 bits of word w (the high half of a last odd word is written 0).
// overflow[0] |= 1 where a result is Inf or NaN. grad already carries the upstream scale.
//
// Bindings (group 0):
//   0  grad      storage, read        array<f32>          count
//   1  out       storage, read_write  array<u32>          ceil(count/2)
//   2  overflow  storage, read_write  array<atomic<u32>>  1
//   3  dims      uniform              HalfDims { count, .. }
// Dispatch: (min(G, 65535), ceil(G / 65535), 1) workgroups of WG threads, G = ceil(ceil(count/2) / WG);
// one word per thread. The flag is an integer OR, so its value does not depend on the order.
// Variant: every variant's backward into float16 gradients (the portable path: no shader-f16 needed).

struct HalfDims { count: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

override WG: u32 = 256;
override ACCUMULATE: bool = false;

@group(0) @binding(0) var<storage, read> grad: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<storage, read_write> overflow: array<atomic<u32>>;
@group(0) @binding(3) var<uniform> dims: HalfDims;

// The float32 value of an IEEE binary16 (its bits in the low 16 of a u32), subnormals included, read
// from the bits alone so that no device's handling of half values (flushing, rounding) touches it.
fn halfToFloat(h: u32) -> f32 {
  let sign = (h & 0x8000u) << 16u;
  let exponent = (h >> 10u) & 0x1fu;
  let mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) { return bitcast<f32>(sign | 0x7f800000u | (mantissa << 13u)); }
  if (exponent != 0u) { return bitcast<f32>(sign | ((exponent + 112u) << 23u) | (mantissa << 13u)); }
  // A subnormal: mantissa * 2^-24, exact in float32.
  let magnitude = f32(mantissa) * 5.9604644775390625e-8;
  return select(magnitude, -magnitude, sign != 0u);
}

// The binary16 nearest a float32, ties to even, as bits; computed from the bits so that every device
// rounds alike (WGSL leaves pack2x16float's result undefined past the half range, where this gives Inf).
fn floatToHalf(x: f32) -> u32 {
  let bits = bitcast<u32>(x);
  let sign = (bits >> 16u) & 0x8000u;
  let exponent = (bits >> 23u) & 0xffu;
  let mantissa = bits & 0x7fffffu;
  if (exponent == 0xffu) { return sign | 0x7c00u | select(0u, 0x200u, mantissa != 0u); }
  let e = i32(exponent) - 112;
  if (e >= 31) { return sign | 0x7c00u; }
  if (e <= 0) {
    // Below the smallest normal half: the significand, implicit bit included, shifted to the subnormal
    // scale (2^-24) and rounded; under half the smallest subnormal it is zero.
    if (e < -10) { return sign; }
    let significand = mantissa | 0x800000u;
    let shift = u32(14 - e);
    let kept = significand >> shift;
    let rest = significand & ((1u << shift) - 1u);
    let halfway = 1u << (shift - 1u);
    return sign | (kept + select(0u, 1u, rest > halfway || (rest == halfway && (kept & 1u) == 1u)));
  }
  let kept = (u32(e) << 10u) | (mantissa >> 13u);
  let rest = mantissa & 0x1fffu;
  // A carry out of the mantissa raises the exponent, which is the right rounding (up to Inf).
  return sign | (kept + select(0u, 1u, rest > 0x1000u || (rest == 0x1000u && (kept & 1u) == 1u)));
}

fn converted(index: u32, word: u32, shift: u32) -> u32 {
  var value = grad[index];
  if (ACCUMULATE) { value = halfToFloat((word >> shift) & 0xffffu) + value; }
  return floatToHalf(value);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let word = gid.x + gid.y * groups.x * WG;
  let first = 2u * word;
  if (first >= dims.count) { return; }
  let old = select(0u, out[word], ACCUMULATE);
  let low = converted(first, old, 0u);
  var high = 0u;
  if (first + 1u < dims.count) { high = converted(first + 1u, old, 16u); }
  if ((low & 0x7c00u) == 0x7c00u || (high & 0x7c00u) == 0x7c00u) { atomicOr(&overflow[0], 1u); }
  out[word] = low | (high << 16u);
}
