//! [`TaskConfig`], naming any task with its parameters, and [`AnyTask`], the built task.

use rnnlab_core::{Float, Result, Rng};
use serde::{Deserialize, Serialize};

use crate::{
    Adding, AddingConfig, Batch, CopyMemory, CopyMemoryConfig, DataSpec, DigitsConfig, SequentialDigits, TargetKind,
    Task, TemporalOrder, TemporalOrderConfig,
};

/// Any task with its parameters; serialised with a `"task"` tag, e.g.
/// `{"task": "adding", "seq_len": 100}` or `{"task": "sequential_digits", "permuted": true}`.
///
/// # Examples
/// ```
/// use rnnlab_tasks::{Task, TaskConfig};
/// let cfg: TaskConfig = serde_json::from_str(r#"{"task": "copy_memory", "delay": 100}"#)?;
/// let task = cfg.build()?;
/// assert_eq!(task.seq_len(), 120);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "task", rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskConfig {
    /// [`Adding`].
    Adding(AddingConfig),
    /// [`CopyMemory`].
    CopyMemory(CopyMemoryConfig),
    /// [`TemporalOrder`].
    TemporalOrder(TemporalOrderConfig),
    /// [`SequentialDigits`].
    SequentialDigits(DigitsConfig),
    /// Data the caller supplies (a [`crate::DataSource`] such as [`crate::ArrayData`]),
    /// described by its shapes; [`TaskConfig::build`] refuses it.
    Data(DataSpec),
}
rnnlab_core::serde_map_only!(TaskConfig);

impl TaskConfig {
    /// Validates and builds the task.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Config`] as the task's own `build` reports: adding T < 2, copy
    /// memory T = 0 or 0 symbols, temporal order T < 10.
    pub fn build(&self) -> Result<AnyTask> {
        Ok(match self {
            TaskConfig::Adding(c) => AnyTask::Adding(c.build()?),
            TaskConfig::CopyMemory(c) => AnyTask::CopyMemory(c.build()?),
            TaskConfig::TemporalOrder(c) => AnyTask::TemporalOrder(c.build()?),
            TaskConfig::SequentialDigits(c) => AnyTask::SequentialDigits(Box::new(c.build()?)),
            TaskConfig::Data(spec) => {
                return Err(rnnlab_core::Error::config(
                    "TaskConfig::build",
                    format!(
                        "task \"data\" ({}) is supplied by the caller, not built from the config: pass it \
                         to the trainer (rnnlab_train::Trainer::with_parts)",
                        spec.name
                    ),
                ));
            }
        })
    }
}

impl From<AddingConfig> for TaskConfig {
    fn from(c: AddingConfig) -> Self {
        TaskConfig::Adding(c)
    }
}

impl From<CopyMemoryConfig> for TaskConfig {
    fn from(c: CopyMemoryConfig) -> Self {
        TaskConfig::CopyMemory(c)
    }
}

impl From<TemporalOrderConfig> for TaskConfig {
    fn from(c: TemporalOrderConfig) -> Self {
        TaskConfig::TemporalOrder(c)
    }
}

impl From<DigitsConfig> for TaskConfig {
    fn from(c: DigitsConfig) -> Self {
        TaskConfig::SequentialDigits(c)
    }
}

/// A built task of any kind: the enum dispatch that stands in for `dyn Task` (the trait has
/// generic methods).
#[derive(Clone, Debug, PartialEq)]
pub enum AnyTask {
    /// The adding problem.
    Adding(Adding),
    /// Copy memory.
    CopyMemory(CopyMemory),
    /// Temporal order.
    TemporalOrder(TemporalOrder),
    /// Sequential digits (boxed: it holds the data set).
    SequentialDigits(Box<SequentialDigits>),
}

macro_rules! dispatch {
    ($self:ident, $t:ident => $e:expr) => {
        match $self {
            AnyTask::Adding($t) => $e,
            AnyTask::CopyMemory($t) => $e,
            AnyTask::TemporalOrder($t) => $e,
            AnyTask::SequentialDigits($t) => $e,
        }
    };
}

impl Task for AnyTask {
    fn name(&self) -> String {
        dispatch!(self, t => t.name())
    }

    fn input_dim(&self) -> usize {
        dispatch!(self, t => t.input_dim())
    }

    fn output_dim(&self) -> usize {
        dispatch!(self, t => t.output_dim())
    }

    fn seq_len(&self) -> usize {
        dispatch!(self, t => t.seq_len())
    }

    fn target_kind(&self) -> TargetKind {
        dispatch!(self, t => t.target_kind())
    }

    fn sample<F: Float>(&self, batch: usize, rng: &mut Rng) -> Result<Batch<F>> {
        dispatch!(self, t => t.sample(batch, rng))
    }

    fn baseline_loss(&self) -> f64 {
        dispatch!(self, t => t.baseline_loss())
    }

    fn test_set<F: Float>(&self) -> Option<Batch<F>> {
        dispatch!(self, t => t.test_set())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rnnlab_core::seeded_rng;

    fn all() -> Vec<TaskConfig> {
        vec![
            AddingConfig::new(20).into(),
            CopyMemoryConfig::new(5).into(),
            TemporalOrderConfig::new(30).into(),
            DigitsConfig::new().with_permuted(true).into(),
        ]
    }

    #[test]
    fn every_task_samples_consistently_with_its_metadata() {
        for cfg in all() {
            let task = cfg.build().unwrap();
            let batch = task.sample::<f32>(3, &mut seeded_rng(0)).unwrap();
            assert_eq!(batch.inputs.dim(), (task.seq_len(), 3, task.input_dim()), "{}", task.name());
            assert_eq!(batch.targets.kind(), task.target_kind());
            assert!(batch.inputs.iter().all(|v| (0.0..=1.0).contains(v)));
            assert!(task.baseline_loss() > 0.0 && task.baseline_loss().is_finite());
            assert!(task.sample::<f64>(0, &mut seeded_rng(0)).is_err(), "{}", task.name());
            assert_eq!(task.test_set::<f32>().is_some(), matches!(task, AnyTask::SequentialDigits(_)));
        }
    }

    #[test]
    fn json_round_trip_and_tags() {
        for cfg in all() {
            let s = serde_json::to_string(&cfg).unwrap();
            assert_eq!(serde_json::from_str::<TaskConfig>(&s).unwrap(), cfg, "{s}");
        }
        let s = serde_json::to_string(&TaskConfig::from(AddingConfig::new(7))).unwrap();
        assert_eq!(s, r#"{"task":"adding","seq_len":7}"#);
        let cfg: TaskConfig = serde_json::from_str(r#"{"task":"sequential_digits"}"#).unwrap();
        assert_eq!(cfg, TaskConfig::SequentialDigits(DigitsConfig::new()));
    }

    #[test]
    fn build_rejects_short_adding() {
        assert!(TaskConfig::from(AddingConfig::new(1)).build().is_err());
    }

    #[test]
    fn build_rejects_zero_delay_copy() {
        assert!(TaskConfig::from(CopyMemoryConfig::new(0)).build().is_err());
    }

    #[test]
    fn build_rejects_zero_copies() {
        assert!(TaskConfig::from(CopyMemoryConfig::new(3).with_n_copy(0)).build().is_err());
    }

    #[test]
    fn build_rejects_short_temporal_order() {
        assert!(TaskConfig::from(TemporalOrderConfig::new(9)).build().is_err());
    }
}
