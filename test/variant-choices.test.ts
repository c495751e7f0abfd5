// Kept variant choices: variantChoices() exports what 'measure' chose on a device ('auto' times nothing); the variantChoices option
// seeds a new device with them (forward/backward and encodeSync use them, no trial), skips choices from
// another adapter or other kernels, and rejects malformed ones with an OptionError naming the problem.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { allKernelSpecs, KERNELS_DIGEST } from '../src/variants/registry.js';
import { createVICRegLoss, OptionError, type VariantChoices, type VICRegLoss } from '../src/index.js';
import type { Variant } from '../src/types.js';
import { randomViews, referenceVICReg, relativeError, relativeNormError } from './reference/float64.js';
import { variantsHere } from './reference/adapter.js';

const STORAGE = 0x80, COPY_SRC = 0x04, COPY_DST = 0x08, MAP_READ = 0x01;
const options = { lambda: 4, mu: 9, nu: 1.3, gamma: 0.8, preset: 'official', variant: 'measure' } as const;
// n < d: the dual form; d % 4 == 0, so every variant can run where the device has subgroups.
const [n, d] = [40, 132];
const CLASS = '|6|8|';   // ceil(log2 40), ceil(log2 132)

async function checkAgainstReference(vic: VICRegLoss, seed: number) {
  const { a, b } = randomViews(n, d, seed, { scale: 0.9 });
  const terms = await vic.forward(a, b, [n, d]);
  const grads = await vic.backward();
  const reference = referenceVICReg(a, b, [n, d], options);
  expect(relativeError(terms.loss, reference.loss)).toBeLessThan(1e-5);
  expect(relativeNormError(grads.gradA, reference.gradA)).toBeLessThan(1e-4);
  expect(relativeNormError(grads.gradB, reference.gradB)).toBeLessThan(1e-4);
}

/** Choices of `variant` for both roles of both forms in this shape class, as a device with `supported` keys them. */
function seedOf(base: VariantChoices, supported: string, variant: Variant): VariantChoices {
  const choices: Record<string, Variant> = {};
  for (const role of ['gram|primal', 'gram|dual', 'pair|dual', 'backward|primal', 'backward|dual']) choices[`${role}${CLASS}${supported}`] = variant;
  return { ...base, choices };
}

/** encode() or encodeSync() of one step on `vic`'s device; the gradients read back. */
async function encodeStep(vic: VICRegLoss, a: Float32Array, b: Float32Array, sync: boolean): Promise<Float32Array[]> {
  const device = vic.device;
  const made: GPUBuffer[] = [];
  const buffer = (data?: Float32Array, usage = STORAGE | COPY_SRC | COPY_DST) => {
    const g = device.createBuffer({ size: n * d * 4, usage });
    if (data) device.queue.writeBuffer(g, 0, data as Float32Array<ArrayBuffer>);
    made.push(g);
    return g;
  };
  try {
    const args = { a: buffer(a), b: buffer(b), shape: [n, d] as const, gradA: buffer(), gradB: buffer() };
    const pending = sync ? vic.encodeSync(args) : await vic.encode(args);
    await pending.read();
    const out: Float32Array[] = [];
    for (const g of [args.gradA, args.gradB]) {
      const staging = buffer(undefined, MAP_READ | COPY_DST);
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(g, 0, staging, 0, n * d * 4);
      device.queue.submit([encoder.finish()]);
      await staging.mapAsync(1);
      out.push(new Float32Array(staging.getMappedRange().slice(0)));
      staging.unmap();
    }
    return out;
  } finally {
    made.forEach((g) => g.destroy());
  }
}

const bitwiseEqual = (x: Float32Array, y: Float32Array) => Buffer.from(x.buffer).equals(Buffer.from(y.buffer));

describe('variant choices', () => {
  let measured: VariantChoices;
  let supported: string;

  it("'auto' times nothing: it runs the first variant of the registry's order that can run, and keeps no choice", async () => {
    const vic = await createVICRegLoss({ ...options, variant: 'auto' });
    try {
      await checkAgainstReference(vic, 3);
      const runs = variantsHere('dual', n, d).runs;
      // The order docs/design.md gives for 'auto'.
      const order = ['windows', 'shuffle', 'subgroup', 'tiled', 'workgroup'] as const;
      expect(vic.lastPlan!.variant).toBe(order.find((v) => runs.includes(v)));
      expect(vic.variantChoices().choices).toEqual({});
    } finally {
      vic.destroy();
    }
  });

  it("exports the choices 'measure' made, as JSON-ready data", async () => {
    const vic = await createVICRegLoss(options);
    try {
      expect(vic.variantChoices().choices).toEqual({});
      await checkAgainstReference(vic, 1);
      measured = vic.variantChoices();
      expect(measured.format).toBe('vicreg-wgsl/variant-choices/1');
      expect(measured.adapter).toBe(vic.adapterName);
      expect(measured.kernels).toMatch(/^[0-9a-f]{8}$/);
      const keys = Object.keys(measured.choices);
      // With a backward to follow: the pair's key where 'windows' can run (its Gram fixes its backward), else the Gram's.
      const gram = keys.find((k) => k.startsWith(`gram|dual${CLASS}`) || k.startsWith(`pair|dual${CLASS}`));
      expect(gram, keys.join(' ')).toBeDefined();
      supported = gram!.slice(`gram|dual${CLASS}`.length);
      expect(gram!.startsWith('pair|')).toBe(supported.split(',').includes('windows'));
      // No backward trial after a windows Gram: its backward is the only one that reads its layout.
      expect(keys.some((k) => k.startsWith(`backward|dual${CLASS}`)), keys.join(' ')).toBe(measured.choices[gram!] !== 'windows');
      expect(supported.split(',')).toContain(measured.choices[gram!]);
      expect(supported.split(',')).toContain('tiled');
      expect(vic.lastPlan!.variant).toBe(measured.choices[gram!]);
      expect(JSON.parse(JSON.stringify(measured))).toEqual(measured);
    } finally {
      vic.destroy();
    }
  });

  it('a new device seeded with choices uses them: forward and backward, and encodeSync (which never runs a trial)', async () => {
    const seed = seedOf(measured, supported, 'tiled');
    const seeded = await createVICRegLoss({ ...options, variantChoices: JSON.parse(JSON.stringify(seed)) });
    // The same device, with the variant forced: what the seeded choice must reproduce bit for bit, and
    // another variant, which must round differently for that comparison to mean anything.
    const other = supported.split(',').find((v) => v !== 'tiled') as Variant;
    const forcedTiled = await createVICRegLoss({ ...options, variant: 'tiled', device: seeded.device });
    const forcedOther = await createVICRegLoss({ ...options, variant: other, device: seeded.device });
    try {
      expect(seeded.variantChoices().choices).toEqual(seed.choices);
      await checkAgainstReference(seeded, 2);
      expect(seeded.lastPlan!.variant).toBe('tiled');
      expect(seeded.variantChoices().choices).toEqual(seed.choices);

      const { a, b } = randomViews(n, d, 3, { scale: 0.9 });
      const viaSeed = await encodeStep(seeded, a, b, true);
      const viaTiled = await encodeStep(forcedTiled, a, b, false);
      const viaOther = await encodeStep(forcedOther, a, b, false);
      expect(bitwiseEqual(viaOther[0], viaTiled[0]) && bitwiseEqual(viaOther[1], viaTiled[1])).toBe(false);
      expect(bitwiseEqual(viaSeed[0], viaTiled[0])).toBe(true);
      expect(bitwiseEqual(viaSeed[1], viaTiled[1])).toBe(true);
    } finally {
      forcedOther.destroy();
      forcedTiled.destroy();
      seeded.destroy();
    }
  });

  it("with a backward to follow, times the Gram with its backward where 'windows' can run; a seeded pair choice is used", async () => {
    if (!supported.split(',').includes('windows')) {
      // Only the Gram role here: nothing to pair (a device without 'windows').
      expect(Object.keys(measured.choices).some((k) => k.startsWith('pair|'))).toBe(false);
      return;
    }
    const vic = await createVICRegLoss(options);
    try {
      const { a, b } = randomViews(n, d, 9, { scale: 0.9 });
      await vic.forward(a, b, [n, d], { grad: false });
      expect(Object.keys(vic.variantChoices().choices)).toEqual([`gram|dual${CLASS}${supported}`]);
      await vic.forward(a, b, [n, d]);
      await vic.backward();
      expect(Object.keys(vic.variantChoices().choices)).toContain(`pair|dual${CLASS}${supported}`);
    } finally {
      vic.destroy();
    }
    // Seeded with each of 'windows' and 'shuffle' for the pair (and the backward: where the pair's Gram
    // leaves a choice of backward, it is the same variant), nothing for the Gram alone: the gradients are
    // bitwise those of the forced variant.
    const { a, b } = randomViews(n, d, 10, { scale: 0.9 });
    for (const variant of ['windows', 'shuffle'] as const) {
      const choices = { [`pair|dual${CLASS}${supported}`]: variant, [`backward|dual${CLASS}${supported}`]: variant };
      const seeded = await createVICRegLoss({ ...options, variantChoices: { ...measured, choices } });
      const forced = await createVICRegLoss({ ...options, variant, device: seeded.device });
      try {
        const runs = [];
        for (const vic of [seeded, forced]) {
          await vic.forward(a, b, [n, d]);
          expect(vic.lastPlan!.variant).toBe(variant);
          const g = await vic.backward();
          runs.push([g.gradA, g.gradB]);
        }
        expect(bitwiseEqual(runs[0][0], runs[1][0]) && bitwiseEqual(runs[0][1], runs[1][1])).toBe(true);
        // encodeSync (no trials) takes the seeded pair choice too.
        const viaSync = await encodeStep(seeded, a, b, true);
        expect(bitwiseEqual(viaSync[0], runs[1][0]) && bitwiseEqual(viaSync[1], runs[1][1])).toBe(true);
      } finally {
        forced.destroy();
        seeded.destroy();
      }
    }
    // Each seeded run ran its own variant (lastPlan above). The two variants' gradients may agree bitwise:
    // since the windows backward reads K's diagonal blocks whole (no separate correction for view B's
    // diagonal), both sum every entry of K, and of K Zc, in the same order here.
  });

  it('skips choices measured on another adapter or with other kernels', async () => {
    const seed = seedOf(measured, supported, 'tiled');
    for (const stale of [{ ...seed, adapter: `${seed.adapter} (another one)` }, { ...seed, kernels: seed.kernels === '00000000' ? '00000001' : '00000000' }]) {
      const vic = await createVICRegLoss({ ...options, variantChoices: stale });
      try {
        expect(vic.variantChoices().choices).toEqual({});
        await checkAgainstReference(vic, 4);
        // Chosen afresh by a trial, as without a seed.
        expect(Object.keys(vic.variantChoices().choices).length).toBeGreaterThan(0);
      } finally {
        vic.destroy();
      }
    }
  });

  it('keeps only measured choices: a shape past the trial budget takes the static preference, not kept', async () => {
    const vic = await createVICRegLoss({ ...options, form: 'primal' });
    try {
      // 4 x 8192 in the primal form: the d x d trial is past the budget.
      const { a, b } = randomViews(4, 8192, 5);
      await vic.forward(a, b, [4, 8192], { grad: false });
      expect(Object.keys(vic.variantChoices().choices).filter((k) => k.includes('|2|13|'))).toEqual([]);
      // A measured one, for contrast.
      await checkAgainstReference(vic, 6);
      expect(Object.keys(vic.variantChoices().choices).some((k) => k.startsWith(`gram|primal${CLASS}`))).toBe(true);
    } finally {
      vic.destroy();
    }
  });

  it('carries the choices over when the engine replaces a lost device', async () => {
    const vic = await createVICRegLoss(options);
    try {
      await checkAgainstReference(vic, 7);
      // A choice no trial of this test makes (another shape class, 'tiled'), put on the device by a second
      // engine's seed: only carrying the device's choices over can bring it to the new device.
      const marker = { ...seedOf(measured, supported, 'tiled'), adapter: vic.adapterName };
      marker.choices = Object.fromEntries(Object.entries(marker.choices).map(([k, v]) => [k.replace(CLASS, '|3|5|'), v]));
      const borrower = await createVICRegLoss({ ...options, device: vic.device, variantChoices: marker });
      expect(borrower.variantChoices().choices).toMatchObject(marker.choices);
      borrower.destroy();
      const before = vic.variantChoices();
      expect(before.choices).toMatchObject(marker.choices);
      const lost = vic.device;
      lost.destroy();
      await new Promise((resolve) => setTimeout(resolve, 50));   // let the loss be noticed
      await checkAgainstReference(vic, 8);
      expect(vic.device).not.toBe(lost);
      expect(vic.variantChoices().choices).toEqual(before.choices);
    } finally {
      vic.destroy();
    }
  });

  it("the kernels digest covers every kernel file, and the pipelines' constants", () => {
    const dir = fileURLToPath(new URL('../kernels/', import.meta.url));
    const codes = new Set(allKernelSpecs().map((spec) => spec.code));
    // Every kernel, in every folder but shared/ (the definitions kernels copy, not kernels themselves).
    const files = (readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith('.wgsl') && !f.startsWith('shared'));
    expect(files.length).toBeGreaterThan(10);
    for (const file of files) expect(codes.has(readFileSync(join(dir, file), 'utf8')), file).toBe(true);
    expect(allKernelSpecs().some((spec) => spec.constants && Object.keys(spec.constants).length > 0)).toBe(true);
    expect(KERNELS_DIGEST).toMatch(/^[0-9a-f]{8}$/);
  });

  it('rejects malformed choices with an OptionError naming the problem', async () => {
    const good = { format: 'vicreg-wgsl/variant-choices/1', adapter: 'x', kernels: 'y', choices: {} };
    const cases: [unknown, RegExp][] = [
      [null, /expected an object, got null/],
      [[good], /expected an object, got an array/],
      [{ ...good, format: 'other/1' }, /format must be 'vicreg-wgsl\/variant-choices\/1', got "other\/1"/],
      [{ ...good, adapter: 3 }, /adapter must be a string/],
      [{ ...good, choices: [] }, /choices must be an object/],
      [{ ...good, choices: { 'gram|dual|6|8': 'tiled' } }, /choice key "gram\|dual\|6\|8" is not role\|form\|ceil/],
      [{ ...good, choices: { 'gram|dual|6|8|tiled,fast': 'tiled' } }, /choice key .* is not role\|form\|ceil/],
      [{ ...good, choices: { 'gram|dual|6|8|tiled,workgroup': 'subgroup' } }, /must be one of its variants \(tiled, workgroup\), got "subgroup"/],
      [{ ...good, choices: { 'backward|primal|6|8|tiled': 7 } }, /must be one of its variants \(tiled\), got 7/],
    ];
    for (const [value, message] of cases) {
      const attempt = createVICRegLoss({ variantChoices: value as VariantChoices });
      await expect(attempt).rejects.toThrow(OptionError);
      await expect(createVICRegLoss({ variantChoices: value as VariantChoices })).rejects.toThrow(message);
    }
  });
});
