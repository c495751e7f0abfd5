// half_to_float.wgsl: one view from float16 to float32, for the float32 kernels that follow.
//
// Math: out_i = float(half_i), exact (every binary16 value is a float32 value), for i < count; the
// halves are packed two per u32 word, element 2w in the low 16 bits of word w.
//
// Bindings (group 0):
//   0  half  storage, read        array<u32>  ceil(count/2)
//   1  out   storage, read_write  array<f32>  count
//   2  dims  uniform              HalfDims { count, .. }
// Dispatch: (min(G, 65535), ceil(G / 65535), 1) workgroups of WG threads, G = ceil(ceil(count/2) / WG);
// one word per thread, in order (x fastest), so adjacent threads read adjacent words.
// Variant: every variant's forward on float16 views (the portable path: no shader-f16 needed).

struct HalfDims { count: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

override WG: u32 = 256;

@group(0) @binding(0) var<storage, read> half: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> dims: HalfDims;

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

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let word = gid.x + gid.y * groups.x * WG;
  let first = 2u * word;
  if (first >= dims.count) { return; }
  let bits = half[word];
  out[first] = halfToFloat(bits & 0xffffu);
  if (first + 1u < dims.count) { out[first + 1u] = halfToFloat(bits >> 16u); }
}
