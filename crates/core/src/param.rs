//! Parameters and their visiting by stable names (`w_ih`, `w_hh`, `b_ih`, `b_hh`, `ln.gamma`).

use ndarray::{Array, ArrayD, ArrayViewD, ArrayViewMutD, Dimension};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Float, Result, StateDict, state_dict};

/// A learnable array with its gradient accumulator of the same shape.
///
/// Serialises its value only; a deserialised parameter has a zero gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct Param<F, D: Dimension> {
    /// The current value.
    pub value: Array<F, D>,
    /// The accumulated gradient ∂L/∂value (zeroed by [`Parameterized::zero_grad`]).
    pub grad: Array<F, D>,
}

impl<F: Float, D: Dimension> Param<F, D> {
    /// A parameter with the given value and a zero gradient.
    pub fn new(value: Array<F, D>) -> Self {
        let grad = Array::zeros(value.raw_dim());
        Self { value, grad }
    }

    /// Read-only views with a dynamic dimension, for visitors.
    pub fn view(&self) -> ParamView<'_, F> {
        ParamView { value: self.value.view().into_dyn(), grad: self.grad.view().into_dyn() }
    }

    /// Mutable views with a dynamic dimension, for visitors.
    pub fn view_mut(&mut self) -> ParamViewMut<'_, F> {
        ParamViewMut { value: self.value.view_mut().into_dyn(), grad: self.grad.view_mut().into_dyn() }
    }
}

impl<F: Float, D: Dimension + Serialize> Serialize for Param<F, D> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

impl<'de, F: Float, D: Dimension + Deserialize<'de>> Deserialize<'de> for Param<F, D> {
    fn deserialize<De: Deserializer<'de>>(deserializer: De) -> Result<Self, De::Error> {
        Array::<F, D>::deserialize(deserializer).map(Param::new)
    }
}

/// A parameter's value and gradient, read-only.
#[derive(Debug)]
pub struct ParamView<'a, F> {
    /// The value.
    pub value: ArrayViewD<'a, F>,
    /// The gradient.
    pub grad: ArrayViewD<'a, F>,
}

/// A parameter's value and gradient, mutable.
#[derive(Debug)]
pub struct ParamViewMut<'a, F> {
    /// The value.
    pub value: ArrayViewMutD<'a, F>,
    /// The gradient.
    pub grad: ArrayViewMutD<'a, F>,
}

/// Anything with learnable parameters, visited by stable names in a fixed order.
///
/// The names are the ones used in checkpoints, reports and optimizer state; nested
/// modules prefix their children's names with `"{prefix}."` (see [`visit_prefixed`]). They are
/// rnnlab's names (`layers.0.w_ih`); [`crate::to_torch`] / [`crate::from_torch`] map them to
/// and from PyTorch's (`weight_ih_l0`).
///
/// Implementors write the two visits; everything else is provided: counting, zeroing, and
/// PyTorch-style access by name — [`Parameterized::named_params`],
/// [`Parameterized::get_param`], [`Parameterized::set_param`],
/// [`Parameterized::state_dict`], [`Parameterized::load_state_dict`]. The setters write the
/// values through [`Parameterized::visit_params_mut`], which is safe for every rnnlab cell:
/// a cell's packed copies of its weights are refreshed from the values at each forward pass
/// (see the cell invariants in docs/ARCHITECTURE.md), so the next forward uses what was set.
/// Gradients are left as they are.
///
/// # Examples
/// ```
/// use ndarray::{Array1, ArrayD, Ix1, arr1};
/// use rnnlab_core::{Param, ParamView, ParamViewMut, Parameterized};
///
/// struct Bias {
///     b: Param<f64, Ix1>,
/// }
/// impl Parameterized<f64> for Bias {
///     fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, f64>)) {
///         v("b", self.b.view())
///     }
///     fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, f64>)) {
///         v("b", self.b.view_mut())
///     }
/// }
///
/// let mut m = Bias { b: Param::new(Array1::zeros(3)) };
/// assert_eq!(m.param_names(), ["b"]);
/// m.set_param("b", arr1(&[1.0, 2.0, 3.0]).into_dyn().view())?;
/// assert_eq!(m.get_param("b")?.sum(), 6.0);
/// assert!(m.set_param("b", ArrayD::zeros(vec![2]).view()).is_err()); // [2] is not [3]
/// assert!(m.get_param("w").is_err()); // the message lists the known names
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub trait Parameterized<F: Float> {
    /// Calls `visitor(name, param)` for every parameter, in a fixed order.
    fn visit_params(&self, visitor: &mut dyn FnMut(&str, ParamView<'_, F>));

    /// Calls `visitor(name, param)` for every parameter, mutably, in the same order.
    fn visit_params_mut(&mut self, visitor: &mut dyn FnMut(&str, ParamViewMut<'_, F>));

    /// Sets every gradient to zero.
    fn zero_grad(&mut self) {
        self.visit_params_mut(&mut |_, mut p| p.grad.fill(F::zero()));
    }

    /// The total number of scalar parameters.
    fn n_params(&self) -> usize {
        let mut n = 0;
        self.visit_params(&mut |_, p| n += p.value.len());
        n
    }

    /// The parameter names in visiting order.
    fn param_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        self.visit_params(&mut |name, _| names.push(name.to_string()));
        names
    }

    /// Every parameter's name and a copy of its value, in visiting order (PyTorch's
    /// `named_parameters`).
    fn named_params(&self) -> Vec<(String, ArrayD<F>)> {
        let mut out = Vec::new();
        self.visit_params(&mut |name, p| out.push((name.to_string(), p.value.to_owned())));
        out
    }

    /// A copy of the value of parameter `name`.
    ///
    /// # Errors
    /// [`crate::Error::Config`] for an unknown name, listing the known ones (at most
    /// [`crate::MAX_LISTED_NAMES`], then the count).
    fn get_param(&self, name: &str) -> Result<ArrayD<F>> {
        state_dict::get_param(self, name)
    }

    /// Overwrites the value of parameter `name` with `value` (any memory layout); its gradient
    /// is left alone.
    ///
    /// # Errors
    /// [`crate::Error::NonFinite`] naming the first NaN/±∞ entry of `value`;
    /// [`crate::Error::Shape`] naming the parameter, its shape and `value`'s;
    /// [`crate::Error::Config`] for an unknown name, listing the known ones. On `Err` nothing
    /// changed.
    fn set_param(&mut self, name: &str, value: ArrayViewD<'_, F>) -> Result<()> {
        state_dict::set_param(self, name, value)
    }

    /// Every parameter value by name, in visiting order (PyTorch's `state_dict`).
    fn state_dict(&self) -> StateDict<F> {
        self.named_params().into_iter().collect()
    }

    /// Overwrites every parameter value from `dict`, all or nothing: the names must be exactly
    /// this model's (none missing, none unexpected), every shape must match and every value
    /// be finite; only when all of that holds is anything written. Gradients are left alone.
    ///
    /// # Errors
    /// - [`crate::Error::Format`] listing the missing and the unexpected names, and the
    ///   expected names with their shapes.
    /// - [`crate::Error::Shape`] listing every parameter whose shape differs: expected and got.
    /// - [`crate::Error::NonFinite`] naming the first parameter (and index) holding NaN or ±∞.
    fn load_state_dict(&mut self, dict: &StateDict<F>) -> Result<()> {
        state_dict::load_state_dict(self, dict)
    }
}

/// Visits `inner`'s parameters with names prefixed by `"{prefix}."`.
pub fn visit_prefixed<F: Float, P: Parameterized<F> + ?Sized>(
    prefix: &str,
    inner: &P,
    visitor: &mut dyn FnMut(&str, ParamView<'_, F>),
) {
    inner.visit_params(&mut |name, p| visitor(&format!("{prefix}.{name}"), p));
}

/// Mutable twin of [`visit_prefixed`].
pub fn visit_prefixed_mut<F: Float, P: Parameterized<F> + ?Sized>(
    prefix: &str,
    inner: &mut P,
    visitor: &mut dyn FnMut(&str, ParamViewMut<'_, F>),
) {
    inner.visit_params_mut(&mut |name, p| visitor(&format!("{prefix}.{name}"), p));
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2};

    struct Two {
        w: Param<f64, ndarray::Ix2>,
        b: Param<f64, ndarray::Ix1>,
    }

    impl Parameterized<f64> for Two {
        fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, f64>)) {
            v("w", self.w.view());
            v("b", self.b.view());
        }
        fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, f64>)) {
            v("w", self.w.view_mut());
            v("b", self.b.view_mut());
        }
    }

    #[test]
    fn visiting_names_counts_and_zeroing() {
        let mut m = Two { w: Param::new(Array2::ones((2, 3))), b: Param::new(Array1::ones(2)) };
        m.w.grad.fill(5.0);
        assert_eq!(m.n_params(), 8);
        assert_eq!(m.param_names(), ["w", "b"]);
        m.zero_grad();
        assert!(m.w.grad.iter().all(|&g| g == 0.0));
        let mut names = Vec::new();
        visit_prefixed("layers.0", &m, &mut |n, _| names.push(n.to_string()));
        assert_eq!(names, ["layers.0.w", "layers.0.b"]);
    }

    #[test]
    fn param_serialises_value_only() {
        let mut p = Param::new(Array1::from(vec![0.1f64, -2.5, 1e-300]));
        p.grad.fill(3.0);
        let json = serde_json::to_string(&p).unwrap();
        let back: Param<f64, ndarray::Ix1> = serde_json::from_str(&json).unwrap();
        assert_eq!(back.value, p.value, "bit-exact round trip");
        assert!(back.grad.iter().all(|&g| g == 0.0));
        assert_eq!(back.grad.len(), 3);
    }
}
