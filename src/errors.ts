// Typed errors. Every error the engine raises is a VICRegError with a stable `code`, and a one-line
// message that names the problem (the shape, the size, the limit, the view/row/column).

export type VICRegErrorCode =
  | 'shape'        // bad [n, d], n < 2, mismatched or non-2-D arrays, wrong lengths
  | 'non-finite'   // NaN or Inf in an input
  | 'overflow'     // a sum overflowed float32 on the device
  | 'limit'        // the problem does not fit the device's limits
  | 'option'       // a bad coefficient or preset
  | 'state'        // a call out of order (backward before forward, use after destroy)
  | 'buffer'       // a GPUBuffer that is too small or lacks a usage
  | 'npy'          // a file that is not a readable .npy
  | 'device'       // no adapter, device lost, validation or out-of-memory errors from WebGPU
  | 'argument';    // a bad CLI argument

export class VICRegError extends Error {
  readonly code: VICRegErrorCode;
  constructor(code: VICRegErrorCode, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

export class ShapeError extends VICRegError {
  constructor(message: string) { super('shape', message); }
}

export class NonFiniteError extends VICRegError {
  /** 'A' or 'B', the row and column (0-based) of the first non-finite element found. */
  constructor(readonly view: 'A' | 'B', readonly row: number, readonly column: number, readonly value: number) {
    super('non-finite', `${view}[${row}, ${column}] is ${value} (view ${view}, row ${row}, column ${column}): inputs must be finite`);
  }
}

export class OverflowError extends VICRegError {
  constructor(message: string) { super('overflow', message); }
}

export class LimitError extends VICRegError {
  constructor(message: string) { super('limit', message); }
}

export class OptionError extends VICRegError {
  constructor(message: string) { super('option', message); }
}

export class StateError extends VICRegError {
  constructor(message: string) { super('state', message); }
}

export class BufferError extends VICRegError {
  constructor(message: string) { super('buffer', message); }
}

export class NpyError extends VICRegError {
  constructor(message: string) { super('npy', message); }
}

export class DeviceError extends VICRegError {
  constructor(message: string) { super('device', message); }
}

export class ArgumentError extends VICRegError {
  constructor(message: string) { super('argument', message); }
}

/** Bytes in words: MiB from 1 MiB up, else bytes. */
export const MiB = (bytes: number) => (bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : `${bytes} bytes`);
