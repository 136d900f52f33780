//! The sealed floating-point trait: `f32` to run fast, `f64` to check gradients.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

use ndarray::{LinalgScalar, ScalarOperand};
use serde::Serialize;
use serde::de::DeserializeOwned;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A floating-point element type of rnnlab: implemented for `f32` and `f64` only.
///
/// Beyond the arithmetic it carries the two transcendental functions that decide the speed
/// of a recurrent step, [`Float::tanh_fast`] and [`Float::sigmoid_fast`]. For `f64` they are
/// the exact library functions (so gradient checks see exact derivatives); for `f32` they are
/// a branch-free rational approximation that the compiler vectorises, accurate to a few units
/// in the last place (see the tests).
pub trait Float:
    num_traits::Float
    + num_traits::FromPrimitive
    + LinalgScalar
    + ScalarOperand
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + Debug
    + Display
    + Default
    + Send
    + Sync
    + Serialize
    + DeserializeOwned
    + sealed::Sealed
    + 'static
{
    /// `"f32"` or `"f64"`.
    const NAME: &'static str;

    /// Converts from `f64` (rounding to nearest for `f32`).
    fn of(x: f64) -> Self;

    /// Converts to `f64` (exact).
    fn as_f64(self) -> f64;

    /// tanh(x); exact for `f64`, a vectorisable rational approximation for `f32`.
    /// Saturates to exactly ±1 for large |x| and never returns NaN for finite input.
    fn tanh_fast(x: Self) -> Self;

    /// σ(x) = 1 / (1 + e^{−x}) = ½ + ½·tanh(x/2); exact (and stable) for `f64`.
    fn sigmoid_fast(x: Self) -> Self;
}

impl Float for f64 {
    const NAME: &'static str = "f64";

    #[inline(always)]
    fn of(x: f64) -> Self {
        x
    }

    #[inline(always)]
    fn as_f64(self) -> f64 {
        self
    }

    #[inline(always)]
    fn tanh_fast(x: Self) -> Self {
        x.tanh()
    }

    #[inline(always)]
    fn sigmoid_fast(x: Self) -> Self {
        // Stable at both ends: e^{-|x|} never overflows.
        if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            let e = x.exp();
            e / (1.0 + e)
        }
    }
}

impl Float for f32 {
    const NAME: &'static str = "f32";

    #[inline(always)]
    fn of(x: f64) -> Self {
        x as f32
    }

    #[inline(always)]
    fn as_f64(self) -> f64 {
        f64::from(self)
    }

    #[inline(always)]
    fn tanh_fast(x: Self) -> Self {
        tanh_rational_f32(x)
    }

    #[inline(always)]
    fn sigmoid_fast(x: Self) -> Self {
        0.5 + 0.5 * tanh_rational_f32(0.5 * x)
    }
}

/// tanh as a [13/6] rational function of x on [−c, c], clamped outside it
/// (the minimax coefficients used by Eigen's `ptanh` for float).
#[inline(always)]
#[allow(clippy::excessive_precision)] // the published coefficients, kept as printed
fn tanh_rational_f32(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const A1: f32 = 4.893_524_6e-3;
    const A3: f32 = 6.372_619_3e-4;
    const A5: f32 = 1.485_722_4e-5;
    const A7: f32 = 5.122_297e-8;
    const A9: f32 = -8.604_671_5e-11;
    const A11: f32 = 2.000_187_9e-13;
    const A13: f32 = -2.760_768_5e-16;
    const B0: f32 = 4.893_525_2e-3;
    const B2: f32 = 2.268_434_6e-3;
    const B4: f32 = 1.185_347_1e-4;
    const B6: f32 = 1.198_258_4e-6;
    // `max`/`min` on a NaN input return the other operand; keep NaN visible instead.
    let xc = if x.is_nan() { x } else { x.clamp(-CLAMP, CLAMP) };
    let x2 = xc * xc;
    let mut p = madd(A13, x2, A11);
    p = madd(p, x2, A9);
    p = madd(p, x2, A7);
    p = madd(p, x2, A5);
    p = madd(p, x2, A3);
    p = madd(p, x2, A1);
    p *= xc;
    let mut q = madd(B6, x2, B4);
    q = madd(q, x2, B2);
    q = madd(q, x2, B0);
    let y = p / q;
    // Past |x| = 9, tanh(x) rounds to ±1 in f32: return it exactly (a select, still branch-free).
    if x.abs() > 9.0 { 1.0f32.copysign(x) } else { y }
}

/// `a·b + c`: one fused multiply-add when the build has the `fma` target feature (shorter
/// dependency chains in the polynomial), else a multiply and an add — never a library call.
#[inline(always)]
fn madd(a: f32, b: f32, c: f32) -> f32 {
    if cfg!(target_feature = "fma") { a.mul_add(b, c) } else { a * b + c }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_tanh_is_accurate_everywhere() {
        let mut worst = 0.0f64;
        let mut x = -20.0f64;
        while x <= 20.0 {
            let approx = f64::from(f32::tanh_fast(x as f32));
            let exact = (x as f32 as f64).tanh();
            worst = worst.max((approx - exact).abs());
            x += 1.0 / 1024.0;
        }
        assert!(worst < 5e-7, "worst absolute error {worst}");
        assert_eq!(f32::tanh_fast(1e30), 1.0);
        assert_eq!(f32::tanh_fast(-1e30), -1.0);
        assert_eq!(f32::tanh_fast(0.0), 0.0);
        assert!(f32::tanh_fast(f32::NAN).is_nan());
    }

    #[test]
    fn sigmoid_saturates_without_nan() {
        assert_eq!(f64::sigmoid_fast(-1000.0), 0.0);
        assert_eq!(f64::sigmoid_fast(1000.0), 1.0);
        assert_eq!(f32::sigmoid_fast(-1000.0), 0.0);
        assert_eq!(f32::sigmoid_fast(1000.0), 1.0);
        let mut x = -30.0f64;
        while x <= 30.0 {
            let exact = 1.0 / (1.0 + (-x).exp());
            assert!((f64::sigmoid_fast(x) - exact).abs() < 1e-15);
            assert!((f64::from(f32::sigmoid_fast(x as f32)) - exact).abs() < 3e-7, "x = {x}");
            x += 0.01;
        }
    }
}
