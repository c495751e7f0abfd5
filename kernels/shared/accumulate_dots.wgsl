// The shuffle kernels' accumulation of 4-wide dot products into rows shared by the lanes.
// A definition several kernels carry (kernels/shared/README.md).

// Rows p*LANES .. p*LANES + LANES - 1 of the tile += the 4 columns of Zc in mine (lane s's) . own.
fn accumulateDots(acc: ptr<function, array<array<f32, OWN>, SHARED>>, p: u32, mine: vec4<f32>,
                   own: ptr<function, array<vec4<f32>, OWN>>) {
  for (var s = 0u; s < LANES; s++) {
    let row = subgroupShuffle(mine, s);
    for (var c = 0u; c < OWN; c++) { (*acc)[p * LANES + s][c] += dot(row, (*own)[c]); }
  }
}
