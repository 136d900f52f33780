//! The [`Report`] (serde, versioned, a terminal table as `Display`) and the entry points that
//! build it: [`diagnose`] (runs its own pass) and [`report_from_pass`] (reuses one); the
//! bidirectional ones are in `bidirectional.rs`.

use std::fmt;

use ndarray::{ArrayD, ArrayView3};
use rnnlab_cells::{Backward, BackwardOptions, Direction, OutputGrad, Recurrent, SeqCache};
use rnnlab_core::{Cell, Float, Parameterized, Result};
use serde::{Deserialize, Serialize};

use crate::{
    DiagnoseConfig, FlowConfig, JacobianReport, LayerFlow, LossKind, ParamStat, Pascanu, StepSaturation, Verdict,
    direction_verdict, gradient_flow, jacobian_analysis, model_verdict, param_stats, saturation_trace,
};

/// The report format's version; bumped on any change a reader of the JSON would notice.
///
/// 2: bidirectional models — `Report::bidirectional`, `LayerReport::direction` and
/// `Verdict::direction` (all defaulted when absent, so a version-1 file still reads).
pub const SCHEMA_VERSION: u32 = 2;

/// Everything known about one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    /// The layer index (0 = bottom).
    pub layer: usize,
    /// The direction of a bidirectional model's layer; `None` in a unidirectional model.
    ///
    /// Every step index and per-step list of a [`Direction::Reverse`] entry (the curves'
    /// `reference_step`, the Jacobian's steps, the saturation trace) is in that direction's
    /// *processing* order τ = T − 1 − t: the entry is exactly the report of a unidirectional
    /// model with the reverse cell run on the time-reversed input. [`LayerReport::time_of_step`]
    /// and [`LayerReport::time_of_lag`] give the original time t.
    #[serde(default)]
    pub direction: Option<Direction>,
    /// Its hidden width.
    pub hidden_dim: usize,
    /// The gradient flow of each state part.
    pub flow: LayerFlow,
    /// The layer's verdict.
    pub verdict: Verdict,
    /// The Jacobian analysis, if asked for.
    pub jacobian: Option<JacobianReport>,
    /// Saturation per step; `None` if not asked for or not available from the cell.
    pub saturation: Option<Vec<StepSaturation>>,
    /// Whether the cell reports saturation at all.
    pub saturation_available: bool,
}

/// A diagnosis of one pass: the model's verdict, each layer's curves and analyses, and the
/// parameter statistics.
///
/// # Examples
/// A tanh RNN with small random recurrent weights: its gradient vanishes, and the report, as
/// JSON, reads back as the same report.
/// ```
/// use ndarray::{Array2, Array3};
/// use rnnlab_cells::{OutputGrad, Recurrent, RnnConfig};
/// use rnnlab_diagnostics::{DiagnoseConfig, Report, VerdictKind, diagnose};
/// use rnnlab_init::Init;
/// let config = RnnConfig::new(1, 16).with_w_hh_init(Init::Normal { mean: 0.0, std: 0.05 });
/// let mut rnn = Recurrent::new(vec![config.init::<f64>(&mut rnnlab_core::seeded_rng(0))?])?;
/// let x = Array3::from_elem((30, 2, 1), 0.5);
/// let g = Array2::ones((2, 16));
/// let report = diagnose(&mut rnn, x.view(), OutputGrad::Last(g.view()), &DiagnoseConfig::new())?;
/// assert_eq!(report.verdict.kind, VerdictKind::Vanishing);
/// let back: Report = serde_json::from_str(&report.to_json()?).expect("the report's own JSON");
/// assert_eq!(back.verdict, report.verdict);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// The bottom cell's name (`"lstm"`).
    pub cell: String,
    /// `"f32"` or `"f64"`.
    pub precision: String,
    /// The number of time steps T.
    pub time: usize,
    /// The batch size B.
    pub batch: usize,
    /// Where the loss reads the network.
    pub loss: LossKind,
    /// The model's verdict (the worst layer's).
    pub verdict: Verdict,
    /// One entry per layer, bottom first.
    pub layers: Vec<LayerReport>,
    /// Per-parameter statistics.
    pub params: Vec<ParamStat>,
    /// Whether the model is bidirectional: `layers` then holds layer 0 forward, layer 0
    /// reverse, layer 1 forward, … (PyTorch's order), each with its `direction`.
    #[serde(default)]
    pub bidirectional: bool,
}

impl LayerReport {
    /// The original time index t of this layer's step τ (an index of its per-step lists and
    /// step fields) in a sequence of `time` steps: τ itself, or T − 1 − τ for a reverse
    /// direction; `None` past the sequence.
    pub fn time_of_step(&self, step: usize, time: usize) -> Option<usize> {
        if step >= time {
            return None;
        }
        Some(if self.direction == Some(Direction::Reverse) { time - 1 - step } else { step })
    }

    /// The original time index t of the state at lag `lag` of this layer's curves, in a
    /// sequence of `time` steps; `None` past the sequence (or without a curve).
    ///
    /// With t_r the time where the curves start (lag 0, where the loss enters that direction):
    /// t = t_r − k for a forward direction (and a unidirectional layer), whose gradient flows
    /// back in time; t = t_r + k for a reverse direction, which reads the sequence from its
    /// end, so its gradient flows from early steps to later ones.
    ///
    /// # Examples
    /// A reverse direction's curve relative to t_r = 0 (the last step it processes, where a
    /// loss on every step or on the final states enters last) has lag k at t = k:
    /// ```
    /// # use rnnlab_diagnostics::LayerReport;
    /// # fn check(reverse: &LayerReport) {
    /// assert_eq!(reverse.time_of_lag(3, 50), Some(3));
    /// # }
    /// ```
    pub fn time_of_lag(&self, lag: usize, time: usize) -> Option<usize> {
        let reference = self.flow.parts.first()?.reference_step;
        self.time_of_step(reference.checked_sub(lag)?, time)
    }

    /// `"0"`, or `"0 fwd"` / `"0 rev"` for a direction of a bidirectional layer.
    pub fn label(&self) -> String {
        match self.direction {
            None => self.layer.to_string(),
            Some(Direction::Forward) => format!("{} fwd", self.layer),
            Some(Direction::Reverse) => format!("{} rev", self.layer),
        }
    }
}

impl Report {
    /// The report as pretty JSON.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Format`] if serialisation fails (it does not for a report built
    /// here: every number in it is finite).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| rnnlab_core::Error::format("Report::to_json", e.to_string()))
    }
}

/// Runs `model` forward on `x` `[time, batch, input_dim]` (from zero states) and backward from
/// `loss`, then builds the whole [`Report`] from that pass.
///
/// The parameter gradients are left as they were: the pass's own gradients (reported in
/// `params`) are added, read and then replaced by the previous values. The forward pass does
/// update batch-norm running statistics if the model is in training mode.
///
/// # Errors
/// As [`Recurrent::forward`] / [`Recurrent::backward`] (shapes, NaN inputs) and
/// [`report_from_pass`] (invalid config, NaN gradients).
///
/// # Examples
/// ```
/// use ndarray::{Array2, Array3};
/// use rnnlab_cells::{OutputGrad, Recurrent, RnnConfig};
/// use rnnlab_diagnostics::{DiagnoseConfig, diagnose};
/// let mut net = Recurrent::new(vec![RnnConfig::new(2, 8).init::<f64>(&mut rnnlab_core::seeded_rng(0))?])?;
/// let x = Array3::from_elem((30, 4, 2), 0.5);
/// let g = Array2::ones((4, 8)); // loss = Σ h_{T−1}
/// let report = diagnose(&mut net, x.view(), OutputGrad::Last(g.view()), &DiagnoseConfig::new())?;
/// println!("{report}");
/// assert!(report.layers[0].flow.parts[0].fit.is_some());
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn diagnose<F: Float, C: Cell<F>>(
    model: &mut Recurrent<F, C>,
    x: ArrayView3<'_, F>,
    loss: OutputGrad<'_, F>,
    config: &DiagnoseConfig,
) -> Result<Report> {
    config.validate()?;
    let saved = take_grads(model);
    let fwd = model.forward(x, None)?;
    let kind = loss_kind(&loss);
    let bwd = model.backward(&fwd.cache, loss, BackwardOptions::default().without_input_grad());
    let report = bwd.and_then(|bwd| {
        let r = report_from_pass(model, &fwd.cache, &bwd, kind, config);
        model.recycle_grads(bwd);
        r
    });
    restore_grads(model, &saved);
    model.recycle(fwd.cache);
    report
}

/// The report's wording of an output gradient.
pub(crate) fn loss_kind<F>(loss: &OutputGrad<'_, F>) -> LossKind {
    match loss {
        OutputGrad::Last(_) => LossKind::Last,
        OutputGrad::Every(_) => LossKind::Every,
        OutputGrad::None => LossKind::FinalState,
    }
}

/// The parameter gradients, copied, and then zeroed.
pub(crate) fn take_grads<F: Float>(model: &mut dyn Parameterized<F>) -> Vec<ArrayD<F>> {
    let mut saved: Vec<ArrayD<F>> = Vec::new();
    model.visit_params(&mut |_, p| saved.push(p.grad.to_owned()));
    model.zero_grad();
    saved
}

/// Puts back the gradients [`take_grads`] copied (in the same visiting order).
pub(crate) fn restore_grads<F: Float>(model: &mut dyn Parameterized<F>, saved: &[ArrayD<F>]) {
    let mut i = 0;
    model.visit_params_mut(&mut |_, mut p| {
        if let Some(g) = saved.get(i) {
            p.grad.assign(g);
        }
        i += 1;
    });
}

/// The [`Report`] of a finished pass: `cache` from `model`'s latest forward, `grads` its
/// backward (a training step's own, no second pass). `params` reports the gradients the
/// model holds now.
///
/// # Errors
/// [`rnnlab_core::Error::Config`] for an invalid config; as [`gradient_flow`],
/// [`jacobian_analysis`] and [`saturation_trace`] otherwise.
pub fn report_from_pass<F: Float, C: Cell<F>>(
    model: &Recurrent<F, C>,
    cache: &SeqCache<F>,
    grads: &Backward<F>,
    loss: LossKind,
    config: &DiagnoseConfig,
) -> Result<Report> {
    config.validate()?;
    let layers = layer_reports(model, cache, grads, &config.flow, config, None)?;
    let verdicts: Vec<Verdict> = layers.iter().map(|l| l.verdict.clone()).collect();
    let cell = model.layers().first().map(|c| c.name()).unwrap_or("none");
    Ok(Report {
        schema: SCHEMA_VERSION,
        cell: cell.to_string(),
        precision: F::NAME.to_string(),
        time: cache.time(),
        batch: cache.batch(),
        loss,
        verdict: model_verdict(&verdicts),
        layers,
        params: param_stats(model),
        bidirectional: false,
    })
}

/// The layer reports of one unidirectional stack's pass, with the curves of `flow` (the
/// Jacobian products end at `config.flow`'s reference step). `as_direction = Some((l, dir))`
/// labels a one-layer stack as direction `dir` of layer `l` of a bidirectional model.
pub(crate) fn layer_reports<F: Float, C: Cell<F>>(
    model: &Recurrent<F, C>,
    cache: &SeqCache<F>,
    grads: &Backward<F>,
    flow: &FlowConfig,
    config: &DiagnoseConfig,
    as_direction: Option<(usize, Direction)>,
) -> Result<Vec<LayerReport>> {
    let flows = gradient_flow(model, cache, grads, flow)?;
    let mut jac = match &config.jacobian {
        Some(j) => jacobian_analysis(model, cache, config.flow.reference_step, j)?.into_iter().map(Some).collect(),
        None => vec![None; model.n_layers()],
    };
    let mut sat = match config.saturation_eps {
        Some(eps) => saturation_trace(model, cache, eps)?,
        None => vec![None; model.n_layers()],
    };
    Ok(flows
        .into_iter()
        .zip(model.layers())
        .enumerate()
        .map(|(l, (mut flow, cell))| {
            let (layer, direction) = match as_direction {
                Some((layer, dir)) => (layer, Some(dir)),
                None => (l, None),
            };
            flow.layer = layer;
            let mut jacobian = jac.get_mut(l).and_then(Option::take);
            if let Some(j) = jacobian.as_mut() {
                j.layer = layer;
            }
            LayerReport {
                layer,
                direction,
                hidden_dim: cell.hidden_dim(),
                verdict: direction_verdict(&flow, direction, &config.thresholds),
                flow,
                jacobian,
                saturation: sat.get_mut(l).and_then(Option::take),
                saturation_available: cell.probe().is_some(),
            }
        })
        .collect())
}

/// Lags shown in the terminal table.
const SHOWN_LAGS: [usize; 5] = [1, 10, 30, 100, 300];

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loss = match self.loss {
            LossKind::Last => "loss on the last step",
            LossKind::Every => "loss on every step (curves mix lags)",
            LossKind::FinalState => "loss on the final state",
        };
        writeln!(
            f,
            "rnnlab diagnostics v{}: {} {}, T = {}, B = {}, {loss}",
            self.schema, self.cell, self.precision, self.time, self.batch
        )?;
        writeln!(f, "verdict: {}  ({})", self.verdict.kind, self.verdict.reason)?;
        if self.bidirectional {
            for dir in Direction::BOTH {
                let Some(lr) = self.layers.iter().find(|l| l.direction == Some(dir)) else { continue };
                let Some(t0) = lr.time_of_lag(0, self.time) else { continue };
                let (name, sign, flows) = match dir {
                    Direction::Forward => ("fwd", "−", "back in time"),
                    Direction::Reverse => ("rev", "+", "forward in time: it reads the sequence backwards"),
                };
                writeln!(f, "{name}: lag k is step t = {t0} {sign} k (the gradient flows {flows})")?;
            }
        }
        writeln!(f)?;
        let lw = if self.bidirectional { 7 } else { 5 };
        write!(
            f,
            "{:<lw$} {:<4} {:<7} {:>8} {:>6} {:>9} {:>8}",
            "layer", "part", "conv", "decay", "R²", "fit lags", "horizon"
        )?;
        for k in SHOWN_LAGS {
            write!(f, " {:>9}", format!("lag {k}"))?;
        }
        writeln!(f)?;
        for lr in &self.layers {
            for p in &lr.flow.parts {
                let conv = match p.convention {
                    crate::Convention::Total => "total",
                    crate::Convention::Partial => "partial",
                };
                write!(f, "{:<lw$} {:<4} {:<7}", lr.label(), p.part, conv)?;
                if p.undefined.is_some() {
                    writeln!(f, " undefined: zero gradient at the reference step")?;
                    continue;
                }
                match &p.fit {
                    Some(fit) => write!(
                        f,
                        " {:>8.4} {:>6.3} {:>9}",
                        fit.factor,
                        fit.r2,
                        format!("{}–{}", fit.first_lag, fit.last_lag)
                    )?,
                    None => write!(f, " {:>8} {:>6} {:>9}", "–", "–", "–")?,
                }
                match &p.horizon {
                    Some(h) => write!(f, " {:>8}", format!("{}{}", if h.capped { "≥" } else { "" }, h.lag))?,
                    None => write!(f, " {:>8}", "–")?,
                }
                for k in SHOWN_LAGS {
                    match p.geo_mean.get(k) {
                        Some(v) => write!(f, " {v:>9.2e}")?,
                        None => write!(f, " {:>9}", "")?,
                    }
                }
                writeln!(f)?;
            }
        }
        for lr in &self.layers {
            let name = lr.label();
            if let Some(j) = &lr.jacobian {
                if lr.direction == Some(Direction::Reverse) {
                    let t = lr.time_of_step(j.reference_step, self.time).unwrap_or(0);
                    write!(f, "layer {name} σ₁(∂s_t/∂s_(t+k)), t = {t}, row 0 (* not converged):")?;
                } else {
                    write!(f, "layer {name} σ₁(∂s_T/∂s_(T−k)), T = {}, row 0 (* not converged):", j.reference_step)?;
                }
                for ln in &j.lags {
                    let s = ln.sigma_max.first().copied().unwrap_or(0.0);
                    write!(f, " k={} {:.3e}{}", ln.lag, s, if ln.converged { "" } else { "*" })?;
                }
                writeln!(f)?;
                if let Some(svd) = &j.step_svd {
                    let sv = &svd.singular_values;
                    writeln!(
                        f,
                        "layer {name} one-step Jacobian (t = {}, row {}): σ₁ {:.4}, σ_min {:.3e}, {} values",
                        lr.time_of_step(svd.step, self.time).unwrap_or(svd.step),
                        svd.row,
                        sv.first().copied().unwrap_or(0.0),
                        sv.last().copied().unwrap_or(0.0),
                        sv.len()
                    )?;
                }
                match &j.pascanu {
                    Pascanu::Applicable { gamma, sigma_max, spectral_radius, bound, vanishing_guaranteed } => writeln!(
                        f,
                        "layer {name} Pascanu: σ₁(W_hh) = {sigma_max:.4}, ρ(W_hh) = {spectral_radius:.4}, γ = {gamma}, 1/γ = {bound:.4}: vanishing {}",
                        if *vanishing_guaranteed {
                            "guaranteed (σ₁ < 1/γ)"
                        } else {
                            "not guaranteed (σ₁ ≥ 1/γ)"
                        }
                    )?,
                    Pascanu::NotApplicable { reason } => {
                        writeln!(f, "layer {name} Pascanu: not applicable ({reason})")?
                    }
                }
            }
            match &lr.saturation {
                Some(s) if !s.is_empty() => {
                    let n = s.len() as f64;
                    let sat = s.iter().map(|x| x.saturated).sum::<f64>() / n;
                    let md = s.iter().map(|x| x.mean_derivative).sum::<f64>() / n;
                    write!(
                        f,
                        "layer {name} saturation: {:.1}% of units (mean over steps), mean φ′/sup φ′ {:.3}",
                        100.0 * sat,
                        md
                    )?;
                    if let (Some(first), Some(last)) = (s.first(), s.last()) {
                        for ((gate, a), (_, b)) in first.gates.iter().zip(&last.gates) {
                            write!(f, "; {gate} {a:.2}→{b:.2}")?;
                        }
                        if lr.direction == Some(Direction::Reverse) && !first.gates.is_empty() {
                            write!(f, " (in its order, t = T−1 → 0)")?;
                        }
                    }
                    writeln!(f)?;
                }
                _ if !lr.saturation_available => {
                    writeln!(f, "layer {name} saturation: not available (the cell has no probe)")?
                }
                _ => {}
            }
        }
        if !self.params.is_empty() {
            writeln!(f)?;
            writeln!(f, "{:<24} {:>10} {:>10} {:>10}", "parameter", "‖θ‖", "‖∂L/∂θ‖", "‖Δθ‖/‖θ‖")?;
            for p in &self.params {
                let ratio = p.update_ratio.map(|r| format!("{r:.2e}")).unwrap_or_else(|| "–".into());
                writeln!(f, "{:<24} {:>10.3e} {:>10.3e} {:>10}", p.name, p.value_norm, p.grad_norm, ratio)?;
            }
        }
        Ok(())
    }
}
