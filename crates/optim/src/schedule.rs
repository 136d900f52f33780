//! Learning-rate schedules in closed form: constant, step decay, cosine annealing, linear warm-up.

use std::f64::consts::PI;

use rnnlab_core::{Error, Result, validate};
use serde::{Deserialize, Serialize};

const OP: &str = "LrSchedule";

/// A learning-rate schedule, a pure function of the base rate and the step index
/// (0-based: `lr_at(base, t)` is the rate for the step taken after `t` earlier steps).
///
/// Serialised tagged by `"kind"`; `then` defaults to `Constant`.
///
/// | schedule | η(t) | PyTorch |
/// |---|---|---|
/// | `Constant` | η₀ | — |
/// | `Step { step_size: s, gamma: γ }` | η₀·γ^⌊t/s⌋ | `StepLR` closed form |
/// | `Cosine { t_max: T, eta_min: η_min }` | η_min + ½(η₀ − η_min)(1 + cos(πt/T)) for t ≤ T, then η_min | `CosineAnnealingLR` closed form (Loshchilov & Hutter 2017) |
/// | `LinearWarmup { warmup_steps: w, then }` | η₀·(t + 1)/w for t < w, then `then` at t − w | `LinearLR` → `SequentialLR` |
///
/// Two deliberate choices: the cosine holds η_min after T (PyTorch's closed form would rise
/// again), and the warm-up starts at η₀/w rather than 0, so no step is wasted at rate 0 and
/// step w − 1 runs at η₀.
///
/// # Examples
/// ```
/// use rnnlab_optim::LrSchedule;
/// let s = LrSchedule::LinearWarmup {
///     warmup_steps: 2,
///     then: Box::new(LrSchedule::Cosine { t_max: 10, eta_min: 0.0 }),
/// };
/// assert!((s.lr_at(0.1, 0)? - 0.05).abs() < 1e-15);
/// assert!((s.lr_at(0.1, 2)? - 0.1).abs() < 1e-15);
/// assert!((s.lr_at(0.1, 12)? - 0.0).abs() < 1e-15);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// η(t) = η₀.
    #[default]
    Constant,
    /// Multiply by `gamma` every `step_size` steps.
    Step {
        /// s `>= 1`.
        step_size: u64,
        /// γ in `(0, 1]`.
        gamma: f64,
    },
    /// Cosine annealing from η₀ to `eta_min` over `t_max` steps, then held at `eta_min`.
    Cosine {
        /// T `>= 1`.
        t_max: u64,
        /// η_min, finite and `>= 0`.
        eta_min: f64,
    },
    /// Linear warm-up over `warmup_steps`, then `then` (restarted at 0).
    LinearWarmup {
        /// w `>= 1`.
        warmup_steps: u64,
        /// The schedule after the warm-up.
        #[serde(default)]
        then: Box<LrSchedule>,
    },
}
rnnlab_core::serde_map_only!(LrSchedule);

impl LrSchedule {
    /// Checks the schedule (recursively).
    ///
    /// # Errors
    /// [`Error::Config`] if `step_size`, `t_max` or `warmup_steps` is 0, `gamma` is not in
    /// `(0, 1]`, or `eta_min` is negative or not finite.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::Constant => Ok(()),
            Self::Step { step_size, gamma } => {
                nonzero("step_size", *step_size)?;
                if !(gamma.is_finite() && *gamma > 0.0 && *gamma <= 1.0) {
                    return Err(Error::config(OP, format!("gamma must be in (0, 1], got {gamma}")));
                }
                Ok(())
            }
            Self::Cosine { t_max, eta_min } => {
                nonzero("t_max", *t_max)?;
                validate::non_negative_param(OP, "eta_min", *eta_min)
            }
            Self::LinearWarmup { warmup_steps, then } => {
                nonzero("warmup_steps", *warmup_steps)?;
                then.validate()
            }
        }
    }

    /// The learning rate for step `step` (0-based) from base rate `base_lr`.
    ///
    /// # Errors
    /// [`Error::Config`] if `base_lr` is not finite and `> 0`, or as [`LrSchedule::validate`].
    pub fn lr_at(&self, base_lr: f64, step: u64) -> Result<f64> {
        validate::positive_param(OP, "base_lr", base_lr)?;
        self.validate()?;
        Ok(self.lr_unchecked(base_lr, step))
    }

    fn lr_unchecked(&self, base_lr: f64, step: u64) -> f64 {
        match self {
            Self::Constant => base_lr,
            // step_size >= 1 (validated), so the division cannot panic.
            Self::Step { step_size, gamma } => base_lr * gamma.powf((step / step_size) as f64),
            Self::Cosine { t_max, eta_min } => {
                if step >= *t_max {
                    *eta_min
                } else {
                    eta_min + (base_lr - eta_min) * (1.0 + (PI * step as f64 / *t_max as f64).cos()) / 2.0
                }
            }
            Self::LinearWarmup { warmup_steps, then } => {
                if step < *warmup_steps {
                    // The fraction first (≤ 1), then the product: `step + 1` in f64, never a
                    // u64 that could wrap, and no product larger than `base_lr`.
                    base_lr * ((step as f64 + 1.0) / *warmup_steps as f64)
                } else {
                    then.lr_unchecked(base_lr, step - warmup_steps)
                }
            }
        }
    }
}

fn nonzero(name: &str, value: u64) -> Result<()> {
    if value == 0 {
        return Err(Error::config(OP, format!("{name} must be at least 1, got 0")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::assert_close;

    #[test]
    fn warmup_at_the_last_step_does_not_wrap() {
        let s = LrSchedule::LinearWarmup { warmup_steps: u64::MAX, then: Box::new(LrSchedule::Constant) };
        let lr = s.lr_at(0.5, u64::MAX - 1).unwrap();
        assert!((lr - 0.5).abs() < 1e-12, "{lr}");
        // the rate is the fraction of the base, never a product that could overflow first
        let big = LrSchedule::LinearWarmup { warmup_steps: 1 << 40, then: Box::new(LrSchedule::Constant) };
        let lr = big.lr_at(f64::MAX / 2.0, (1 << 40) - 1).unwrap();
        assert!(lr.is_finite() && (lr / (f64::MAX / 2.0) - 1.0).abs() < 1e-12, "{lr}");
    }

    fn lrs(s: &LrSchedule, base: f64, steps: std::ops::Range<u64>) -> Vec<f64> {
        steps.map(|t| s.lr_at(base, t).unwrap()).collect()
    }

    #[test]
    fn constant() {
        assert_close(&lrs(&LrSchedule::Constant, 0.3, 0..3), &[0.3, 0.3, 0.3], 0.0);
    }

    #[test]
    fn step_decay_matches_steplr() {
        // η₀ = 0.1, s = 3, γ = 0.5: t = 0,1,2 → 0.1; 3,4,5 → 0.05; 6 → 0.025.
        let s = LrSchedule::Step { step_size: 3, gamma: 0.5 };
        assert_close(&lrs(&s, 0.1, 0..7), &[0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025], 1e-15);
    }

    #[test]
    fn cosine_matches_cosine_annealing_then_holds() {
        // η₀ = 0.1, η_min = 0.01, T = 4: η(t) = 0.01 + 0.045·(1 + cos(πt/4))
        // t=0: 0.1; t=1: 0.01 + 0.045·1.70710678 = 0.08681981; t=2: 0.055;
        // t=3: 0.01 + 0.045·0.29289322 = 0.02318019; t=4: 0.01; t=9: 0.01 (held).
        let s = LrSchedule::Cosine { t_max: 4, eta_min: 0.01 };
        assert_close(&lrs(&s, 0.1, 0..5), &[0.1, 0.086_819_805, 0.055, 0.023_180_195, 0.01], 1e-9);
        assert_close(&[s.lr_at(0.1, 9).unwrap()], &[0.01], 0.0);
    }

    #[test]
    fn warmup_then_cosine() {
        // w = 4: 0.025, 0.05, 0.075, 0.1; then the cosine restarted at 0: 0.1, …, t=6 → 0.055.
        let s = LrSchedule::LinearWarmup {
            warmup_steps: 4,
            then: Box::new(LrSchedule::Cosine { t_max: 4, eta_min: 0.01 }),
        };
        assert_close(&lrs(&s, 0.1, 0..7), &[0.025, 0.05, 0.075, 0.1, 0.1, 0.086_819_805, 0.055], 1e-9);
    }

    #[test]
    fn rejects_each_bad_setting() {
        let bad = [
            LrSchedule::Step { step_size: 0, gamma: 0.5 },
            LrSchedule::Step { step_size: 2, gamma: 0.0 },
            LrSchedule::Step { step_size: 2, gamma: 1.5 },
            LrSchedule::Step { step_size: 2, gamma: f64::NAN },
            LrSchedule::Cosine { t_max: 0, eta_min: 0.0 },
            LrSchedule::Cosine { t_max: 10, eta_min: -0.1 },
            LrSchedule::Cosine { t_max: 10, eta_min: f64::INFINITY },
            LrSchedule::LinearWarmup { warmup_steps: 0, then: Box::default() },
            LrSchedule::LinearWarmup { warmup_steps: 3, then: Box::new(LrSchedule::Step { step_size: 0, gamma: 0.5 }) },
        ];
        for s in bad {
            assert!(matches!(s.validate(), Err(Error::Config { .. })), "{s:?}");
            assert!(matches!(s.lr_at(0.1, 5), Err(Error::Config { .. })), "{s:?}");
        }
        for base in [0.0, -0.1, f64::NAN, f64::INFINITY] {
            assert!(matches!(LrSchedule::Constant.lr_at(base, 0), Err(Error::Config { .. })), "{base}");
        }
    }

    #[test]
    fn serde_forms() {
        let json = r#"{"kind":"linear_warmup","warmup_steps":100,"then":{"kind":"step","step_size":1000,"gamma":0.5}}"#;
        let s: LrSchedule = serde_json::from_str(json).unwrap();
        assert_eq!(
            s,
            LrSchedule::LinearWarmup {
                warmup_steps: 100,
                then: Box::new(LrSchedule::Step { step_size: 1000, gamma: 0.5 })
            }
        );
        assert_eq!(serde_json::to_string(&s).unwrap(), json);
        let s: LrSchedule = serde_json::from_str(r#"{"kind":"linear_warmup","warmup_steps":5}"#).unwrap();
        assert_eq!(s, LrSchedule::LinearWarmup { warmup_steps: 5, then: Box::new(LrSchedule::Constant) });
        assert!(serde_json::from_str::<LrSchedule>(r#"{"kind":"cosine","t_max":5}"#).is_err());
    }
}
