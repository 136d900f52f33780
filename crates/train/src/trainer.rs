//! The [`Trainer`]: batches from a task, forward, loss, backward, finite check, clip, schedule,
//! step; evaluation on a fixed held-out set; observers; divergence as an outcome, not a crash.

use std::time::Instant;

use rnnlab_core::{Cell, Error, Float, Parameterized, Result, Rng, seeded_rng};
use rnnlab_optim::{FiniteOutcome, NonFiniteCounter, NonFinitePolicy, Optimizer, check_finite, clip};
use rnnlab_tasks::{Batch, DataSource, TaskConfig};
use serde::{Deserialize, Serialize};

use crate::model::Pass;
use crate::{
    AnyCell, Control, Divergence, DivergenceReason, EvalMetrics, GradOptions, Inspector, LossAndGrad, NoInspector,
    Observer, RECENT_LOSSES, RunSummary, SeqModel, StepMetrics, StepView, TrainConfig,
};

/// The progress of a run, saved in checkpoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunState {
    pub(crate) step: u64,
    pub(crate) initial_loss: Option<f64>,
    pub(crate) last_loss: Option<f64>,
    pub(crate) recent_losses: Vec<f64>,
    pub(crate) last_eval: Option<EvalMetrics>,
    pub(crate) best_eval: Option<EvalMetrics>,
    pub(crate) non_finite: NonFiniteCounter,
    pub(crate) diverged: Option<Divergence>,
}

/// Trains a [`SeqModel`] on a task as a [`TrainConfig`] says, deterministically: the same
/// config gives bit-identical parameters on every run (model draws from `model.seed`,
/// batches from `seed`, the held-out set from `eval_seed` on ChaCha8 stream 1).
///
/// One step (0-based index t):
///
/// ```text
/// batch ← task.sample(batch_size, rng)          zero_grad
/// forward → loss → (diverged? stop) → backward   (∂L/∂x skipped, buffers recycled)
/// check_finite(policy) → clip → lr ← schedule.lr_at(lr₀, t) → optimizer.step
/// observer.on_step; every eval_every steps: evaluate, observer.on_eval
/// ```
///
/// A trainer of the built-in cells comes from a config alone ([`Trainer::new`]); a model of
/// your own cell or your own data come in through [`Trainer::with_parts`] (the config then says
/// `{"kind": "custom", …}` for the cell and `{"task": "data", …}` for the data).
///
/// # Examples
/// ```
/// use rnnlab_optim::{AdamConfig, ClipConfig};
/// use rnnlab_tasks::AddingConfig;
/// use rnnlab_train::{CellConfig, ModelConfig, Silent, TrainConfig, Trainer};
/// let task = AddingConfig::new(10);
/// let model = ModelConfig::for_task(&task.build()?, 8, CellConfig::lstm());
/// let cfg = TrainConfig::new(task.into(), model, AdamConfig::new(1e-2).into())
///     .with_clip(ClipConfig::global_norm(1.0))
///     .with_n_steps(20)
///     .with_eval_batch(64);
/// let mut trainer = Trainer::<f32>::new(cfg)?;
/// let summary = trainer.run(&mut Silent)?;
/// assert_eq!(summary.steps, 20);
/// assert!(summary.diverged.is_none());
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Trainer<F: Float, C = AnyCell<F>> {
    pub(crate) config: TrainConfig,
    pub(crate) data: Box<dyn DataSource<F>>,
    pub(crate) model: SeqModel<F, C>,
    pub(crate) optimizer: Box<dyn Optimizer<F>>,
    pub(crate) rng: Rng,
    pub(crate) eval_set: Batch<F>,
    pub(crate) state: RunState,
}

impl<F: Float> Trainer<F> {
    /// Validates the config and builds the task, the model, the optimizer, the training
    /// generator and the held-out set (the task's test split if it has one, else `eval_batch`
    /// sequences drawn once from `eval_seed`).
    ///
    /// # Errors
    /// As [`TrainConfig::validate_in`] (every value checked in `F`).
    pub fn new(config: TrainConfig) -> Result<Self> {
        let task = config.validate_in::<F>()?;
        let model = config.model.build::<F>()?;
        Self::assemble(config, model, Box::new(task))
    }
}

impl<F: Float, C: Cell<F>> Trainer<F, C> {
    /// A trainer of a model and data the caller built: a model of a custom cell
    /// ([`crate::ModelConfig::build_with`]) and/or data of its own (any [`DataSource`], e.g.
    /// [`rnnlab_tasks::ArrayData`]). The config must describe both: `config.model` must be the
    /// model's own config, and `config.task` either the data's [`TaskConfig::Data`] spec or the
    /// built-in task the data is. The held-out set is `data.eval_set(eval_batch, …)` drawn from
    /// `eval_seed` on ChaCha8 stream 1.
    ///
    /// # Errors
    /// As [`TrainConfig::validate_settings`]; [`Error::Config`] if `config.model` is not the
    /// model's config, or `config.task` does not describe the data, or the model does not fit
    /// the data ([`TrainConfig::check_data`]).
    pub fn with_parts(config: TrainConfig, model: SeqModel<F, C>, data: Box<dyn DataSource<F>>) -> Result<Self> {
        const OP: &str = "Trainer::with_parts";
        config.validate_settings()?;
        config.settings_in::<F>()?;
        if model.config() != &config.model {
            return Err(Error::config(
                OP,
                format!(
                    "the model was built from another config ({}) than config.model ({})",
                    model.config().architecture(),
                    config.model.architecture()
                ),
            ));
        }
        let spec = data.spec();
        let described = match &config.task {
            TaskConfig::Data(s) => s.clone(),
            built_in => DataSource::<F>::spec(&built_in.build()?),
        };
        if described != spec {
            return Err(Error::config(OP, format!("config.task describes {described:?}, the data is {spec:?}")));
        }
        config.check_data(&spec)?;
        Self::assemble(config, model, data)
    }

    fn assemble(config: TrainConfig, model: SeqModel<F, C>, data: Box<dyn DataSource<F>>) -> Result<Self> {
        let optimizer = config.optimizer.init::<F>()?;
        let mut eval_rng = seeded_rng(config.eval_seed);
        eval_rng.set_stream(1);
        let eval_set = data.eval_set(config.eval_batch, &mut eval_rng)?;
        let rng = seeded_rng(config.seed);
        Ok(Self { config, data, model, optimizer, rng, eval_set, state: RunState::default() })
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The model.
    pub fn model(&self) -> &SeqModel<F, C> {
        &self.model
    }

    /// The model, mutable.
    pub fn model_mut(&mut self) -> &mut SeqModel<F, C> {
        &mut self.model
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &dyn Optimizer<F> {
        self.optimizer.as_ref()
    }

    /// The data it trains on (the task).
    pub fn data(&self) -> &dyn DataSource<F> {
        self.data.as_ref()
    }

    /// The held-out set.
    pub fn eval_set(&self) -> &Batch<F> {
        &self.eval_set
    }

    /// Steps taken so far.
    pub fn step(&self) -> u64 {
        self.state.step
    }

    /// The divergence, if the run has diverged.
    pub fn diverged(&self) -> Option<&Divergence> {
        self.state.diverged.as_ref()
    }

    /// Evaluates the model on the held-out set (no gradient is touched, no generator advances).
    ///
    /// # Errors
    /// As [`SeqModel::evaluate`].
    pub fn evaluate(&mut self) -> Result<EvalMetrics> {
        self.model.set_training(false);
        let result = self.model.evaluate(&self.eval_set);
        self.model.set_training(true);
        let (loss, accuracy) = result?;
        Ok(EvalMetrics { step: self.state.step, loss, accuracy, baseline_loss: self.data.baseline_loss() })
    }

    /// Trains until `n_steps` steps have been taken in total, an observer says stop, or the
    /// run diverges; then evaluates (unless diverged or just evaluated) and returns the
    /// summary. Calling it again continues a stopped run; a diverged run stays diverged.
    ///
    /// A divergence — a non-finite loss, a loss above `divergence_factor` × the first loss,
    /// or a non-finite gradient under `NonFinitePolicy::Error` — ends the run with `Ok` and
    /// [`RunSummary::diverged`] set; the diverging step makes no update.
    ///
    /// # Errors
    /// Only for failures that are not divergence: shapes or configs that cannot occur with a
    /// validated config, and errors of the parts (reported, never panicking).
    pub fn run(&mut self, observer: &mut dyn Observer) -> Result<RunSummary> {
        self.run_inspected(observer, &mut NoInspector)
    }

    /// [`Trainer::run`] with an [`Inspector`] that sees the steps it asks for from the inside
    /// (the model, the batch, the forward cache and the backward pass), e.g.
    /// [`crate::DiagnosticsRecorder`]. Steps it does not want run as in [`Trainer::run`]; the
    /// parameters are the same bits either way.
    ///
    /// # Errors
    /// As [`Trainer::run`], and whatever the inspector returns.
    pub fn run_inspected(
        &mut self,
        observer: &mut dyn Observer,
        inspector: &mut dyn Inspector<F, C>,
    ) -> Result<RunSummary> {
        let start = Instant::now();
        let mut stopped = false;
        while self.state.diverged.is_none() && self.state.step < self.config.n_steps && !stopped {
            stopped = self.train_step(observer, inspector)? == Control::Stop;
            let every = self.config.eval_every;
            if self.state.diverged.is_none() && every > 0 && self.state.step % every == 0 {
                stopped |= self.record_eval(observer)? == Control::Stop;
            }
        }
        let evaluated_now = self.state.last_eval.as_ref().is_some_and(|e| e.step == self.state.step);
        if self.state.diverged.is_none() && !evaluated_now && self.state.step > 0 {
            // An observer's stop at the end changes nothing: the run is over anyway.
            let _ = self.record_eval(observer)?;
        }
        let summary = RunSummary {
            steps: self.state.step,
            initial_loss: self.state.initial_loss,
            final_train_loss: self.state.last_loss,
            final_eval: self.state.last_eval.clone(),
            best_eval: self.state.best_eval.clone(),
            baseline_loss: self.data.baseline_loss(),
            diverged: self.state.diverged.clone(),
            stopped_early: stopped && self.state.step < self.config.n_steps,
            non_finite: self.state.non_finite.clone(),
            wall_time_s: start.elapsed().as_secs_f64(),
        };
        observer.on_end(&summary);
        Ok(summary)
    }

    /// [`SeqModel::loss_and_grad`] with the pass shown to the inspector before its buffers are
    /// given back.
    fn inspected_pass(
        &mut self,
        batch: &Batch<F>,
        telemetry: bool,
        inspector: &mut dyn Inspector<F, C>,
    ) -> Result<LossAndGrad> {
        let pass = self.model.pass("Trainer::run_inspected", batch, GradOptions::default())?;
        let Pass { fwd, loss, bwd, .. } = pass;
        let seen = match &bwd {
            Some(backward) => inspector.inspect(StepView {
                step: self.state.step,
                model: &self.model,
                batch,
                loss,
                cache: &fwd.cache,
                backward,
            }),
            None => Ok(()),
        };
        let step_grad_norms =
            bwd.as_ref().filter(|_| telemetry).map(|b| b.step_grads.iter().map(|g| g.norms(0)).collect());
        let backward = bwd.is_some();
        self.model.rnn_mut().recycle(fwd.cache);
        if let Some(b) = bwd {
            self.model.rnn_mut().recycle_grads(b);
        }
        seen?;
        Ok(LossAndGrad { loss, backward, step_grad_norms })
    }

    fn record_eval(&mut self, observer: &mut dyn Observer) -> Result<Control> {
        let m = self.evaluate()?;
        if self.state.best_eval.as_ref().is_none_or(|b| m.loss < b.loss) {
            self.state.best_eval = Some(m.clone());
        }
        self.state.last_eval = Some(m.clone());
        Ok(observer.on_eval(&m))
    }

    fn diverge(&mut self, loss: f64, reason: DivergenceReason) -> Control {
        self.state.diverged = Some(Divergence {
            step: self.state.step,
            loss,
            initial_loss: self.state.initial_loss.unwrap_or(loss),
            reason,
            recent_losses: self.state.recent_losses.clone(),
        });
        Control::Stop
    }

    fn train_step(&mut self, observer: &mut dyn Observer, inspector: &mut dyn Inspector<F, C>) -> Result<Control> {
        let t = self.state.step;
        let cfg = &self.config;
        let telemetry = cfg.telemetry_every > 0 && t % cfg.telemetry_every == 0;
        let batch = self.data.sample(cfg.batch_size, &mut self.rng)?;
        self.model.zero_grad();
        let inspected = inspector.wants(t);
        let pass = if inspected {
            self.inspected_pass(&batch, telemetry, inspector)
        } else {
            self.model.loss_and_grad(&batch, telemetry)
        };
        let out = match pass {
            Ok(out) => out,
            // Non-finite weights (an earlier update overflowed them) or activations that
            // overflowed on the way to the loss: the forward pass refuses them, and the run has
            // diverged — an outcome, not a failure.
            Err(Error::NonFinite { .. }) => return Ok(self.diverge(f64::NAN, DivergenceReason::NonFiniteLoss)),
            Err(e) => return Err(e),
        };
        let loss = out.loss;
        let initial = *self.state.initial_loss.get_or_insert(loss);
        self.state.recent_losses.push(loss);
        if self.state.recent_losses.len() > RECENT_LOSSES {
            self.state.recent_losses.remove(0);
        }
        if !loss.is_finite() {
            return Ok(self.diverge(loss, DivergenceReason::NonFiniteLoss));
        }
        if let Some(factor) = self.config.divergence_factor
            && loss > factor * initial
        {
            return Ok(self.diverge(loss, DivergenceReason::LossAboveFactor { factor }));
        }
        let finite = if out.backward {
            match check_finite(&mut self.model, self.config.non_finite) {
                Ok(f) => f,
                Err(e) => return Ok(self.diverge(loss, DivergenceReason::NonFiniteGradient { detail: e.to_string() })),
            }
        } else if self.config.non_finite == NonFinitePolicy::Error {
            let detail = "the loss gradient with respect to the predictions overflowed".to_string();
            return Ok(self.diverge(loss, DivergenceReason::NonFiniteGradient { detail }));
        } else {
            // Nothing to zero entry by entry: the whole backward pass is missing, so skip the step.
            FiniteOutcome { n_non_finite: 1, skip_step: true, ..FiniteOutcome::default() }
        };
        self.state.non_finite.record(&finite);
        let lr = self.config.schedule.lr_at(self.config.optimizer.lr(), t)?;
        let (pre_clip_norm, clip_fired) = if finite.should_step() {
            let report = clip(&mut self.model, &self.config.clip)?;
            // The schedule's rate is at most the base rate, checked in F when the trainer was
            // built; an error would come from the schedule, so it is named.
            self.optimizer.set_lr(lr).map_err(|e| e.within("Trainer::run", "schedule"))?;
            self.optimizer.step(&mut self.model)?;
            (report.pre_norm, report.fired)
        } else {
            (f64::NAN, false)
        };
        if inspected {
            inspector.after_update(t, &self.model)?;
        }
        self.state.step += 1;
        self.state.last_loss = Some(loss);
        let metrics = StepMetrics {
            step: self.state.step,
            loss,
            pre_clip_norm,
            clip_fired,
            lr,
            skipped: !finite.should_step(),
            step_grad_norms: out.step_grad_norms,
        };
        Ok(observer.on_step(&metrics))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{CellConfig, LossKind, ModelConfig, Recorder, Silent};
    use rnnlab_core::Error;
    use rnnlab_optim::{AdamConfig, ClipConfig, SgdConfig};
    use rnnlab_tasks::{AddingConfig, CopyMemoryConfig, DigitsConfig, DigitsLayout};

    pub(crate) fn small(cell: CellConfig) -> TrainConfig {
        let task = AddingConfig::new(8);
        let model = ModelConfig::for_task(&task.build().unwrap(), 6, cell).with_n_layers(2);
        TrainConfig::new(task.into(), model, AdamConfig::new(1e-2).into())
            .with_clip(ClipConfig::global_norm(1.0))
            .with_batch_size(8)
            .with_n_steps(12)
            .with_eval_batch(32)
            .with_eval_every(4)
            .with_telemetry_every(5)
            .with_seed(3)
    }

    #[test]
    fn learns_the_adding_problem_at_short_range() {
        let task = AddingConfig::new(6);
        let model = ModelConfig::for_task(&task.build().unwrap(), 16, CellConfig::lstm());
        let cfg = TrainConfig::new(task.into(), model, AdamConfig::new(1e-2).into())
            .with_clip(ClipConfig::global_norm(1.0))
            .with_batch_size(32)
            .with_n_steps(400)
            .with_eval_batch(256);
        let mut trainer = Trainer::<f32>::new(cfg).unwrap();
        let s = trainer.run(&mut Silent).unwrap();
        let eval = s.final_eval.clone().unwrap();
        assert!(eval.loss < 0.25 * s.baseline_loss, "{s}");
        assert!(s.diverged.is_none() && !s.stopped_early);
    }

    #[test]
    fn same_config_gives_bit_identical_runs() {
        for cell in [CellConfig::rnn(), CellConfig::lstm(), CellConfig::gru()] {
            let mut a = Trainer::<f32>::new(small(cell.clone())).unwrap();
            let mut b = Trainer::<f32>::new(small(cell)).unwrap();
            let (mut ra, mut rb) = (Recorder::default(), Recorder::default());
            a.run(&mut ra).unwrap();
            b.run(&mut rb).unwrap();
            assert_eq!(a.model(), b.model());
            assert_eq!(ra, rb);
            assert_ne!(a.model(), &a.config().model.build::<f32>().unwrap(), "the run moved the parameters");
        }
        let mut c = Trainer::<f32>::new(small(CellConfig::lstm()).with_seed(4)).unwrap();
        c.run(&mut Silent).unwrap();
        let mut a = Trainer::<f32>::new(small(CellConfig::lstm())).unwrap();
        a.run(&mut Silent).unwrap();
        assert_ne!(a.model(), c.model(), "another data seed, another run");
    }

    #[test]
    fn observer_sees_steps_evals_and_telemetry() {
        let mut t = Trainer::<f64>::new(small(CellConfig::lstm())).unwrap();
        let mut rec = Recorder::default();
        let s = t.run(&mut rec).unwrap();
        assert_eq!(rec.steps.iter().map(|m| m.step).collect::<Vec<_>>(), (1..=12).collect::<Vec<_>>());
        assert_eq!(rec.evals.iter().map(|m| m.step).collect::<Vec<_>>(), [4, 8, 12]);
        let with: Vec<u64> = rec.steps.iter().filter(|m| m.step_grad_norms.is_some()).map(|m| m.step).collect();
        assert_eq!(with, [1, 6, 11], "steps with index 0, 5, 10");
        let norms = rec.steps[0].step_grad_norms.as_ref().unwrap();
        assert_eq!((norms.len(), norms[0].len()), (2, 8), "2 layers × T = 8");
        assert!(norms.iter().flatten().all(|v| v.is_finite() && *v >= 0.0));
        assert!(rec.steps.iter().all(|m| m.pre_clip_norm.is_finite() && !m.skipped));
        assert!((rec.steps[3].lr - 1e-2).abs() < 1e-15);
        assert_eq!(s.final_eval.as_ref().map(|e| e.step), Some(12));
        assert!(s.best_eval.unwrap().loss <= rec.evals.iter().map(|e| e.loss).fold(f64::INFINITY, f64::min));
        assert_eq!(s.final_train_loss, Some(rec.steps[11].loss));
    }

    #[test]
    fn an_observer_can_stop_and_run_continues() {
        let mut t = Trainer::<f32>::new(small(CellConfig::gru())).unwrap();
        let mut rec = Recorder { stop_after: Some(3), ..Recorder::default() };
        let s = t.run(&mut rec).unwrap();
        assert_eq!((s.steps, s.stopped_early), (3, true));
        let s = t.run(&mut Silent).unwrap();
        assert_eq!((s.steps, s.stopped_early), (12, false));
    }

    #[test]
    fn clipping_fires_and_reports_the_pre_clip_norm() {
        let cfg = small(CellConfig::rnn()).with_clip(ClipConfig::global_norm(1e-3));
        let mut rec = Recorder::default();
        Trainer::<f64>::new(cfg).unwrap().run(&mut rec).unwrap();
        assert!(rec.steps.iter().all(|m| m.clip_fired && m.pre_clip_norm > 1e-3));
    }

    #[test]
    fn explosion_ends_the_run_as_diverged_with_evidence() {
        let cfg =
            small(CellConfig::rnn()).with_clip(ClipConfig::None).with_divergence_factor(Some(2.0)).with_n_steps(200);
        let mut cfg = cfg;
        cfg.optimizer = SgdConfig::new(50.0).into();
        let mut t = Trainer::<f64>::new(cfg).unwrap();
        let s = t.run(&mut Silent).unwrap();
        let d = s.diverged.clone().expect("lr 50 without clipping diverges");
        assert!(
            matches!(d.reason, DivergenceReason::LossAboveFactor { factor } if factor == 2.0)
                || d.reason == DivergenceReason::NonFiniteLoss,
            "{d:?}"
        );
        assert!(d.loss.is_nan() || d.loss > 2.0 * d.initial_loss, "{d:?}");
        assert_eq!(d.recent_losses.last().map(|l| l.to_bits()), Some(d.loss.to_bits()));
        assert_eq!(s.steps, d.step);
        assert!(s.final_eval.is_none() || s.final_eval.as_ref().is_some_and(|e| e.step < d.step));
        // A diverged run stays diverged.
        let again = t.run(&mut Silent).unwrap();
        assert_eq!((again.steps, again.diverged), (s.steps, s.diverged));
    }

    #[test]
    fn a_non_finite_loss_is_divergence_not_an_error() {
        let mut cfg = small(CellConfig::lstm()).with_clip(ClipConfig::None).with_divergence_factor(None);
        cfg.optimizer = SgdConfig::new(1e30).into();
        let mut t = Trainer::<f32>::new(cfg).unwrap();
        let s = t.run(&mut Silent).unwrap();
        let d = s.diverged.expect("lr 1e30 drives the f32 weights to infinity");
        assert!(
            d.reason == DivergenceReason::NonFiniteLoss
                || matches!(d.reason, DivergenceReason::NonFiniteGradient { .. }),
            "{d:?}"
        );
    }

    #[test]
    fn skip_step_policy_keeps_going() {
        let mut cfg = small(CellConfig::lstm()).with_clip(ClipConfig::None).with_divergence_factor(None);
        cfg.optimizer = SgdConfig::new(1e30).into();
        cfg.non_finite = NonFinitePolicy::SkipStep;
        let mut t = Trainer::<f32>::new(cfg).unwrap();
        let mut rec = Recorder::default();
        let s = t.run(&mut rec).unwrap();
        // Either the loss itself went non-finite (divergence) or some gradient did and was skipped.
        assert!(s.diverged.is_some() || s.non_finite.skipped_steps > 0, "{s:?}");
        assert!(rec.steps.iter().filter(|m| m.skipped).all(|m| m.pre_clip_norm.is_nan()));
    }

    #[test]
    fn classification_tasks_train_and_report_accuracy() {
        let task = CopyMemoryConfig::new(3).with_n_copy(2);
        let model = ModelConfig::for_task(&task.build().unwrap(), 8, CellConfig::gru());
        assert_eq!(model.loss, LossKind::CrossEntropyEvery);
        let cfg =
            TrainConfig::new(task.into(), model, AdamConfig::new(1e-2).into()).with_n_steps(5).with_eval_batch(16);
        let s = Trainer::<f32>::new(cfg).unwrap().run(&mut Silent).unwrap();
        let e = s.final_eval.unwrap();
        assert!(e.loss.is_finite() && (0.0..=1.0).contains(&e.accuracy));
        // The digits use their fixed test split as the held-out set.
        let digits = DigitsConfig::new().with_layout(DigitsLayout::Rows);
        let model = ModelConfig::for_task(&digits.build().unwrap(), 8, CellConfig::lstm());
        let cfg = TrainConfig::new(digits.into(), model, AdamConfig::new(1e-2).into()).with_n_steps(2);
        let t = Trainer::<f32>::new(cfg).unwrap();
        assert_eq!(t.eval_set().batch_size(), rnnlab_tasks::DIGITS_N_TEST);
    }

    #[test]
    fn new_rejects_an_invalid_config() {
        assert!(matches!(Trainer::<f32>::new(small(CellConfig::lstm()).with_batch_size(0)), Err(Error::Config { .. })));
    }

    #[test]
    fn held_out_set_is_fixed_and_apart_from_training() {
        let a = Trainer::<f32>::new(small(CellConfig::lstm())).unwrap();
        let b = Trainer::<f32>::new(small(CellConfig::lstm()).with_seed(99)).unwrap();
        assert_eq!(a.eval_set(), b.eval_set(), "the held-out set depends on eval_seed only");
        let same_seed =
            Trainer::<f32>::new(small(CellConfig::lstm()).with_seed(small(CellConfig::lstm()).eval_seed)).unwrap();
        let mut rng = seeded_rng(same_seed.config().seed);
        let first = same_seed.data().sample(8, &mut rng).unwrap();
        assert_ne!(first.inputs.view(), same_seed.eval_set().inputs.slice(ndarray::s![.., ..8, ..]));
    }
}
