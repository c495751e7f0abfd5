import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { NpyError } from '../src/errors.js';
import { readNpy, readNpyFile, writeNpy, writeNpyFile } from '../src/io/npy.js';
import { npyBytes } from './reference/npy-bytes.js';


const dictText = (descr: string, shape: string, fortran = 'False') =>
  `{'descr': '${descr}', 'fortran_order': ${fortran}, 'shape': ${shape}, }`;

const f32Bytes = (values: number[]) => new Uint8Array(new Float32Array(values).buffer);
const f64Bytes = (values: number[]) => new Uint8Array(new Float64Array(values).buffer);
const iota = (count: number) => Array.from({ length: count }, (_, i) => i * 0.5 - 2);

/** Expects readNpy to throw an NpyError whose message names the file and matches `pattern`. */
function expectNpyError(bytes: Uint8Array, pattern: RegExp): void {
  let caught: unknown;
  try {
    readNpy(bytes, 'A.npy');
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(NpyError);
  const error = caught as NpyError;
  expect(error.code).toBe('npy');
  expect(error.message).toMatch(/^A\.npy /);
  expect(error.message).toMatch(pattern);
}

describe('readNpy on well-formed files', () => {
  it('round-trips float32 through writeNpy', () => {
    const data = new Float32Array(iota(12));
    const back = readNpy(writeNpy(data, [3, 4]), 'A.npy');
    expect(back.shape).toEqual([3, 4]);
    expect(back.data).toBeInstanceOf(Float32Array);
    expect(back.data).toEqual(data);
  });

  it('writes files numpy itself reads back (python3 with numpy, as the bench needs): float32 and float64, 1-D to 3-D', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vicreg-npy-numpy-'));
    try {
      const cases = [
        { name: 'f4.npy', data: new Float32Array(iota(12)), shape: [3, 4], dtype: 'float32' },
        { name: 'f8.npy', data: Float64Array.from([0.1, -1 / 3, 1e300, 5e-324]), shape: [4], dtype: 'float64' },
        { name: 'f4-3d.npy', data: new Float32Array(iota(24)), shape: [2, 3, 4], dtype: 'float32' },
        // binary16 bits of 1, -2, 0.5, 65504, and the smallest subnormal 2^-24.
        { name: 'f2.npy', data: new Uint16Array([0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001]), shape: [5], dtype: 'float16' },
      ];
      for (const c of cases) writeFileSync(join(dir, c.name), writeNpy(c.data, c.shape));
      const script = 'import json, sys, numpy as np\n' +
        'print(json.dumps([[str(a.dtype), list(a.shape), a.flags.c_contiguous, [float(x) for x in a.ravel()]] for a in (np.load(p) for p in sys.argv[1:])]))';
      const out = JSON.parse(execFileSync('python3', ['-c', script, ...cases.map((c) => join(dir, c.name))], { encoding: 'utf8' }));
      const values = (c: (typeof cases)[number]) => (c.dtype === 'float16' ? [1, -2, 0.5, 65504, 2 ** -24] : [...c.data]);
      cases.forEach((c, i) => expect(out[i]).toEqual([c.dtype, c.shape, true, values(c)]));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes a header numpy reads: version 1.0, little-endian <f4, C order, 64-aligned data', () => {
    const bytes = writeNpy(new Float32Array(6), [2, 3]);
    const headerLength = new DataView(bytes.buffer).getUint16(8, true);
    const header = new TextDecoder('latin1').decode(bytes.subarray(10, 10 + headerLength));
    expect([...bytes.subarray(0, 8)]).toEqual([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
    expect(header).toMatch(/'descr':\s*'<f4'/);
    expect(header).toMatch(/'fortran_order':\s*False/);
    expect(header).toMatch(/'shape':\s*\(2,\s*3\)/);
    expect(header.endsWith('\n')).toBe(true);
    expect((10 + headerLength) % 64).toBe(0);
    expect(bytes.length).toBe(10 + headerLength + 24);
  });

  it('rejects writing data that does not fill the shape', () => {
    expect(() => writeNpy(new Float32Array(5), [2, 3])).toThrow(/5 values as a 2x3 array/);
  });

  it('reads a hand-made numpy v1.0 float32 header', () => {
    const values = iota(12);
    const bytes = npyBytes(dictText('<f4', '(3, 4)'), f32Bytes(values));
    expect((bytes.length - 48) % 64).toBe(0);
    const { data, shape } = readNpy(bytes, 'A.npy');
    expect(shape).toEqual([3, 4]);
    expect([...data]).toEqual(values);
  });

  it('reads a hand-made numpy v2.0 header', () => {
    const values = iota(6);
    const { data, shape } = readNpy(npyBytes(dictText('<f4', '(2, 3)'), f32Bytes(values), { major: 2 }), 'A.npy');
    expect(shape).toEqual([2, 3]);
    expect([...data]).toEqual(values);
  });

  it('keeps a float16 file as its binary16 bits', () => {
    const bits = [0x3c00, 0xc000, 0x7c00, 0x0001, 0x8000, 0x7e00];
    const { data, shape } = readNpy(npyBytes(dictText('<f2', '(2, 3)'), new Uint8Array(new Uint16Array(bits).buffer)), 'A.npy');
    expect(shape).toEqual([2, 3]);
    expect(data).toBeInstanceOf(Uint16Array);
    expect([...data]).toEqual(bits);
  });

  it('converts float64 to float32 (rounding to nearest)', () => {
    const values = [0.1, -1 / 3, 1e10 + 1, 2.5, 0, -0];
    const { data, shape } = readNpy(npyBytes(dictText('<f8', '(3, 2)'), f64Bytes(values)), 'A.npy');
    expect(shape).toEqual([3, 2]);
    expect(data).toBeInstanceOf(Float32Array);
    expect(data).toEqual(Float32Array.from(values));
  });

  it('accepts the "not applicable" byte order |f4, and a dict without spaces', () => {
    const values = iota(4);
    const compact = `{'descr':'|f4','fortran_order':False,'shape':(2,2)}`;
    expect([...readNpy(npyBytes(compact, f32Bytes(values)), 'A.npy').data]).toEqual(values);
  });

  it('copies data at an offset not aligned for Float32Array or Float64Array', () => {
    const values = iota(6);
    for (const [descr, bytes] of [['<f4', f32Bytes(values)], ['<f8', f64Bytes(values)]] as const) {
      const file = npyBytes(dictText(descr, '(2, 3)'), bytes, { align: 1 });
      expect(file.length - bytes.length).toBe(10 + dictText(descr, '(2, 3)').length + 1);
      expect((file.length - bytes.length) % 4).not.toBe(0);
      expect([...readNpy(file, 'A.npy').data]).toEqual(values);
    }
  });

  it('reads from a view into a larger buffer (as Node Buffers often are)', () => {
    const file = writeNpy(new Float32Array(iota(6)), [2, 3]);
    const larger = new Uint8Array(file.length + 7);
    larger.set(file, 3);
    const { data } = readNpy(larger.subarray(3, 3 + file.length), 'A.npy');
    expect([...data]).toEqual(iota(6));
  });

  it('returns 1-D, 3-D and 0-D shapes as declared (rank is for the caller to check)', () => {
    expect(readNpy(npyBytes(dictText('<f4', '(5,)'), f32Bytes(iota(5))), 'A.npy').shape).toEqual([5]);
    expect(readNpy(npyBytes(dictText('<f4', '(2, 3, 4)'), f32Bytes(iota(24))), 'A.npy').shape).toEqual([2, 3, 4]);
    expect(readNpy(npyBytes(dictText('<f4', '()'), f32Bytes([7])), 'A.npy').shape).toEqual([]);
  });

  it('reads zero-size arrays', () => {
    const { data, shape } = readNpy(npyBytes(dictText('<f4', '(0, 4)'), new Uint8Array(0)), 'A.npy');
    expect(shape).toEqual([0, 4]);
    expect(data.length).toBe(0);
  });
});

describe('readNpy on malformed files', () => {
  const good = dictText('<f4', '(4, 5)');
  const data80 = f32Bytes(iota(20));

  it('rejects a file that is not npy (bad magic)', () => {
    expectNpyError(new TextEncoder().encode('a,b,c\n1,2,3\n'), /not a \.npy file \(bad magic/);
    expectNpyError(new Uint8Array(0), /not a \.npy file/);
  });

  it('rejects unknown format versions', () => {
    const bytes = npyBytes(good, data80);
    bytes[6] = 4;
    expectNpyError(bytes, /unsupported \.npy format version 4\.0/);
  });

  it('rejects a header cut short', () => {
    const bytes = npyBytes(good, data80);
    expectNpyError(bytes.subarray(0, 9), /truncated: it ends inside the \.npy preamble/);
    expectNpyError(bytes.subarray(0, 30), /truncated: the header is declared as 118 bytes but 20 follow/);
  });

  it('rejects truncated data, naming shape, dtype and both byte counts', () => {
    const bytes = npyBytes(good, data80);
    expectNpyError(bytes.subarray(0, bytes.length - 20),
      /^A\.npy is truncated: header declares 4x5 float32 \(80 bytes\) but 60 bytes follow$/);
    expectNpyError(npyBytes(dictText('<f8', '(4, 5)'), data80), /truncated: header declares 4x5 float64 \(160 bytes\) but 80 bytes follow/);
  });

  it('rejects extra data after the array', () => {
    expectNpyError(npyBytes(good, f32Bytes(iota(21))), /4 bytes of extra data after the 4x5 float32 \(80 bytes\)/);
  });

  it('rejects big-endian data with a clear message', () => {
    expectNpyError(npyBytes(dictText('>f4', '(4, 5)'), data80), /big-endian \(dtype '>f4'\).*only little-endian/);
    expectNpyError(npyBytes(dictText('>f8', '(2, 5)'), data80), /big-endian/);
  });

  it('rejects Fortran order, saying so', () => {
    expectNpyError(npyBytes(dictText('<f4', '(4, 5)', 'True'), data80), /Fortran \(column-major\) order; expected C order/);
  });

  it('rejects unsupported dtypes', () => {
    expectNpyError(npyBytes(dictText('<i4', '(4, 5)'), data80), /unsupported dtype '<i4'; expected float16 \('<f2'\), float32/);
    expectNpyError(npyBytes(dictText('<u2', '(4, 10)'), data80), /unsupported dtype '<u2'/);
    expectNpyError(npyBytes(`{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (20,), }`, data80),
      /malformed \.npy header/);
  });

  it('rejects a huge declared shape without allocating it', () => {
    expectNpyError(npyBytes(dictText('<f4', '(100000000000, 100000000000)'), data80),
      /declares shape 100000000000x100000000000 float32, too large to read/);
    // Large but representable: a plain truncation, reported before any allocation.
    expectNpyError(npyBytes(dictText('<f4', '(10000000, 10000000)'), data80),
      /truncated: header declares 10000000x10000000 float32 \(400000000000000 bytes\) but 80 bytes follow/);
  });

  it('rejects malformed header dicts', () => {
    const cases: [string, RegExp][] = [
      ['not a dict at all', /malformed \.npy header \(not a dict\)/],
      [`{'descr': '<f4', 'shape': (4, 5), }`, /keys must be descr, fortran_order, shape; found descr, shape/],
      [`{'descr': '<f4', 'fortran_order': False, 'shape': (4, 5), 'extra': 1, }`, /unreadable entry/],
      [`{'descr': '<f4', 'fortran_order': False, 'shape': (4, 5), 'shape': (4, 5)}`, /duplicate key 'shape'/],
      [`{'descr': '<f4', 'fortran_order': 0, 'shape': (4, 5), }`, /unreadable entry/],
      [`{'descr': '<f4', 'fortran_order': False, 'shape': (4, -5), }`, /shape is not a tuple of non-negative integers/],
      [`{'descr': '<f4', 'fortran_order': False, 'shape': (4.0, 5), }`, /shape is not a tuple/],
      [`{'descr': '<f4', 'fortran_order': False, 'shape': (20), }`, /shape is not a tuple/],
      [`{'descr': '<f4' 'fortran_order': False, 'shape': (4, 5), }`, /unreadable entry/],
    ];
    for (const [dict, pattern] of cases) expectNpyError(npyBytes(dict, data80), pattern);
  });
});

describe('readNpyFile and writeNpyFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vicreg-npy-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('round-trips through the file system', () => {
    const path = join(dir, 'x.npy');
    writeNpyFile(path, new Float32Array(iota(8)), [2, 4]);
    const { data, shape } = readNpyFile(path);
    expect(shape).toEqual([2, 4]);
    expect([...data]).toEqual(iota(8));
  });

  it('names the file in errors, including a missing one', () => {
    const path = join(dir, 'bad.npy');
    writeFileSync(path, 'hello');
    expect(() => readNpyFile(path)).toThrow(new NpyError(`${path} is not a .npy file (bad magic string)`));
    const missing = join(dir, 'missing.npy');
    expect(() => readNpyFile(missing)).toThrow(new NpyError(`cannot read ${missing}: no such file or directory`));
    expect(() => writeNpyFile(join(dir, 'no-such-dir', 'y.npy'), new Float32Array(1), [1, 1])).toThrow(NpyError);
  });
});
