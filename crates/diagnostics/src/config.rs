//! What a diagnosis computes and the thresholds of its verdict, with their defaults and checks.

use rnnlab_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Where the loss reads the network, for the report's wording; the curves themselves are
/// always relative to the reference step (the last step unless
/// [`FlowConfig::reference_step`] says otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// A loss on the last output only: lag k is exactly "k steps before the loss".
    Last,
    /// A loss on every output: ‖∂L/∂h_t‖ sums the contributions of every later step, so the
    /// curve relative to step T−1 mixes lags (see the crate docs).
    Every,
    /// A loss on the final states only (or no output gradient).
    FinalState,
}

/// Settings of the gradient-flow curves ([`crate::gradient_flow`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct FlowConfig {
    /// The step the curves are relative to (lag 0); `None` = the last step T−1.
    pub reference_step: Option<usize>,
    /// The memory horizon's threshold on the relative norm, in (0, 1) (default 1e-3).
    pub horizon_threshold: f64,
    /// The first lag of the decay fit (default 0).
    pub fit_first_lag: usize,
    /// The last lag of the decay fit; `None` = the reference step (every lag).
    pub fit_last_lag: Option<usize>,
    /// The fit stops before the first lag whose (geometric-mean) relative norm is below this
    /// floor or zero, in (0, 1) (default 1e-12): past it the curve is rounding, not signal.
    pub fit_floor: f64,
    /// Keep every example's relative curve in the report (default false: `[batch, lags]`).
    pub per_example: bool,
}
rnnlab_core::serde_map_only!(FlowConfig);

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            reference_step: None,
            horizon_threshold: 1e-3,
            fit_first_lag: 0,
            fit_last_lag: None,
            fit_floor: 1e-12,
            per_example: false,
        }
    }
}

/// Settings of the Jacobian analysis ([`crate::jacobian_analysis`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct JacobianConfig {
    /// The lags k (number of step Jacobians in the product), each in 1..=reference_step + 1;
    /// `None` = 1, 2, 4, … and reference_step + 1.
    pub lags: Option<Vec<usize>>,
    /// Iterations per lag at most, each one product with the transpose and one with the
    /// product (default 100).
    pub max_iters: usize,
    /// Stop when every row's estimated relative error of σ₁ is at most this (default 1e-4: a
    /// diagnostic needs a few digits, and f32 products jitter at ~1e-7). The estimate is the
    /// Kato–Temple bound from the residual of the top Ritz triple and the Ritz gap, see
    /// [`crate::product_norm`].
    pub tol: f64,
    /// The one-step singular values are computed when state_width ≤ this (default 256).
    pub svd_max_width: usize,
    /// The batch row of the one-step singular values (default 0).
    pub svd_row: usize,
    /// Seed of the power iteration's start vectors (default 0).
    pub seed: u64,
}
rnnlab_core::serde_map_only!(JacobianConfig);

impl Default for JacobianConfig {
    fn default() -> Self {
        Self { lags: None, max_iters: 100, tol: 1e-4, svd_max_width: 256, svd_row: 0, seed: 0 }
    }
}

/// The verdict's thresholds, applied to each layer's h curve ([`crate::Verdict`]).
///
/// A layer is *exploding* if its fitted decay factor exceeds `exploding_decay` or its relative
/// norm exceeds `exploding_ratio` at some lag; else *vanishing* if the decay factor is below
/// `vanishing_decay`; else *healthy*. The model's verdict is the worst layer's
/// (exploding > vanishing > healthy).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct Thresholds {
    /// Decay factor per step below which the gradient vanishes, in (0, 1) (default 0.9:
    /// 0.9¹⁰⁰ ≈ 3e-5).
    pub vanishing_decay: f64,
    /// Decay factor per step above which it explodes, finite and > 1 (default 1.1).
    pub exploding_decay: f64,
    /// Relative norm above which it explodes, finite and > 1 (default 1e3).
    pub exploding_ratio: f64,
}
rnnlab_core::serde_map_only!(Thresholds);

impl Default for Thresholds {
    fn default() -> Self {
        Self { vanishing_decay: 0.9, exploding_decay: 1.1, exploding_ratio: 1e3 }
    }
}

/// Everything [`crate::diagnose`] computes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct DiagnoseConfig {
    /// The gradient-flow curves.
    pub flow: FlowConfig,
    /// The Jacobian analysis; `None` skips it (it costs O(Σ lags · iterations) step products).
    pub jacobian: Option<JacobianConfig>,
    /// The saturation threshold ε on the relative activation derivative, in (0, 1);
    /// `None` skips saturation (default `Some(0.01)` via [`DiagnoseConfig::new`]).
    pub saturation_eps: Option<f64>,
    /// The verdict's thresholds.
    pub thresholds: Thresholds,
}
rnnlab_core::serde_map_only!(DiagnoseConfig);

impl DiagnoseConfig {
    /// Every part with its defaults: flow, Jacobian analysis, saturation at ε = 0.01.
    pub fn new() -> Self {
        Self { jacobian: Some(JacobianConfig::default()), saturation_eps: Some(0.01), ..Self::default() }
    }

    /// Without the Jacobian analysis (what a training observer runs every N steps).
    pub fn without_jacobian(mut self) -> Self {
        self.jacobian = None;
        self
    }

    /// Sets the Jacobian analysis.
    pub fn with_jacobian(mut self, jacobian: JacobianConfig) -> Self {
        self.jacobian = Some(jacobian);
        self
    }

    /// Sets the flow settings.
    pub fn with_flow(mut self, flow: FlowConfig) -> Self {
        self.flow = flow;
        self
    }

    /// Sets the verdict thresholds.
    pub fn with_thresholds(mut self, thresholds: Thresholds) -> Self {
        self.thresholds = thresholds;
        self
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting: a threshold outside (0, 1) (horizon, fit floor,
    /// vanishing decay, saturation ε), an exploding threshold not finite and > 1, zero
    /// iterations, a tolerance not finite and > 0, a lag of 0.
    ///
    /// # Examples
    /// ```
    /// use rnnlab_diagnostics::DiagnoseConfig;
    /// assert!(DiagnoseConfig::new().validate().is_ok());
    /// let mut bad = DiagnoseConfig::new();
    /// bad.flow.horizon_threshold = 1.5;
    /// assert!(bad.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        self.flow.validate()?;
        self.thresholds.validate()?;
        if let Some(j) = &self.jacobian {
            j.validate()?;
        }
        if let Some(eps) = self.saturation_eps {
            unit_interval("DiagnoseConfig", "saturation_eps", eps)?;
        }
        Ok(())
    }
}

impl FlowConfig {
    /// Checks the thresholds and the fit range.
    ///
    /// # Errors
    /// [`Error::Config`] for `horizon_threshold` or `fit_floor` outside (0, 1), or a fit range
    /// whose last lag is before its first.
    pub fn validate(&self) -> Result<()> {
        let op = "FlowConfig";
        unit_interval(op, "horizon_threshold", self.horizon_threshold)?;
        unit_interval(op, "fit_floor", self.fit_floor)?;
        if let Some(last) = self.fit_last_lag
            && last <= self.fit_first_lag
        {
            return Err(Error::config(
                op,
                format!("fit_last_lag ({last}) must be after fit_first_lag ({})", self.fit_first_lag),
            ));
        }
        Ok(())
    }
}

impl JacobianConfig {
    /// Checks the iteration settings and the lags.
    ///
    /// # Errors
    /// [`Error::Config`] for `max_iters = 0`, a `tol` not finite and > 0, or a lag of 0.
    pub fn validate(&self) -> Result<()> {
        let op = "JacobianConfig";
        rnnlab_core::validate::positive_size(op, "max_iters", self.max_iters)?;
        rnnlab_core::validate::positive_param(op, "tol", self.tol)?;
        if let Some(lags) = &self.lags
            && lags.contains(&0)
        {
            return Err(Error::config(op, "a lag must be at least 1 (the product of 1 step Jacobian)"));
        }
        Ok(())
    }
}

impl Thresholds {
    /// Checks the thresholds.
    ///
    /// # Errors
    /// [`Error::Config`] for `vanishing_decay` outside (0, 1), or `exploding_decay`,
    /// `exploding_ratio` not finite and > 1.
    pub fn validate(&self) -> Result<()> {
        let op = "Thresholds";
        unit_interval(op, "vanishing_decay", self.vanishing_decay)?;
        above_one(op, "exploding_decay", self.exploding_decay)?;
        above_one(op, "exploding_ratio", self.exploding_ratio)
    }
}

fn unit_interval(op: &str, name: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 && v < 1.0 {
        Ok(())
    } else {
        Err(Error::config(op, format!("{name} must be in (0, 1), got {v}")))
    }
}

fn above_one(op: &str, name: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 1.0 {
        Ok(())
    } else {
        Err(Error::config(op, format!("{name} must be finite and > 1, got {v}")))
    }
}
