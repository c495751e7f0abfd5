// sample_gram_subgroup.wgsl: as sample_gram.wgsl (the n x n Gram matrix K = Zc Zc^T of one view, with the
// sum of squares of its entries reduced in the epilogue, dual form), for adapters where every
// storage-buffer load is expensive per lane and subgroup shuffles are cheap (lavapipe).
//
// Math (Z one view, n x d row-major; Zc = (Z - shift) - center from column_stats):
//   K_ik = sum_j Zc_ij Zc_kj
//   partials[p] = sum over this lane's entries with i <= k of w (K_ik / (n-1))^2, w = 2 if i < k, 1 if
//   i = k (entries with i > k are left to the mirrored tile), so sum over all p = ||K||_F^2 / (n-1)^2.
//   If WRITE_MATRIX: gram = K, written at (i, k) and (k, i).
//
// Each workgroup is one subgroup of LANES = 8 invocations and owns a SHARED x (LANES * OWN) tile of K:
// rows i0 .. i0 + SHARED - 1 are shared by all lanes, and each lane owns OWN rows k (k0 + c*LANES + lane).
// The contraction runs along rows of Z, 4 columns at a time (vec4 loads). Per step a lane loads
// SHARED / LANES shared vec4s and OWN vec4s of its own; the shared ones reach the other lanes by
// subgroupShuffle.
//
// Bindings (group 0):
//   0  z4        storage, read        array<vec4<f32>>  n*d/4: Z as vec4s
//   1  stats     storage, read        array<f32>        column_stats layout; shift, center at shiftOffset, centerOffset
//   2  partials  storage, read_write  array<f32>        LANES per workgroup per view: partialOffset + (wid.y*gx + wid.x)*LANES + lane
//   3  gram      storage, read_write  array<f32>        n*n when WRITE_MATRIX (any small buffer otherwise)
//   4  dims      uniform              GramDims { n, d, tiles (unused), partialOffset, shiftOffset, centerOffset }
// Dispatch: (ceil(n / (LANES*OWN)), ceil(n / SHARED), 1) workgroups of LANES threads; workgroups whose
// tile lies wholly below the diagonal write zero partials and return.
// Requires: d % 4 == 0; the 'subgroups' feature with a subgroup size of exactly LANES.
// Variant: "subgroup" (lavapipe).

enable subgroups;

struct GramDims { n: u32, d: u32, tiles: u32, partialOffset: u32, shiftOffset: u32, centerOffset: u32, _pad0: u32, _pad1: u32 }

override WRITE_MATRIX: bool = true;
const LANES: u32 = 8u;
const SHARED_PER_LANE: u32 = 2u;
const SHARED: u32 = LANES * SHARED_PER_LANE;   // shared rows of K per workgroup
const OWN: u32 = 4u;                           // rows of K (columns of the tile) per lane

@group(0) @binding(0) var<storage, read> z4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;
@group(0) @binding(3) var<storage, read_write> gram: array<f32>;
@group(0) @binding(4) var<uniform> dims: GramDims;

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32) {
  let n = dims.n;
  let d4 = dims.d / 4u;
  let i0 = wid.y * SHARED;
  let k0 = wid.x * LANES * OWN;
  let partialIndex = dims.partialOffset + (wid.y * groups.x + wid.x) * LANES + lane;
  if (i0 >= k0 + LANES * OWN) {
    partials[partialIndex] = 0.0;
    return;
  }

  var sharedBase: array<u32, SHARED_PER_LANE>;
  for (var p = 0u; p < SHARED_PER_LANE; p++) { sharedBase[p] = min(i0 + p * LANES + lane, n - 1u) * d4; }
  var ownBase: array<u32, OWN>;
  for (var c = 0u; c < OWN; c++) { ownBase[c] = min(k0 + c * LANES + lane, n - 1u) * d4; }
  let so = dims.shiftOffset;
  let co = dims.centerOffset;

  var acc: array<array<f32, OWN>, SHARED>;
  for (var j4 = 0u; j4 < d4; j4++) {
    let j = 4u * j4;
    let shift = vec4<f32>(stats[so + j], stats[so + j + 1u], stats[so + j + 2u], stats[so + j + 3u]);
    let center = vec4<f32>(stats[co + j], stats[co + j + 1u], stats[co + j + 2u], stats[co + j + 3u]);
    var own: array<vec4<f32>, OWN>;
    for (var c = 0u; c < OWN; c++) { own[c] = (z4[ownBase[c] + j4] - shift) - center; }
    for (var p = 0u; p < SHARED_PER_LANE; p++) {
      let mine = (z4[sharedBase[p] + j4] - shift) - center;
      for (var s = 0u; s < LANES; s++) {
        let row = subgroupShuffle(mine, s);
        for (var c = 0u; c < OWN; c++) {
          acc[p * LANES + s][c] += dot(row, own[c]);
        }
      }
    }
  }

  let inv = 1.0 / f32(n - 1u);
  var sumSq = 0.0;
  for (var r = 0u; r < SHARED; r++) {
    let i = i0 + r;   // shared row r = p * LANES + s, as shuffled above
    for (var c = 0u; c < OWN; c++) {
      let k = k0 + c * LANES + lane;
      if (i < n && k < n && i <= k) {
        let value = acc[r][c];
        let scaled = value * inv;
        sumSq += select(2.0, 1.0, i == k) * scaled * scaled;
        if (WRITE_MATRIX) {
          gram[i * n + k] = value;
          gram[k * n + i] = value;
        }
      }
    }
  }
  partials[partialIndex] = sumSq;
}
