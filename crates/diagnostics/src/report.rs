//! The [`Report`] (serde, versioned, a terminal table as `Display`) and the entry points that
//! build it: [`diagnose`] (runs its own pass) and [`report_from_pass`] (reuses one).

use std::fmt;

use ndarray::{ArrayD, ArrayView3};
use rnnlab_cells::{Backward, BackwardOptions, OutputGrad, Recurrent, SeqCache};
use rnnlab_core::{Cell, Float, Parameterized, Result};
use serde::{Deserialize, Serialize};

use crate::{
    DiagnoseConfig, JacobianReport, LayerFlow, LossKind, ParamStat, Pascanu, StepSaturation, Verdict, gradient_flow,
    jacobian_analysis, layer_verdict, model_verdict, param_stats, saturation_trace,
};

/// The report format's version; bumped on any change a reader of the JSON would notice.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything known about one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    /// The layer index (0 = bottom).
    pub layer: usize,
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
    let mut saved: Vec<ArrayD<F>> = Vec::new();
    model.visit_params(&mut |_, p| saved.push(p.grad.to_owned()));
    model.zero_grad();
    let fwd = model.forward(x, None)?;
    let kind = match loss {
        OutputGrad::Last(_) => LossKind::Last,
        OutputGrad::Every(_) => LossKind::Every,
        OutputGrad::None => LossKind::FinalState,
    };
    let bwd = model.backward(&fwd.cache, loss, BackwardOptions::default().without_input_grad());
    let report = bwd.and_then(|bwd| {
        let r = report_from_pass(model, &fwd.cache, &bwd, kind, config);
        model.recycle_grads(bwd);
        r
    });
    let mut i = 0;
    model.visit_params_mut(&mut |_, mut p| {
        if let Some(g) = saved.get(i) {
            p.grad.assign(g);
        }
        i += 1;
    });
    model.recycle(fwd.cache);
    report
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
    let flows = gradient_flow(model, cache, grads, &config.flow)?;
    let mut jac = match &config.jacobian {
        Some(j) => jacobian_analysis(model, cache, config.flow.reference_step, j)?.into_iter().map(Some).collect(),
        None => vec![None; model.n_layers()],
    };
    let mut sat = match config.saturation_eps {
        Some(eps) => saturation_trace(model, cache, eps)?,
        None => vec![None; model.n_layers()],
    };
    let layers: Vec<LayerReport> = flows
        .into_iter()
        .zip(model.layers())
        .enumerate()
        .map(|(l, (flow, cell))| LayerReport {
            layer: l,
            hidden_dim: cell.hidden_dim(),
            verdict: layer_verdict(&flow, &config.thresholds),
            flow,
            jacobian: jac.get_mut(l).and_then(Option::take),
            saturation: sat.get_mut(l).and_then(Option::take),
            saturation_available: cell.probe().is_some(),
        })
        .collect();
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
    })
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
        writeln!(f)?;
        write!(
            f,
            "{:<5} {:<4} {:<7} {:>8} {:>6} {:>9} {:>8}",
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
                write!(f, "{:<5} {:<4} {:<7}", lr.layer, p.part, conv)?;
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
            if let Some(j) = &lr.jacobian {
                write!(f, "layer {} σ₁(∂s_T/∂s_(T−k)), T = {}, row 0 (* not converged):", lr.layer, j.reference_step)?;
                for ln in &j.lags {
                    let s = ln.sigma_max.first().copied().unwrap_or(0.0);
                    write!(f, " k={} {:.3e}{}", ln.lag, s, if ln.converged { "" } else { "*" })?;
                }
                writeln!(f)?;
                if let Some(svd) = &j.step_svd {
                    let sv = &svd.singular_values;
                    writeln!(
                        f,
                        "layer {} one-step Jacobian (t = {}, row {}): σ₁ {:.4}, σ_min {:.3e}, {} values",
                        lr.layer,
                        svd.step,
                        svd.row,
                        sv.first().copied().unwrap_or(0.0),
                        sv.last().copied().unwrap_or(0.0),
                        sv.len()
                    )?;
                }
                match &j.pascanu {
                    Pascanu::Applicable { gamma, sigma_max, spectral_radius, bound, vanishing_guaranteed } => writeln!(
                        f,
                        "layer {} Pascanu: σ₁(W_hh) = {sigma_max:.4}, ρ(W_hh) = {spectral_radius:.4}, γ = {gamma}, 1/γ = {bound:.4}: vanishing {}",
                        lr.layer,
                        if *vanishing_guaranteed {
                            "guaranteed (σ₁ < 1/γ)"
                        } else {
                            "not guaranteed (σ₁ ≥ 1/γ)"
                        }
                    )?,
                    Pascanu::NotApplicable { reason } => {
                        writeln!(f, "layer {} Pascanu: not applicable ({reason})", lr.layer)?
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
                        "layer {} saturation: {:.1}% of units (mean over steps), mean φ′/sup φ′ {:.3}",
                        lr.layer,
                        100.0 * sat,
                        md
                    )?;
                    if let (Some(first), Some(last)) = (s.first(), s.last()) {
                        for ((name, a), (_, b)) in first.gates.iter().zip(&last.gates) {
                            write!(f, "; {name} {a:.2}→{b:.2}")?;
                        }
                    }
                    writeln!(f)?;
                }
                _ if !lr.saturation_available => {
                    writeln!(f, "layer {} saturation: not available (the cell has no probe)", lr.layer)?
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
