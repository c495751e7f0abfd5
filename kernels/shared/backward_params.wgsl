// BackwardParams, the gradient kernels' uniform (src/variants/shared.ts backwardParams writes it).
// A definition several kernels carry (kernels/shared/README.md).

struct BackwardParams {
  n: u32, d: u32, shiftOffset: u32, centerOffset: u32,
  varOffset: u32, columnStart: u32, matrixStride: u32, packing: u32,
  invCoef: f32, varWeight: f32, covCoef: f32, gamma: f32,
  eps: f32, panels: u32, _pad4: f32, _pad5: f32,
}
