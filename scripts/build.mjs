// Builds dist/: what the package ships (dist/node, dist/browser, dist/types; package.json "files"), and
// beside it what the repository runs but does not ship: the bench (dist/bench), the browser demo
// (dist/demo). WGSL files are bundled as text, as vitest loads them (vitest.config.ts).
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { chmodSync, rmSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });

const common = { bundle: true, format: 'esm', loader: { '.wgsl': 'text' }, logLevel: 'warning' };
// The library's entry points share one copy of the engine (a chunk each build splits out), so that
// its errors are one class hierarchy and its variant choices one cache per device.
const library = { ...common, splitting: true, chunkNames: 'chunks/[name]-[hash]' };

// Node: `webgpu` (dawn.node, an optional peer) and tfjs stay external, resolved from the user's node_modules.
await build({
  ...library,
  entryPoints: { index: 'src/index.ts', tfjs: 'src/tfjs/index.ts', cli: 'src/cli/main.ts' },
  outdir: 'dist/node',
  platform: 'node',
  target: 'node20',
  packages: 'external',
});
chmodSync('dist/node/cli.js', 0o755);

// Browser: WebGPU is navigator.gpu, so the module that loads dawn.node in Node is swapped for its
// browser twin and `webgpu` appears nowhere in the bundle; tfjs is the page's own.
const browserTwins = {
  name: 'browser-twins',
  setup(b) {
    b.onResolve({ filter: /\/system-gpu\.js$/ }, (args) => ({ path: `${args.resolveDir}/system-gpu.browser.ts` }));
  },
};
await build({
  ...library,
  entryPoints: { index: 'src/index.ts', tfjs: 'src/tfjs/index.ts' },
  outdir: 'dist/browser',
  platform: 'browser',
  target: 'es2022',
  external: ['@tensorflow/tfjs-core'],
  plugins: [browserTwins],
});

// Not shipped. The bench (npm run bench) with its own copy of the engine, and the browser demo
// (examples/browser/index.html): demo.js imports the library by name ('vicreg-wgsl', mapped to
// dist/browser/index.js by the page's import map) and loads the tfjs comparison as a separate chunk.
await build({
  ...common,
  entryPoints: { bench: 'bench/bench.ts' },
  outdir: 'dist/bench',
  platform: 'node',
  target: 'node20',
  packages: 'external',
  sourcemap: true,
});
// npm run train (examples/train): imports the package by name, as its users do, so Node resolves
// 'vicreg-wgsl' and 'vicreg-wgsl/tfjs' to dist/node (the package's self-reference), not to src/.
await build({
  ...common,
  entryPoints: { train: 'examples/train/main.ts' },
  outdir: 'dist/train',
  platform: 'node',
  target: 'node20',
  packages: 'external',
});
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
console.log('built dist/node, dist/browser, dist/types (the package), dist/bench, dist/train, dist/demo, kernels/manifest.json');
