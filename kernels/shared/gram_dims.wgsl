// GramDims, the Gram kernels' uniform (src/variants/shared.ts gramDims writes it): the view's n, d, 32 x 32
// tiles per side, where its partial sums start, its statistics, the column block of primal_gram_columns.wgsl,
// and lowerHalf (the view: 0 A, 1 B).
// A definition several kernels carry (kernels/shared/README.md).

struct GramDims { n: u32, d: u32, tiles: u32, partialOffset: u32, shiftOffset: u32, centerOffset: u32, blockStart: u32, blockWidth: u32, lowerHalf: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
