//! The `Activation` layer: an elementwise activation as a parameter-free [`Layer`].

use ndarray::{Array2, ArrayView2, Zip};
use rnnlab_core::{Float, Layer, ParamView, ParamViewMut, Parameterized, Result};
use serde::{Deserialize, Serialize};

use crate::ActivationKind;

/// y = f(x) elementwise, as a [`Layer`] without parameters.
///
/// The cache is the output y for kinds with [`ActivationKind::df_uses_output`] and the input x
/// for GELU; backward multiplies ∂L/∂y by f′ computed from it (formulas on [`ActivationKind`]).
///
/// # Shapes
/// - input, output, cache and `grad_output`: `[rows, features]`
///
/// # Examples
/// ```
/// use ndarray::array;
/// use rnnlab_activations::{Activation, ActivationKind};
/// use rnnlab_core::Layer;
/// let mut act = Activation::new(ActivationKind::Tanh)?;
/// let (y, cache) = Layer::<f64>::forward(&mut act, array![[0.0, 0.5]].view())?;
/// let dx = act.backward(&cache, array![[1.0, 1.0]].view())?;
/// // tanh′(0.5) = 1 − tanh²(0.5) ≈ 0.7864477329659274.
/// assert!((dx[[0, 1]] - 0.786_447_732_965_927_4).abs() < 1e-12);
/// assert!((y[[0, 1]] - 0.5f64.tanh()).abs() < 1e-15);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Activation {
    kind: ActivationKind,
}

impl Activation {
    /// The layer applying `kind`.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Config`] if `kind`'s hyper-parameters are invalid
    /// ([`ActivationKind::validate`]).
    ///
    /// # Examples
    /// ```
    /// use rnnlab_activations::{Activation, ActivationKind};
    /// assert!(Activation::new(ActivationKind::Selu).is_ok());
    /// assert!(Activation::new(ActivationKind::Elu { alpha: 0.0 }).is_err());
    /// ```
    pub fn new(kind: ActivationKind) -> Result<Self> {
        kind.validate()?;
        Ok(Self { kind })
    }

    /// The activation applied.
    pub fn kind(&self) -> ActivationKind {
        self.kind
    }
}

impl<F: Float> Parameterized<F> for Activation {
    /// Visits nothing: an activation has no parameters.
    fn visit_params(&self, _visitor: &mut dyn FnMut(&str, ParamView<'_, F>)) {}

    /// Visits nothing: an activation has no parameters.
    fn visit_params_mut(&mut self, _visitor: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {}
}

impl<F: Float> Layer<F> for Activation {
    /// The output y, or the input x for GELU.
    type Cache = Array2<F>;

    /// y = f(x) elementwise; never fails.
    fn forward(&mut self, input: ArrayView2<'_, F>) -> Result<(Array2<F>, Array2<F>)> {
        let mut y = input.as_standard_layout().into_owned();
        match y.as_slice_mut() {
            Some(s) => self.kind.forward_slice(s),
            // A fresh standard-layout array is always contiguous; the fallback keeps this total.
            None => y.mapv_inplace(|v| self.kind.f(v)),
        }
        let cache = if self.kind.df_uses_output() { y.clone() } else { input.to_owned() };
        Ok((y, cache))
    }

    /// ∂L/∂x = ∂L/∂y ⊙ f′.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Shape`] if `grad_output`'s shape differs from the cache's.
    fn backward(&mut self, cache: &Array2<F>, grad_output: ArrayView2<'_, F>) -> Result<Array2<F>> {
        rnnlab_core::validate::shape("Activation::backward", "grad_output", cache.shape(), grad_output.shape())?;
        let mut grad = grad_output.as_standard_layout().into_owned();
        let cache = cache.as_standard_layout();
        let output_derivative = self.kind.output_derivative().ok();
        match (cache.as_slice(), grad.as_slice_mut()) {
            (Some(c), Some(g)) => match output_derivative {
                Some(d) => d.backward(c, g)?,
                None => self.kind.backward_from_input(c, g)?,
            },
            // Both are standard layout, so contiguous; the fallback keeps this total.
            _ => Zip::from(&mut grad).and(&cache).for_each(|g, &c| {
                *g *= match output_derivative {
                    Some(d) => d.df(c),
                    None => self.kind.df(c),
                }
            }),
        }
        Ok(grad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};
    use rnnlab_core::{Error, GradCheck, check_layer};

    /// Values in (−3, 3) that stay away from the kinks at 0 and ±1.
    fn input(rows: usize, cols: usize) -> Array2<f64> {
        Array2::from_shape_fn((rows, cols), |(i, j)| {
            let v = 2.9 * ((i * cols + j) as f64 * 1.37 + 0.4).sin();
            if v.abs() < 0.05 || (v.abs() - 1.0).abs() < 0.05 { v + 0.2 } else { v }
        })
    }

    #[test]
    fn gradient_check_passes_for_every_kind() {
        let mut kinds = ActivationKind::ALL.to_vec();
        kinds.push(ActivationKind::LeakyRelu { slope: 0.3 });
        kinds.push(ActivationKind::Elu { alpha: 0.7 });
        for k in kinds {
            let mut layer = Activation::new(k).unwrap();
            let report = check_layer(&GradCheck::new(), &mut layer, input(3, 5).view()).unwrap();
            assert_eq!(report.n_checked, 15);
            assert!(report.max_rel_error() < 1e-7, "{k}: {report}");
        }
    }

    #[test]
    fn hand_values_and_cache_choice() {
        // relu([−1, 2]) = [0, 2]; relu′ = [0, 1], so dx = [0, 3].
        let mut relu = Activation::new(ActivationKind::Relu).unwrap();
        let (y, cache) = Layer::<f64>::forward(&mut relu, array![[-1.0, 2.0]].view()).unwrap();
        assert_eq!(cache, y);
        assert!(y.iter().zip([0.0, 2.0]).all(|(a, b)| (a - b).abs() < 1e-15));
        let dx = relu.backward(&cache, array![[3.0, 3.0]].view()).unwrap();
        assert!(dx.iter().zip([0.0, 3.0]).all(|(a, b)| (a - b).abs() < 1e-15));
        // GELU caches the input.
        let mut gelu = Activation::new(ActivationKind::Gelu).unwrap();
        let x = array![[0.3, -0.7]];
        let (_, cache) = Layer::<f64>::forward(&mut gelu, x.view()).unwrap();
        assert_eq!(cache, x);
    }

    #[test]
    fn shapes_batch_one_and_non_contiguous_input() {
        let mut act = Activation::new(ActivationKind::Sigmoid).unwrap();
        let x = input(1, 1);
        let (y, c) = Layer::<f64>::forward(&mut act, x.view()).unwrap();
        assert_eq!(y.shape(), [1, 1]);
        assert_eq!(act.backward(&c, y.view()).unwrap().shape(), [1, 1]);
        // A transposed (column-major) view gives the same values as its standard copy.
        let x = input(4, 3);
        let (yt, ct) = Layer::<f64>::forward(&mut act, x.t()).unwrap();
        let (ys, cs) = Layer::<f64>::forward(&mut act, x.t().to_owned().view()).unwrap();
        assert_eq!(yt, ys);
        let g = input(3, 4);
        let gt = act.backward(&ct.t().to_owned().reversed_axes(), g.view()).unwrap();
        let gs = act.backward(&cs, g.view()).unwrap();
        assert!(gt.iter().zip(&gs).all(|(a, b)| (a - b).abs() < 1e-15));
    }

    #[test]
    fn bad_grad_shape_is_a_shape_error() {
        for k in [ActivationKind::Tanh, ActivationKind::Gelu] {
            let mut act = Activation::new(k).unwrap();
            let (_, cache) = Layer::<f64>::forward(&mut act, input(2, 3).view()).unwrap();
            let e = act.backward(&cache, Array2::zeros((3, 2)).view()).unwrap_err();
            assert!(matches!(e, Error::Shape { .. }), "{e}");
        }
    }

    #[test]
    fn new_rejects_bad_hyper_parameters() {
        assert!(matches!(Activation::new(ActivationKind::LeakyRelu { slope: 0.0 }), Err(Error::Config { .. })));
        assert!(matches!(Activation::new(ActivationKind::Elu { alpha: f64::NAN }), Err(Error::Config { .. })));
        let e = serde_json::from_str::<Activation>(r#"{"kind":"elu:-2"}"#).unwrap_err();
        assert!(e.to_string().contains("alpha"), "{e}");
        let a: Activation = serde_json::from_str(r#"{"kind":"leaky_relu"}"#).unwrap();
        assert_eq!(a.kind(), ActivationKind::LEAKY_RELU);
    }

    #[test]
    fn has_no_parameters_and_runs_in_f32() {
        let mut act = Activation::new(ActivationKind::Gelu).unwrap();
        assert_eq!(Parameterized::<f32>::n_params(&act), 0);
        let x = input(2, 2).mapv(|v| v as f32);
        let (y, c) = Layer::<f32>::forward(&mut act, x.view()).unwrap();
        let dx = act.backward(&c, Array2::ones((2, 2)).view()).unwrap();
        for ((&xv, &yv), &dv) in x.iter().zip(&y).zip(&dx) {
            let k = ActivationKind::Gelu;
            assert!((f64::from(yv) - k.f(f64::from(xv))).abs() < 1e-6);
            assert!((f64::from(dv) - k.df(f64::from(xv))).abs() < 1e-6);
        }
    }
}
