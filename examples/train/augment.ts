// The two views of a digit: the augmentations VICReg learns invariance to, all seeded.
//
//   crop    a random square crop of 20..28 pixels (scale 0.5..1 of the area) anywhere in the image,
//           resized back to 28 x 28 bilinearly: the digit moves by up to a fifth of the image and changes size,
//           which is what separates two writings of one digit more than anything else
//   noise   N(0, 0.1^2) added to every pixel, then clipped to [0, 1]: stands in for the paper's colour
//           jitter, which grey digits have no colour for
//   erase   with probability 0.5 one rectangle of 4..10 x 4..10 pixels set to 0: part of a stroke missing,
//           so no single stroke decides the embedding
//
// Not used: horizontal flips (the paper's, wrong for digits: a mirrored 2 is not a 2), blur and
// solarisation (they add little on binary-looking strokes at this resolution).
import { SIDE, PIXELS } from './digits.js';

export interface Augmentations {
  /** Smallest crop side, in pixels (28 keeps the whole image). */
  minCrop: number;
  /** Standard deviation of the pixel noise. */
  noise: number;
  /** Chance of erasing one rectangle. */
  eraseChance: number;
  /** Erased rectangles' smallest and largest side, in pixels. */
  erase: [number, number];
}

export const AUGMENTATIONS: Augmentations = { minCrop: 20, noise: 0.1, eraseChance: 0.5, erase: [4, 10] };

/** Writes one augmented view of `image` (784 values) into `out`, drawing from `uniform` and `gaussian`. */
export function augment(image: Float32Array, out: Float32Array, settings: Augmentations, uniform: () => number, gaussian: () => number): void {
  const crop = settings.minCrop + uniform() * (SIDE - settings.minCrop);
  const x0 = uniform() * (SIDE - crop);
  const y0 = uniform() * (SIDE - crop);
  const scale = crop / SIDE;
  for (let y = 0; y < SIDE; y++) {
    // Sample at pixel centres of the crop, clamped to the image.
    const sy = Math.min(SIDE - 1, Math.max(0, y0 + (y + 0.5) * scale - 0.5));
    const y1 = Math.floor(sy), fy = sy - y1, y2 = Math.min(SIDE - 1, y1 + 1);
    for (let x = 0; x < SIDE; x++) {
      const sx = Math.min(SIDE - 1, Math.max(0, x0 + (x + 0.5) * scale - 0.5));
      const x1 = Math.floor(sx), fx = sx - x1, x2 = Math.min(SIDE - 1, x1 + 1);
      const top = image[y1 * SIDE + x1] * (1 - fx) + image[y1 * SIDE + x2] * fx;
      const bottom = image[y2 * SIDE + x1] * (1 - fx) + image[y2 * SIDE + x2] * fx;
      const value = top * (1 - fy) + bottom * fy + settings.noise * gaussian();
      out[y * SIDE + x] = Math.min(1, Math.max(0, value));
    }
  }
  if (uniform() < settings.eraseChance) {
    const [lo, hi] = settings.erase;
    const h = lo + Math.floor(uniform() * (hi - lo + 1));
    const w = lo + Math.floor(uniform() * (hi - lo + 1));
    const top = Math.floor(uniform() * (SIDE - h + 1));
    const left = Math.floor(uniform() * (SIDE - w + 1));
    for (let y = top; y < top + h; y++) out.fill(0, y * SIDE + left, y * SIDE + left + w);
  }
}

/**
 * One training batch: `rows` (indices into `images`) augmented twice, as one array of 2n images:
 * view A's n rows, then view B's n rows, so that the model runs both views as one batch.
 */
export function twoViews(images: Float32Array, rows: ArrayLike<number>, settings: Augmentations, uniform: () => number, gaussian: () => number): Float32Array<ArrayBuffer> {
  const n = rows.length;
  const out = new Float32Array(2 * n * PIXELS);
  for (let view = 0; view < 2; view++) {
    for (let i = 0; i < n; i++) {
      const image = images.subarray(rows[i] * PIXELS, (rows[i] + 1) * PIXELS);
      augment(image, out.subarray((view * n + i) * PIXELS, (view * n + i + 1) * PIXELS), settings, uniform, gaussian);
    }
  }
  return out;
}
