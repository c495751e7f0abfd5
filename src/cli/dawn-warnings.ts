// Dawn writes two warnings to stderr whenever it clamps a limit an adapter reports beyond what it
// supports (lavapipe's dynamic buffer counts), with fprintf and no setting to silence it (Limits.cpp,
// NormalizeLimits), at the first requestAdapter() of a process. The CLI promises a quiet stderr (one
// line on bad input), so its device commands run in a child process whose stderr passes through here
// with exactly those two lines dropped; everything else, Dawn's other messages included, passes.
import { spawn } from 'node:child_process';
import { constants } from 'node:os';

/** Set in the child's environment, so that it runs the command itself. */
export const CHILD_ENV = 'VICREG_WGSL_CLI_CHILD';

const CLAMP_WARNING = /^Warning: maxDynamic(?:Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.\r?$/;

/** Runs this script again with `args` as a child; resolves with its exit code (128 + n for signal n). */
export function runWithoutClampWarnings(script: string, args: readonly string[]): Promise<number> {
  const child = spawn(process.execPath, [...process.execArgv, script, ...args], {
    stdio: ['inherit', 'inherit', 'pipe'],
    env: { ...process.env, [CHILD_ENV]: '1' },
  });
  let pending = '';
  const pass = (line: string) => {
    if (!CLAMP_WARNING.test(line)) process.stderr.write(`${line}\n`);
  };
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    const lines = (pending + chunk).split('\n');
    pending = lines.pop()!;
    lines.forEach(pass);
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (pending) pass(pending);
      resolve(code ?? 128 + (signal ? constants.signals[signal] : 0));
    });
  });
}

