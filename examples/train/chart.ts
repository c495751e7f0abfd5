// The run's chart, as a standalone SVG: the loss and its weighted terms over the steps (log scale), and
// the embeddings' per-feature std and off-diagonal correlations before and after training.
import type { PathRecord } from './model.js';

const W = 960, H = 640;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(1) : v.toPrecision(2));

interface Box { x: number; y: number; w: number; h: number }

function axes(box: Box, title: string, xLabel: string, yLabel: string): string {
  return `<rect x="${box.x}" y="${box.y}" width="${box.w}" height="${box.h}" fill="none" stroke="#999"/>` +
    `<text x="${box.x + box.w / 2}" y="${box.y - 8}" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>` +
    `<text x="${box.x + box.w / 2}" y="${box.y + box.h + 34}" text-anchor="middle" font-size="12">${esc(xLabel)}</text>` +
    `<text x="${box.x - 46}" y="${box.y + box.h / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 ${box.x - 46} ${box.y + box.h / 2})">${esc(yLabel)}</text>`;
}

function legend(x: number, y: number, items: [string, string, boolean][]): string {
  return items.map(([label, color, dashed], i) =>
    `<line x1="${x}" y1="${y + i * 16}" x2="${x + 22}" y2="${y + i * 16}" stroke="${color}" stroke-width="2"${dashed ? ' stroke-dasharray="5 3"' : ''}/>` +
    `<text x="${x + 28}" y="${y + i * 16 + 4}" font-size="11">${esc(label)}</text>`).join('');
}

/** Lines on a log-scaled y axis. */
function lossPanel(box: Box, paths: PathRecord[], weights: { lambda: number; mu: number; nu: number }): string {
  const main = paths[0];
  const series: { label: string; color: string; dashed: boolean; points: [number, number][] }[] = [
    { label: `loss (${main.path})`, color: COLORS[0], dashed: false, points: main.curve.map((p) => [p.step, p.loss]) },
    { label: `${weights.lambda} x invariance`, color: COLORS[1], dashed: false, points: main.curve.map((p) => [p.step, weights.lambda * p.invariance]) },
    { label: `${weights.mu} x variance`, color: COLORS[2], dashed: false, points: main.curve.map((p) => [p.step, weights.mu * p.variance]) },
    { label: `${weights.nu} x covariance`, color: COLORS[3], dashed: false, points: main.curve.map((p) => [p.step, weights.nu * p.covariance]) },
    ...paths.slice(1).map((r, i) => ({ label: `loss (${r.path})`, color: COLORS[4 + (i % 2)], dashed: true, points: r.curve.map((p) => [p.step, p.loss] as [number, number]) })),
  ];
  const all = series.flatMap((s) => s.points).filter(([, v]) => v > 0);
  const maxStep = Math.max(...all.map(([s]) => s));
  const [lo, hi] = [Math.floor(Math.log10(Math.min(...all.map(([, v]) => v)))), Math.ceil(Math.log10(Math.max(...all.map(([, v]) => v))))];
  const px = (step: number) => box.x + (step / maxStep) * box.w;
  const py = (v: number) => box.y + box.h - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / Math.max(1, hi - lo)) * box.h;
  let svg = axes(box, 'VICReg loss and its weighted terms', 'step', 'value (log scale)');
  for (let e = lo; e <= hi; e++) {
    svg += `<line x1="${box.x}" y1="${py(10 ** e)}" x2="${box.x + box.w}" y2="${py(10 ** e)}" stroke="#eee"/><text x="${box.x - 6}" y="${py(10 ** e) + 4}" text-anchor="end" font-size="11">${fmt(10 ** e)}</text>`;
  }
  for (const t of [0, 0.25, 0.5, 0.75, 1]) svg += `<text x="${px(t * maxStep)}" y="${box.y + box.h + 16}" text-anchor="middle" font-size="11">${Math.round(t * maxStep)}</text>`;
  for (const s of series) {
    const d = s.points.filter(([, v]) => v > 0).map(([x, v]) => `${px(x).toFixed(1)},${py(v).toFixed(1)}`).join(' ');
    svg += `<polyline points="${d}" fill="none" stroke="${s.color}" stroke-width="${s.dashed ? 1.5 : 2}"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/>`;
  }
  // Bottom right: the curves start high and fall, so that corner stays clear.
  return svg + legend(box.x + box.w - 200, box.y + box.h - 16 * series.length, series.map((s) => [s.label, s.color, s.dashed]));
}

/** Two histograms (before, after) over the same bins. */
function histogramPanel(box: Box, title: string, xLabel: string, range: [number, number], before: number[], after: number[]): string {
  const bins = before.length;
  const bw = box.w / bins;
  let svg = axes(box, title, xLabel, 'share of features / pairs');
  const total = (xs: number[]) => xs.reduce((a, b) => a + b, 0) || 1;
  const [tb, ta] = [total(before), total(after)];
  const top = Math.max(...before.map((v) => v / tb), ...after.map((v) => v / ta)) || 1;
  before.forEach((v, i) => { const h = (v / tb / top) * box.h; svg += `<rect x="${box.x + i * bw + 1}" y="${box.y + box.h - h}" width="${bw / 2 - 1}" height="${h}" fill="#bbb"/>`; });
  after.forEach((v, i) => { const h = (v / ta / top) * box.h; svg += `<rect x="${box.x + i * bw + bw / 2}" y="${box.y + box.h - h}" width="${bw / 2 - 1}" height="${h}" fill="${COLORS[0]}"/>`; });
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    svg += `<text x="${box.x + t * box.w}" y="${box.y + box.h + 16}" text-anchor="middle" font-size="11">${fmt(range[0] + t * (range[1] - range[0]))}</text>`;
  }
  return svg + `<rect x="${box.x + box.w - 150}" y="${box.y + 8}" width="12" height="10" fill="#bbb"/><text x="${box.x + box.w - 132}" y="${box.y + 17}" font-size="11">before training</text>` +
    `<rect x="${box.x + box.w - 150}" y="${box.y + 24}" width="12" height="10" fill="${COLORS[0]}"/><text x="${box.x + box.w - 132}" y="${box.y + 33}" font-size="11">after training</text>`;
}

/** The chart of a run whose first path is the main one. */
export function trainingChart(paths: PathRecord[], weights: { lambda: number; mu: number; nu: number }, caption: string): string {
  const main = paths[0];
  const body = lossPanel({ x: 80, y: 40, w: 840, h: 270 }, paths, weights) +
    histogramPanel({ x: 80, y: 390, w: 380, h: 190 }, `per-feature std of the embeddings (${main.path})`, 'std (gamma = 1)', [0, 2], main.embeddings.before.stdHistogram, main.embeddings.after.stdHistogram) +
    histogramPanel({ x: 540, y: 390, w: 380, h: 190 }, `off-diagonal correlations (${main.path})`, 'corr(i, j)', [-1, 1], main.embeddings.before.correlationHistogram, main.embeddings.after.correlationHistogram);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">` +
    `<rect width="${W}" height="${H}" fill="white"/>${body}<text x="${W / 2}" y="${H - 8}" text-anchor="middle" font-size="11" fill="#555">${esc(caption)}</text></svg>\n`;
}
