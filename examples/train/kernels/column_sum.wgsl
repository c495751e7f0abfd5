// column_sum: the bias gradient, db[n] = sum_{m < M} G[m, n], where G is the layer's pre-activation gradient.
//
// With MASK, G is first made from the output gradient and the layer's ReLU output Y:
//   G[m, n] = select(0, grad[m, n], y[m, n] > 0)     (dPre = dY * (Y > 0)), written to `masked` too,
// which is how the last layer's mask is applied (the layers below get theirs in dense.wgsl's epilogue 3).
// Without MASK, G = grad and `y`, `masked` are bound but never touched.
//
// Bindings (group 0):
//   binding 0  grad    array<f32>  storage, read        M*N floats
//   binding 1  y       array<f32>  storage, read        M*N floats (MASK only)
//   binding 2  masked  array<f32>  storage, read_write  M*N floats (MASK only; every element is written)
//   binding 3  db      array<f32>  storage, read_write  N floats; every element is written
//   binding 4  dims    Dims        uniform              { M, N }
//
// Dispatch: workgroup_size(WG_COLS, WG_ROWS); dispatchWorkgroups(ceil(N / WG_COLS)). Invocation (x, y) of a
// workgroup sums the rows y, y + WG_ROWS, ... of one column (adjacent invocations read adjacent columns),
// then row 0 of the workgroup adds the WG_ROWS partial sums in a fixed order: deterministic, no atomics.
//
// Overrides: MASK (bool, default false); WG_COLS (default 64), WG_ROWS (default 4).

struct Dims {
  m: u32,
  n: u32,
}

override MASK: bool = false;
override WG_COLS: u32 = 64u;
override WG_ROWS: u32 = 4u;

@group(0) @binding(0) var<storage, read> grad: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> masked: array<f32>;
@group(0) @binding(3) var<storage, read_write> db: array<f32>;
@group(0) @binding(4) var<uniform> dims: Dims;

var<workgroup> partial: array<f32, WG_COLS * WG_ROWS>;

@compute @workgroup_size(WG_COLS, WG_ROWS)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let col = wid.x * WG_COLS + lid.x;
  var sum = 0.0;
  if (col < dims.n) {
    for (var row = lid.y; row < dims.m; row += WG_ROWS) {
      let e = row * dims.n + col;
      var g = grad[e];
      if (MASK) {
        g = select(0.0, g, y[e] > 0.0);
        masked[e] = g;
      }
      sum += g;
    }
  }
  partial[lid.y * WG_COLS + lid.x] = sum;
  workgroupBarrier();
  if (lid.y == 0u && col < dims.n) {
    var total = 0.0;
    for (var s = 0u; s < WG_ROWS; s++) {
      total += partial[s * WG_COLS + lid.x];
    }
    db[col] = total;
  }
}
