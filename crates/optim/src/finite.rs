//! The non-finite gradient policy: error, skip the step, or zero the offending entries.

use rnnlab_core::{Error, Float, Parameterized, Result};
use serde::{Deserialize, Serialize};

use crate::norm::first_non_finite;

const OP: &str = "check_finite";

/// What to do when a gradient holds NaN or ±∞. Serialised as `"error"`, `"skip_step"`, `"zero_entries"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonFinitePolicy {
    /// Fail with [`Error::NonFinite`] naming the parameter and index (the default).
    #[default]
    Error,
    /// Report that the step must be skipped; the caller does not clip or step, and zeroes the grads.
    SkipStep,
    /// Set every non-finite gradient entry to 0, then continue.
    ZeroEntries,
}

/// Where a non-finite gradient entry was found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NonFiniteEntry {
    /// The parameter's name.
    pub param: String,
    /// The multi-index into the parameter.
    pub index: Vec<usize>,
    /// The flat index in row-major (logical) order.
    pub flat_index: usize,
    /// The value (NaN, +∞ or −∞).
    pub value: f64,
}

/// What [`check_finite`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FiniteOutcome {
    /// Non-finite gradient entries found (over all parameters).
    pub n_non_finite: usize,
    /// The first one, in visiting order.
    pub first: Option<NonFiniteEntry>,
    /// Names of the parameters holding any, in visiting order.
    pub params: Vec<String>,
    /// `SkipStep` found some: the caller must not clip or step.
    pub skip_step: bool,
    /// `ZeroEntries` set this many entries to 0.
    pub n_zeroed: usize,
}

impl FiniteOutcome {
    /// Whether every gradient entry was finite.
    pub fn all_finite(&self) -> bool {
        self.n_non_finite == 0
    }

    /// Whether the caller should go on to clip and step.
    pub fn should_step(&self) -> bool {
        !self.skip_step
    }
}

/// Checks every gradient entry for NaN/±∞ and applies `policy`.
///
/// Order in a training step: `check_finite` → [`crate::clip()`] → [`crate::Optimizer::step`].
/// Only gradients are inspected, not values.
///
/// - `Error`: `Err` at the first non-finite entry; nothing is changed.
/// - `SkipStep`: `Ok` with `skip_step = true` and the count; gradients are left as they are.
/// - `ZeroEntries`: the non-finite entries are set to 0; `n_zeroed` says how many.
///
/// # Errors
/// [`Error::NonFinite`] under `NonFinitePolicy::Error`, naming the parameter, its
/// multi-index, flat index and value.
///
/// # Examples
/// ```
/// use ndarray::Array1;
/// use rnnlab_core::{Param, ParamView, ParamViewMut, Parameterized};
/// use rnnlab_optim::{NonFinitePolicy, check_finite};
///
/// struct Model { w: Param<f64, ndarray::Ix1> }
/// impl Parameterized<f64> for Model {
///     fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, f64>)) { v("w", self.w.view()) }
///     fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, f64>)) { v("w", self.w.view_mut()) }
/// }
/// let mut m = Model { w: Param::new(Array1::zeros(3)) };
/// m.w.grad[1] = f64::NAN;
/// assert!(check_finite(&mut m, NonFinitePolicy::Error).is_err());
/// let out = check_finite(&mut m, NonFinitePolicy::ZeroEntries)?;
/// assert_eq!(out.n_zeroed, 1);
/// assert!(check_finite(&mut m, NonFinitePolicy::Error)?.all_finite());
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn check_finite<F: Float, M: Parameterized<F> + ?Sized>(
    model: &mut M,
    policy: NonFinitePolicy,
) -> Result<FiniteOutcome> {
    let mut out = FiniteOutcome::default();
    model.visit_params(&mut |name, p| {
        let n = p.grad.iter().filter(|g| !g.is_finite()).count();
        if n == 0 {
            return;
        }
        if out.first.is_none() {
            out.first = first_non_finite(&p.grad).map(|(flat_index, index, value)| NonFiniteEntry {
                param: name.to_string(),
                index,
                flat_index,
                value,
            });
        }
        out.n_non_finite += n;
        out.params.push(name.to_string());
    });
    if out.all_finite() {
        return Ok(out);
    }
    match policy {
        NonFinitePolicy::Error => {
            let what = match &out.first {
                Some(e) => format!(
                    "gradient of `{}` at index {:?} (flat {}: {}); {} non-finite entries in {:?}",
                    e.param, e.index, e.flat_index, e.value, out.n_non_finite, out.params
                ),
                None => format!("{} gradient entries", out.n_non_finite),
            };
            Err(Error::non_finite(OP, what))
        }
        NonFinitePolicy::SkipStep => {
            out.skip_step = true;
            Ok(out)
        }
        NonFinitePolicy::ZeroEntries => {
            let mut n = 0;
            model.visit_params_mut(&mut |_, mut p| {
                p.grad.map_inplace(|g| {
                    if !g.is_finite() {
                        *g = F::zero();
                        n += 1;
                    }
                });
            });
            out.n_zeroed = n;
            Ok(out)
        }
    }
}

/// Running totals of [`check_finite`] outcomes over a training run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonFiniteCounter {
    /// Outcomes recorded.
    pub checks: u64,
    /// Checks that found any non-finite entry.
    pub events: u64,
    /// Steps skipped (`SkipStep`).
    pub skipped_steps: u64,
    /// Entries zeroed (`ZeroEntries`).
    pub zeroed_entries: u64,
}

impl NonFiniteCounter {
    /// Adds one outcome.
    pub fn record(&mut self, outcome: &FiniteOutcome) {
        self.checks += 1;
        self.events += u64::from(!outcome.all_finite());
        self.skipped_steps += u64::from(outcome.skip_step);
        self.zeroed_entries += outcome.n_zeroed as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Two;
    use ndarray::array;

    fn model() -> Two<f64> {
        let mut m = Two::new();
        m.w.grad = array![[1.0, f64::INFINITY], [f64::NAN, 2.0]];
        m.b.grad = array![f64::NEG_INFINITY, 3.0];
        m
    }

    #[test]
    fn all_finite_passes_under_every_policy() {
        for policy in [NonFinitePolicy::Error, NonFinitePolicy::SkipStep, NonFinitePolicy::ZeroEntries] {
            let mut m = Two::<f64>::new();
            m.fake_backward(1);
            let before = m.w.grad.clone();
            let out = check_finite(&mut m, policy).unwrap();
            assert!(out.all_finite() && out.should_step() && out.first.is_none());
            assert_eq!(m.w.grad, before);
        }
    }

    #[test]
    fn error_names_parameter_and_index() {
        let mut m = model();
        let e = check_finite(&mut m, NonFinitePolicy::Error).unwrap_err();
        assert!(matches!(e, Error::NonFinite { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("`w`") && msg.contains("[0, 1]") && msg.contains("flat 1") && msg.contains("inf"),
            "{msg}"
        );
        assert!(msg.contains("3 non-finite entries"), "{msg}");
        assert!(m.w.grad[[1, 0]].is_nan(), "Error policy changes nothing");
    }

    #[test]
    fn skip_step_reports_and_leaves_grads() {
        let mut m = model();
        let out = check_finite(&mut m, NonFinitePolicy::SkipStep).unwrap();
        assert!(out.skip_step && !out.should_step());
        assert_eq!(out.n_non_finite, 3);
        assert_eq!(out.params, ["w", "b"]);
        assert_eq!(out.n_zeroed, 0);
        let first = out.first.clone().unwrap();
        assert_eq!((first.param.as_str(), first.index.as_slice(), first.flat_index), ("w", &[0, 1][..], 1));
        assert!(m.b.grad[0].is_infinite());
        let mut counter = NonFiniteCounter::default();
        counter.record(&out);
        counter.record(&FiniteOutcome::default());
        assert_eq!(counter, NonFiniteCounter { checks: 2, events: 1, skipped_steps: 1, zeroed_entries: 0 });
    }

    #[test]
    fn zero_entries_zeroes_exactly_the_offenders() {
        let mut m = model();
        let out = check_finite(&mut m, NonFinitePolicy::ZeroEntries).unwrap();
        assert_eq!((out.n_non_finite, out.n_zeroed, out.skip_step), (3, 3, false));
        assert_eq!(m.w.grad, array![[1.0, 0.0], [0.0, 2.0]]);
        assert_eq!(m.b.grad, array![0.0, 3.0]);
        let mut counter = NonFiniteCounter::default();
        counter.record(&out);
        assert_eq!(counter.zeroed_entries, 3);
        // Then clip accepts the gradients.
        assert!(crate::clip(&mut m, &crate::ClipConfig::global_norm(1.0)).is_ok());
    }

    #[test]
    fn policy_serde_names() {
        assert_eq!(serde_json::to_string(&NonFinitePolicy::SkipStep).unwrap(), r#""skip_step""#);
        assert_eq!(serde_json::from_str::<NonFinitePolicy>(r#""zero_entries""#).unwrap(), NonFinitePolicy::ZeroEntries);
        assert_eq!(NonFinitePolicy::default(), NonFinitePolicy::Error);
    }
}
