//! Tiny models shared by the tests of this crate.

use ndarray::{Array1, Array2, Ix1, Ix2};
use rnnlab_core::{Float, Param, ParamView, ParamViewMut, Parameterized};

/// One 1-D parameter named `p`.
pub(crate) struct Tiny<F: Float> {
    pub(crate) p: Param<F, Ix1>,
}

impl<F: Float> Tiny<F> {
    pub(crate) fn new<const N: usize>(value: [f64; N], grad: [f64; N]) -> Self {
        let mut p = Param::new(Array1::from_iter(value.iter().map(|&x| F::of(x))));
        p.grad = Array1::from_iter(grad.iter().map(|&x| F::of(x)));
        Self { p }
    }

    pub(crate) fn set_grad<const N: usize>(&mut self, grad: [f64; N]) {
        self.p.grad = Array1::from_iter(grad.iter().map(|&x| F::of(x)));
    }

    pub(crate) fn value(&self) -> Vec<f64> {
        self.p.value.iter().map(|x| x.as_f64()).collect()
    }
}

impl<F: Float> Parameterized<F> for Tiny<F> {
    fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        v("p", self.p.view());
    }
    fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        v("p", self.p.view_mut());
    }
}

/// A 2×2 matrix `w` and a 2-vector `b`.
pub(crate) struct Two<F: Float = f64> {
    pub(crate) w: Param<F, Ix2>,
    pub(crate) b: Param<F, Ix1>,
}

impl<F: Float> Two<F> {
    /// w = [[1, 2], [3, 4]], b = [0.5, −0.5], zero grads.
    pub(crate) fn new() -> Self {
        let w = Array2::from_shape_fn((2, 2), |(i, j)| F::of((2 * i + j + 1) as f64));
        let b = Array1::from_iter([0.5, -0.5].map(F::of));
        Self { w: Param::new(w), b: Param::new(b) }
    }

    /// Deterministic, step-dependent gradients: a smooth function of the values and `t`.
    pub(crate) fn fake_backward(&mut self, t: usize) {
        let s = F::of(0.3 + 0.1 * t as f64);
        self.w.grad.zip_mut_with(&self.w.value, |g, &v| *g = v * s - F::of(0.7) + F::of((t % 3) as f64 * 0.05));
        self.b.grad.zip_mut_with(&self.b.value, |g, &v| *g = (v * v) * s + F::of(0.2) - F::of(t as f64 * 0.01));
    }

    pub(crate) fn bits(&self) -> Vec<u64> {
        self.w.value.iter().chain(self.b.value.iter()).map(|x| x.as_f64().to_bits()).collect()
    }
}

impl<F: Float> Parameterized<F> for Two<F> {
    fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        v("w", self.w.view());
        v("b", self.b.view());
    }
    fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        v("w", self.w.view_mut());
        v("b", self.b.view_mut());
    }
}

/// `|a − b| <= atol + rtol·|b|` for each pair.
pub(crate) fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol + tol * w.abs(), "index {i}: got {g}, want {w} (all: {got:?})");
    }
}

impl<F: Float> Two<F> {
    pub(crate) fn zero_grad_for_test(&mut self) {
        self.zero_grad();
    }
}
