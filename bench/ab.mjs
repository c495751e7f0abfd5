// An A/B of the engine at two revisions in one process: `npm run ab -- --base REV [options]`.
//
// Why: on the shared 2-core hosts a kernel's time moves up to 2x within seconds (README, Performance),
// so two `npm run bench` runs of two builds, minutes apart, cannot show a 5% change. Here both builds
// run in the same process, on the same inputs, call by call in alternating order (A B, then B A), so
// the host's slow and fast moments fall on both alike; the medians, ranges and their ratio are printed.
// A = the engine's sources at REV (src/ and kernels/ from `git archive`), B = the working tree's; each is
// bundled with esbuild into .ab/ (ignored by git) and imported from there, so both resolve `webgpu`
// from this checkout's node_modules. Each side gets its own devices (one per mode), as a user would.
// Modes: host (forward + backward on Float32Arrays, gradients into kept arrays), resident (forward and
// backward on GPUBuffers, then a wait for the device), encode (encode() into kept gradient buffers,
// read() of the terms, a wait for the device). Before timing it prints whether the two builds' gradients
// (host mode, or the mode given first) are bitwise the same. With --kernels it alternates the two sides'
// `npm run bench -- --kernels` instead (bench/kernels.ts at each revision: every kernel alone, each call
// on a fresh device), and prints each kernel's median per side.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { globals } from 'webgpu';

const HELP = `npm run ab -- --base REV [options]
  --base REV        the revision to compare the working tree against (A; B is the working tree)
  --shapes NxD,...  shapes (default 256x1024)
  --rounds N        timed calls of each build and mode per shape (default 20)
  --warmup N        untimed calls of each first (default 3; the first compiles and runs variant trials)
  --modes M,...     host, resident, encode, forward (default host,resident; forward: forward() alone on host arrays)
  --variant V       the engines' variant option (default auto); --form F likewise (default auto)
  --kernels         instead: each kernel alone (bench/kernels.ts of both sides; --variant as its filter)
  --help            this text`;

const { values } = parseArgs({
  options: {
    base: { type: 'string' }, shapes: { type: 'string', default: '256x1024' }, rounds: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '3' }, modes: { type: 'string', default: 'host,resident' },
    variant: { type: 'string', default: 'auto' }, form: { type: 'string', default: 'auto' }, kernels: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) { console.log(HELP); process.exit(0); }
const fail = (message) => { console.error(`ab: ${message}\n${HELP}`); process.exit(2); };
if (!values.base) fail('--base REV is required');
const count = (name, min) => {
  const x = Number(values[name]);
  if (!Number.isInteger(x) || x < min) fail(`--${name} must be an integer >= ${min}, got "${values[name]}"`);
  return x;
};
const rounds = count('rounds', 1);
const warmup = count('warmup', 0);
const shapes = values.shapes.split(',').map((s) => {
  const m = /^(\d+)x(\d+)$/.exec(s.trim());
  if (!m || Number(m[1]) < 2 || Number(m[2]) < 1) fail(`--shapes: "${s}" is not NxD with n >= 2, d >= 1`);
  return [Number(m[1]), Number(m[2])];
});
const MODES = ['host', 'resident', 'encode', 'forward'];
const modes = values.modes.split(',').map((m) => m.trim());
for (const m of modes) if (!MODES.includes(m)) fail(`--modes: "${m}" is not one of ${MODES.join(', ')}`);

const root = resolve(import.meta.dirname, '..');
const git = (...args) => execFileSync('git', args, { cwd: root, encoding: 'utf8' }).trim();
const commit = git('rev-parse', '--verify', `${values.base}^{commit}`);

/** Bundles `entry` (src/index.ts, or bench/kernels.ts) under `dir` into `out` (as scripts/build.mjs does for dist/node). */
async function bundle(dir, entry, out) {
  await build({
    entryPoints: [join(dir, entry)], outfile: out, bundle: true, format: 'esm', platform: 'node', target: 'node20',
    packages: 'external', loader: { '.wgsl': 'text' }, logLevel: 'warning',
  });
  return import(pathToFileURL(out).href);
}
const baseDir = join(root, '.ab', commit);
rmSync(baseDir, { recursive: true, force: true });
mkdirSync(baseDir, { recursive: true });
execFileSync('sh', ['-c', `git archive ${commit} src kernels${values.kernels ? ' bench' : ''} | tar -x -C "${baseDir}"`], { cwd: root });
const [entry, file] = values.kernels ? ['bench/kernels.ts', 'kernels.js'] : ['src/index.ts', 'index.js'];
const sides = [
  { name: 'A', label: `${values.base} (${commit.slice(0, 7)})`, lib: await bundle(baseDir, entry, join(baseDir, file)) },
  { name: 'B', label: 'working tree', lib: await bundle(root, entry, join(root, '.ab', 'work', file)) },
];
Object.assign(globalThis, globals);
// The bench's inputs (randomViews) and timing statistics (timingStats), from the working tree.
const { randomViews, timingStats } = await bundle(root, 'bench/ab-tools.ts', join(root, '.ab', 'work', 'tools.js'));
const views = (n, d) => randomViews(n, d, 1);

/** One side's calls for one shape: each mode on its own engine instance, with its buffers kept. */
/**
 * The variant choices of one 'auto' engine of the working tree at n x d (its trials, run once), so that
 * every engine of both sides runs the same kernels: separate trials can choose differently on a noisy host.
 */
async function probeChoices(lib, n, d, { a, b }) {
  const vic = await lib.createVICRegLoss({ variant: values.variant, form: values.form });
  await vic.forward(a, b, [n, d]);
  await vic.backward();
  const choices = vic.variantChoices();
  const plan = vic.lastPlan;
  vic.destroy();
  return { choices, plan: `${plan.form}/${plan.variant}` };
}

async function setup(lib, n, d, { a, b }, choices) {
  // quietly() (the engine's way to wait on dawn.node) is exported from fb22cdc on; before that, plain awaits.
  const quietly = lib.quietly ?? ((start) => start());
  // Revisions before the variantChoices option reject or ignore it; they then run their own trials.
  const options = { variant: values.variant, form: values.form, variantChoices: choices };
  const bytes = n * d * 4;
  const calls = {};
  const engines = [];
  const upload = (device, x) => {
    const buffer = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
    if (x) device.queue.writeBuffer(buffer, 0, x);
    return buffer;
  };
  /** A GPUBuffer's contents (a gradient, for the bitwise comparison). */
  const download = async (device, buffer) => {
    const staging = device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(buffer, 0, staging, 0, bytes);
    device.queue.submit([encoder.finish()]);
    await quietly(() => staging.mapAsync(GPUMapMode.READ));
    const copy = new Float32Array(staging.getMappedRange().slice(0));
    staging.destroy();
    return copy;
  };
  for (const mode of modes) {
    const vic = await lib.createVICRegLoss(options).catch(() => lib.createVICRegLoss({ ...options, variantChoices: undefined }));
    engines.push(vic);
    const device = vic.device;
    if (mode === 'host') {
      const out = { gradA: new Float32Array(n * d), gradB: new Float32Array(n * d) };
      calls.host = async () => { await vic.forward(a, b, [n, d]); await vic.backward(1, { out }); return () => out.gradA; };
    } else if (mode === 'forward') {
      calls.forward = async () => { const terms = await vic.forward(a, b, [n, d], { grad: false }); return () => new Float32Array(Object.values(terms)); };
    } else if (mode === 'resident') {
      const [ga, gb] = [upload(device, a), upload(device, b)];
      calls.resident = async () => {
        await vic.forward(ga, gb, [n, d]);
        const { gradA } = await vic.backward();
        await quietly(() => device.queue.onSubmittedWorkDone());
        return () => download(device, gradA);
      };
    } else {
      const [ga, gb, gradA, gradB] = [upload(device, a), upload(device, b), upload(device), upload(device)];
      calls.encode = async () => {
        const pending = await vic.encode({ a: ga, b: gb, shape: [n, d], gradA, gradB });
        await pending.read();
        await quietly(() => device.queue.onSubmittedWorkDone());
        return () => download(device, gradA);
      };
    }
  }
  const plan = () => { const p = engines[0].lastPlan; return p ? `${p.form}/${p.variant}` : 'unknown'; };
  return { calls, plan, destroy: () => engines.forEach((e) => e.destroy()) };
}

const ms = (x) => `${x.toFixed(2)} ms`;

/** Median (min-max) of each side, and the ratio of the medians. */
function line(what, ta, tb) {
  const [a, b] = [timingStats(ta), timingStats(tb)];
  return `${what}: A ${ms(a.medianMs)} (${ms(a.minMs)}-${ms(a.maxMs)}), B ${ms(b.medianMs)} (${ms(b.minMs)}-${ms(b.maxMs)}), B/A ${(b.medianMs / a.medianMs).toFixed(3)}`;
}

if (values.kernels) {
  console.log(`A = ${sides[0].label}, B = ${sides[1].label}; kernels alone, variant ${values.variant}; ${rounds} alternating runs of each`);
  const times = new Map();   // kernel row -> [A times, B times]
  for (let r = 0; r < rounds; r++) {
    for (const s of r % 2 ? [0, 1] : [1, 0]) {
      const { rows } = await sides[s].lib.benchKernels(shapes, values.variant, () => {});
      for (const row of rows) {
        // The kernel's own name (what its pass list adds, "+ panels" and the like, may differ between the sides).
        const key = `${row.n}x${row.d} ${row.form}/${row.variant} ${row.kernel.split(' + ')[0]}`;
        if (!times.has(key)) times.set(key, [[], []]);
        times.get(key)[s].push(row.ms);
      }
    }
  }
  for (const [key, [ta, tb]] of times) if (ta.length && tb.length) console.log(line(key, ta, tb));
  process.exit(0);
}

console.log(`A = ${sides[0].label}, B = ${sides[1].label}; variant ${values.variant}, form ${values.form}; ${rounds} alternating calls of each after ${warmup} untimed`);
for (const [n, d] of shapes) {
  const inputs = views(n, d);
  const { choices, plan } = await probeChoices(sides[1].lib, n, d, inputs);
  const made = [];
  for (const side of sides) made.push(await setup(side.lib, n, d, inputs, choices));
  for (const s of made) for (const mode of modes) for (let i = 0; i < warmup; i++) await s.calls[mode]();
  const first = modes[0];
  const grads = [];
  for (const s of made) grads.push(await (await s.calls[first]())());
  const differing = grads[0].reduce((k, x, i) => k + (Object.is(x, grads[1][i]) ? 0 : 1), 0);
  const plans = made.map((s) => s.plan()).join(' / ');
  console.log(`${n}x${d}: the working tree's trial chose ${plan}; the runs: ${plans} (A / B); ${first === 'forward' ? 'terms' : 'gradients'} (${first}${first === 'forward' ? '' : ', view A'}) ${differing === 0 ? 'bitwise the same' : `differ in ${differing} of ${grads[0].length} ${first === 'forward' ? 'values' : 'elements'}`}`);
  const times = made.map(() => Object.fromEntries(modes.map((m) => [m, []])));
  for (let r = 0; r < rounds; r++) {
    for (const mode of modes) {
      for (const s of r % 2 ? [0, 1] : [1, 0]) {
        const start = performance.now();
        await made[s].calls[mode]();
        times[s][mode].push(performance.now() - start);
      }
    }
  }
  for (const mode of modes) console.log(line(`${n}x${d} ${mode}`, times[0][mode], times[1][mode]));
  made.forEach((s) => s.destroy());
}
