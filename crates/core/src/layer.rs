//! The `Layer` trait: forward with an explicit cache, backward that accumulates gradients.

use ndarray::{Array2, ArrayView2};

use crate::{Float, Parameterized, Result};

/// A differentiable map from `[rows, in_features]` to `[rows, out_features]`.
///
/// `forward` returns the output and an explicit cache; `backward` takes that cache and
/// ∂L/∂output, returns ∂L/∂input and *adds* ∂L/∂θ to each parameter's gradient
/// (call [`Parameterized::zero_grad`] between independent passes).
///
/// Layers that keep running statistics (batch norm) update them in `forward` while
/// training, hence `&mut self`.
///
/// # Shapes
/// - input: `[rows, in_features]` (a sequence is passed as `[time · batch, features]`)
/// - output and `grad_output`: `[rows, out_features]`
///
/// # Errors
/// Implementations return [`crate::Error::Shape`] for inputs or output gradients of the wrong
/// shape and never panic on them.
pub trait Layer<F: Float>: Parameterized<F> {
    /// What `forward` keeps for `backward`.
    type Cache;

    /// Computes the output and the cache.
    fn forward(&mut self, input: ArrayView2<'_, F>) -> Result<(Array2<F>, Self::Cache)>;

    /// Back-propagates `grad_output`, accumulating parameter gradients; returns ∂L/∂input.
    fn backward(&mut self, cache: &Self::Cache, grad_output: ArrayView2<'_, F>) -> Result<Array2<F>>;

    /// Switches between training and evaluation behaviour (a no-op for most layers).
    fn set_training(&mut self, _training: bool) {}
}
