// bench/ab.mjs (`npm run ab`): the engine at a revision against the working tree, in one process. A smoke
// test on a tiny shape (HEAD against the working tree, on lavapipe): it must bundle both sides, seed them
// with one trial's choices, compare their gradients and print a line per mode (or, with --kernels, per
// kernel); and reject bad arguments
// with exit code 2 and a message naming the argument.

import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const ab = (...args: string[]) => spawnSync('node', ['bench/ab.mjs', ...args], { encoding: 'utf8' });

describe('npm run ab', () => {
  it('runs HEAD against the working tree, every mode, with the gradients compared', () => {
    const run = ab('--base', 'HEAD', '--shapes', '12x40', '--rounds', '2', '--warmup', '1', '--modes', 'host,resident,encode,forward');
    expect(run.stderr.replace(/^Warning: .*\n/gm, '')).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^A = HEAD \([0-9a-f]{7}\), B = working tree; variant auto, form auto; 2 alternating calls/m);
    // Which of the two it says depends on the working tree; that it says one of them, for view A, does not.
    expect(run.stdout).toMatch(/^12x40: the working tree's trial chose \w+\/\w+; the runs: \w+\/\w+ \/ \w+\/\w+ \(A \/ B\); gradients \(host, view A\) (bitwise the same|differ in \d+ of 480 elements)$/m);
    for (const mode of ['host', 'resident', 'encode', 'forward']) {
      expect(run.stdout).toMatch(new RegExp(`^12x40 ${mode}: A [\\d.]+ ms \\([\\d.]+ ms-[\\d.]+ ms\\), B [\\d.]+ ms \\([\\d.]+ ms-[\\d.]+ ms\\), B/A [\\d.]+$`, 'm'));
    }
  });

  it('--kernels alternates the two sides\' kernel benches and prints each kernel per side', () => {
    const run = ab('--base', 'HEAD', '--kernels', '--shapes', '12x64', '--rounds', '2', '--variant', 'tiled');
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^A = HEAD \([0-9a-f]{7}\), B = working tree; kernels alone, variant tiled; 2 alternating runs/m);
    for (const kernel of ['both/only column_stats', 'dual/tiled tiled/dual_gram', 'primal/tiled tiled/primal_gram']) {
      expect(run.stdout).toMatch(new RegExp(`^12x64 ${kernel}.*: A [\\d.]+ ms .*, B/A [\\d.]+$`, 'm'));
    }
  });

  it('rejects bad arguments by name', () => {
    const cases: [string[], string][] = [
      [['--shapes', '8x8'], '--base REV is required'],
      [['--base', 'HEAD', '--modes', 'host,gpu'], '--modes: "gpu" is not one of host, resident, encode, forward'],
      [['--base', 'HEAD', '--rounds', '0'], '--rounds must be an integer >= 1, got "0"'],
      [['--base', 'HEAD', '--shapes', '1x8'], '--shapes: "1x8" is not NxD with n >= 2, d >= 1'],
    ];
    for (const [args, message] of cases) {
      const run = ab(...args);
      expect(run.status, args.join(' ')).toBe(2);
      expect(run.stderr).toContain(`ab: ${message}`);
    }
  });
});
