//! [`TrainConfig`]: a whole training run as data — task, model, optimizer, clipping, schedule,
//! budget, evaluation, telemetry, divergence rule and seeds.

use rnnlab_core::{Error, Float, Result, limits};
use rnnlab_optim::{ClipConfig, LrSchedule, NonFinitePolicy, OptimizerConfig};
use rnnlab_tasks::{AnyTask, DataSource, DataSpec, TaskConfig};
use serde::{Deserialize, Serialize};

use crate::ModelConfig;

fn default_batch_size() -> usize {
    32
}
fn default_n_steps() -> u64 {
    1000
}
fn default_eval_batch() -> usize {
    1000
}
fn default_eval_seed() -> u64 {
    DEFAULT_EVAL_SEED
}
fn default_divergence_factor() -> Option<f64> {
    Some(1e3)
}

/// The default seed of the held-out set.
pub const DEFAULT_EVAL_SEED: u64 = 2013;

/// A training run as data; every field but `task`, `model` and `optimizer` has a default.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `task` | — | [`TaskConfig`] |
/// | `model` | — | [`ModelConfig`]; its widths and loss must fit the task |
/// | `optimizer` | — | [`OptimizerConfig`]; its `lr` is the schedule's base rate |
/// | `clip` | `none` | [`ClipConfig`] |
/// | `non_finite` | `error` | [`NonFinitePolicy`] for NaN/∞ gradients (`error` ends the run as diverged) |
/// | `schedule` | `constant` | [`LrSchedule`] |
/// | `batch_size` | 32 | sequences per step |
/// | `n_steps` | 1000 | optimizer steps of the whole run |
/// | `eval_every` | 0 | evaluate every k steps (0: only at the end) |
/// | `eval_batch` | 1000 | size of the held-out set (tasks without a test split) |
/// | `eval_seed` | 2013 | seed of the held-out set (ChaCha8 stream 1, so never the training stream) |
/// | `telemetry_every` | 0 | per-step ‖∂L/∂h_t‖ every k steps, from step 0 (0: never) |
/// | `divergence_factor` | 1000 | diverged once loss > factor · first loss (`null`: never) |
/// | `seed` | 0 | seed of the training batches |
///
/// # Examples
/// ```
/// use rnnlab_train::TrainConfig;
/// let cfg: TrainConfig = serde_json::from_str(r#"{
///     "task": {"task": "adding", "seq_len": 50},
///     "model": {"input_dim": 2, "output_dim": 1, "hidden_dim": 64,
///               "cell": {"kind": "lstm", "forget_bias": 1.0}, "loss": "mse_last"},
///     "optimizer": {"kind": "adam", "lr": 0.003},
///     "clip": {"kind": "global_norm", "max_norm": 1.0},
///     "batch_size": 64, "n_steps": 3000, "eval_every": 500
/// }"#).unwrap();
/// cfg.validate()?;
/// assert_eq!(cfg.divergence_factor, Some(1e3));
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct TrainConfig {
    /// The task.
    pub task: TaskConfig,
    /// The model.
    pub model: ModelConfig,
    /// The optimizer.
    pub optimizer: OptimizerConfig,
    /// Gradient clipping.
    #[serde(default)]
    pub clip: ClipConfig,
    /// What to do with non-finite gradients.
    #[serde(default)]
    pub non_finite: NonFinitePolicy,
    /// The learning-rate schedule.
    #[serde(default)]
    pub schedule: LrSchedule,
    /// Sequences per step.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Optimizer steps of the whole run.
    #[serde(default = "default_n_steps")]
    pub n_steps: u64,
    /// Evaluate every k steps (0: only at the end).
    #[serde(default)]
    pub eval_every: u64,
    /// Size of the held-out set for tasks without a test split.
    #[serde(default = "default_eval_batch")]
    pub eval_batch: usize,
    /// Seed of the held-out set.
    #[serde(default = "default_eval_seed")]
    pub eval_seed: u64,
    /// Record the per-step gradient norms every k steps (0: never).
    #[serde(default)]
    pub telemetry_every: u64,
    /// The run is diverged once the loss exceeds this multiple of the first loss.
    #[serde(default = "default_divergence_factor")]
    pub divergence_factor: Option<f64>,
    /// Seed of the training batches.
    #[serde(default)]
    pub seed: u64,
}
rnnlab_core::serde_map_only!(TrainConfig);

impl TrainConfig {
    /// A run with every optional field at its default.
    pub fn new(task: TaskConfig, model: ModelConfig, optimizer: OptimizerConfig) -> Self {
        Self {
            task,
            model,
            optimizer,
            clip: ClipConfig::default(),
            non_finite: NonFinitePolicy::default(),
            schedule: LrSchedule::default(),
            batch_size: default_batch_size(),
            n_steps: default_n_steps(),
            eval_every: 0,
            eval_batch: default_eval_batch(),
            eval_seed: DEFAULT_EVAL_SEED,
            telemetry_every: 0,
            divergence_factor: default_divergence_factor(),
            seed: 0,
        }
    }

    /// Sets the clipping.
    pub fn with_clip(mut self, clip: ClipConfig) -> Self {
        self.clip = clip;
        self
    }

    /// Sets the non-finite gradient policy.
    pub fn with_non_finite(mut self, policy: NonFinitePolicy) -> Self {
        self.non_finite = policy;
        self
    }

    /// Sets the learning-rate schedule.
    pub fn with_schedule(mut self, schedule: LrSchedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Sets the batch size.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Sets the number of steps.
    pub fn with_n_steps(mut self, n_steps: u64) -> Self {
        self.n_steps = n_steps;
        self
    }

    /// Sets the evaluation period (0: only at the end).
    pub fn with_eval_every(mut self, eval_every: u64) -> Self {
        self.eval_every = eval_every;
        self
    }

    /// Sets the held-out set's size.
    pub fn with_eval_batch(mut self, eval_batch: usize) -> Self {
        self.eval_batch = eval_batch;
        self
    }

    /// Sets the held-out set's seed.
    pub fn with_eval_seed(mut self, eval_seed: u64) -> Self {
        self.eval_seed = eval_seed;
        self
    }

    /// Sets the telemetry period (0: never).
    pub fn with_telemetry_every(mut self, telemetry_every: u64) -> Self {
        self.telemetry_every = telemetry_every;
        self
    }

    /// Sets the divergence factor (`None`: only a non-finite loss diverges).
    pub fn with_divergence_factor(mut self, factor: Option<f64>) -> Self {
        self.divergence_factor = factor;
        self
    }

    /// Sets the seed of the training batches.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks every part and that the model fits the task; returns the built task.
    ///
    /// Every error names the field as written in the file (`model.hidden_dim`, `task.seq_len`,
    /// `optimizer.eps`); every size is checked against [`rnnlab_core::limits`] before anything
    /// is allocated (see [`TrainConfig::check_data`] for the sizes of one pass).
    ///
    /// # Errors
    /// [`Error::Config`] for `batch_size`, `n_steps` or `eval_batch` of 0, `batch_size` or
    /// `eval_batch` over [`limits::MAX_BATCH`], a divergence factor that is not finite and
    /// `> 1`, a model whose `input_dim`, `output_dim` or loss does not fit the task, a pass
    /// over the limits, and as the task's, model's, optimizer's, clipping's and schedule's own
    /// validation.
    pub fn validate(&self) -> Result<AnyTask> {
        self.validate_settings()?;
        let task = self.task.build().map_err(|e| e.within("TrainConfig", "task"))?;
        self.check_data(&DataSource::<f64>::spec(&task))?;
        Ok(task)
    }

    /// [`TrainConfig::validate`], then every value in the model's float `F`: the model's
    /// ([`ModelConfig::validate_in`]) and the optimizer's (an `eps` of 1e-50 is 0 in `f32`,
    /// an `lr` of 1e39 is ∞). [`crate::Trainer`] checks this before it builds anything.
    ///
    /// # Errors
    /// As [`TrainConfig::validate`], and [`Error::Config`] naming the field whose value is not
    /// usable in `F`.
    ///
    /// # Examples
    /// ```
    /// use rnnlab_optim::AdamConfig;
    /// use rnnlab_tasks::{AddingConfig, Task};
    /// use rnnlab_train::{CellConfig, ModelConfig, TrainConfig};
    /// let task = AddingConfig::new(10);
    /// let model = ModelConfig::for_task(&task.build()?, 8, CellConfig::lstm());
    /// let cfg = TrainConfig::new(task.into(), model, AdamConfig::new(1e-3).with_eps(1e-50).into());
    /// assert!(cfg.validate_in::<f64>().is_ok());
    /// let e = cfg.validate_in::<f32>().unwrap_err().to_string();
    /// assert!(e.contains("optimizer.eps must be > 0, got 1e-50, which is 0 in f32"), "{e}");
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn validate_in<F: Float>(&self) -> Result<AnyTask> {
        let task = self.validate()?;
        self.settings_in::<F>()?;
        Ok(task)
    }

    /// The checks of [`TrainConfig::validate_in`] beyond [`TrainConfig::validate_settings`].
    pub(crate) fn settings_in<F: Float>(&self) -> Result<()> {
        const OP: &str = "TrainConfig";
        self.model.validate_in::<F>().map_err(|e| e.within(OP, "model"))?;
        // the optimizer's own checks in F; building it allocates nothing
        self.optimizer.init::<F>().map(drop).map_err(|e| e.within(OP, "optimizer"))
    }

    /// Checks every part but the task (which may be data the caller supplies): sizes, the
    /// model, optimizer, clipping and schedule.
    ///
    /// # Errors
    /// As [`TrainConfig::validate`], less the task's checks.
    pub fn validate_settings(&self) -> Result<()> {
        const OP: &str = "TrainConfig";
        limits::size(OP, "batch_size", self.batch_size, limits::MAX_BATCH)?;
        if self.n_steps == 0 {
            return Err(Error::config(OP, "n_steps must be at least 1, got 0"));
        }
        limits::size(OP, "eval_batch", self.eval_batch, limits::MAX_BATCH)?;
        if let Some(f) = self.divergence_factor
            && !(f.is_finite() && f > 1.0)
        {
            return Err(Error::config(OP, format!("divergence_factor must be finite and > 1, got {f}")));
        }
        self.model.validate().map_err(|e| e.within(OP, "model"))?;
        self.optimizer.validate().map_err(|e| e.within(OP, "optimizer"))?;
        self.clip.validate().map_err(|e| e.within(OP, "clip"))?;
        self.schedule.validate().map_err(|e| e.within(OP, "schedule"))
    }

    /// Checks that the model's widths and loss fit data of the given shapes, and that one pass
    /// fits [`limits::MAX_ELEMENTS`]: the inputs `[seq_len, batch, input_dim]` of a training
    /// batch (`batch_size`) and of the held-out set (`eval_batch`, evaluated in one pass), and
    /// the forward cache of either, `[n_layers·directions, seq_len, batch,
    /// (gates + 1)·hidden_dim]` (pre-activations and states of every step).
    ///
    /// # Errors
    /// [`Error::Config`] naming the data and what does not fit, or the field (`batch_size`,
    /// `eval_batch`, `task.seq_len`) of a pass over the limit.
    pub fn check_data(&self, data: &DataSpec) -> Result<()> {
        const OP: &str = "TrainConfig";
        data.validate().map_err(|e| e.within(OP, "task"))?;
        let m = &self.model;
        let directions = if m.bidirectional { 2 } else { 1 };
        let per_step = limits::checked_mul(OP, "model.hidden_dim", m.cell.gates() + 1, m.hidden_dim)?;
        for (field, batch) in [("batch_size", self.batch_size), ("eval_batch", self.eval_batch)] {
            let field = if data.seq_len > batch { "task.seq_len" } else { field };
            limits::checked_elements(OP, field, &[data.seq_len, batch, data.input_dim])?;
            limits::checked_elements(OP, field, &[m.n_layers * directions, data.seq_len, batch, per_step])?;
        }
        if m.input_dim != data.input_dim || m.output_dim != data.output_dim {
            return Err(Error::config(
                OP,
                format!(
                    "model widths {} → {} do not fit task {} ({} → {})",
                    m.input_dim, m.output_dim, data.name, data.input_dim, data.output_dim
                ),
            ));
        }
        if m.loss.target_kind() != data.targets {
            return Err(Error::config(
                OP,
                format!("loss {:?} does not fit task {} with {:?} targets", m.loss, data.name, data.targets),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CellConfig, LossKind};
    use rnnlab_optim::{AdamConfig, SgdConfig};
    use rnnlab_tasks::{AddingConfig, TemporalOrderConfig};

    fn ok() -> TrainConfig {
        let task = AddingConfig::new(10);
        let model = ModelConfig::for_task(&task.build().unwrap(), 8, CellConfig::lstm());
        TrainConfig::new(task.into(), model, AdamConfig::new(1e-2).into())
    }

    fn rejected(cfg: TrainConfig, what: &str) {
        let e = cfg.validate().unwrap_err();
        assert!(matches!(e, Error::Config { .. }) && e.to_string().contains(what), "{what}: {e}");
    }

    #[test]
    fn defaults_validate_and_round_trip() {
        let cfg = ok();
        cfg.validate().unwrap();
        let back: TrainConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
        assert!(
            serde_json::from_str::<TrainConfig>(&serde_json::to_string(&cfg).unwrap().replace("\"seed\"", "\"sed\""))
                .is_err()
        );
    }

    #[test]
    fn rejects_zero_batch_size() {
        rejected(ok().with_batch_size(0), "batch_size");
    }

    #[test]
    fn rejects_zero_steps() {
        rejected(ok().with_n_steps(0), "n_steps");
    }

    #[test]
    fn rejects_zero_eval_batch() {
        rejected(ok().with_eval_batch(0), "eval_batch");
    }

    #[test]
    fn rejects_bad_divergence_factors() {
        rejected(ok().with_divergence_factor(Some(1.0)), "divergence_factor");
        rejected(ok().with_divergence_factor(Some(f64::NAN)), "divergence_factor");
        assert!(ok().with_divergence_factor(None).validate().is_ok());
    }

    #[test]
    fn rejects_a_model_that_does_not_fit_the_task() {
        let mut cfg = ok();
        cfg.model.input_dim = 3;
        rejected(cfg, "do not fit");
        let mut cfg = ok();
        cfg.model.output_dim = 2;
        rejected(cfg, "do not fit");
        let mut cfg = ok();
        cfg.model.loss = LossKind::CrossEntropyLast;
        rejected(cfg, "does not fit");
        let mut cfg = ok();
        cfg.task = TemporalOrderConfig::new(10).into();
        rejected(cfg, "do not fit");
    }

    #[test]
    fn rejects_a_bad_task() {
        let mut cfg = ok();
        cfg.task = AddingConfig::new(1).into();
        assert!(matches!(cfg.validate(), Err(Error::Config { .. })));
    }

    #[test]
    fn rejects_a_bad_model() {
        let mut cfg = ok();
        cfg.model.hidden_dim = 0;
        rejected(cfg, "hidden_dim");
    }

    #[test]
    fn rejects_a_bad_optimizer() {
        let mut cfg = ok();
        cfg.optimizer = SgdConfig::new(-1.0).into();
        assert!(matches!(cfg.validate(), Err(Error::Config { .. })));
    }

    #[test]
    fn rejects_a_bad_clip() {
        rejected(ok().with_clip(ClipConfig::global_norm(0.0)), "max_norm");
    }

    #[test]
    fn values_are_checked_in_the_model_float_under_the_users_field() {
        use rnnlab_cells::{NormConfig, NormPlacement};
        use rnnlab_init::{Init, Rescale};
        let in_f32 = |cfg: TrainConfig, field: &str| {
            assert!(cfg.validate_in::<f64>().is_ok(), "{field}: fine in f64");
            let e = cfg.validate_in::<f32>().unwrap_err().to_string();
            assert!(e.contains(field) && e.contains("f32"), "{field}: {e}");
            let e = crate::Trainer::<f32>::new(cfg).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(field), "{field}: {e}");
        };
        let with_cell = |cell: CellConfig| {
            let mut c = ok();
            c.model.cell = cell;
            c
        };
        in_f32(with_cell(crate::LstmSpec::new().with_forget_bias(1e39).into()), "model.cell.forget_bias");
        let ln = NormConfig::layer(NormPlacement::Full);
        in_f32(with_cell(crate::LstmSpec::new().with_norm(ln.clone().with_eps(1e-50)).into()), "model.cell.norm.eps");
        in_f32(
            with_cell(crate::GruSpec::new().with_norm(ln.with_gamma_init(1e39)).into()),
            "model.cell.norm.gamma_init",
        );
        let rescaled = Init::rescaled(Init::Orthogonal { gain: 1.0 }, Rescale::SpectralRadius(1e39));
        in_f32(with_cell(crate::RnnSpec::new().with_w_hh_init(rescaled).into()), "model.cell.w_hh_init.target");
        let mut c = ok();
        c.model.readout.weight_init = Init::Constant { value: -1e300 };
        in_f32(c, "model.readout.weight_init.value");
        let mut c = ok();
        c.optimizer = AdamConfig::new(1e-3).with_eps(1e-50).into();
        in_f32(c, "optimizer.eps");
        let mut c = ok();
        c.optimizer = SgdConfig::new(1e39).into();
        in_f32(c, "optimizer.lr");
    }

    #[test]
    fn sizes_are_named_by_the_field_the_user_wrote() {
        let mut c = ok();
        c.model.hidden_dim = 1 << 21;
        rejected(c, "model.hidden_dim = 2097152 is over the limit of 1048576");
        let mut c = ok();
        c.task = AddingConfig::new(usize::MAX).into();
        rejected(c, "task.seq_len");
        let mut c = ok();
        c.task = rnnlab_tasks::CopyMemoryConfig::new(usize::MAX).into();
        rejected(c, "delay + 2·n_copy");
        rejected(ok().with_batch_size(usize::MAX), "batch_size");
        rejected(ok().with_eval_batch(usize::MAX), "eval_batch");
        let e = serde_json::from_str::<TrainConfig>("[]").unwrap_err().to_string();
        assert!(e.contains("expected a map (JSON object) for TrainConfig"), "{e}");
    }

    #[test]
    fn rejects_a_bad_schedule() {
        rejected(ok().with_schedule(LrSchedule::Step { step_size: 0, gamma: 0.5 }), "step_size");
    }
}
