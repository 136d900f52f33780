//! What a normalised recurrent cell normalises, and how: [`NormConfig`], [`NormKind`],
//! [`NormPlacement`].

use rnnlab_core::{Error, Result, limits, validate};
use serde::{Deserialize, Serialize};

/// Which normalisation a cell applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// Layer normalisation (Ba, Kiros & Hinton 2016, arXiv:1607.06450): statistics over the
    /// features of one example at one step; training and evaluation coincide.
    Layer,
    /// Recurrent batch normalisation (Cooijmans et al. 2016, arXiv:1603.09025): statistics per
    /// feature over the batch, separately for each time step `t < time_steps`; running
    /// statistics per step for evaluation.
    Batch,
}

/// Where inside the cell the normalisation acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormPlacement {
    /// Normalise the input projection W_ih·x_t and the recurrent projection W_hh·h_{t−1}
    /// SEPARATELY, and in an LSTM also the cell state before its tanh (Cooijmans et al. for
    /// batch norm; Ba et al.'s LSTM form for layer norm).
    Full,
    /// Normalise the input projection W_ih·x_t only ("normalise the RNN's input at each time
    /// step"); the recurrent path is the plain cell's.
    InputOnly,
}

/// Configuration of the normalisation inside a recurrent cell.
///
/// - `kind`, `placement`: see [`NormKind`] and [`NormPlacement`];
/// - `eps` (default 1e-5): added to every variance;
/// - `gamma_init`: the initial gain of every normaliser — 1.0 for layer norm (Ba et al.),
///   0.1 for batch norm (Cooijmans et al.: for x ~ N(0, σ²), E[tanh′(x)] falls as σ grows, so a
///   large γ makes gradients vanish; 0.01 and below was unstable). The β's start at 0;
/// - `momentum` (default 0.1, batch norm only): weight of the newest batch in the running
///   statistics, PyTorch's convention;
/// - `time_steps` T_max (batch norm only; default 1 for layer norm): steps `t < T_max` keep
///   their own statistics, steps `t ≥ T_max` reuse (and in training keep updating) those of
///   step T_max − 1, as in Cooijmans et al.
///
/// # Examples
/// ```
/// use rnnlab_cells::{NormConfig, NormKind, NormPlacement};
/// let bn = NormConfig::batch(NormPlacement::Full, 100);
/// assert_eq!((bn.kind, bn.gamma_init, bn.time_steps), (NormKind::Batch, 0.1, 100));
/// let ln = NormConfig::layer(NormPlacement::InputOnly).with_eps(1e-6);
/// assert_eq!(ln.gamma_init, 1.0);
/// ln.validate()?;
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct NormConfig {
    /// Layer or batch normalisation.
    pub kind: NormKind,
    /// What is normalised.
    pub placement: NormPlacement,
    /// ε added to the variances (default 1e-5).
    pub eps: f64,
    /// Initial γ of every normaliser (default 1.0 for layer, 0.1 for batch norm).
    pub gamma_init: f64,
    /// Running-statistics momentum in `[0, 1]` (default 0.1; batch norm only).
    pub momentum: f64,
    /// T_max, the number of steps with their own batch-norm statistics (≥ 1).
    pub time_steps: usize,
}
rnnlab_core::serde_map_only!(NormConfig);

impl NormConfig {
    /// Layer normalisation at `placement`: γ₀ = 1, β₀ = 0 (Ba et al.), ε = 1e-5.
    pub fn layer(placement: NormPlacement) -> Self {
        Self { kind: NormKind::Layer, placement, eps: 1e-5, gamma_init: 1.0, momentum: 0.1, time_steps: 1 }
    }

    /// Recurrent batch normalisation at `placement` with statistics for `time_steps` steps:
    /// γ₀ = 0.1, β₀ = 0 (Cooijmans et al.), momentum 0.1, ε = 1e-5.
    pub fn batch(placement: NormPlacement, time_steps: usize) -> Self {
        Self { kind: NormKind::Batch, placement, eps: 1e-5, gamma_init: 0.1, momentum: 0.1, time_steps }
    }

    /// Sets ε.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Sets the initial γ.
    pub fn with_gamma_init(mut self, gamma_init: f64) -> Self {
        self.gamma_init = gamma_init;
        self
    }

    /// Sets the running-statistics momentum.
    pub fn with_momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// Sets T_max.
    pub fn with_time_steps(mut self, time_steps: usize) -> Self {
        self.time_steps = time_steps;
        self
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`Error::Config`] for `eps` not finite and > 0, a non-finite `gamma_init`, `momentum`
    /// outside `[0, 1]` (or NaN), or `time_steps` 0 or over [`limits::MAX_SEQ_LEN`].
    pub fn validate(&self) -> Result<()> {
        let op = "NormConfig";
        validate::positive_param(op, "eps", self.eps)?;
        validate::finite_param(op, "gamma_init", self.gamma_init)?;
        if !(self.momentum.is_finite() && (0.0..=1.0).contains(&self.momentum)) {
            return Err(Error::config(op, format!("momentum must be finite and in [0, 1], got {}", self.momentum)));
        }
        limits::size(op, "time_steps", self.time_steps, limits::MAX_SEQ_LEN).map(drop)
    }

    /// [`NormConfig::validate`], then the values in the model's float `F` (an `eps` of 1e-50
    /// is 0 in `f32`, a `gamma_init` of 1e39 is ∞) and the running statistics
    /// `[time_steps, n_features]` against [`limits::MAX_ELEMENTS`].
    ///
    /// # Errors
    /// As [`NormConfig::validate`], and [`Error::Config`] naming the value or size.
    pub fn validate_in<F: rnnlab_core::Float>(&self, n_features: usize) -> Result<()> {
        let op = "NormConfig";
        self.validate()?;
        validate::positive_in::<F>(op, "eps", self.eps)?;
        validate::finite_in::<F>(op, "gamma_init", self.gamma_init)?;
        if self.kind == NormKind::Batch {
            limits::checked_elements(op, "time_steps", &[self.time_steps, n_features])?;
        }
        Ok(())
    }

    /// The `Cell::name()` of a normalised cell: `"ln_"`/`"bn_"` + `base` (+ `"_input"` for
    /// [`NormPlacement::InputOnly`]).
    pub(crate) fn cell_name(&self, base: CellBase) -> &'static str {
        use NormKind::{Batch, Layer};
        use NormPlacement::{Full, InputOnly};
        match (base, self.kind, self.placement) {
            (CellBase::Rnn, Layer, Full) => "ln_rnn",
            (CellBase::Rnn, Layer, InputOnly) => "ln_rnn_input",
            (CellBase::Rnn, Batch, Full) => "bn_rnn",
            (CellBase::Rnn, Batch, InputOnly) => "bn_rnn_input",
            (CellBase::Lstm, Layer, Full) => "ln_lstm",
            (CellBase::Lstm, Layer, InputOnly) => "ln_lstm_input",
            (CellBase::Lstm, Batch, Full) => "bn_lstm",
            (CellBase::Lstm, Batch, InputOnly) => "bn_lstm_input",
            (CellBase::Gru, Layer, Full) => "ln_gru",
            (CellBase::Gru, Layer, InputOnly) => "ln_gru_input",
            (CellBase::Gru, Batch, Full) => "bn_gru",
            (CellBase::Gru, Batch, InputOnly) => "bn_gru_input",
        }
    }
}

/// The plain cell a normalised one extends (for its name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CellBase {
    Rnn,
    Lstm,
    Gru,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_config_err(c: &NormConfig, what: &str) {
        let e = c.validate().unwrap_err();
        assert!(matches!(e, Error::Config { .. }) && e.to_string().contains(what), "{e}");
    }

    #[test]
    fn defaults_depend_on_the_kind() {
        let l = NormConfig::layer(NormPlacement::Full);
        assert_eq!((l.eps, l.gamma_init, l.momentum, l.time_steps), (1e-5, 1.0, 0.1, 1));
        let b = NormConfig::batch(NormPlacement::InputOnly, 7);
        assert_eq!((b.eps, b.gamma_init, b.momentum, b.time_steps), (1e-5, 0.1, 0.1, 7));
        assert!(l.validate().is_ok() && b.validate().is_ok());
        let c = b.with_eps(1e-3).with_gamma_init(0.5).with_momentum(0.0).with_time_steps(2);
        assert_eq!((c.eps, c.gamma_init, c.momentum, c.time_steps), (1e-3, 0.5, 0.0, 2));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn rejects_zero_eps() {
        is_config_err(&NormConfig::layer(NormPlacement::Full).with_eps(0.0), "eps");
    }

    #[test]
    fn rejects_negative_eps() {
        is_config_err(&NormConfig::layer(NormPlacement::Full).with_eps(-1e-5), "eps");
    }

    #[test]
    fn rejects_nan_eps() {
        is_config_err(&NormConfig::batch(NormPlacement::Full, 2).with_eps(f64::NAN), "eps");
    }

    #[test]
    fn rejects_infinite_eps() {
        is_config_err(&NormConfig::batch(NormPlacement::Full, 2).with_eps(f64::INFINITY), "eps");
    }

    #[test]
    fn rejects_non_finite_gamma_init() {
        is_config_err(&NormConfig::layer(NormPlacement::Full).with_gamma_init(f64::NAN), "gamma_init");
        is_config_err(&NormConfig::batch(NormPlacement::Full, 1).with_gamma_init(f64::NEG_INFINITY), "gamma_init");
    }

    #[test]
    fn rejects_negative_momentum() {
        is_config_err(&NormConfig::batch(NormPlacement::Full, 2).with_momentum(-0.1), "momentum");
    }

    #[test]
    fn rejects_momentum_above_one() {
        is_config_err(&NormConfig::batch(NormPlacement::Full, 2).with_momentum(1.5), "momentum");
    }

    #[test]
    fn rejects_nan_momentum() {
        is_config_err(&NormConfig::batch(NormPlacement::Full, 2).with_momentum(f64::NAN), "momentum");
    }

    #[test]
    fn rejects_zero_time_steps() {
        is_config_err(&NormConfig::batch(NormPlacement::Full, 0), "time_steps");
    }

    #[test]
    fn serde_round_trip() {
        let c = NormConfig::batch(NormPlacement::InputOnly, 3).with_eps(1e-7);
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"batch\"") && json.contains("\"input_only\""), "{json}");
        assert_eq!(serde_json::from_str::<NormConfig>(&json).unwrap(), c);
    }

    #[test]
    fn names() {
        let ln = NormConfig::layer(NormPlacement::Full);
        let bn = NormConfig::batch(NormPlacement::InputOnly, 1);
        assert_eq!(ln.cell_name(CellBase::Lstm), "ln_lstm");
        assert_eq!(bn.cell_name(CellBase::Gru), "bn_gru_input");
        assert_eq!(bn.cell_name(CellBase::Rnn), "bn_rnn_input");
    }
}
