//! Derivatives from the OUTPUT y: a validated handle that cannot exist for GELU.

use rnnlab_core::{Error, Float, Result};

use crate::ActivationKind;
use crate::kind::{SELU_ALPHA, SELU_LAMBDA};

/// The derivative f′ of an activation expressed through its output y = f(x).
///
/// Recurrent cells cache outputs, not pre-activations, and need f′ from y. Only kinds with
/// [`ActivationKind::df_uses_output`] have such a form, and leaky ReLU's needs `slope > 0`. So
/// instead of a `backward_from_output` that would have to do something wrong (or nothing) for
/// GELU, this type can only be obtained through [`ActivationKind::output_derivative`], which
/// returns `Err` for GELU and for invalid hyper-parameters: a cell converts its kind once at
/// construction and its hot loop then cannot fail. [`ActivationKind::backward_from_output`] is
/// the one-shot convenience that does the conversion on every call.
///
/// | kind | f′ from y |
/// |---|---|
/// | sigmoid | y(1−y) |
/// | tanh | 1−y² |
/// | relu | \[y>0\] |
/// | leaky_relu | y>0 ? 1 : slope |
/// | elu | y>0 ? 1 : y+α |
/// | identity | 1 |
/// | softsign | (1−\|y\|)² |
/// | hard_tanh | \[\|y\|<1\] |
/// | selu | y>0 ? λ : y+λα |
///
/// # Examples
/// ```
/// use rnnlab_activations::ActivationKind;
/// let d = ActivationKind::Tanh.output_derivative()?;
/// let y = [0.0f32, 0.5];
/// let mut g = [1.0f32, 1.0];
/// d.backward(&y, &mut g)?;
/// assert!((g[1] - 0.75).abs() < 1e-7);
/// assert!(ActivationKind::Gelu.output_derivative().is_err());
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutputDerivative(Inner);

/// The kinds with a derivative from the output (GELU is not representable).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Inner {
    Sigmoid,
    Tanh,
    Relu,
    LeakyRelu(f64),
    Elu(f64),
    Identity,
    Softsign,
    HardTanh,
    Selu,
}

impl ActivationKind {
    /// The derivative-from-output handle of this kind.
    ///
    /// # Errors
    /// [`Error::Config`] for [`ActivationKind::Gelu`] (its derivative needs the input; use
    /// [`ActivationKind::backward_from_input`]) and for hyper-parameters rejected by
    /// [`ActivationKind::validate`].
    ///
    /// # Examples
    /// ```
    /// use rnnlab_activations::ActivationKind;
    /// assert_eq!(ActivationKind::Selu.output_derivative()?.kind(), ActivationKind::Selu);
    /// assert!(ActivationKind::LeakyRelu { slope: -1.0 }.output_derivative().is_err());
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn output_derivative(&self) -> Result<OutputDerivative> {
        self.validate()?;
        let inner = match *self {
            Self::Sigmoid => Inner::Sigmoid,
            Self::Tanh => Inner::Tanh,
            Self::Relu => Inner::Relu,
            Self::LeakyRelu { slope } => Inner::LeakyRelu(slope),
            Self::Elu { alpha } => Inner::Elu(alpha),
            Self::Identity => Inner::Identity,
            Self::Softsign => Inner::Softsign,
            Self::HardTanh => Inner::HardTanh,
            Self::Selu => Inner::Selu,
            Self::Gelu => {
                return Err(Error::config(
                    "ActivationKind::output_derivative",
                    "gelu's derivative needs the input x, not the output; use backward_from_input",
                ));
            }
        };
        Ok(OutputDerivative(inner))
    }

    /// grad ⊙= f′, computed from the OUTPUT y = f(x) (see [`OutputDerivative`] for the formulas).
    ///
    /// Equivalent to `self.output_derivative()?.backward(y, grad)`; hot loops should convert
    /// once with [`ActivationKind::output_derivative`] and call [`OutputDerivative::backward`].
    /// Slice lengths are handled as in [`OutputDerivative::backward`].
    ///
    /// # Errors
    /// As [`ActivationKind::output_derivative`]: [`Error::Config`] for GELU or invalid
    /// hyper-parameters; [`Error::Shape`] for slices of different lengths. `grad` is then
    /// left unchanged.
    ///
    /// # Examples
    /// ```
    /// use rnnlab_activations::ActivationKind;
    /// let mut y = [0.0f64, 3.0];
    /// ActivationKind::Sigmoid.forward_slice(&mut y);
    /// let mut g = [1.0f64, 1.0];
    /// ActivationKind::Sigmoid.backward_from_output(&y, &mut g)?;
    /// assert!((g[0] - 0.25).abs() < 1e-15);
    /// assert!(ActivationKind::Gelu.backward_from_output(&y, &mut g).is_err());
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn backward_from_output<F: Float>(&self, y: &[F], grad: &mut [F]) -> Result<()> {
        self.output_derivative()?.backward(y, grad)
    }

    /// `out = g ⊙ f′`, computed from the OUTPUT y = f(x): [`ActivationKind::backward_from_output`]
    /// without first copying `g` into `out` (see [`OutputDerivative::backward_into`]).
    ///
    /// # Errors
    /// As [`ActivationKind::backward_from_output`], in which case `out` is left unchanged.
    pub fn backward_from_output_into<F: Float>(&self, y: &[F], g: &[F], out: &mut [F]) -> Result<()> {
        self.output_derivative()?.backward_into(y, g, out)
    }
}

impl OutputDerivative {
    /// The activation this derivative belongs to.
    pub fn kind(&self) -> ActivationKind {
        match self.0 {
            Inner::Sigmoid => ActivationKind::Sigmoid,
            Inner::Tanh => ActivationKind::Tanh,
            Inner::Relu => ActivationKind::Relu,
            Inner::LeakyRelu(slope) => ActivationKind::LeakyRelu { slope },
            Inner::Elu(alpha) => ActivationKind::Elu { alpha },
            Inner::Identity => ActivationKind::Identity,
            Inner::Softsign => ActivationKind::Softsign,
            Inner::HardTanh => ActivationKind::HardTanh,
            Inner::Selu => ActivationKind::Selu,
        }
    }

    /// f′ at the point whose output is `y`, for one value.
    ///
    /// # Examples
    /// ```
    /// use rnnlab_activations::ActivationKind;
    /// let d = ActivationKind::ELU.output_derivative()?;
    /// // y = elu(−1) = e^{−1} − 1, f′ = e^{−1} = y + 1.
    /// assert!((d.df(-0.632_120_558_828_557_7f64) - 0.367_879_441_171_442_3).abs() < 1e-15);
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    #[inline(always)]
    pub fn df<F: Float>(&self, y: F) -> F {
        let zero = F::zero();
        let one = F::one();
        match self.0 {
            Inner::Sigmoid => y * (one - y),
            Inner::Tanh => one - y * y,
            Inner::Relu => {
                if y > zero {
                    one
                } else {
                    zero
                }
            }
            Inner::LeakyRelu(slope) => {
                if y > zero {
                    one
                } else {
                    F::of(slope)
                }
            }
            Inner::Elu(alpha) => {
                if y > zero {
                    one
                } else {
                    y + F::of(alpha)
                }
            }
            Inner::Identity => one,
            Inner::Softsign => {
                let d = one - y.abs();
                d * d
            }
            Inner::HardTanh => {
                if y.abs() < one {
                    one
                } else {
                    zero
                }
            }
            Inner::Selu => {
                if y > zero {
                    F::of(SELU_LAMBDA)
                } else {
                    y + F::of(SELU_LAMBDA * SELU_ALPHA)
                }
            }
        }
    }

    /// grad ⊙= f′ computed from the outputs `y` (a hot loop: one match, then one select-only
    /// loop per kind; no allocation).
    ///
    /// # Errors
    /// [`Error::Shape`] if `y` and `grad` differ in length (in release builds as in debug
    /// builds: one comparison before the loop); `grad` is then left unchanged.
    ///
    /// # Examples
    /// ```
    /// use rnnlab_activations::ActivationKind;
    /// let d = ActivationKind::Relu.output_derivative()?;
    /// let mut g = [5.0f32, 5.0];
    /// d.backward(&[0.0, 2.0], &mut g)?;
    /// assert_eq!(g, [0.0, 5.0]);
    /// assert!(d.backward(&[0.0], &mut g).is_err());
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn backward<F: Float>(&self, y: &[F], grad: &mut [F]) -> Result<()> {
        crate::slices::check_lengths("OutputDerivative::backward", &[("y", y.len())], grad.len())?;
        self.apply(y, None, grad);
        Ok(())
    }

    /// `out = g ⊙ f′` computed from the outputs `y`: [`OutputDerivative::backward`] without
    /// first copying `g` into `out` (one pass instead of two; the same values).
    ///
    /// # Errors
    /// [`Error::Shape`] unless `y`, `g` and `out` have one length; `out` is then left
    /// unchanged.
    ///
    /// # Examples
    /// ```
    /// use rnnlab_activations::ActivationKind;
    /// let d = ActivationKind::Tanh.output_derivative()?;
    /// let mut out = [0.0f64; 2];
    /// d.backward_into(&[0.0, 0.5], &[2.0, 2.0], &mut out)?;
    /// assert_eq!(out, [2.0, 1.5]);
    /// assert!(d.backward_into(&[0.0], &[2.0, 2.0], &mut out).is_err());
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn backward_into<F: Float>(&self, y: &[F], g: &[F], out: &mut [F]) -> Result<()> {
        crate::slices::check_lengths("OutputDerivative::backward_into", &[("y", y.len()), ("g", g.len())], out.len())?;
        self.apply(y, Some(g), out);
        Ok(())
    }

    /// `out ⊙= f′(y)` (`g` = `None`) or `out = g ⊙ f′(y)`: one match, then one select-only loop
    /// per kind.
    #[inline(always)]
    fn apply<F: Float>(&self, y: &[F], g: Option<&[F]>, out: &mut [F]) {
        let zero = F::zero();
        let one = F::one();
        match self.0 {
            Inner::Sigmoid => each(y, g, out, |y| y * (one - y)),
            Inner::Tanh => each(y, g, out, |y| one - y * y),
            Inner::Relu => each(y, g, out, |y| if y > zero { one } else { zero }),
            Inner::LeakyRelu(slope) => {
                let slope = F::of(slope);
                each(y, g, out, |y| if y > zero { one } else { slope });
            }
            Inner::Elu(alpha) => {
                let alpha = F::of(alpha);
                each(y, g, out, |y| if y > zero { one } else { y + alpha });
            }
            Inner::Identity => {
                if let Some(g) = g {
                    let n = out.len().min(g.len()).min(y.len());
                    out[..n].copy_from_slice(&g[..n]);
                }
            }
            Inner::Softsign => each(y, g, out, |y| {
                let d = one - y.abs();
                d * d
            }),
            Inner::HardTanh => each(y, g, out, |y| if y.abs() < one { one } else { zero }),
            Inner::Selu => {
                let lambda = F::of(SELU_LAMBDA);
                let lambda_alpha = F::of(SELU_LAMBDA * SELU_ALPHA);
                each(y, g, out, |y| if y > zero { lambda } else { y + lambda_alpha });
            }
        }
    }
}

/// `out[i] *= d(y[i])`, or `out[i] = g[i] · d(y[i])` with `g`; zipped, so the shortest length
/// wins.
#[inline(always)]
fn each<F: Float>(y: &[F], g: Option<&[F]>, out: &mut [F], d: impl Fn(F) -> F) {
    match g {
        None => out.iter_mut().zip(y).for_each(|(o, &y)| *o *= d(y)),
        Some(g) => out.iter_mut().zip(g).zip(y).for_each(|((o, &g), &y)| *o = g * d(y)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_but_gelu_has_an_output_derivative() {
        for k in ActivationKind::ALL {
            match k.output_derivative() {
                Ok(d) => assert_eq!(d.kind(), k),
                Err(e) => {
                    assert_eq!(k, ActivationKind::Gelu);
                    assert!(matches!(e, Error::Config { .. }), "{e}");
                    assert!(e.to_string().contains("gelu"), "{e}");
                }
            }
        }
    }

    #[test]
    fn backward_from_output_rejects_gelu_and_bad_hyper_parameters_leaving_grad_alone() {
        let y = [0.1f64, 0.2];
        for bad in [ActivationKind::Gelu, ActivationKind::LeakyRelu { slope: 0.0 }, ActivationKind::Elu { alpha: -1.0 }]
        {
            let mut g = [3.0f64, 4.0];
            let e = bad.backward_from_output(&y, &mut g).unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{bad:?}: {e}");
            assert_eq!(g, [3.0, 4.0]);
            let mut out = [5.0f64, 6.0];
            assert!(bad.backward_from_output_into(&y, &g, &mut out).is_err());
            assert_eq!(out, [5.0, 6.0]);
        }
    }

    #[test]
    fn backward_into_gives_the_bits_of_a_copy_then_backward() {
        for k in ActivationKind::ALL.into_iter().filter(ActivationKind::df_uses_output) {
            let d = k.output_derivative().unwrap();
            let mut y: Vec<f32> = (0..37).map(|i| -4.0 + 0.23 * i as f32).collect();
            k.forward_slice(&mut y);
            let g: Vec<f32> = (0..37).map(|i| (i as f32 * 0.7).sin() * 3.0).collect();
            let mut want = g.clone();
            d.backward(&y, &mut want).unwrap();
            let mut out = vec![f32::NAN; 37];
            k.backward_from_output_into(&y, &g, &mut out).unwrap();
            assert_eq!(
                out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{k}"
            );
        }
    }

    #[test]
    fn slice_agrees_with_scalar_and_with_derivative_from_input() {
        let xs: Vec<f64> = (0..300).map(|i| -15.0 + 0.1 * i as f64 + 0.017).collect();
        for k in ActivationKind::ALL.into_iter().filter(ActivationKind::df_uses_output) {
            let d = k.output_derivative().unwrap();
            let mut y = xs.clone();
            k.forward_slice(&mut y);
            let mut g = vec![1.5; xs.len()];
            d.backward(&y, &mut g).unwrap();
            for i in 0..xs.len() {
                let want = 1.5 * d.df(y[i]);
                assert!((g[i] - want).abs() <= 1e-15 * (1.0 + want.abs()), "{k}");
                let from_x = 1.5 * k.df(xs[i]);
                assert!(
                    (g[i] - from_x).abs() <= 1e-12 * (1.0 + from_x.abs()),
                    "{k} at {}: {} vs {from_x}",
                    xs[i],
                    g[i]
                );
            }
        }
    }
}
