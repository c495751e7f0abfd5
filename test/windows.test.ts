// The 'windows' variant (dual form; src/variants/lavapipe/windows.ts): its plan (every block of K read once per block row, the
// records), then the engine against the float64 reference with every scratch buffer and the panel texture
// poisoned, on shapes that are not multiples of its blocks (128 rows), Gram tiles (32 x 64) or column
// groups (windowColumnGroups), with more than 8 blocks per block row (chunks),
// bitwise repeatable; encode() into poisoned caller buffers, overwriting and accumulating; the dual ->
// primal fallback (the primal form then runs 'shuffle'); and where it cannot run. It needs what lavapipe
// has (subgroups of 8, the WGSL language features of WINDOW_LANGUAGE_FEATURES): on an adapter without
// them the tests that run it are skipped, saying why; its plan is checked everywhere.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVICRegLoss, LimitError, OptionError, type VICRegLoss } from '../src/index.js';
import { DEFAULTS } from '../src/coefficients.js';
import {
  BACKWARD_WINDOWS, blockCount, RECORD_BYTES, storedBlock, windowBackwardDispatches, windowColumnGroups, windowGramTiles, windowGroupStrips, windowRawPanel, windowRecords,
} from '../src/variants/lavapipe/windows.js';
import { REGISTRY } from '../src/variants/registry.js';
import { adapter, cannotRun, titled } from './reference/adapter.js';
import { dominantFeatureViews, randomViews, referenceVICReg, relativeError, relativeNormError, scaled } from './reference/float64.js';
import { checkAgainstReference, expectRepeatable, TERMS, type Shape } from './reference/checks.js';

const options = { lambda: 3, mu: 11, nu: 0.7, gamma: 0.9, eps: 1e-3, preset: 'official' } as const;
const STORAGE = 0x80, COPY_SRC = 0x04, COPY_DST = 0x08, MAP_READ = 0x01;

describe('the windows plan (windows.ts)', () => {
  it('each view reads every block of K once per block row, its own block first and both ways', () => {
    for (const n of [2, 127, 128, 129, 300, 1030, 2048, 4096]) {
      const nb = blockCount(n);
      for (const view of [0, 1] as const) {
        const dispatches = windowBackwardDispatches(n, view);
        for (let P = 0; P < nb; P++) {
          const mine = dispatches.filter((x) => x.P === P);
          expect(mine.flatMap((x) => x.blocks).sort((a, b) => a - b), `n ${n} view ${view} P ${P}`).toEqual(Array.from({ length: nb }, (_, i) => i));
          expect(mine[0].blocks[0]).toBe(P);
          expect(mine[0].flags & 1).toBe(1);                       // the first writes
          expect(mine.slice(1).every((x) => (x.flags & 1) === 0)).toBe(true);
          expect(mine.every((x) => x.blocks.length <= BACKWARD_WINDOWS)).toBe(true);
          // Both orientations share dispatches: as few as the windows allow (one per block row up to 8 blocks).
          expect(mine.length).toBe(Math.ceil(nb / BACKWARD_WINDOWS));
          for (const x of mine) {
            // The kernel reads the orientation from flags bit 8 + w.
            expect(x.byColumns.map((_, w) => ((x.flags >> (8 + w)) & 1) === 1)).toEqual(x.byColumns);
            expect(x.flags >> (8 + x.blocks.length)).toBe(0);
            for (const [w, Q] of x.blocks.entries()) {
              if (Q === P) { expect(x.byColumns[w]).toBe(false); continue; }
              // Read by columns exactly where the view keeps (P, Q) transposed, as block (Q, P).
              const keptByRows = storedBlock(view, P, Q, nb) === P * nb + Q;
              expect(x.byColumns[w], `n ${n} view ${view} (${P}, ${Q})`).toBe(!keptByRows);
              // The two block rows that share a stored block find the same one.
              expect(storedBlock(view, Q, P, nb)).toBe(storedBlock(view, P, Q, nb));
            }
          }
        }
      }
    }
  });

  it('the Gram runs one dispatch per column group over the tiles on or above the diagonal; partials and records add up', () => {
    for (const [n, d] of [[3, 8], [257, 1156], [300, 1152], [2048, 8192]] as Shape[]) {
      // Column tiles of 64 over K's blocked side (128 nb): X (X + 1) tiles of 32 x 64 on or above the diagonal.
      const X = (blockCount(n) * 128) / 64;
      expect(windowGramTiles(n)).toBe(X * (X + 1));
      expect(REGISTRY.windows.forms.dual!.gram.partials(n, d, adapter.traits)).toBe(windowGramTiles(n) * 8);
      const groups = windowColumnGroups(n, d);
      const strips = Array.from({ length: groups.groups }, (_, g) => windowGroupStrips(groups, d, g));
      expect(strips.reduce((a, b) => a + b)).toBe(Math.ceil(d / 64));
      expect(strips.every((q) => q >= 1 && q <= groups.width / 64)).toBe(true);
      const records = windowRecords(DEFAULTS, n, d, n, 1, 1000);
      const count = groups.groups + windowBackwardDispatches(n, 1).length + groups.groups;
      expect(records.bytes.byteLength).toBe(count * RECORD_BYTES);
      // Each WindowDims: n, strips, partialOffset (the view's base), flags (first, last group), view, the
      // group's first column, shift and center offsets (view B's: d and 3 d).
      for (let g = 0; g < groups.groups; g++) {
        const dims = new Uint32Array(records.bytes, g * RECORD_BYTES, 8);
        const flags = (g === 0 ? 1 : 0) | (g === groups.groups - 1 ? 2 : 0);
        expect([...dims]).toEqual([n, strips[g], 1000, flags, 1, g * groups.width, d, 3 * d]);
      }
    }
  });
});

const check = (vic: VICRegLoss, shape: Shape, seed: number) => checkAgainstReference(vic, shape, seed, options);

/** Why the windows kernels cannot run here (at a shape they take), or undefined. */
const windowsWhy = cannotRun('windows', 'dual', 130, 644);

describe.skipIf(windowsWhy)(titled('variant windows, form dual (poisoned scratch)', windowsWhy), () => {
  let vic: VICRegLoss;
  beforeAll(async () => {
    vic = await createVICRegLoss({ ...options, variant: 'windows', form: 'dual', poisonScratch: true });
  });
  afterAll(() => vic?.destroy());

  // d % 64 == 0 (3 x 64, 130 x 640, 257 x 1152, 257 x 1216): the Gram and the backward copy the views'
  // strips into their texture as they are (RAW_PANEL); the others pack Zc first. 257 x 1216: two column
  // groups of 10 strips, the last with 9, so a stale layer would be read.
  for (const [index, shape] of ([[2, 4], [3, 8], [17, 36], [65, 132], [130, 644], [257, 1156], [3, 64], [130, 640], [257, 1152], [257, 1216]] as Shape[]).entries()) {
    it(`${shape[0]}x${shape[1]}${shape[1] % 64 === 0 ? ' (views copied as they are)' : ''}`, async () => {
      await check(vic, shape, 900 + index);
      expect(vic.lastPlan).toMatchObject({ variant: 'windows', form: 'dual', fellBack: false });
    });
  }

  it('1030 x 2052 (9 blocks: block rows take two dispatches over their blocks) agrees with the shuffle variant', async () => {
    // The float64 reference would take most of a minute here; the shuffle variant, checked against it
    // at every shape of variants.test.ts (its panels from 512 rows), is the reference instead.
    const [n, d] = [1030, 2052];
    const shuffle = await createVICRegLoss({ ...options, variant: 'shuffle', form: 'dual', device: vic.device });
    try {
      const { a, b } = randomViews(n, d, 994, { scale: 0.9 });
      const terms = await vic.forward(a, b, [n, d]);
      const grads = await vic.backward(-2);
      expect(vic.lastPlan).toMatchObject({ variant: 'windows', form: 'dual', fellBack: false });
      const expected = await shuffle.forward(a, b, [n, d]);
      const expectedGrads = await shuffle.backward(-2);
      expect(shuffle.lastPlan).toMatchObject({ variant: 'shuffle', form: 'dual' });
      for (const name of TERMS) expect(relativeError(terms[name], expected[name]), name).toBeLessThan(1e-5);
      expect(relativeNormError(grads.gradA, expectedGrads.gradA)).toBeLessThan(1e-5);
      expect(relativeNormError(grads.gradB, expectedGrads.gradB)).toBeLessThan(1e-5);
    } finally {
      shuffle.destroy();
    }
  });

  it('is bitwise deterministic over repeated runs', () => expectRepeatable(vic, [130, 644], 990, options));

  it('a forward without gradients still sums K in its matrix, and gives the same terms', async () => {
    const [n, d] = [65, 132];
    const { a, b } = randomViews(n, d, 991);
    const withGrad = await vic.forward(a, b, [n, d]);
    expect(await vic.forward(a, b, [n, d], { grad: false })).toEqual(withGrad);
  });

  it('falls back to the primal form (with the shuffle kernels) on the adversarial case', async () => {
    const [n, d] = [32, 256];
    const { a, b } = dominantFeatureViews(n, d, 9);
    const terms = await vic.forward(a, b, [n, d]);
    const grads = await vic.backward();
    const reference = referenceVICReg(a, b, [n, d], options);
    expect(vic.lastPlan).toMatchObject({ form: 'primal', fellBack: true, variant: 'shuffle' });
    expect(relativeError(terms.covariance, reference.covariance)).toBeLessThan(1e-5);
    expect(relativeNormError(grads.gradA, reference.gradA)).toBeLessThan(1e-4);
  });
});

describe.skipIf(windowsWhy)(titled('variant windows through encode()', windowsWhy), () => {
  let vic: VICRegLoss;
  let host: VICRegLoss;
  const live: GPUBuffer[] = [];
  beforeAll(async () => {
    vic = await createVICRegLoss({ ...options, variant: 'windows', poisonScratch: true });
    host = await createVICRegLoss({ ...options, variant: 'windows', device: vic.device });
  });
  afterAll(() => {
    live.forEach((b) => b.destroy());
    host?.destroy();
    vic?.destroy();
  });
  const upload = (data: Float32Array, usage = STORAGE | COPY_SRC | COPY_DST) => {
    const buffer = vic.device.createBuffer({ size: data.byteLength, usage });
    vic.device.queue.writeBuffer(buffer, 0, data as Float32Array<ArrayBuffer>);
    live.push(buffer);
    return buffer;
  };
  async function download(buffer: GPUBuffer, floats: number): Promise<Float32Array> {
    const staging = vic.device.createBuffer({ size: floats * 4, usage: MAP_READ | COPY_DST });
    const encoder = vic.device.createCommandEncoder();
    encoder.copyBufferToBuffer(buffer, 0, staging, 0, floats * 4);
    vic.device.queue.submit([encoder.finish()]);
    await staging.mapAsync(1);
    const out = new Float32Array(staging.getMappedRange().slice(0));
    staging.destroy();
    return out;
  }

  it('writes poisoned caller gradients bitwise as the host path does, and accumulates into them', async () => {
    const [n, d] = [257, 708];
    const { a, b } = randomViews(n, d, 992);
    const hostTerms = await host.forward(a, b, [n, d]);
    const hostGrads = await host.backward(0.5);
    const nan = new Float32Array(n * d).fill(NaN);
    const [gradA, gradB] = [upload(nan), upload(nan)];
    const terms = await (await vic.encode({ a: upload(a), b: upload(b), shape: [n, d], gradA, gradB, scale: 0.5 })).read();
    expect(terms).toEqual({ ...hostTerms, gradientOverflow: false });
    expect(Buffer.from((await download(gradA, n * d)).buffer).equals(Buffer.from(hostGrads.gradA.buffer))).toBe(true);
    expect(Buffer.from((await download(gradB, n * d)).buffer).equals(Buffer.from(hostGrads.gradB.buffer))).toBe(true);
    // accumulate: the same gradient again on top.
    await (await vic.encode({ a: upload(a), b: upload(b), shape: [n, d], gradA, gradB, scale: 0.5, accumulate: true })).read();
    const twice = await download(gradA, n * d);
    expect(relativeNormError(twice, scaled(Array.from(hostGrads.gradA), 2))).toBeLessThan(1e-6);
  });

  it('the texture copied from the views as they are, or packed from them, gives the host path\'s gradients bitwise', async () => {
    // 257 x 1152: the host path's views are the engine's (copyable): RAW_PANEL. Caller buffers without
    // COPY_SRC cannot be copied: the backward packs Zc first (lavapipe/centered_panels), the same values.
    const [n, d] = [257, 1152];
    const { a, b } = randomViews(n, d, 995, { offset: 1e3 });
    const hostTerms = await host.forward(a, b, [n, d]);
    const hostGrads = await host.backward(1.5);
    for (const usage of [STORAGE | COPY_SRC | COPY_DST, STORAGE | COPY_DST]) {
      const views = [upload(a, usage), upload(b, usage)];
      expect(windowRawPanel(views, d), `usage ${usage}`).toBe((usage & COPY_SRC) !== 0);
      const nan = new Float32Array(n * d).fill(NaN);
      const [gradA, gradB] = [upload(nan), upload(nan)];
      const terms = await (await vic.encode({ a: views[0], b: views[1], shape: [n, d], gradA, gradB, scale: 1.5 })).read();
      expect(terms).toEqual({ ...hostTerms, gradientOverflow: false });
      expect(Buffer.from((await download(gradA, n * d)).buffer).equals(Buffer.from(hostGrads.gradA.buffer)), `usage ${usage}`).toBe(true);
      expect(Buffer.from((await download(gradB, n * d)).buffer).equals(Buffer.from(hostGrads.gradB.buffer)), `usage ${usage}`).toBe(true);
    }
    expect(windowRawPanel([upload(a)], d + 4)).toBe(false);   // a row not a multiple of 256 bytes
  });

  it('falls back to the primal form on the device (one feature x300, n = d/8)', async () => {
    const [n, d] = [32, 256];
    const { a, b } = dominantFeatureViews(n, d, 993);
    const gradA = upload(new Float32Array(n * d).fill(NaN));
    const gradB = upload(new Float32Array(n * d).fill(NaN));
    const terms = await (await vic.encode({ a: upload(a), b: upload(b), shape: [n, d], gradA, gradB })).read();
    const reference = referenceVICReg(a, b, [n, d], options);
    expect(relativeError(terms.covariance, reference.covariance)).toBeLessThan(1e-5);
    expect(relativeNormError(await download(gradA, n * d), reference.gradA)).toBeLessThan(1e-4);
  });
});

describe('where the windows variant cannot run', () => {
  // Each rejection is expected only where the variant runs otherwise.
  it.skipIf(cannotRun('windows', 'dual', 5, 8))(titled('a forced windows variant with d % 4 != 0 is an OptionError naming why; the engine stays usable', cannotRun('windows', 'dual', 5, 8)), async () => {
    const vic = await createVICRegLoss({ variant: 'windows' });
    try {
      const { a, b } = randomViews(5, 6, 1);
      await expect(vic.forward(a, b, [5, 6])).rejects.toThrow(OptionError);
      await expect(vic.forward(a, b, [5, 6])).rejects.toThrow(/variant 'windows' cannot run here: .*d % 4 == 0 \(d = 6\).*n <= 4096/);
      const ok = randomViews(5, 8, 2);
      expect(relativeError((await vic.forward(ok.a, ok.b, [5, 8])).loss, referenceVICReg(ok.a, ok.b, [5, 8]).loss)).toBeLessThan(1e-5);
    } finally {
      vic.destroy();
    }
  });

  it.skipIf(cannotRun('windows', 'dual', 40, 128))(titled('past the binding limit: forced, a LimitError naming the larger of its matrix and panels; auto takes another variant', cannotRun('windows', 'dual', 40, 128)), async () => {
    const { a, b } = randomViews(40, 128, 3);
    const forced = await createVICRegLoss({ variant: 'windows', maxBindingSize: 48 * 1024 });
    const auto = await createVICRegLoss({ maxBindingSize: 48 * 1024, device: forced.device });
    try {
      await expect(forced.forward(a, b, [40, 128])).rejects.toThrow(LimitError);
      await expect(forced.forward(a, b, [40, 128])).rejects.toThrow(/variant 'windows' needs its 40 x 40 blocked matrix \(131072 bytes\) in one binding/);
      const terms = await auto.forward(a, b, [40, 128]);
      expect(auto.lastPlan!.variant).not.toBe('windows');
      expect(relativeError(terms.loss, referenceVICReg(a, b, [40, 128]).loss)).toBeLessThan(1e-5);
    } finally {
      auto.destroy();
      forced.destroy();
    }
  });
});
