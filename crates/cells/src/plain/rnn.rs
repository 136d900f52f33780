//! The Elman RNN cell with any activation from `rnnlab-activations`.

use ndarray::{Array1, ArrayView2, ArrayViewMut2};
use rnnlab_activations::ActivationKind;
use rnnlab_core::{Cell, Float, ParamView, ParamViewMut, Parameterized, Result, Rng, SeqRefs, StepRefs};
use rnnlab_init::Init;
use rnnlab_kernels::PackedWeight;
use serde::{Deserialize, Serialize};

use super::params::{BiasGrads, GateParams};
use crate::views::{check_step, slice, slice_mut};

/// Configuration of an [`Rnn`] cell.
///
/// Defaults: tanh, `w_ih` Xavier-uniform, `w_hh` orthogonal, zero biases. For the IRNN of
/// Le et al. (2015) use `ActivationKind::Relu` with `Init::Identity { scale: 1.0 }` for `w_hh`.
///
/// # Examples
/// An IRNN layer (ReLU, identity `w_hh`) unrolled over 20 steps of a batch of 4:
/// ```
/// use ndarray::Array3;
/// use rnnlab_activations::ActivationKind;
/// use rnnlab_cells::{Recurrent, RnnConfig};
/// use rnnlab_init::Init;
/// let config = RnnConfig::new(3, 16)
///     .with_activation(ActivationKind::Relu)
///     .with_w_hh_init(Init::Identity { scale: 1.0 });
/// let mut irnn = Recurrent::new(vec![config.init::<f32>(&mut rnnlab_core::seeded_rng(0))?])?;
/// let fwd = irnn.forward(Array3::<f32>::ones((20, 4, 3)).view(), None)?;
/// assert_eq!(fwd.outputs.shape(), &[20, 4, 16]); // [time, batch, hidden_dim]
/// assert!(RnnConfig::new(3, 0).init::<f32>(&mut rnnlab_core::seeded_rng(0)).is_err());
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct RnnConfig {
    /// Input width I.
    pub input_dim: usize,
    /// Hidden width H.
    pub hidden_dim: usize,
    /// The nonlinearity φ (default tanh).
    pub activation: ActivationKind,
    /// Initialiser of `w_ih`.
    pub w_ih_init: Init,
    /// Initialiser of `w_hh`.
    pub w_hh_init: Init,
    /// Initialiser of both biases.
    pub bias_init: Init,
}
rnnlab_core::serde_map_only!(RnnConfig);

impl RnnConfig {
    /// The default configuration for the given sizes.
    pub fn new(input_dim: usize, hidden_dim: usize) -> Self {
        Self {
            input_dim,
            hidden_dim,
            activation: ActivationKind::Tanh,
            w_ih_init: Init::XavierUniform { gain: 1.0 },
            w_hh_init: Init::Orthogonal { gain: 1.0 },
            bias_init: Init::Zeros,
        }
    }

    /// Sets the activation.
    pub fn with_activation(mut self, activation: ActivationKind) -> Self {
        self.activation = activation;
        self
    }

    /// Sets the initialiser of `w_ih`.
    pub fn with_w_ih_init(mut self, init: Init) -> Self {
        self.w_ih_init = init;
        self
    }

    /// Sets the initialiser of `w_hh`.
    pub fn with_w_hh_init(mut self, init: Init) -> Self {
        self.w_hh_init = init;
        self
    }

    /// Sets the initialiser of the biases.
    pub fn with_bias_init(mut self, init: Init) -> Self {
        self.bias_init = init;
        self
    }

    /// Draws the parameters.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Config`] for a zero size, an invalid activation or initialiser.
    pub fn init<F: Float>(&self, rng: &mut Rng) -> Result<Rnn<F>> {
        let op = "RnnConfig::init";
        super::check_dims(op, 1, self.input_dim, self.hidden_dim)?;
        let (i, h) = (self.input_dim, self.hidden_dim);
        let w_ih = self.w_ih_init.array2::<F>(h, i, rng).map_err(|e| e.within(op, "w_ih_init"))?;
        let w_hh = self.w_hh_init.array2::<F>(h, h, rng).map_err(|e| e.within(op, "w_hh_init"))?;
        let b_ih = self.bias_init.array1::<F>(h, rng).map_err(|e| e.within(op, "bias_init"))?;
        let b_hh = self.bias_init.array1::<F>(h, rng).map_err(|e| e.within(op, "bias_init"))?;
        Rnn::from_params(self.activation, w_ih, w_hh, b_ih, b_hh)
    }
}

/// The Elman RNN cell: h_t = φ(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh).
///
/// One step's state Jacobian is ∂h_t/∂h_{t−1} = diag(φ'(a_t))·W_hh — the factor whose
/// product over time vanishes or explodes (Pascanu et al. 2013).
///
/// Parameters, as `torch.nn.RNN` layer 0: `w_ih` `[H, I]`, `w_hh` `[H, H]`, `b_ih`, `b_hh`
/// `[H]`. State parts `["h"]`. Backward: δa = δh_t ⊙ φ'(a_t) (from the output h_t where the
/// activation allows, else from the cached pre-activation a_t); δh_{t−1} = δa·W_hh.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "F: Float")]
pub struct Rnn<F: Float> {
    activation: ActivationKind,
    #[serde(flatten)]
    p: GateParams<F>,
    /// `w_hh` packed for the per-step products, refreshed at step 0 of each forward pass.
    #[serde(skip)]
    packed: PackedWeight<F>,
}

const STATE: &[&str] = &["h"];

impl<F: Float> Rnn<F> {
    /// A cell from given parameters, `w_ih` `[H, I]`, `w_hh` `[H, H]`, `b_ih` and `b_hh` `[H]`.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Shape`] if the shapes do not fit together,
    /// [`rnnlab_core::Error::Config`] for a zero size or an invalid activation.
    pub fn from_params(
        activation: ActivationKind,
        w_ih: ndarray::Array2<F>,
        w_hh: ndarray::Array2<F>,
        b_ih: Array1<F>,
        b_hh: Array1<F>,
    ) -> Result<Self> {
        activation.validate()?;
        Ok(Self {
            activation,
            p: GateParams::new("Rnn::from_params", 1, w_ih, w_hh, b_ih, b_hh)?,
            packed: PackedWeight::default(),
        })
    }

    /// The activation φ.
    pub fn activation(&self) -> ActivationKind {
        self.activation
    }

    /// Multiplies `grad` by φ'(a) for one step, from the output `h` or the cached `a`.
    fn times_derivative(&self, h: &[F], cache: &[F], grad: &mut [F]) -> Result<()> {
        if self.activation.df_uses_output() {
            self.activation.backward_from_output(h, grad)
        } else {
            // `cache` may be longer than `cache_len` (the callers checked at least that much).
            self.activation.backward_from_input(cache.get(..grad.len()).unwrap_or(cache), grad)
        }
    }
}

impl<F: Float> Parameterized<F> for Rnn<F> {
    fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        self.p.visit(v);
    }

    fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        self.p.visit_mut(v);
    }
}

impl<F: Float> Cell<F> for Rnn<F> {
    fn probe(&self) -> Option<&dyn rnnlab_core::Probe<F>> {
        Some(self)
    }

    fn name(&self) -> &'static str {
        "rnn"
    }

    fn input_dim(&self) -> usize {
        self.p.input_dim()
    }

    fn hidden_dim(&self) -> usize {
        self.p.hidden_dim()
    }

    fn state_names(&self) -> &'static [&'static str] {
        STATE
    }

    fn proj_dim(&self) -> usize {
        self.hidden_dim()
    }

    fn cache_len(&self, batch: usize) -> usize {
        // The pre-activation a_t, only when φ' cannot be had from φ's output.
        if self.activation.df_uses_output() { 0 } else { batch * self.hidden_dim() }
    }

    fn scratch_len(&self, _batch: usize) -> usize {
        0
    }

    fn project_input(&mut self, x: ArrayView2<'_, F>, mut out: ArrayViewMut2<'_, F>) -> Result<()> {
        crate::views::check_project(self, "Rnn::project_input", x.shape(), out.shape())?;
        let bias = &self.p.b_ih.value + &self.p.b_hh.value;
        self.p.project(x, bias.view(), &mut out)?;
        Ok(())
    }

    fn step(
        &mut self,
        t: usize,
        xp: ArrayViewMut2<'_, F>,
        prev: ArrayView2<'_, F>,
        mut next: ArrayViewMut2<'_, F>,
        cache: &mut [F],
        scratch: &mut [F],
    ) -> Result<()> {
        let op = "Rnn::step";
        let sw = self.state_width();
        check_step(
            self,
            op,
            &[("xp", xp.shape(), self.proj_dim()), ("prev", prev.shape(), sw), ("next", next.shape(), sw)],
            cache.len(),
            scratch.len(),
        )?;
        if t == 0 {
            self.packed.pack_per_step(self.p.w_hh.value.view());
        }
        // pre-activation = xp + h_{t−1}·W_hhᵀ
        self.packed.mul_t_from(self.p.w_hh.value.view(), prev, xp.view(), &mut next)?;
        let a = slice_mut(op, next)?;
        // `cache` may be longer than `cache_len` (checked above): only its first values are used.
        if self.cache_len(a.len() / self.hidden_dim()) > 0 {
            cache[..a.len()].copy_from_slice(a);
        }
        self.activation.forward_slice(a);
        Ok(())
    }

    fn step_backward(
        &self,
        step: StepRefs<'_, F>,
        dnext: ArrayView2<'_, F>,
        mut dprev: ArrayViewMut2<'_, F>,
        mut dxp: ArrayViewMut2<'_, F>,
        drec: ArrayViewMut2<'_, F>,
        scratch: &mut [F],
    ) -> Result<()> {
        crate::views::check_step_refs(self, "Rnn::step_backward", &step, dnext.nrows())?;
        let op = "Rnn::step_backward";
        let sw = self.state_width();
        check_step(
            self,
            op,
            &[
                ("dnext", dnext.shape(), sw),
                ("prev", step.prev.shape(), sw),
                ("next", step.next.shape(), sw),
                ("dprev", dprev.shape(), sw),
                ("dxp", dxp.shape(), self.proj_dim()),
                ("drec", drec.shape(), self.rec_grad_dim()),
            ],
            step.cache.len(),
            scratch.len(),
        )?;
        let h = slice(op, step.next)?;
        match (dxp.as_slice_mut(), dnext.as_slice()) {
            // δ = ∂L/∂h ⊙ φ′ from h in one pass (no copy of ∂L/∂h first).
            (Some(d), Some(g)) if d.len() == g.len() && self.activation.df_uses_output() => {
                self.activation.backward_from_output_into(h, g, d)?;
            }
            _ => {
                dxp.assign(&dnext);
                self.times_derivative(h, step.cache, slice_mut(op, dxp.view_mut())?)?;
            }
        }
        self.packed.mul(self.p.w_hh.value.view(), dxp.view(), false, &mut dprev)?;
        Ok(())
    }

    fn accumulate_grads(&mut self, seq: SeqRefs<'_, F>) -> Result<()> {
        crate::views::check_seq(self, "Rnn::accumulate_grads", &seq)?;
        let h = self.hidden_dim();
        self.p.acc_weight_grads(seq.dxp, seq.x, seq.dxp, seq.prev, h, BiasGrads::BothFromIh)?;
        Ok(())
    }

    fn input_grad(&self, dxp: ArrayView2<'_, F>, mut dx: ArrayViewMut2<'_, F>) -> Result<()> {
        crate::views::check_input_grad(self, "Rnn::input_grad", dxp.shape(), dx.shape())?;
        self.p.input_grad(dxp, &mut dx)?;
        Ok(())
    }

    fn jvp_state(
        &self,
        step: StepRefs<'_, F>,
        v: ArrayView2<'_, F>,
        mut out: ArrayViewMut2<'_, F>,
        scratch: &mut [F],
    ) -> Result<()> {
        crate::views::check_step_refs(self, "Rnn::jvp_state", &step, v.nrows())?;
        let op = "Rnn::jvp_state";
        let sw = self.state_width();
        check_step(
            self,
            op,
            &[
                ("v", v.shape(), sw),
                ("prev", step.prev.shape(), sw),
                ("next", step.next.shape(), sw),
                ("out", out.shape(), sw),
            ],
            step.cache.len(),
            scratch.len(),
        )?;
        self.packed.mul_t(self.p.w_hh.value.view(), v, false, &mut out)?;
        self.times_derivative(slice(op, step.next)?, step.cache, slice_mut(op, out)?)
    }
}
