//! Nonlinearities and their recommended gains, PyTorch's `calculate_gain` table.

use rnnlab_core::{Result, validate};
use serde::{Deserialize, Serialize};

/// The nonlinearity that follows a weight matrix, for choosing its initialisation [`gain`].
///
/// # Examples
/// ```
/// use rnnlab_init::Nonlinearity;
/// let n: Nonlinearity = serde_json::from_str(r#"{"leaky_relu":{"slope":0.2}}"#)?;
/// assert_eq!(n, Nonlinearity::LeakyRelu { slope: 0.2 });
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Nonlinearity {
    /// The identity, f(x) = x.
    Linear,
    /// The logistic sigmoid σ(x) = 1 / (1 + e^{−x}).
    Sigmoid,
    /// The hyperbolic tangent.
    Tanh,
    /// max(0, x).
    Relu,
    /// x for x ≥ 0, `slope`·x otherwise.
    LeakyRelu {
        /// The negative-side slope (PyTorch's default is 0.01).
        slope: f64,
    },
    /// The scaled exponential linear unit of Klambauer et al. (2017).
    Selu,
}

/// The recommended gain for `nonlinearity`, exactly PyTorch's `torch.nn.init.calculate_gain`:
///
/// | nonlinearity | gain |
/// |---|---|
/// | linear, sigmoid | 1 |
/// | tanh | 5/3 |
/// | relu | √2 |
/// | leaky_relu(slope) | √(2 / (1 + slope²)) |
/// | selu | 3/4 |
///
/// The relu gain √2 compensates for relu zeroing half of its input (He et al. 2015); the
/// others are PyTorch's empirical choices.
///
/// # Errors
/// [`rnnlab_core::Error::Config`] if a leaky-relu slope is not finite.
///
/// # Examples
/// ```
/// use rnnlab_init::{Nonlinearity, gain};
/// assert!((gain(Nonlinearity::Relu)? - 2f64.sqrt()).abs() < 1e-15);
/// assert!(gain(Nonlinearity::LeakyRelu { slope: f64::NAN }).is_err());
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn gain(nonlinearity: Nonlinearity) -> Result<f64> {
    Ok(match nonlinearity {
        Nonlinearity::Linear | Nonlinearity::Sigmoid => 1.0,
        Nonlinearity::Tanh => 5.0 / 3.0,
        Nonlinearity::Relu => 2f64.sqrt(),
        Nonlinearity::LeakyRelu { slope } => {
            validate::finite_param("gain", "leaky_relu slope", slope)?;
            (2.0 / (1.0 + slope * slope)).sqrt()
        }
        Nonlinearity::Selu => 0.75,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rnnlab_core::Error;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-15 + 1e-14 * b.abs()
    }

    #[test]
    fn table_matches_pytorch() -> Result<()> {
        assert!(close(gain(Nonlinearity::Linear)?, 1.0));
        assert!(close(gain(Nonlinearity::Sigmoid)?, 1.0));
        assert!(close(gain(Nonlinearity::Tanh)?, 1.666_666_666_666_666_7));
        assert!(close(gain(Nonlinearity::Relu)?, std::f64::consts::SQRT_2));
        assert!(close(gain(Nonlinearity::Selu)?, 0.75));
        // PyTorch: calculate_gain('leaky_relu', 0.01) = sqrt(2 / 1.0001) = 1.4141428569978354.
        assert!(close(gain(Nonlinearity::LeakyRelu { slope: 0.01 })?, 1.414_142_856_997_835_4));
        // slope 0 is relu; slope ±1 is linear.
        assert!(close(gain(Nonlinearity::LeakyRelu { slope: 0.0 })?, 2f64.sqrt()));
        assert!(close(gain(Nonlinearity::LeakyRelu { slope: -1.0 })?, 1.0));
        Ok(())
    }

    #[test]
    fn non_finite_slope_is_rejected() {
        for slope in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = gain(Nonlinearity::LeakyRelu { slope });
            assert!(matches!(e, Err(Error::Config { .. })), "{e:?}");
        }
    }

    #[test]
    fn serde_round_trip() -> std::result::Result<(), serde_json::Error> {
        for n in [Nonlinearity::Tanh, Nonlinearity::LeakyRelu { slope: 0.1 }] {
            let s = serde_json::to_string(&n)?;
            assert_eq!(serde_json::from_str::<Nonlinearity>(&s)?, n);
        }
        assert_eq!(serde_json::to_string(&Nonlinearity::Relu)?, r#""relu""#);
        Ok(())
    }
}
