//! Length and hyper-parameter checks shared by the kernels and the layers.

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2};
use rnnlab_core::{Error, Float, Result, validate};

/// `n ≥ 1` and `len` a multiple of `n`; returns `len / n` (the number of rows).
pub(crate) fn rows(op: &str, n: usize, len: usize) -> Result<usize> {
    validate::positive_size(op, "n", n)?;
    if len % n != 0 {
        return Err(Error::shape(op, format!("an input length that is a multiple of n = {n}"), format!("{len}")));
    }
    Ok(len / n)
}

/// `Err(Shape)` unless `got == expected`.
pub(crate) fn len(op: &str, what: &str, expected: usize, got: usize) -> Result<()> {
    if expected != got {
        return Err(Error::shape(op, format!("{what} of length {expected}"), format!("length {got}")));
    }
    Ok(())
}

/// `Err(Config)` unless `eps` is finite and `> 0`.
pub(crate) fn eps<F: Float>(op: &str, eps: F) -> Result<()> {
    validate::positive_param(op, "eps", eps.as_f64())
}

/// The parameters of an affine normalisation: `gamma` and `beta` of one length `n ≥ 1`, both
/// finite, and ε finite and > 0 in f64 and in `F`.
pub(crate) fn affine_params<F: Float>(op: &str, gamma: &Array1<F>, beta: &Array1<F>, eps_f64: f64) -> Result<()> {
    if gamma.is_empty() {
        return Err(Error::shape(op, "gamma [n ≥ 1]", "[0]"));
    }
    validate::shape(op, "beta", gamma.shape(), beta.shape())?;
    validate::finite_array(op, "gamma", &gamma.view())?;
    validate::finite_array(op, "beta", &beta.view())?;
    validate::positive_param(op, "eps", eps_f64)?;
    eps(op, F::of(eps_f64))
}

/// `Err(Config)` unless `momentum` is finite and in `[0, 1]`.
pub(crate) fn momentum(op: &str, momentum: f64) -> Result<()> {
    if !(momentum.is_finite() && (0.0..=1.0).contains(&momentum)) {
        return Err(Error::config(op, format!("momentum must be finite and in [0, 1], got {momentum}")));
    }
    Ok(())
}

/// The elements of a standard-layout view, or `Err(Shape)`.
pub(crate) fn contiguous<'a, F>(op: &str, what: &str, a: ArrayView2<'a, F>) -> Result<&'a [F]> {
    let shape = a.shape().to_vec();
    a.to_slice().ok_or_else(|| Error::shape(op, format!("a standard-layout {what}"), format!("strides for {shape:?}")))
}

/// Mutable twin of [`contiguous`].
pub(crate) fn contiguous_mut<'a, F>(op: &str, what: &str, a: ArrayViewMut2<'a, F>) -> Result<&'a mut [F]> {
    let shape = a.shape().to_vec();
    a.into_slice()
        .ok_or_else(|| Error::shape(op, format!("a standard-layout {what}"), format!("strides for {shape:?}")))
}

/// `acc_gamma += Σ_rows dy ⊙ x̂`, `acc_beta += Σ_rows dy` (lengths checked by the caller).
pub(crate) fn add_affine_grads<F: Float>(dy: &[F], xhat: &[F], n: usize, dgamma: &mut [F], dbeta: &mut [F]) {
    for (dyr, hr) in dy.chunks_exact(n).zip(xhat.chunks_exact(n)) {
        for j in 0..n {
            dgamma[j] += dyr[j] * hr[j];
            dbeta[j] += dyr[j];
        }
    }
}

/// The contiguous elements of a 1-D array (owned arrays from this crate always are).
pub(crate) fn param_slice<'a, F>(op: &str, a: &'a Array1<F>) -> Result<&'a [F]> {
    a.as_slice().ok_or_else(|| Error::shape(op, "a contiguous parameter or buffer", "strided array"))
}

/// Mutable twin of [`param_slice`].
pub(crate) fn param_slice_mut<'a, F>(op: &str, a: &'a mut Array1<F>) -> Result<&'a mut [F]> {
    a.as_slice_mut().ok_or_else(|| Error::shape(op, "a contiguous parameter or buffer", "strided array"))
}

/// The contiguous elements of a 2-D array.
pub(crate) fn param_slice2<'a, F>(op: &str, a: &'a Array2<F>) -> Result<&'a [F]> {
    a.as_slice().ok_or_else(|| Error::shape(op, "a standard-layout buffer", "strided array"))
}

/// Mutable contiguous elements of a 2-D array.
pub(crate) fn slice_of_mut<'a, F>(op: &str, a: &'a mut Array2<F>) -> Result<&'a mut [F]> {
    a.as_slice_mut().ok_or_else(|| Error::shape(op, "a standard-layout buffer", "strided array"))
}

/// Mutable contiguous elements of a 1-D array.
pub(crate) fn slice_of_mut1<'a, F>(op: &str, a: &'a mut Array1<F>) -> Result<&'a mut [F]> {
    param_slice_mut(op, a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn rows_rejects_zero_n_and_ragged_lengths() {
        assert!(matches!(rows("op", 0, 4), Err(Error::Config { .. })));
        assert!(matches!(rows("op", 3, 4), Err(Error::Shape { .. })));
        assert_eq!(rows("op", 2, 4).ok(), Some(2));
        assert_eq!(rows("op", 2, 0).ok(), Some(0));
    }

    #[test]
    fn momentum_outside_unit_interval_is_rejected() {
        assert!(momentum("op", -0.1).is_err());
        assert!(momentum("op", 1.5).is_err());
        assert!(momentum("op", f64::NAN).is_err());
        assert!(momentum("op", 0.0).is_ok() && momentum("op", 1.0).is_ok());
    }

    #[test]
    fn non_standard_views_are_rejected() {
        let a = Array2::<f64>::zeros((2, 3));
        assert!(matches!(contiguous("op", "x", a.t()), Err(Error::Shape { .. })));
        let mut b = Array2::<f64>::zeros((2, 3));
        assert!(matches!(contiguous_mut("op", "y", b.view_mut().reversed_axes()), Err(Error::Shape { .. })));
    }
}
