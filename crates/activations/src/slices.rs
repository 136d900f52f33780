//! The hot slice loops: forward in place and the backward products from the input.
//!
//! Each function matches on the kind once, then runs one tight loop over plain slices per kind
//! (selects rather than branches), so LLVM can vectorise the loops whose body has no library
//! call (in f32: sigmoid and tanh through the rational [`Float::tanh_fast`], and the
//! piecewise-linear kinds).

use rnnlab_core::Float;

use crate::ActivationKind;
use crate::kind::{SELU_ALPHA, SELU_LAMBDA};
use crate::kind::{elu, elu_df, gelu, gelu_df, hard_tanh, leaky, relu};

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
        let one = F::one();
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
            Self::Softsign => x.iter_mut().for_each(|v| *v /= one + v.abs()),
            Self::HardTanh => x.iter_mut().for_each(|v| *v = hard_tanh(*v)),
            Self::Selu => {
                let (lambda, alpha) = (F::of(SELU_LAMBDA), F::of(SELU_ALPHA));
                x.iter_mut().for_each(|v| *v = lambda * elu(*v, alpha));
            }
            Self::Gelu => x.iter_mut().for_each(|v| *v = gelu(*v)),
        }
    }

    /// grad ⊙= f′(x), from the INPUT x; valid for every kind (the only backward for GELU).
    ///
    /// This is an internal hot loop: a length mismatch between `x` and `grad` is a
    /// `debug_assert_eq!` in debug builds; in release builds only the first
    /// `min(x.len(), grad.len())` entries are updated (the loop zips), never a panic.
    ///
    /// # Examples
    /// ```
    /// use rnnlab_activations::ActivationKind;
    /// let x = [0.0f64, 100.0];
    /// let mut g = [2.0f64, 2.0];
    /// ActivationKind::Gelu.backward_from_input(&x, &mut g);
    /// assert!((g[0] - 1.0).abs() < 1e-15 && (g[1] - 2.0).abs() < 1e-15);
    /// ```
    pub fn backward_from_input<F: Float>(&self, x: &[F], grad: &mut [F]) {
        debug_assert_eq!(x.len(), grad.len(), "backward_from_input: x and grad lengths differ");
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
            k.backward_from_input(&xs, &mut g);
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
            k.backward_from_input(&[], &mut e);
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
