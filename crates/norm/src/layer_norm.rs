//! Layer normalisation (Ba, Kiros & Hinton 2016) as a [`Layer`] and as the per-step building
//! block of layer-normalised recurrent cells.

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2, Ix1};
use rnnlab_core::{Error, Float, Layer, Param, ParamView, ParamViewMut, Parameterized, Result, limits, validate};
use serde::{Deserialize, Serialize};

use crate::checks::{self, param_slice, param_slice_mut, param_slice2, slice_of_mut, slice_of_mut1};
use crate::layer_norm_kernels::{
    layer_norm_backward_input, layer_norm_backward_input_add, layer_norm_forward, layer_norm_param_grads,
};

/// Configuration of a [`LayerNorm`]: `n_features` (required), `eps` (default 1e-5), the
/// initial gain `gamma_init` (default 1, Ba et al.) and bias `beta_init` (default 0).
///
/// # Examples
/// ```
/// use rnnlab_norm::LayerNormConfig;
/// let ln = LayerNormConfig::new(4).with_eps(1e-5).with_gamma_init(1.0).init::<f32>()?;
/// assert_eq!(ln.n_features(), 4);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct LayerNormConfig {
    /// The normalised (last) axis width n.
    pub n_features: usize,
    /// ε added to the variance (default 1e-5).
    pub eps: f64,
    /// Initial value of every γ entry (default 1).
    pub gamma_init: f64,
    /// Initial value of every β entry (default 0).
    pub beta_init: f64,
}
rnnlab_core::serde_map_only!(LayerNormConfig);

impl LayerNormConfig {
    /// The default configuration for `n_features` features.
    pub fn new(n_features: usize) -> Self {
        Self { n_features, eps: 1e-5, gamma_init: 1.0, beta_init: 0.0 }
    }

    /// Sets ε.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Sets the initial γ.
    pub fn with_gamma_init(mut self, gamma_init: f64) -> Self {
        self.gamma_init = gamma_init;
        self
    }

    /// Sets the initial β.
    pub fn with_beta_init(mut self, beta_init: f64) -> Self {
        self.beta_init = beta_init;
        self
    }

    /// Builds the layer (γ = `gamma_init`, β = `beta_init` everywhere).
    ///
    /// # Errors
    /// [`Error::Config`] for `n_features` 0 or over [`limits::MAX_DIM`], `eps` not finite and
    /// > 0 in `F` (1e-50 is 0 in `f32`), or a `gamma_init`/`beta_init` not finite in `F`.
    pub fn init<F: Float>(&self) -> Result<LayerNorm<F>> {
        let op = "LayerNormConfig::init";
        limits::size(op, "n_features", self.n_features, limits::MAX_DIM)?;
        validate::positive_in::<F>(op, "eps", self.eps)?;
        validate::finite_in::<F>(op, "gamma_init", self.gamma_init)?;
        validate::finite_in::<F>(op, "beta_init", self.beta_init)?;
        let n = self.n_features;
        Ok(LayerNorm {
            eps: self.eps,
            gamma: Param::new(Array1::from_elem(n, F::of(self.gamma_init))),
            beta: Param::new(Array1::from_elem(n, F::of(self.beta_init))),
        })
    }
}

/// Layer normalisation over the feature axis of `[rows, n]` (Ba, Kiros & Hinton 2016,
/// arXiv:1607.06450):
///
/// ```text
/// µ = (1/n) Σ_j x_j,  σ² = (1/n) Σ_j (x_j − µ)²,  s = 1/√(σ² + ε)   (per row)
/// y = γ ⊙ (x − µ)·s + β
/// ∂L/∂x = s/n · (n·g − Σ_j g_j − x̂ ⊙ Σ_j g_j x̂_j),  g = ∂L/∂y ⊙ γ
/// ∂L/∂γ = Σ_rows ∂L/∂y ⊙ x̂,  ∂L/∂β = Σ_rows ∂L/∂y
/// ```
///
/// Parameters `gamma` and `beta`, both `[n]`. The statistics belong to one row (one example at
/// one step), so the layer behaves identically in training and evaluation.
///
/// For a recurrent cell, [`LayerNorm::forward_rows`], [`LayerNorm::backward_rows`] (input
/// gradient only, `&self`) and [`LayerNorm::add_param_grads`] work on caller-owned buffers
/// without allocating.
///
/// # Shapes
/// input, output: `[rows, n]`.
///
/// # Examples
/// ```
/// use ndarray::array;
/// use rnnlab_core::Layer;
/// use rnnlab_norm::LayerNormConfig;
/// let mut ln = LayerNormConfig::new(2).init::<f64>()?;
/// let (y, cache) = ln.forward(array![[1.0, 3.0]].view())?;
/// assert!((y[[0, 1]] - 1.0 / (1.0f64 + 1e-5).sqrt()).abs() < 1e-12);
/// let dx = ln.backward(&cache, array![[1.0, 1.0]].view())?;
/// assert!(dx.iter().all(|d| d.abs() < 1e-12));
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "F: Float")]
pub struct LayerNorm<F: Float> {
    eps: f64,
    gamma: Param<F, Ix1>,
    beta: Param<F, Ix1>,
}

/// What [`LayerNorm`]'s [`Layer::forward`] keeps for the backward.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNormCache<F> {
    /// x̂ = (x − µ)·s, `[rows, n]`.
    pub xhat: Array2<F>,
    /// s = 1/√(σ² + ε) per row, `[rows]`.
    pub inv_std: Array1<F>,
}

impl<F: Float> LayerNorm<F> {
    /// A layer from given parameters (e.g. PyTorch's `weight` and `bias`), both `[n]`, with
    /// zero gradients.
    ///
    /// # Errors
    /// [`Error::Shape`] for `n = 0` or `beta` not of `gamma`'s length; [`Error::NonFinite`]
    /// naming a NaN/±∞ entry; [`Error::Config`] unless `eps` is finite and > 0 both in f64
    /// and in `F` (1e-50 is 0 in f32).
    ///
    /// # Examples
    /// ```
    /// use ndarray::array;
    /// use rnnlab_norm::LayerNorm;
    /// let ln = LayerNorm::from_params(array![1.0f32, 0.5], array![0.0, 0.1], 1e-5)?;
    /// assert_eq!(ln.gamma().value, array![1.0, 0.5]);
    /// assert!(LayerNorm::from_params(array![1.0f32], array![0.0], 1e-50).is_err());
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn from_params(gamma: Array1<F>, beta: Array1<F>, eps: f64) -> Result<Self> {
        let op = "LayerNorm::from_params";
        checks::affine_params(op, &gamma, &beta, eps)?;
        Ok(Self {
            eps,
            gamma: Param::new(gamma.as_standard_layout().into_owned()),
            beta: Param::new(beta.as_standard_layout().into_owned()),
        })
    }

    /// The feature width n.
    pub fn n_features(&self) -> usize {
        self.gamma.value.len()
    }

    /// ε.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// The gain γ `[n]`.
    pub fn gamma(&self) -> &Param<F, Ix1> {
        &self.gamma
    }

    /// The bias β `[n]`.
    pub fn beta(&self) -> &Param<F, Ix1> {
        &self.beta
    }

    /// The values of γ `[n]`, mutable (the shape is fixed; a NaN written here propagates to
    /// the outputs — [`Parameterized::set_param`] checks values first).
    pub fn gamma_mut(&mut self) -> ArrayViewMut1<'_, F> {
        self.gamma.value.view_mut()
    }

    /// The values of β `[n]`, mutable (see [`LayerNorm::gamma_mut`]).
    pub fn beta_mut(&mut self) -> ArrayViewMut1<'_, F> {
        self.beta.value.view_mut()
    }

    /// The forward of one step on caller-owned buffers: `x`, `y` `[rows, n]` (standard layout),
    /// `xhat` (`rows · n`) and `inv_std` (`rows`) to keep for the backward. No allocation.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` is not `[rows, n]`, `y` not of the shape of `x`, either is not
    /// standard-layout, or `xhat`/`inv_std` have the wrong length; [`Error::Config`] for an
    /// invalid ε (only possible in a hand-edited checkpoint).
    ///
    /// # Examples
    /// ```
    /// use ndarray::{array, Array2};
    /// use rnnlab_norm::LayerNormConfig;
    /// let ln = LayerNormConfig::new(2).init::<f64>()?;
    /// let mut y = Array2::zeros((1, 2));
    /// let (mut xhat, mut s) = ([0.0; 2], [0.0; 1]);
    /// ln.forward_rows(array![[1.0, 3.0]].view(), y.view_mut(), &mut xhat, &mut s)?;
    /// assert!((xhat[0] + 1.0).abs() < 1e-4);
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn forward_rows(
        &self,
        x: ArrayView2<'_, F>,
        y: ArrayViewMut2<'_, F>,
        xhat: &mut [F],
        inv_std: &mut [F],
    ) -> Result<()> {
        let op = "LayerNorm::forward_rows";
        let n = self.n_features();
        validate::shape(op, "input", &[x.nrows(), n], x.shape())?;
        validate::shape(op, "output", x.shape(), y.shape())?;
        let xs = checks::contiguous(op, "input", x)?;
        let ys = checks::contiguous_mut(op, "output", y)?;
        let (gamma, beta) = (param_slice(op, &self.gamma.value)?, param_slice(op, &self.beta.value)?);
        layer_norm_forward(xs, n, F::of(self.eps), gamma, beta, ys, xhat, inv_std)
    }

    /// The backward of one step to the input, from `dy` `[rows, n]` and the `xhat`/`inv_std`
    /// of [`LayerNorm::forward_rows`]; overwrites `dx` (or adds into it with `accumulate`).
    /// Touches no parameter gradient (see [`LayerNorm::add_param_grads`]). No allocation.
    ///
    /// # Errors
    /// [`Error::Shape`] if `dy` is not `[rows, n]`, `dx` not of the shape of `dy`, either is not
    /// standard-layout, or `xhat`/`inv_std` have the wrong length.
    ///
    /// # Examples
    /// ```
    /// use ndarray::{array, Array2};
    /// use rnnlab_norm::LayerNormConfig;
    /// let ln = LayerNormConfig::new(2).init::<f64>()?;
    /// let mut dx = Array2::ones((1, 2));
    /// ln.backward_rows(array![[1.0, 1.0]].view(), &[-1.0, 1.0], &[1.0], dx.view_mut(), true)?;
    /// assert_eq!(dx, array![[1.0, 1.0]]); // the constant direction adds nothing
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn backward_rows(
        &self,
        dy: ArrayView2<'_, F>,
        xhat: &[F],
        inv_std: &[F],
        dx: ArrayViewMut2<'_, F>,
        accumulate: bool,
    ) -> Result<()> {
        let op = "LayerNorm::backward_rows";
        let n = self.n_features();
        validate::shape(op, "output gradient", &[dy.nrows(), n], dy.shape())?;
        validate::shape(op, "input gradient", dy.shape(), dx.shape())?;
        let dys = checks::contiguous(op, "output gradient", dy)?;
        let dxs = checks::contiguous_mut(op, "input gradient", dx)?;
        let gamma = param_slice(op, &self.gamma.value)?;
        if accumulate {
            layer_norm_backward_input_add(dys, xhat, inv_std, gamma, n, dxs)
        } else {
            layer_norm_backward_input(dys, xhat, inv_std, gamma, n, dxs)
        }
    }

    /// Adds ∂L/∂γ = Σ_rows dy ⊙ x̂ and ∂L/∂β = Σ_rows dy to the parameter gradients, from
    /// `dy` `[rows, n]` and the matching `xhat` (e.g. all steps' buffers at once).
    ///
    /// # Errors
    /// [`Error::Shape`] if `dy` is not `[rows, n]` or not standard-layout, or `xhat` has the
    /// wrong length.
    ///
    /// # Examples
    /// ```
    /// use ndarray::array;
    /// use rnnlab_norm::LayerNormConfig;
    /// let mut ln = LayerNormConfig::new(2).init::<f64>()?;
    /// ln.add_param_grads(array![[1.0, 2.0]].view(), &[-1.0, 1.0])?;
    /// assert_eq!(ln.gamma().grad, array![-1.0, 2.0]);
    /// assert_eq!(ln.beta().grad, array![1.0, 2.0]);
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn add_param_grads(&mut self, dy: ArrayView2<'_, F>, xhat: &[F]) -> Result<()> {
        let op = "LayerNorm::add_param_grads";
        let n = self.n_features();
        validate::shape(op, "output gradient", &[dy.nrows(), n], dy.shape())?;
        let dys = checks::contiguous(op, "output gradient", dy)?;
        let dg = param_slice_mut(op, &mut self.gamma.grad)?;
        let db = param_slice_mut(op, &mut self.beta.grad)?;
        layer_norm_param_grads(dys, xhat, n, dg, db)
    }
}

impl<F: Float> Parameterized<F> for LayerNorm<F> {
    fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        v("gamma", self.gamma.view());
        v("beta", self.beta.view());
    }

    fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        v("gamma", self.gamma.view_mut());
        v("beta", self.beta.view_mut());
    }
}

impl<F: Float> Layer<F> for LayerNorm<F> {
    type Cache = LayerNormCache<F>;

    /// # Errors
    /// [`Error::Shape`] unless the input is `[rows, n]`; [`Error::NonFinite`] for a NaN/∞
    /// input, or when a row's variance overflows (|x| near `F::MAX`).
    fn forward(&mut self, input: ArrayView2<'_, F>) -> Result<(Array2<F>, Self::Cache)> {
        let op = "LayerNorm::forward";
        let (rows, n) = (input.nrows(), self.n_features());
        validate::shape(op, "input", &[rows, n], input.shape())?;
        validate::finite_values(op, "input", input.iter().copied())?;
        let x = input.as_standard_layout();
        let mut y = Array2::zeros((rows, n));
        let mut xhat = Array2::zeros((rows, n));
        let mut inv_std = Array1::zeros(rows);
        self.forward_rows(x.view(), y.view_mut(), slice_of_mut(op, &mut xhat)?, slice_of_mut1(op, &mut inv_std)?)?;
        if inv_std.iter().any(|s| *s <= F::zero()) {
            return Err(Error::non_finite(op, "row variance (input too large to normalise)"));
        }
        validate::finite_values(op, "output", y.iter().copied())?;
        Ok((y, LayerNormCache { xhat, inv_std }))
    }

    /// # Errors
    /// [`Error::Shape`] unless `grad_output` has the shape of the forward's output (and the
    /// cache is consistent).
    fn backward(&mut self, cache: &Self::Cache, grad_output: ArrayView2<'_, F>) -> Result<Array2<F>> {
        let op = "LayerNorm::backward";
        validate::shape(op, "output gradient", cache.xhat.shape(), grad_output.shape())?;
        let dy = grad_output.as_standard_layout();
        let xhat = param_slice2(op, &cache.xhat)?;
        let inv_std = param_slice(op, &cache.inv_std)?;
        let mut dx = Array2::zeros(cache.xhat.raw_dim());
        self.backward_rows(dy.view(), xhat, inv_std, dx.view_mut(), false)?;
        self.add_param_grads(dy.view(), xhat)?;
        Ok(dx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};
    use rnnlab_core::{GradCheck, check_layer};

    fn input(rows: usize, n: usize) -> Array2<f64> {
        Array2::from_shape_fn((rows, n), |(i, j)| ((i * n + j) as f64 * 0.61 + 0.2).sin() * 2.0 - 0.3 * i as f64)
    }

    fn perturbed(n: usize) -> LayerNorm<f64> {
        let mut ln = LayerNormConfig::new(n).init::<f64>().unwrap();
        ln.visit_params_mut(&mut |name, mut p| {
            let k = if name == "gamma" { 0.2 } else { -0.1 };
            p.value.iter_mut().enumerate().for_each(|(i, v)| *v += k * (i as f64 + 1.0));
        });
        ln
    }

    #[test]
    fn layer_gradients_match_finite_differences() {
        for (rows, n) in [(3, 5), (1, 4), (2, 1)] {
            let mut ln = perturbed(n);
            let rep = check_layer(&GradCheck::new(), &mut ln, input(rows, n).view()).unwrap();
            assert_eq!(rep.n_checked, rows * n + 2 * n);
            assert!(rep.max_rel_error() <= 1e-6, "[{rows}, {n}]: {rep}");
        }
    }

    #[test]
    fn hand_value_two_rows() {
        // row 0: [0, 4]: µ = 2, σ² = 4, s = 1/√(4 + ε) ≈ 0.5, x̂ = [−2, 2]·s ≈ [−1, 1]
        // row 1: [5, 5]: constant, x̂ = 0, y = β
        // γ = [2, 3], β = [0.5, −0.5]: y0 ≈ [−1.5, 2.5], y1 = [0.5, −0.5]
        let mut ln = LayerNormConfig::new(2).init::<f64>().unwrap();
        ln.gamma.value = array![2.0, 3.0];
        ln.beta.value = array![0.5, -0.5];
        let (y, cache) = ln.forward(array![[0.0, 4.0], [5.0, 5.0]].view()).unwrap();
        let s = 1.0 / (4.0f64 + 1e-5).sqrt();
        assert!((y[[0, 0]] - (0.5 - 4.0 * s)).abs() < 1e-14);
        assert!((y[[0, 1]] - (6.0 * s - 0.5)).abs() < 1e-14);
        assert_eq!(y.row(1), array![0.5, -0.5]);
        assert!((cache.inv_std[0] - s).abs() < 1e-15);
        assert!(y.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn per_step_methods_match_the_layer() {
        let mut a = perturbed(3);
        let mut b = a.clone();
        let x = input(4, 3);
        let dy = Array2::from_shape_fn((4, 3), |(i, j)| (i as f64 - j as f64) * 0.25);
        let (y, cache) = a.forward(x.view()).unwrap();
        let dx = a.backward(&cache, dy.view()).unwrap();
        let mut y2 = Array2::zeros((4, 3));
        let (mut xh, mut s) = (vec![0.0; 12], vec![0.0; 4]);
        b.forward_rows(x.view(), y2.view_mut(), &mut xh, &mut s).unwrap();
        let mut dx2 = Array2::from_elem((4, 3), 1.0);
        b.backward_rows(dy.view(), &xh, &s, dx2.view_mut(), true).unwrap();
        assert!(b.gamma.grad.iter().all(|g| *g == 0.0), "backward_rows touches no parameter gradient");
        b.add_param_grads(dy.view(), &xh).unwrap();
        assert_eq!(y, y2);
        assert!(dx.iter().zip(&dx2).all(|(p, q)| (p + 1.0 - q).abs() < 1e-14));
        assert_eq!(a.gamma.grad, b.gamma.grad);
        assert_eq!(a.beta.grad, b.beta.grad);
    }

    #[test]
    fn f32_runs_and_batch_of_one_and_empty_batch() {
        let mut ln = LayerNormConfig::new(3).init::<f32>().unwrap();
        let (y, _) = ln.forward(array![[1.0f32, 2.0, 3.0]].view()).unwrap();
        assert!((y[[0, 2]] - 1.224_74).abs() < 1e-4); // 1/√(2/3)
        let (y, c) = ln.forward(Array2::<f32>::zeros((0, 3)).view()).unwrap();
        assert_eq!(y.shape(), &[0, 3]);
        assert_eq!(ln.backward(&c, Array2::<f32>::zeros((0, 3)).view()).unwrap().shape(), &[0, 3]);
    }

    #[test]
    fn serde_round_trip_is_bit_exact() {
        let ln = perturbed(3);
        let back: LayerNorm<f64> = serde_json::from_str(&serde_json::to_string(&ln).unwrap()).unwrap();
        assert_eq!(back, ln);
        let cfg = LayerNormConfig::new(3).with_eps(1e-6).with_beta_init(0.1);
        let cback: LayerNormConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(cback, cfg);
    }

    #[test]
    fn config_rejects_zero_features() {
        assert!(matches!(LayerNormConfig::new(0).init::<f64>(), Err(Error::Config { .. })));
    }

    #[test]
    fn config_rejects_non_positive_eps() {
        assert!(matches!(LayerNormConfig::new(2).with_eps(0.0).init::<f64>(), Err(Error::Config { .. })));
        assert!(matches!(LayerNormConfig::new(2).with_eps(-1e-5).init::<f64>(), Err(Error::Config { .. })));
    }

    #[test]
    fn config_rejects_non_finite_eps() {
        assert!(matches!(LayerNormConfig::new(2).with_eps(f64::NAN).init::<f64>(), Err(Error::Config { .. })));
        assert!(matches!(LayerNormConfig::new(2).with_eps(f64::INFINITY).init::<f64>(), Err(Error::Config { .. })));
    }

    #[test]
    fn config_rejects_non_finite_gamma() {
        let e = LayerNormConfig::new(2).with_gamma_init(f64::NAN).init::<f64>();
        assert!(matches!(e, Err(Error::Config { .. })));
    }

    #[test]
    fn config_rejects_non_finite_beta() {
        let e = LayerNormConfig::new(2).with_beta_init(f64::NEG_INFINITY).init::<f64>();
        assert!(matches!(e, Err(Error::Config { .. })));
    }

    #[test]
    fn forward_rejects_feature_mismatch() {
        let mut ln = LayerNormConfig::new(3).init::<f64>().unwrap();
        // [2, 3] has 6 = 3·2 elements: must still be refused for n = 2
        let mut ln2 = LayerNormConfig::new(2).init::<f64>().unwrap();
        assert!(matches!(ln.forward(input(2, 4).view()), Err(Error::Shape { .. })));
        assert!(matches!(ln2.forward(input(2, 3).view()), Err(Error::Shape { .. })));
    }

    #[test]
    fn forward_rejects_non_finite_input() {
        let mut ln = LayerNormConfig::new(2).init::<f64>().unwrap();
        assert!(matches!(ln.forward(array![[1.0, f64::NAN]].view()), Err(Error::NonFinite { .. })));
        assert!(matches!(ln.forward(array![[f64::INFINITY, 0.0]].view()), Err(Error::NonFinite { .. })));
    }

    #[test]
    fn forward_rejects_overflowing_variance() {
        let mut ln = LayerNormConfig::new(2).init::<f64>().unwrap();
        let e = ln.forward(array![[1e308, -1e308]].view());
        assert!(matches!(e, Err(Error::NonFinite { .. })), "{e:?}");
        let mut ln = LayerNormConfig::new(3).init::<f64>().unwrap();
        let e = ln.forward(array![[1e308, 1e308, -1e308]].view());
        assert!(matches!(e, Err(Error::NonFinite { .. })), "{e:?}");
    }

    #[test]
    fn forward_accepts_transposed_input() {
        let mut ln = perturbed(2);
        let x = input(2, 3);
        let (y, _) = ln.forward(x.t()).unwrap();
        let (y2, _) = ln.forward(x.t().as_standard_layout().view()).unwrap();
        assert_eq!(y, y2);
    }

    #[test]
    fn backward_rejects_gradient_shape_mismatch() {
        let mut ln = LayerNormConfig::new(3).init::<f64>().unwrap();
        let (_, cache) = ln.forward(input(2, 3).view()).unwrap();
        assert!(matches!(ln.backward(&cache, Array2::zeros((3, 3)).view()), Err(Error::Shape { .. })));
        assert!(matches!(ln.backward(&cache, Array2::zeros((2, 2)).view()), Err(Error::Shape { .. })));
    }

    #[test]
    fn backward_rejects_inconsistent_cache() {
        let mut ln = LayerNormConfig::new(3).init::<f64>().unwrap();
        let cache = LayerNormCache { xhat: Array2::zeros((2, 3)), inv_std: Array1::zeros(5) };
        assert!(matches!(ln.backward(&cache, Array2::zeros((2, 3)).view()), Err(Error::Shape { .. })));
    }

    #[test]
    fn forward_rows_rejects_bad_shapes() {
        let ln = LayerNormConfig::new(2).init::<f64>().unwrap();
        let x = input(3, 2);
        let (mut xh, mut s) = (vec![0.0; 6], vec![0.0; 3]);
        let mut y = Array2::zeros((3, 2));
        assert!(ln.forward_rows(x.view(), y.view_mut(), &mut xh, &mut s).is_ok());
        let x3 = input(2, 3);
        let r = ln.forward_rows(x3.view(), y.view_mut(), &mut xh, &mut s);
        assert!(matches!(r, Err(Error::Shape { .. })), "feature mismatch");
        let mut y_bad = Array2::zeros((2, 2));
        let r = ln.forward_rows(x.view(), y_bad.view_mut(), &mut xh, &mut s);
        assert!(matches!(r, Err(Error::Shape { .. })), "output shape");
        let xt = input(2, 3);
        let r = ln.forward_rows(xt.t(), y.view_mut(), &mut xh, &mut s);
        assert!(matches!(r, Err(Error::Shape { .. })), "non-standard input");
        let mut yt = Array2::zeros((2, 3));
        let r = ln.forward_rows(x.view(), yt.view_mut().reversed_axes(), &mut xh, &mut s);
        assert!(matches!(r, Err(Error::Shape { .. })), "non-standard output");
        let r = ln.forward_rows(x.view(), y.view_mut(), &mut xh[..5], &mut s);
        assert!(matches!(r, Err(Error::Shape { .. })), "xhat length");
        let r = ln.forward_rows(x.view(), y.view_mut(), &mut xh, &mut s[..2]);
        assert!(matches!(r, Err(Error::Shape { .. })), "inv_std length");
    }

    #[test]
    fn backward_rows_rejects_bad_shapes() {
        let ln = LayerNormConfig::new(2).init::<f64>().unwrap();
        let dy = input(3, 2);
        let (xh, s) = (vec![0.0; 6], vec![1.0; 3]);
        let mut dx = Array2::zeros((3, 2));
        assert!(ln.backward_rows(dy.view(), &xh, &s, dx.view_mut(), false).is_ok());
        let dy3 = input(2, 3);
        assert!(matches!(ln.backward_rows(dy3.view(), &xh, &s, dx.view_mut(), false), Err(Error::Shape { .. })));
        let mut dx_bad = Array2::zeros((3, 3));
        assert!(matches!(ln.backward_rows(dy.view(), &xh, &s, dx_bad.view_mut(), true), Err(Error::Shape { .. })));
        assert!(matches!(ln.backward_rows(dy3.t(), &xh, &s, dx.view_mut(), false), Err(Error::Shape { .. })));
        let mut dxt = Array2::zeros((2, 3));
        let r = ln.backward_rows(dy.view(), &xh, &s, dxt.view_mut().reversed_axes(), false);
        assert!(matches!(r, Err(Error::Shape { .. })));
        assert!(matches!(ln.backward_rows(dy.view(), &xh[..4], &s, dx.view_mut(), false), Err(Error::Shape { .. })));
        assert!(matches!(ln.backward_rows(dy.view(), &xh, &s[..1], dx.view_mut(), true), Err(Error::Shape { .. })));
    }

    #[test]
    fn add_param_grads_rejects_bad_shapes() {
        let mut ln = LayerNormConfig::new(2).init::<f64>().unwrap();
        let dy = input(3, 2);
        assert!(ln.add_param_grads(dy.view(), &[0.0; 6]).is_ok());
        assert!(matches!(ln.add_param_grads(input(2, 3).view(), &[0.0; 6]), Err(Error::Shape { .. })));
        assert!(matches!(ln.add_param_grads(input(2, 3).t(), &[0.0; 6]), Err(Error::Shape { .. })));
        assert!(matches!(ln.add_param_grads(dy.view(), &[0.0; 5]), Err(Error::Shape { .. })));
    }

    #[test]
    fn from_params_and_mutable_access() {
        let mut ln = LayerNorm::from_params(array![2.0f64, 0.5], array![0.1, -0.1], 1e-3).unwrap();
        assert_eq!((ln.n_features(), ln.eps()), (2, 1e-3));
        // x = [1, 3]: µ = 2, σ² = 1, s = 1/√1.001; y = γ ⊙ [−s, s] + β
        let s = 1.0 / 1.001f64.sqrt();
        let (y, _) = ln.forward(array![[1.0, 3.0]].view()).unwrap();
        assert!((y[[0, 0]] - (-2.0 * s + 0.1)).abs() < 1e-12 && (y[[0, 1]] - (0.5 * s - 0.1)).abs() < 1e-12);
        ln.gamma_mut().fill(1.0);
        ln.beta_mut()[1] = 0.0;
        let (y, _) = ln.forward(array![[1.0, 3.0]].view()).unwrap();
        assert!((y[[0, 1]] - s).abs() < 1e-12);
        // by name too, with the core's checks
        ln.set_param("beta", array![1.0, 1.0].into_dyn().view()).unwrap();
        assert_eq!(ln.beta().value, array![1.0, 1.0]);
        assert!(ln.set_param("gamma", array![1.0].into_dyn().view()).is_err());
    }

    #[test]
    fn from_params_rejects_bad_parameters() {
        let ok = || (array![1.0f32, 1.0], array![0.0f32, 0.0]);
        let (g, _) = ok();
        assert!(matches!(LayerNorm::from_params(g, array![0.0f32], 1e-5), Err(Error::Shape { .. })));
        assert!(matches!(LayerNorm::<f32>::from_params(array![], array![], 1e-5), Err(Error::Shape { .. })));
        let (_, b) = ok();
        let e = LayerNorm::from_params(array![1.0f32, f32::NAN], b, 1e-5).unwrap_err();
        assert!(matches!(e, Error::NonFinite { .. }) && e.to_string().contains("gamma"), "{e}");
        for eps in [0.0, -1e-5, f64::NAN, f64::INFINITY, 1e-50, 1e300] {
            let (g, b) = ok();
            assert!(matches!(LayerNorm::from_params(g, b, eps), Err(Error::Config { .. })), "eps {eps}");
        }
        // 1e-50 is a valid ε in f64
        assert!(LayerNorm::from_params(array![1.0f64], array![0.0], 1e-50).is_ok());
    }
}
