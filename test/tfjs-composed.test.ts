// The tfjs op's slow path: vicregLoss and vicregTerms on tfjs's 'cpu' backend, where they are the loss
// composed from tfjs ops and differentiated by tfjs autograd. Terms and both gradients (tf.grads)
// against the float64 reference; the same validation errors as the WGSL path; NaN for non-finite input.
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { OptionError, ShapeError } from '../src/index.js';
import { vicregLoss, vicregTerms, type TfjsVICRegOptions } from '../src/tfjs/index.js';
import {
  collapsedViews, dominantFeatureViews, largeOffsetViews, nearGammaViews, randomViews, referenceVICReg, relativeError,
  relativeNormError, scaled, type ViewPair,
} from './reference/float64.js';

/** What float32 arithmetic allows with margin, as the engine's tests hold it to: terms and gradients. */
const TERM_TOLERANCE = 1e-5;
const GRADIENT_TOLERANCE = 1e-4;

const TERMS = ['loss', 'invariance', 'variance', 'covariance'] as const;
const NON_DEFAULT = { lambda: 3.5, mu: 7, nu: 0.3, gamma: 0.7, eps: 1e-3 } as const;

beforeAll(async () => {
  expect(await tf.setBackend('cpu')).toBe(true);
});

/** The op's terms and gradients (tf.grads of vicregLoss times `upstream`), read back. */
async function composed({ a, b }: ViewPair, [n, d]: [number, number], options: TfjsVICRegOptions, upstream = 1) {
  const za = tf.tensor2d(a, [n, d]), zb = tf.tensor2d(b, [n, d]);
  const terms = vicregTerms(za, zb, options);
  const grads = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.mul(vicregLoss(x, y, options), upstream))([za, zb]);
  const result = { terms: await terms.data(), gradA: await grads[0].data(), gradB: await grads[1].data() };
  tf.dispose([za, zb, terms, ...grads]);
  return result;
}

describe("vicregLoss on tfjs's cpu backend (the composition)", () => {
  const cases: { name: string; shape: [number, number]; views: () => ViewPair; options: TfjsVICRegOptions; upstream?: number }[] = [
    { name: '5x3 paper defaults', shape: [5, 3], views: () => randomViews(5, 3, 101), options: {} },
    { name: '2x4 (n = 2) official', shape: [2, 4], views: () => randomViews(2, 4, 102), options: { preset: 'official', gamma: 2 } },
    { name: '37x70 official defaults', shape: [37, 70], views: () => randomViews(37, 70, 103), options: { preset: 'official' } },
    { name: '64x130 paper non-default', shape: [64, 130], views: () => randomViews(64, 130, 104), options: NON_DEFAULT },
    { name: '37x70 official non-default, upstream -2.5', shape: [37, 70], views: () => randomViews(37, 70, 105), options: { ...NON_DEFAULT, preset: 'official' }, upstream: -2.5 },
    { name: '40x50 collapsed features (every third std 1e-3)', shape: [40, 50], views: () => collapsedViews(40, 50, 106), options: {} },
    { name: '48x90 offset 1e4', shape: [48, 90], views: () => largeOffsetViews(48, 90, 107), options: { preset: 'official' } },
    // Centering by the mean alone loses about 1.5e-5 of the loss here.
    { name: '256x64 offset 1e5', shape: [256, 64], views: () => largeOffsetViews(256, 64, 112, 1e5), options: {} },
    { name: '16x64 dominant feature', shape: [16, 64], views: () => dominantFeatureViews(16, 64, 108), options: {} },
    { name: '24x16 std near gamma', shape: [24, 16], views: () => nearGammaViews(24, 16, 109), options: {} },
  ];
  for (const { name, shape, views: makeViews, options, upstream = 1 } of cases) {
    it(`matches the float64 reference: ${name}`, async () => {
      const views = makeViews();
      const ours = await composed(views, shape, options, upstream);
      const reference = referenceVICReg(views.a, views.b, shape, options as Parameters<typeof referenceVICReg>[3]);
      TERMS.forEach((term, t) => {
        expect(relativeError(ours.terms[t], reference[term]), `${term}: ${ours.terms[t]} vs ${reference[term]}`).toBeLessThan(TERM_TOLERANCE);
      });
      expect(relativeNormError(ours.gradA, scaled(reference.gradA, upstream)), 'gradA').toBeLessThan(GRADIENT_TOLERANCE);
      expect(relativeNormError(ours.gradB, scaled(reference.gradB, upstream)), 'gradB').toBeLessThan(GRADIENT_TOLERANCE);
    });
  }

  it('each preset gives its own variance term (official = paper / 2), and the loss follows the coefficients', async () => {
    const views = randomViews(20, 30, 110, { scale: 0.6 });
    const paper = await composed(views, [20, 30], {});
    const official = await composed(views, [20, 30], { preset: 'official' });
    const weighted = await composed(views, [20, 30], { lambda: 2, mu: 3, nu: 5 });
    expect(paper.terms[2]).toBeGreaterThan(0.1);
    expect(relativeError(official.terms[2], paper.terms[2] / 2)).toBeLessThan(1e-6);
    const [, invariance, variance, covariance] = paper.terms;
    expect(relativeError(weighted.terms[0], 2 * invariance + 3 * variance + 5 * covariance)).toBeLessThan(1e-6);
  });

  it('leaves no tensor behind', () => {
    const za = tf.randomNormal([9, 7], 0, 1, 'float32', 1), zb = tf.randomNormal([9, 7], 0, 1, 'float32', 2);
    const before = tf.memory().numTensors;
    const loss = vicregLoss(za, zb), terms = vicregTerms(za, zb);
    const grads = tf.grads((x: tf.Tensor, y: tf.Tensor) => vicregLoss(x, y))([za, zb]);
    expect(tf.memory().numTensors).toBe(before + 4);
    tf.dispose([za, zb, loss, terms, ...grads]);
  });

  it('gives a NaN loss for non-finite embeddings, as tfjs ops do', async () => {
    const { a, b } = randomViews(6, 5, 111);
    for (const bad of [NaN, Infinity]) {
      const poisoned = Float32Array.from(a);
      poisoned[7] = bad;
      const [za, zb] = [tf.tensor2d(poisoned, [6, 5]), tf.tensor2d(b, [6, 5])];
      const loss = vicregLoss(za, zb);
      expect((await loss.data())[0]).toBeNaN();
      tf.dispose([za, zb, loss]);
    }
  });

  it("takes what a single-output model's apply() returns, an array of one tensor included", async () => {
    const [n, d] = [6, 5];
    const { a, b } = randomViews(n, d, 41);
    const [za, zb] = [tf.tensor2d(a, [n, d]), tf.tensor2d(b, [n, d])];
    const expected = (await vicregLoss(za, zb).data())[0];
    expect((await vicregLoss([za], [zb]).data())[0]).toBe(expected);
    tf.dispose([za, zb]);
  });

  it('rejects bad shapes with a ShapeError and bad options with an OptionError, as the WGSL path does', () => {
    const z = tf.zeros([4, 5]);
    const cases: [() => unknown, RegExp][] = [
      [() => vicregLoss(z, tf.zeros([4, 6])), /same shape/],
      [() => vicregLoss(tf.zeros([4]), tf.zeros([4])), /2-D/],
      [() => vicregLoss(tf.zeros([1, 5]), tf.zeros([1, 5])), /at least 2 rows/],
      [() => vicregLoss(tf.zeros([4, 0]), tf.zeros([4, 0])), /d must be a positive integer/],
      [() => vicregTerms(tf.zeros([4, 5], 'int32'), tf.zeros([4, 5], 'int32')), /float32/],
      [() => vicregLoss([z, z], z), /an array of 2 outputs/],
      [() => vicregLoss({ name: 'input1', shape: [null, 5] }, z), /a symbolic tensor \(input1\)/],
    ];
    for (const [call, message] of cases) {
      expect(call).toThrow(ShapeError);
      expect(call).toThrow(message);
    }
    expect(() => vicregLoss(z, z, { gamma: -1 })).toThrow(OptionError);
    expect(() => vicregTerms(z, z, { preset: 'torch' as never })).toThrow(OptionError);
    expect(() => vicregLoss(z, z, { variant: 'fastest' as never })).toThrow(OptionError);
    expect(() => vicregLoss(z, z, { variantChoices: { format: 'other' } as never })).toThrow(OptionError);
    tf.dispose(z);
  });
});
