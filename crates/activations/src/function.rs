//! [`ActivationFn`]: the open side of activations — any scalar function with its derivative,
//! so a user's own activation can go into a recurrent cell without forking the crate.

use rnnlab_core::Float;

use crate::ActivationKind;

/// A scalar activation f with its derivative f′, as a recurrent cell applies it elementwise.
///
/// [`ActivationKind`] implements it (every built-in kind); implement it for your own type to
/// put a new activation into `rnnlab_cells::SimpleRnn` (or any cell of your own).
///
/// # Examples
/// The "penalised tanh" of Xu et al. (2016): f(x) = tanh x for x > 0, 0.25·tanh x otherwise.
/// ```
/// use rnnlab_activations::ActivationFn;
/// use rnnlab_core::Float;
///
/// #[derive(Clone, Copy, Debug)]
/// struct PenalisedTanh;
/// impl<F: Float> ActivationFn<F> for PenalisedTanh {
///     fn name(&self) -> &'static str { "penalised_tanh" }
///     fn f(&self, x: F) -> F {
///         let t = x.tanh();
///         if x > F::zero() { t } else { F::of(0.25) * t }
///     }
///     fn df(&self, x: F) -> F {
///         let t = x.tanh();
///         let d = F::one() - t * t;
///         if x > F::zero() { d } else { F::of(0.25) * d }
///     }
/// }
/// assert_eq!(ActivationFn::<f64>::f(&PenalisedTanh, -1.0), 0.25 * (-1.0f64).tanh());
/// ```
pub trait ActivationFn<F: Float>: Clone + std::fmt::Debug + Send + Sync {
    /// A short name for messages and reports.
    fn name(&self) -> &'static str;
    /// f(x).
    fn f(&self, x: F) -> F;
    /// f′(x), from the input x.
    fn df(&self, x: F) -> F;
}

impl<F: Float> ActivationFn<F> for ActivationKind {
    fn name(&self) -> &'static str {
        ActivationKind::name(self)
    }

    fn f(&self, x: F) -> F {
        ActivationKind::f(self, x)
    }

    fn df(&self, x: F) -> F {
        ActivationKind::df(self, x)
    }
}
