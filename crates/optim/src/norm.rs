//! Overflow- and underflow-safe L2 norms in f64, and the first non-finite entry of an array.

use ndarray::{ArrayViewD, Dimension};
use rnnlab_core::Float;

/// ‖x‖₂ in f64; exact sum of squares when that is safe, rescaled by max|xᵢ| when it would
/// overflow or underflow. NaN if any entry is NaN, +∞ if any is infinite.
pub(crate) fn l2<I>(values: I) -> f64
where
    I: Iterator<Item = f64> + Clone,
{
    let sum: f64 = values.clone().map(|x| x * x).sum();
    if sum.is_finite() && sum >= f64::MIN_POSITIVE * 2f64.powi(52) {
        return sum.sqrt();
    }
    if sum.is_nan() {
        return f64::NAN;
    }
    let scale = values.clone().fold(0.0f64, |m, x| if x.abs().is_nan() { f64::NAN } else { m.max(x.abs()) });
    if scale.is_nan() || scale.is_infinite() {
        return scale;
    }
    if scale == 0.0 {
        return 0.0;
    }
    scale * values.map(|x| (x / scale) * (x / scale)).sum::<f64>().sqrt()
}

/// ‖a‖₂ of an array of any float type, in f64.
pub(crate) fn l2_array<F: Float>(a: &ArrayViewD<'_, F>) -> f64 {
    l2(a.iter().map(|x| x.as_f64()))
}

/// The first non-finite entry in logical (row-major) order: (flat index, multi-index, value).
pub(crate) fn first_non_finite<F: Float>(a: &ArrayViewD<'_, F>) -> Option<(usize, Vec<usize>, f64)> {
    a.indexed_iter()
        .enumerate()
        .find(|(_, (_, v))| !v.is_finite())
        .map(|(flat, (idx, v))| (flat, idx.slice().to_vec(), v.as_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l2_is_exact_and_robust() {
        let v = [3.0, 4.0];
        assert!((l2(v.iter().copied()) - 5.0).abs() < 1e-15);
        let big = [3e200, 4e200];
        assert!((l2(big.iter().copied()) / 5e200 - 1.0).abs() < 1e-14);
        let tiny = [3e-200, 4e-200];
        assert!((l2(tiny.iter().copied()) / 5e-200 - 1.0).abs() < 1e-14);
        assert_eq!(l2([0.0, 0.0].iter().copied()), 0.0);
        assert!(l2([1.0, f64::NAN].iter().copied()).is_nan());
        assert_eq!(l2([1.0, f64::NEG_INFINITY].iter().copied()), f64::INFINITY);
        assert!(l2([f64::INFINITY, f64::NAN].iter().copied()).is_nan());
        assert_eq!(l2(std::iter::empty()), 0.0);
    }
}
