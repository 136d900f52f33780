//! Small checks that turn bad sizes, shapes and values into [`Error`]s.

use crate::{Error, Float, Result};

/// `Err(Config)` unless `value > 0`.
pub fn positive_size(op: &str, name: &str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(Error::config(op, format!("{name} must be at least 1, got 0")));
    }
    Ok(())
}

/// `Err(Config)` unless `value` is finite.
pub fn finite_param(op: &str, name: &str, value: f64) -> Result<()> {
    if !value.is_finite() {
        return Err(Error::config(op, format!("{name} must be finite, got {value}")));
    }
    Ok(())
}

/// `Err(Config)` unless `value` is finite and `> 0`.
pub fn positive_param(op: &str, name: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && value > 0.0) {
        return Err(Error::config(op, format!("{name} must be finite and > 0, got {value}")));
    }
    Ok(())
}

/// `Err(Config)` unless `value` is finite and `>= 0`.
pub fn non_negative_param(op: &str, name: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && value >= 0.0) {
        return Err(Error::config(op, format!("{name} must be finite and >= 0, got {value}")));
    }
    Ok(())
}

/// `Err(Shape)` unless `got == expected`.
pub fn shape(op: &str, what: &str, expected: &[usize], got: &[usize]) -> Result<()> {
    if expected != got {
        return Err(Error::shape(op, format!("{what} {expected:?}"), format!("{got:?}")));
    }
    Ok(())
}

/// `Err(NonFinite)` naming the first non-finite entry of `values`.
pub fn finite_values<F: Float>(op: &str, what: &str, values: impl IntoIterator<Item = F>) -> Result<()> {
    for (i, v) in values.into_iter().enumerate() {
        if !v.is_finite() {
            return Err(Error::non_finite(op, format!("{what} (flat index {i}: {v})")));
        }
    }
    Ok(())
}

/// [`finite_values`] for an array: a branch-free pass over contiguous memory (which the
/// compiler vectorises), then, only if it finds a NaN or infinity, the element walk that
/// names the first one.
///
/// # Errors
/// [`Error::NonFinite`] naming `op`, `what` and the flat index (in logical order) of the first
/// NaN or infinite value.
pub fn finite_array<F: Float, D: ndarray::Dimension>(
    op: &str,
    what: &str,
    a: &ndarray::ArrayView<'_, F, D>,
) -> Result<()> {
    if let Some(s) = a.as_slice_memory_order()
        && s.chunks(256).all(|c| c.iter().fold(true, |ok, v| ok & v.is_finite()))
    {
        return Ok(());
    }
    finite_values(op, what, a.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finite_array_agrees_with_the_element_walk() {
        let mut a = ndarray::Array2::<f32>::zeros((40, 30));
        assert!(finite_array("op", "a", &a.view()).is_ok());
        assert!(finite_array("op", "a", &a.t()).is_ok());
        a[[17, 3]] = f32::NAN;
        a[[21, 0]] = f32::INFINITY;
        // the first bad value in logical order, from the contiguous and the transposed view
        let msg = finite_array("op", "a", &a.view()).map_err(|e| e.to_string()).err().unwrap_or_default();
        assert!(msg.contains("flat index 513"), "{msg}");
        let msg = finite_array("op", "a", &a.t()).map_err(|e| e.to_string()).err().unwrap_or_default();
        assert!(msg.contains("flat index 21"), "{msg}");
        let strided = a.slice(ndarray::s![..;2, ..]);
        assert!(finite_array("op", "a", &strided).is_ok());
        assert!(finite_array("op", "a", &a.slice(ndarray::s![1..;2, ..])).is_err());
    }

    #[test]
    fn checks_reject_bad_values() {
        assert!(positive_size("op", "n", 0).is_err());
        assert!(positive_size("op", "n", 1).is_ok());
        assert!(positive_param("op", "lr", 0.0).is_err());
        assert!(positive_param("op", "lr", f64::NAN).is_err());
        assert!(non_negative_param("op", "wd", -1.0).is_err());
        assert!(non_negative_param("op", "wd", 0.0).is_ok());
        assert!(finite_param("op", "g", f64::INFINITY).is_err());
        let e = shape("linear", "input", &[2, 3], &[2, 4]).unwrap_err();
        assert_eq!(e.to_string(), "linear: shape mismatch: expected input [2, 3], got [2, 4]");
        let e = finite_values("op", "x", [1.0f32, f32::NAN]).unwrap_err();
        assert!(e.to_string().contains("flat index 1"), "{e}");
    }
}
