//! [`Stack`]: the recurrent part of a [`crate::SeqModel`] — one direction (`Recurrent`) or both
//! (`Bidirectional`, PyTorch's `bidirectional=True`) — behind one forward/backward interface.

use ndarray::{Array3, ArrayView3};
use rnnlab_cells::{Backward, BackwardOptions, BiBackward, BiCache, Bidirectional, OutputGrad, Recurrent, SeqCache};
use rnnlab_core::{Cell, Float, ParamView, ParamViewMut, Parameterized, Result, State};

/// The recurrent layers of a model: unidirectional or bidirectional.
///
/// Parameter names are the inner stack's (`layers.{l}.w_ih`, and `layers.{l}.reverse.w_ih` for
/// the reverse direction, PyTorch's `weight_ih_l{l}_reverse`).
#[derive(Clone, Debug, PartialEq)]
pub enum Stack<F: Float, C> {
    /// One direction: outputs `[time, batch, hidden_dim]`.
    Unidirectional(Recurrent<F, C>),
    /// Both directions: outputs `[time, batch, 2·hidden_dim]`, forward then reverse.
    Bidirectional(Bidirectional<F, C>),
}

/// What a [`Stack`]'s forward pass keeps for its backward pass.
#[derive(Clone, Debug)]
pub enum StackCache<F> {
    /// Of a unidirectional stack.
    Unidirectional(SeqCache<F>),
    /// Of a bidirectional stack.
    Bidirectional(BiCache<F>),
}

/// The result of [`Stack::forward`].
#[derive(Clone, Debug)]
pub struct StackForward<F> {
    /// The top layer's outputs, `[time, batch, output_dim]`.
    pub outputs: Array3<F>,
    /// The final states (per layer; per layer and direction, forward first, when bidirectional).
    pub final_states: Vec<State<F>>,
    /// The cache for [`Stack::backward`].
    pub cache: StackCache<F>,
}

impl<F: Float, C: Cell<F>> Stack<F, C> {
    /// Whether both directions run.
    pub fn is_bidirectional(&self) -> bool {
        matches!(self, Self::Bidirectional(_))
    }

    /// The unidirectional stack, if it is one.
    pub fn as_unidirectional(&self) -> Option<&Recurrent<F, C>> {
        match self {
            Self::Unidirectional(r) => Some(r),
            Self::Bidirectional(_) => None,
        }
    }

    /// The unidirectional stack, mutable, if it is one.
    pub fn as_unidirectional_mut(&mut self) -> Option<&mut Recurrent<F, C>> {
        match self {
            Self::Unidirectional(r) => Some(r),
            Self::Bidirectional(_) => None,
        }
    }

    /// Every cell, in PyTorch's order (layer 0, or layer 0 forward then reverse, …).
    pub fn cells(&self) -> Vec<&C> {
        match self {
            Self::Unidirectional(r) => r.layers().iter().collect(),
            Self::Bidirectional(b) => b.layers().flat_map(|(f, r)| [f, r]).collect(),
        }
    }

    /// Every cell, mutable, in the same order.
    pub fn cells_mut(&mut self) -> Vec<&mut C> {
        match self {
            Self::Unidirectional(r) => r.layers_mut().iter_mut().collect(),
            Self::Bidirectional(b) => b.layers_mut().flat_map(|(f, r)| [f, r]).collect(),
        }
    }

    /// The number of layers.
    pub fn n_layers(&self) -> usize {
        match self {
            Self::Unidirectional(r) => r.n_layers(),
            Self::Bidirectional(b) => b.n_layers(),
        }
    }

    /// The width of the outputs: H, or 2H when bidirectional.
    pub fn output_dim(&self) -> usize {
        match self {
            Self::Unidirectional(r) => r.hidden_dim(),
            Self::Bidirectional(b) => b.output_dim(),
        }
    }

    /// Switches training/evaluation behaviour.
    pub fn set_training(&mut self, training: bool) {
        match self {
            Self::Unidirectional(r) => r.set_training(training),
            Self::Bidirectional(b) => b.set_training(training),
        }
    }

    /// Runs the stack over `x` `[time, batch, input_dim]` from `init` (zeros if `None`).
    ///
    /// # Errors
    /// As `Recurrent::forward` / `Bidirectional::forward`.
    pub fn forward(&mut self, x: ArrayView3<'_, F>, init: Option<&[State<F>]>) -> Result<StackForward<F>> {
        Ok(match self {
            Self::Unidirectional(r) => {
                let f = r.forward(x, init)?;
                StackForward {
                    outputs: f.outputs,
                    final_states: f.final_states,
                    cache: StackCache::Unidirectional(f.cache),
                }
            }
            Self::Bidirectional(b) => {
                let f = b.forward(x, init)?;
                StackForward {
                    outputs: f.outputs,
                    final_states: f.final_states,
                    cache: StackCache::Bidirectional(f.cache),
                }
            }
        })
    }

    /// The backward pass from a cache of this stack; per-direction lists (∂L/∂init, step
    /// gradients) in PyTorch's order when bidirectional.
    ///
    /// # Errors
    /// As `Recurrent::backward` / `Bidirectional::backward`, and [`rnnlab_core::Error::Shape`]
    /// for a cache of the other kind of stack.
    pub fn backward(
        &mut self,
        cache: &StackCache<F>,
        d_out: OutputGrad<'_, F>,
        options: BackwardOptions<'_, F>,
    ) -> Result<Backward<F>> {
        match (self, cache) {
            (Self::Unidirectional(r), StackCache::Unidirectional(c)) => r.backward(c, d_out, options),
            (Self::Bidirectional(b), StackCache::Bidirectional(c)) => {
                let g = b.backward(c, d_out, options)?;
                Ok(Backward { dx: g.dx, d_init: g.d_init, step_grads: g.step_grads })
            }
            (s, _) => Err(rnnlab_core::Error::shape(
                "Stack::backward",
                format!(
                    "a cache of this {} stack",
                    if s.is_bidirectional() { "bidirectional" } else { "unidirectional" }
                ),
                "a cache of the other kind",
            )),
        }
    }

    /// Gives a finished pass's buffers back for reuse.
    pub fn recycle(&mut self, cache: StackCache<F>) {
        match (self, cache) {
            (Self::Unidirectional(r), StackCache::Unidirectional(c)) => r.recycle(c),
            (Self::Bidirectional(b), StackCache::Bidirectional(c)) => b.recycle(c),
            _ => {}
        }
    }

    /// Gives a backward pass's result buffers back.
    pub fn recycle_grads(&mut self, grads: Backward<F>) {
        match self {
            Self::Unidirectional(r) => r.recycle_grads(grads),
            Self::Bidirectional(b) => {
                b.recycle_grads(BiBackward { dx: grads.dx, d_init: grads.d_init, step_grads: grads.step_grads })
            }
        }
    }
}

impl<F: Float, C: Cell<F>> Parameterized<F> for Stack<F, C> {
    fn visit_params(&self, visitor: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        match self {
            Self::Unidirectional(r) => r.visit_params(visitor),
            Self::Bidirectional(b) => b.visit_params(visitor),
        }
    }

    fn visit_params_mut(&mut self, visitor: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        match self {
            Self::Unidirectional(r) => r.visit_params_mut(visitor),
            Self::Bidirectional(b) => b.visit_params_mut(visitor),
        }
    }
}
