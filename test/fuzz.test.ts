// Property-based tests (fast-check) against the float64 reference, and malformed input of every kind.
//
// Reproducible: a fixed seed (override with VICREG_FUZZ_SEED=<n>), so CI runs the same cases every time.
// CI size: ~10 s here. More cases: VICREG_FUZZ_FULL=1 npx vitest run test/fuzz.test.ts (8x the runs, ~70 s).
// A failure prints fast-check's seed and path: rerun with VICREG_FUZZ_SEED=<seed> to replay it.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVICRegLoss, NonFiniteError, NpyError, OptionError, ShapeError, VICRegError, type VICRegLoss } from '../src/index.js';
import { readNpy } from '../src/io/npy.js';
import { gaussianSampler, mulberry32, randomViews, referenceVICReg, relativeError, varianceWeight } from './reference/float64.js';
import { npyBytes } from './reference/npy-bytes.js';

const FULL = process.env.VICREG_FUZZ_FULL === '1';
const SEED = Number(process.env.VICREG_FUZZ_SEED ?? 20_250_611);
/** Runs per property: CI / full. */
const runs = (ci: number) => (FULL ? ci * 8 : ci);
/** endOnFailure: report the first counterexample (with its seed and path) instead of shrinking it, which
 * re-runs the GPU many times and could outlast the test timeout. */
const params = (numRuns: number) => ({ seed: SEED, numRuns, endOnFailure: true });
const TIMEOUT = FULL ? 900_000 : 120_000;

/** One shared device: instances made on it share its compiled pipelines, so each case is cheap. */
let base: VICRegLoss;
beforeAll(async () => {
  base = await createVICRegLoss();
});
afterAll(() => base?.destroy());

// ---------------------------------------------------------------------------------------------------
// Cases and their inputs.

type Kind = 'random' | 'collapsed' | 'dominant' | 'correlated';
interface Case {
  n: number;
  d: number;
  seed: number;
  /** Overall feature scale (std of the features, up to a factor 0.5..1.5 per column). */
  scale: number;
  /** Added to every element of both views. */
  offset: number;
  /** std of B - A relative to the feature scale; 0 makes B equal to A. */
  noise: number;
  kind: Kind;
  options: { lambda: number; mu: number; nu: number; gamma: number; eps: number; preset: 'paper' | 'official'; form: 'auto' | 'primal' | 'dual' };
  /** The upstream gradient passed to backward(). */
  upstream: number;
}

/** Views of a case, built in float64 and rounded once to float32 (what the engine and reference both see). */
function viewsOf(c: Case): { a: Float32Array; b: Float32Array } {
  const { n, d, seed, scale, offset, noise, kind } = c;
  const gaussian = gaussianSampler(seed);
  const uniform = mulberry32(seed ^ 0x5bd1e995);
  const columnScale = Array.from({ length: d }, (_, j) => {
    let s = scale * (0.5 + uniform());
    if (kind === 'collapsed' && j % 3 === 0) s *= 1e-3; // features far below gamma
    if (kind === 'dominant' && j === 0) s *= 300; // forces the dual -> primal fallback
    return s;
  });
  const a = new Float32Array(n * d);
  const b = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const shared = kind === 'correlated' ? gaussian() : 0; // a common factor: large off-diagonal covariance
    for (let j = 0; j < d; j++) {
      const x = shared + gaussian();
      a[i * d + j] = offset + columnScale[j] * x;
      b[i * d + j] = offset + columnScale[j] * (x + noise * gaussian());
    }
  }
  return { a, b };
}

/**
 * 10^u, u uniform in [min, max]. Not fc.double for u: it draws uniformly over the representable doubles
 * (most of them near 0, so u ~ 0 and 10^u ~ 1 nearly always) and favours the bounds.
 */
const logUniform = (minExponent: number, maxExponent: number) =>
  fc.noBias(fc.integer({ min: 0, max: 1_000_000 })).map((k) => 10 ** (minExponent + ((maxExponent - minExponent) * k) / 1_000_000));

const shapeArbitrary = fc.oneof(
  fc.record({ n: fc.integer({ min: 2, max: 96 }), d: fc.integer({ min: 1, max: 160 }) }),
  // Skewed: few rows and many features, or the reverse.
  fc.record({ n: fc.integer({ min: 2, max: 6 }), d: fc.integer({ min: 100, max: 700 }) }),
  fc.record({ n: fc.integer({ min: 100, max: 700 }), d: fc.integer({ min: 1, max: 6 }) }),
);

const caseArbitrary: fc.Arbitrary<Case> = fc.record({
  shape: shapeArbitrary,
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  scale: logUniform(-4, 4),
  offset: fc.oneof(fc.constant(0), fc.tuple(fc.constantFrom(-1, 1), logUniform(-3, 4)).map(([sign, size]) => sign * size)),
  noise: fc.oneof(fc.constant(0), logUniform(-3, 0)),
  kind: fc.constantFrom<Kind>('random', 'collapsed', 'dominant', 'correlated'),
  options: fc.record({
    lambda: fc.oneof(fc.constant(0), logUniform(-2, 2)),
    mu: fc.oneof(fc.constant(0), logUniform(-2, 2)),
    nu: fc.oneof(fc.constant(0), logUniform(-2, 2)),
    gamma: logUniform(-1, 1),
    eps: logUniform(-6, -2),
    preset: fc.constantFrom('paper' as const, 'official' as const),
    form: fc.constantFrom('auto' as const, 'primal' as const, 'dual' as const),
  }),
  upstream: fc.constantFrom(1, -1, 0.5, 3.75, 1e-3, 0),
}).map(({ shape, ...rest }) => ({ ...shape, ...rest }));

const DEFAULT_OPTIONS: Case['options'] = { lambda: 25, mu: 25, nu: 1, gamma: 1, eps: 1e-4, preset: 'paper', form: 'auto' };
const example = (n: number, d: number, overrides: Partial<Case> = {}): Case => ({
  n, d, seed: n * 1000 + d, scale: 1, offset: 0, noise: 0.1, kind: 'random', options: DEFAULT_OPTIONS, upstream: 1, ...overrides,
});
/** Always run, before the random cases: the extreme shapes, and the tiny scale with eps = scale. */
const EXAMPLES: Case[] = [
  example(2, 1), example(2, 2), example(3, 1000), example(1000, 3),
  example(2, 1, { options: { ...DEFAULT_OPTIONS, form: 'dual' } }),
  example(1000, 3, { options: { ...DEFAULT_OPTIONS, form: 'dual' }, kind: 'correlated' }),
  example(3, 1000, { scale: 1e-4, offset: 1e4, options: { ...DEFAULT_OPTIONS, form: 'primal' } }),
  example(40, 64, { scale: 1e-4 }), // eps = 1e-4 > var = 1e-8: the variance term is fine
  example(40, 64, { scale: 1e4, noise: 0 }), // variance exactly 0, invariance exactly 0
];

// ---------------------------------------------------------------------------------------------------
// Tolerances.
//
// 1e-5 relative on the terms and 1e-4 relative norm on the gradients, as everywhere in the tests. But a
// term (or gradient) that is ~0 compared with the quantities it is computed from has no meaningful
// relative error: float32 rounds the inputs of a subtraction, not its result. So each comparison is
// relative to max(|expected|, floor), the floor being the size of what is subtracted:
//   variance    sum_j max(0, gamma - std_j): gamma - std_j is a difference of numbers of size std_j, so
//               its float32 error is ~1e-7 std_j however small the difference (features near the kink;
//               an engine may even land on the other side of it). Floor: k (mean_j std_j(A) + mean_j std_j(B)).
//   covariance  the off-diagonal remainder of ||C||_F^2: where features are nearly uncorrelated it is
//               small next to the diagonal, and both forms compute C's entries with errors relative to
//               the variances (the dual form literally subtracts the diagonal). Floor: (1/d) sum_j var_j^2
//               per view, the diagonal mass.
//   invariance  a mean of squares, nothing cancels: no floor.
//   loss        the weighted sum of the floors (the terms are >= 0 with coefficients >= 0, so they do not
//               cancel each other).
//   gradients   the sum of three parts that can cancel (e.g. the invariance pull against the covariance
//               push); the floor is the sum of the parts' norms, each computed by the reference with the
//               other two coefficients set to 0.
// With scale 1e-4 and eps = 1e-4 none of this is loose: std_j ~ 1e-2 and the variance term ~1 (no floor
// needed), the covariance term ~1e-16 relative to its own floor of the same size.

interface Expected { terms: Record<'loss' | 'invariance' | 'variance' | 'covariance', number>; floors: Record<'loss' | 'invariance' | 'variance' | 'covariance', number>; gradA: Float64Array; gradB: Float64Array; gradFloor: number }

function columnMoments(z: Float32Array, n: number, d: number) {
  let meanStd = 0;
  let diagonalMass = 0;
  for (let j = 0; j < d; j++) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += z[i * d + j];
    mean /= n;
    let squares = 0;
    for (let i = 0; i < n; i++) squares += (z[i * d + j] - mean) ** 2;
    const variance = squares / (n - 1);
    meanStd += Math.sqrt(variance);
    diagonalMass += variance * variance;
  }
  return { meanStd: meanStd / d, diagonalMass: diagonalMass / d };
}

function norm(x: ArrayLike<number>): number {
  let squares = 0;
  for (let i = 0; i < x.length; i++) squares += x[i] * x[i];
  return Math.sqrt(squares);
}

function expected(c: Case, a: Float32Array, b: Float32Array): Expected {
  const { n, d, options, upstream } = c;
  const shape: [number, number] = [n, d];
  const reference = referenceVICReg(a, b, shape, options);
  const k = varianceWeight(options.preset);
  const [momentsA, momentsB] = [columnMoments(a, n, d), columnMoments(b, n, d)];
  const variance = k * (momentsA.meanStd + momentsB.meanStd);
  const covariance = momentsA.diagonalMass + momentsB.diagonalMass;
  const part = (lambda: number, mu: number, nu: number) => referenceVICReg(a, b, shape, { ...options, lambda, mu, nu });
  const parts = [part(options.lambda, 0, 0), part(0, options.mu, 0), part(0, 0, options.nu)];
  const gradFloor = Math.abs(upstream) * parts.reduce((sum, p) => sum + Math.hypot(norm(p.gradA), norm(p.gradB)), 0);
  return {
    terms: reference,
    floors: { invariance: 0, variance, covariance, loss: options.mu * variance + options.nu * covariance },
    gradA: reference.gradA.map((g) => g * upstream),
    gradB: reference.gradB.map((g) => g * upstream),
    gradFloor,
  };
}

/** ||actual - expected|| / max(||expected||, floor) over both gradients together. */
function gradientError(actual: { gradA: Float32Array; gradB: Float32Array }, e: Expected): number {
  let diff = 0;
  for (let x = 0; x < e.gradA.length; x++) diff += (actual.gradA[x] - e.gradA[x]) ** 2 + (actual.gradB[x] - e.gradB[x]) ** 2;
  if (diff === 0) return 0;
  return Math.sqrt(diff) / Math.max(Math.hypot(norm(e.gradA), norm(e.gradB)), e.gradFloor);
}

const TERMS = ['loss', 'invariance', 'variance', 'covariance'] as const;
const describeCase = (c: Case) => `${c.n}x${c.d} ${c.kind} scale ${c.scale.toPrecision(3)} offset ${c.offset.toPrecision(3)} noise ${c.noise.toPrecision(3)} ${JSON.stringify(c.options)} upstream ${c.upstream}`;

/** Runs a case on a fresh instance (on the shared device) and checks it against the reference. */
async function checkCase(c: Case): Promise<void> {
  const { a, b } = viewsOf(c);
  const vic = await createVICRegLoss({ ...c.options, device: base.device });
  try {
    const terms = await vic.forward(a, b, [c.n, c.d]);
    const grads = await vic.backward(c.upstream);
    const e = expected(c, a, b);
    const label = describeCase(c);
    for (const name of TERMS) {
      const error = Math.abs(terms[name] - e.terms[name]) / Math.max(Math.abs(e.terms[name]), e.floors[name]);
      expect(terms[name] === e.terms[name] || error < 1e-5, `${name}: ${terms[name]} vs ${e.terms[name]} (floor ${e.floors[name]}), ${label}`).toBe(true);
    }
    const gradError = gradientError(grads, e);
    expect(gradError, `gradients, ${label}`).toBeLessThan(1e-4);
  } finally {
    vic.destroy();
  }
}

describe('random problems against the float64 reference', () => {
  it('shapes, scales 1e-4..1e4, offsets, presets, coefficients, forms, upstream scales', async () => {
    for (const c of EXAMPLES) await checkCase(c);
    await fc.assert(fc.asyncProperty(caseArbitrary, checkCase), params(runs(300)));
  }, TIMEOUT);
});

// ---------------------------------------------------------------------------------------------------
// Malformed input: each must reject with its typed error, and the same instance must then give a
// correct loss right away.

const GOOD_SHAPE: [number, number] = [6, 10];
const GOOD = randomViews(...GOOD_SHAPE, 77);
const GOOD_LOSS = referenceVICReg(GOOD.a, GOOD.b, GOOD_SHAPE).loss;

async function expectUsable(vic: VICRegLoss): Promise<void> {
  const terms = await vic.forward(GOOD.a, GOOD.b, GOOD_SHAPE);
  expect(relativeError(terms.loss, GOOD_LOSS)).toBeLessThan(1e-5);
}

/** The call fails (throws or rejects) with an instance of `errorClass`, with a one-line message. */
async function expectTypedFailure(call: () => unknown, errorClass: new (...args: never[]) => VICRegError): Promise<VICRegError> {
  let caught: unknown;
  try {
    await call();
  } catch (error) {
    caught = error;
  }
  expect(caught, 'the call should fail').toBeInstanceOf(errorClass);
  expect(caught).toBeInstanceOf(VICRegError);
  expect((caught as Error).message).not.toContain('\n');
  return caught as VICRegError;
}

describe('malformed engine input', () => {
  let vic: VICRegLoss;
  beforeAll(async () => {
    vic = await createVICRegLoss({ device: base.device });
  });
  afterAll(() => vic?.destroy());

  /** Values that are not a Float32Array (or GPUBuffer) of the right length. */
  const badView = (length: number) => fc.oneof(
    fc.integer({ min: 0, max: 3 * length + 3 }).filter((l) => l !== length).map((l) => new Float32Array(l)),
    fc.constant(new Float64Array(length)),
    fc.constant(Array.from({ length }, () => 0.5)),
    fc.constant(new Int32Array(length)),
    fc.constant(new Uint8Array(length * 4)),
    fc.constant(new Float32Array(length).buffer),
    fc.constantFrom(null, undefined, 'A.npy', 42, true, {}, { length }),
  );

  it('bad lengths and wrong types (Float64Array, plain arrays, null, strings, ...): ShapeError', async () => {
    const [n, d] = GOOD_SHAPE;
    await fc.assert(fc.asyncProperty(badView(n * d), fc.boolean(), async (bad, inA) => {
      const [a, b] = inA ? [bad, GOOD.b] : [GOOD.a, bad];
      const error = await expectTypedFailure(() => vic.forward(a as Float32Array, b as Float32Array, GOOD_SHAPE), ShapeError);
      expect(error.message).toMatch(inA ? /^A / : /^B /);
      await expectUsable(vic);
    }), params(runs(40)));
  });

  it('bad shapes (n < 2, not integers, not finite, not 2-D, not numbers): ShapeError', async () => {
    const badDimension = fc.oneof(
      fc.integer({ min: -5, max: 0 }), fc.double({ min: 1.01, max: 9.99, noInteger: true, noNaN: true }),
      fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, '6', null, undefined),
    );
    const badShape = fc.oneof(
      fc.tuple(fc.constant(1), fc.integer({ min: 1, max: 60 })), // n = 1: no unbiased variance
      fc.tuple(badDimension, fc.integer({ min: 1, max: 60 })),
      fc.tuple(fc.integer({ min: 2, max: 60 }), badDimension),
      fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 0, maxLength: 4 }).filter((s) => s.length !== 2),
      fc.constantFrom(null, '6x10', 60, {}),
    );
    await fc.assert(fc.asyncProperty(badShape, async (shape) => {
      await expectTypedFailure(() => vic.forward(GOOD.a, GOOD.b, shape as unknown as [number, number]), ShapeError);
      await expectUsable(vic);
    }), params(runs(40)));
  });

  it('a bad backward scale (NaN, Inf, strings, null): OptionError', async () => {
    await fc.assert(fc.asyncProperty(fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, '2', null, {}), async (scale) => {
      await vic.forward(GOOD.a, GOOD.b, GOOD_SHAPE);
      await expectTypedFailure(() => vic.backward(scale as number), OptionError);
      await expectUsable(vic);
    }), params(12));
  });

  it('NaN/Inf at random positions: NonFiniteError naming the first one in row-major order, view A first', async () => {
    const placement = fc.record({
      n: fc.integer({ min: 2, max: 70 }),
      d: fc.integer({ min: 1, max: 70 }),
      // Positions as fractions of the view, so they fit any shape.
      spots: fc.array(fc.record({
        inA: fc.boolean(),
        at: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        value: fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY),
      }), { minLength: 1, maxLength: 5 }),
    });
    await fc.assert(fc.asyncProperty(placement, async ({ n, d, spots }) => {
      const { a, b } = randomViews(n, d, n * 100 + d);
      const placed = spots.map(({ inA, at, value }) => ({ inA, index: Math.floor(at * n * d), value }));
      for (const { inA, index, value } of placed) (inA ? a : b)[index] = value;
      // The first non-finite element: smallest index in A, else smallest in B (the last write wins
      // where two spots coincide, so read the values back from the arrays).
      const firstIn = (z: Float32Array) => z.findIndex((x) => !Number.isFinite(x));
      const inA = firstIn(a) >= 0;
      const index = inA ? firstIn(a) : firstIn(b);
      const error = (await expectTypedFailure(() => vic.forward(a, b, [n, d]), NonFiniteError)) as NonFiniteError;
      expect({ view: error.view, row: error.row, column: error.column }).toEqual({ view: inA ? 'A' : 'B', row: Math.floor(index / d), column: index % d });
      expect(Object.is(error.value, (inA ? a : b)[index])).toBe(true);
      expect(error.code).toBe('non-finite');
      await expectUsable(vic);
    }), params(runs(40)));
  });
});

// ---------------------------------------------------------------------------------------------------
// .npy files: readNpy must return a consistent array or throw an NpyError, nothing else (no RangeError,
// no TypeError, no huge allocation), whatever the bytes.

/** A well-formed .npy (format 1.0, 2.0 or 3.0), header padded to a multiple of 64 as numpy writes it. */
function npyFile(descr: '<f4' | '<f8', shape: number[], values: number[], major: 1 | 2 | 3 = 1): Uint8Array {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const data = descr === '<f4' ? new Uint8Array(new Float32Array(values).buffer) : new Uint8Array(new Float64Array(values).buffer);
  return npyBytes(dict, data, { major });
}

const npyArbitrary = fc.record({
  descr: fc.constantFrom('<f4' as const, '<f8' as const),
  shape: fc.array(fc.integer({ min: 0, max: 7 }), { minLength: 0, maxLength: 3 }),
  major: fc.constantFrom(1 as const, 2 as const, 3 as const),
  seed: fc.integer({ min: 0, max: 1000 }),
}).map(({ descr, shape, major, seed }) => {
  const count = shape.reduce((p, s) => p * s, 1);
  const values = Array.from({ length: count }, (_, i) => Math.fround(Math.sin(seed + i) * 100));
  const bytes = npyFile(descr, shape, values, major);
  /** Where the data starts: everything before is preamble and header. */
  const dataStart = bytes.length - count * (descr === '<f4' ? 4 : 8);
  return { descr, shape, values, major, bytes, dataStart };
});

/** readNpy's outcome: an NpyError, or an array whose data fills its shape. Anything else fails. */
function readOrNpyError(bytes: Uint8Array): { data: Float32Array | Uint16Array; shape: number[] } | NpyError {
  try {
    const result = readNpy(bytes, 'fuzz.npy');
    // float16 files keep their bits; every other float type reads as float32.
    expect([Float32Array, Uint16Array]).toContain(result.data.constructor);
    expect(result.data.length).toBe(result.shape.reduce((p, s) => p * s, 1));
    return result;
  } catch (error) {
    if (error instanceof NpyError) {
      expect(error.message).toMatch(/^fuzz\.npy /);
      return error;
    }
    throw error;
  }
}

describe('malformed .npy files', () => {
  it('well-formed files (v1, v2, v3; float32 and float64; 0-D to 3-D) read back exactly', () => {
    fc.assert(fc.property(npyArbitrary, ({ shape, values, bytes }) => {
      const result = readNpy(bytes, 'fuzz.npy');
      expect(result.shape).toEqual(shape);
      expect([...result.data]).toEqual(values);
    }), params(runs(100)));
  });

  it('every truncation is an NpyError', () => {
    fc.assert(fc.property(npyArbitrary, fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), ({ bytes }, cut) => {
      const length = Math.floor(cut * bytes.length);
      expect(readOrNpyError(bytes.subarray(0, length))).toBeInstanceOf(NpyError);
    }), params(runs(200)));
  });

  it('extra bytes after the data are an NpyError', () => {
    fc.assert(fc.property(npyArbitrary, fc.integer({ min: 1, max: 64 }), ({ bytes }, extra) => {
      const longer = new Uint8Array(bytes.length + extra);
      longer.set(bytes);
      expect(readOrNpyError(longer)).toBeInstanceOf(NpyError);
    }), params(runs(50)));
  });

  it('random corruption of the preamble and header: an NpyError or a consistent array, never another error', () => {
    const corruption = fc.array(fc.record({ at: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), byte: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 4 });
    fc.assert(fc.property(npyArbitrary, corruption, ({ bytes, dataStart }, changes) => {
      const corrupt = bytes.slice();
      // Only the preamble and header: any data bytes are some float32/float64 value.
      for (const { at, byte } of changes) corrupt[Math.floor(at * dataStart)] = byte;
      readOrNpyError(corrupt);
    }), params(runs(300)));
  });

  /** A v1.0 file with this header dict and 16 data bytes. */
  function withDict(dict: string): Uint8Array {
    const header = dict + ' '.repeat((64 - ((10 + dict.length + 1) % 64)) % 64) + '\n';
    const encoded = new TextEncoder().encode(header);
    const bytes = new Uint8Array(10 + encoded.length + 16);
    bytes.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
    new DataView(bytes.buffer).setUint16(8, encoded.length, true);
    bytes.set(encoded, 10);
    return bytes;
  }

  it('malformed header dicts: an NpyError', () => {
    const badDict = fc.constantFrom(
      '', '{}', 'not a dict',
      `{'descr': '<f4', 'fortran_order': False}`, // no shape
      `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'shape': (2, 2)}`,
      `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'extra': 1}`,
      `{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }`,
      `{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }`,
      `{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }`,
      `{'descr': '<f4', 'fortran_order': maybe, 'shape': (2, 2), }`,
      `{'descr': '<f4', 'fortran_order': False, 'shape': (2, -2), }`,
      `{'descr': '<f4', 'fortran_order': False, 'shape': (2.5, 2), }`,
      `{'descr': '<f4', 'fortran_order': False, 'shape': [2, 2], }`,
      `{'descr': '<f4', 'fortran_order': False, 'shape': (4), }`, // (4) is not a tuple
      `{'descr': 4, 'fortran_order': False, 'shape': (2, 2), }`,
      `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`, // 24 bytes declared, 16 given
    );
    // 16 data bytes: the one valid reading would be 2 x 2 float32, and every dict above is wrong
    // somewhere else, so each must be an NpyError.
    fc.assert(fc.property(badDict, (dict) => {
      expect(readOrNpyError(withDict(dict))).toBeInstanceOf(NpyError);
    }), params(runs(30)));
  });

  it('random text in the shape tuple: an NpyError or a consistent array', () => {
    fc.assert(fc.property(fc.string({ maxLength: 40 }), (text) => {
      readOrNpyError(withDict(`{'descr': '<f4', 'fortran_order': False, 'shape': (${text}), }`));
    }), params(runs(200)));
  });

  it('after malformed files, a valid one read by readNpy and fed to the engine gives the right loss', async () => {
    for (const bytes of [new Uint8Array(3), npyFile('<f4', [2, 2], [1, 2, 3, 4]).subarray(0, 70)]) expect(readOrNpyError(bytes)).toBeInstanceOf(NpyError);
    const [n, d] = GOOD_SHAPE;
    const a = readNpy(npyFile('<f4', [n, d], [...GOOD.a]), 'A.npy');
    const b = readNpy(npyFile('<f8', [n, d], [...GOOD.b], 2), 'B.npy');
    expect(a.shape).toEqual([n, d]);
    const vic = await createVICRegLoss({ device: base.device });
    try {
      expect(relativeError((await vic.forward(a.data, b.data, [n, d])).loss, GOOD_LOSS)).toBeLessThan(1e-5);
    } finally {
      vic.destroy();
    }
  });

  it('huge declared shapes: an NpyError at once, without allocating the declared size', () => {
    const hugeShape = fc.oneof(
      fc.array(fc.integer({ min: 2 ** 20, max: 2 ** 31 }), { minLength: 2, maxLength: 3 }), // terabytes
      fc.tuple(fc.integer({ min: 2 ** 13, max: 2 ** 15 }), fc.integer({ min: 2 ** 13, max: 2 ** 15 })), // 0.25-4 GiB: allocatable
      fc.array(fc.constant(2 ** 30), { minLength: 3, maxLength: 6 }), // past 2^53 bytes
      fc.constant([Number.MAX_SAFE_INTEGER]),
      fc.constant([99_999_999_999_999_999_999]),
    );
    fc.assert(fc.property(hugeShape, fc.constantFrom('<f4' as const, '<f8' as const), (shape, descr) => {
      const text = shape.map((s) => BigInt(s).toString());
      const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${text.join(', ')}${text.length === 1 ? ',' : ''}), }`;
      const header = dict + ' '.repeat((64 - ((10 + dict.length + 1) % 64)) % 64) + '\n';
      const bytes = new Uint8Array(10 + header.length + 64); // 64 bytes of data, far short of the declared size
      bytes.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
      new DataView(bytes.buffer).setUint16(8, header.length, true);
      bytes.set(new TextEncoder().encode(header), 10);
      const before = process.memoryUsage().arrayBuffers;
      const start = performance.now();
      const outcome = readOrNpyError(bytes);
      const grew = process.memoryUsage().arrayBuffers - before;
      expect(outcome).toBeInstanceOf(NpyError);
      expect((outcome as NpyError).message).toMatch(/truncated|too large/);
      expect(grew, 'bytes allocated while reading').toBeLessThan(2 ** 20);
      expect(performance.now() - start).toBeLessThan(100);
    }), params(runs(40)));
  });
});
