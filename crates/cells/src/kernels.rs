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

/// Adds the column sums of `g` to `acc` (bias gradients).
pub(crate) fn add_col_sums<F: Float>(acc: &mut ndarray::Array1<F>, g: &ArrayView2<'_, F>) {
    for row in g.rows() {
        *acc += &row;
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
