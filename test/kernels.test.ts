// The kernel sources as files: each opens with what it computes, its bindings, its dispatch and its
// variant; every copy of a shared definition (kernels/shared/) is that definition's text; and no other
// definition is repeated across kernels without a shared file.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const KERNELS = fileURLToPath(new URL('../kernels/', import.meta.url));
const wgsl = (readdirSync(KERNELS, { recursive: true }) as string[]).filter((f) => f.endsWith('.wgsl')).sort();
const kernelFiles = wgsl.filter((f) => !f.startsWith('shared'));
const sharedFiles = wgsl.filter((f) => f.startsWith('shared'));
const read = (file: string) => readFileSync(join(KERNELS, file), 'utf8');

/** The top-level structs and functions of a WGSL source, by name, as their code (from `struct`/`fn` to the closing brace). */
function definitions(source: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of source.matchAll(/^(struct|fn) (\w+)\b/gm)) {
    let depth = 0;
    let end = source.indexOf('{', m.index!);
    for (; end < source.length; end++) {
      if (source[end] === '{') depth++;
      else if (source[end] === '}' && --depth === 0) break;
    }
    out.set(`${m[1]} ${m[2]}`, source.slice(m.index!, end + 1));
  }
  return out;
}

describe('kernel files', () => {
  it('every kernel opens with its math, bindings, dispatch and variant', () => {
    expect(kernelFiles.length).toBeGreaterThan(15);
    for (const file of kernelFiles) {
      const header = read(file).split('\n').filter((line) => line.startsWith('//')).join('\n');
      expect(header.startsWith(`// ${file.replace(/\.wgsl$/, '')}.wgsl: `) || header.startsWith(`// ${file.split('/').pop()}: `), `${file}: opens with its name`).toBe(true);
      for (const part of ['Math', 'Bindings', 'Dispatch', 'Variant']) expect(header, `${file}: ${part}`).toMatch(new RegExp(`^// (.*\\b)?${part}\\b`, 'm'));
    }
  });

  it('every copy of a shared definition is its text in kernels/shared', () => {
    expect(sharedFiles.length).toBeGreaterThan(0);
    for (const shared of sharedFiles) {
      const canonical = definitions(read(shared));
      expect(canonical.size, shared).toBeGreaterThan(0);
      for (const [name, code] of canonical) {
        const copies = kernelFiles.filter((file) => definitions(read(file)).has(name));
        expect(copies.length, `${name} (${shared}) is used by at least two kernels`).toBeGreaterThanOrEqual(2);
        for (const file of copies) expect(definitions(read(file)).get(name), `${file}: ${name} differs from ${shared}`).toBe(code);
      }
    }
  });

  it('no definition is repeated, the same text in two kernels, without a shared file', () => {
    const sharedNames = new Set(sharedFiles.flatMap((f) => [...definitions(read(f)).keys()]));
    const seen = new Map<string, string>();
    for (const file of kernelFiles) {
      for (const [name, code] of definitions(read(file))) {
        if (sharedNames.has(name)) continue;
        const key = `${name}\n${code}`;
        expect(seen.get(key), `${name} in ${file} is the same text as in ${seen.get(key)}: give it a file in kernels/shared`).toBeUndefined();
        seen.set(key, file);
      }
    }
  });
});
