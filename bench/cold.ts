// The first call as a new process meets it: a child process with the driver's shader cache off
// (MESA_SHADER_CACHE_DISABLE, read by lavapipe; SwiftShader keeps none across processes) creates an
// engine and runs one forward + backward, then a second. Its report splits the first call into the
// engine's setup (pipeline creation, variant trials) and the rest: the work itself and whatever the
// driver does on a pipeline's first dispatch (lavapipe compiles its shader then).
import { spawn } from 'node:child_process';
import { createVICRegLoss, type VICRegOptions } from '../src/index.js';
import { setupTime } from '../src/runtime/setup-time.js';
import { randomViews } from '../test/reference/float64.js';

/** The flag that makes the bench process a cold child; its argument is the JSON of ColdRequest. */
export const COLD_CHILD_FLAG = '--cold-child';

interface ColdRequest { n: number; d: number; seed: number; options: Pick<VICRegOptions, 'preset' | 'form' | 'variant'> }

export interface ColdResult {
  /** The first forward + backward of a fresh process, engine creation included. */
  firstMs: number;
  /** Of it: creating pipelines outside trials, and variant trials. */
  pipelinesMs: number;
  trialsMs: number;
  /** The second forward + backward of the same process. */
  secondMs: number;
}

/** In the child: runs the request, writes a ColdResult as one JSON line to stdout. */
export async function coldChild(request: string): Promise<number> {
  const { n, d, seed, options } = JSON.parse(request) as ColdRequest;
  const { a, b } = randomViews(n, d, seed);
  const start = performance.now();
  const vic = await createVICRegLoss(options);
  await vic.forward(a, b, [n, d]);
  await vic.backward();
  const firstMs = performance.now() - start;
  const { pipelinesMs, trialsMs } = setupTime(vic.device);
  const second = performance.now();
  await vic.forward(a, b, [n, d]);
  await vic.backward();
  const result: ColdResult = { firstMs, pipelinesMs, trialsMs, secondMs: performance.now() - second };
  vic.destroy();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  return 0;
}

/** In the bench: runs a cold child for one shape (this same script, `script`) and returns its result. */
export function coldFirstCall(script: string, n: number, d: number, seed: number, options: ColdRequest['options']): Promise<ColdResult> {
  const request: ColdRequest = { n, d, seed, options };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, COLD_CHILD_FLAG, JSON.stringify(request)], {
      env: { ...process.env, MESA_SHADER_CACHE_DISABLE: 'true' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '', err = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (err += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      const last = out.trim().split('\n').at(-1) ?? '';
      if (code === 0 && last.startsWith('{')) resolve(JSON.parse(last) as ColdResult);
      else reject(new Error(`cold child for ${n}x${d} exited with ${code}: ${err.trim().split('\n').at(-1) ?? ''}`));
    });
  });
}
