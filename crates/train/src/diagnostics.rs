//! [`DiagnosticsRecorder`]: the `rnnlab-diagnostics` report of every N-th training step, from
//! that step's own forward and backward pass (no second pass), with update-to-weight ratios.

use rnnlab_core::{Cell, Error, Float, Result};
use rnnlab_diagnostics::{
    DiagnoseConfig, LossKind as DiagLoss, ParamSnapshot, Report, report_from_bidirectional_pass, report_from_pass,
};
use serde::{Deserialize, Serialize};

use crate::{Inspector, SeqModel, Stack, StackCache, StepView};

/// The report of one training step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Steps taken before the inspected one (0: the first step, at initialisation).
    pub step: u64,
    /// The batch's training loss.
    pub loss: f64,
    /// The report: gradient flow, verdict, saturation (where the cell tells), the Jacobian
    /// analysis if configured, and per-parameter statistics of the whole model (gradient norm
    /// before clipping, update-to-weight ratio of the step's update).
    pub report: Report,
}

/// Records a diagnostics [`Report`] every `every` steps (from step 0) of
/// [`crate::Trainer::run_inspected`]. The other steps cost nothing; an inspected step adds the
/// report's work (without the Jacobian analysis: the norms of the per-step gradients the
/// backward pass wrote anyway, ~4% of an LSTM H = 128 step, and a copy of the parameters for the
/// update ratios).
///
/// A bidirectional model gets one entry per layer and direction
/// ([`rnnlab_diagnostics::report_from_bidirectional_pass`], which says what lag means for the
/// reverse direction); with a last-step loss its reverse directions are reported as undefined,
/// because the read-out at t = T−1 reaches them only at the first step they process.
///
/// # Examples
/// ```
/// use rnnlab_optim::AdamConfig;
/// use rnnlab_tasks::AddingConfig;
/// use rnnlab_train::{CellConfig, DiagnosticsRecorder, ModelConfig, Silent, TrainConfig, Trainer};
/// let task = AddingConfig::new(20);
/// let model = ModelConfig::for_task(&task.build()?, 8, CellConfig::rnn());
/// let cfg = TrainConfig::new(task.into(), model, AdamConfig::new(1e-2).into()).with_n_steps(10);
/// let mut trainer = Trainer::<f32>::new(cfg)?;
/// let mut recorder = DiagnosticsRecorder::new(5)?;
/// trainer.run_inspected(&mut Silent, &mut recorder)?;
/// let steps: Vec<u64> = recorder.reports().iter().map(|r| r.step).collect();
/// assert_eq!(steps, [0, 5]);
/// println!("{}", recorder.reports()[0].report); // the verdict at initialisation, and why
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Debug)]
pub struct DiagnosticsRecorder<F> {
    every: u64,
    config: DiagnoseConfig,
    reports: Vec<StepReport>,
    before: Option<ParamSnapshot<F>>,
}

impl<F: Float> DiagnosticsRecorder<F> {
    /// A report every `every` steps with [`DiagnoseConfig::new`] less the Jacobian analysis.
    ///
    /// # Errors
    /// [`Error::Config`] for `every = 0`.
    pub fn new(every: u64) -> Result<Self> {
        Self::with_config(every, DiagnoseConfig::new().without_jacobian())
    }

    /// A report every `every` steps with the given settings.
    ///
    /// # Errors
    /// [`Error::Config`] for `every = 0` and as [`DiagnoseConfig::validate`].
    pub fn with_config(every: u64, config: DiagnoseConfig) -> Result<Self> {
        if every == 0 {
            return Err(Error::config("DiagnosticsRecorder", "every must be at least 1, got 0"));
        }
        config.validate()?;
        Ok(Self { every, config, reports: Vec::new(), before: None })
    }

    /// The reports so far, oldest first.
    pub fn reports(&self) -> &[StepReport] {
        &self.reports
    }

    /// Takes the reports.
    pub fn into_reports(self) -> Vec<StepReport> {
        self.reports
    }
}

impl<F: Float, C: Cell<F>> Inspector<F, C> for DiagnosticsRecorder<F> {
    fn wants(&mut self, step: u64) -> bool {
        step % self.every == 0
    }

    fn inspect(&mut self, view: StepView<'_, F, C>) -> Result<()> {
        let loss = if view.model.config().loss.every_step() { DiagLoss::Every } else { DiagLoss::Last };
        let report = match (view.model.rnn(), view.cache) {
            (Stack::Unidirectional(rnn), StackCache::Unidirectional(cache)) => {
                report_from_pass(rnn, cache, view.backward, loss, &self.config)?
            }
            (Stack::Bidirectional(rnn), StackCache::Bidirectional(cache)) => {
                report_from_bidirectional_pass(rnn, cache, &view.backward.step_grads, loss, &self.config)?
            }
            (stack, _) => {
                return Err(Error::shape(
                    "DiagnosticsRecorder",
                    format!(
                        "the cache of this {} stack",
                        if stack.is_bidirectional() { "bidirectional" } else { "unidirectional" }
                    ),
                    "a cache of the other kind",
                ));
            }
        };
        self.before = Some(ParamSnapshot::take(view.model));
        self.reports.push(StepReport { step: view.step, loss: view.loss, report });
        Ok(())
    }

    fn after_update(&mut self, step: u64, model: &SeqModel<F, C>) -> Result<()> {
        if let (Some(before), Some(last)) = (self.before.take(), self.reports.last_mut())
            && last.step == step
        {
            last.report.params = before.after(model)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CellConfig, LossKind, ModelConfig, Recorder, Silent, TrainConfig, Trainer};
    use rnnlab_core::Parameterized;
    use rnnlab_diagnostics::VerdictKind;
    use rnnlab_optim::SgdConfig;
    use rnnlab_tasks::AddingConfig;

    fn config(cell: CellConfig) -> TrainConfig {
        let task = AddingConfig::new(30);
        let model = ModelConfig::new(2, 16, 1, cell, LossKind::MseLast).with_seed(2);
        TrainConfig::new(task.into(), model, SgdConfig::new(1e-2).into()).with_n_steps(6).with_batch_size(8)
    }

    fn bits(t: &Trainer<f64>) -> Vec<u64> {
        let mut v = Vec::new();
        t.model().visit_params(&mut |_, p| v.extend(p.value.iter().map(|x| x.to_bits())));
        v
    }

    #[test]
    fn records_every_nth_step_without_changing_the_run() {
        let mut plain = Trainer::<f64>::new(config(CellConfig::lstm())).unwrap();
        let mut plain_rec = Recorder::default();
        plain.run(&mut plain_rec).unwrap();
        let mut inspected = Trainer::<f64>::new(config(CellConfig::lstm())).unwrap();
        let mut rec = Recorder::default();
        let mut diag = DiagnosticsRecorder::new(2).unwrap();
        inspected.run_inspected(&mut rec, &mut diag).unwrap();
        assert_eq!(bits(&plain), bits(&inspected));
        assert_eq!(plain_rec.steps, rec.steps);
        let reports = diag.into_reports();
        assert_eq!(reports.iter().map(|r| r.step).collect::<Vec<_>>(), [0, 2, 4]);
        for (r, m) in reports.iter().zip(rec.steps.iter().step_by(2)) {
            assert_eq!(r.loss, m.loss);
            assert_eq!(r.report.time, 30);
            assert_ne!(r.report.verdict.kind, VerdictKind::Undefined, "{}", r.report);
            // Every parameter of the model, with the ratio of the update the step made.
            assert_eq!(r.report.params.len(), 6);
            for p in &r.report.params {
                assert!(p.update_norm.is_some_and(|u| u > 0.0), "{p:?}");
                // The ratio exists where the weight is not zero (the biases start at 0).
                assert_eq!(p.update_ratio.is_some(), p.value_norm > 0.0, "{p:?}");
                assert!(p.update_ratio.is_none_or(|u| u < 1.0), "{p:?}");
            }
        }
    }

    #[test]
    fn a_tanh_rnn_at_initialisation_is_reported_as_vanishing_over_thirty_steps() {
        // Xavier-uniform W_hh scaled down: ‖∂h_t/∂h_{t−1}‖ < 1 at every step.
        let cell: CellConfig =
            serde_json::from_str(r#"{"kind": "rnn", "w_hh_init": {"xavier_uniform": {"gain": 0.5}}}"#).unwrap();
        let mut t = Trainer::<f64>::new(config(cell)).unwrap();
        let mut diag = DiagnosticsRecorder::new(100).unwrap();
        t.run_inspected(&mut Silent, &mut diag).unwrap();
        let first = &diag.reports()[0].report;
        assert_eq!(first.verdict.kind, VerdictKind::Vanishing, "{first}");
    }

    #[test]
    fn records_a_bidirectional_model_per_layer_and_direction() {
        // A loss on every step (copy memory): both directions carry gradient through their
        // recurrences. A loss on the last step (adding): only the forward ones do.
        let copy: rnnlab_tasks::TaskConfig = rnnlab_tasks::CopyMemoryConfig::new(10).into();
        let adding: rnnlab_tasks::TaskConfig = AddingConfig::new(20).into();
        let model = |task: &rnnlab_tasks::TaskConfig| {
            ModelConfig::for_task(&task.build().unwrap(), 8, CellConfig::gru())
                .with_n_layers(2)
                .with_bidirectional(true)
                .with_seed(3)
        };
        for (task, is_every) in [(copy, true), (adding, false)] {
            let m = model(&task);
            assert_eq!(m.loss.every_step(), is_every);
            let cfg = TrainConfig::new(task, m, SgdConfig::new(1e-2).into()).with_n_steps(4).with_batch_size(4);
            let mut plain = Trainer::<f64>::new(cfg.clone()).unwrap();
            plain.run(&mut Silent).unwrap();
            let mut t = Trainer::<f64>::new(cfg).unwrap();
            let mut diag = DiagnosticsRecorder::new(3).unwrap();
            t.run_inspected(&mut Silent, &mut diag).unwrap();
            assert_eq!(bits(&plain), bits(&t), "recording changed the run");
            let reports = diag.into_reports();
            assert_eq!(reports.iter().map(|r| r.step).collect::<Vec<_>>(), [0, 3]);
            for r in &reports {
                let rep = &r.report;
                assert!(rep.bidirectional);
                let dirs: Vec<_> = rep.layers.iter().map(|l| (l.layer, l.direction)).collect();
                use rnnlab_cells::Direction::{Forward, Reverse};
                assert_eq!(dirs, [(0, Some(Forward)), (0, Some(Reverse)), (1, Some(Forward)), (1, Some(Reverse))]);
                for l in &rep.layers {
                    let defined = l.verdict.kind != VerdictKind::Undefined;
                    // The reverse directions are undefined exactly when the loss reads the last step only.
                    assert_eq!(defined, is_every || l.direction == Some(Forward), "{rep}");
                }
                // Both directions' parameters and the head, with the step's update ratios.
                assert_eq!(rep.params.len(), 2 * 2 * 4 + 2);
                assert!(rep.params.iter().all(|p| p.update_norm.is_some()), "{rep}");
            }
        }
    }

    #[test]
    fn zero_period_is_refused() {
        assert!(matches!(DiagnosticsRecorder::<f32>::new(0), Err(Error::Config { .. })));
    }
}
