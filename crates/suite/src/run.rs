//! One run of the suite: the diagnosis of the model at initialisation and, if asked, its
//! training — single-threaded and a pure function of its config, so results do not depend on
//! scheduling.

use std::time::Instant;

use rnnlab_core::{Cell, Result};
use rnnlab_diagnostics::{DiagnoseConfig, JacobianConfig, Pascanu, Report};
use rnnlab_train::{
    CellConfig, Control, DiagnosticsRecorder, EvalMetrics, Observer, Recorder, StepMetrics, TrainConfig, Trainer,
};
use serde::{Deserialize, Serialize};

use crate::{CustomCells, RunSpec};

/// A run reports its training step and loss to its watcher at most this many times (and at
/// its last step), so that a progress display costs nothing measurable.
pub const STEP_REPORTS: u64 = 100;

/// A training run counts as solved when its final held-out loss is below this fraction of the
/// task's baseline (the loss of the best memoryless predictor).
pub const SOLVED_FRACTION: f64 = 0.1;

/// At most this many points of a run's per-step traces (pre-clip norm, training loss) are kept,
/// evenly spaced.
pub const TRACE_POINTS: usize = 200;

/// What one run measured. Absent values are `null` (never NaN): a metric that does not apply
/// (a run that was not trained, a cell without a single `w_hh`) or could not be computed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// At initialisation, top layer, h part: ‖∂L/∂h_{T−1−k}‖ / ‖∂L/∂h_{T−1}‖ for k = 0..T−1
    /// (geometric mean over the probe batch), the loss on the last step through the head.
    pub grad_norm_by_lag: Vec<f64>,
    /// The 10th percentile over the batch of the same ratio, per lag.
    pub grad_norm_p10: Vec<f64>,
    /// The 90th percentile, per lag.
    pub grad_norm_p90: Vec<f64>,
    /// The fitted per-step decay factor of that curve.
    pub decay_factor: Option<f64>,
    /// R² of the fit.
    pub decay_r2: Option<f64>,
    /// The memory horizon: the largest lag whose relative norm (and every shorter lag's) is at
    /// least 1e-3.
    pub horizon: Option<usize>,
    /// Whether the horizon is capped at T − 1 (the curve never fell below the threshold).
    pub horizon_capped: bool,
    /// The diagnostics verdict at initialisation (`vanishing`, `healthy`, `exploding`,
    /// `undefined`).
    pub verdict: String,
    /// σ₁(W_hh) of layer 0, where the cell has a single recurrent weight.
    pub sigma1_whh: Option<f64>,
    /// Pascanu et al.'s bound 1/γ for it (σ₁ below it guarantees vanishing).
    pub pascanu_bound: Option<f64>,
    /// Mean over steps of the fraction of saturated units at initialisation (top layer), where
    /// the cell reports it.
    pub saturation: Option<f64>,
    /// Mean derivative of the activation at initialisation (top layer), where reported.
    pub mean_derivative: Option<f64>,
    /// Mean of the forget gate (LSTM) at initialisation, where reported.
    pub forget_gate: Option<f64>,
    /// Whether the run was trained.
    pub trained: bool,
    /// The final held-out loss.
    pub final_loss: Option<f64>,
    /// The final held-out accuracy (classification; regression: within 0.04 squared error).
    pub test_accuracy: Option<f64>,
    /// The task's baseline loss.
    pub baseline_loss: f64,
    /// Final loss < [`SOLVED_FRACTION`] × baseline.
    pub solved: Option<bool>,
    /// The first evaluation step at which the held-out loss was under the solved line.
    pub steps_to_solve: Option<u64>,
    /// Whether training diverged (non-finite or exploding loss).
    pub diverged: bool,
    /// Why, when it did.
    pub divergence: Option<String>,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Wall time of the whole run (ms).
    pub wall_ms: f64,
    /// The held-out loss at each evaluation: `[step, loss]`.
    pub eval_curve: Vec<(u64, f64)>,
    /// The training loss, at most [`TRACE_POINTS`] evenly spaced steps: `[step, loss]`.
    pub loss_trace: Vec<(u64, f64)>,
    /// The gradient norm before clipping, the same steps: `[step, norm]`.
    pub pre_clip_trace: Vec<(u64, f64)>,
    /// The fraction of steps whose gradient the clipping changed.
    pub clip_fraction: Option<f64>,
}

/// The outcome of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The run's id (with `#k` for the k-th extra seed).
    pub id: String,
    /// Its label.
    pub label: String,
    /// The seed offset k (0 for the grid's own seeds).
    pub replicate: u64,
    /// The config that ran (seeds included).
    pub config: TrainConfig,
    /// What it measured.
    pub metrics: Metrics,
    /// An error that stopped the run (the suite goes on); `null` if it finished.
    pub error: Option<String>,
}

/// `spec` with its seeds moved by `k` (model, batches and held-out set).
pub fn replicate(spec: &RunSpec, k: u64) -> RunSpec {
    let mut s = spec.clone();
    if k > 0 {
        s.id = format!("{}#{k}", spec.id);
        s.config.seed = spec.config.seed.wrapping_add(k);
        s.config.model.seed = spec.config.model.seed.wrapping_add(k);
    }
    s
}

/// Runs one spec (single-threaded use is the caller's business): a failure is recorded in the
/// result, not returned. A custom cell fails here (it needs its maker: [`run_with`]).
pub fn run(spec: &RunSpec, k: u64) -> RunResult {
    run_with(spec, k, &CustomCells::new(), &mut |_, _| {})
}

/// [`run`] with the makers of the custom cells the spec may name, telling `on_step(step, loss)`
/// the training step and loss up to [`STEP_REPORTS`] times (and at the last step). The result
/// does not depend on `on_step`.
pub fn run_with(spec: &RunSpec, k: u64, cells: &CustomCells, on_step: &mut dyn FnMut(u64, f64)) -> RunResult {
    let start = Instant::now();
    let mut metrics = Metrics::default();
    let measured = match &spec.config.model.cell {
        CellConfig::Custom(c) => cells.measure(&c.name, spec, &mut metrics, on_step),
        _ => measure(spec, &mut metrics, on_step, Trainer::<f32>::new),
    };
    let error = measured.err().map(|e| e.to_string());
    metrics.wall_ms = start.elapsed().as_secs_f64() * 1e3;
    RunResult {
        id: spec.id.clone(),
        label: spec.label.clone(),
        replicate: k,
        config: spec.config.clone(),
        metrics,
        error,
    }
}

/// Forwards every step and evaluation to the recorder, and every `every`-th step (and the last)
/// to the watcher.
struct Watched<'a> {
    rec: &'a mut Recorder,
    every: u64,
    last: u64,
    on_step: &'a mut dyn FnMut(u64, f64),
}

impl Observer for Watched<'_> {
    fn on_step(&mut self, m: &StepMetrics) -> Control {
        if m.step % self.every == 0 || m.step == self.last {
            (self.on_step)(m.step, m.loss);
        }
        self.rec.on_step(m)
    }

    fn on_eval(&mut self, m: &EvalMetrics) -> Control {
        self.rec.on_eval(m)
    }
}

/// Measures a run whose trainers `build` makes (from the run's config, or the probe's).
pub(crate) fn measure<C: Cell<f32>>(
    spec: &RunSpec,
    m: &mut Metrics,
    on_step: &mut dyn FnMut(u64, f64),
    build: impl Fn(TrainConfig) -> Result<Trainer<f32, C>>,
) -> Result<()> {
    // Diagnosis at initialisation: the first training step's own pass on a probe batch.
    let mut probe_cfg = spec.config.clone().with_batch_size(spec.probe_batch).with_n_steps(1).with_eval_every(0);
    probe_cfg.eval_batch = probe_cfg.eval_batch.min(spec.probe_batch);
    let diagnose =
        DiagnoseConfig::new().with_jacobian(JacobianConfig { lags: Some(vec![1]), ..JacobianConfig::default() });
    let mut probe = build(probe_cfg)?;
    let mut recorder = DiagnosticsRecorder::with_config(u64::MAX, diagnose)?;
    probe.run_inspected(&mut rnnlab_train::Silent, &mut recorder)?;
    m.baseline_loss = probe.data().baseline_loss();
    if let Some(first) = recorder.reports().first() {
        init_metrics(&first.report, m);
    }
    if !spec.train {
        return Ok(());
    }
    let mut trainer = build(spec.config.clone())?;
    let mut rec = Recorder::default();
    let n_steps = spec.config.n_steps;
    let every = (n_steps / STEP_REPORTS).max(1);
    let summary = trainer.run(&mut Watched { rec: &mut rec, every, last: n_steps, on_step })?;
    m.trained = true;
    m.steps = summary.steps;
    m.baseline_loss = summary.baseline_loss;
    m.diverged = summary.diverged.is_some();
    m.divergence = summary.diverged.as_ref().map(|d| format!("{:?} at step {} (loss {})", d.reason, d.step, d.loss));
    if let Some(e) = &summary.final_eval {
        m.final_loss = Some(e.loss).filter(|l| l.is_finite());
        m.test_accuracy = Some(e.accuracy).filter(|a| a.is_finite());
    }
    let line = SOLVED_FRACTION * summary.baseline_loss;
    m.solved = Some(!m.diverged && m.final_loss.is_some_and(|l| l < line));
    m.eval_curve = rec.evals.iter().filter(|e| e.loss.is_finite()).map(|e| (e.step, e.loss)).collect();
    m.steps_to_solve = rec.evals.iter().find(|e| e.loss < line).map(|e| e.step);
    let every = (rec.steps.len() / TRACE_POINTS).max(1);
    let sampled = rec.steps.iter().step_by(every);
    m.loss_trace = sampled.clone().filter(|s| s.loss.is_finite()).map(|s| (s.step, s.loss)).collect();
    m.pre_clip_trace = sampled.filter(|s| s.pre_clip_norm.is_finite()).map(|s| (s.step, s.pre_clip_norm)).collect();
    if !rec.steps.is_empty() {
        m.clip_fraction = Some(rec.steps.iter().filter(|s| s.clip_fired).count() as f64 / rec.steps.len() as f64);
    }
    Ok(())
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The metrics at initialisation from the diagnostics report.
fn init_metrics(report: &Report, m: &mut Metrics) {
    m.verdict = report.verdict.kind.to_string();
    let Some(top) = report.layers.last() else { return };
    if let Some(h) = top.flow.parts.first() {
        m.grad_norm_by_lag = h.geo_mean.clone();
        m.grad_norm_p10 = h.p10.clone();
        m.grad_norm_p90 = h.p90.clone();
        m.decay_factor = h.fit.as_ref().and_then(|f| finite(f.factor));
        m.decay_r2 = h.fit.as_ref().and_then(|f| finite(f.r2));
        m.horizon = h.horizon.as_ref().map(|h| h.lag);
        m.horizon_capped = h.horizon.as_ref().is_some_and(|h| h.capped);
    }
    if let Some(steps) = &top.saturation
        && !steps.is_empty()
    {
        let n = steps.len() as f64;
        m.saturation = finite(steps.iter().map(|s| s.saturated).sum::<f64>() / n);
        m.mean_derivative = finite(steps.iter().map(|s| s.mean_derivative).sum::<f64>() / n);
        let forget: Vec<f64> =
            steps.iter().filter_map(|s| s.gates.iter().find(|(g, _)| g == "f").map(|(_, v)| *v)).collect();
        if !forget.is_empty() {
            m.forget_gate = finite(forget.iter().sum::<f64>() / forget.len() as f64);
        }
    }
    if let Some(Pascanu::Applicable { sigma_max, bound, .. }) =
        report.layers.first().and_then(|l| l.jacobian.as_ref()).map(|j| &j.pascanu)
    {
        m.sigma1_whh = finite(*sigma_max);
        m.pascanu_bound = finite(*bound);
    }
}
