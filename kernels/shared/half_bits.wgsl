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
