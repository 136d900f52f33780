//! The hot slice loops: forward in place and the backward products from the input.
//!
//! Each function matches on the kind once, then runs one tight loop over plain slices per kind
//! (selects rather than branches), so LLVM can vectorise the loops whose body has no library
//! call (in f32: sigmoid and tanh through the rational [`Float::tanh_fast`], and the
//! piecewise-linear kinds).

use rnnlab_core::{Error, Float, Result};

use crate::ActivationKind;
use crate::kind::{SELU_ALPHA, SELU_LAMBDA};
use crate::kind::{elu, elu_df, gelu, gelu_df, hard_tanh, leaky, relu, selu, softsign};

impl ActivationKind {
    /// In place y = f(x) for every element of `x` (see the table on [`ActivationKind`]).
    ///
    /// No allocation; hyper-parameters are not re-validated here (construct kinds through
    /// [`ActivationKind::validate`] or parsing).
    ///
    /// # Examples
    /// ```
    /// use rnnlab_activations::ActivationKind;
    /// let mut v = [-1.0f32, 0.0, 2.0];
    /// ActivationKind::Relu.forward_slice(&mut v);
    /// assert_eq!(v, [0.0, 0.0, 2.0]);
    /// ```
    pub fn forward_slice<F: Float>(&self, x: &mut [F]) {
        match *self {
            Self::Sigmoid => x.iter_mut().for_each(|v| *v = F::sigmoid_fast(*v)),
            Self::Tanh => x.iter_mut().for_each(|v| *v = F::tanh_fast(*v)),
            Self::Relu => x.iter_mut().for_each(|v| *v = relu(*v)),
            Self::LeakyRelu { slope } => {
                let slope = F::of(slope);
                x.iter_mut().for_each(|v| *v = leaky(*v, slope));
            }
            Self::Elu { alpha } => {
                let alpha = F::of(alpha);
                x.iter_mut().for_each(|v| *v = elu(*v, alpha));
            }
            Self::Identity => {}
            Self::Softsign => x.iter_mut().for_each(|v| *v = softsign(*v)),
            Self::HardTanh => x.iter_mut().for_each(|v| *v = hard_tanh(*v)),
            Self::Selu => x.iter_mut().for_each(|v| *v = selu(*v)),
            Self::Gelu => x.iter_mut().for_each(|v| *v = gelu(*v)),
        }
    }

    /// grad ⊙= f′(x), from the INPUT x; valid for every kind (the only backward for GELU).
    ///
    /// A hot loop: one length comparison, then one select-only loop per kind.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Shape`] if `x` and `grad` differ in length (in release builds as
    /// in debug builds); `grad` is then left unchanged.
    ///
    /// # Examples
    /// ```
    /// use rnnlab_activations::ActivationKind;
    /// let x = [0.0f64, 100.0];
    /// let mut g = [2.0f64, 2.0];
    /// ActivationKind::Gelu.backward_from_input(&x, &mut g)?;
    /// assert!((g[0] - 1.0).abs() < 1e-15 && (g[1] - 2.0).abs() < 1e-15);
    /// assert!(ActivationKind::Tanh.backward_from_input(&x[..1], &mut g).is_err());
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn backward_from_input<F: Float>(&self, x: &[F], grad: &mut [F]) -> Result<()> {
        check_lengths("ActivationKind::backward_from_input", &[("x", x.len())], grad.len())?;
        let zero = F::zero();
        let one = F::one();
        let pairs = grad.iter_mut().zip(x);
        match *self {
            Self::Sigmoid => pairs.for_each(|(g, &x)| {
                let y = F::sigmoid_fast(x);
                *g *= y * (one - y);
            }),
            Self::Tanh => pairs.for_each(|(g, &x)| {
                let y = F::tanh_fast(x);
                *g *= one - y * y;
            }),
            Self::Relu => pairs.for_each(|(g, &x)| *g *= if x > zero { one } else { zero }),
            Self::LeakyRelu { slope } => {
                let slope = F::of(slope);
                pairs.for_each(|(g, &x)| *g *= if x > zero { one } else { slope });
            }
            Self::Elu { alpha } => {
                let alpha = F::of(alpha);
                pairs.for_each(|(g, &x)| *g *= elu_df(x, alpha));
            }
            Self::Identity => {}
            Self::Softsign => pairs.for_each(|(g, &x)| {
                let d = one + x.abs();
                *g *= one / (d * d);
            }),
            Self::HardTanh => pairs.for_each(|(g, &x)| *g *= if x.abs() < one { one } else { zero }),
            Self::Selu => {
                let (lambda, alpha) = (F::of(SELU_LAMBDA), F::of(SELU_ALPHA));
                pairs.for_each(|(g, &x)| *g *= lambda * elu_df(x, alpha));
            }
            Self::Gelu => pairs.for_each(|(g, &x)| *g *= gelu_df(x)),
        }
        Ok(())
    }
}

/// `Err(Shape)` naming `op` unless each of `others` (name, length) has `len` values: the one
/// check of the backward slice loops, the same in release and debug builds.
#[inline]
pub(crate) fn check_lengths(op: &str, others: &[(&str, usize)], len: usize) -> Result<()> {
    match others.iter().find(|(_, n)| *n != len) {
        None => Ok(()),
        Some((what, n)) => {
            Err(Error::shape(op, format!("{what} of {len} values (the gradient's length)"), format!("{n}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ActivationKind;

    #[test]
    fn slices_agree_with_the_scalar_functions() {
        let xs: Vec<f64> = (0..400).map(|i| -20.0 + 0.1 * i as f64 + 0.013).collect();
        for k in ActivationKind::ALL {
            let mut y = xs.clone();
            k.forward_slice(&mut y);
            let mut g: Vec<f64> = xs.iter().map(|x| 0.5 + x.sin()).collect();
            let g0 = g.clone();
            k.backward_from_input(&xs, &mut g).unwrap();
            for i in 0..xs.len() {
                assert!((y[i] - k.f(xs[i])).abs() <= 1e-15 * (1.0 + y[i].abs()), "{k} f at {}", xs[i]);
                let want = g0[i] * k.df(xs[i]);
                assert!((g[i] - want).abs() <= 1e-15 * (1.0 + want.abs()), "{k} df at {}", xs[i]);
            }
        }
    }

    #[test]
    fn empty_slices_are_fine() {
        for k in ActivationKind::ALL {
            let mut e: [f32; 0] = [];
            k.forward_slice(&mut e);
            k.backward_from_input(&[], &mut e).unwrap();
        }
    }

    #[test]
    fn nan_input_stays_nan() {
        for k in ActivationKind::ALL {
            let mut v = [f64::NAN, f64::NAN];
            k.forward_slice(&mut v[..1]);
            assert!(v[0].is_nan(), "{k}");
            let mut v = [f32::NAN];
            k.forward_slice(&mut v);
            assert!(v[0].is_nan(), "{k} f32");
        }
    }
}
