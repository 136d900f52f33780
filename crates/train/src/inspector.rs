//! [`Inspector`]: what sees a training step from the inside — the model, the batch, the
//! forward cache and the whole backward pass — for diagnostics during training. Only the steps
//! an inspector asks for pay anything; [`NoInspector`] asks for none.

use rnnlab_cells::Backward;
use rnnlab_core::{Cell, Float, Result};
use rnnlab_tasks::Batch;

use crate::{SeqModel, StackCache};

/// One training step as an [`Inspector`] sees it: after the backward pass, before the finite
/// check, clipping and the update (the gradients are the raw ones).
#[derive(Debug)]
pub struct StepView<'a, F: Float, C> {
    /// Steps taken before this one (0 for the first step).
    pub step: u64,
    /// The model, its parameter gradients filled for this batch.
    pub model: &'a SeqModel<F, C>,
    /// The batch.
    pub batch: &'a Batch<F>,
    /// The loss of the batch.
    pub loss: f64,
    /// The forward pass's cache (states, projections, caches), for Jacobian products.
    pub cache: &'a StackCache<F>,
    /// The backward pass through the stack: ∂L/∂(initial states) and the per-step state
    /// gradients ∂L/∂s_t of every layer.
    pub backward: &'a Backward<F>,
}

/// Sees chosen training steps from the inside (see [`StepView`]), through
/// [`crate::Trainer::run_inspected`].
///
/// `wants(step)` is asked before each step; a step no inspector wants runs exactly as in
/// [`crate::Trainer::run`], with no copy and no extra work.
pub trait Inspector<F: Float, C: Cell<F>> {
    /// Whether to see step `step` (steps taken before it).
    fn wants(&mut self, step: u64) -> bool;

    /// The wanted step, after its backward pass.
    ///
    /// # Errors
    /// Whatever the inspection fails with; it ends the run with that error.
    fn inspect(&mut self, view: StepView<'_, F, C>) -> Result<()>;

    /// After the update of a wanted step (skipped steps included, with the model unchanged);
    /// nothing by default. Before/after values give update-to-weight ratios.
    ///
    /// # Errors
    /// As [`Inspector::inspect`].
    fn after_update(&mut self, _step: u64, _model: &SeqModel<F, C>) -> Result<()> {
        Ok(())
    }
}

/// Inspects nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoInspector;

impl<F: Float, C: Cell<F>> Inspector<F, C> for NoInspector {
    fn wants(&mut self, _step: u64) -> bool {
        false
    }

    fn inspect(&mut self, _view: StepView<'_, F, C>) -> Result<()> {
        Ok(())
    }
}
