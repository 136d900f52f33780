//! The Elman RNN with layer or recurrent batch normalisation inside the recurrence.

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2};
use rnnlab_activations::ActivationKind;
use rnnlab_core::{Cell, Float, ParamView, ParamViewMut, Parameterized, Result, Rng, SeqRefs, StepRefs};
use serde::{Deserialize, Serialize};

use super::config::CellBase;
use super::config::{NormConfig, NormKind};
use super::proj::{NormProj, plain_params};
use crate::RnnConfig;
use crate::views::{check_at_least, check_view, slice, slice_mut};

/// Configuration of a [`NormRnn`]: the plain [`RnnConfig`] and the [`NormConfig`].
///
/// # Examples
/// ```
/// use rnnlab_cells::{NormConfig, NormPlacement, NormRnnConfig, RnnConfig};
/// use rnnlab_core::{Cell, Parameterized};
/// let cfg = NormRnnConfig::new(RnnConfig::new(3, 8), NormConfig::layer(NormPlacement::Full));
/// let cell = cfg.init::<f32>(&mut rnnlab_core::seeded_rng(0))?;
/// assert_eq!(cell.name(), "ln_rnn");
/// assert_eq!(cell.param_names()[4..], ["norm_x.gamma", "norm_x.beta", "norm_h.gamma", "norm_h.beta"]);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct NormRnnConfig {
    /// Sizes, activation and initialisers, as for the plain cell.
    pub base: RnnConfig,
    /// The normalisation.
    pub norm: NormConfig,
}
rnnlab_core::serde_map_only!(NormRnnConfig);

impl NormRnnConfig {
    /// A configuration from its two parts.
    pub fn new(base: RnnConfig, norm: NormConfig) -> Self {
        Self { base, norm }
    }

    /// Draws the weights exactly as `base.init` does (the same draws from `rng`), then adds the
    /// normalisers (γ = `norm.gamma_init`, β = 0, running means 0 and variances 1).
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Config`] for an invalid [`NormConfig`] (checked before any draw)
    /// or whatever [`RnnConfig::init`] rejects.
    pub fn init<F: Float>(&self, rng: &mut Rng) -> Result<NormRnn<F>> {
        self.norm.validate()?;
        let plain = self.base.init::<F>(rng)?;
        let (w_ih, w_hh, b_ih, b_hh) = plain_params("NormRnnConfig::init", &plain)?;
        NormRnn::from_params(plain.activation(), w_ih, w_hh, b_ih, b_hh, &self.norm)
    }
}

/// The Elman RNN with normalisation inside the recurrence:
///
/// ```text
/// Full:       a_t = N_h,t(W_hh h_{t−1}) + N_x,t(W_ih x_t) + b_ih + b_hh
/// InputOnly:  a_t = W_hh h_{t−1} + N_x,t(W_ih x_t) + b_ih + b_hh
/// h_t = φ(a_t),   N(v) = γ ⊙ (v − µ)/√(σ² + ε) + β
/// ```
///
/// N is layer norm over the H features of a row (Ba, Kiros & Hinton 2016) or batch norm per
/// feature over the batch with statistics per time step (Cooijmans et al. 2016; see
/// [`NormConfig`]). The two projections are normalised SEPARATELY, in the form Ba et al. and
/// Cooijmans et al. use for the LSTM (Ba et al.'s printed LN-RNN normalises their sum). The
/// biases are added after the normalisation, as Cooijmans' b; the β's are learnable too
/// (initialised 0, redundant with the biases in exact arithmetic — Cooijmans et al. fix
/// β_x = β_h = 0).
///
/// Parameters: the plain [`crate::Rnn`]'s `w_ih` `[H, I]`, `w_hh` `[H, H]`, `b_ih`, `b_hh`
/// `[H]`, then `norm_x.gamma`, `norm_x.beta` `[H]` and (Full) `norm_h.gamma`, `norm_h.beta`
/// `[H]`. Batch norm's running statistics `[T_max, H]` per normaliser are serialised with the
/// cell but are not parameters. State parts `["h"]`. `name()`: `"ln_rnn"`, `"bn_rnn"`, with
/// `"_input"` appended for [`crate::NormPlacement::InputOnly`].
///
/// The state Jacobian is ∂h_t/∂h_{t−1} = diag(φ′(a_t))·γ_h·∂x̂_h/∂u·W_hh (Full): in
/// training-mode batch norm ∂x̂_h/∂u couples the rows of the batch, and
/// [`Cell::jvp_state`] / [`Cell::vjp_state`] are exact for the whole batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "F: Float")]
pub struct NormRnn<F: Float> {
    norm: NormConfig,
    training: bool,
    activation: ActivationKind,
    proj: NormProj<F>,
}

const STATE: &[&str] = &["h"];

impl<F: Float> NormRnn<F> {
    /// A cell from given weights, `w_ih` `[H, I]`, `w_hh` `[H, H]`, `b_ih`, `b_hh` `[H]`, with
    /// fresh normalisers from `norm`; in training mode.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Shape`] if the shapes do not fit together,
    /// [`rnnlab_core::Error::Config`] for a zero size, an invalid activation or `norm`.
    ///
    /// # Examples
    /// ```
    /// use ndarray::array;
    /// use rnnlab_activations::ActivationKind;
    /// use rnnlab_cells::{NormConfig, NormPlacement, NormRnn};
    /// let norm = NormConfig::batch(NormPlacement::InputOnly, 10);
    /// let cell = NormRnn::from_params(ActivationKind::Tanh, array![[1.0f64]], array![[0.5]], array![0.0], array![0.0], &norm)?;
    /// assert!(NormRnn::from_params(ActivationKind::Tanh, array![[1.0f64]], array![[0.5, 1.0]], array![0.0], array![0.0], &norm).is_err());
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn from_params(
        activation: ActivationKind,
        w_ih: Array2<F>,
        w_hh: Array2<F>,
        b_ih: Array1<F>,
        b_hh: Array1<F>,
        norm: &NormConfig,
    ) -> Result<Self> {
        activation.validate()?;
        let proj = NormProj::new("NormRnn::from_params", norm, 1, (w_ih, w_hh, b_ih, b_hh))?;
        Ok(Self { norm: norm.clone(), training: true, activation, proj })
    }

    /// The activation φ.
    pub fn activation(&self) -> ActivationKind {
        self.activation
    }

    /// The normalisation settings.
    pub fn norm_config(&self) -> &NormConfig {
        &self.norm
    }

    /// Whether batch norm uses batch statistics (and updates the running ones).
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The running means `[T_max, H]` of `"norm_x"` or `"norm_h"` (`[0, H]` for layer norm);
    /// `None` for another name or a normaliser this placement does not have.
    pub fn running_mean(&self, unit: &str) -> Option<ArrayView2<'_, F>> {
        self.proj.running(unit).map(|(m, _)| m)
    }

    /// The running variances, as [`NormRnn::running_mean`].
    pub fn running_var(&self, unit: &str) -> Option<ArrayView2<'_, F>> {
        self.proj.running(unit).map(|(_, v)| v)
    }

    fn check_views(&self, op: &str, b: usize, shapes: &[(&str, &[usize])]) -> Result<()> {
        self.proj.check(op, &self.norm, 1)?;
        let h = self.hidden_dim();
        for (what, shape) in shapes {
            check_view(op, what, b, h, shape)?;
        }
        Ok(())
    }
}

impl<F: Float> Parameterized<F> for NormRnn<F> {
    fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        self.proj.visit(v);
    }

    fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        self.proj.visit_mut(v);
    }
}

impl<F: Float> Cell<F> for NormRnn<F> {
    fn probe(&self) -> Option<&dyn rnnlab_core::Probe<F>> {
        Some(self)
    }

    fn name(&self) -> &'static str {
        self.norm.cell_name(CellBase::Rnn)
    }

    fn input_dim(&self) -> usize {
        self.proj.input_dim()
    }

    fn hidden_dim(&self) -> usize {
        self.proj.hidden_dim()
    }

    fn state_names(&self) -> &'static [&'static str] {
        STATE
    }

    fn proj_dim(&self) -> usize {
        self.proj.proj_dim()
    }

    fn rec_grad_dim(&self) -> usize {
        self.proj.rec_len()
    }

    fn cache_len(&self, batch: usize) -> usize {
        // the normalisers' front, then the pre-activation a_t
        self.proj.front_len(self.norm.kind, batch) + batch * self.hidden_dim()
    }

    fn scratch_len(&self, batch: usize) -> usize {
        let p = self.proj_dim();
        2 * batch * p + 2 * p
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn project_input(&mut self, x: ArrayView2<'_, F>, out: ArrayViewMut2<'_, F>) -> Result<()> {
        crate::views::check_project(self, "NormRnn::project_input", x.shape(), out.shape())?;
        self.proj.project_input("NormRnn::project_input", x, out)
    }

    fn step(
        &mut self,
        t: usize,
        xp: ArrayViewMut2<'_, F>,
        prev: ArrayView2<'_, F>,
        next: ArrayViewMut2<'_, F>,
        cache: &mut [F],
        scratch: &mut [F],
    ) -> Result<()> {
        let op = "NormRnn::step";
        let (b, h) = (xp.nrows(), self.hidden_dim());
        self.check_views(op, b, &[("projection", xp.shape()), ("state", prev.shape()), ("next state", next.shape())])?;
        check_at_least(op, "cache", self.cache_len(b), cache.len())?;
        check_at_least(op, "scratch", self.scratch_len(b), scratch.len())?;
        let batch_stats = self.training && self.norm.kind == NormKind::Batch;
        let xps = slice(op, xp.view())?;
        let nx = slice_mut(op, next)?;
        let (q, rest) = scratch.split_at_mut(b * h);
        let (u, stats) = rest.split_at_mut(b * h);
        let (front, a) = cache.split_at_mut(self.proj.front_len(self.norm.kind, b));
        self.proj.forward(op, &self.norm, batch_stats, t, xps, prev, nx, q, front, u, stats)?;
        let (bi, bh) = self.proj.biases(op)?;
        for r in 0..b {
            for k in 0..h {
                let i = r * h + k;
                let v = nx[i] + q[i] + bi[k] + bh[k];
                a[i] = v;
                nx[i] = v;
            }
        }
        self.activation.forward_slice(nx);
        Ok(())
    }

    fn step_backward(
        &self,
        step: StepRefs<'_, F>,
        dnext: ArrayView2<'_, F>,
        mut dprev: ArrayViewMut2<'_, F>,
        dxp: ArrayViewMut2<'_, F>,
        drec: ArrayViewMut2<'_, F>,
        scratch: &mut [F],
    ) -> Result<()> {
        crate::views::check_step_refs(self, "NormRnn::step_backward", &step, dnext.nrows())?;
        let op = "NormRnn::step_backward";
        let (b, h) = (dnext.nrows(), self.hidden_dim());
        self.check_views(
            op,
            b,
            &[
                ("state gradient", dnext.shape()),
                ("previous-state gradient", dprev.shape()),
                ("projection gradient", dxp.shape()),
            ],
        )?;
        check_view(op, "drec", b, self.rec_grad_dim(), drec.shape())?;
        check_at_least(op, "cache", self.cache_len(b), step.cache.len())?;
        check_at_least(op, "scratch", self.scratch_len(b), scratch.len())?;
        let kind = self.norm.kind;
        let front = self.proj.front(op, kind, b, step.cache)?;
        let fl = self.proj.front_len(kind, b);
        let a = &step.cache[fl..fl + b * h];
        let (e, rest) = scratch.split_at_mut(b * h);
        let du = &mut rest[..b * h];
        e.copy_from_slice(slice(op, dnext)?);
        self.activation.backward_from_input(a, e)?;
        self.proj.backward(op, kind, &front, e, e, slice_mut(op, dxp)?, du, &mut dprev, false)?;
        self.proj.store_rec(op, slice_mut(op, drec)?, b, e, e, du)
    }

    fn accumulate_grads(&mut self, seq: SeqRefs<'_, F>) -> Result<()> {
        crate::views::check_seq(self, "NormRnn::accumulate_grads", &seq)?;
        let op = "NormRnn::accumulate_grads";
        self.proj.check(op, &self.norm, 1)?;
        self.proj.accumulate(op, self.norm.kind, &seq)
    }

    fn input_grad(&self, dxp: ArrayView2<'_, F>, dx: ArrayViewMut2<'_, F>) -> Result<()> {
        crate::views::check_input_grad(self, "NormRnn::input_grad", dxp.shape(), dx.shape())?;
        self.proj.input_grad("NormRnn::input_grad", dxp, dx)
    }

    fn jvp_state(
        &self,
        step: StepRefs<'_, F>,
        v: ArrayView2<'_, F>,
        out: ArrayViewMut2<'_, F>,
        scratch: &mut [F],
    ) -> Result<()> {
        crate::views::check_step_refs(self, "NormRnn::jvp_state", &step, v.nrows())?;
        let op = "NormRnn::jvp_state";
        let (b, h) = (v.nrows(), self.hidden_dim());
        self.check_views(op, b, &[("tangent", v.shape()), ("output", out.shape())])?;
        check_at_least(op, "cache", self.cache_len(b), step.cache.len())?;
        check_at_least(op, "scratch", self.scratch_len(b), scratch.len())?;
        let kind = self.norm.kind;
        let front = self.proj.front(op, kind, b, step.cache)?;
        let fl = self.proj.front_len(kind, b);
        let a = &step.cache[fl..fl + b * h];
        let (dq, u) = scratch.split_at_mut(b * h);
        self.proj.jvp(op, kind, &front, v, dq, u)?;
        let o = slice_mut(op, out)?;
        o.copy_from_slice(dq);
        self.activation.backward_from_input(a, o)?;
        Ok(())
    }
}

impl<F: Float> rnnlab_core::Probe<F> for NormRnn<F> {
    /// Every hidden unit's φ′ relative to sup φ′, from the cached pre-activation; no gates.
    fn saturation(&self, step: StepRefs<'_, F>, eps: f64) -> Result<Option<rnnlab_core::Saturation>> {
        let op = "NormRnn::saturation";
        let b = crate::probe::check_probe(self, op, &step, self.cache_len(step.next.nrows()))?;
        let fl = self.proj.front_len(self.norm.kind, b);
        let mut tally = crate::probe::Tally::new(eps);
        tally.by_input(self.activation, &step.cache[fl..fl + b * self.hidden_dim()]);
        Ok(Some(tally.finish(Vec::new())))
    }

    /// One state part: the total derivative is the recorded one.
    fn total_state_grad(
        &self,
        _step: StepRefs<'_, F>,
        d_state: ArrayView2<'_, F>,
        mut out: ArrayViewMut2<'_, F>,
    ) -> Result<bool> {
        crate::probe::check_total("NormRnn::total_state_grad", d_state.nrows(), self.hidden_dim(), &d_state, &out)?;
        out.assign(&d_state);
        Ok(true)
    }
}
