// IEEE binary16 on the host, for the float16 tests: written from the format's definition in float64
// arithmetic (not bit tricks on float32, as the kernels do), so that it shares nothing with them.

const MAX_HALF = 65504;
/** From here up, round-to-nearest-even gives Inf (the midpoint between 65504 and 2^16). */
const HALF_OVERFLOW = 65520;

function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const rest = x - floor;
  return rest > 0.5 || (rest === 0.5 && floor % 2 === 1) ? floor + 1 : floor;
}

/** The binary16 nearest x (ties to even), as its 16 bits. */
export function toHalfBits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= HALF_OVERFLOW) return sign | 0x7c00;
  if (a < 2 ** -14) return sign | roundHalfEven(a / 2 ** -24);   // subnormal (1024 is the smallest normal's bits)
  let exponent = Math.floor(Math.log2(a));
  if (2 ** exponent > a) exponent--;
  if (2 ** (exponent + 1) <= a) exponent++;
  let mantissa = roundHalfEven((a / 2 ** exponent - 1) * 1024);
  if (mantissa === 1024) {
    mantissa = 0;
    exponent++;
  }
  return sign | ((exponent + 15) << 10) | mantissa;
}

/** The value of binary16 bits. */
export function fromHalfBits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

export const isFiniteHalf = (h: number) => (h & 0x7c00) !== 0x7c00;

/** A view rounded to binary16: its bits, and their values as float32 (exact) for the float64 reference. */
export function halfView(values: ArrayLike<number>): { bits: Uint16Array; values: Float32Array } {
  const bits = Uint16Array.from(values, toHalfBits);
  return { bits, values: Float32Array.from(bits, fromHalfBits) };
}

export { MAX_HALF };
