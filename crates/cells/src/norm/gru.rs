//! The reset-after GRU with layer or recurrent batch normalisation inside the recurrence.

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2};
use rnnlab_core::{Cell, Error, Float, ParamView, ParamViewMut, Parameterized, Result, Rng, SeqRefs, StepRefs};
use rnnlab_kernels::{sigmoid_inplace, tanh_inplace};
use serde::{Deserialize, Serialize};

use super::config::CellBase;
use super::config::{NormConfig, NormKind};
use super::proj::{NormProj, plain_params};
use crate::views::{check_at_least, check_view, slice, slice_mut};
use crate::{GruConfig, GruVariant};

/// Configuration of a [`NormGru`]: the plain [`GruConfig`] (whose variant must be
/// [`GruVariant::ResetAfter`]) and the [`NormConfig`].
///
/// # Examples
/// ```
/// use rnnlab_cells::{GruConfig, GruVariant, NormConfig, NormGruConfig, NormPlacement};
/// use rnnlab_core::Cell;
/// let cfg = NormGruConfig::new(GruConfig::new(3, 8), NormConfig::layer(NormPlacement::Full));
/// assert_eq!(cfg.init::<f32>(&mut rnnlab_core::seeded_rng(0))?.name(), "ln_gru");
/// let before = NormGruConfig::new(GruConfig::new(3, 8).with_variant(GruVariant::ResetBefore), cfg.norm.clone());
/// assert!(before.init::<f32>(&mut rnnlab_core::seeded_rng(0)).is_err());
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct NormGruConfig {
    /// Sizes and initialisers, as for the plain cell (reset-after only).
    pub base: GruConfig,
    /// The normalisation.
    pub norm: NormConfig,
}
rnnlab_core::serde_map_only!(NormGruConfig);

impl NormGruConfig {
    /// A configuration from its two parts.
    pub fn new(base: GruConfig, norm: NormConfig) -> Self {
        Self { base, norm }
    }

    /// Draws the weights exactly as `base.init` does (the same draws from `rng`), then adds the
    /// normalisers (γ = `norm.gamma_init`, β = 0, running means 0 and variances 1).
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Config`] for an invalid [`NormConfig`] or a reset-before variant
    /// (both checked before any draw), or whatever [`GruConfig::init`] rejects.
    pub fn init<F: Float>(&self, rng: &mut Rng) -> Result<NormGru<F>> {
        self.norm.validate()?;
        check_variant("NormGruConfig::init", self.base.variant)?;
        let plain = self.base.init::<F>(rng)?;
        let (w_ih, w_hh, b_ih, b_hh) = plain_params("NormGruConfig::init", &plain)?;
        NormGru::from_params(w_ih, w_hh, b_ih, b_hh, &self.norm)
    }
}

fn check_variant(op: &str, variant: GruVariant) -> Result<()> {
    match variant {
        GruVariant::ResetAfter => Ok(()),
        GruVariant::ResetBefore => {
            Err(Error::config(op, "a normalised GRU is reset-after: W_hh h_{t-1} is normalised before r ⊙ (·)"))
        }
    }
}

/// The reset-after GRU (PyTorch's gate order r, z, n) with normalisation inside the recurrence:
///
/// ```text
/// ŷ_x = N_x,t(W_ih x_t)
/// q   = N_h,t(W_hh h_{t−1}) + b_hh     (Full)
/// q   = W_hh h_{t−1} + b_hh            (InputOnly)
/// r = σ(ŷ_x,r + b_ir + q_r),   z = σ(ŷ_x,z + b_iz + q_z)
/// n = tanh(ŷ_x,n + b_in + r ⊙ q_n),   h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}
/// N(v) = γ ⊙ (v − µ)/√(σ² + ε) + β
/// ```
///
/// Layer norm (Ba, Kiros & Hinton 2016) normalises the whole 3H-wide vector of each projection
/// per row, as for [`crate::NormLstm`]; batch norm (Cooijmans et al. 2016) each of the 3H
/// features over the batch with statistics per time step. The recurrent projection is
/// normalised BEFORE the reset gate multiplies its n block. The biases are added after the
/// normalisation; the β's are learnable too (initialised 0). z multiplies the old state, as in
/// [`crate::Gru`].
///
/// Parameters: the plain [`crate::Gru`]'s `w_ih` `[3H, I]`, `w_hh` `[3H, H]`, `b_ih`, `b_hh`
/// `[3H]`, then `norm_x.gamma`, `norm_x.beta` `[3H]` and (Full) `norm_h.gamma`, `norm_h.beta`
/// `[3H]`. State parts `["h"]`. `name()`: `"ln_gru"`, `"bn_gru"`, with `"_input"` appended for
/// [`crate::NormPlacement::InputOnly`].
///
/// Backward: δa_n = δh (1 − z)(1 − n²), δa_z = δh (h_{t−1} − n) z(1 − z), δa_r = δa_n q_n r(1 − r);
/// e_x = [δa_r δa_z δa_n], e_h = [δa_r δa_z r ⊙ δa_n]; ∂L/∂(W_ih x) = (∂x̂_x/∂v)ᵀ(γ_x ⊙ e_x);
/// δh_{t−1} = δh ⊙ z + ((∂x̂_h/∂u)ᵀ(γ_h ⊙ e_h))·W_hh. The JVP and VJP are exact for the whole
/// batch (training-mode batch norm couples its rows).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "F: Float")]
pub struct NormGru<F: Float> {
    norm: NormConfig,
    training: bool,
    proj: NormProj<F>,
}

const STATE: &[&str] = &["h"];

impl<F: Float> NormGru<F> {
    /// A cell from given weights, `w_ih` `[3H, I]`, `w_hh` `[3H, H]`, `b_ih`, `b_hh` `[3H]`, with
    /// fresh normalisers from `norm`; in training mode.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Shape`] if the shapes do not fit together,
    /// [`rnnlab_core::Error::Config`] for a zero size or an invalid `norm`.
    ///
    /// # Examples
    /// ```
    /// use ndarray::{Array1, Array2};
    /// use rnnlab_cells::{NormConfig, NormGru, NormPlacement};
    /// let norm = NormConfig::batch(NormPlacement::Full, 5);
    /// let cell = NormGru::<f64>::from_params(Array2::zeros((6, 1)), Array2::zeros((6, 2)), Array1::zeros(6), Array1::zeros(6), &norm)?;
    /// assert_eq!(cell.running_mean("norm_h").map(|m| m.dim()), Some((5, 6)));
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn from_params(
        w_ih: Array2<F>,
        w_hh: Array2<F>,
        b_ih: Array1<F>,
        b_hh: Array1<F>,
        norm: &NormConfig,
    ) -> Result<Self> {
        let proj = NormProj::new("NormGru::from_params", norm, 3, (w_ih, w_hh, b_ih, b_hh))?;
        Ok(Self { norm: norm.clone(), training: true, proj })
    }

    /// The normalisation settings.
    pub fn norm_config(&self) -> &NormConfig {
        &self.norm
    }

    /// Whether batch norm uses batch statistics (and updates the running ones).
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The running means `[T_max, 3H]` of `"norm_x"` or `"norm_h"` (`[0, 3H]` for layer norm);
    /// `None` for another name or a normaliser this placement does not have.
    pub fn running_mean(&self, unit: &str) -> Option<ArrayView2<'_, F>> {
        self.proj.running(unit).map(|(m, _)| m)
    }

    /// The running variances, as [`NormGru::running_mean`].
    pub fn running_var(&self, unit: &str) -> Option<ArrayView2<'_, F>> {
        self.proj.running(unit).map(|(_, v)| v)
    }

    fn check_views(&self, op: &str, b: usize, shapes: &[(&str, usize, &[usize])]) -> Result<()> {
        self.proj.check(op, &self.norm, 3)?;
        for (what, cols, shape) in shapes {
            check_view(op, what, b, *cols, shape)?;
        }
        Ok(())
    }
}

impl<F: Float> Parameterized<F> for NormGru<F> {
    fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        self.proj.visit(v);
    }

    fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        self.proj.visit_mut(v);
    }
}

impl<F: Float> Cell<F> for NormGru<F> {
    fn probe(&self) -> Option<&dyn rnnlab_core::Probe<F>> {
        Some(self)
    }

    fn name(&self) -> &'static str {
        self.norm.cell_name(CellBase::Gru)
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
        // front, then per row r, z, n and q_n
        self.proj.front_len(self.norm.kind, batch) + 4 * batch * self.hidden_dim()
    }

    fn scratch_len(&self, batch: usize) -> usize {
        let p = self.proj_dim();
        3 * batch * p + 2 * p
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn project_input(&mut self, x: ArrayView2<'_, F>, out: ArrayViewMut2<'_, F>) -> Result<()> {
        crate::views::check_project(self, "NormGru::project_input", x.shape(), out.shape())?;
        self.proj.project_input("NormGru::project_input", x, out)
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
        let op = "NormGru::step";
        let (b, h, p) = (xp.nrows(), self.hidden_dim(), self.proj_dim());
        self.check_views(
            op,
            b,
            &[("projection", p, xp.shape()), ("state", h, prev.shape()), ("next state", h, next.shape())],
        )?;
        check_at_least(op, "cache", self.cache_len(b), cache.len())?;
        check_at_least(op, "scratch", self.scratch_len(b), scratch.len())?;
        let kind = self.norm.kind;
        let batch_stats = self.training && kind == NormKind::Batch;
        let xps = slice(op, xp.view())?;
        let hp = slice(op, prev)?;
        let nx = slice_mut(op, next)?;
        let (q, rest) = scratch.split_at_mut(b * p);
        let (u, rest) = rest.split_at_mut(b * p);
        let (yx, stats) = rest.split_at_mut(b * p);
        let (front, gates) = cache.split_at_mut(self.proj.front_len(kind, b));
        self.proj.forward(op, &self.norm, batch_stats, t, xps, prev, yx, q, front, u, stats)?;
        let (bi, bh) = self.proj.biases(op)?;
        for r in 0..b {
            let c = &mut gates[r * 4 * h..(r + 1) * 4 * h];
            let (x, qr) = (&yx[r * p..(r + 1) * p], &q[r * p..(r + 1) * p]);
            for k in 0..2 * h {
                c[k] = x[k] + bi[k] + qr[k] + bh[k];
            }
            sigmoid_inplace(&mut c[..2 * h]);
            let (rz, nq) = c.split_at_mut(2 * h);
            let (n, qn) = nq.split_at_mut(h);
            for k in 0..h {
                qn[k] = qr[2 * h + k] + bh[2 * h + k];
                n[k] = x[2 * h + k] + bi[2 * h + k] + rz[k] * qn[k];
            }
            tanh_inplace(n);
            let (z, hprev, hnew) = (&rz[h..], &hp[r * h..(r + 1) * h], &mut nx[r * h..(r + 1) * h]);
            for k in 0..h {
                hnew[k] = n[k] + z[k] * (hprev[k] - n[k]);
            }
        }
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
        crate::views::check_step_refs(self, "NormGru::step_backward", &step, dnext.nrows())?;
        let op = "NormGru::step_backward";
        let (b, h, p) = (dnext.nrows(), self.hidden_dim(), self.proj_dim());
        self.check_views(
            op,
            b,
            &[
                ("state gradient", h, dnext.shape()),
                ("previous-state gradient", h, dprev.shape()),
                ("projection gradient", p, dxp.shape()),
                ("drec", self.rec_grad_dim(), drec.shape()),
                ("previous state", h, step.prev.shape()),
            ],
        )?;
        check_at_least(op, "cache", self.cache_len(b), step.cache.len())?;
        check_at_least(op, "scratch", self.scratch_len(b), scratch.len())?;
        let kind = self.norm.kind;
        let front = self.proj.front(op, kind, b, step.cache)?;
        let gates = &step.cache[self.proj.front_len(kind, b)..];
        let (e_x, rest) = scratch.split_at_mut(b * p);
        let (e_h, rest) = rest.split_at_mut(b * p);
        let du = &mut rest[..b * p];
        let hp = slice(op, step.prev)?;
        let dh = slice(op, dnext)?;
        let one = F::one();
        {
            let dp = slice_mut(op, dprev.view_mut())?;
            for row in 0..b {
                let c = &gates[row * 4 * h..(row + 1) * 4 * h];
                let (r, z, n, qn) = (&c[..h], &c[h..2 * h], &c[2 * h..3 * h], &c[3 * h..]);
                let (ex, eh) = (&mut e_x[row * p..(row + 1) * p], &mut e_h[row * p..(row + 1) * p]);
                for k in 0..h {
                    let i = row * h + k;
                    let da_n = dh[i] * (one - z[k]) * (one - n[k] * n[k]);
                    let da_z = dh[i] * (hp[i] - n[k]) * z[k] * (one - z[k]);
                    let da_r = da_n * qn[k] * r[k] * (one - r[k]);
                    ex[k] = da_r;
                    ex[h + k] = da_z;
                    ex[2 * h + k] = da_n;
                    eh[k] = da_r;
                    eh[h + k] = da_z;
                    eh[2 * h + k] = r[k] * da_n;
                    dp[i] = dh[i] * z[k];
                }
            }
        }
        self.proj.backward(op, kind, &front, e_x, e_h, slice_mut(op, dxp)?, du, &mut dprev, true)?;
        self.proj.store_rec(op, slice_mut(op, drec)?, b, e_x, e_h, du)
    }

    fn accumulate_grads(&mut self, seq: SeqRefs<'_, F>) -> Result<()> {
        crate::views::check_seq(self, "NormGru::accumulate_grads", &seq)?;
        let op = "NormGru::accumulate_grads";
        self.proj.check(op, &self.norm, 3)?;
        self.proj.accumulate(op, self.norm.kind, &seq)
    }

    fn input_grad(&self, dxp: ArrayView2<'_, F>, dx: ArrayViewMut2<'_, F>) -> Result<()> {
        crate::views::check_input_grad(self, "NormGru::input_grad", dxp.shape(), dx.shape())?;
        self.proj.input_grad("NormGru::input_grad", dxp, dx)
    }

    fn jvp_state(
        &self,
        step: StepRefs<'_, F>,
        v: ArrayView2<'_, F>,
        out: ArrayViewMut2<'_, F>,
        scratch: &mut [F],
    ) -> Result<()> {
        crate::views::check_step_refs(self, "NormGru::jvp_state", &step, v.nrows())?;
        let op = "NormGru::jvp_state";
        let (b, h, p) = (v.nrows(), self.hidden_dim(), self.proj_dim());
        self.check_views(
            op,
            b,
            &[("tangent", h, v.shape()), ("output", h, out.shape()), ("previous state", h, step.prev.shape())],
        )?;
        check_at_least(op, "cache", self.cache_len(b), step.cache.len())?;
        check_at_least(op, "scratch", self.scratch_len(b), scratch.len())?;
        let kind = self.norm.kind;
        let front = self.proj.front(op, kind, b, step.cache)?;
        let gates = &step.cache[self.proj.front_len(kind, b)..];
        let (dq, u) = scratch.split_at_mut(b * p);
        self.proj.jvp(op, kind, &front, v, dq, u)?;
        let hp = slice(op, step.prev)?;
        let vs = slice(op, v)?;
        let o = slice_mut(op, out)?;
        let one = F::one();
        for row in 0..b {
            let c = &gates[row * 4 * h..(row + 1) * 4 * h];
            let (r, z, n, qn) = (&c[..h], &c[h..2 * h], &c[2 * h..3 * h], &c[3 * h..]);
            let d = &dq[row * p..(row + 1) * p];
            for k in 0..h {
                let i = row * h + k;
                let dr = r[k] * (one - r[k]) * d[k];
                let dz = z[k] * (one - z[k]) * d[h + k];
                let dn = (one - n[k] * n[k]) * (dr * qn[k] + r[k] * d[2 * h + k]);
                o[i] = (hp[i] - n[k]) * dz + (one - z[k]) * dn + z[k] * vs[i];
            }
        }
        Ok(())
    }
}

impl<F: Float> rnnlab_core::Probe<F> for NormGru<F> {
    /// Three units per hidden unit: σ of r, z and tanh of n (from the cache); gate means r, z, n.
    fn saturation(&self, step: StepRefs<'_, F>, eps: f64) -> Result<Option<rnnlab_core::Saturation>> {
        let op = "NormGru::saturation";
        let b = crate::probe::check_probe(self, op, &step, self.cache_len(step.next.nrows()))?;
        let h = self.hidden_dim();
        let fl = self.proj.front_len(self.norm.kind, b);
        let rows = &step.cache[fl..fl + 4 * b * h];
        let mut tally = crate::probe::Tally::new(eps);
        for r in 0..b {
            let c = &rows[r * 4 * h..(r + 1) * 4 * h];
            tally.sigmoid(&c[..2 * h]);
            tally.tanh(&c[2 * h..3 * h]);
        }
        Ok(Some(tally.finish(crate::probe::gate_means(rows, 4 * h, h, &["r", "z", "n"]))))
    }

    /// One state part: the total derivative is the recorded one.
    fn total_state_grad(
        &self,
        _step: StepRefs<'_, F>,
        d_state: ArrayView2<'_, F>,
        mut out: ArrayViewMut2<'_, F>,
    ) -> Result<bool> {
        crate::probe::check_total("NormGru::total_state_grad", d_state.nrows(), self.hidden_dim(), &d_state, &out)?;
        out.assign(&d_state);
        Ok(true)
    }
}
