//! The activation enum: names, parsing, validation and the scalar `f` / `df`.

use std::fmt;
use std::str::FromStr;

use rnnlab_core::{Error, Float, Result};
use serde::{Deserialize, Serialize};

/// The default negative slope of [`ActivationKind::LeakyRelu`] (Maas et al. 2013).
pub const DEFAULT_LEAKY_SLOPE: f64 = 0.01;

/// The default α of [`ActivationKind::Elu`] (Clevert et al. 2015).
pub const DEFAULT_ELU_ALPHA: f64 = 1.0;

/// SELU's λ (Klambauer et al. 2017, eq. 2), to the digits of the paper's code.
pub const SELU_LAMBDA: f64 = 1.050_700_987_355_480_5;

/// SELU's α (Klambauer et al. 2017, eq. 2), to the digits of the paper's code.
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;

/// √(2/π), the constant of the tanh form of GELU.
pub(crate) const GELU_C: f64 = 0.797_884_560_802_865_4;

/// The cubic coefficient of the tanh form of GELU.
pub(crate) const GELU_A: f64 = 0.044_715;

/// An elementwise activation y = f(x).
///
/// | kind | f(x) | f′ | f′ from y |
/// |---|---|---|---|
/// | `Sigmoid` | σ(x) = 1/(1+e^{−x}) | σ(x)(1−σ(x)) | y(1−y) |
/// | `Tanh` | tanh x | 1−tanh²x | 1−y² |
/// | `Relu` | max(x, 0) | \[x>0\] | \[y>0\] |
/// | `LeakyRelu { slope }` | x>0 ? x : slope·x | x>0 ? 1 : slope | y>0 ? 1 : slope |
/// | `Elu { alpha }` | x>0 ? x : α(e^x−1) | x>0 ? 1 : αe^x | y>0 ? 1 : y+α |
/// | `Identity` | x | 1 | 1 |
/// | `Softsign` | x/(1+\|x\|) | 1/(1+\|x\|)² | (1−\|y\|)² |
/// | `HardTanh` | clamp(x, −1, 1) | \[\|x\|<1\] | \[\|y\|<1\] |
/// | `Selu` | λ·(x>0 ? x : α(e^x−1)) | x>0 ? λ : λαe^x | y>0 ? λ : y+λα |
/// | `Gelu` | ½x(1+tanh(c(x+a x³))) | see [`ActivationKind::df`] | — (needs x) |
///
/// At a kink (ReLU, leaky ReLU and ELU at 0, hard tanh at ±1) the derivative is the one-sided
/// value that the formula gives (ReLU′(0) = 0, HardTanh′(±1) = 0).
///
/// Citations: leaky ReLU, Maas, Hannun & Ng 2013, "Rectifier nonlinearities improve neural
/// network acoustic models"; ELU, Clevert, Unterthiner & Hochreiter 2015, "Fast and accurate
/// deep network learning by exponential linear units"; SELU, Klambauer et al. 2017,
/// "Self-normalizing neural networks"; GELU, Hendrycks & Gimpel 2016, "Gaussian error linear
/// units (GELUs)". GELU here is the paper's tanh approximation with c = √(2/π), a = 0.044715
/// (it differs from the exact x·Φ(x) by less than 1e-3, see the tests), evaluated as
/// x·σ(2u) with one `exp` so that f32 keeps its derivative accurate in the tails.
///
/// Every kind but `Gelu` has a derivative computable exactly from the output y alone, which the
/// recurrent cells use (they cache outputs, not pre-activations): see
/// [`ActivationKind::df_uses_output`] and [`crate::OutputDerivative`]. The derivative from y of
/// leaky ReLU needs `slope > 0` (so that the sign of y is the sign of x), which
/// [`ActivationKind::validate`] enforces.
///
/// It serialises as its name (`"tanh"`, `"leaky_relu:0.01"`), the [`fmt::Display`] /
/// [`FromStr`] form, and deserialising validates.
///
/// # Examples
/// ```
/// use rnnlab_activations::ActivationKind;
/// let k: ActivationKind = "leaky_relu".parse()?;
/// assert_eq!(k, ActivationKind::LeakyRelu { slope: 0.01 });
/// assert_eq!(k.to_string(), "leaky_relu:0.01");
/// assert!((k.f(-2.0f64) - (-0.02)).abs() < 1e-15);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ActivationKind {
    /// The logistic sigmoid σ(x) = 1/(1+e^{−x}); σ′ = y(1−y), at most ¼ (at x = 0).
    Sigmoid,
    /// The hyperbolic tangent; tanh′ = 1−y², at most 1 (at x = 0).
    Tanh,
    /// The rectifier max(x, 0); ReLU′ = \[x > 0\].
    Relu,
    /// x for x > 0, slope·x otherwise (Maas et al. 2013); slope must be finite and > 0.
    LeakyRelu {
        /// The negative-side slope (default [`DEFAULT_LEAKY_SLOPE`]).
        slope: f64,
    },
    /// x for x > 0, α(e^x − 1) otherwise (Clevert et al. 2015); α must be finite and > 0.
    Elu {
        /// The negative saturation value −α (default [`DEFAULT_ELU_ALPHA`]).
        alpha: f64,
    },
    /// y = x.
    Identity,
    /// x / (1 + |x|), a polynomially saturating tanh look-alike; f′ = (1−|y|)².
    Softsign,
    /// clamp(x, −1, 1); f′ = \[|x| < 1\].
    HardTanh,
    /// λ·ELU_α(x) with the fixed λ = [`SELU_LAMBDA`], α = [`SELU_ALPHA`] (Klambauer et al. 2017).
    Selu,
    /// ½x(1 + tanh(√(2/π)(x + 0.044715x³))) (Hendrycks & Gimpel 2016, tanh form). Its
    /// derivative needs the input x.
    Gelu,
}

impl ActivationKind {
    /// Leaky ReLU with the default slope 0.01.
    pub const LEAKY_RELU: Self = Self::LeakyRelu { slope: DEFAULT_LEAKY_SLOPE };

    /// ELU with the default α = 1.
    pub const ELU: Self = Self::Elu { alpha: DEFAULT_ELU_ALPHA };

    /// Every kind once (with default hyper-parameters), in declaration order.
    pub const ALL: [Self; 10] = [
        Self::Sigmoid,
        Self::Tanh,
        Self::Relu,
        Self::LEAKY_RELU,
        Self::ELU,
        Self::Identity,
        Self::Softsign,
        Self::HardTanh,
        Self::Selu,
        Self::Gelu,
    ];

    /// The bare name, without hyper-parameters (`"leaky_relu"`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sigmoid => "sigmoid",
            Self::Tanh => "tanh",
            Self::Relu => "relu",
            Self::LeakyRelu { .. } => "leaky_relu",
            Self::Elu { .. } => "elu",
            Self::Identity => "identity",
            Self::Softsign => "softsign",
            Self::HardTanh => "hard_tanh",
            Self::Selu => "selu",
            Self::Gelu => "gelu",
        }
    }

    /// Checks the hyper-parameters.
    ///
    /// # Errors
    /// [`Error::Config`] if a leaky-ReLU slope or an ELU α is not finite and > 0.
    ///
    /// # Examples
    /// ```
    /// use rnnlab_activations::ActivationKind;
    /// assert!(ActivationKind::Elu { alpha: 0.5 }.validate().is_ok());
    /// assert!(ActivationKind::LeakyRelu { slope: 0.0 }.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        match *self {
            Self::LeakyRelu { slope } => {
                rnnlab_core::validate::positive_param("ActivationKind", "leaky_relu slope", slope)
            }
            Self::Elu { alpha } => rnnlab_core::validate::positive_param("ActivationKind", "elu alpha", alpha),
            _ => Ok(()),
        }
    }

    /// Whether the derivative can be computed from the output y alone: true for every kind but
    /// [`ActivationKind::Gelu`].
    pub fn df_uses_output(&self) -> bool {
        !matches!(self, Self::Gelu)
    }

    /// y = f(x) for one value (see the table on [`ActivationKind`]).
    ///
    /// Sigmoid and tanh use [`Float::sigmoid_fast`] / [`Float::tanh_fast`]; σ(±1000) is exactly
    /// 0 / 1, ELU and SELU use `exp_m1` and stay finite for any finite input. NaN stays NaN.
    ///
    /// # Examples
    /// ```
    /// use rnnlab_activations::ActivationKind;
    /// assert_eq!(ActivationKind::Sigmoid.f(-1000.0f64), 0.0);
    /// assert!((ActivationKind::Tanh.f(0.5f32) - 0.5f32.tanh()).abs() < 1e-6);
    /// ```
    #[inline(always)]
    pub fn f<F: Float>(&self, x: F) -> F {
        match *self {
            Self::Sigmoid => F::sigmoid_fast(x),
            Self::Tanh => F::tanh_fast(x),
            Self::Relu => relu(x),
            Self::LeakyRelu { slope } => leaky(x, F::of(slope)),
            Self::Elu { alpha } => elu(x, F::of(alpha)),
            Self::Identity => x,
            Self::Softsign => softsign(x),
            Self::HardTanh => hard_tanh(x),
            Self::Selu => selu(x),
            Self::Gelu => gelu(x),
        }
    }

    /// f′(x) for one value, from the input x (valid for every kind).
    ///
    /// For GELU, with u = c(x + a x³) and t = tanh u:
    /// f′(x) = ½(1 + t) + ½x(1 − t²)·c(1 + 3a x²).
    ///
    /// # Examples
    /// ```
    /// use rnnlab_activations::ActivationKind;
    /// assert!((ActivationKind::Sigmoid.df(0.0f64) - 0.25).abs() < 1e-15);
    /// assert!((ActivationKind::Gelu.df(0.0f64) - 0.5).abs() < 1e-15);
    /// ```
    #[inline(always)]
    pub fn df<F: Float>(&self, x: F) -> F {
        let zero = F::zero();
        let one = F::one();
        match *self {
            Self::Sigmoid => {
                let y = F::sigmoid_fast(x);
                y * (one - y)
            }
            Self::Tanh => {
                let y = F::tanh_fast(x);
                one - y * y
            }
            Self::Relu => {
                if x > zero {
                    one
                } else {
                    zero
                }
            }
            Self::LeakyRelu { slope } => {
                if x > zero {
                    one
                } else {
                    F::of(slope)
                }
            }
            Self::Elu { alpha } => elu_df(x, F::of(alpha)),
            Self::Identity => one,
            Self::Softsign => {
                let d = one + x.abs();
                one / (d * d)
            }
            Self::HardTanh => {
                if x.abs() < one {
                    one
                } else {
                    zero
                }
            }
            Self::Selu => F::of(SELU_LAMBDA) * elu_df(x, F::of(SELU_ALPHA)),
            Self::Gelu => gelu_df(x),
        }
    }
}

/// max(x, 0) as a select that keeps NaN visible (unlike `max`).
#[inline(always)]
pub(crate) fn relu<F: Float>(x: F) -> F {
    if x < F::zero() { F::zero() } else { x }
}

#[inline(always)]
pub(crate) fn leaky<F: Float>(x: F, slope: F) -> F {
    if x > F::zero() { x } else { slope * x }
}

/// x > 0 ? x : α·expm1(x). expm1 keeps small negative x accurate and saturates to −α (finite)
/// for very negative x; its argument is min(x, 0) written as a NaN-preserving select, so it
/// never overflows.
#[inline(always)]
pub(crate) fn elu<F: Float>(x: F, alpha: F) -> F {
    let neg = alpha * non_positive(x).exp_m1();
    if x > F::zero() { x } else { neg }
}

#[inline(always)]
pub(crate) fn elu_df<F: Float>(x: F, alpha: F) -> F {
    let neg = alpha * non_positive(x).exp();
    if x > F::zero() { F::one() } else { neg }
}

/// min(x, 0), keeping NaN.
#[inline(always)]
fn non_positive<F: Float>(x: F) -> F {
    if x > F::zero() { F::zero() } else { x }
}

#[inline(always)]
pub(crate) fn hard_tanh<F: Float>(x: F) -> F {
    let one = F::one();
    if x > one {
        one
    } else if x < -one {
        -one
    } else {
        x
    }
}

/// For GELU's tanh form, ½(1 + tanh u) = σ(2u) with u = c(x + a x³). Returns (σ(2u),
/// σ(2u)(1 − σ(2u)), x²) through e = e^{−2|u|}, which never overflows: σ(2u) = 1/(1+e) or
/// e/(1+e) by the sign of u, and σ(1 − σ) = e/(1+e)², accurate to a few ulps relative even where
/// it is tiny (1 − tanh² u computed from a rounded tanh would lose everything there).
/// x is clamped to ±30 inside u, where e already underflows to exactly 0 in f32 and f64: keeps
/// x³ finite for huge |x| (so no 0·∞); NaN stays NaN.
#[inline(always)]
fn gelu_parts<F: Float>(x: F) -> (F, F, F) {
    let one = F::one();
    let lim = F::of(30.0);
    let xc = if x > lim {
        lim
    } else if x < -lim {
        -lim
    } else {
        x
    };
    let x2 = xc * xc;
    let u = F::of(GELU_C) * xc * (one + F::of(GELU_A) * x2);
    let e = (F::of(-2.0) * u.abs()).exp();
    let r = one / (one + e);
    let s = if u < F::zero() { e * r } else { r };
    (s, e * r * r, x2)
}

/// GELU (tanh form) ½x(1 + tanh u) = x·σ(2u), u = c(x + a x³). Where σ(2u) is exactly 0
/// (x < −26 or so, every such x negative) the result is −0, as x·0 is for finite x — and
/// for x = −∞ too, its limit (x·σ(2u) would be −∞·0 = NaN). gelu(+∞) = +∞, its limit.
#[inline(always)]
pub(crate) fn gelu<F: Float>(x: F) -> F {
    let s = gelu_parts(x).0;
    if s == F::zero() { -F::zero() } else { x * s }
}

/// Softsign x/(1 + |x|), with its limits ±1 at ±∞ (∞/∞ would be NaN).
#[inline(always)]
pub(crate) fn softsign<F: Float>(x: F) -> F {
    let y = x / (F::one() + x.abs());
    if x.is_infinite() { x.signum() } else { y }
}

/// SELU λ·elu(x, α), saturated at the largest finite value: for finite x > F::MAX/λ the
/// product λx is not representable, and an activation returns no ∞ for finite input
/// (+∞ stays +∞, NaN stays NaN).
#[inline(always)]
pub(crate) fn selu<F: Float>(x: F) -> F {
    let y = F::of(SELU_LAMBDA) * elu(x, F::of(SELU_ALPHA));
    if y == F::infinity() && x.is_finite() { F::max_value() } else { y }
}

/// GELU′ (tanh form) ½(1 + t) + ½x(1 − t²)·c(1 + 3a x²) = σ(2u) + 2c·x·σ(1−σ)(2u)·(1 + 3a x²).
#[inline(always)]
pub(crate) fn gelu_df<F: Float>(x: F) -> F {
    let (s, ds, x2) = gelu_parts(x);
    // x · ds first: for huge |x| ds is exactly 0, and a constant times x could overflow to ∞
    // first. Where ds is 0 the term is ±0 for finite x (s + ±0 = s) and 0 in the limit x → ±∞
    // (∞·0 would be NaN), so it is left out: GELU′(+∞) = 1, GELU′(−∞) = 0.
    if ds == F::zero() {
        return s;
    }
    s + x * ds * F::of(2.0 * GELU_C) * (F::one() + F::of(3.0 * GELU_A) * x2)
}

impl fmt::Display for ActivationKind {
    /// The name, with the hyper-parameter after a colon for leaky ReLU and ELU
    /// (`leaky_relu:0.01`, `elu:1`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LeakyRelu { slope } => write!(f, "leaky_relu:{slope}"),
            Self::Elu { alpha } => write!(f, "elu:{alpha}"),
            other => f.write_str(other.name()),
        }
    }
}

impl FromStr for ActivationKind {
    type Err = Error;

    /// Parses the [`fmt::Display`] form; `leaky_relu` and `elu` without a value take the
    /// defaults (0.01 and 1).
    ///
    /// # Errors
    /// [`Error::Format`] naming the string for an unknown name, an unparsable value or a value
    /// given to a kind without one; [`Error::Config`] (from [`ActivationKind::validate`]) for a
    /// parsed slope or α that is not finite and > 0.
    fn from_str(s: &str) -> Result<Self> {
        let (name, value) = match s.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (s, None),
        };
        let parse_value = |default: f64| -> Result<f64> {
            match value {
                None => Ok(default),
                Some(v) => v.trim().parse::<f64>().map_err(|e| {
                    Error::format("ActivationKind::from_str", format!("bad value in activation {s:?}: {e}"))
                }),
            }
        };
        let kind = match name.trim() {
            "leaky_relu" => Self::LeakyRelu { slope: parse_value(DEFAULT_LEAKY_SLOPE)? },
            "elu" => Self::Elu { alpha: parse_value(DEFAULT_ELU_ALPHA)? },
            other => {
                let kind = Self::ALL
                    .into_iter()
                    .find(|k| k.name() == other && !matches!(k, Self::LeakyRelu { .. } | Self::Elu { .. }))
                    .ok_or_else(|| {
                        Error::format(
                            "ActivationKind::from_str",
                            format!(
                                "unknown activation {s:?} (expected one of sigmoid, tanh, relu, leaky_relu[:slope], \
                                 elu[:alpha], identity, softsign, hard_tanh, selu, gelu)"
                            ),
                        )
                    })?;
                if value.is_some() {
                    return Err(Error::format(
                        "ActivationKind::from_str",
                        format!("activation {s:?}: {other} takes no value"),
                    ));
                }
                kind
            }
        };
        kind.validate()?;
        Ok(kind)
    }
}

impl TryFrom<String> for ActivationKind {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<ActivationKind> for String {
    fn from(kind: ActivationKind) -> Self {
        kind.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_round_trip_for_every_kind() {
        let mut kinds = ActivationKind::ALL.to_vec();
        kinds.push(ActivationKind::LeakyRelu { slope: 0.123_456_789_012_345_67 });
        kinds.push(ActivationKind::Elu { alpha: 2.5e-3 });
        for k in kinds {
            let s = k.to_string();
            let back: ActivationKind = s.parse().unwrap();
            assert_eq!(back, k, "{s}");
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            let back: ActivationKind = serde_json::from_str(&json).unwrap();
            assert_eq!(back, k);
        }
    }

    #[test]
    fn display_names_are_the_documented_ones() {
        let names: Vec<String> = ActivationKind::ALL.iter().map(|k| k.to_string()).collect();
        assert_eq!(
            names,
            [
                "sigmoid",
                "tanh",
                "relu",
                "leaky_relu:0.01",
                "elu:1",
                "identity",
                "softsign",
                "hard_tanh",
                "selu",
                "gelu"
            ]
        );
    }

    #[test]
    fn bare_leaky_relu_and_elu_take_defaults() {
        assert_eq!("leaky_relu".parse::<ActivationKind>().unwrap(), ActivationKind::LeakyRelu { slope: 0.01 });
        assert_eq!("elu".parse::<ActivationKind>().unwrap(), ActivationKind::Elu { alpha: 1.0 });
        assert_eq!("elu:0.5".parse::<ActivationKind>().unwrap(), ActivationKind::Elu { alpha: 0.5 });
    }

    #[test]
    fn parse_errors_are_format_errors_naming_the_string() {
        for bad in ["swish", "", "Tanh", "leaky_relu:abc", "elu:", "tanh:1", "relu:0.1", "sigmoid:"] {
            let e = bad.parse::<ActivationKind>().unwrap_err();
            assert!(matches!(e, Error::Format { .. }), "{bad}: {e}");
            assert!(e.to_string().contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        let e = serde_json::from_str::<ActivationKind>("\"swish\"").unwrap_err();
        assert!(e.to_string().contains("swish"), "{e}");
    }

    #[test]
    fn parsed_bad_hyper_parameters_are_config_errors() {
        for bad in ["leaky_relu:0", "leaky_relu:-0.1", "leaky_relu:NaN", "elu:0", "elu:-1", "elu:inf"] {
            let e = bad.parse::<ActivationKind>().unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{bad}: {e}");
        }
        assert!(serde_json::from_str::<ActivationKind>("\"elu:-1\"").is_err());
    }

    #[test]
    fn validate_rejects_each_bad_hyper_parameter() {
        for bad in [
            ActivationKind::LeakyRelu { slope: 0.0 },
            ActivationKind::LeakyRelu { slope: -0.01 },
            ActivationKind::LeakyRelu { slope: f64::NAN },
            ActivationKind::LeakyRelu { slope: f64::INFINITY },
            ActivationKind::Elu { alpha: 0.0 },
            ActivationKind::Elu { alpha: -1.0 },
            ActivationKind::Elu { alpha: f64::NAN },
            ActivationKind::Elu { alpha: f64::NEG_INFINITY },
        ] {
            let e = bad.validate().unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{bad:?}: {e}");
        }
        for k in ActivationKind::ALL {
            assert!(k.validate().is_ok(), "{k}");
        }
    }

    #[test]
    fn df_uses_output_for_all_but_gelu() {
        for k in ActivationKind::ALL {
            assert_eq!(k.df_uses_output(), k != ActivationKind::Gelu, "{k}");
        }
    }

    #[test]
    fn hand_values() {
        let close = |a: f64, b: f64| -> bool { (a - b).abs() <= 1e-12 * (1.0 + b.abs()) };
        // σ(0) = ½, tanh(0) = 0, softsign(3) = 3/4, elu(−1) = e^{−1} − 1 ≈ −0.632120558828558.
        assert!(close(ActivationKind::Sigmoid.f(0.0), 0.5));
        assert!(close(ActivationKind::Tanh.f(0.0), 0.0));
        assert!(close(ActivationKind::Softsign.f(3.0), 0.75));
        assert!(close(ActivationKind::ELU.f(-1.0), -0.632_120_558_828_557_7));
        // selu(1) = λ, selu(−∞) → −λα ≈ −1.7580993408473766.
        assert!(close(ActivationKind::Selu.f(1.0), SELU_LAMBDA));
        assert!(close(ActivationKind::Selu.f(-1e4), -1.758_099_340_847_376_6));
        assert!(close(ActivationKind::HardTanh.f(-3.0), -1.0));
        assert!(close(ActivationKind::HardTanh.f(0.3), 0.3));
        assert!(close(ActivationKind::LEAKY_RELU.f(-2.0), -0.02));
        assert!(close(ActivationKind::Relu.f(-2.0), 0.0));
        // gelu(1) = ½(1 + tanh(c·1.044715)) = ½(1 + tanh(0.8335565596...)) ≈ 0.8411919906.
        assert!((ActivationKind::Gelu.f(1.0f64) - 0.841_191_990_6).abs() < 1e-9);
        assert!(close(ActivationKind::Gelu.f(0.0), 0.0));
    }
}
