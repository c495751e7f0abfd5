// Builds dist/: the library for Node (ESM), the CLI, the bench, a browser ESM bundle, and the type
// declarations. WGSL files are bundled as text, as vitest loads them (vitest.config.ts).
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, rmSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });

const common = { bundle: true, format: 'esm', loader: { '.wgsl': 'text' }, logLevel: 'warning', sourcemap: true };

// Node: `webgpu` (dawn.node, a native addon) and npyjs stay external, resolved from node_modules.
const nodeEntries = { index: 'src/index.ts', cli: 'src/cli/main.ts' };
if (existsSync('bench/bench.ts')) nodeEntries.bench = 'bench/bench.ts';
await build({
  ...common,
  entryPoints: nodeEntries,
  outdir: 'dist/node',
  platform: 'node',
  target: 'node20',
  packages: 'external',
});
chmodSync('dist/node/cli.js', 0o755);

// Browser: one self-contained ESM file; the Node-only device path (`import('webgpu')`) is never reached
// where navigator.gpu exists, so `webgpu` is left as an unresolved dynamic import.
await build({
  ...common,
  entryPoints: { 'vicreg-wgsl': 'src/index.ts' },
  outdir: 'dist/browser',
  platform: 'browser',
  target: 'es2022',
  external: ['webgpu', 'node:*'],
});

execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
console.log('built dist/node, dist/browser, dist/types');
