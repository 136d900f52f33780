//! The elementwise loops of the step functions: gate activations in place and the column sums
//! of the bias gradients (each its own function over plain slices, so LLVM vectorises it).

use ndarray::{Array1, ArrayView1, ArrayView2};
use rnnlab_core::{Error, Float, Result};

/// Adds the column sums of `g` to each of `accs` (bias gradients; LSTM and RNN add the same
/// sums to `b_ih` and `b_hh`) in one pass over `g`, row by row in order: the same bits as
/// `acc += row` for every row.
///
/// # Errors
/// `Error::Shape` unless every accumulator has `g`'s width.
///
/// # Examples
/// ```
/// use ndarray::{Array1, array};
///
/// let g = array![[1.0f32, 2.0], [3.0, 4.0]];
/// let (mut b_ih, mut b_hh) = (Array1::zeros(2), Array1::ones(2));
/// rnnlab_kernels::add_col_sums([&mut b_ih, &mut b_hh], &g.view())?;
/// assert_eq!(b_ih, array![4.0, 6.0]);
/// assert_eq!(b_hh, array![5.0, 7.0]);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn add_col_sums<F: Float, const N: usize>(mut accs: [&mut Array1<F>; N], g: &ArrayView2<'_, F>) -> Result<()> {
    let n = g.ncols();
    if let Some(acc) = accs.iter().find(|a| a.len() != n) {
        return Err(Error::shape("add_col_sums", format!("accumulators of length {n}"), format!("{}", acc.len())));
    }
    if let (Some(flat), true) = (g.as_slice(), n > 0) {
        for row in flat.chunks_exact(n) {
            for acc in accs.iter_mut() {
                match acc.as_slice_mut() {
                    Some(a) if a.len() == n => a.iter_mut().zip(row).for_each(|(a, &r)| *a += r),
                    _ => **acc += &ArrayView1::from(row),
                }
            }
        }
        return Ok(());
    }
    for row in g.rows() {
        for acc in accs.iter_mut() {
            match (acc.as_slice_mut(), row.as_slice()) {
                (Some(a), Some(r)) => a.iter_mut().zip(r).for_each(|(a, &r)| *a += r),
                _ => **acc += &row,
            }
        }
    }
    Ok(())
}

/// `x ← σ(x)` = 1 / (1 + e⁻ˣ), elementwise (`Float::sigmoid_fast`).
#[inline]
pub fn sigmoid_inplace<F: Float>(x: &mut [F]) {
    for v in x {
        *v = F::sigmoid_fast(*v);
    }
}

/// `x ← tanh(x)`, elementwise (`Float::tanh_fast`).
#[inline]
pub fn tanh_inplace<F: Float>(x: &mut [F]) {
    for v in x {
        *v = F::tanh_fast(*v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn col_sums_add_every_row_to_every_accumulator_in_any_layout() {
        let g = Array2::from_shape_fn((5, 3), |(i, j)| (i * 3 + j) as f64 + 0.25);
        let want = Array1::from(vec![30.0 + 1.25, 35.0 + 1.25, 40.0 + 1.25]);
        // Row-major, and a transposed copy read through `.t()` (strided rows).
        let gt = g.t().to_owned();
        for view in [g.view(), gt.t()] {
            let (mut a, mut b) = (Array1::from(vec![1.0, 1.0, 1.0]), Array1::zeros(3));
            add_col_sums([&mut a, &mut b], &view).expect("widths fit");
            assert_eq!(a, &want + 1.0);
            assert_eq!(b, want);
        }
    }

    #[test]
    fn col_sums_of_the_wrong_width_are_an_error() {
        let g = Array2::<f32>::zeros((2, 3));
        let mut a = Array1::zeros(2);
        assert!(matches!(add_col_sums([&mut a], &g.view()), Err(Error::Shape { .. })));
    }
}
