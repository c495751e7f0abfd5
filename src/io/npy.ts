// Strict reading and writing of NumPy .npy files (format spec: numpy.lib.format), for float16, float32
// and float64 arrays, by hand: the format is a preamble, a dict literal and raw little-endian data, and the
// libraries at hand read it laxly (missing keys defaulting silently, byte order dropped, the data length
// never compared with the shape) or pull in network clients. Reading checks every field; every failure
// is an NpyError naming the file.
import { readFileSync, writeFileSync } from 'node:fs';
import { NpyError, ShapeError } from '../errors.js';

export interface NpyArray {
  /** float32 values (float64 files converted), or a float16 file's binary16 bits. */
  data: Float32Array | Uint16Array;
  shape: number[];
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"

/** Dtypes we read, by their numpy descr; '|' ("not applicable") is accepted like '<'. */
const FLOAT_TYPES = new Map([
  ['<f2', { name: 'float16', bytes: 2 }],
  ['|f2', { name: 'float16', bytes: 2 }],
  ['<f4', { name: 'float32', bytes: 4 }],
  ['|f4', { name: 'float32', bytes: 4 }],
  ['<f8', { name: 'float64', bytes: 8 }],
  ['|f8', { name: 'float64', bytes: 8 }],
]);

/** "4x5"; "()" for a 0-D array. */
export function formatShape(shape: readonly number[]): string {
  return shape.length === 0 ? '()' : shape.join('x');
}

/** Parses .npy bytes into a float32 array (float64 files are converted) or a float16 file's bits, and its shape, of any rank. */
export function readNpy(bytes: Uint8Array, name: string): NpyArray {
  const problem = (what: string) => new NpyError(`${name} ${what}`);

  // Preamble: magic (6 bytes), version (2), header length (2 bytes in v1, 4 in v2 and v3).
  if (bytes.length < MAGIC.length || MAGIC.some((byte, i) => bytes[i] !== byte)) {
    throw problem('is not a .npy file (bad magic string)');
  }
  if (bytes.length < 8) throw problem('is truncated: it ends inside the .npy preamble');
  const major = bytes[6], minor = bytes[7];
  if (major < 1 || major > 3 || minor !== 0) throw problem(`has unsupported .npy format version ${major}.${minor}`);
  const headerStart = major === 1 ? 10 : 12;
  if (bytes.length < headerStart) throw problem('is truncated: it ends inside the .npy preamble');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const dataStart = headerStart + headerLength;
  if (bytes.length < dataStart) {
    throw problem(`is truncated: the header is declared as ${headerLength} bytes but ${bytes.length - headerStart} follow`);
  }
  // v1/v2 headers are latin1, v3 is utf8; the dict text we accept is ASCII either way.
  const headerText = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(headerStart, dataStart));
  const quoted = JSON.stringify(headerText.trim().slice(0, 100)); // enough to recognize, not a flood
  const header = parseHeader(headerText, (why) => problem(`has a malformed .npy header (${why}): ${quoted}`));

  const type = FLOAT_TYPES.get(header.descr);
  if (!type) {
    if (header.descr.startsWith('>')) {
      throw problem(`is big-endian (dtype '${header.descr}'); only little-endian float16/float32/float64 is supported (save arr.astype('<f4'))`);
    }
    throw problem(`has unsupported dtype '${header.descr}'; expected float16 ('<f2'), float32 ('<f4') or float64 ('<f8')`);
  }
  if (header.fortranOrder) {
    throw problem('is in Fortran (column-major) order; expected C order (save np.ascontiguousarray(arr))');
  }

  // Compare byte counts before allocating anything: a corrupt header may declare an enormous shape.
  const dataBytes = header.shape.reduce((product, dim) => product * dim, type.bytes);
  const described = `${formatShape(header.shape)} ${type.name}`;
  if (!Number.isSafeInteger(dataBytes)) throw problem(`declares shape ${described}, too large to read`);
  const available = bytes.length - dataStart;
  if (available < dataBytes) {
    throw problem(`is truncated: header declares ${described} (${dataBytes} bytes) but ${available} bytes follow`);
  }
  if (available > dataBytes) {
    throw problem(`has ${available - dataBytes} bytes of extra data after the ${described} (${dataBytes} bytes) its header declares`);
  }

  // Copy the data into a fresh buffer: aligned whatever the data offset was. (Not bytes.slice(): on a
  // Node Buffer that is a view, not a copy.)
  const raw = new Uint8Array(bytes.subarray(dataStart)).buffer;
  const data = type.bytes === 2 ? new Uint16Array(raw) : type.bytes === 4 ? new Float32Array(raw) : Float32Array.from(new Float64Array(raw));
  return { data, shape: header.shape };
}

interface Header { descr: string; fortranOrder: boolean; shape: number[] }

// One `'key': value,` entry of the header dict; a value is a quoted string, a boolean or a flat tuple.
const ENTRY = /^\s*(['"])(\w+)\1\s*:\s*('[^']*'|"[^"]*"|True|False|\([^()]*\))\s*(,|$)/;

/** Parses the header dict literal, e.g. `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`. */
function parseHeader(text: string, malformed: (why: string) => NpyError): Header {
  const body = /^\s*\{(.*)\}\s*$/s.exec(text)?.[1];
  if (body === undefined) throw malformed('not a dict');
  const values = new Map<string, string>();
  for (let rest = body; rest.trim() !== '';) {
    const entry = ENTRY.exec(rest);
    if (!entry) throw malformed('unreadable entry');
    if (values.has(entry[2])) throw malformed(`duplicate key '${entry[2]}'`);
    values.set(entry[2], entry[3]);
    rest = rest.slice(entry[0].length);
  }
  const keys = [...values.keys()].sort().join(', ');
  if (keys !== 'descr, fortran_order, shape') {
    throw malformed(`keys must be descr, fortran_order, shape; found ${keys || 'none'}`);
  }

  const descr = values.get('descr')!;
  if (!/^['"]/.test(descr)) throw malformed('descr is not a string');
  const fortranOrder = values.get('fortran_order')!;
  if (fortranOrder !== 'True' && fortranOrder !== 'False') throw malformed('fortran_order is not True or False');
  // A shape is "(3, 4)", "(3,)" or "()": non-negative integers, a trailing comma (required for one).
  const shapeText = values.get('shape')!;
  const inner = shapeText.slice(1, -1).trim();
  if (!shapeText.startsWith('(') || !(inner === '' || /^\d+\s*,(\s*\d+\s*,)*(\s*\d+)?$/.test(inner))) {
    throw malformed('shape is not a tuple of non-negative integers');
  }
  const shape = inner.split(',').map((dim) => dim.trim()).filter((dim) => dim !== '').map(Number);
  return { descr: descr.slice(1, -1), fortranOrder: fortranOrder === 'True', shape };
}

/** Reads a .npy file; I/O failures are NpyErrors too. */
export function readNpyFile(path: string): NpyArray {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    throw new NpyError(`cannot read ${path}: ${describeIoError(error)}`);
  }
  return readNpy(bytes, path);
}

/** The header's data offset is a multiple of this (numpy.lib.format aligns to 64 bytes). */
const HEADER_ALIGNMENT = 64;

/** Serializes a float32 or float64 array, or a Uint16Array of float16 bits, as a little-endian, C-order .npy (format 1.0). */
export function writeNpy(data: Float32Array | Float64Array | Uint16Array, shape: readonly number[]): Uint8Array {
  const count = shape.reduce((product, dim) => product * dim, 1);
  if (!shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0) || count !== data.length) {
    throw new ShapeError(`cannot write ${data.length} values as a ${formatShape(shape)} array`);
  }
  const descr = data instanceof Float64Array ? '<f8' : data instanceof Uint16Array ? '<f2' : '<f4';
  const tuple = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${tuple}, }`;
  // Spaces, then a newline, pad the header so that the data starts on an aligned offset.
  const preamble = MAGIC.length + 4;
  const padded = Math.ceil((preamble + dict.length + 1) / HEADER_ALIGNMENT) * HEADER_ALIGNMENT;
  const header = `${dict}${' '.repeat(padded - preamble - dict.length - 1)}\n`;
  const bytes = new Uint8Array(padded + data.byteLength);
  bytes.set(MAGIC, 0);
  bytes.set([1, 0], MAGIC.length);
  new DataView(bytes.buffer).setUint16(MAGIC.length + 2, header.length, true);
  for (let i = 0; i < header.length; i++) bytes[preamble + i] = header.charCodeAt(i);
  // The platforms JavaScript runs on are little-endian, as the file is.
  bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), padded);
  return bytes;
}

export function writeNpyFile(path: string, data: Float32Array | Uint16Array, shape: readonly number[]): void {
  const bytes = writeNpy(data, shape);
  try {
    writeFileSync(path, bytes);
  } catch (error) {
    throw new NpyError(`cannot write ${path}: ${describeIoError(error)}`);
  }
}

function describeIoError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT') return 'no such file or directory';
  if (code === 'EISDIR') return 'it is a directory';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  return error instanceof Error ? error.message : String(error);
}
