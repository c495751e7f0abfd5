// One self-supervised run on the digits, for every path asked: the probes side by side (raw pixels, the
// random encoder every path starts from, each trained encoder), the curves, the embeddings' statistics
// and the step times, as one JSON-ready record. Runs in Node and in the browser alike.
import type { VICRegLoss } from 'vicreg-wgsl';
import { PIXELS, split, type Digits } from './digits.js';
import type { MlpParameters } from './mlp.js';
import { initialParameters, layersOf, type PathRecord, type RunSettings } from './model.js';
import { linearProbe } from './probe.js';
import { trainWgsl, type Progress } from './wgsl-path.js';

export interface TrainRecord {
  format: 'vicreg-wgsl/train/1';
  /** The main path's adapter (each path records its own). */
  adapter: string;
  settings: RunSettings;
  digits: { train: number; test: number };
  steps: number;
  /** Test accuracies of the linear probe: raw pixels, the untrained encoder, the encoder trained on the main path. */
  probe: { pixels: number; random: number; vicreg: number };
  /** The main path ('wgsl') first, then the others asked for. */
  paths: PathRecord[];
}

/** Trains another path from the same initial parameters (the tfjs paths, which only Node's entry point loads). */
export type OtherPath = (data: { train: Digits; test: Digits }, s: RunSettings, init: MlpParameters, onProgress?: (p: Progress) => void) => Promise<PathRecord>;

export async function runTraining(args: { vic: VICRegLoss; digits: Digits; settings: RunSettings; others?: OtherPath[]; onProgress?: (p: Progress) => void; onStage?: (stage: string) => void }): Promise<TrainRecord> {
  const { vic, digits, settings: s } = args;
  const data = split(digits, { test: s.testDigits, train: s.trainDigits }, s.seed);
  const init = initialParameters(layersOf(s), s.seed);
  // The probe blocks the thread for seconds: let a page draw the stage first.
  const stage = async (text: string) => {
    args.onStage?.(text);
    await new Promise((resolve) => setTimeout(resolve, 0));
  };
  await stage('probe on raw pixels');
  const pixels = linearProbe({ values: data.train.images, dim: PIXELS, labels: data.train.labels }, { values: data.test.images, dim: PIXELS, labels: data.test.labels }, s.probe);
  await stage('wgsl path (the random encoder\'s probe first)');
  const main = await trainWgsl(vic, data, s, init, args.onProgress);
  const paths = [main.record];
  for (const other of args.others ?? []) paths.push(await other(data, s, init, args.onProgress));
  return {
    format: 'vicreg-wgsl/train/1',
    adapter: vic.adapterName,
    settings: s,
    digits: { train: data.train.count, test: data.test.count },
    steps: s.steps,
    probe: { pixels: pixels.testAccuracy, random: main.randomProbe.test, vicreg: main.record.probe.test },
    paths,
  };
}

export const percent = (v: number) => `${(100 * v).toFixed(1)}%`;

/** A line that says what ran: steps, sizes, seed, adapter. */
export const captionOf = (r: TrainRecord) =>
  `${r.steps} steps, batch ${r.settings.batch}, encoder 784-${r.settings.encoder.join('-')}, expander ${r.settings.expander.join('-')}, seed ${r.settings.seed}; ${r.adapter}`;

/** The record as a table (Markdown), one row per path. */
export function summaryTable(r: TrainRecord): string {
  const rows = [
    '| encoder | probe test accuracy | ms/step (model + loss) | embeddings: mean std, RMS off-diagonal corr |',
    '|---|---|---|---|',
    `| raw pixels (784) | ${percent(r.probe.pixels)} | | |`,
    `| random encoder (${r.settings.encoder.at(-1)}) | ${percent(r.probe.random)} | | ${r.paths[0].embeddings.before.meanStd.toFixed(3)}, ${r.paths[0].embeddings.before.rmsCorrelation.toFixed(3)} |`,
    ...r.paths.map((p) => `| VICReg, ${p.path} | ${percent(p.probe.test)} | ${p.ms.step.toFixed(1)} (${p.ms.model.toFixed(1)} + ${p.ms.loss.toFixed(1)}) | ${p.embeddings.after.meanStd.toFixed(3)}, ${p.embeddings.after.rmsCorrelation.toFixed(3)} |`),
  ];
  return rows.join('\n');
}
