import { readFileSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

// Loads .wgsl files as text, exactly as esbuild's `--loader:.wgsl=text` does in the build.
const wgslText = {
  name: 'wgsl-text',
  transform(_code: string, id: string) {
    if (!id.endsWith('.wgsl')) return null;
    return { code: `export default ${JSON.stringify(readFileSync(id, 'utf8'))};`, map: null };
  },
};

export default defineConfig({
  plugins: [wgslText],
  test: {
    include: ['test/**/*.test.ts'],
    // The default reporter, and one that names every skipped test (and so why it could not run here).
    reporters: ['default', './test/reporter.ts'],
    // One Dawn instance per worker and a 2-core software GPU: run files one at a time.
    fileParallelism: false,
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
