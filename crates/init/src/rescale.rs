//! Rescaling a drawn recurrent matrix to a target spectral radius or largest singular value.

use ndarray::{ArrayBase, DataMut, Ix2};
use rnnlab_core::{Error, Float, Result, validate};
use serde::{Deserialize, Serialize};

use crate::{max_singular_value, spectral_radius};

/// The quantity a rescaled initialiser fixes, and its target value.
///
/// Pascanu et al. (2013, §3) show that for h_t = W σ(h_{t−1}) + …, with |σ′| ≤ γ
/// (γ = 1 for tanh, 1/4 for sigmoid), σ₁(W) < 1/γ is sufficient for the gradients to vanish
/// and ρ(W) > 1/γ necessary for them to explode; fixing ρ(W) or σ₁(W) at initialisation is the
/// experiment's control knob (and the echo-state "spectral radius" of Jaeger 2001).
///
/// # Examples
/// ```
/// use rnnlab_init::{Init, Rescale};
/// let init = Init::rescaled(Init::Normal { mean: 0.0, std: 1.0 }, Rescale::SpectralRadius(0.9));
/// let w = init.array2::<f64>(32, 32, &mut rnnlab_core::seeded_rng(0))?;
/// assert!((rnnlab_init::spectral_radius(&w)? - 0.9).abs() < 1e-9);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rescale {
    /// Scale so that ρ(W) = max |λᵢ(W)| equals the value (square matrices only).
    SpectralRadius(f64),
    /// Scale so that σ₁(W) = ‖W‖₂ equals the value.
    MaxSingularValue(f64),
}

impl Rescale {
    /// The target value.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(rnnlab_init::Rescale::MaxSingularValue(1.5).target(), 1.5);
    /// ```
    pub fn target(&self) -> f64 {
        match *self {
            Rescale::SpectralRadius(t) | Rescale::MaxSingularValue(t) => t,
        }
    }

    /// Checks that the target is finite and > 0.
    ///
    /// # Errors
    /// [`Error::Config`] if the target is not finite or not > 0.
    ///
    /// # Examples
    /// ```
    /// use rnnlab_init::Rescale;
    /// assert!(Rescale::SpectralRadius(1.1).validate().is_ok());
    /// assert!(Rescale::MaxSingularValue(0.0).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        match self {
            Rescale::SpectralRadius(t) => validate::positive_param("Rescale::SpectralRadius", "target", *t),
            Rescale::MaxSingularValue(t) => validate::positive_param("Rescale::MaxSingularValue", "target", *t),
        }
    }

    /// Multiplies `a` in place by target / measure(a), where measure is [`spectral_radius`] or
    /// [`max_singular_value`] computed in f64; returns the factor applied. The matrix is left
    /// unchanged on error.
    ///
    /// # Errors
    /// - [`Error::Config`] if the target is invalid (see [`Rescale::validate`]), if `a` is empty,
    ///   or if the measure of `a` is zero (a zero or nilpotent matrix cannot be rescaled to a
    ///   positive target) or the factor is not finite.
    /// - [`Error::Shape`] for [`Rescale::SpectralRadius`] on a non-square matrix.
    /// - [`Error::NonFinite`] if an entry of `a` is NaN or infinite.
    ///
    /// # Examples
    /// ```
    /// use ndarray::array;
    /// use rnnlab_init::Rescale;
    /// let mut a = array![[0.0f32, 2.0], [0.0, 4.0]];
    /// let factor = Rescale::SpectralRadius(1.0).apply(&mut a)?;
    /// assert!((factor - 0.25).abs() < 1e-12);
    /// assert!(Rescale::SpectralRadius(1.0).apply(&mut array![[0.0, 1.0], [0.0, 0.0]]).is_err());
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn apply<F: Float, S: DataMut<Elem = F>>(&self, a: &mut ArrayBase<S, Ix2>) -> Result<f64> {
        self.validate()?;
        let a64 = a.mapv(|x| x.as_f64());
        let (op, what, measure) = match self {
            Rescale::SpectralRadius(_) => ("Rescale::SpectralRadius", "spectral radius", spectral_radius(&a64)?),
            Rescale::MaxSingularValue(_) => {
                ("Rescale::MaxSingularValue", "largest singular value", max_singular_value(&a64)?)
            }
        };
        let factor = self.target() / measure;
        if !(measure > 0.0 && factor.is_finite()) {
            let (r, c) = a.dim();
            return Err(Error::config(
                op,
                format!(
                    "cannot rescale a [{r}, {c}] matrix whose {what} is {measure:e} (zero or nilpotent) to {}",
                    self.target()
                ),
            ));
        }
        a.zip_mut_with(&a64, |x, &y| *x = F::of(factor * y));
        Ok(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    #[test]
    fn apply_hits_known_targets() -> Result<()> {
        // diag(2, −0.5): ρ = σ₁ = 2.
        let mut a = array![[2.0f64, 0.0], [0.0, -0.5]];
        let f = Rescale::SpectralRadius(3.0).apply(&mut a)?;
        assert!((f - 1.5).abs() < 1e-14);
        assert!((a[[0, 0]] - 3.0).abs() < 1e-14 && (a[[1, 1]] + 0.75).abs() < 1e-14);
        // Rectangular [[0, 4, 0]]: σ₁ = 4.
        let mut b = array![[0.0f32, 4.0, 0.0]];
        Rescale::MaxSingularValue(2.0).apply(&mut b)?;
        assert!((b[[0, 1]] - 2.0).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn nilpotent_matrix_cannot_be_rescaled() {
        let mut n = array![[0.0, 1.0, 5.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]];
        let before = n.clone();
        let e = Rescale::SpectralRadius(0.9).apply(&mut n);
        assert!(matches!(e, Err(Error::Config { .. })), "{e:?}");
        assert_eq!(n, before);
        // A nilpotent matrix has σ₁ > 0, so MaxSingularValue still works on it.
        assert!(Rescale::MaxSingularValue(1.0).apply(&mut n).is_ok());
    }

    #[test]
    fn zero_matrix_cannot_be_rescaled() {
        let e = Rescale::MaxSingularValue(1.0).apply(&mut Array2::<f64>::zeros((2, 3)));
        assert!(matches!(e, Err(Error::Config { .. })), "{e:?}");
    }

    #[test]
    fn bad_targets_are_rejected() {
        for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(Rescale::SpectralRadius(t).validate(), Err(Error::Config { .. })));
            assert!(matches!(Rescale::MaxSingularValue(t).validate(), Err(Error::Config { .. })));
            let e = Rescale::SpectralRadius(t).apply(&mut Array2::<f64>::eye(2));
            assert!(matches!(e, Err(Error::Config { .. })), "{e:?}");
        }
    }

    #[test]
    fn apply_rejects_bad_matrices() {
        let e = Rescale::SpectralRadius(1.0).apply(&mut Array2::<f64>::ones((2, 3)));
        assert!(matches!(e, Err(Error::Shape { .. })), "{e:?}");
        let e = Rescale::MaxSingularValue(1.0).apply(&mut Array2::<f64>::ones((0, 3)));
        assert!(matches!(e, Err(Error::Config { .. })), "{e:?}");
        let e = Rescale::MaxSingularValue(1.0).apply(&mut array![[1.0f32, f32::NAN]]);
        assert!(matches!(e, Err(Error::NonFinite { .. })), "{e:?}");
    }

    #[test]
    fn serde_round_trip() -> std::result::Result<(), serde_json::Error> {
        let r = Rescale::SpectralRadius(1.1);
        let s = serde_json::to_string(&r)?;
        assert_eq!(s, r#"{"spectral_radius":1.1}"#);
        assert_eq!(serde_json::from_str::<Rescale>(&s)?, r);
        Ok(())
    }
}
