//! The LSTM with layer normalisation (Ba et al. 2016) or recurrent batch normalisation
//! (Cooijmans et al. 2016) inside the recurrence.

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, s};
use rnnlab_core::{Cell, Error, Float, ParamView, ParamViewMut, Parameterized, Result, Rng, SeqRefs, StepRefs};
use rnnlab_kernels::{sigmoid_inplace, tanh_inplace};
use serde::{Deserialize, Serialize};

use super::config::CellBase;
use super::config::{NormConfig, NormKind, NormPlacement};
use super::proj::{NormProj, plain_params};
use super::unit::{NormUnit, inv_len};
use crate::LstmConfig;
use crate::views::{check_at_least, check_view, slice, slice_mut};

/// Configuration of a [`NormLstm`]: the plain [`LstmConfig`] and the [`NormConfig`].
///
/// # Examples
/// ```
/// use rnnlab_cells::{LstmConfig, NormConfig, NormLstmConfig, NormPlacement};
/// use rnnlab_core::{Cell, Parameterized};
/// // Cooijmans et al.'s BN-LSTM with statistics for 100 steps, γ₀ = 0.1
/// let cfg = NormLstmConfig::new(LstmConfig::new(1, 100), NormConfig::batch(NormPlacement::Full, 100));
/// let cell = cfg.init::<f32>(&mut rnnlab_core::seeded_rng(0))?;
/// assert_eq!(cell.name(), "bn_lstm");
/// assert_eq!(cell.param_names().len(), 4 + 6);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct NormLstmConfig {
    /// Sizes, forget bias and initialisers, as for the plain cell.
    pub base: LstmConfig,
    /// The normalisation.
    pub norm: NormConfig,
}
rnnlab_core::serde_map_only!(NormLstmConfig);

impl NormLstmConfig {
    /// A configuration from its two parts.
    pub fn new(base: LstmConfig, norm: NormConfig) -> Self {
        Self { base, norm }
    }

    /// Draws the weights exactly as `base.init` does (the same draws from `rng`, forget bias
    /// included), then adds the normalisers (γ = `norm.gamma_init`, β = 0, running means 0 and
    /// variances 1).
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Config`] for an invalid [`NormConfig`] (checked before any draw)
    /// or whatever [`LstmConfig::init`] rejects.
    pub fn init<F: Float>(&self, rng: &mut Rng) -> Result<NormLstm<F>> {
        self.norm.validate()?;
        let plain = self.base.init::<F>(rng)?;
        let (w_ih, w_hh, b_ih, b_hh) = plain_params("NormLstmConfig::init", &plain)?;
        NormLstm::from_params(w_ih, w_hh, b_ih, b_hh, &self.norm)
    }
}

/// An LSTM (PyTorch's gate order i, f, g, o) with normalisation inside the recurrence:
///
/// ```text
/// Full:       [ĩ f̃ g̃ õ] = N_h,t(W_hh h_{t−1}) + N_x,t(W_ih x_t) + b_ih + b_hh
/// InputOnly:  [ĩ f̃ g̃ õ] = W_hh h_{t−1} + N_x,t(W_ih x_t) + b_ih + b_hh
/// i = σ(ĩ), f = σ(f̃), g = tanh(g̃), o = σ(õ),   c_t = f ⊙ c_{t−1} + i ⊙ g
/// Full:       h_t = o ⊙ tanh(N_c,t(c_t))
/// InputOnly:  h_t = o ⊙ tanh(c_t)
/// N(v) = γ ⊙ (v − µ)/√(σ² + ε) + β
/// ```
///
/// This is Cooijmans et al.'s BN-LSTM (arXiv:1603.09025, eqs. 6–8) with batch norm, and Ba,
/// Kiros & Hinton's LN-LSTM (arXiv:1607.06450, supplementary) with layer norm. Layer norm
/// normalises the WHOLE 4H-wide pre-activation of each projection (one µ, σ per row over all
/// four gate blocks, as Ba et al. write it), and the H-wide cell state; batch norm normalises
/// each of the 4H (resp. H) features over the batch, with statistics per time step (steps
/// beyond T_max reuse T_max − 1's). The state c_t itself is not normalised: only its path to
/// h_t is. The biases are added after the normalisation (Cooijmans' b, which includes the
/// forget bias of [`LstmConfig`]); β_x and β_h are learnable too (initialised 0; Cooijmans
/// et al. fix them at 0, they are redundant with the biases in exact arithmetic).
///
/// Parameters: the plain [`crate::Lstm`]'s `w_ih` `[4H, I]`, `w_hh` `[4H, H]`, `b_ih`, `b_hh`
/// `[4H]`, then `norm_x.gamma`, `norm_x.beta` `[4H]`, and in Full placement `norm_h.gamma`,
/// `norm_h.beta` `[4H]`, `norm_c.gamma`, `norm_c.beta` `[H]`. Batch norm's running statistics
/// (`[T_max, 4H]`, `[T_max, H]`) are serialised with the cell, not visited as parameters.
/// State parts `["h", "c"]`. `name()`: `"ln_lstm"`, `"bn_lstm"`, with `"_input"` appended
/// for [`NormPlacement::InputOnly`].
///
/// Backward (e = ∂L/∂ŷ): e_c = δh ⊙ o ⊙ (1 − tanh²ĉ); δc = δc_t + γ_c·(∂x̂_c/∂c)ᵀ e_c (Full) or
/// δc_t + e_c; the gate deltas as in [`crate::Lstm`]; ∂L/∂(W_ih x) = (∂x̂_x/∂v)ᵀ(γ_x ⊙ δa),
/// δh_{t−1} = ((∂x̂_h/∂u)ᵀ(γ_h ⊙ δa))·W_hh. In training-mode batch norm the transposed
/// Jacobians sum over the batch, so the state Jacobian couples batch rows; the JVP and VJP
/// are exact for the whole batch.
///
/// # Examples
/// ```
/// use ndarray::Array3;
/// use rnnlab_cells::{LstmConfig, NormConfig, NormLstmConfig, NormPlacement, Recurrent};
/// let cfg = NormLstmConfig::new(LstmConfig::new(2, 4), NormConfig::layer(NormPlacement::Full));
/// let mut net = Recurrent::new(vec![cfg.init::<f64>(&mut rnnlab_core::seeded_rng(0))?])?;
/// let out = net.forward(Array3::ones((3, 1, 2)).view(), None)?; // batch of 1 is fine for LN
/// assert_eq!(out.outputs.shape(), &[3, 1, 4]);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "F: Float")]
pub struct NormLstm<F: Float> {
    norm: NormConfig,
    training: bool,
    proj: NormProj<F>,
    norm_c: Option<NormUnit<F>>,
}

const STATE: &[&str] = &["h", "c"];

impl<F: Float> NormLstm<F> {
    /// A cell from given weights (PyTorch's layout), `w_ih` `[4H, I]`, `w_hh` `[4H, H]`,
    /// `b_ih`, `b_hh` `[4H]`, with fresh normalisers from `norm`; in training mode.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Shape`] if the shapes do not fit together,
    /// [`rnnlab_core::Error::Config`] for a zero size or an invalid `norm`.
    ///
    /// # Examples
    /// ```
    /// use ndarray::{Array1, Array2};
    /// use rnnlab_cells::{NormConfig, NormLstm, NormPlacement};
    /// let norm = NormConfig::layer(NormPlacement::Full);
    /// let ok = NormLstm::<f64>::from_params(Array2::zeros((8, 3)), Array2::zeros((8, 2)), Array1::zeros(8), Array1::zeros(8), &norm);
    /// assert!(ok.is_ok());
    /// let bad = NormLstm::<f64>::from_params(Array2::zeros((8, 3)), Array2::zeros((8, 3)), Array1::zeros(8), Array1::zeros(8), &norm);
    /// assert!(bad.is_err());
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn from_params(
        w_ih: Array2<F>,
        w_hh: Array2<F>,
        b_ih: Array1<F>,
        b_hh: Array1<F>,
        norm: &NormConfig,
    ) -> Result<Self> {
        let proj = NormProj::new("NormLstm::from_params", norm, 4, (w_ih, w_hh, b_ih, b_hh))?;
        let h = proj.hidden_dim();
        let norm_c = (norm.placement == NormPlacement::Full).then(|| NormUnit::new(norm, h));
        Ok(Self { norm: norm.clone(), training: true, proj, norm_c })
    }

    /// The normalisation settings.
    pub fn norm_config(&self) -> &NormConfig {
        &self.norm
    }

    /// Whether batch norm uses batch statistics (and updates the running ones).
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The running means of `"norm_x"`, `"norm_h"` (`[T_max, 4H]`) or `"norm_c"`
    /// (`[T_max, H]`); `[0, ·]` for layer norm; `None` for another name or a normaliser this
    /// placement does not have.
    pub fn running_mean(&self, unit: &str) -> Option<ArrayView2<'_, F>> {
        self.running(unit).map(|(m, _)| m)
    }

    /// The running variances, as [`NormLstm::running_mean`].
    pub fn running_var(&self, unit: &str) -> Option<ArrayView2<'_, F>> {
        self.running(unit).map(|(_, v)| v)
    }

    fn running(&self, unit: &str) -> Option<(ArrayView2<'_, F>, ArrayView2<'_, F>)> {
        match unit {
            "norm_c" => self.norm_c.as_ref().map(|u| (u.running_mean(), u.running_var())),
            _ => self.proj.running(unit),
        }
    }

    fn check(&self, op: &str) -> Result<()> {
        self.proj.check(op, &self.norm, 4)?;
        match (self.norm.placement, &self.norm_c) {
            (NormPlacement::Full, Some(u)) => u.check(op, &self.norm, self.hidden_dim()),
            (NormPlacement::InputOnly, None) => Ok(()),
            _ => Err(Error::config(op, "the cell-state normaliser does not match the placement")),
        }
    }

    fn check_views(&self, op: &str, b: usize, shapes: &[(&str, usize, &[usize])]) -> Result<()> {
        self.check(op)?;
        for (what, cols, shape) in shapes {
            check_view(op, what, b, *cols, shape)?;
        }
        Ok(())
    }

    /// Offsets in a step's cache: gates, tanh(ĉ), x̂_c, s_c.
    fn cache_offsets(&self, b: usize) -> (usize, usize, usize, usize) {
        let (p, h) = (self.proj_dim(), self.hidden_dim());
        let gates = self.proj.front_len(self.norm.kind, b);
        let tc = gates + b * p;
        let xh_c = tc + b * h;
        (gates, tc, xh_c, xh_c + b * h)
    }
}

impl<F: Float> Parameterized<F> for NormLstm<F> {
    fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        self.proj.visit(v);
        if let Some(u) = &self.norm_c {
            u.visit("norm_c", v);
        }
    }

    fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        self.proj.visit_mut(v);
        if let Some(u) = &mut self.norm_c {
            u.visit_mut("norm_c", v);
        }
    }
}

impl<F: Float> Cell<F> for NormLstm<F> {
    fn probe(&self) -> Option<&dyn rnnlab_core::Probe<F>> {
        Some(self)
    }

    fn name(&self) -> &'static str {
        self.norm.cell_name(CellBase::Lstm)
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
        // [e_x | e_h | δu] of the projections, then e_c = ∂L/∂N_c(c_t) (Full)
        self.proj.rec_len() + if self.norm_c.is_some() { self.hidden_dim() } else { 0 }
    }

    fn cache_len(&self, batch: usize) -> usize {
        // front, activated gates [B, 4H], tanh(ĉ) [B, H], then (Full) x̂_c [B, H] and s_c
        let (_, _, xh_c, s_c) = self.cache_offsets(batch);
        match self.norm_c {
            Some(_) => s_c + inv_len(self.norm.kind, batch, self.hidden_dim()),
            None => xh_c,
        }
    }

    fn scratch_len(&self, batch: usize) -> usize {
        let (p, h) = (self.proj_dim(), self.hidden_dim());
        2 * batch * p + 2 * batch * h + 2 * p
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn project_input(&mut self, x: ArrayView2<'_, F>, out: ArrayViewMut2<'_, F>) -> Result<()> {
        crate::views::check_project(self, "NormLstm::project_input", x.shape(), out.shape())?;
        self.proj.project_input("NormLstm::project_input", x, out)
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
        let op = "NormLstm::step";
        let (b, h, p) = (xp.nrows(), self.hidden_dim(), self.proj_dim());
        self.check_views(
            op,
            b,
            &[("projection", p, xp.shape()), ("state", 2 * h, prev.shape()), ("next state", 2 * h, next.shape())],
        )?;
        check_at_least(op, "cache", self.cache_len(b), cache.len())?;
        check_at_least(op, "scratch", self.scratch_len(b), scratch.len())?;
        let kind = self.norm.kind;
        let batch_stats = self.training && kind == NormKind::Batch;
        let (_, tc_at, xh_c_at, s_c_at) = self.cache_offsets(b);
        let front_len = self.proj.front_len(kind, b);
        let xps = slice(op, xp.view())?;
        let prevs = slice(op, prev)?;
        let nx = slice_mut(op, next)?;
        let (q, rest) = scratch.split_at_mut(b * p);
        let (u, rest) = rest.split_at_mut(b * p);
        let (cbuf, rest) = rest.split_at_mut(b * h);
        let (yc, stats) = rest.split_at_mut(b * h);
        let (front, rest) = cache.split_at_mut(front_len);
        let (gates, rest) = rest.split_at_mut(tc_at - front_len);
        let (tc, cnorm) = rest.split_at_mut(xh_c_at - tc_at);
        self.proj.forward(op, &self.norm, batch_stats, t, xps, prev.slice(s![.., ..h]), gates, q, front, u, stats)?;
        let (bi, bh) = self.proj.biases(op)?;
        for r in 0..b {
            let g = &mut gates[r * p..(r + 1) * p];
            let qr = &q[r * p..(r + 1) * p];
            for k in 0..p {
                g[k] += qr[k] + bi[k] + bh[k];
            }
            sigmoid_inplace(&mut g[..2 * h]);
            tanh_inplace(&mut g[2 * h..3 * h]);
            sigmoid_inplace(&mut g[3 * h..]);
            let c_prev = &prevs[r * 2 * h + h..(r + 1) * 2 * h];
            let c_next = &mut nx[r * 2 * h + h..(r + 1) * 2 * h];
            let cb = &mut cbuf[r * h..(r + 1) * h];
            for k in 0..h {
                let c = g[h + k] * c_prev[k] + g[k] * g[2 * h + k];
                c_next[k] = c;
                cb[k] = c;
            }
        }
        match &mut self.norm_c {
            Some(nc) => {
                let (xh_c, s_c) = cnorm.split_at_mut(s_c_at - xh_c_at);
                let il = inv_len(kind, b, h);
                nc.forward(&self.norm, batch_stats, t, cbuf, yc, xh_c, &mut s_c[..il], stats)?;
                tc.copy_from_slice(yc);
            }
            None => tc.copy_from_slice(cbuf),
        }
        tanh_inplace(tc);
        for r in 0..b {
            for k in 0..h {
                nx[r * 2 * h + k] = gates[r * p + 3 * h + k] * tc[r * h + k];
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
        crate::views::check_step_refs(self, "NormLstm::step_backward", &step, dnext.nrows())?;
        let op = "NormLstm::step_backward";
        let (b, h, p) = (dnext.nrows(), self.hidden_dim(), self.proj_dim());
        self.check_views(
            op,
            b,
            &[
                ("state gradient", 2 * h, dnext.shape()),
                ("previous-state gradient", 2 * h, dprev.shape()),
                ("projection gradient", p, dxp.shape()),
                ("drec", self.rec_grad_dim(), drec.shape()),
                ("previous state", 2 * h, step.prev.shape()),
            ],
        )?;
        check_at_least(op, "cache", self.cache_len(b), step.cache.len())?;
        check_at_least(op, "scratch", self.scratch_len(b), scratch.len())?;
        let kind = self.norm.kind;
        let front = self.proj.front(op, kind, b, step.cache)?;
        let (g_at, tc_at, xh_c_at, s_c_at) = self.cache_offsets(b);
        let gates = &step.cache[g_at..tc_at];
        let tc = &step.cache[tc_at..xh_c_at];
        let (e, rest) = scratch.split_at_mut(b * p);
        let (du, rest) = rest.split_at_mut(b * p);
        let (e_c, rest) = rest.split_at_mut(b * h);
        let dc = &mut rest[..b * h];
        let dn = slice(op, dnext)?;
        let prevs = slice(op, step.prev)?;
        let one = F::one();
        for r in 0..b {
            for k in 0..h {
                let (o, t) = (gates[r * p + 3 * h + k], tc[r * h + k]);
                e_c[r * h + k] = dn[r * 2 * h + k] * o * (one - t * t);
            }
        }
        match &self.norm_c {
            Some(nc) => {
                let xh_c = &step.cache[xh_c_at..s_c_at];
                let s_c = &step.cache[s_c_at..s_c_at + inv_len(kind, b, h)];
                nc.backward(kind, front.batch_stats, e_c, xh_c, s_c, dc, false)?;
            }
            None => dc.copy_from_slice(e_c),
        }
        {
            let dp = slice_mut(op, dprev.view_mut())?;
            for r in 0..b {
                let g = &gates[r * p..(r + 1) * p];
                let er = &mut e[r * p..(r + 1) * p];
                for k in 0..h {
                    let (i, f, gg, o) = (g[k], g[h + k], g[2 * h + k], g[3 * h + k]);
                    let t = tc[r * h + k];
                    let dct = dc[r * h + k] + dn[r * 2 * h + h + k];
                    er[k] = dct * gg * i * (one - i);
                    er[h + k] = dct * prevs[r * 2 * h + h + k] * f * (one - f);
                    er[2 * h + k] = dct * i * (one - gg * gg);
                    er[3 * h + k] = dn[r * 2 * h + k] * t * o * (one - o);
                    dp[r * 2 * h + h + k] = dct * f;
                }
            }
        }
        self.proj.backward(
            op,
            kind,
            &front,
            e,
            e,
            slice_mut(op, dxp)?,
            du,
            &mut dprev.slice_mut(s![.., ..h]),
            false,
        )?;
        let dr = slice_mut(op, drec)?;
        self.proj.store_rec(op, dr, b, e, e, du)?;
        if self.norm_c.is_some() {
            let (w, at) = (self.rec_grad_dim(), self.proj.rec_len());
            for r in 0..b {
                dr[r * w + at..r * w + at + h].copy_from_slice(&e_c[r * h..(r + 1) * h]);
            }
        }
        Ok(())
    }

    fn accumulate_grads(&mut self, seq: SeqRefs<'_, F>) -> Result<()> {
        crate::views::check_seq(self, "NormLstm::accumulate_grads", &seq)?;
        let op = "NormLstm::accumulate_grads";
        self.check(op)?;
        let kind = self.norm.kind;
        self.proj.accumulate(op, kind, &seq)?;
        let (b, h, at) = (seq.batch, self.hidden_dim(), self.proj.rec_len());
        let (_, _, xh_c_at, s_c_at) = self.cache_offsets(b);
        check_at_least(op, "cache width", self.cache_len(b), seq.cache.ncols())?;
        check_at_least(op, "drec width", self.rec_grad_dim(), seq.drec.ncols())?;
        if let Some(nc) = &mut self.norm_c {
            for t in 0..seq.cache.nrows() {
                let row = seq.cache.row(t);
                let cache = row.to_slice().ok_or_else(|| Error::shape(op, "contiguous cache", "strided"))?;
                let e_c = seq.drec.slice(s![t * b..(t + 1) * b, at..at + h]);
                nc.add_param_grads(kind, e_c, &cache[xh_c_at..s_c_at])?;
            }
        }
        Ok(())
    }

    fn input_grad(&self, dxp: ArrayView2<'_, F>, dx: ArrayViewMut2<'_, F>) -> Result<()> {
        crate::views::check_input_grad(self, "NormLstm::input_grad", dxp.shape(), dx.shape())?;
        self.proj.input_grad("NormLstm::input_grad", dxp, dx)
    }

    fn jvp_state(
        &self,
        step: StepRefs<'_, F>,
        v: ArrayView2<'_, F>,
        out: ArrayViewMut2<'_, F>,
        scratch: &mut [F],
    ) -> Result<()> {
        crate::views::check_step_refs(self, "NormLstm::jvp_state", &step, v.nrows())?;
        let op = "NormLstm::jvp_state";
        let (b, h, p) = (v.nrows(), self.hidden_dim(), self.proj_dim());
        self.check_views(
            op,
            b,
            &[
                ("tangent", 2 * h, v.shape()),
                ("output", 2 * h, out.shape()),
                ("previous state", 2 * h, step.prev.shape()),
            ],
        )?;
        check_at_least(op, "cache", self.cache_len(b), step.cache.len())?;
        check_at_least(op, "scratch", self.scratch_len(b), scratch.len())?;
        let kind = self.norm.kind;
        let front = self.proj.front(op, kind, b, step.cache)?;
        let (g_at, tc_at, xh_c_at, s_c_at) = self.cache_offsets(b);
        let gates = &step.cache[g_at..tc_at];
        let tc = &step.cache[tc_at..xh_c_at];
        let (dq, rest) = scratch.split_at_mut(b * p);
        let (u, rest) = rest.split_at_mut(b * p);
        let (dc, rest) = rest.split_at_mut(b * h);
        let dyc = &mut rest[..b * h];
        self.proj.jvp(op, kind, &front, v.slice(s![.., ..h]), dq, u)?;
        let vs = slice(op, v)?;
        let prevs = slice(op, step.prev)?;
        let o = slice_mut(op, out)?;
        let one = F::one();
        for r in 0..b {
            let g = &gates[r * p..(r + 1) * p];
            let d = &dq[r * p..(r + 1) * p];
            for k in 0..h {
                let (i, f, gg) = (g[k], g[h + k], g[2 * h + k]);
                let di = i * (one - i) * d[k];
                let df = f * (one - f) * d[h + k];
                let dg = (one - gg * gg) * d[2 * h + k];
                let c = r * 2 * h + h + k;
                let dct = df * prevs[c] + f * vs[c] + di * gg + i * dg;
                dc[r * h + k] = dct;
                o[c] = dct;
            }
        }
        match &self.norm_c {
            Some(nc) => {
                let xh_c = &step.cache[xh_c_at..s_c_at];
                let s_c = &step.cache[s_c_at..s_c_at + inv_len(kind, b, h)];
                nc.jvp(kind, front.batch_stats, dc, xh_c, s_c, dyc)?;
            }
            None => dyc.copy_from_slice(dc),
        }
        for r in 0..b {
            for k in 0..h {
                let og = gates[r * p + 3 * h + k];
                let d_o = og * (one - og) * dq[r * p + 3 * h + k];
                let t = tc[r * h + k];
                o[r * 2 * h + k] = d_o * t + og * (one - t * t) * dyc[r * h + k];
            }
        }
        Ok(())
    }
}

impl<F: Float> rnnlab_core::Probe<F> for NormLstm<F> {
    /// Five units per hidden unit: σ of i, f, o, tanh of g and of N_c(c_t) (all from the
    /// cache); gate means i, f, g, o.
    fn saturation(&self, step: StepRefs<'_, F>, eps: f64) -> Result<Option<rnnlab_core::Saturation>> {
        let op = "NormLstm::saturation";
        let b = crate::probe::check_probe(self, op, &step, self.cache_len(step.next.nrows()))?;
        let (h, p) = (self.hidden_dim(), self.proj_dim());
        let (g_at, tc_at, xh_c_at, _) = self.cache_offsets(b);
        let gates = &step.cache[g_at..tc_at];
        let mut tally = crate::probe::Tally::new(eps);
        for r in 0..b {
            let g = &gates[r * p..(r + 1) * p];
            tally.sigmoid(&g[..2 * h]);
            tally.tanh(&g[2 * h..3 * h]);
            tally.sigmoid(&g[3 * h..]);
        }
        tally.tanh(&step.cache[tc_at..xh_c_at]);
        Ok(Some(tally.finish(crate::probe::gate_means(gates, p, h, &["i", "f", "g", "o"]))))
    }

    /// c_t's total derivative: ∂L/∂c_t + (∂N_c(c_t)/∂c_t)ᵀ(o_t ⊙ (1 − tanh²N_c(c_t)) ⊙ ∂L/∂h_t)
    /// (Full placement; without N_c the plain LSTM's). Allocates two `[batch, H]` buffers.
    fn total_state_grad(
        &self,
        step: StepRefs<'_, F>,
        d_state: ArrayView2<'_, F>,
        mut out: ArrayViewMut2<'_, F>,
    ) -> Result<bool> {
        let op = "NormLstm::total_state_grad";
        let b = crate::probe::check_probe(self, op, &step, self.cache_len(step.next.nrows()))?;
        let (h, p) = (self.hidden_dim(), self.proj_dim());
        crate::probe::check_total(op, b, 2 * h, &d_state, &out)?;
        let kind = self.norm.kind;
        let front = self.proj.front(op, kind, b, step.cache)?;
        let (g_at, tc_at, xh_c_at, s_c_at) = self.cache_offsets(b);
        let gates = &step.cache[g_at..tc_at];
        let tc = &step.cache[tc_at..xh_c_at];
        let d = slice(op, d_state)?;
        let one = F::one();
        let mut e_c = vec![F::zero(); b * h];
        for r in 0..b {
            for k in 0..h {
                let (o, t) = (gates[r * p + 3 * h + k], tc[r * h + k]);
                e_c[r * h + k] = d[r * 2 * h + k] * o * (one - t * t);
            }
        }
        let dc = match &self.norm_c {
            Some(nc) => {
                let xh_c = &step.cache[xh_c_at..s_c_at];
                let s_c = &step.cache[s_c_at..s_c_at + inv_len(kind, b, h)];
                let mut dc = vec![F::zero(); b * h];
                nc.backward(kind, front.batch_stats, &e_c, xh_c, s_c, &mut dc, false)?;
                dc
            }
            None => e_c,
        };
        let o = out.as_slice_mut().ok_or_else(|| Error::shape(op, "contiguous output", "strided"))?;
        for r in 0..b {
            for k in 0..h {
                let (ih, ic) = (r * 2 * h + k, r * 2 * h + h + k);
                o[ih] = d[ih];
                o[ic] = d[ic] + dc[r * h + k];
            }
        }
        Ok(true)
    }
}
