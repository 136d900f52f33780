//! The minimal gated unit (Zhou et al. 2016), written only against rnnlab's public traits and
//! without saved values (its backward recomputes the gates): one gate f_t does the work of the
//! GRU's two,
//!   f_t = σ(W_f x_t + U_f h_{t−1} + b_f)
//!   c_t = tanh(W_h x_t + U_h (f_t ⊙ h_{t−1}) + b_h)
//!   h_t = (1 − f_t) ⊙ h_{t−1} + f_t ⊙ c_t.

use ndarray::{Array1, Array2, ArrayView2, Axis, Ix1, Ix2};
use rnnlab_core::{Float, Param, ParamView, ParamViewMut, Parameterized, Result, Rng, SimpleCell, SimpleStep};
use rnnlab_init::Init;

/// A minimal gated unit.
#[derive(Clone, Debug)]
#[allow(unreachable_pub)]
pub struct Mgu<F: Float> {
    p: [Param<F, Ix2>; 4], // w_f [H, I], u_f [H, H], w_h [H, I], u_h [H, H]
    b: [Param<F, Ix1>; 2], // b_f, b_h [H]
}

const NAMES: [&str; 6] = ["w_f", "u_f", "w_h", "u_h", "b_f", "b_h"];

impl<F: Float> Mgu<F> {
    /// Input weights Xavier-uniform, recurrent weights orthogonal, b_f = 1 (gates start open), b_h = 0.
    #[allow(unreachable_pub)]
    pub fn new(input_dim: usize, hidden_dim: usize, rng: &mut Rng) -> Result<Self> {
        let (xav, orth) = (Init::XavierUniform { gain: 1.0 }, Init::Orthogonal { gain: 1.0 });
        let p = [
            Param::new(xav.array2(hidden_dim, input_dim, rng)?),
            Param::new(orth.array2(hidden_dim, hidden_dim, rng)?),
            Param::new(xav.array2(hidden_dim, input_dim, rng)?),
            Param::new(orth.array2(hidden_dim, hidden_dim, rng)?),
        ];
        Ok(Self { p, b: [Param::new(Array1::ones(hidden_dim)), Param::new(Array1::zeros(hidden_dim))] })
    }

    /// (f_t, c_t) of a step.
    fn gates(&self, x: ArrayView2<'_, F>, h: ArrayView2<'_, F>) -> (Array2<F>, Array2<F>) {
        let [w_f, u_f, w_h, u_h] = &self.p;
        let af = x.dot(&w_f.value.t()) + h.dot(&u_f.value.t()) + &self.b[0].value;
        let f = af.mapv(F::sigmoid_fast);
        let c = (x.dot(&w_h.value.t()) + (&f * &h).dot(&u_h.value.t()) + &self.b[1].value).mapv(F::tanh_fast);
        (f, c)
    }

    /// (δa_f, δa_h, f_t) from ∂L/∂h_t.
    fn deltas(&self, s: &SimpleStep<'_, F>, g: ArrayView2<'_, F>) -> (Array2<F>, Array2<F>, Array2<F>) {
        let (f, c) = self.gates(s.x, s.prev);
        let one = F::one();
        let dah = &g * &f * c.mapv(|c| one - c * c);
        let df = &g * &(&c - &s.prev) + dah.dot(&self.p[3].value) * s.prev;
        let daf = df * f.mapv(|f| f * (one - f));
        (daf, dah, f)
    }
}

impl<F: Float> Parameterized<F> for Mgu<F> {
    fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        let views = self.p.iter().map(Param::view).chain(self.b.iter().map(Param::view));
        NAMES.iter().zip(views).for_each(|(n, p)| v(n, p));
    }
    fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        let views = self.p.iter_mut().map(Param::view_mut).chain(self.b.iter_mut().map(Param::view_mut));
        NAMES.iter().zip(views).for_each(|(n, p)| v(n, p));
    }
}

impl<F: Float> SimpleCell<F> for Mgu<F> {
    fn name(&self) -> &'static str {
        "mgu"
    }
    fn input_dim(&self) -> usize {
        self.p[0].value.ncols()
    }
    fn hidden_dim(&self) -> usize {
        self.p[0].value.nrows()
    }
    fn step(&self, x: ArrayView2<'_, F>, h: ArrayView2<'_, F>) -> Result<Array2<F>> {
        let (f, c) = self.gates(x, h);
        Ok(&h + &(&f * &(&c - &h)))
    }
    fn vjp(&self, s: SimpleStep<'_, F>, g: ArrayView2<'_, F>) -> Result<(Array2<F>, Array2<F>)> {
        let (daf, dah, f) = self.deltas(&s, g);
        let [w_f, u_f, w_h, u_h] = &self.p;
        let dx = daf.dot(&w_f.value) + dah.dot(&w_h.value);
        let dh = &g * &f.mapv(|f| F::one() - f) + &(dah.dot(&u_h.value) * &f) + daf.dot(&u_f.value);
        Ok((dx, dh))
    }
    fn add_param_grads(&mut self, s: SimpleStep<'_, F>, g: ArrayView2<'_, F>) -> Result<()> {
        let (daf, dah, f) = self.deltas(&s, g);
        let r = &f * &s.prev;
        let [w_f, u_f, w_h, u_h] = &mut self.p;
        w_f.grad += &daf.t().dot(&s.x);
        u_f.grad += &daf.t().dot(&s.prev);
        w_h.grad += &dah.t().dot(&s.x);
        u_h.grad += &dah.t().dot(&r);
        self.b[0].grad += &daf.sum_axis(Axis(0));
        self.b[1].grad += &dah.sum_axis(Axis(0));
        Ok(())
    }
}
