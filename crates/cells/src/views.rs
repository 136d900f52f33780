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

/// Checks the forward buffers of one step handed to a backward step or a state-Jacobian
/// product, whether or not the cell reads them: `xp` `[batch, proj_dim]`, `prev` and `next`
/// `[batch, state_width]`, and a cache of at least `cache_len(batch)` values.
pub(crate) fn check_step_refs<F: Float, C: rnnlab_core::Cell<F> + ?Sized>(
    cell: &C,
    op: &str,
    step: &rnnlab_core::StepRefs<'_, F>,
    batch: usize,
) -> Result<()> {
    let sw = cell.state_width();
    check_view(op, "step xp [batch, proj_dim]", batch, cell.proj_dim(), step.xp.shape())?;
    check_view(op, "step prev [batch, state_width]", batch, sw, step.prev.shape())?;
    check_view(op, "step next [batch, state_width]", batch, sw, step.next.shape())?;
    check_at_least(op, "step cache", cell.cache_len(batch), step.cache.len())
}

/// Checks [`Cell::project_input`](rnnlab_core::Cell::project_input)'s views: `x`
/// `[n, input_dim]` and `out` `[n, proj_dim]`.
pub(crate) fn check_project<F: Float, C: rnnlab_core::Cell<F> + ?Sized>(
    cell: &C,
    op: &str,
    x: &[usize],
    out: &[usize],
) -> Result<()> {
    let n = x.first().copied().unwrap_or(0);
    check_view(op, "input x [n, input_dim]", n, cell.input_dim(), x)?;
    check_view(op, "projection out [n, proj_dim]", n, cell.proj_dim(), out)
}

/// Checks [`Cell::input_grad`](rnnlab_core::Cell::input_grad)'s views: `dxp` `[n, proj_dim]`
/// and `dx` `[n, input_dim]`.
pub(crate) fn check_input_grad<F: Float, C: rnnlab_core::Cell<F> + ?Sized>(
    cell: &C,
    op: &str,
    dxp: &[usize],
    dx: &[usize],
) -> Result<()> {
    let n = dxp.first().copied().unwrap_or(0);
    check_view(op, "dxp [n, proj_dim]", n, cell.proj_dim(), dxp)?;
    check_view(op, "dx [n, input_dim]", n, cell.input_dim(), dx)
}

/// Checks the whole-sequence buffers handed to
/// [`Cell::accumulate_grads`](rnnlab_core::Cell::accumulate_grads): `batch ≥ 1` dividing the
/// `n` rows of `x`, `x` `[n, input_dim]`, `prev` and `next` `[n, state_width]`, `cache`
/// `[n / batch, cache_len(batch)]`, `dxp` `[n, proj_dim]`, `drec` `[n, rec_grad_dim]`.
/// Returns `(n, batch)`.
pub(crate) fn check_seq<F: Float, C: rnnlab_core::Cell<F> + ?Sized>(
    cell: &C,
    op: &str,
    seq: &rnnlab_core::SeqRefs<'_, F>,
) -> Result<(usize, usize)> {
    let (n, b) = (seq.x.nrows(), seq.batch);
    if b == 0 || n % b != 0 {
        return Err(Error::shape(op, format!("a batch >= 1 that divides the {n} rows"), format!("batch {b}")));
    }
    let sw = cell.state_width();
    check_view(op, "inputs x [time·batch, input_dim]", n, cell.input_dim(), seq.x.shape())?;
    check_view(op, "states before [time·batch, state_width]", n, sw, seq.prev.shape())?;
    check_view(op, "states after [time·batch, state_width]", n, sw, seq.next.shape())?;
    check_view(op, "caches [time, cache_len(batch)]", n / b, cell.cache_len(b), seq.cache.shape())?;
    check_view(op, "dxp [time·batch, proj_dim]", n, cell.proj_dim(), seq.dxp.shape())?;
    check_view(op, "drec [time·batch, rec_grad_dim]", n, cell.rec_grad_dim(), seq.drec.shape())?;
    Ok((n, b))
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
