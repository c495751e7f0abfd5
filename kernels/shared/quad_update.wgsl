// The subgroup register-block kernels' contraction step with a quad's sharing.
// A definition several kernels carry (kernels/shared/README.md).

// One step with a quad's sharing: a, the lane's own 4 rows, b, its own 4 columns; the other 4 rows come
// from the X partner (lane ^ 1), the other 4 columns from the Y partner (lane ^ 2).
fn quadUpdate(acc: Acc, a: vec4<f32>, b: vec4<f32>) -> Acc {
  return update(acc, a, quadSwapX(a), b, quadSwapY(b));
}
