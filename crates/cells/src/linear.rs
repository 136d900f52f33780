//! The `Linear` read-out layer: y = x Wᵀ + b.

use ndarray::{Array1, Array2, ArrayView2, Axis, Ix1, Ix2};
use rnnlab_core::{Error, Float, Layer, Param, ParamView, ParamViewMut, Parameterized, Result, Rng};
use rnnlab_init::Init;
use serde::{Deserialize, Serialize};

use crate::views::gemm;

/// Configuration of a [`Linear`] layer. Defaults: Xavier-uniform weight, zero bias.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct LinearConfig {
    /// Input width.
    pub input_dim: usize,
    /// Output width.
    pub output_dim: usize,
    /// Initialiser of `weight`.
    pub weight_init: Init,
    /// Initialiser of `bias`.
    pub bias_init: Init,
}
rnnlab_core::serde_map_only!(LinearConfig);

impl LinearConfig {
    /// The default configuration for the given sizes.
    pub fn new(input_dim: usize, output_dim: usize) -> Self {
        Self { input_dim, output_dim, weight_init: Init::XavierUniform { gain: 1.0 }, bias_init: Init::Zeros }
    }

    /// Sets the weight initialiser.
    pub fn with_weight_init(mut self, init: Init) -> Self {
        self.weight_init = init;
        self
    }

    /// Sets the bias initialiser.
    pub fn with_bias_init(mut self, init: Init) -> Self {
        self.bias_init = init;
        self
    }

    /// Draws the parameters.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero size or an invalid initialiser.
    pub fn init<F: Float>(&self, rng: &mut Rng) -> Result<Linear<F>> {
        let op = "LinearConfig::init";
        rnnlab_core::limits::size(op, "input_dim", self.input_dim, rnnlab_core::limits::MAX_DIM)?;
        rnnlab_core::limits::size(op, "output_dim", self.output_dim, rnnlab_core::limits::MAX_DIM)?;
        let w = (self.weight_init.array2::<F>(self.output_dim, self.input_dim, rng))
            .map_err(|e| e.within(op, "weight_init"))?;
        let b = self.bias_init.array1::<F>(self.output_dim, rng).map_err(|e| e.within(op, "bias_init"))?;
        Linear::from_params(w, b)
    }
}

/// A fully connected layer, y = x Wᵀ + b, as `torch.nn.Linear` (`weight` `[out, in]`, `bias`
/// `[out]`). Backward: δx = δy W, δW += δyᵀ x, δb += Σ_rows δy.
///
/// # Shapes
/// input `[rows, input_dim]` → output `[rows, output_dim]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "F: Float")]
pub struct Linear<F: Float> {
    weight: Param<F, Ix2>,
    bias: Param<F, Ix1>,
}

impl<F: Float> Linear<F> {
    /// A layer from its weight `[out, in]` and bias `[out]`.
    ///
    /// # Errors
    /// [`Error::Shape`] if they do not fit, [`Error::Config`] for a zero size.
    pub fn from_params(weight: Array2<F>, bias: Array1<F>) -> Result<Self> {
        let op = "Linear::from_params";
        if weight.is_empty() {
            return Err(Error::config(op, format!("weight must be non-empty, got {:?}", weight.shape())));
        }
        rnnlab_core::validate::shape(op, "bias", &[weight.nrows()], bias.shape())?;
        Ok(Self { weight: Param::new(weight), bias: Param::new(bias) })
    }

    /// The input width.
    pub fn input_dim(&self) -> usize {
        self.weight.value.ncols()
    }

    /// The output width.
    pub fn output_dim(&self) -> usize {
        self.weight.value.nrows()
    }

    /// Forward without a cache (evaluation).
    ///
    /// # Errors
    /// [`Error::Shape`] for an input of the wrong width; [`Error::NonFinite`] for a NaN or
    /// infinite input, weight or bias (each checked in one branch-free pass, O(rows·in +
    /// out·in) against the product's O(rows·in·out)). With finite operands the output is
    /// finite unless a sum overflows the float range.
    pub fn apply(&self, x: ArrayView2<'_, F>) -> Result<Array2<F>> {
        const OP: &str = "Linear::forward";
        rnnlab_core::validate::shape(OP, "input width", &[self.input_dim()], &[x.ncols()])?;
        rnnlab_core::validate::finite_array(OP, "input", &x)?;
        rnnlab_core::validate::finite_array(OP, "weight", &self.weight.value.view())?;
        rnnlab_core::validate::finite_array(OP, "bias", &self.bias.value.view())?;
        let mut y = Array2::zeros((x.nrows(), self.output_dim()));
        gemm(F::one(), &x, &self.weight.value.t(), F::zero(), &mut y.view_mut());
        y += &self.bias.value;
        Ok(y)
    }
}

impl<F: Float> Parameterized<F> for Linear<F> {
    fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        v("weight", self.weight.view());
        v("bias", self.bias.view());
    }

    fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        v("weight", self.weight.view_mut());
        v("bias", self.bias.view_mut());
    }
}

impl<F: Float> Layer<F> for Linear<F> {
    /// The input.
    type Cache = Array2<F>;

    fn forward(&mut self, input: ArrayView2<'_, F>) -> Result<(Array2<F>, Self::Cache)> {
        Ok((self.apply(input)?, input.to_owned()))
    }

    fn backward(&mut self, cache: &Self::Cache, grad_output: ArrayView2<'_, F>) -> Result<Array2<F>> {
        let op = "Linear::backward";
        rnnlab_core::validate::shape(op, "output gradient", &[cache.nrows(), self.output_dim()], grad_output.shape())?;
        rnnlab_core::validate::shape(op, "cached input", &[cache.nrows(), self.input_dim()], cache.shape())?;
        rnnlab_core::validate::finite_array(op, "output gradient", &grad_output)?;
        gemm(F::one(), &grad_output.t(), &cache.view(), F::one(), &mut self.weight.grad.view_mut());
        self.bias.grad += &grad_output.sum_axis(Axis(0));
        let mut dx = Array2::zeros((cache.nrows(), self.input_dim()));
        gemm(F::one(), &grad_output, &self.weight.value.view(), F::zero(), &mut dx.view_mut());
        Ok(dx)
    }
}
