// vicreg-wgsl: the VICReg loss (Bardes, Ponce, LeCun, ICLR 2022) in hand-written WGSL kernels.
export { createVICRegLoss } from './engine/engine.js';
export { DEFAULTS, varianceScale } from './coefficients.js';
export { bufferCounts } from './runtime/gpu.js';
export { quietly, setQuietPolling } from './runtime/polling.js';
export * from './errors.js';
export type * from './types.js';
