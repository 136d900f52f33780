//! Checked access to what a step is handed — contiguous slices of its views, their shapes, the
//! cache and scratch lengths — and a general GEMM: shared by the plain and the normalised cells.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
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
