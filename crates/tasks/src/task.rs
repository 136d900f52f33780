//! The [`Task`] trait every sequence task implements.

use rnnlab_core::{Float, Result, Rng, limits};

use crate::{Batch, TargetKind};

/// A seeded generator of batches of sequences with targets.
///
/// Every draw comes from the caller's [`Rng`], so the same seed gives the same batches on every
/// platform. The trait has generic methods (one generator serves `f32` and `f64`) and is
/// therefore not object safe; [`crate::AnyTask`] is the enum that dispatches over all tasks.
///
/// # Examples
/// ```
/// use rnnlab_tasks::{AddingConfig, Task, TargetKind};
/// let task = AddingConfig::new(50).build()?;
/// let mut rng = rnnlab_core::seeded_rng(0);
/// let batch = task.sample::<f32>(8, &mut rng)?;
/// assert_eq!(batch.inputs.dim(), (50, 8, 2));
/// assert_eq!(task.target_kind(), TargetKind::Regression);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub trait Task {
    /// A short name with the main parameter, e.g. `adding(T=100)`.
    fn name(&self) -> String;

    /// Features per step of the inputs.
    fn input_dim(&self) -> usize;

    /// Regression outputs, or number of classes.
    fn output_dim(&self) -> usize;

    /// Steps per sequence.
    fn seq_len(&self) -> usize;

    /// Which kind of [`crate::Targets`] the batches carry.
    fn target_kind(&self) -> TargetKind;

    /// Draws `batch` fresh sequences: inputs `[seq_len, batch, input_dim]` and targets.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Config`] if `batch == 0`.
    fn sample<F: Float>(&self, batch: usize, rng: &mut Rng) -> Result<Batch<F>>;

    /// The loss of the best memoryless predictor (mean squared error for regression,
    /// cross-entropy in nats for classes): what a model that learned nothing long-range reaches.
    fn baseline_loss(&self) -> f64;

    /// The fixed held-out set, for tasks that have one (the digits); `None` for generated
    /// tasks, whose fresh samples are already unseen.
    fn test_set<F: Float>(&self) -> Option<Batch<F>> {
        None
    }
}

/// `Err(Config)` unless `1 <= batch <=` [`limits::MAX_BATCH`] and the inputs
/// `[seq_len, batch, input_dim]` fit [`limits::MAX_ELEMENTS`]: checked before the batch is
/// allocated.
pub(crate) fn check_batch(op: &str, batch: usize, seq_len: usize, input_dim: usize) -> Result<()> {
    limits::size(op, "batch", batch, limits::MAX_BATCH)?;
    limits::checked_elements(op, "batch", &[seq_len, batch, input_dim]).map(drop)
}

/// `Err(Config)` unless `seq_len` is at most [`limits::MAX_SEQ_LEN`].
pub(crate) fn check_seq_len(op: &str, field: &str, seq_len: usize) -> Result<()> {
    limits::size(op, field, seq_len, limits::MAX_SEQ_LEN).map(drop)
}
