// Builds dist/: the library for Node (ESM), the CLI, the bench, a browser ESM bundle, the browser demo,
// and the type declarations. WGSL files are bundled as text, as vitest loads them (vitest.config.ts).
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, rmSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });

const common = { bundle: true, format: 'esm', loader: { '.wgsl': 'text' }, logLevel: 'warning', sourcemap: true };

// Node: `webgpu` (dawn.node, a native addon) and npyjs stay external, resolved from node_modules.
const nodeEntries = { index: 'src/index.ts', tfjs: 'src/tfjs/index.ts', cli: 'src/cli/main.ts' };
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
  // Each a single file: the tfjs op carries its own copy of the engine; tfjs itself is the page's.
  entryPoints: { 'vicreg-wgsl': 'src/index.ts', tfjs: 'src/tfjs/index.ts' },
  outdir: 'dist/browser',
  platform: 'browser',
  target: 'es2022',
  external: ['webgpu', 'node:*', '@tensorflow/tfjs-core'],
});

// The browser demo (examples/browser/index.html): demo.js imports the library by name ('vicreg-wgsl',
// mapped to dist/browser/vicreg-wgsl.js by the page's import map) and loads the tfjs comparison as a
// separate chunk, on demand.
await build({
  ...common,
  entryPoints: { demo: 'examples/browser/demo.ts' },
  outdir: 'dist/demo',
  platform: 'browser',
  target: 'es2022',
  external: ['vicreg-wgsl'],
  splitting: true,
  minify: true,
});

// kernels/manifest.json for native hosts (docs/native.md): the generator is TypeScript (it reads
// src/manifest/plan.ts), so it is bundled in memory and imported from a data: URL, leaving nothing in dist/.
const manifest = await build({
  entryPoints: ['scripts/manifest.ts'], bundle: true, format: 'esm', platform: 'node', target: 'node20', write: false, logLevel: 'warning', loader: { '.wgsl': 'text' },
});
const { writeManifest } = await import(`data:text/javascript;base64,${Buffer.from(manifest.outputFiles[0].contents).toString('base64')}`);
writeManifest(process.cwd());

execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
console.log('built dist/node, dist/browser, dist/demo, dist/types, kernels/manifest.json');
