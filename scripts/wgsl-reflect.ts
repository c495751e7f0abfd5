// Reads what a host needs from a WGSL compute kernel's source with a few regexes: enables, structs (with
// their host-shareable layout), module-scope constants, override constants, group-0 bindings, workgroup
// memory and the entry point's workgroup size. Enough for this project's kernels (one entry point per
// file, no nested structs in uniforms); not a WGSL parser.
import { evaluate, type Env } from './formula.js';

export interface StructField { name: string; type: string; offset: number; size: number }
export interface StructLayout { name: string; size: number; align: number; fields: StructField[] }
export interface Override { name: string; type: string; default?: string }
export interface Binding {
  group: number;
  binding: number;
  name: string;
  /** 'storage' or 'uniform'. */
  buffer: 'storage' | 'uniform';
  /** 'read' or 'read_write' for storage; 'read' for uniform. */
  access: 'read' | 'read_write';
  /** The declared type, as written: array<f32>, array<vec4<f32>>, or a struct name. */
  type: string;
  /** The element type: f32, u32, vec4<f32> (runtime arrays), or the struct name. */
  element: string;
}
export interface Reflection {
  enables: string[];
  structs: Record<string, StructLayout>;
  /** Module-scope `const` values (those that evaluate to numbers). */
  constants: Record<string, number>;
  overrides: Override[];
  bindings: Binding[];
  /** Workgroup-memory variables: name -> WGSL type. */
  workgroupVars: Record<string, string>;
  entryPoint: string;
  /** The @workgroup_size arguments as written (they may name overrides). */
  workgroupSize: string[];
}

/** WGSL source without comments. */
const stripComments = (code: string) => code.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');

/** A WGSL integer or float literal or expression as a formula: drops the u/i/f suffixes. */
const asFormula = (expr: string) => expr.trim().replace(/\b(\d+(?:\.\d*)?)[uif]\b/g, '$1');

/** Alignment and size of a host-shareable scalar, vector or matrix type (WGSL spec, "Alignment and Size"). */
export function scalarLayout(type: string): { align: number; size: number } {
  const t = type.replace(/\s/g, '');
  if (/^(f32|u32|i32|atomic<[ui]32>)$/.test(t)) return { align: 4, size: 4 };
  const vec = /^vec([234])<(f32|u32|i32)>$/.exec(t);
  if (vec) {
    const lanes = Number(vec[1]);
    return { align: lanes === 2 ? 8 : 16, size: 4 * lanes };
  }
  // matCxR<f32>: C columns, each a vecR.
  const mat = /^mat([234])x([234])<f32>$/.exec(t);
  if (mat) {
    const column = scalarLayout(`vec${mat[2]}<f32>`);
    return { align: column.align, size: Number(mat[1]) * roundUp(column.align, column.size) };
  }
  throw new Error(`no layout for WGSL type ${type}`);
}

const roundUp = (k: number, n: number) => Math.ceil(n / k) * k;

/** Fields of a struct body, split at top-level commas (types like vec2<u32> contain none). */
function structLayout(name: string, body: string): StructLayout {
  let offset = 0;
  let align = 1;
  const fields: StructField[] = [];
  for (const part of body.split(/[,;]/).map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\w+)\s*:\s*(.+)$/.exec(part);
    if (!m) throw new Error(`struct ${name}: cannot read field ${JSON.stringify(part)}`);
    const layout = scalarLayout(m[2]);
    offset = roundUp(layout.align, offset);
    fields.push({ name: m[1], type: m[2].replace(/\s/g, ''), offset, size: layout.size });
    offset += layout.size;
    align = Math.max(align, layout.align);
  }
  return { name, size: roundUp(align, offset), align, fields };
}

export function reflect(source: string): Reflection {
  const code = stripComments(source);
  const enables = [...code.matchAll(/^\s*enable\s+([\w\s,]+);/gm)].flatMap((m) => m[1].split(',').map((s) => s.trim()));
  const structs: Record<string, StructLayout> = {};
  for (const m of code.matchAll(/struct\s+(\w+)\s*\{([^}]*)\}/g)) structs[m[1]] = structLayout(m[1], m[2]);

  const constants: Record<string, number> = {};
  for (const m of code.matchAll(/^const\s+(\w+)\s*(?::\s*[\w<>]+)?\s*=\s*([^;]+);/gm)) {
    try {
      constants[m[1]] = evaluate(asFormula(m[2]), constants);
    } catch {
      // Not a plain number (a hex mask, say): not needed for sizes.
    }
  }
  const overrides = [...code.matchAll(/^override\s+(\w+)\s*:\s*(\w+)\s*(?:=\s*([^;]+))?;/gm)].map((m) => ({
    name: m[1], type: m[2], ...(m[3] !== undefined ? { default: m[3].trim() } : {}),
  }));
  const bindings: Binding[] = [...code.matchAll(/@group\((\d+)\)\s*@binding\((\d+)\)\s*var<([^>]+)>\s*(\w+)\s*:\s*([^;]+);/g)].map((m) => {
    const [space, access = 'read'] = m[3].split(',').map((s) => s.trim());
    if (space !== 'storage' && space !== 'uniform') throw new Error(`binding ${m[4]}: address space ${space} is not a buffer`);
    const type = m[5].replace(/\s/g, '');
    const array = /^array<(.+)>$/.exec(type);
    return {
      group: Number(m[1]), binding: Number(m[2]), name: m[4], buffer: space, access: access as 'read' | 'read_write',
      type, element: array ? array[1] : type,
    };
  });
  const workgroupVars = Object.fromEntries([...code.matchAll(/var<workgroup>\s+(\w+)\s*:\s*([^;]+);/g)].map((m) => [m[1], m[2].replace(/\s/g, '')]));
  const entry = /@compute\s+@workgroup_size\(([^)]*)\)\s*fn\s+(\w+)/.exec(code);
  if (!entry) throw new Error('no @compute entry point');
  return {
    enables, structs, constants, overrides, bindings, workgroupVars,
    entryPoint: entry[2], workgroupSize: entry[1].split(',').map((s) => s.trim()).filter(Boolean),
  };
}

/** Bytes of a workgroup variable's type: scalars, vectors, atomics and fixed-size arrays of them. */
export function workgroupBytes(type: string, env: Env): number {
  const array = /^array<(.+),([^,<>]+)>$/.exec(type);
  if (array) {
    const element = workgroupBytes(array[1], env);
    const stride = roundUp(elementAlign(array[1]), element);
    return stride * evaluate(asFormula(array[2]), env);
  }
  return scalarLayout(type).size;
}

function elementAlign(type: string): number {
  const array = /^array<(.+),([^,<>]+)>$/.exec(type);
  return array ? elementAlign(array[1]) : scalarLayout(type).align;
}

/** The workgroup size as three numbers, with overrides and constants bound by `env`. */
export function workgroupSize(r: Reflection, env: Env): [number, number, number] {
  const [x, y = 1, z = 1] = r.workgroupSize.map((e) => evaluate(asFormula(e), env));
  return [x, y, z];
}
