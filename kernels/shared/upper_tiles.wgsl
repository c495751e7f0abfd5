// The shuffle Gram kernels' enumeration of the tiles on or above the diagonal (src/variants/lavapipe/shuffle.ts upperTileCount).
// A definition several kernels carry (kernels/shared/README.md).

// Workgroups enumerate only the tiles on or above the diagonal, column block by column block, so that
// every workgroup does the same work: an adapter that splits the dispatch into equal contiguous ranges
// per thread (lavapipe) then keeps all its threads busy. A tile is SHARED rows by TILE_COLUMNS =
// 2 * SHARED columns, so column block x has row tiles 0 .. 2x + 1 on or above the diagonal and the
// blocks before x hold x (x + 1) tiles; only the last block can be cut short by the matrix's edge.
fn upperTileCount(side: u32) -> u32 {
  let columnTiles = (side + TILE_COLUMNS - 1u) / TILE_COLUMNS;
  let rowTiles = (side + SHARED - 1u) / SHARED;
  return (columnTiles - 1u) * columnTiles + min(2u * columnTiles, rowTiles);
}

// (column block, row tile) of tile t in that order.
fn upperTile(t: u32, side: u32) -> vec2<u32> {
  let columnTiles = (side + TILE_COLUMNS - 1u) / TILE_COLUMNS;
  var x = u32((sqrt(4.0 * f32(t) + 1.0) - 1.0) * 0.5);
  // Correct f32 rounding to the exact block: x (x + 1) <= t < (x + 1) (x + 2).
  if ((x + 1u) * (x + 2u) <= t) { x += 1u; }
  if (x * (x + 1u) > t) { x -= 1u; }
  x = min(x, columnTiles - 1u);
  return vec2<u32>(x, t - x * (x + 1u));
}
