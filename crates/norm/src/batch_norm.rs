//! Batch normalisation (Ioffe & Szegedy 2015) with optional per-time-step running statistics
//! (recurrent batch normalisation, Cooijmans et al. 2016), as a [`Layer`] and as the per-step
//! building block of batch-normalised recurrent cells.

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2, Ix1};
use rnnlab_core::{Error, Float, Layer, Param, ParamView, ParamViewMut, Parameterized, Result, limits, validate};
use serde::{Deserialize, Serialize};

use crate::batch_norm_kernels::{
    batch_norm_backward_eval, batch_norm_backward_eval_add, batch_norm_backward_input, batch_norm_backward_input_add,
    batch_norm_forward_eval, batch_norm_forward_train, batch_norm_param_grads, batch_norm_update_running,
};
use crate::checks;
use crate::checks::{param_slice, param_slice_mut, param_slice2, slice_of_mut, slice_of_mut1};

/// Configuration of a [`BatchNorm`]: `n_features` (required), `eps` (default 1e-5), `momentum`
/// of the running statistics (default 0.1, PyTorch's convention), initial `gamma_init`
/// (default 1; Cooijmans et al. recommend 0.1 inside a recurrence) and `beta_init` (default 0),
/// and `time_steps` T_max, the number of separate sets of running statistics (default 1).
///
/// # Examples
/// ```
/// use rnnlab_norm::BatchNormConfig;
/// // Cooijmans et al.'s recurrent set-up: γ₀ = 0.1, statistics per step for 100 steps
/// let bn = BatchNormConfig::new(8).with_gamma_init(0.1).with_time_steps(100).init::<f32>()?;
/// assert_eq!((bn.n_features(), bn.time_steps()), (8, 100));
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct BatchNormConfig {
    /// The normalised feature width n.
    pub n_features: usize,
    /// ε added to the variance (default 1e-5).
    pub eps: f64,
    /// Weight m of the newest batch in the running statistics, in `[0, 1]` (default 0.1).
    pub momentum: f64,
    /// Initial value of every γ entry (default 1).
    pub gamma_init: f64,
    /// Initial value of every β entry (default 0).
    pub beta_init: f64,
    /// T_max: separate running statistics for steps `0..T_max` (default 1, i.e. shared).
    pub time_steps: usize,
}
rnnlab_core::serde_map_only!(BatchNormConfig);

impl BatchNormConfig {
    /// The default configuration for `n_features` features.
    pub fn new(n_features: usize) -> Self {
        Self { n_features, eps: 1e-5, momentum: 0.1, gamma_init: 1.0, beta_init: 0.0, time_steps: 1 }
    }

    /// Sets ε.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Sets the running-statistics momentum.
    pub fn with_momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// Sets the initial γ (0.1 is Cooijmans et al.'s recurrent choice).
    pub fn with_gamma_init(mut self, gamma_init: f64) -> Self {
        self.gamma_init = gamma_init;
        self
    }

    /// Sets the initial β.
    pub fn with_beta_init(mut self, beta_init: f64) -> Self {
        self.beta_init = beta_init;
        self
    }

    /// Keeps separate running statistics for each step `0..t_max`; steps `t ≥ t_max` use (and,
    /// in training, update) those of step `t_max − 1`.
    pub fn with_time_steps(mut self, t_max: usize) -> Self {
        self.time_steps = t_max;
        self
    }

    /// Builds the layer in training mode, with running means 0 and running variances 1.
    ///
    /// # Errors
    /// [`Error::Config`] for `n_features` 0 or over [`limits::MAX_DIM`], `time_steps` 0 or
    /// over [`limits::MAX_SEQ_LEN`] (or running statistics `[time_steps, n_features]` over
    /// [`limits::MAX_ELEMENTS`]), `eps` not finite and > 0 in `F`, `momentum` outside `[0, 1]`,
    /// or a `gamma_init`/`beta_init` not finite in `F`.
    pub fn init<F: Float>(&self) -> Result<BatchNorm<F>> {
        let op = "BatchNormConfig::init";
        limits::size(op, "n_features", self.n_features, limits::MAX_DIM)?;
        limits::size(op, "time_steps", self.time_steps, limits::MAX_SEQ_LEN)?;
        limits::checked_elements(op, "time_steps", &[self.time_steps, self.n_features])?;
        validate::positive_in::<F>(op, "eps", self.eps)?;
        checks::momentum(op, self.momentum)?;
        validate::finite_in::<F>(op, "gamma_init", self.gamma_init)?;
        validate::finite_in::<F>(op, "beta_init", self.beta_init)?;
        let (n, t) = (self.n_features, self.time_steps);
        Ok(BatchNorm {
            eps: self.eps,
            momentum: self.momentum,
            training: true,
            gamma: Param::new(Array1::from_elem(n, F::of(self.gamma_init))),
            beta: Param::new(Array1::from_elem(n, F::of(self.beta_init))),
            running_mean: Array2::zeros((t, n)),
            running_var: Array2::ones((t, n)),
            batch_stats: vec![F::zero(); 2 * n],
        })
    }
}

/// Batch normalisation over the feature axis of `[batch, n]` (Ioffe & Szegedy 2015), with
/// optional per-time-step statistics (Cooijmans et al. 2016, arXiv:1603.09025):
///
/// ```text
/// training:   µ_j, σ²_j = mean and BIASED variance of feature j over the batch
/// evaluation: µ_j, σ²_j = running_mean[t, j], running_var[t, j]
/// y = γ ⊙ (x − µ)/√(σ² + ε) + β
/// running ← (1 − m)·running + m·batch   (variance: the UNBIASED batch variance, as PyTorch)
/// ```
///
/// Derivatives (g = ∂L/∂y ⊙ γ, s = 1/√(σ² + ε), per feature over the B batch rows):
/// training ∂L/∂x = s/B · (B·g − Σ_b g − x̂ ⊙ Σ_b g x̂); evaluation ∂L/∂x = g·s;
/// both modes ∂L/∂γ = Σ_b ∂L/∂y ⊙ x̂, ∂L/∂β = Σ_b ∂L/∂y.
///
/// Parameters `gamma` and `beta` `[n]`, shared across time steps. The running statistics
/// `running_mean` and `running_var` `[T_max, n]` are buffers, not parameters: they are not
/// visited by [`Parameterized::visit_params`] but are serialised with the struct (bit-exact
/// through `serde_json`, whose `float_roundtrip` feature the workspace enables).
///
/// # Time steps
/// [`BatchNorm::forward_step`] at step t uses row `min(t, T_max − 1)` of the running statistics
/// in evaluation and updates that row in training: steps beyond T_max share the last step's
/// statistics, as in Cooijmans et al. The [`Layer`] implementation is step 0.
///
/// # Edge cases
/// - A batch of one in training (or a constant feature) has σ² = 0: x̂ = 0, y = β, ∂L/∂x = 0
///   for the batch of one, all finite through ε. The unbiased variance of one sample is 0/0, so
///   a batch of one updates the running mean but leaves the running variance UNCHANGED
///   (PyTorch's `BatchNorm1d` raises an error instead).
/// - An empty batch is an [`Error::Shape`] in training and fine in evaluation.
/// - A non-finite batch statistic (NaN/∞ input, or overflow) is an [`Error::NonFinite`] and
///   leaves the running statistics untouched.
///
/// # Shapes
/// input, output: `[batch, n]`.
///
/// # Examples
/// ```
/// use ndarray::array;
/// use rnnlab_core::Layer;
/// use rnnlab_norm::BatchNormConfig;
/// let mut bn = BatchNormConfig::new(1).init::<f64>()?;
/// let (y, _) = bn.forward(array![[1.0], [3.0]].view())?; // µ = 2, σ² = 1
/// assert!((y[[0, 0]] + 1.0).abs() < 1e-5);
/// // running mean 0.1·2 = 0.2, running variance 0.9·1 + 0.1·2 = 1.1 (unbiased batch variance 2)
/// assert!((bn.running_mean()[[0, 0]] - 0.2).abs() < 1e-15);
/// assert!((bn.running_var()[[0, 0]] - 1.1).abs() < 1e-15);
/// bn.set_training(false);
/// let (y, _) = bn.forward(array![[0.2]].view())?;
/// assert!(y[[0, 0]].abs() < 1e-15);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound = "F: Float")]
pub struct BatchNorm<F: Float> {
    eps: f64,
    momentum: f64,
    training: bool,
    gamma: Param<F, Ix1>,
    beta: Param<F, Ix1>,
    running_mean: Array2<F>,
    running_var: Array2<F>,
    /// The last batch's mean and biased variance, `2n` (scratch, not saved).
    #[serde(skip)]
    batch_stats: Vec<F>,
}

/// What [`BatchNorm`]'s [`Layer::forward`] keeps for the backward.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormCache<F> {
    /// x̂ = (x − µ)·s, `[batch, n]`.
    pub xhat: Array2<F>,
    /// s = 1/√(σ² + ε) per feature, `[n]`.
    pub inv_std: Array1<F>,
    /// Whether the forward used batch statistics (training) or running ones.
    pub training: bool,
}

impl<F: Float> BatchNorm<F> {
    /// A layer in training mode from given parameters and running statistics (e.g. PyTorch's
    /// `weight`, `bias`, `running_mean`, `running_var`, `eps` and `momentum`): γ, β `[n]`,
    /// running statistics `[T_max, n]` (PyTorch's `[n]` is one row: `insert_axis(Axis(0))`).
    ///
    /// # Errors
    /// [`Error::Shape`] for `n = 0`, `T_max = 0`, or arrays that disagree on n;
    /// [`Error::NonFinite`] naming a NaN/±∞ entry; [`Error::Config`] for a negative running
    /// variance, `eps` not finite and > 0 in f64 and in `F`, or `momentum` outside `[0, 1]`.
    ///
    /// # Examples
    /// ```
    /// use ndarray::array;
    /// use rnnlab_norm::BatchNorm;
    /// let bn = BatchNorm::from_params(array![1.0f64, 2.0], array![0.0, 0.0],
    ///     array![[0.5, -1.0]], array![[4.0, 0.25]], 1e-5, 0.1)?;
    /// assert_eq!((bn.n_features(), bn.time_steps()), (2, 1));
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn from_params(
        gamma: Array1<F>,
        beta: Array1<F>,
        running_mean: Array2<F>,
        running_var: Array2<F>,
        eps: f64,
        momentum: f64,
    ) -> Result<Self> {
        let op = "BatchNorm::from_params";
        checks::affine_params(op, &gamma, &beta, eps)?;
        checks::momentum(op, momentum)?;
        let n = gamma.len();
        if running_mean.nrows() == 0 {
            return Err(Error::shape(
                op,
                format!("running_mean [T_max ≥ 1, {n}]"),
                format!("{:?}", running_mean.shape()),
            ));
        }
        let mut bn = Self {
            eps,
            momentum,
            training: true,
            gamma: Param::new(gamma.as_standard_layout().into_owned()),
            beta: Param::new(beta.as_standard_layout().into_owned()),
            running_mean: Array2::zeros((running_mean.nrows(), n)),
            running_var: Array2::ones((running_mean.nrows(), n)),
            batch_stats: vec![F::zero(); 2 * n],
        };
        bn.set_running_stats(running_mean, running_var).map_err(|e| match e {
            Error::Shape { expected, got, .. } => Error::shape(op, expected, got),
            Error::NonFinite { what, .. } => Error::non_finite(op, what),
            Error::Config { msg, .. } => Error::config(op, msg),
            other => other,
        })?;
        Ok(bn)
    }

    /// The feature width n.
    pub fn n_features(&self) -> usize {
        self.gamma.value.len()
    }

    /// T_max, the number of sets of running statistics.
    pub fn time_steps(&self) -> usize {
        self.running_mean.nrows()
    }

    /// The row of running statistics step `t` uses: `min(t, T_max − 1)`.
    pub fn step_index(&self, t: usize) -> usize {
        t.min(self.time_steps().saturating_sub(1))
    }

    /// ε.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// The running-statistics momentum.
    pub fn momentum(&self) -> f64 {
        self.momentum
    }

    /// Whether batch statistics are used (and running statistics updated).
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// Switches between training (batch statistics) and evaluation (running statistics).
    pub fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    /// The gain γ `[n]`.
    pub fn gamma(&self) -> &Param<F, Ix1> {
        &self.gamma
    }

    /// The bias β `[n]`.
    pub fn beta(&self) -> &Param<F, Ix1> {
        &self.beta
    }

    /// The running means `[T_max, n]`.
    pub fn running_mean(&self) -> ArrayView2<'_, F> {
        self.running_mean.view()
    }

    /// The running variances `[T_max, n]`.
    pub fn running_var(&self) -> ArrayView2<'_, F> {
        self.running_var.view()
    }

    /// The values of γ `[n]`, mutable (the shape is fixed; a NaN written here propagates to
    /// the outputs — [`Parameterized::set_param`] checks values first).
    pub fn gamma_mut(&mut self) -> ArrayViewMut1<'_, F> {
        self.gamma.value.view_mut()
    }

    /// The values of β `[n]`, mutable (see [`BatchNorm::gamma_mut`]).
    pub fn beta_mut(&mut self) -> ArrayViewMut1<'_, F> {
        self.beta.value.view_mut()
    }

    /// The running means `[T_max, n]`, mutable (the shape is fixed; [`BatchNorm::set_running_stats`]
    /// checks values first).
    pub fn running_mean_mut(&mut self) -> ArrayViewMut2<'_, F> {
        self.running_mean.view_mut()
    }

    /// The running variances `[T_max, n]`, mutable. A negative or non-finite variance
    /// written here makes the next evaluation-mode forward an `Err`, not a NaN.
    pub fn running_var_mut(&mut self) -> ArrayViewMut2<'_, F> {
        self.running_var.view_mut()
    }

    /// Replaces the running statistics (e.g. with PyTorch's), both `[T_max, n]`.
    ///
    /// # Errors
    /// [`Error::Shape`] unless both are `[T_max, n]`; [`Error::NonFinite`] for a non-finite
    /// entry; [`Error::Config`] for a negative variance.
    ///
    /// # Examples
    /// ```
    /// use ndarray::array;
    /// use rnnlab_norm::BatchNormConfig;
    /// let mut bn = BatchNormConfig::new(2).init::<f64>()?;
    /// bn.set_running_stats(array![[0.5, -1.0]], array![[4.0, 0.25]])?;
    /// assert_eq!(bn.running_var()[[0, 1]], 0.25);
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn set_running_stats(&mut self, mean: Array2<F>, var: Array2<F>) -> Result<()> {
        let op = "BatchNorm::set_running_stats";
        let expected = [self.time_steps(), self.n_features()];
        validate::shape(op, "running_mean", &expected, mean.shape())?;
        validate::shape(op, "running_var", &expected, var.shape())?;
        validate::finite_values(op, "running_mean", mean.iter().copied())?;
        validate::finite_values(op, "running_var", var.iter().copied())?;
        if let Some(v) = var.iter().find(|v| **v < F::zero()) {
            return Err(Error::config(op, format!("running variances must be >= 0, got {v}")));
        }
        self.running_mean = mean.as_standard_layout().into_owned();
        self.running_var = var.as_standard_layout().into_owned();
        Ok(())
    }

    /// The forward of time step `t` on caller-owned buffers — what a batch-normalised cell
    /// calls per step. Uses statistics row `min(t, T_max − 1)`: in training the batch
    /// statistics normalise and that row of the running statistics is updated; in evaluation
    /// the row normalises. Writes `y` (the shape of `x`), `xhat` (`batch · n`) and `inv_std`
    /// (`n`) for [`BatchNorm::backward_step`] and [`BatchNorm::add_param_grads`]. No allocation
    /// (after the first call following deserialisation).
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` is not `[batch, n]`, `y` not its shape, either is not
    /// standard-layout, `xhat`/`inv_std` have the wrong length, or (training) the batch is
    /// empty; [`Error::NonFinite`] (training) if a batch statistic is not finite, in which case
    /// the running statistics are untouched; [`Error::Config`] / [`Error::NonFinite`] for
    /// corrupt hyper-parameters or running statistics in a hand-edited checkpoint.
    ///
    /// # Examples
    /// ```
    /// use ndarray::{array, Array2};
    /// use rnnlab_norm::BatchNormConfig;
    /// let mut bn = BatchNormConfig::new(1).with_time_steps(2).init::<f64>()?;
    /// let mut y = Array2::zeros((2, 1));
    /// let (mut xhat, mut s) = ([0.0; 2], [0.0; 1]);
    /// bn.forward_step(5, array![[1.0], [3.0]].view(), y.view_mut(), &mut xhat, &mut s)?;
    /// // step 5 ≥ T_max = 2 updated the statistics of step 1, not of step 0
    /// assert_eq!(bn.running_mean()[[0, 0]], 0.0);
    /// assert!((bn.running_mean()[[1, 0]] - 0.2).abs() < 1e-15);
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn forward_step(
        &mut self,
        t: usize,
        x: ArrayView2<'_, F>,
        y: ArrayViewMut2<'_, F>,
        xhat: &mut [F],
        inv_std: &mut [F],
    ) -> Result<()> {
        let op = "BatchNorm::forward_step";
        let n = self.n_features();
        validate::shape(op, "input", &[x.nrows(), n], x.shape())?;
        validate::shape(op, "output", x.shape(), y.shape())?;
        checks::len(op, "running_mean columns", n, self.running_mean.ncols())?;
        checks::len(op, "running_var rows", self.time_steps(), self.running_var.nrows())?;
        checks::len(op, "running_var columns", n, self.running_var.ncols())?;
        let batch = x.nrows();
        let xs = checks::contiguous(op, "input", x)?;
        let ys = checks::contiguous_mut(op, "output", y)?;
        let row = self.step_index(t) * n..(self.step_index(t) + 1) * n;
        let eps = F::of(self.eps);
        let gamma = param_slice(op, &self.gamma.value)?;
        let beta = param_slice(op, &self.beta.value)?;
        let rm = slice_of_mut(op, &mut self.running_mean)?;
        let rv = slice_of_mut(op, &mut self.running_var)?;
        let (rm, rv) = (&mut rm[row.clone()], &mut rv[row]);
        if self.training {
            if self.batch_stats.len() != 2 * n {
                self.batch_stats = vec![F::zero(); 2 * n];
            }
            let (mean, var) = self.batch_stats.split_at_mut(n);
            batch_norm_forward_train(xs, n, eps, gamma, beta, ys, xhat, inv_std, mean, var)?;
            validate::finite_values(op, "batch mean (input)", mean.iter().copied())?;
            validate::finite_values(op, "batch variance (input)", var.iter().copied())?;
            batch_norm_update_running(mean, var, batch, F::of(self.momentum), rm, rv)
        } else {
            batch_norm_forward_eval(xs, n, eps, gamma, beta, rm, rv, ys, xhat, inv_std)
        }
    }

    /// The backward of one step to the input from `dy` `[batch, n]` and the `xhat`/`inv_std`
    /// of [`BatchNorm::forward_step`], in the CURRENT mode (training: through the batch
    /// statistics; evaluation: `dy·γ·s`) — keep the mode of the forward. Overwrites `dx`, or
    /// adds into it with `accumulate`. Touches no parameter gradient. No allocation.
    ///
    /// # Errors
    /// [`Error::Shape`] if `dy` is not `[batch, n]`, `dx` not its shape, either is not
    /// standard-layout, or `xhat`/`inv_std` have the wrong length.
    ///
    /// # Examples
    /// ```
    /// use ndarray::{array, Array2};
    /// use rnnlab_norm::BatchNormConfig;
    /// let bn = BatchNormConfig::new(1).init::<f64>()?;
    /// let mut dx = Array2::zeros((2, 1));
    /// bn.backward_step(array![[1.0], [1.0]].view(), &[-1.0, 1.0], &[1.0], dx.view_mut(), false)?;
    /// assert_eq!(dx, array![[0.0], [0.0]]);
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn backward_step(
        &self,
        dy: ArrayView2<'_, F>,
        xhat: &[F],
        inv_std: &[F],
        dx: ArrayViewMut2<'_, F>,
        accumulate: bool,
    ) -> Result<()> {
        let op = "BatchNorm::backward_step";
        let n = self.n_features();
        validate::shape(op, "output gradient", &[dy.nrows(), n], dy.shape())?;
        validate::shape(op, "input gradient", dy.shape(), dx.shape())?;
        let dys = checks::contiguous(op, "output gradient", dy)?;
        let dxs = checks::contiguous_mut(op, "input gradient", dx)?;
        checks::len(op, "xhat", dys.len(), xhat.len())?;
        let gamma = param_slice(op, &self.gamma.value)?;
        match (self.training, accumulate) {
            (true, false) => batch_norm_backward_input(dys, xhat, inv_std, gamma, n, dxs),
            (true, true) => batch_norm_backward_input_add(dys, xhat, inv_std, gamma, n, dxs),
            (false, false) => batch_norm_backward_eval(dys, inv_std, gamma, n, dxs),
            (false, true) => batch_norm_backward_eval_add(dys, inv_std, gamma, n, dxs),
        }
    }

    /// Adds ∂L/∂γ = Σ_rows dy ⊙ x̂ and ∂L/∂β = Σ_rows dy (either mode), from `dy` `[rows, n]` and
    /// the matching `xhat` — e.g. all steps' buffers `[T·B, n]` at once.
    ///
    /// # Errors
    /// [`Error::Shape`] if `dy` is not `[rows, n]` or not standard-layout, or `xhat` has the
    /// wrong length.
    ///
    /// # Examples
    /// ```
    /// use ndarray::array;
    /// use rnnlab_norm::BatchNormConfig;
    /// let mut bn = BatchNormConfig::new(1).init::<f64>()?;
    /// bn.add_param_grads(array![[1.0], [2.0]].view(), &[-1.0, 1.0])?;
    /// assert_eq!((bn.gamma().grad[0], bn.beta().grad[0]), (1.0, 3.0));
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn add_param_grads(&mut self, dy: ArrayView2<'_, F>, xhat: &[F]) -> Result<()> {
        let op = "BatchNorm::add_param_grads";
        let n = self.n_features();
        validate::shape(op, "output gradient", &[dy.nrows(), n], dy.shape())?;
        let dys = checks::contiguous(op, "output gradient", dy)?;
        let dg = param_slice_mut(op, &mut self.gamma.grad)?;
        let db = param_slice_mut(op, &mut self.beta.grad)?;
        batch_norm_param_grads(dys, xhat, n, dg, db)
    }
}

impl<F: Float> Parameterized<F> for BatchNorm<F> {
    fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        v("gamma", self.gamma.view());
        v("beta", self.beta.view());
    }

    fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        v("gamma", self.gamma.view_mut());
        v("beta", self.beta.view_mut());
    }
}

impl<F: Float> Layer<F> for BatchNorm<F> {
    type Cache = BatchNormCache<F>;

    /// [`BatchNorm::forward_step`] at time step 0, allocating the output and the cache.
    ///
    /// # Errors
    /// [`Error::Shape`] unless the input is `[batch, n]` (and, in training, batch ≥ 1);
    /// [`Error::NonFinite`] for a NaN/∞ input (running statistics untouched) or an output that
    /// overflows.
    fn forward(&mut self, input: ArrayView2<'_, F>) -> Result<(Array2<F>, Self::Cache)> {
        let op = "BatchNorm::forward";
        let (rows, n) = (input.nrows(), self.n_features());
        validate::shape(op, "input", &[rows, n], input.shape())?;
        validate::finite_values(op, "input", input.iter().copied())?;
        let x = input.as_standard_layout();
        let mut y = Array2::zeros((rows, n));
        let mut xhat = Array2::zeros((rows, n));
        let mut inv_std = Array1::zeros(n);
        self.forward_step(0, x.view(), y.view_mut(), slice_of_mut(op, &mut xhat)?, slice_of_mut1(op, &mut inv_std)?)?;
        validate::finite_values(op, "output", y.iter().copied())?;
        Ok((y, BatchNormCache { xhat, inv_std, training: self.training }))
    }

    /// Back-propagates in the mode recorded in the cache.
    ///
    /// # Errors
    /// [`Error::Shape`] unless `grad_output` has the shape of the forward's output (and the
    /// cache is consistent).
    fn backward(&mut self, cache: &Self::Cache, grad_output: ArrayView2<'_, F>) -> Result<Array2<F>> {
        let op = "BatchNorm::backward";
        validate::shape(op, "output gradient", cache.xhat.shape(), grad_output.shape())?;
        let dy = grad_output.as_standard_layout();
        let xhat = param_slice2(op, &cache.xhat)?;
        let inv_std = param_slice(op, &cache.inv_std)?;
        let mut dx = Array2::zeros(cache.xhat.raw_dim());
        let mode = self.training;
        self.training = cache.training;
        let result = self.backward_step(dy.view(), xhat, inv_std, dx.view_mut(), false);
        self.training = mode;
        result?;
        self.add_param_grads(dy.view(), xhat)?;
        Ok(dx)
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, Axis, array, s};
    use rnnlab_core::{GradCheck, NamedInput, check_fn, check_layer};

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }

    fn input(rows: usize, n: usize, shift: f64) -> Array2<f64> {
        Array2::from_shape_fn((rows, n), |(i, j)| ((i * n + j) as f64 * 0.77 + 0.4).sin() * (1.0 + j as f64) + shift)
    }

    fn perturbed(cfg: BatchNormConfig) -> BatchNorm<f64> {
        let mut bn = cfg.init::<f64>().unwrap();
        bn.visit_params_mut(&mut |name, mut p| {
            let k = if name == "gamma" { 0.3 } else { -0.2 };
            p.value.iter_mut().enumerate().for_each(|(i, v)| *v += k * (i as f64 + 1.0));
        });
        bn
    }

    #[test]
    fn training_layer_matches_finite_differences() {
        for cfg in [BatchNormConfig::new(3), BatchNormConfig::new(3).with_time_steps(4).with_gamma_init(0.1)] {
            for rows in [5, 2] {
                let mut bn = perturbed(cfg.clone());
                let rep = check_layer(&GradCheck::new(), &mut bn, input(rows, 3, 0.5).view()).unwrap();
                assert_eq!(rep.n_checked, rows * 3 + 6);
                assert!(rep.max_rel_error() <= 1e-6, "{cfg:?}, rows {rows}: {rep}");
            }
        }
    }

    #[test]
    fn eval_layer_matches_finite_differences() {
        let mut bn = perturbed(BatchNormConfig::new(3));
        for k in 0..4 {
            bn.forward(input(6, 3, k as f64).view()).unwrap();
        }
        bn.set_training(false);
        let rep = check_layer(&GradCheck::new(), &mut bn, input(4, 3, -1.0).view()).unwrap();
        assert!(rep.max_rel_error() <= 1e-6, "{rep}");
        // batch of one is fine in evaluation
        let rep = check_layer(&GradCheck::new(), &mut bn, input(1, 3, 0.0).view()).unwrap();
        assert!(rep.max_rel_error() <= 1e-6, "{rep}");
    }

    /// A recurrence over steps through the per-step API, as a cell uses it:
    /// a_0 = x_0, a_t = x_t + ½·y_{t−1}, y_t = BN_t(a_t), L = Σ_t Σ R_t ⊙ y_t.
    /// Backward: input gradients step by step (no parameter gradient), then γ/β gradients from
    /// the stored (dy_t, x̂_t) buffers.
    fn recurrence(bn: &mut BatchNorm<f64>, inputs: &[NamedInput]) -> Result<(f64, Vec<ArrayD<f64>>)> {
        let (steps, b, n) = (inputs.len(), inputs[0].1.shape()[0], bn.n_features());
        let mut y = Array2::<f64>::zeros((steps * b, n));
        let mut xhat = vec![0.0; steps * b * n];
        let mut inv_std = vec![0.0; steps * n];
        for t in 0..steps {
            let mut a = inputs[t].1.clone().into_dimensionality::<ndarray::Ix2>().unwrap();
            if t > 0 {
                a = a + &y.slice(s![(t - 1) * b..t * b, ..]) * 0.5;
            }
            let (yv, xh, s) = (
                y.slice_mut(s![t * b..(t + 1) * b, ..]),
                &mut xhat[t * b * n..(t + 1) * b * n],
                &mut inv_std[t * n..(t + 1) * n],
            );
            bn.forward_step(t, a.view(), yv, xh, s)?;
        }
        let r = Array2::from_shape_fn((steps * b, n), |(i, j)| ((i * n + j) as f64 * 1.91).cos());
        let loss = (&y * &r).sum();
        let mut dy = r.clone();
        let mut dxs = vec![ArrayD::zeros(inputs[0].1.shape()); steps];
        for t in (0..steps).rev() {
            let mut da = Array2::zeros((b, n));
            bn.backward_step(
                dy.slice(s![t * b..(t + 1) * b, ..]).to_owned().view(),
                &xhat[t * b * n..(t + 1) * b * n],
                &inv_std[t * n..(t + 1) * n],
                da.view_mut(),
                false,
            )?;
            if t > 0 {
                let mut prev = dy.slice_mut(s![(t - 1) * b..t * b, ..]);
                prev.scaled_add(0.5, &da);
            }
            dxs[t] = da.into_dyn();
        }
        bn.add_param_grads(dy.view(), &xhat)?;
        Ok((loss, dxs))
    }

    #[test]
    fn per_step_recurrence_matches_finite_differences_in_both_modes() {
        let mut bn = perturbed(BatchNormConfig::new(3).with_time_steps(2).with_gamma_init(0.1).with_momentum(0.5));
        let mut inputs: Vec<NamedInput> =
            (0..4).map(|t| (format!("x{t}"), input(4, 3, t as f64 - 1.5).into_dyn())).collect();
        let rep = check_fn(&GradCheck::new(), &mut bn, &mut inputs, recurrence).unwrap();
        assert_eq!(rep.n_checked, 4 * 12 + 6);
        assert!(rep.max_rel_error() <= 1e-6, "training: {rep}");
        // the check ran training steps: both rows of running statistics have moved apart
        assert!((bn.running_mean()[[0, 0]] - bn.running_mean()[[1, 0]]).abs() > 1e-3);
        bn.set_training(false);
        let rep = check_fn(&GradCheck::new(), &mut bn, &mut inputs, recurrence).unwrap();
        assert!(rep.max_rel_error() <= 1e-6, "evaluation: {rep}");
    }

    #[test]
    fn running_statistics_follow_the_hand_computed_recursion() {
        // momentum m = 0.1, start mean 0, var 1.
        // batch 1 [[1, 0], [3, 0]]: means [2, 0], unbiased vars [2, 0]
        //   mean = 0.9·0 + 0.1·[2, 0] = [0.2, 0];  var = 0.9·1 + 0.1·[2, 0] = [1.1, 0.9]
        // batch 2 [[2, −1], [6, 1], [7, 3]]: means [5, 1];
        //   feature 0 deviations −3, 1, 2 → Σ² = 14, unbiased 7; feature 1 −2, 0, 2 → 8/2 = 4
        //   mean = 0.9·[0.2, 0] + 0.1·[5, 1] = [0.68, 0.1]
        //   var  = 0.9·[1.1, 0.9] + 0.1·[7, 4] = [1.69, 1.21]
        let mut bn = BatchNormConfig::new(2).init::<f64>().unwrap();
        bn.forward(array![[1.0, 0.0], [3.0, 0.0]].view()).unwrap();
        bn.forward(array![[2.0, -1.0], [6.0, 1.0], [7.0, 3.0]].view()).unwrap();
        let (rm, rv) = (bn.running_mean(), bn.running_var());
        assert!(close(rm[[0, 0]], 0.68, 1e-14) && close(rm[[0, 1]], 0.1, 1e-14), "{rm}");
        assert!(close(rv[[0, 0]], 1.69, 1e-14) && close(rv[[0, 1]], 1.21, 1e-14), "{rv}");
        // evaluation at x = [2, 2]: y = [(2 − 0.68)/√(1.69 + ε), (2 − 0.1)/√(1.21 + ε)] ≈ [1.01538, 1.72726]
        bn.set_training(false);
        let (y, _) = bn.forward(array![[2.0, 2.0]].view()).unwrap();
        assert!(close(y[[0, 0]], 1.32 / (1.69f64 + 1e-5).sqrt(), 1e-13), "{y}");
        assert!(close(y[[0, 1]], 1.9 / (1.21f64 + 1e-5).sqrt(), 1e-13), "{y}");
        assert!(close(y[[0, 0]], 1.015_38, 1e-5) && close(y[[0, 1]], 1.727_26, 1e-5));
        // evaluation does not move the statistics
        assert!(close(bn.running_mean()[[0, 0]], 0.68, 1e-14));
    }

    #[test]
    fn per_step_statistics_differ_between_steps_and_reuse_the_last_beyond_t_max() {
        let mut bn = BatchNormConfig::new(2).with_time_steps(3).with_momentum(1.0).init::<f64>().unwrap();
        let (mut xh, mut s) = (vec![0.0; 8], vec![0.0; 2]);
        let mut y = Array2::zeros((4, 2));
        for (t, shift) in [(0, 0.0), (1, 5.0), (2, -3.0)] {
            bn.forward_step(t, input(4, 2, shift).view(), y.view_mut(), &mut xh, &mut s).unwrap();
        }
        // momentum 1: each row holds its own step's batch mean exactly
        for (t, shift) in [(0, 0.0), (1, 5.0), (2, -3.0)] {
            let m = input(4, 2, shift).mean_axis(Axis(0)).unwrap();
            assert!(close(bn.running_mean()[[t, 0]], m[0], 1e-14) && close(bn.running_mean()[[t, 1]], m[1], 1e-14));
        }
        assert!((bn.running_mean()[[0, 0]] - bn.running_mean()[[1, 0]]).abs() > 4.0);
        bn.set_training(false);
        let x = input(3, 2, 1.0);
        let mut outs = Vec::new();
        for t in [0, 1, 2, 3, 50] {
            let mut y = Array2::zeros((3, 2));
            bn.forward_step(t, x.view(), y.view_mut(), &mut xh[..6], &mut s).unwrap();
            outs.push(y);
        }
        assert!((&outs[0] - &outs[1]).iter().all(|d| d.abs() > 0.1));
        assert!((&outs[1] - &outs[2]).iter().all(|d| d.abs() > 0.1));
        assert_eq!(outs[3], outs[2], "t = 3 reuses step 2's statistics");
        assert_eq!(outs[4], outs[2], "t = 50 reuses step 2's statistics");
        // training beyond T_max updates the last row only
        bn.set_training(true);
        let before = bn.running_mean().to_owned();
        bn.forward_step(9, input(4, 2, 10.0).view(), y.view_mut(), &mut xh, &mut s).unwrap();
        assert_eq!(bn.running_mean().slice(s![..2, ..]), before.slice(s![..2, ..]));
        assert!(bn.running_mean()[[2, 0]] > 5.0);
    }

    #[test]
    fn batch_of_one_in_training_outputs_beta_and_keeps_running_variance() {
        let mut bn = BatchNormConfig::new(2).with_gamma_init(0.1).with_beta_init(0.25).init::<f64>().unwrap();
        let (y, cache) = bn.forward(array![[3.0, -7.0]].view()).unwrap();
        assert_eq!(y, array![[0.25, 0.25]]);
        let dx = bn.backward(&cache, array![[1.0, -2.0]].view()).unwrap();
        assert_eq!(dx, array![[0.0, 0.0]]);
        assert_eq!(bn.gamma().grad, array![0.0, 0.0], "x̂ = 0");
        assert_eq!(bn.beta().grad, array![1.0, -2.0]);
        assert!(close(bn.running_mean()[[0, 0]], 0.3, 1e-15) && close(bn.running_mean()[[0, 1]], -0.7, 1e-15));
        assert_eq!(bn.running_var(), array![[1.0, 1.0]].view(), "unbiased variance undefined: left unchanged");
    }

    #[test]
    fn constant_feature_is_finite() {
        let mut bn = BatchNormConfig::new(2).with_beta_init(0.5).init::<f32>().unwrap();
        let x = array![[4.0f32, 1.0], [4.0, 2.0], [4.0, 6.0]];
        let (y, cache) = bn.forward(x.view()).unwrap();
        assert!(y.column(0).iter().all(|v| *v == 0.5));
        let dx = bn.backward(&cache, array![[1.0f32, 1.0], [0.0, 2.0], [-3.0, 1.0]].view()).unwrap();
        assert!(dx.iter().all(|d| d.is_finite()));
        assert!(bn.running_var().iter().all(|v| v.is_finite()));
    }

    #[test]
    fn serde_round_trip_is_bit_exact() {
        let mut bn = perturbed(BatchNormConfig::new(3).with_time_steps(2).with_momentum(0.37));
        let (mut xh, mut s) = (vec![0.0; 15], vec![0.0; 3]);
        let mut y = Array2::zeros((5, 3));
        for t in 0..3 {
            bn.forward_step(t, input(5, 3, 0.1 * t as f64 + 1e-3).view(), y.view_mut(), &mut xh, &mut s).unwrap();
        }
        bn.set_training(false);
        let json = serde_json::to_string(&bn).unwrap();
        let mut back: BatchNorm<f64> = serde_json::from_str(&json).unwrap();
        assert_eq!(back.running_mean(), bn.running_mean());
        assert_eq!(back.running_var(), bn.running_var());
        assert_eq!(back.gamma().value, bn.gamma().value);
        assert_eq!(back.beta().value, bn.beta().value);
        assert_eq!((back.eps(), back.momentum(), back.is_training()), (bn.eps(), bn.momentum(), false));
        assert!(json.contains("running_mean") && json.contains("running_var"));
        // the restored layer computes the same (also in training, after rebuilding its scratch)
        let x = input(4, 3, 0.3);
        assert_eq!(back.forward(x.view()).unwrap().0, bn.forward(x.view()).unwrap().0);
        back.set_training(true);
        bn.set_training(true);
        assert_eq!(back.forward(x.view()).unwrap().0, bn.forward(x.view()).unwrap().0);
        assert_eq!(back.running_var(), bn.running_var());
        // f32 too
        let bn32 = BatchNormConfig::new(2).with_gamma_init(0.1).init::<f32>().unwrap();
        let back32: BatchNorm<f32> = serde_json::from_str(&serde_json::to_string(&bn32).unwrap()).unwrap();
        assert_eq!(back32.gamma().value, bn32.gamma().value);
        let cfg = BatchNormConfig::new(4).with_time_steps(7).with_eps(1e-3);
        let cback: BatchNormConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(cback, cfg);
    }

    #[test]
    fn running_statistics_are_buffers_not_parameters() {
        let bn = BatchNormConfig::new(3).with_time_steps(5).init::<f64>().unwrap();
        assert_eq!(bn.param_names(), ["gamma", "beta"]);
        assert_eq!(bn.n_params(), 6);
        assert_eq!(bn.running_mean().shape(), &[5, 3]);
        assert!(bn.is_training());
    }

    #[test]
    fn layer_set_training_switches_mode() {
        let mut bn = BatchNormConfig::new(1).init::<f64>().unwrap();
        Layer::set_training(&mut bn, false);
        assert!(!bn.is_training());
        let (_, cache) = bn.forward(array![[1.0]].view()).unwrap();
        assert!(!cache.training);
        bn.set_training(true);
        // backward follows the cache's mode, not the current one: eval dx = dy·γ·s
        let dx = bn.backward(&cache, array![[2.0]].view()).unwrap();
        assert!(close(dx[[0, 0]], 2.0 / (1.0f64 + 1e-5).sqrt(), 1e-15));
        assert!(bn.is_training());
    }

    #[test]
    fn config_rejects_zero_features() {
        assert!(matches!(BatchNormConfig::new(0).init::<f64>(), Err(Error::Config { .. })));
    }

    #[test]
    fn config_rejects_zero_time_steps() {
        assert!(matches!(BatchNormConfig::new(2).with_time_steps(0).init::<f64>(), Err(Error::Config { .. })));
    }

    #[test]
    fn config_rejects_bad_eps() {
        for eps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(BatchNormConfig::new(2).with_eps(eps).init::<f64>(), Err(Error::Config { .. })));
        }
    }

    #[test]
    fn config_rejects_bad_momentum() {
        for m in [-0.01, 1.01, f64::NAN] {
            assert!(matches!(BatchNormConfig::new(2).with_momentum(m).init::<f64>(), Err(Error::Config { .. })));
        }
    }

    #[test]
    fn config_rejects_non_finite_gamma() {
        let e = BatchNormConfig::new(2).with_gamma_init(f64::INFINITY).init::<f64>();
        assert!(matches!(e, Err(Error::Config { .. })));
    }

    #[test]
    fn config_rejects_non_finite_beta() {
        let e = BatchNormConfig::new(2).with_beta_init(f64::NAN).init::<f64>();
        assert!(matches!(e, Err(Error::Config { .. })));
    }

    #[test]
    fn forward_rejects_feature_mismatch() {
        let mut bn = BatchNormConfig::new(2).init::<f64>().unwrap();
        assert!(matches!(bn.forward(input(3, 3, 0.0).view()), Err(Error::Shape { .. })));
        bn.set_training(false);
        assert!(matches!(bn.forward(input(3, 1, 0.0).view()), Err(Error::Shape { .. })));
    }

    #[test]
    fn forward_rejects_empty_batch_in_training_only() {
        let mut bn = BatchNormConfig::new(2).init::<f64>().unwrap();
        assert!(matches!(bn.forward(Array2::zeros((0, 2)).view()), Err(Error::Shape { .. })));
        bn.set_training(false);
        assert_eq!(bn.forward(Array2::zeros((0, 2)).view()).unwrap().0.shape(), &[0, 2]);
    }

    #[test]
    fn forward_rejects_non_finite_input_and_keeps_statistics() {
        let mut bn = BatchNormConfig::new(2).init::<f64>().unwrap();
        let e = bn.forward(array![[1.0, f64::NAN], [2.0, 0.0]].view());
        assert!(matches!(e, Err(Error::NonFinite { .. })), "{e:?}");
        bn.set_training(false);
        let e = bn.forward(array![[f64::INFINITY, 0.0]].view());
        assert!(matches!(e, Err(Error::NonFinite { .. })), "{e:?}");
        assert_eq!(bn.running_mean(), array![[0.0, 0.0]].view());
        assert_eq!(bn.running_var(), array![[1.0, 1.0]].view());
    }

    #[test]
    fn forward_step_rejects_non_finite_batch_statistics_and_keeps_statistics() {
        let mut bn = BatchNormConfig::new(1).init::<f64>().unwrap();
        let (mut xh, mut s, mut y) = (vec![0.0; 2], vec![0.0; 1], Array2::zeros((2, 1)));
        for x in [array![[f64::INFINITY], [1.0]], array![[f64::NAN], [1.0]], array![[1e308], [-1e308]]] {
            let e = bn.forward_step(0, x.view(), y.view_mut(), &mut xh, &mut s);
            assert!(matches!(e, Err(Error::NonFinite { .. })), "{x}: {e:?}");
        }
        assert_eq!(bn.running_mean(), array![[0.0]].view());
        assert_eq!(bn.running_var(), array![[1.0]].view());
    }

    #[test]
    fn forward_step_rejects_bad_shapes() {
        let mut bn = BatchNormConfig::new(2).init::<f64>().unwrap();
        let x = input(3, 2, 0.0);
        let (mut xh, mut s) = (vec![0.0; 6], vec![0.0; 2]);
        let mut y = Array2::zeros((3, 2));
        assert!(bn.forward_step(0, x.view(), y.view_mut(), &mut xh, &mut s).is_ok());
        let x3 = input(2, 3, 0.0);
        let cases: Vec<(&str, Result<()>)> = vec![
            ("features", bn.forward_step(0, x3.view(), y.view_mut(), &mut xh, &mut s)),
            ("output", bn.forward_step(0, x.view(), Array2::zeros((2, 2)).view_mut(), &mut xh, &mut s)),
            ("strided input", bn.forward_step(0, x3.t(), y.view_mut(), &mut xh, &mut s)),
            (
                "strided output",
                bn.forward_step(0, x.view(), Array2::zeros((2, 3)).view_mut().reversed_axes(), &mut xh, &mut s),
            ),
            ("xhat", bn.forward_step(0, x.view(), y.view_mut(), &mut xh[..4], &mut s)),
            ("inv_std", bn.forward_step(0, x.view(), y.view_mut(), &mut xh, &mut s[..1])),
        ];
        for (case, r) in cases {
            assert!(matches!(r, Err(Error::Shape { .. })), "{case}: {r:?}");
        }
        bn.set_training(false);
        let r = bn.forward_step(0, x.view(), y.view_mut(), &mut xh, &mut s[..1]);
        assert!(matches!(r, Err(Error::Shape { .. })), "evaluation inv_std: {r:?}");
    }

    #[test]
    fn corrupt_checkpoint_is_an_error_not_a_panic() {
        let bn = BatchNormConfig::new(2).with_time_steps(2).init::<f64>().unwrap();
        let mut v: serde_json::Value = serde_json::to_value(&bn).unwrap();
        v["running_var"] = serde_json::to_value(Array2::<f64>::ones((2, 3))).unwrap();
        let mut bad: BatchNorm<f64> = serde_json::from_value(v.clone()).unwrap();
        let e = bad.forward(input(2, 2, 0.0).view());
        assert!(matches!(e, Err(Error::Shape { .. })), "{e:?}");
        v["running_var"] = serde_json::to_value(Array2::<f64>::ones((1, 2))).unwrap();
        let mut bad: BatchNorm<f64> = serde_json::from_value(v.clone()).unwrap();
        assert!(matches!(bad.forward(input(2, 2, 0.0).view()), Err(Error::Shape { .. })));
        v["running_var"] = serde_json::to_value(array![[1.0, -1.0], [1.0, 1.0]]).unwrap();
        v["training"] = serde_json::Value::Bool(false);
        let mut bad: BatchNorm<f64> = serde_json::from_value(v.clone()).unwrap();
        assert!(matches!(bad.forward(input(2, 2, 0.0).view()), Err(Error::Config { .. })));
        v["eps"] = serde_json::to_value(-1.0).unwrap();
        let mut bad: BatchNorm<f64> = serde_json::from_value(v).unwrap();
        assert!(matches!(bad.forward(input(2, 2, 0.0).view()), Err(Error::Config { .. })));
    }

    #[test]
    fn backward_step_and_param_grads_reject_bad_shapes() {
        let mut bn = BatchNormConfig::new(2).init::<f64>().unwrap();
        let dy = input(3, 2, 0.0);
        let (xh, s) = (vec![0.0; 6], vec![1.0; 2]);
        let mut dx = Array2::zeros((3, 2));
        for training in [true, false] {
            bn.set_training(training);
            assert!(bn.backward_step(dy.view(), &xh, &s, dx.view_mut(), false).is_ok());
            let dy3 = input(2, 3, 0.0);
            let cases: Vec<(&str, Result<()>)> = vec![
                ("features", bn.backward_step(dy3.view(), &xh, &s, dx.view_mut(), false)),
                ("dx", bn.backward_step(dy.view(), &xh, &s, Array2::zeros((2, 2)).view_mut(), true)),
                ("strided dy", bn.backward_step(dy3.t(), &xh, &s, dx.view_mut(), false)),
                (
                    "strided dx",
                    bn.backward_step(dy.view(), &xh, &s, Array2::zeros((2, 3)).view_mut().reversed_axes(), false),
                ),
                ("xhat", bn.backward_step(dy.view(), &xh[..5], &s, dx.view_mut(), true)),
                ("inv_std", bn.backward_step(dy.view(), &xh, &s[..1], dx.view_mut(), false)),
            ];
            for (case, r) in cases {
                assert!(matches!(r, Err(Error::Shape { .. })), "training {training}, {case}: {r:?}");
            }
        }
        assert!(bn.add_param_grads(dy.view(), &xh).is_ok());
        assert!(matches!(bn.add_param_grads(input(2, 3, 0.0).view(), &xh), Err(Error::Shape { .. })));
        assert!(matches!(bn.add_param_grads(input(2, 3, 0.0).t(), &xh), Err(Error::Shape { .. })));
        assert!(matches!(bn.add_param_grads(dy.view(), &xh[..4]), Err(Error::Shape { .. })));
    }

    #[test]
    fn backward_rejects_gradient_shape_mismatch_and_inconsistent_cache() {
        let mut bn = BatchNormConfig::new(2).init::<f64>().unwrap();
        let (_, cache) = bn.forward(input(3, 2, 0.0).view()).unwrap();
        assert!(matches!(bn.backward(&cache, Array2::zeros((2, 2)).view()), Err(Error::Shape { .. })));
        assert!(matches!(bn.backward(&cache, Array2::zeros((3, 3)).view()), Err(Error::Shape { .. })));
        let bad = BatchNormCache { xhat: Array2::zeros((3, 2)), inv_std: Array1::zeros(5), training: true };
        assert!(matches!(bn.backward(&bad, Array2::zeros((3, 2)).view()), Err(Error::Shape { .. })));
        assert!(bn.is_training(), "mode restored after a failed backward");
    }

    #[test]
    fn set_running_stats_validates() {
        let mut bn = BatchNormConfig::new(2).with_time_steps(2).init::<f64>().unwrap();
        assert!(bn.set_running_stats(Array2::zeros((2, 2)), Array2::ones((2, 2)).reversed_axes()).is_ok());
        let ok = || (Array2::<f64>::zeros((2, 2)), Array2::<f64>::ones((2, 2)));
        let (m, _) = ok();
        assert!(matches!(bn.set_running_stats(Array2::zeros((1, 2)), m.clone()), Err(Error::Shape { .. })));
        assert!(matches!(bn.set_running_stats(m.clone(), Array2::ones((2, 3))), Err(Error::Shape { .. })));
        let mut nan = m.clone();
        nan[[1, 1]] = f64::NAN;
        assert!(matches!(bn.set_running_stats(nan.clone(), ok().1), Err(Error::NonFinite { .. })));
        assert!(matches!(bn.set_running_stats(m.clone(), nan.mapv(|v| v + 1.0)), Err(Error::NonFinite { .. })));
        let neg = array![[1.0, 1.0], [-0.5, 1.0]];
        assert!(matches!(bn.set_running_stats(m, neg), Err(Error::Config { .. })));
    }

    #[test]
    fn from_params_and_mutable_access() {
        let mut bn =
            BatchNorm::from_params(array![2.0f64], array![0.5], array![[1.0], [3.0]], array![[4.0], [0.0]], 1e-5, 0.2)
                .unwrap();
        assert_eq!((bn.n_features(), bn.time_steps(), bn.momentum(), bn.is_training()), (1, 2, 0.2, true));
        bn.set_training(false);
        // step 0: (5 − 1)/√(4 + 1e-5)·2 + 0.5
        let mut y = Array2::zeros((1, 1));
        let (mut xhat, mut s) = ([0.0; 1], [0.0; 1]);
        bn.forward_step(0, array![[5.0]].view(), y.view_mut(), &mut xhat, &mut s).unwrap();
        assert!((y[[0, 0]] - (4.0 / (4.0f64 + 1e-5).sqrt() * 2.0 + 0.5)).abs() < 1e-12);
        bn.running_mean_mut()[[0, 0]] = 5.0;
        bn.gamma_mut()[0] = 1.0;
        bn.beta_mut()[0] = 0.0;
        bn.forward_step(0, array![[5.0]].view(), y.view_mut(), &mut xhat, &mut s).unwrap();
        assert_eq!(y[[0, 0]], 0.0);
        // a negative variance written through the view is an Err at use, not a NaN
        bn.running_var_mut()[[1, 0]] = -1.0;
        assert!(matches!(
            bn.forward_step(1, array![[5.0]].view(), y.view_mut(), &mut xhat, &mut s),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn from_params_rejects_bad_parameters() {
        let g = || array![1.0f32, 1.0];
        let m = || array![[0.0f32, 0.0]];
        let cases: Vec<(Result<BatchNorm<f32>>, &str)> = vec![
            (BatchNorm::from_params(g(), array![0.0], m(), m(), 1e-5, 0.1), "beta"),
            (BatchNorm::from_params(g(), g(), array![[0.0]], m(), 1e-5, 0.1), "running_mean"),
            (BatchNorm::from_params(g(), g(), m(), array![[1.0, 1.0], [1.0, 1.0]], 1e-5, 0.1), "running_var"),
            (BatchNorm::from_params(g(), g(), Array2::zeros((0, 2)), Array2::zeros((0, 2)), 1e-5, 0.1), "T_max"),
            (BatchNorm::from_params(g(), g(), m(), array![[1.0, -1.0]], 1e-5, 0.1), ">= 0"),
            (BatchNorm::from_params(g(), g(), array![[0.0, f32::NAN]], m(), 1e-5, 0.1), "running_mean"),
            (BatchNorm::from_params(g(), g(), m(), m(), 1e-50, 0.1), "eps"),
            (BatchNorm::from_params(g(), g(), m(), m(), 1e-5, 1.5), "momentum"),
        ];
        for (r, what) in cases {
            let e = r.unwrap_err().to_string();
            assert!(e.contains(what) && e.starts_with("BatchNorm::from_params"), "{what}: {e}");
        }
    }
}
