//! IndRNN (Li et al. 2018), written only against rnnlab's public traits: each unit has one
//! recurrent weight, h_t = φ(W x_t + u ⊙ h_{t−1} + b), so ∂h_t/∂h_{t−1} = diag(φ′(a_t) ⊙ u) and
//! keeping |u| ≤ 1 with ReLU keeps the gradient from exploding or vanishing over time.

use ndarray::{Array1, Array2, ArrayView2, Axis, Ix1, Ix2};
use rnnlab_activations::ActivationFn;
use rnnlab_core::{Float, Param, ParamView, ParamViewMut, Parameterized, Result, Rng, SimpleCell, SimpleStep};
use rnnlab_init::Init;

/// An IndRNN layer with activation `A` (the paper uses ReLU).
#[derive(Clone, Debug)]
#[allow(unreachable_pub)]
pub struct IndRnn<F: Float, A> {
    act: A,
    w: Param<F, Ix2>, // [H, I]
    u: Param<F, Ix1>, // [H]
    b: Param<F, Ix1>, // [H]
}

impl<F: Float, A: ActivationFn<F>> IndRnn<F, A> {
    /// W Xavier-uniform, u uniform in [u_low, u_high] (the paper: [0, 1] for ReLU), b = 0.
    #[allow(unreachable_pub)]
    pub fn new(input_dim: usize, hidden_dim: usize, act: A, u_low: f64, u_high: f64, rng: &mut Rng) -> Result<Self> {
        let w = Init::XavierUniform { gain: 1.0 }.array2(hidden_dim, input_dim, rng)?;
        let u = Init::Uniform { low: u_low, high: u_high }.array1(hidden_dim, rng)?;
        Ok(Self { act, w: Param::new(w), u: Param::new(u), b: Param::new(Array1::zeros(hidden_dim)) })
    }
}

impl<F: Float, A: ActivationFn<F>> Parameterized<F> for IndRnn<F, A> {
    fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        v("w_ih", self.w.view());
        v("u", self.u.view());
        v("b", self.b.view());
    }
    fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        v("w_ih", self.w.view_mut());
        v("u", self.u.view_mut());
        v("b", self.b.view_mut());
    }
}

impl<F: Float, A: ActivationFn<F>> SimpleCell<F> for IndRnn<F, A> {
    fn name(&self) -> &'static str {
        "indrnn"
    }
    fn input_dim(&self) -> usize {
        self.w.value.ncols()
    }
    fn hidden_dim(&self) -> usize {
        self.w.value.nrows()
    }
    fn step(&self, x: ArrayView2<'_, F>, prev: ArrayView2<'_, F>) -> Result<Array2<F>> {
        Ok(self.step_saved(x, prev)?.0)
    }
    fn saved_width(&self) -> usize {
        self.hidden_dim() // φ′(a_t)
    }
    fn step_saved(&self, x: ArrayView2<'_, F>, prev: ArrayView2<'_, F>) -> Result<(Array2<F>, Array2<F>)> {
        let a = x.dot(&self.w.value.t()) + &prev * &self.u.value + &self.b.value;
        Ok((a.mapv(|v| self.act.f(v)), a.mapv(|v| self.act.df(v))))
    }
    fn vjp(&self, s: SimpleStep<'_, F>, dnext: ArrayView2<'_, F>) -> Result<(Array2<F>, Array2<F>)> {
        let da = &dnext * &s.saved;
        Ok((da.dot(&self.w.value), &da * &self.u.value))
    }
    fn add_param_grads(&mut self, s: SimpleStep<'_, F>, dnext: ArrayView2<'_, F>) -> Result<()> {
        let da = &dnext * &s.saved;
        self.w.grad += &da.t().dot(&s.x);
        self.u.grad += &(&da * &s.prev).sum_axis(Axis(0));
        self.b.grad += &da.sum_axis(Axis(0));
        Ok(())
    }
    fn jvp(&self, s: SimpleStep<'_, F>, v: ArrayView2<'_, F>) -> Result<Option<Array2<F>>> {
        Ok(Some(&(&v * &s.saved) * &self.u.value))
    }
}
