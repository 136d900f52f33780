//! Small building blocks of the step loops: contiguous-slice access, GEMM, bias rows and the
//! elementwise gate loops (each its own function over plain slices so LLVM vectorises it).

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};
use rnnlab_core::{Error, Float, Result};

/// The elements of a standard-layout view, or `Err(Shape)` naming `op`.
pub(crate) fn slice<'a, F>(op: &str, a: ArrayView2<'a, F>) -> Result<&'a [F]> {
    let shape = a.shape().to_vec();
    a.to_slice().ok_or_else(|| {
        Error::shape(op, "a standard-layout (row-major, contiguous) view", format!("strides for {shape:?}"))
    })
}

/// Mutable twin of [`slice`].
pub(crate) fn slice_mut<'a, F>(op: &str, a: ArrayViewMut2<'a, F>) -> Result<&'a mut [F]> {
    let shape = a.shape().to_vec();
    a.into_slice().ok_or_else(|| {
        Error::shape(op, "a standard-layout (row-major, contiguous) view", format!("strides for {shape:?}"))
    })
}

/// `Err(Shape)` unless `shape` is `[rows, cols]`.
pub(crate) fn check_view(op: &str, what: &str, rows: usize, cols: usize, shape: &[usize]) -> Result<()> {
    rnnlab_core::validate::shape(op, what, &[rows, cols], shape)
}

/// `Err(Shape)` unless `got ≥ need`.
pub(crate) fn check_at_least(op: &str, what: &str, need: usize, got: usize) -> Result<()> {
    if got < need {
        return Err(Error::shape(op, format!("{what} of at least {need} values"), format!("{got}")));
    }
    Ok(())
}

/// Checks what a step of `cell` is handed — each view `(name, shape, columns)` must be
/// `[batch, columns]` with `batch` the first view's rows, and the cache and scratch slices
/// long enough — so that a direct caller of the `Cell` methods gets an `Err`, never a panic.
/// Returns the batch size.
pub(crate) fn check_step<F: Float, C: rnnlab_core::Cell<F> + ?Sized>(
    cell: &C,
    op: &str,
    views: &[(&str, &[usize], usize)],
    cache: usize,
    scratch: usize,
) -> Result<usize> {
    let batch = views.first().map_or(0, |(_, shape, _)| shape.first().copied().unwrap_or(0));
    for (what, shape, cols) in views {
        check_view(op, what, batch, *cols, shape)?;
    }
    check_at_least(op, "cache", cell.cache_len(batch), cache)?;
    check_at_least(op, "scratch", cell.scratch_len(batch), scratch)?;
    Ok(batch)
}

/// `c ← α·a·b + β·c` (matrixmultiply through ndarray). Shapes are the caller's invariant.
#[inline]
pub(crate) fn gemm<F: Float>(
    alpha: F,
    a: &ArrayView2<'_, F>,
    b: &ArrayView2<'_, F>,
    beta: F,
    c: &mut ArrayViewMut2<'_, F>,
) {
    general_mat_mul(alpha, a, b, beta, c);
}

/// Adds `bias` to every row of `out`.
pub(crate) fn add_bias_rows<F: Float>(out: &mut ArrayViewMut2<'_, F>, bias: ArrayView1<'_, F>) {
    for mut row in out.rows_mut() {
        row += &bias;
    }
}

/// Adds the column sums of `g` to each of `accs` (bias gradients; LSTM and RNN add the same
/// sums to `b_ih` and `b_hh`) in one pass over `g`, row by row in order: the same bits as
/// `acc += row` for every row. Shapes are the caller's invariant.
pub(crate) fn add_col_sums<F: Float, const N: usize>(mut accs: [&mut ndarray::Array1<F>; N], g: &ArrayView2<'_, F>) {
    let n = g.ncols();
    if let (Some(flat), true) = (g.as_slice(), n > 0) {
        for row in flat.chunks_exact(n) {
            for acc in accs.iter_mut() {
                match acc.as_slice_mut() {
                    Some(a) if a.len() == n => a.iter_mut().zip(row).for_each(|(a, &r)| *a += r),
                    _ => **acc += &ArrayView1::from(row),
                }
            }
        }
        return;
    }
    for row in g.rows() {
        for acc in accs.iter_mut() {
            match (acc.as_slice_mut(), row.as_slice()) {
                (Some(a), Some(r)) => a.iter_mut().zip(r).for_each(|(a, &r)| *a += r),
                _ => **acc += &row,
            }
        }
    }
}

/// `x ← σ(x)`.
#[inline]
pub(crate) fn sigmoid_inplace<F: Float>(x: &mut [F]) {
    for v in x {
        *v = F::sigmoid_fast(*v);
    }
}

/// `x ← tanh(x)`.
#[inline]
pub(crate) fn tanh_inplace<F: Float>(x: &mut [F]) {
    for v in x {
        *v = F::tanh_fast(*v);
    }
}

/// Whether the packed micro-kernel is used for the per-step recurrent products: only when the
/// build has FMA (e.g. `-C target-cpu=x86-64-v3`, set in `.cargo/config.toml`); without it the
/// safe-Rust kernel is slower than matrixmultiply's run-time-dispatched one.
pub(crate) const USE_PACKED: bool = cfg!(target_feature = "fma");

/// A weight matrix W `[N, K]` packed for both products a cell takes with it: `a · Wᵀ`
/// (forward, Jacobian–vector) and `d · W` (backward). The cells pack `W_hh` at the first step
/// of every forward pass and `W_ih` in [`Cell::project_input`](rnnlab_core::Cell), so the
/// backward pass of a forward uses that forward's weights. A derived cache, so it is skipped
/// by serde and ignored by equality.
#[derive(Clone, Debug, Default)]
pub(crate) struct PackedWeight<F> {
    fwd: crate::packed::PackedB<F>,
    bwd: crate::packed::PackedB<F>,
}

impl<F> PartialEq for PackedWeight<F> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<F: Float> PackedWeight<F> {
    /// Packs `w` `[N, K]` (a no-op when the packed kernel is not used).
    pub(crate) fn pack(&mut self, w: ArrayView2<'_, F>) {
        if USE_PACKED {
            self.fwd.pack(w.t());
            self.bwd.pack(w);
        }
    }

    /// `c ← a·wᵀ` (`accumulate`: `c += a·wᵀ`); `a` `[M, K]`, `c` `[M, N]`.
    pub(crate) fn mul_t(
        &self,
        w: ArrayView2<'_, F>,
        a: ArrayView2<'_, F>,
        accumulate: bool,
        c: &mut ArrayViewMut2<'_, F>,
    ) {
        let fits = self.fwd.k() == w.ncols() && self.fwd.n() == w.nrows();
        if USE_PACKED && fits && unit_columns(&a) && c.strides()[1] == 1 {
            crate::packed::gemm_packed(a, &self.fwd, accumulate, c.view_mut());
        } else {
            gemm(F::one(), &a, &w.t(), if accumulate { F::one() } else { F::zero() }, c);
        }
    }

    /// `c ← d + a·wᵀ` in one pass over `c`; `a` `[M, K]`, `d` and `c` `[M, N]`.
    pub(crate) fn mul_t_from(
        &self,
        w: ArrayView2<'_, F>,
        a: ArrayView2<'_, F>,
        d: ArrayView2<'_, F>,
        c: &mut ArrayViewMut2<'_, F>,
    ) {
        let fits = self.fwd.k() == w.ncols() && self.fwd.n() == w.nrows();
        if USE_PACKED && fits && unit_columns(&a) && c.strides()[1] == 1 {
            crate::packed::gemm_packed_from(a, &self.fwd, d, c.view_mut());
        } else {
            c.assign(&d);
            gemm(F::one(), &a, &w.t(), F::one(), c);
        }
    }

    /// `c ← d·w` (`accumulate`: `c += d·w`); `d` `[M, N]`, `c` `[M, K]`.
    pub(crate) fn mul(
        &self,
        w: ArrayView2<'_, F>,
        d: ArrayView2<'_, F>,
        accumulate: bool,
        c: &mut ArrayViewMut2<'_, F>,
    ) {
        let fits = self.bwd.k() == w.nrows() && self.bwd.n() == w.ncols();
        if USE_PACKED && fits && unit_columns(&d) && c.strides()[1] == 1 {
            crate::packed::gemm_packed(d, &self.bwd, accumulate, c.view_mut());
        } else {
            gemm(F::one(), &d, &w, if accumulate { F::one() } else { F::zero() }, c);
        }
    }
}

/// The buffers of the weight-gradient products `∂W += δᵀ · X` over all time steps: each `X`
/// (or `H_prev`) is packed into a [`PackedB`](crate::packed::PackedB) and `δ`, shared by the
/// products, into strips. Reused across backward passes; derived buffers, skipped by serde and
/// ignored by equality.
#[derive(Clone, Debug, Default)]
pub(crate) struct GradPack<F> {
    packed: [crate::packed::PackedB<F>; 2],
    /// One strips buffer per thread.
    strips: Vec<Vec<F>>,
}

impl<F> PartialEq for GradPack<F> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<F: Float> GradPack<F> {
    /// `c_j += dᵀ · x_j` for each pair `(x_j, c_j)` (at most two): `d` `[n, M]`, `x_j`
    /// `[n, N_j]`, `c_j` `[M, N_j]` (shapes are the caller's invariant). Falls back to a
    /// general GEMM for layouts the packed kernel does not read.
    pub(crate) fn acc_tn(&mut self, d: ArrayView2<'_, F>, pairs: &mut [(ArrayView2<'_, F>, ArrayViewMut2<'_, F>)]) {
        if USE_PACKED && pairs.len() <= self.packed.len() {
            for (buf, (x, _)) in self.packed.iter_mut().zip(pairs.iter()) {
                buf.pack(*x);
            }
            let mut targets: Vec<_> =
                self.packed.iter().zip(pairs.iter_mut()).map(|(b, (_, c))| (b, c.view_mut())).collect();
            if crate::packed::gemm_packed_tn(d, &mut targets, &mut self.strips) {
                return;
            }
        }
        for (x, c) in pairs.iter_mut() {
            gemm(F::one(), &d.t(), x, F::one(), c);
        }
    }
}

fn unit_columns<F>(a: &ArrayView2<'_, F>) -> bool {
    a.ncols() <= 1 || a.strides()[1] == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2};

    #[test]
    fn col_sums_add_every_row_to_every_accumulator_in_any_layout() {
        let g = Array2::from_shape_fn((5, 3), |(i, j)| (i * 3 + j) as f64 + 0.25);
        let want = Array1::from(vec![30.0 + 1.25, 35.0 + 1.25, 40.0 + 1.25]);
        // Row-major, and a transposed copy read through `.t()` (strided rows).
        let gt = g.t().to_owned();
        for view in [g.view(), gt.t()] {
            let (mut a, mut b) = (Array1::from(vec![1.0, 1.0, 1.0]), Array1::zeros(3));
            add_col_sums([&mut a, &mut b], &view);
            assert_eq!(a, &want + 1.0);
            assert_eq!(b, want);
        }
    }
}
