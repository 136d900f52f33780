//! [`SimpleRnn`]: the Elman RNN written as a [`SimpleCell`], with any [`ActivationFn`] — the
//! way to put an activation of your own into a recurrent net.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView2, Axis, Ix1, Ix2, Zip};
use rnnlab_activations::ActivationFn;
use rnnlab_core::{
    Float, Param, ParamView, ParamViewMut, Parameterized, Result, Rng, SimpleCell, SimpleStep, validate,
};

use crate::RnnConfig;

/// The Elman RNN h_t = f(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh) with any activation `A`
/// ([`rnnlab_activations::ActivationKind`] or a type of your own), as a [`SimpleCell`]: wrap it
/// in [`rnnlab_core::Simple`] to unroll, train and diagnose it.
///
/// Same parameters, names and initialisation as [`crate::Rnn`] (`w_ih` `[H, I]`, `w_hh`
/// `[H, H]`, `b_ih`, `b_hh` `[H]`); it saves f′(a_t) per step so that its backward needs
/// no product of the forward again. With a built-in activation it computes what `Rnn` does
/// (to rounding), more slowly: it is the reference for what the simple-cell path costs.
///
/// # Examples
/// ```
/// use ndarray::Array3;
/// use rnnlab_activations::ActivationKind;
/// use rnnlab_cells::{Recurrent, RnnConfig, SimpleRnn};
/// use rnnlab_core::{Simple, seeded_rng};
/// let cell = SimpleRnn::<f64, _>::init(&RnnConfig::new(3, 8), ActivationKind::Tanh, &mut seeded_rng(0))?;
/// let mut rnn = Recurrent::new(vec![Simple::new(cell)])?;
/// let fwd = rnn.forward(Array3::<f64>::ones((5, 2, 3)).view(), None)?;
/// assert_eq!(fwd.outputs.shape(), &[5, 2, 8]);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SimpleRnn<F: Float, A> {
    activation: A,
    w_ih: Param<F, Ix2>,
    w_hh: Param<F, Ix2>,
    b_ih: Param<F, Ix1>,
    b_hh: Param<F, Ix1>,
}

impl<F: Float, A: ActivationFn<F>> SimpleRnn<F, A> {
    /// Draws the parameters as `config` says (sizes and initialisers; `config.activation` is
    /// replaced by `activation`), in the order `RnnConfig::init` draws them, so the same seed
    /// gives the same weights as the built-in [`crate::Rnn`].
    ///
    /// # Errors
    /// [`Error::Config`](rnnlab_core::Error::Config) for a zero size or an invalid initialiser.
    pub fn init(config: &RnnConfig, activation: A, rng: &mut Rng) -> Result<Self> {
        let op = "SimpleRnn::init";
        validate::positive_size(op, "input_dim", config.input_dim)?;
        validate::positive_size(op, "hidden_dim", config.hidden_dim)?;
        let (i, h) = (config.input_dim, config.hidden_dim);
        let w_ih = config.w_ih_init.array2::<F>(h, i, rng)?;
        let w_hh = config.w_hh_init.array2::<F>(h, h, rng)?;
        let b_ih = config.bias_init.array1::<F>(h, rng)?;
        let b_hh = config.bias_init.array1::<F>(h, rng)?;
        Self::from_params(activation, w_ih, w_hh, b_ih, b_hh)
    }

    /// A cell from given parameters.
    ///
    /// # Errors
    /// [`Error::Shape`](rnnlab_core::Error::Shape) if the shapes do not fit together,
    /// [`Error::Config`](rnnlab_core::Error::Config) for a zero size,
    /// [`Error::NonFinite`](rnnlab_core::Error::NonFinite) for a NaN or infinite value.
    pub fn from_params(
        activation: A,
        w_ih: Array2<F>,
        w_hh: Array2<F>,
        b_ih: Array1<F>,
        b_hh: Array1<F>,
    ) -> Result<Self> {
        let op = "SimpleRnn::from_params";
        let (h, i) = w_ih.dim();
        validate::positive_size(op, "hidden_dim", h)?;
        validate::positive_size(op, "input_dim", i)?;
        validate::shape(op, "w_hh [H, H]", &[h, h], w_hh.shape())?;
        validate::shape(op, "b_ih [H]", &[h], b_ih.shape())?;
        validate::shape(op, "b_hh [H]", &[h], b_hh.shape())?;
        for (name, a) in [("w_ih", w_ih.view().into_dyn()), ("w_hh", w_hh.view().into_dyn())] {
            validate::finite_array(op, name, &a)?;
        }
        validate::finite_array(op, "b_ih", &b_ih.view())?;
        validate::finite_array(op, "b_hh", &b_hh.view())?;
        Ok(Self {
            activation,
            w_ih: Param::new(w_ih),
            w_hh: Param::new(w_hh),
            b_ih: Param::new(b_ih),
            b_hh: Param::new(b_hh),
        })
    }

    /// The activation.
    pub fn activation(&self) -> &A {
        &self.activation
    }

    fn check(&self, op: &str, x: ArrayView2<'_, F>, prev: ArrayView2<'_, F>) -> Result<()> {
        let (h, i) = self.w_ih.value.dim();
        validate::shape(op, "x_t [batch, input_dim]", &[x.nrows(), i], x.shape())?;
        validate::shape(op, "h_{t-1} [batch, hidden_dim]", &[x.nrows(), h], prev.shape())
    }

    /// δa = ∂L/∂h_t ⊙ f′(a_t), from the saved f′(a_t).
    fn delta(&self, op: &str, step: &SimpleStep<'_, F>, dnext: ArrayView2<'_, F>) -> Result<Array2<F>> {
        self.check(op, step.x, step.prev)?;
        validate::shape(op, "∂L/∂h_t [batch, hidden_dim]", step.prev.shape(), dnext.shape())?;
        validate::shape(op, "saved f′(a_t) [batch, hidden_dim]", step.prev.shape(), step.saved.shape())?;
        Ok(&dnext * &step.saved)
    }
}

impl<F: Float, A: ActivationFn<F>> Parameterized<F> for SimpleRnn<F, A> {
    fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        v("w_ih", self.w_ih.view());
        v("w_hh", self.w_hh.view());
        v("b_ih", self.b_ih.view());
        v("b_hh", self.b_hh.view());
    }

    fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        v("w_ih", self.w_ih.view_mut());
        v("w_hh", self.w_hh.view_mut());
        v("b_ih", self.b_ih.view_mut());
        v("b_hh", self.b_hh.view_mut());
    }
}

impl<F: Float, A: ActivationFn<F>> SimpleCell<F> for SimpleRnn<F, A> {
    fn name(&self) -> &'static str {
        "simple_rnn"
    }

    fn input_dim(&self) -> usize {
        self.w_ih.value.ncols()
    }

    fn hidden_dim(&self) -> usize {
        self.w_ih.value.nrows()
    }

    fn step(&self, x: ArrayView2<'_, F>, prev: ArrayView2<'_, F>) -> Result<Array2<F>> {
        Ok(self.step_saved(x, prev)?.0)
    }

    fn saved_width(&self) -> usize {
        self.hidden_dim()
    }

    fn step_saved(&self, x: ArrayView2<'_, F>, prev: ArrayView2<'_, F>) -> Result<(Array2<F>, Array2<F>)> {
        self.check("SimpleRnn::step", x, prev)?;
        // a = x W_ihᵀ + h W_hhᵀ + b_ih + b_hh
        let mut a =
            Array2::from_shape_fn((x.nrows(), self.hidden_dim()), |(_, j)| self.b_ih.value[j] + self.b_hh.value[j]);
        general_mat_mul(F::one(), &x, &self.w_ih.value.t(), F::one(), &mut a);
        general_mat_mul(F::one(), &prev, &self.w_hh.value.t(), F::one(), &mut a);
        let act = &self.activation;
        let h = a.mapv(|v| act.f(v));
        a.mapv_inplace(|v| act.df(v));
        Ok((h, a))
    }

    fn vjp(&self, step: SimpleStep<'_, F>, dnext: ArrayView2<'_, F>) -> Result<(Array2<F>, Array2<F>)> {
        let da = self.delta("SimpleRnn::vjp", &step, dnext)?;
        Ok((da.dot(&self.w_ih.value), da.dot(&self.w_hh.value)))
    }

    fn add_param_grads(&mut self, step: SimpleStep<'_, F>, dnext: ArrayView2<'_, F>) -> Result<()> {
        let da = self.delta("SimpleRnn::add_param_grads", &step, dnext)?;
        general_mat_mul(F::one(), &da.t(), &step.x, F::one(), &mut self.w_ih.grad);
        general_mat_mul(F::one(), &da.t(), &step.prev, F::one(), &mut self.w_hh.grad);
        let db = da.sum_axis(Axis(0));
        self.b_ih.grad += &db;
        self.b_hh.grad += &db;
        Ok(())
    }

    fn jvp(&self, step: SimpleStep<'_, F>, v: ArrayView2<'_, F>) -> Result<Option<Array2<F>>> {
        let op = "SimpleRnn::jvp";
        self.check(op, step.x, step.prev)?;
        validate::shape(op, "v [batch, hidden_dim]", step.prev.shape(), v.shape())?;
        validate::shape(op, "saved f′(a_t) [batch, hidden_dim]", step.prev.shape(), step.saved.shape())?;
        let mut out = v.dot(&self.w_hh.value.t());
        Zip::from(&mut out).and(&step.saved).for_each(|o, &d| *o *= d);
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;
    use rnnlab_activations::ActivationKind;
    use rnnlab_core::Error;
    use rnnlab_core::{Cell, Simple, seeded_rng};

    use crate::{BackwardOptions, OutputGrad, Recurrent};

    #[test]
    fn computes_what_the_built_in_rnn_computes() {
        let cfg = RnnConfig::new(3, 5).with_bias_init(rnnlab_init::Init::Uniform { low: -0.5, high: 0.5 });
        for act in [ActivationKind::Tanh, ActivationKind::Relu, ActivationKind::Sigmoid] {
            let cfg = cfg.clone().with_activation(act);
            let mut builtin = Recurrent::new(vec![cfg.init::<f64>(&mut seeded_rng(4)).unwrap()]).unwrap();
            let cell = SimpleRnn::<f64, _>::init(&cfg, act, &mut seeded_rng(4)).unwrap();
            let mut simple = Recurrent::new(vec![Simple::new(cell)]).unwrap();
            let x = Array3::from_shape_fn((6, 2, 3), |(t, b, i)| ((t * 7 + b * 3 + i) as f64 * 0.37).sin());
            let (f1, f2) = (builtin.forward(x.view(), None).unwrap(), simple.forward(x.view(), None).unwrap());
            let err = (&f1.outputs - &f2.outputs).iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(err < 1e-12, "{act}: outputs differ by {err}");
            let g = Array3::from_shape_fn((6, 2, 5), |(t, b, j)| ((t + 2 * b + 3 * j) as f64 * 0.11).cos());
            let b1 = builtin.backward(&f1.cache, OutputGrad::Every(g.view()), BackwardOptions::default()).unwrap();
            let b2 = simple.backward(&f2.cache, OutputGrad::Every(g.view()), BackwardOptions::default()).unwrap();
            let dx = (b1.dx.unwrap() - b2.dx.unwrap()).iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(dx < 1e-12, "{act}: ∂L/∂x differs by {dx}");
            let (n1, n2) = (builtin.named_grads(), simple.named_grads());
            assert_eq!(n1.len(), 4);
            for ((a, ga), (b, gb)) in n1.iter().zip(&n2) {
                assert_eq!(a, b);
                let e = (ga - gb).iter().fold(0.0f64, |m, v| m.max(v.abs()));
                assert!(e < 1e-12, "{act}: ∂L/∂{a} differs by {e}");
            }
        }
    }

    #[test]
    fn wrong_shapes_are_errors_when_called_directly() {
        let cell = SimpleRnn::<f64, _>::init(&RnnConfig::new(3, 4), ActivationKind::Tanh, &mut seeded_rng(0)).unwrap();
        let x = Array2::zeros((2, 5));
        let h = Array2::zeros((2, 4));
        assert!(matches!(cell.step(x.view(), h.view()), Err(Error::Shape { .. })));
        let mut wrapped = Simple::new(cell);
        assert_eq!(wrapped.proj_dim(), 3);
        let mut out = Array2::zeros((2, 4));
        assert!(matches!(wrapped.project_input(x.view(), out.view_mut()), Err(Error::Shape { .. })));
    }

    trait NamedGrads {
        fn named_grads(&self) -> Vec<(String, ndarray::ArrayD<f64>)>;
    }
    impl<P: Parameterized<f64>> NamedGrads for P {
        fn named_grads(&self) -> Vec<(String, ndarray::ArrayD<f64>)> {
            let mut out = Vec::new();
            self.visit_params(&mut |n, p| out.push((n.to_string(), p.grad.to_owned())));
            out
        }
    }
}
