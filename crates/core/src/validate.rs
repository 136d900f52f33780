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

/// `value` converted to the model's float `F`, if it is finite there.
///
/// Configs hold `f64`; a model runs in `F`. A value finite in `f64` can overflow to ±∞ in
/// `f32` (a learning rate or γ of 1e39), so the check is made after the conversion.
///
/// # Errors
/// [`Error::Config`] naming `op` and `name` if the value is not finite in `F`.
pub fn finite_in<F: Float>(op: &str, name: &str, value: f64) -> Result<F> {
    let v = F::of(value);
    if !v.is_finite() {
        let why = if value.is_finite() { format!(" (it overflows {})", F::NAME) } else { String::new() };
        return Err(Error::config(op, format!("{name} must be finite, got {value:e}{why}")));
    }
    Ok(v)
}

/// `value` converted to `F`, if it is finite and `> 0` there: an ε of 1e-50 passes in `f64`
/// but is 0 in `f32`, where it would divide 0 by 0.
///
/// # Errors
/// [`Error::Config`] naming `op` and `name` if the value is not finite and `> 0` in `F`.
pub fn positive_in<F: Float>(op: &str, name: &str, value: f64) -> Result<F> {
    positive_param(op, name, value)?;
    let v = finite_in::<F>(op, name, value)?;
    if v <= F::zero() {
        return Err(Error::config(op, format!("{name} must be > 0, got {value:e}, which is 0 in {}", F::NAME)));
    }
    Ok(v)
}

/// `value` converted to `F`, if it is finite and `>= 0` there.
///
/// # Errors
/// [`Error::Config`] naming `op` and `name` if the value is negative or not finite in `F`.
pub fn non_negative_in<F: Float>(op: &str, name: &str, value: f64) -> Result<F> {
    non_negative_param(op, name, value)?;
    finite_in::<F>(op, name, value)
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

    #[test]
    fn float_checks_are_made_in_the_model_type() {
        assert_eq!(positive_in::<f64>("op", "eps", 1e-50).unwrap(), 1e-50);
        let e = positive_in::<f32>("Adam", "eps", 1e-50).unwrap_err().to_string();
        assert!(e.contains("eps must be > 0, got 1e-50, which is 0 in f32"), "{e}");
        let e = finite_in::<f32>("Sgd", "lr", 1e39).unwrap_err().to_string();
        assert!(e.contains("lr must be finite, got 1e39 (it overflows f32)"), "{e}");
        assert_eq!(finite_in::<f64>("Sgd", "lr", 1e39).unwrap(), 1e39);
        assert!(non_negative_in::<f32>("op", "wd", -1.0).is_err());
        assert!(non_negative_in::<f32>("op", "wd", 1e300).is_err());
        assert_eq!(non_negative_in::<f32>("op", "wd", 0.0).unwrap(), 0.0);
    }
}
