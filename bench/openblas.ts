// The float32 NumPy/OpenBLAS baseline of `npm run bench -- --openblas`: bench/numpy_vicreg.py --serve,
// one process for the whole bench, asked for one timed run at a time so that its runs alternate with
// ours (on a shared machine whose speed drifts by tens of percent over minutes, runs of one side taken
// minutes after the other's measured the drift as much as the two).
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

/** A pause after each OpenBLAS run, so that its threads have stopped spinning before ours runs again. */
export const OPENBLAS_SETTLE_MS = 200;

/** What numpy_vicreg.py answers: to a shape, {ready, blas, threads}; to 'run', {ms, loss}. */
type Answer = { ready: string; blas: string; threads: string } | { ms: number; loss: number };

export interface OpenblasBaseline {
  /** Makes the shape's inputs; the process checks itself against float64 and warms up. Resolves to the library's name. */
  prepare(n: number, d: number): Promise<string>;
  /** One timed forward + backward, in ms (the process's own clock, around the computation only). */
  run(): Promise<number>;
  close(): void;
}

/** Starts bench/numpy_vicreg.py --serve. A failure (no python3, no numpy, a failed self-check) rejects the calls with its last stderr line. */
export function startOpenblas(): OpenblasBaseline {
  const child = spawn('python3', ['bench/numpy_vicreg.py', '--serve'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  let ended: string | undefined;
  const waiting: { resolve: (answer: Answer) => void; reject: (error: Error) => void }[] = [];
  const fail = (reason: string) => {
    ended ??= reason;
    for (const w of waiting.splice(0)) w.reject(new Error(ended));
  };
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  child.on('error', (error) => fail(`python3: ${error.message}`));
  child.on('close', (code) => fail(stderr.trim().split('\n').pop() || `numpy_vicreg.py exited with status ${code}`));
  child.stdin.on('error', () => { /* the process is gone: 'close' says why */ });
  createInterface({ input: child.stdout }).on('line', (line) => {
    const next = waiting.shift();
    try {
      next?.resolve(JSON.parse(line) as Answer);
    } catch {
      next?.reject(new Error(`numpy_vicreg.py answered ${JSON.stringify(line.slice(0, 200))}`));
    }
  });
  const ask = (line: string) => new Promise<Answer>((resolve, reject) => {
    if (ended) return reject(new Error(ended));
    waiting.push({ resolve, reject });
    child.stdin.write(`${line}\n`);
  });
  return {
    async prepare(n, d) {
      const answer = await ask(`${n}x${d}`);
      if (!('ready' in answer)) throw new Error(`numpy_vicreg.py answered ${JSON.stringify(answer)} to a shape`);
      return answer.blas;
    },
    async run() {
      const answer = await ask('run');
      if (!('ms' in answer)) throw new Error(`numpy_vicreg.py answered ${JSON.stringify(answer)} to 'run'`);
      return answer.ms;
    },
    close() {
      child.stdin.end();
    },
  };
}
