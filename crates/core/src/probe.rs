//! The optional diagnostics hook of a cell: per-step saturation, the activation's derivative
//! bound, and the total derivative of the loss with respect to the state's parts.

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::{Float, Result, StepRefs};

/// The mean value of one gate over a step (all batch rows and units).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GateMean {
    /// The gate's name (`"f"` for an LSTM's forget gate).
    pub name: &'static str,
    /// Its mean activation over the step.
    pub mean: f64,
}

/// What [`Probe::saturation`] reports for one step of a batch.
///
/// A *unit* is one evaluation of a bounded or piecewise nonlinearity in the step (an LSTM has
/// five per hidden unit and batch row: σ of i, f, o, tanh of g and of c_t). Its *relative
/// derivative* is φ′(a)/sup φ′ (1 at tanh's or σ's centre, 0 when saturated or a dead ReLU),
/// so that sigmoid and tanh units are counted on one scale.
#[derive(Clone, Debug, PartialEq)]
pub struct Saturation {
    /// The number of units counted (batch rows × units per row).
    pub n_units: usize,
    /// How many of them have a relative derivative below `eps`.
    pub n_saturated: usize,
    /// The mean relative derivative over the units, in [0, 1] for bounded activations.
    pub mean_derivative: f64,
    /// Each gate's mean activation (LSTM i, f, g, o; GRU r, z, n); empty for ungated cells.
    pub gates: Vec<GateMean>,
}

impl Saturation {
    /// `n_saturated / n_units` (0 for no units).
    pub fn fraction(&self) -> f64 {
        if self.n_units == 0 { 0.0 } else { self.n_saturated as f64 / self.n_units as f64 }
    }
}

/// The diagnostics hook a cell may implement, reached through [`crate::Cell::probe`]; every
/// method has a default meaning "not available", so a cell that implements none of them still
/// gets every diagnostic that needs only the [`crate::Cell`] trait.
///
/// None of these methods is on the training path; they may allocate a result, but never
/// per-unit storage beyond what their signature hands in.
pub trait Probe<F: Float> {
    /// Saturation statistics of step `step` (the buffers as the unroller keeps them), with
    /// `eps` the relative-derivative threshold; `Ok(None)` if the cell cannot tell.
    ///
    /// # Errors
    /// A cell may refuse buffers of the wrong shape with [`crate::Error::Shape`].
    fn saturation(&self, _step: StepRefs<'_, F>, _eps: f64) -> Result<Option<Saturation>> {
        Ok(None)
    }

    /// γ = sup |φ′| of the elementwise nonlinearity in a step Jacobian of the form
    /// diag(φ′(a))·W_hh (1 for tanh, ¼ for sigmoid), for Pascanu et al.'s (2013) sufficient
    /// condition for vanishing gradients σ₁(W_hh) < 1/γ; `None` if the Jacobian is not of that
    /// form (gated or normalised cells).
    fn derivative_bound(&self) -> Option<f64> {
        None
    }

    /// Converts ∂L/∂s_t with the state's parts taken as independent variables (what the
    /// unroller's backward records: the c part of an LSTM holds h_t fixed, only the path
    /// through c_{t+1}) into total derivatives through the step's own computation: for every
    /// part k ≥ 1, `out_k = d_k + (∂h_t/∂part_k)ᵀ·d_h`, and `out_h = d_h`. For an LSTM that is
    /// ∂L/∂c_t + o_t ⊙ (1 − tanh²c_t) ⊙ ∂L/∂h_t, what PyTorch reports as `c_t.grad` in an
    /// unroll where h_t = o_t ⊙ tanh(c_t) is computed from c_t. Both arrays are
    /// `[batch, state_width]`. Returns `Ok(false)` (leaving `out` untouched) if not available.
    ///
    /// # Errors
    /// A cell may refuse buffers of the wrong shape with [`crate::Error::Shape`].
    fn total_state_grad(
        &self,
        _step: StepRefs<'_, F>,
        _d_state: ArrayView2<'_, F>,
        _out: ArrayViewMut2<'_, F>,
    ) -> Result<bool> {
        Ok(false)
    }
}
