// The tfjs op (vicreg-wgsl/tfjs) on tfjs-backend-webgpu over the same Dawn/lavapipe adapter: its value
// and gradients against tfjs autograd of the tfjs reference (same backend) and the float64 reference; a
// tiny tfjs model trained with it; the slow path (the composition, on 'cpu') against it.
// test/tfjs-composed.test.ts holds the composition to the float64 reference on its own.
import { create, globals } from 'webgpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { DeviceError, OptionError, ShapeError } from '../src/index.js';
import { vicregLoss, vicregTerms, vicregVariantChoices, type TfjsVICRegOptions } from '../src/tfjs/index.js';
import { composedVICRegTerms } from '../src/tfjs/composed.js';
import { resolveCoefficients } from '../src/coefficients.js';
import { largeOffsetViews, randomViews, referenceVICReg, relativeError, relativeNormError, type ViewPair } from './reference/float64.js';
import { tfjsLossAndGradients } from './reference/tfjs.js';

// tfjs-backend-webgpu finds WebGPU through navigator.gpu; in Node that is Dawn's. Keep `gpu` referenced.
const gpu = create([]);
beforeAll(async () => {
  Object.assign(globalThis, globals);
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true });
  await import('@tensorflow/tfjs-backend-webgpu');
  expect(await tf.setBackend('webgpu')).toBe(true);
});
afterAll(() => { void gpu; });

describe('vicregLoss on tfjs-backend-webgpu', () => {
  it('gives the value and gradients of tfjs autograd (same backend) and of the float64 reference', async () => {
    const options = { lambda: 4, mu: 9, nu: 0.5, gamma: 0.8, eps: 1e-3, preset: 'official' } as const;
    for (const [n, d] of [[19, 45], [64, 200], [90, 40]] as const) {
      const { a, b } = randomViews(n, d, n * d);
      const za = tf.tensor2d(a, [n, d]);
      const zb = tf.tensor2d(b, [n, d]);
      const { value, grads } = tf.valueAndGrads((x: tf.Tensor, y: tf.Tensor) => vicregLoss(x, y, options))([za, zb]);
      const ours = { loss: (await value.data())[0], gradA: await grads[0].data(), gradB: await grads[1].data() };
      const theirs = tfjsLossAndGradients(a, b, [n, d], options);
      const reference = referenceVICReg(a, b, [n, d], options);
      expect(relativeError(ours.loss, reference.loss), 'loss vs float64').toBeLessThan(1e-5);
      expect(relativeNormError(ours.gradA, reference.gradA), 'gradA vs float64').toBeLessThan(1e-4);
      expect(relativeNormError(ours.gradB, reference.gradB), 'gradB vs float64').toBeLessThan(1e-4);
      // tfjs-webgpu's own float32 matmuls are less careful than ours: 1e-4 against it.
      expect(relativeError(ours.loss, (await theirs.terms.data())[0]), 'loss vs tfjs autograd').toBeLessThan(1e-4);
      expect(relativeNormError(ours.gradA, await theirs.gradA.data()), 'gradA vs tfjs autograd').toBeLessThan(1e-3);
      tf.dispose([za, zb, value, ...grads, theirs.terms, theirs.gradA, theirs.gradB]);
    }
  });

  it('scales the gradients by the upstream gradient and reports the terms', async () => {
    const [n, d] = [12, 28];
    const { a, b } = randomViews(n, d, 5);
    const za = tf.tensor2d(a, [n, d]), zb = tf.tensor2d(b, [n, d]);
    const g = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.mul(vicregLoss(x, y), -3))([za, zb]);
    const reference = referenceVICReg(a, b, [n, d]);
    expect(relativeNormError(await g[0].data(), reference.gradA.map((x) => -3 * x))).toBeLessThan(1e-4);
    const terms = await vicregTerms(za, zb).data();
    expect(relativeError(terms[3], reference.covariance)).toBeLessThan(1e-5);
    tf.dispose([za, zb, ...g]);
  });

  it('trains a tiny tfjs model: a linear projector whose feature std rises toward gamma', async () => {
    const [n, p, d] = [64, 8, 16];
    const x = randomViews(n, p, 77);
    const xa = tf.tensor2d(x.a, [n, p]), xb = tf.tensor2d(x.b, [n, p]);
    const w = tf.variable(tf.mul(tf.randomNormal([p, d], 0, 1, 'float32', 3), 0.01) as tf.Tensor2D);
    const optimizer = tf.train.sgd(0.05);
    const losses: number[] = [];
    for (let step = 0; step < 40; step++) {
      const loss = optimizer.minimize(() => vicregLoss(tf.matMul(xa, w), tf.matMul(xb, w)), true, [w]) as tf.Scalar;
      losses.push((await loss.data())[0]);
      loss.dispose();
    }
    const { variance } = tf.moments(tf.matMul(xa, w), 0);
    const meanStd = (await tf.mean(tf.sqrt(variance)).data())[0];
    expect(losses[losses.length - 1]).toBeLessThan(0.5 * losses[0]);
    expect(meanStd).toBeGreaterThan(0.3);
    tf.dispose([xa, xb, w, variance]);
  });

  it('seeds its device with variantChoices, which vicregVariantChoices() exports; a malformed seed is an OptionError', async () => {
    const base = vicregVariantChoices();
    expect(base.format).toBe('vicreg-wgsl/variant-choices/1');
    const choices = { 'gram|dual|3|5|tiled,subgroup,workgroup': 'tiled', 'backward|dual|3|5|tiled,workgroup': 'workgroup' } as const;
    const [n, d] = [6, 20];
    const { a, b } = randomViews(n, d, 31);
    const [za, zb] = [tf.tensor2d(a, [n, d]), tf.tensor2d(b, [n, d])];
    const loss = vicregLoss(za, zb, { variantChoices: { ...base, choices } });
    expect(relativeError((await loss.data())[0], referenceVICReg(a, b, [n, d]).loss)).toBeLessThan(1e-5);
    expect(vicregVariantChoices().choices).toMatchObject(choices);
    expect(() => vicregLoss(za, zb, { variantChoices: { ...base, format: 'other' } })).toThrow(OptionError);
    expect(() => vicregLoss(za, zb, { variantChoices: { ...base, choices: { 'gram|dual|3|5|tiled': 'fast' } } as never })).toThrow(/must be one of its variants/);
    tf.dispose([za, zb, loss]);
  });

  it('rejects bad shapes with a ShapeError', () => {
    const za = tf.zeros([4, 5]), zb = tf.zeros([4, 6]);
    expect(() => vicregLoss(za, zb)).toThrow(ShapeError);
    expect(() => vicregLoss(tf.zeros([4]), tf.zeros([4]))).toThrow(/2-D/);
    tf.dispose([za, zb]);
  });
});

/** The op's terms and both gradients (tf.grads) on the active backend, read back. */
async function termsAndGradients({ a, b }: ViewPair, [n, d]: [number, number], options: TfjsVICRegOptions) {
  const za = tf.tensor2d(a, [n, d]), zb = tf.tensor2d(b, [n, d]);
  const terms = vicregTerms(za, zb, options);
  const grads = tf.grads((x: tf.Tensor, y: tf.Tensor) => vicregLoss(x, y, options))([za, zb]);
  const result = { terms: await terms.data(), gradA: await grads[0].data(), gradB: await grads[1].data() };
  tf.dispose([za, zb, terms, ...grads]);
  return result;
}

describe('the slow path: the composition of tfjs ops', () => {
  it('agrees with the kernels on webgpu: terms and gradients, both presets, shapes off every tile', async () => {
    const cases: { shape: [number, number]; options: TfjsVICRegOptions }[] = [
      { shape: [5, 3], options: {} },
      { shape: [37, 70], options: { preset: 'official' } },
      { shape: [64, 130], options: { lambda: 3.5, mu: 7, nu: 0.3, gamma: 0.7, eps: 1e-3, preset: 'official' } },
    ];
    for (const { shape, options } of cases) {
      const views = randomViews(...shape, shape[0] + shape[1]);
      const kernels = await termsAndGradients(views, shape, options);
      await tf.setBackend('cpu');
      try {
        const composed = await termsAndGradients(views, shape, options);
        const label = `${shape.join('x')} ${options.preset ?? 'paper'}`;
        // Each is within 1e-5 (terms) and 1e-4 (gradients) of float64, so within twice that of the other.
        for (let t = 0; t < 4; t++) expect(relativeError(composed.terms[t], kernels.terms[t]), `${label} term ${t}`).toBeLessThan(2e-5);
        expect(relativeNormError(composed.gradA, kernels.gradA), `${label} gradA`).toBeLessThan(2e-4);
        expect(relativeNormError(composed.gradB, kernels.gradB), `${label} gradB`).toBeLessThan(2e-4);
      } finally {
        await tf.setBackend('webgpu');
      }
    }
  });

  it('keeps float32 accuracy where the backend reduces in float32 (tfjs-webgpu ops): a 1e5 offset', async () => {
    // Centering by the mean alone loses about 3e-5 of the loss here.
    const shape: [number, number] = [256, 64];
    const { a, b } = largeOffsetViews(...shape, 212, 1e5);
    const terms = tf.tidy(() => {
      const t = composedVICRegTerms(tf.tensor2d(a, shape), tf.tensor2d(b, shape), resolveCoefficients());
      return tf.stack([t.loss, t.invariance, t.variance, t.covariance]);
    });
    const [loss, , variance, covariance] = await terms.data();
    const reference = referenceVICReg(a, b, shape);
    expect(relativeError(loss, reference.loss), 'loss').toBeLessThan(1e-5);
    expect(relativeError(variance, reference.variance), 'variance').toBeLessThan(1e-5);
    expect(relativeError(covariance, reference.covariance), 'covariance').toBeLessThan(1e-4);
    terms.dispose();
  });

  it("vicregVariantChoices() names the active backend and how to switch to 'webgpu'", async () => {
    await tf.setBackend('cpu');
    try {
      expect(() => vicregVariantChoices()).toThrow(DeviceError);
      expect(() => vicregVariantChoices()).toThrow(/active backend is 'cpu'.*setBackend\('webgpu'\)/);
    } finally {
      await tf.setBackend('webgpu');
    }
  });
});
