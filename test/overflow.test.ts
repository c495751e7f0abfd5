// Overflow: finite float32 inputs whose sums overflow float32 on the device must reject with an
// OverflowError, never return Inf or NaN; and the documented safe range must really be safe.
//
// Measured on lavapipe (float32; the same in both forms), default coefficients; sigma = the features'
// RMS standard deviation (the square root of the mean column variance):
//   - What overflows first is the covariance term's sum over the off-diagonal entries of C, about
//     d^2 sigma^4 when the features are fully correlated (the worst case: rank-1 views). The largest
//     sigma that works is then sigma * sqrt(d) = 3.5e9, for any n (printed by the last test):
//        d              16      64     512    2048    8192
//        rank-1       8.7e8   4.4e8   1.5e8   7.7e7   3.9e7    (sigma * sqrt(d) = 3.5e9)
//        independent  2.0e9   1.0e9   6.3e8   2.2e8   9.0e7    (sigma * sqrt(d) = 7.9e9 .. 1.4e10)
//   - A common offset does not count: columns are centered on the device first (1e10 + a 1e5 spread
//     is fine; a constant 3e38 column is fine).
//   - Documented safe range (a factor 2.3 under the worst case): sigma <= 1.5e9 / sqrt(d), i.e. about
//     6.6e7 at d = 512, 3.3e7 at d = 2048, 1.6e7 at d = 8192: spreads up to 1e7 are safe for d <= 8192.
//
// CI (~15 s here): the worst case at 0.5x and 2x of the measured boundary at d = 512, 2048 and 8192;
// the boundary measured again by bisection at d = 16 .. 8192 (printed, and checked against the
// documented range); the 1e10 inputs at several shapes and forms; encode(); what is not an overflow.
// Full: VICREG_OVERFLOW_FULL=1 npx vitest run test/overflow.test.ts adds the bisection at larger
// shapes (1024 x 2048, 256 x 8192, 64 x 16384).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVICRegLoss, OverflowError, StateError, VICRegError, type VICRegLoss, type VICRegTerms } from '../src/index.js';
import { mulberry32, randomViews, referenceVICReg, relativeError, relativeNormError } from './reference/float64.js';

const FULL = process.env.VICREG_OVERFLOW_FULL === '1';
type Shape = [number, number];
const TERMS = ['loss', 'invariance', 'variance', 'covariance'] as const;

/** sigma * sqrt(d) where the worst case (rank-1 views) starts to overflow, as measured (see above). */
const WORST_CASE_BOUNDARY = 3.5e9;
/** The documented safe range: sigma * sqrt(d) up to this works for any data. */
const DOCUMENTED_SAFE = 1.5e9;

// ---------------------------------------------------------------------------------------------------
// Rank-1 views, exact in float32, with a closed-form float64 reference that costs O(n d) (the general
// reference is O(n d^2): too slow at d = 8192 for CI).
//   a_ij = s r_i c_j,  b_ij = s q_i c_j,  r_i in -8..8, q_i = r_i + (-1, 0 or 1), c_j in +-{0.5 .. 1.5}
//   in steps of 0.25, s a power of two: every product has few significant bits, so it is exact.

interface RankOne { n: number; d: number; s: number; r: Float64Array; q: Float64Array; c: Float64Array; a: Float32Array; b: Float32Array }

/** `round`: s is the power of two at or below (or above) what gives the RMS column std `sigma`; 'none':
 * s gives exactly that (the products are then rounded to float32: nearly rank-1, for measuring). */
function rankOneViews(n: number, d: number, seed: number, sigma: number, round: 'down' | 'up' | 'none'): RankOne {
  const uniform = mulberry32(seed);
  const r = Float64Array.from({ length: n }, () => Math.floor(uniform() * 17) - 8);
  r[0] = 8; r[1] = -8; // never a constant column
  const q = r.map((x) => x + Math.floor(uniform() * 3) - 1);
  const c = Float64Array.from({ length: d }, () => (uniform() < 0.5 ? -1 : 1) * (0.5 + 0.25 * Math.floor(uniform() * 5)));
  const unit = rmsStd(r, c);
  const exponent = Math.log2(sigma / unit);
  const s = round === 'none' ? sigma / unit : 2 ** (round === 'down' ? Math.floor(exponent) : Math.ceil(exponent));
  const a = new Float32Array(n * d);
  const b = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      a[i * d + j] = s * r[i] * c[j];
      b[i * d + j] = s * q[i] * c[j];
    }
  }
  return { n, d, s, r, q, c, a, b };
}

/** The RMS column std of s r c^T for s = 1. */
function rmsStd(r: Float64Array, c: Float64Array): number {
  const n = r.length;
  const mean = r.reduce((x, y) => x + y, 0) / n;
  const v = r.reduce((sum, x) => sum + (x - mean) ** 2, 0) / (n - 1);
  return Math.sqrt(v * c.reduce((sum, x) => sum + x * x, 0) / c.length);
}

/** sqrt of the mean column variance (unbiased) of an n x d view. */
function rmsColumnStd(z: Float32Array, n: number, d: number): number {
  let total = 0;
  for (let j = 0; j < d; j++) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += z[i * d + j];
    mean /= n;
    for (let i = 0; i < n; i++) total += (z[i * d + j] - mean) ** 2;
  }
  return Math.sqrt(total / (n - 1) / d);
}

/** The loss, terms and gradients of rank-1 views in closed form (default coefficients). */
function rankOneReference({ n, d, s, r, q, c }: RankOne) {
  const lambda = 25, mu = 25, nu = 1, gamma = 1, eps = 1e-4; // preset 'paper': k = 1
  const S2 = c.reduce((sum, x) => sum + x * x, 0);
  const S4 = c.reduce((sum, x) => sum + x ** 4, 0);
  const view = (rows: Float64Array) => {
    const mean = rows.reduce((x, y) => x + y, 0) / n;
    const rho = rows.map((x) => x - mean);
    const v = rho.reduce((sum, x) => sum + x * x, 0) / (n - 1);
    const std = c.map((cj) => Math.sqrt(s * s * v * cj * cj + eps));
    const hinge = std.reduce((sum, sj) => sum + Math.max(0, gamma - sj), 0) / d;
    // C_lm = s^2 v c_l c_m; sum over l != m of C_lm^2 = s^4 v^2 (S2^2 - S4).
    const covariance = (s ** 4 * v * v * (S2 * S2 - S4)) / d;
    // (Zc Coff)_im = s^3 v rho_i c_m (S2 - c_m^2).
    const grad = new Float64Array(n * d);
    for (let i = 0; i < n; i++) {
      for (let m = 0; m < d; m++) {
        const hingeGrad = std[m] < gamma ? (-s * rho[i] * c[m]) / (d * (n - 1) * std[m]) : 0;
        const covGrad = (4 / (d * (n - 1))) * s ** 3 * v * rho[i] * c[m] * (S2 - c[m] * c[m]);
        grad[i * d + m] = mu * hingeGrad + nu * covGrad;
      }
    }
    return { hinge, covariance, grad };
  };
  const [A, B] = [view(r), view(q)];
  let squares = 0;
  for (let i = 0; i < n; i++) squares += (s * (r[i] - q[i])) ** 2 * S2;
  const invariance = squares / (n * d);
  const gradA = A.grad.slice();
  const gradB = B.grad.slice();
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      const pull = (lambda * 2 * s * (r[i] - q[i]) * c[j]) / (n * d);
      gradA[i * d + j] += pull;
      gradB[i * d + j] -= pull;
    }
  }
  const variance = A.hinge + B.hinge;
  const covariance = A.covariance + B.covariance;
  return { loss: lambda * invariance + mu * variance + nu * covariance, invariance, variance, covariance, gradA, gradB };
}

function expectClose(terms: VICRegTerms, grads: { gradA: Float32Array; gradB: Float32Array } | undefined, expected: ReturnType<typeof rankOneReference>, label: string) {
  for (const name of TERMS) expect(relativeError(terms[name], expected[name]), `${label} ${name}: ${terms[name]} vs ${expected[name]}`).toBeLessThan(1e-5);
  if (!grads) return;
  expect(grads.gradA.every(Number.isFinite) && grads.gradB.every(Number.isFinite), `${label}: gradients finite`).toBe(true);
  expect(relativeNormError(grads.gradA, expected.gradA), `${label} gradA`).toBeLessThan(1e-4);
  expect(relativeNormError(grads.gradB, expected.gradB), `${label} gradB`).toBeLessThan(1e-4);
}

/** The call rejects with an OverflowError with a one-line message naming the term. */
async function expectOverflow(call: Promise<unknown>, label: string): Promise<void> {
  const outcome = await call.then((value) => ({ value }), (error: unknown) => ({ error }));
  if ('value' in outcome) throw new Error(`${label}: expected an OverflowError, got ${JSON.stringify(outcome.value)}`);
  expect(outcome.error, label).toBeInstanceOf(OverflowError);
  expect(outcome.error).toBeInstanceOf(VICRegError);
  expect((outcome.error as OverflowError).code).toBe('overflow');
  expect((outcome.error as Error).message).toMatch(/overflowed float32/);
  expect((outcome.error as Error).message).not.toContain('\n');
}

const instances: VICRegLoss[] = [];
let auto: VICRegLoss, primal: VICRegLoss, dual: VICRegLoss;
beforeAll(async () => {
  auto = await createVICRegLoss();
  [primal, dual] = await Promise.all([createVICRegLoss({ form: 'primal', device: auto.device }), createVICRegLoss({ form: 'dual', device: auto.device })]);
  instances.push(auto, primal, dual);
});
afterAll(() => instances.forEach((vic) => vic.destroy()));
const byForm = () => ({ auto, primal, dual });

/** The instance still gives a correct loss and gradients (general float64 reference). */
async function expectUsable(vic: VICRegLoss, label: string) {
  const shape: Shape = [9, 20];
  const { a, b } = randomViews(...shape, 3);
  const terms = await vic.forward(a, b, shape);
  const grads = await vic.backward();
  const reference = referenceVICReg(a, b, shape, { ...vic.options });
  for (const name of TERMS) expect(relativeError(terms[name], reference[name]), `${label}: ${name} after`).toBeLessThan(1e-5);
  expect(relativeNormError(grads.gradA, reference.gradA), `${label}: gradA after`).toBeLessThan(1e-4);
}

describe('the closed-form rank-1 reference', () => {
  it('agrees with the general float64 reference', () => {
    for (const [n, d] of [[5, 3], [16, 64], [40, 33]] as Shape[]) {
      const views = rankOneViews(n, d, n + d, 3, 'down');
      const general = referenceVICReg(views.a, views.b, [n, d]);
      const closed = rankOneReference(views);
      for (const name of TERMS) expect(relativeError(closed[name], general[name]), `${n}x${d} ${name}`).toBeLessThan(1e-12);
      expect(relativeNormError(closed.gradA, general.gradA)).toBeLessThan(1e-12);
      expect(relativeNormError(closed.gradB, general.gradB)).toBeLessThan(1e-12);
    }
  });
});

describe('inputs around 1e10: OverflowError, not Inf or NaN', () => {
  const shapes: Shape[] = [[8, 16], [64, 64], [32, 512], [130, 200], [2, 1000]];
  for (const [n, d] of shapes) {
    it(`${n} x ${d}, every form: forward rejects; no gradients; the instance works after`, async () => {
      const { a, b } = randomViews(n, d, n * d, { scale: 1e10 });
      expect(a.every(Number.isFinite) && b.every(Number.isFinite)).toBe(true);
      for (const [form, vic] of Object.entries(byForm())) {
        await expectOverflow(vic.forward(a, b, [n, d]), `${n}x${d} ${form}`);
        // backward() pairs with the forward before it, which failed: no gradients, and none of Inf.
        await expect(vic.backward()).rejects.toBeInstanceOf(StateError);
        await expectOverflow(vic.forward(a, b, [n, d], { grad: false }), `${n}x${d} ${form} (grad: false)`);
        await expectUsable(vic, `${n}x${d} ${form}`);
      }
    });
  }

  it('encode(): read() rejects with an OverflowError; the next call is right', async () => {
    const [n, d] = [32, 512];
    const device = auto.device;
    const own: GPUBuffer[] = [];
    const upload = (data: Float32Array) => {
      const buffer = device.createBuffer({ size: data.byteLength, usage: 0x80 | 0x08 | 0x04 });
      device.queue.writeBuffer(buffer, 0, data as Float32Array<ArrayBuffer>);
      own.push(buffer);
      return buffer;
    };
    try {
      const huge = randomViews(n, d, 8, { scale: 1e10 });
      const gradA = upload(new Float32Array(n * d)), gradB = upload(new Float32Array(n * d));
      await expectOverflow((await auto.encode({ a: upload(huge.a), b: upload(huge.b), shape: [n, d], gradA, gradB })).read(), 'encode');
      const good = randomViews(n, d, 9);
      const terms = await (await auto.encode({ a: upload(good.a), b: upload(good.b), shape: [n, d], gradA, gradB })).read();
      const reference = referenceVICReg(good.a, good.b, [n, d]);
      for (const name of TERMS) expect(relativeError(terms[name], reference[name]), name).toBeLessThan(1e-5);
    } finally {
      own.forEach((buffer) => buffer.destroy());
    }
  });

  it('one huge element (1e20), columns of +-3e38, A - B past float32: OverflowError', async () => {
    const [n, d] = [8, 16];
    const { a, b } = randomViews(n, d, 5);
    const oneHuge = a.slice();
    oneHuge[37] = 1e20;
    const alternating = Float32Array.from({ length: n * d }, (_, x) => (Math.floor(x / d) % 2 ? 3e38 : -3e38)); // variance past float32
    const cases: [string, Float32Array, Float32Array][] = [
      ['one element 1e20 in A', oneHuge, b],
      ['A = 3e38, B = -3e38 (A - B overflows)', new Float32Array(n * d).fill(3e38), new Float32Array(n * d).fill(-3e38)],
      ['rows alternating +-3e38 in both views', alternating, alternating],
    ];
    for (const [label, x, y] of cases) {
      for (const [form, vic] of Object.entries(byForm())) await expectOverflow(vic.forward(x, y, [n, d]), `${label}, ${form}`);
    }
    await expectUsable(auto, 'after the huge cases');
  });
});

describe('large values that are not an overflow', () => {
  it('a 1e10 offset with a 1e5 spread matches the reference (columns are centered first)', async () => {
    const shape: Shape = [40, 96];
    const { a, b } = randomViews(...shape, 12, { offset: 1e10, scale: 1e5 });
    const reference = referenceVICReg(a, b, shape);
    for (const [form, vic] of Object.entries(byForm())) {
      const terms = await vic.forward(a, b, shape);
      const grads = await vic.backward();
      for (const name of TERMS) expect(relativeError(terms[name], reference[name]), `${form} ${name}`).toBeLessThan(1e-5);
      expect(relativeNormError(grads.gradA, reference.gradA), `${form} gradA`).toBeLessThan(1e-4);
    }
  });

  it('constant columns of 3e38 in both views: the exact loss (variance 2 (1 - sqrt(eps)), the rest 0)', async () => {
    const [n, d] = [8, 16];
    const huge = new Float32Array(n * d).fill(3e38);
    for (const [form, vic] of Object.entries(byForm())) {
      const terms = await vic.forward(huge, huge, [n, d]);
      const grads = await vic.backward();
      expect(terms.invariance, form).toBe(0);
      expect(terms.covariance, form).toBe(0);
      expect(relativeError(terms.variance, 2 * (1 - Math.sqrt(1e-4))), form).toBeLessThan(1e-6);
      expect(grads.gradA.every((g) => g === 0) && grads.gradB.every((g) => g === 0), `${form}: zero gradients`).toBe(true);
    }
  });
});

describe('the boundary, worst case (rank-1 views): sigma * sqrt(d) at 0.5x works, at 2x overflows', () => {
  // n = 32 throughout: the boundary does not depend on n (measured from n = 32 to 1000).
  const cases: { d: number; forms: ('auto' | 'primal' | 'dual')[] }[] = [
    { d: 512, forms: ['primal', 'dual'] },
    { d: 2048, forms: ['primal', 'dual'] },
    { d: 8192, forms: ['auto'] }, // dual; the primal d x d matrices would take 256 MiB each
  ];
  for (const { d, forms } of cases) {
    const n = 32;
    it(`d = ${d}: sigma = ${(WORST_CASE_BOUNDARY / 2 / Math.sqrt(d)).toPrecision(2)} matches the closed form; ${(2 * WORST_CASE_BOUNDARY / Math.sqrt(d)).toPrecision(2)} rejects`, async () => {
      const safe = rankOneViews(n, d, d, WORST_CASE_BOUNDARY / 2 / Math.sqrt(d), 'down');
      const over = rankOneViews(n, d, d, (2 * WORST_CASE_BOUNDARY) / Math.sqrt(d), 'up');
      const expected = rankOneReference(safe);
      for (const form of forms) {
        const vic = byForm()[form];
        expectClose(await vic.forward(safe.a, safe.b, [n, d]), await vic.backward(), expected, `d = ${d} ${form} safe`);
        await expectOverflow(vic.forward(over.a, over.b, [n, d]), `d = ${d} ${form} over`);
      }
    });
  }

  it('the documented range: sigma = 1e7 at d = 8192 (rank-1) and sigma * sqrt(d) = 1.5e9 at d = 64 are exact', async () => {
    for (const [n, d, sigma] of [[32, 8192, 1e7], [48, 64, DOCUMENTED_SAFE / 8]] as const) {
      const views = rankOneViews(n, d, 7, sigma, 'down');
      expectClose(await auto.forward(views.a, views.b, [n, d]), await auto.backward(), rankOneReference(views), `${n}x${d} sigma ${sigma}`);
    }
  });
});

describe('the boundary, measured', () => {
  const sizes: Shape[] = [[32, 16], [32, 64], [256, 512], [64, 2048], [32, 8192], ...(FULL ? [[1024, 2048], [256, 8192], [64, 16384]] as Shape[] : [])];
  it(`bisection for the largest sigma that works, rank-1 and independent features, d = ${sizes.map((s) => s[1]).join(', ')}`, async () => {
    const rows: string[] = [];
    for (const [n, d] of sizes) {
      for (const kind of ['rank-1', 'independent'] as const) {
        const views = (sigma: number) => (kind === 'rank-1' ? rankOneViews(n, d, 11, sigma, 'none') : randomViews(n, d, 11, { scale: sigma }));
        const works = async (sigma: number) => {
          const { a, b } = views(sigma);
          try {
            await auto.forward(a, b, [n, d], { grad: false });
            return true;
          } catch (error) {
            expect(error).toBeInstanceOf(OverflowError); // nothing else may come out of a large input
            return false;
          }
        };
        // Bisection on log10(sigma), to 5%.
        let [low, high] = [3, 12];
        expect(await works(10 ** low)).toBe(true);
        expect(await works(10 ** high)).toBe(false);
        while (high - low > 0.02) {
          const middle = (low + high) / 2;
          if (await works(10 ** middle)) low = middle;
          else high = middle;
        }
        const sigma = rmsColumnStd(views(10 ** low).a, n, d);
        rows.push(`${String(`${n}x${d}`).padEnd(8)} ${kind.padEnd(12)} largest sigma ${sigma.toExponential(2)}  sigma*sqrt(d) ${(sigma * Math.sqrt(d)).toExponential(2)}`);
        // The documented range is inside what works, for every kind of data.
        expect(sigma * Math.sqrt(d), `${n}x${d} ${kind}`).toBeGreaterThanOrEqual(DOCUMENTED_SAFE);
      }
    }
    console.log(`overflow boundary (default coefficients):\n  ${rows.join('\n  ')}`);
  }, FULL ? 900_000 : 120_000);
});

