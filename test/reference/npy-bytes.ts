// Hand-made .npy bytes for the tests of the reader (npy.test.ts, fuzz.test.ts): built here, byte by
// byte, so they do not depend on the writer under test.

/**
 * Builds .npy bytes by hand, as numpy writes them: magic, version, header length (2 bytes in v1.0, 4 in
 * v2.0), then the dict text padded with spaces and a final '\n' so that the data starts at a multiple of 64
 * (or at `align`, to test odd offsets).
 */
export function npyBytes(dict: string, data: Uint8Array, { major = 1, align = 64 } = {}): Uint8Array {
  const preamble = major === 1 ? 10 : 12;
  const padding = (align - ((preamble + dict.length + 1) % align)) % align;
  const header = dict + ' '.repeat(padding) + '\n';
  const bytes = new Uint8Array(preamble + header.length + data.length);
  bytes.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]);
  const view = new DataView(bytes.buffer);
  if (major === 1) view.setUint16(8, header.length, true);
  else view.setUint32(8, header.length, true);
  bytes.set(new TextEncoder().encode(header), preamble);
  bytes.set(data, preamble + header.length);
  return bytes;
}
