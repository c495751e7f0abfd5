// The bench's results and their three renderings: JSON (everything), a Markdown table, and an SVG
// chart (log-scale bars of time per shape, ours vs tfjs), written by hand.
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { OPENBLAS_SETTLE_MS } from './openblas.js';
import type { KernelTiming } from './kernels.js';
import type { PhaseRow } from './phases.js';
import type { ColdResult } from './cold.js';
import type { Comparison, FlopCounts, TimingStats } from './measure.js';

export interface MachineInfo {
  /** The adapter the engine used, in words. */
  adapter: string;
  /** The adapter tfjs-webgpu reported, where tfjs ran. */
  tfjsAdapter?: string;
  cpu: string;
  cpuCount: number;
  memoryGiB: number;
  platform: string;
  node: string;
  /** LP_NUM_THREADS (lavapipe's rasterizer threads), when set. */
  lpNumThreads?: string;
  date: string;
  gitCommit?: string;
  /** True when the working tree had uncommitted changes (the numbers may not match the commit). */
  gitDirty?: boolean;
}

export interface BenchSettings {
  runs: number;
  warmup: number;
  tfjsRuns: number;
  tfjsMaxSeconds: number;
  preset: string;
  form: string;
  variant: string;
  seed: number;
  /** --resident: the GPU-resident series and their checks ran too. */
  resident: boolean;
  /** --tfjs-quiet: tfjs's waits ran through quietly() as the engine's do (else tfjs as it ships). */
  tfjsQuiet?: boolean;
  /** --dawn-polling: the engine's waits polled as Dawn does (setQuietPolling(false)). */
  dawnPolling?: boolean;
  /** --openblas: bench/numpy_vicreg.py timed per shape. */
  openblas?: boolean;
  argv: string[];
}

export type TfjsOutcome =
  | { status: 'disabled'; reason: string }
  | { status: 'skipped'; reason: string; estimatedSeconds?: number }
  | { status: 'failed'; reason: string }
  | {
      status: 'ran';
      /** The first (cold, untimed-for-the-median) run: compiles tfjs's shaders. */
      coldMs: number;
      forwardBackward: TimingStats;
      effectiveGflops: number;
      /** tfjs tensors alive after the runs minus before (0 unless the reference leaks). */
      tensorsLeaked: number;
    };

export type OpenblasOutcome = { status: 'ran'; medianMs: number; library: string } | { status: 'failed'; reason: string };

export interface ShapeResult {
  n: number;
  d: number;
  seed: number;
  /** 'ok': agreed with every reference run; 'mismatch': disagreed (numbers void); 'unchecked': no reference ran; 'error': threw. */
  status: 'ok' | 'mismatch' | 'unchecked' | 'error';
  error?: string;
  form?: 'primal' | 'dual';
  /** The Gram kernel variant, where the engine reports it (lastPlan.variant). */
  variant?: string;
  fellBack?: boolean;
  offDiagonalShare?: [number, number];
  ours?: {
    forwardBackward: TimingStats;
    forward: TimingStats;
    /** --resident only: inputs already on the device (uploaded once, untimed), gradients left there. */
    resident?: {
      /** forward(bufA, bufB) + backward<GPUBuffer>() + queue.onSubmittedWorkDone(). */
      forwardBackward: TimingStats;
      /** encode() into caller-owned gradient buffers + read() of the terms. */
      encode: TimingStats;
      effectiveGflops: { forwardBackward: number; encode: number };
    };
    flops: FlopCounts;
    effectiveGflops: { forwardBackward: number; forward: number };
    formGflops: { forwardBackward: number; forward: number };
    /** bufferCounts.bytes after the forward+backward runs: the engine's own live buffers (not Dawn's or the driver's). */
    engineBufferBytes: number;
    engineBufferCount: number;
    /** Engine bytes still live after destroy() (0 unless the engine leaks). */
    engineBytesLeaked: number;
    /** --dtype float16: float16 views and gradients, alternating with the float32 runs. */
    float16?: { forwardBackward: TimingStats; ratio: number; checked: boolean; bytesPerCall: { float32: number; float16: number } };
  };
  tfjs: TfjsOutcome;
  /** tfjs median / ours median, forward + backward; absent when either is missing or the row failed. */
  speedup?: number;
  /** --openblas: float32 NumPy/OpenBLAS, standard d x d form (bench/numpy_vicreg.py), one run after each of ours. */
  openblas?: OpenblasOutcome;
  /** OpenBLAS median / ours median, forward + backward. */
  openblasRatio?: number;
  /** The first forward + backward of a fresh process with the shader cache off (bench/cold.ts); absent with --no-cold. */
  cold?: ColdResult | { error: string };
  checks: Comparison[];
  /** Why a reference did not run, in words. */
  checkNotes: string[];
}

export interface BenchReport {
  machine: MachineInfo;
  settings: BenchSettings;
  flopConvention: string;
  memoryNote: string;
  results: ShapeResult[];
}

const shapeLabel = (r: { n: number; d: number }) => `${r.n}x${r.d}`;
const ms = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

/** Writes a file through a .tmp and a rename, so a reader never sees half a file. */
function writeAtomically(path: string, text: string) {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

export function writeReports(dir: string, report: BenchReport): string[] {
  const paths = ['latest.json', 'latest.md', 'latest.svg'].map((name) => join(dir, name));
  writeAtomically(paths[0], `${JSON.stringify(report, null, 2)}\n`);
  writeAtomically(paths[1], markdown(report));
  writeAtomically(paths[2], svgChart(report));
  return paths;
}

function checkCell(r: ShapeResult): string {
  if (r.status === 'error') return 'ERROR';
  if (r.status === 'unchecked') return 'unchecked';
  const part = (c: Comparison) => (c.scope === 'all' ? '' : ' (part)');
  const subject = (c: Comparison) => (c.subject ? `${c.subject} ` : '');
  const cells = r.checks.map((c) =>
    c.pass ? `${subject(c)}ok vs ${c.against}${part(c)}` : c.overruled ? `${c.against} wrong (ours = float64)` : `MISMATCH ${subject(c)}vs ${c.against}${part(c)}`);
  return cells.join(', ');
}

function tfjsCell(r: ShapeResult): string {
  switch (r.tfjs.status) {
    case 'ran': return ms(r.tfjs.forwardBackward.medianMs);
    case 'skipped': return 'skipped';
    case 'disabled': return 'off';
    case 'failed': return 'failed';
  }
}

export interface KernelReport {
  machine: MachineInfo;
  argv: string[];
  /** The CPU's practical float32 ceiling: a 2048^3 OpenBLAS sgemm (bench/numpy_vicreg.py --peak). */
  peak?: { sgemm_gflops: number; blas: string };
  rows: KernelTiming[];
}

/** The --kernels table: one row per kernel, form and variant. */
export function kernelTable(rows: KernelTiming[], peakGflops?: number): string {
  const header = ['n x d', 'form', 'variant', 'kernel', 'ms', 'GFLOP/s (useful)', 'GFLOP/s (GEMM-equivalent)', ...(peakGflops ? ['of CPU peak'] : [])];
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const r of rows) {
    const copy = r.unit === 'GB/s';
    lines.push(`| ${[
      `${r.n}x${r.d}`, r.form, r.variant, r.kernel, ms(r.ms), copy ? `${r.rate.toFixed(1)} GB/s` : r.rate.toFixed(1),
      r.gemmEquivalent ? r.gemmEquivalent.toFixed(1) : '',
      ...(peakGflops ? [copy ? '' : `${((100 * (r.gemmEquivalent ?? r.rate)) / peakGflops).toFixed(0)}%`] : []),
    ].join(' | ')} |`);
  }
  return lines.join('\n');
}

export interface PhaseReport {
  machine: MachineInfo;
  argv: string[];
  rows: PhaseRow[];
}

/** Writes `<name>.json` (the report) and `<name>.md` (a title, the machine and command line, an explanation, a table). */
function writeSideReport(dir: string, name: string, report: { machine: MachineInfo; argv: string[] }, title: string, explanation: string, table: string): string[] {
  const m = report.machine;
  const paths = [`${name}.json`, `${name}.md`].map((file) => join(dir, file));
  writeAtomically(paths[0], `${JSON.stringify(report, null, 2)}\n`);
  writeAtomically(paths[1], [
    `# ${title}`,
    '',
    `${m.date} · adapter: ${m.adapter} · CPU: ${m.cpu} (${m.cpuCount} logical cores) · commit ${m.gitCommit ?? 'unknown'}${m.gitDirty ? ' (uncommitted changes)' : ''}`,
    `Command: npm run bench -- ${report.argv.join(' ')}`,
    '',
    explanation,
    '',
    table,
    '',
  ].join('\n'));
  return paths;
}

export function writePhaseReports(dir: string, report: PhaseReport, table: string): string[] {
  return writeSideReport(dir, 'phases', report, 'vicreg-wgsl: where a call goes',
    'forward(a, b, [n, d]) and backward() on host arrays, each call split by timestamps taken around the device\'s and ' +
      'queue\'s methods (bench/phases.ts); medians field by field over the timed calls, in ms. wait: time with a mapAsync, ' +
      'onSubmittedWorkDone or popErrorScope pending; host: the rest (encoding, checks, copies from mapped ranges); after map: ' +
      'from the last mapAsync\'s resolution to the return. First call: the warm-up call\'s bind groups (later calls reuse them).',
    table);
}

export function writeKernelReports(dir: string, report: KernelReport): string[] {
  return writeSideReport(dir, 'kernels', report, 'vicreg-wgsl kernels',
    'Each kernel alone on device-resident data: 5 dispatches in one submission, the median over 5 submissions. ' +
      'Gram kernels: useful flops = the upper triangle, side (side + 1) / 2 dot products; GEMM-equivalent = the whole ' +
      'side x side product, as a general matrix multiply computes it. Backward: n d side multiply-adds (the shuffle ' +
      'primal backward with its mirrored pass, the shuffle dual backward with its column-panel copies from 512 rows, ' +
      'which are also timed alone as lavapipe/centered_panels, in GB/s of the view they copy, the windows backward with its panel ' +
      'copies and their copyBufferToTexture, timed alone likewise; column_stats in GB/s of both views). ' +
      (report.peak
        ? `CPU peak: ${report.peak.sgemm_gflops.toFixed(0)} GFLOP/s, a 2048^3 float32 sgemm (${report.peak.blas}); "of CPU peak" divides the GEMM-equivalent rate (Gram) or the useful rate (backward) by it.`
        : 'No CPU peak (python3 with numpy missing).'),
    kernelTable(report.rows, report.peak?.sgemm_gflops));
}

export function markdownTable(report: BenchReport): string {
  // The resident columns only where --resident ran them (older reports have no such setting).
  const resident = report.settings.resident === true;
  const openblas = report.settings.openblas === true;
  const cold = report.results.some((r) => r.cold);
  const half = report.results.some((r) => r.ours?.float16);
  const header = [
    'n x d', 'form', 'ours fwd+bwd ms', 'ours fwd ms', ...(half ? ['float16 fwd+bwd ms', 'float16 / float32', 'bytes moved per call float32 / float16'] : []),
    ...(cold ? ['cold first fwd+bwd ms'] : []), ...(resident ? ['ours resident fwd+bwd ms', 'ours encode ms'] : []),
    'effective GFLOP/s', 'form GFLOP/s', 'engine buffers MiB', 'tfjs fwd+bwd ms', 'tfjs GFLOP/s', 'speedup',
    ...(openblas ? ['OpenBLAS ms', 'vs OpenBLAS'] : []), 'check',
  ];
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const r of report.results) {
    const o = r.ours;
    const form = r.form ? `${r.form}${r.variant ? `/${r.variant}` : ''}${r.fellBack ? ' (fell back)' : ''}` : '';
    const void_ = r.status === 'mismatch' ? ' (void)' : '';
    lines.push(`| ${[
      shapeLabel(r), form,
      o ? ms(o.forwardBackward.medianMs) + void_ : '', o ? ms(o.forward.medianMs) + void_ : '',
      ...(half ? halfCells(r) : []),
      ...(cold ? [!r.cold ? '' : 'error' in r.cold ? 'failed' : ms(r.cold.firstMs)] : []),
      ...(resident ? [o?.resident ? ms(o.resident.forwardBackward.medianMs) + void_ : '', o?.resident ? ms(o.resident.encode.medianMs) + void_ : ''] : []),
      o && r.status !== 'mismatch' ? o.effectiveGflops.forwardBackward.toFixed(1) : '',
      o && r.status !== 'mismatch' ? o.formGflops.forwardBackward.toFixed(1) : '',
      o ? mib(o.engineBufferBytes) : '',
      tfjsCell(r), r.tfjs.status === 'ran' ? r.tfjs.effectiveGflops.toFixed(2) : '',
      r.speedup ? `${r.speedup.toFixed(1)}x` : '',
      ...(openblas ? [r.openblas?.status === 'ran' ? ms(r.openblas.medianMs) : r.openblas?.status ?? '', r.openblasRatio ? `${r.openblasRatio.toFixed(2)}x` : ''] : []),
      checkCell(r),
    ].join(' | ')} |`);
  }
  return lines.join('\n');
}

function halfCells(r: ShapeResult): string[] {
  const h = r.ours?.float16;
  if (!h) return ['', '', ''];
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  return [ms(h.forwardBackward.medianMs) + (h.checked ? '' : ' (unchecked)'), `${h.ratio.toFixed(2)}x`, `${mib(h.bytesPerCall.float32)} / ${mib(h.bytesPerCall.float16)}`];
}

/** The cold first calls, split: the engine's setup (pipelines, trials) and the rest (work, and the driver's compiles on first dispatch). */
export function coldTable(report: BenchReport): string {
  const rows = report.results.filter((r) => r.cold && !('error' in r.cold));
  if (rows.length === 0) return '';
  const header = ['n x d', 'first fwd+bwd ms', 'pipeline creation ms', 'variant trials ms', 'rest ms', 'second fwd+bwd ms'];
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const r of rows) {
    const c = r.cold as ColdResult;
    lines.push(`| ${[shapeLabel(r), ms(c.firstMs), ms(c.pipelinesMs), ms(c.trialsMs), ms(c.firstMs - c.pipelinesMs - c.trialsMs), ms(c.secondMs)].join(' | ')} |`);
  }
  return lines.join('\n');
}

function markdown(report: BenchReport): string {
  const { machine: m, settings: s } = report;
  const notes: string[] = [];
  for (const r of report.results) {
    const label = shapeLabel(r);
    if (r.error) notes.push(`${label}: error: ${r.error}`);
    if (r.tfjs.status === 'skipped' || r.tfjs.status === 'failed') notes.push(`${label}: tfjs ${r.tfjs.status}: ${r.tfjs.reason}`);
    if (r.openblas?.status === 'failed') notes.push(`${label}: OpenBLAS baseline failed: ${r.openblas.reason}`);
    if (r.cold && 'error' in r.cold) notes.push(`${label}: cold first call failed: ${r.cold.error}`);
    if (r.tfjs.status === 'ran' && r.tfjs.tensorsLeaked) notes.push(`${label}: tfjs leaked ${r.tfjs.tensorsLeaked} tensors`);
    if (r.ours?.engineBytesLeaked) notes.push(`${label}: the engine left ${r.ours.engineBytesLeaked} bytes of buffers after destroy()`);
    for (const note of r.checkNotes) notes.push(`${label}: ${note}`);
    for (const c of r.checks) {
      if (c.scope !== 'all') notes.push(`${label}: check vs ${c.against} covered ${c.scope}`);
      if (c.overruled) notes.push(`${label}: ${c.against} disagreed (${c.failures[0]}${c.failures.length > 1 ? `, and ${c.failures.length - 1} more` : ''}), but ${c.overruled}`);
      else for (const f of c.failures) notes.push(`${label}: MISMATCH ${c.subject ? `${c.subject} ` : ''}vs ${c.against}: ${f}`);
    }
  }
  const blasLibrary = report.results.flatMap((r) => (r.openblas?.status === 'ran' ? [r.openblas.library] : []))[0];
  return [
    '# vicreg-wgsl bench',
    '',
    `${m.date} · engine adapter: ${m.adapter}${m.tfjsAdapter ? ` · tfjs adapter: ${m.tfjsAdapter}` : ''}`,
    `CPU: ${m.cpu} (${m.cpuCount} logical cores, ${m.memoryGiB} GiB) · Node ${m.node} · ${m.platform}` +
      `${m.lpNumThreads ? ` · LP_NUM_THREADS=${m.lpNumThreads}` : ''}` +
      ` · commit ${m.gitCommit ?? 'unknown'}${m.gitDirty ? ' (uncommitted changes)' : ''}`,
    `Preset ${s.preset}, form ${s.form}, variant ${s.variant}; medians of ${s.runs} runs after ${s.warmup} warm-up (ours), up to ${s.tfjsRuns} for tfjs after one cold run; ` +
      `run order alternates ours (forward only, forward + backward${s.resident ? ', resident, encode' : ''}), tfjs${s.openblas ? ' and OpenBLAS' : ''}, with one untimed run of ours after each tfjs run${s.openblas ? ` and a ${OPENBLAS_SETTLE_MS} ms pause after each OpenBLAS run` : ''}. ` +
      'Times include the host arrays in and the loss terms and both gradients out' +
      (s.resident
        ? '; except the resident columns: inputs uploaded once before timing, the terms read back and the gradients left on the device ' +
          '(resident = forward + backward on GPUBuffers until the device is idle; encode = encode() into caller-owned gradients, then read() of the terms).'
        : '.') +
      (s.dawnPolling
        ? " The engine's waits polled as Dawn does, spinning a CPU core (--dawn-polling)."
        : s.tfjsQuiet
          ? " tfjs's waits ran through quietly() as the engine's do (--tfjs-quiet)."
          : " The engine's waits defer dawn.node's event poll (quietly()); tfjs runs as it ships, its waits spinning a CPU core.") +
      (s.openblas
        ? ` OpenBLAS: bench/numpy_vicreg.py (${blasLibrary ?? 'numpy'}), ` +
          'float32, the standard d x d form with hand-written gradients, checked against float64, in its own process, one run after each of ours; ' +
          'vs OpenBLAS = its median / ours (above 1: ours is faster).'
        : ''),
    '',
    markdownTable(report),
    '',
    `Flops: ${report.flopConvention}`,
    '',
    `Memory: ${report.memoryNote}`,
    '',
    ...(coldTable(report) ? [
      '## First call, cold',
      '',
      'A fresh process per shape with the shader cache off (MESA_SHADER_CACHE_DISABLE=true): engine creation and the first forward + backward, ' +
        'then a second. Pipeline creation and variant trials are wall time in the engine; the rest is the work and what the driver does on a ' +
        "pipeline's first dispatch (lavapipe compiles its shader then).",
      '',
      coldTable(report),
      '',
    ] : []),
    'Speedup = tfjs median / ours median (forward + backward). A row whose check fails is marked MISMATCH and posts no rate or speedup.',
    ...(report.results.some((r) => r.ours?.float16) ? ['', 'float16 (--dtype float16): ours on the views rounded to binary16, from Uint16Arrays of their bits, with float16 gradients back, ' +
      'timed alternately with the float32 runs; its terms checked against ours in float32 on the same rounded values. Bytes moved per call: both views to the device and both gradients back.'] : []),
    ...(notes.length ? ['', '## Notes', '', ...notes.map((n) => `- ${n}`)] : []),
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------
// SVG: one group of bars per shape (ours forward + backward, ours forward only, tfjs forward +
// backward), heights on a log10 scale of milliseconds, a gridline per decade.

const COLORS = { ours: '#1f6feb', oursForward: '#8cb8f5', tfjs: '#e8710a', grid: '#d0d7de', text: '#24292f', bad: '#cf222e' };

const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function svgChart(report: BenchReport): string {
  const bars = report.results.map((r) => ({
    label: shapeLabel(r),
    ours: r.ours?.forwardBackward.medianMs,
    oursForward: r.ours?.forward.medianMs,
    tfjs: r.tfjs.status === 'ran' ? r.tfjs.forwardBackward.medianMs : undefined,
    tfjsNote: r.tfjs.status === 'ran' ? undefined : r.tfjs.status === 'disabled' ? 'tfjs off' : `tfjs ${r.tfjs.status}`,
    speedup: r.speedup,
    bad: r.status === 'mismatch' || r.status === 'error',
  }));
  const values = bars.flatMap((b) => [b.ours, b.oursForward, b.tfjs]).filter((v): v is number => v !== undefined && v > 0);
  const low = Math.floor(Math.log10(Math.min(...values, 1)));
  const high = Math.ceil(Math.log10(Math.max(...values, 10)));

  const barWidth = 34;
  const left = 70;
  const top = 90;
  const plotHeight = 300;
  const width = Math.max(680, left + Math.max(1, bars.length) * 150 + 20);
  const groupWidth = (width - left - 20) / Math.max(1, bars.length);
  const height = top + plotHeight + 70;
  const y = (valueMs: number) => top + plotHeight - ((Math.log10(valueMs) - low) / (high - low)) * plotHeight;

  const parts: string[] = [];
  const text = (x: number, yy: number, s: string, attrs = '') =>
    parts.push(`<text x="${x.toFixed(1)}" y="${yy.toFixed(1)}" ${attrs}>${escapeXml(s)}</text>`);

  parts.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  const m = report.machine;
  const adapter = m.adapter.length > 90 ? `${m.adapter.slice(0, 89)}...` : m.adapter;
  text(left, 22, 'VICReg forward + backward: median time per shape (log scale)', 'font-size="14" font-weight="bold"');
  text(left, 40, `adapter: ${adapter}`, 'font-size="11"');
  text(left, 55, `${m.cpu}, Node ${m.node}, ${m.date.slice(0, 10)}, commit ${(m.gitCommit ?? 'unknown').slice(0, 10)}${m.gitDirty ? ' (dirty)' : ''}`, 'font-size="11"');

  // Legend.
  const legend: [string, string][] = [[COLORS.ours, 'ours fwd+bwd'], [COLORS.oursForward, 'ours fwd only'], [COLORS.tfjs, 'tfjs-webgpu fwd+bwd']];
  legend.forEach(([color, name], index) => {
    const x = left + index * 150;
    parts.push(`<rect x="${x}" y="66" width="12" height="12" fill="${color}"/>`);
    text(x + 16, 76, name, 'font-size="11"');
  });

  // Decade gridlines.
  for (let decade = low; decade <= high; decade++) {
    const yy = y(10 ** decade);
    parts.push(`<line x1="${left}" x2="${width - 20}" y1="${yy.toFixed(1)}" y2="${yy.toFixed(1)}" stroke="${COLORS.grid}"/>`);
    const label = decade >= 3 ? `${10 ** (decade - 3)} s` : `${10 ** decade} ms`;
    text(left - 6, yy + 4, label, 'font-size="11" text-anchor="end"');
  }

  bars.forEach((b, index) => {
    const groupX = left + index * groupWidth + (groupWidth - 3 * barWidth) / 2;
    const series: [number | undefined, string, string | undefined][] = [
      [b.ours, COLORS.ours, undefined], [b.oursForward, COLORS.oursForward, undefined], [b.tfjs, COLORS.tfjs, b.tfjsNote],
    ];
    series.forEach(([value, color, note], k) => {
      const x = groupX + k * barWidth;
      if (value !== undefined && value > 0) {
        const yy = y(value);
        parts.push(`<rect x="${x.toFixed(1)}" y="${yy.toFixed(1)}" width="${barWidth - 4}" height="${(top + plotHeight - yy).toFixed(1)}" fill="${color}"/>`);
        const valueLabel = value >= 1000 ? `${(value / 1000).toFixed(value >= 10000 ? 0 : 1)} s` : ms(value);
        text(x + (barWidth - 4) / 2, yy - 4, valueLabel, 'font-size="9" text-anchor="middle"');
      } else if (note) {
        const cx = x + (barWidth - 4) / 2;
        text(cx, top + plotHeight - 6, note, `font-size="10" fill="#57606a" text-anchor="start" transform="rotate(-90 ${cx.toFixed(1)} ${(top + plotHeight - 6).toFixed(1)})"`);
      }
    });
    const cx = left + index * groupWidth + groupWidth / 2;
    text(cx, top + plotHeight + 18, b.label, 'font-size="12" text-anchor="middle"');
    if (b.bad) text(cx, top + plotHeight + 34, 'MISMATCH / ERROR', `font-size="11" fill="${COLORS.bad}" text-anchor="middle"`);
    else if (b.speedup) text(cx, top + plotHeight + 34, `${b.speedup.toFixed(1)}x vs tfjs`, 'font-size="11" text-anchor="middle"');
  });
  parts.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${top + plotHeight}" stroke="${COLORS.text}"/>`);

  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" fill="${COLORS.text}">`,
    ...parts.map((p) => `  ${p}`),
    '</svg>',
    '',
  ].join('\n');
}
