//! The GRU cell (Cho et al. 2014; Chung et al. 2014) in both published variants.

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, s};
use rnnlab_core::{Cell, Float, ParamView, ParamViewMut, Parameterized, Result, Rng, SeqRefs, StepRefs};
use rnnlab_init::Init;
use rnnlab_kernels::{PackedWeight, sigmoid_inplace, tanh_inplace};
use serde::{Deserialize, Serialize};

use super::params::{BiasGrads, GateParams, shape_err};
use crate::views::{check_step, gemm, slice, slice_mut};

/// Where the reset gate acts in the candidate state n.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GruVariant {
    /// PyTorch / cuDNN: n = tanh(W_in x + b_in + r ⊙ (W_hn h_{t−1} + b_hn)).
    #[default]
    ResetAfter,
    /// Cho et al. 2014: n = tanh(W_in x + b_in + W_hn (r ⊙ h_{t−1}) + b_hn).
    ResetBefore,
}

/// Configuration of a [`Gru`] cell. Defaults as [`crate::LstmConfig`]'s, without a forget bias:
/// `w_ih` Xavier-uniform and `w_hh` orthogonal per gate block, zero biases, reset-after.
///
/// # Examples
/// The reset-before GRU of Cho et al. (2014), its backward pass checked against central
/// differences:
/// ```
/// use rnnlab_cells::{GruConfig, GruVariant, Recurrent, check_recurrent};
/// let config = GruConfig::new(3, 5).with_variant(GruVariant::ResetBefore);
/// let mut gru = Recurrent::new(vec![config.init::<f64>(&mut rnnlab_core::seeded_rng(0))?])?;
/// let report = check_recurrent(&mut gru, 6, 2, 1)?;
/// assert!(report.max_rel_error() < 1e-6, "{report}");
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct GruConfig {
    /// Input width I.
    pub input_dim: usize,
    /// Hidden width H.
    pub hidden_dim: usize,
    /// The variant (default [`GruVariant::ResetAfter`], PyTorch's).
    pub variant: GruVariant,
    /// Initialiser of `w_ih`, applied per gate block.
    pub w_ih_init: Init,
    /// Initialiser of `w_hh`, applied per gate block.
    pub w_hh_init: Init,
    /// Initialiser of both biases.
    pub bias_init: Init,
}
rnnlab_core::serde_map_only!(GruConfig);

impl GruConfig {
    /// The default configuration for the given sizes.
    pub fn new(input_dim: usize, hidden_dim: usize) -> Self {
        Self {
            input_dim,
            hidden_dim,
            variant: GruVariant::ResetAfter,
            w_ih_init: Init::XavierUniform { gain: 1.0 },
            w_hh_init: Init::Orthogonal { gain: 1.0 },
            bias_init: Init::Zeros,
        }
    }

    /// Sets the variant.
    pub fn with_variant(mut self, variant: GruVariant) -> Self {
        self.variant = variant;
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
    /// [`rnnlab_core::Error::Config`] for a zero size or an invalid initialiser.
    pub fn init<F: Float>(&self, rng: &mut Rng) -> Result<Gru<F>> {
        let op = "GruConfig::init";
        super::check_dims(op, 3, self.input_dim, self.hidden_dim)?;
        let (i, h) = (self.input_dim, self.hidden_dim);
        let w_ih = self.w_ih_init.packed::<F>(3, h, i, rng).map_err(|e| e.within(op, "w_ih_init"))?;
        let w_hh = self.w_hh_init.packed::<F>(3, h, h, rng).map_err(|e| e.within(op, "w_hh_init"))?;
        let b_ih = self.bias_init.array1::<F>(3 * h, rng).map_err(|e| e.within(op, "bias_init"))?;
        let b_hh = self.bias_init.array1::<F>(3 * h, rng).map_err(|e| e.within(op, "bias_init"))?;
        Gru::from_params(self.variant, w_ih, w_hh, b_ih, b_hh)
    }
}

/// A GRU cell with PyTorch's gate order r, z, n and update convention:
///
/// ```text
/// r = σ(W_ir x + b_ir + W_hr h_{t−1} + b_hr)
/// z = σ(W_iz x + b_iz + W_hz h_{t−1} + b_hz)
/// n = tanh(W_in x + b_in + r ⊙ (W_hn h_{t−1} + b_hn))      (reset-after, PyTorch/cuDNN)
/// n = tanh(W_in x + b_in + W_hn (r ⊙ h_{t−1}) + b_hn)      (reset-before, Cho et al. 2014)
/// h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}
/// ```
///
/// z multiplies the *old* state, as in PyTorch, Keras and cuDNN; Cho et al. and Chung et al.
/// print the same equation with z and 1 − z swapped, which only relabels the gate.
///
/// Parameters as `torch.nn.GRU` layer 0: `w_ih` `[3H, I]`, `w_hh` `[3H, H]`, `b_ih`, `b_hh`
/// `[3H]`, blocks of H in the order r, z, n. State parts `["h"]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "F: Float")]
pub struct Gru<F: Float> {
    variant: GruVariant,
    #[serde(flatten)]
    p: GateParams<F>,
    /// Reset-after: all of `w_hh`; reset-before: its r,z rows. Refreshed at step 0.
    #[serde(skip)]
    packed: PackedWeight<F>,
    /// Reset-before only: `w_hh`'s n rows (`W_hn`, applied to r ⊙ h).
    #[serde(skip)]
    packed_n: PackedWeight<F>,
}

const STATE: &[&str] = &["h"];

impl<F: Float> Gru<F> {
    /// A cell from given parameters, `w_ih` `[3H, I]`, `w_hh` `[3H, H]`, `b_ih` and `b_hh` `[3H]`.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Shape`] if the shapes do not fit together,
    /// [`rnnlab_core::Error::Config`] for a zero size.
    pub fn from_params(
        variant: GruVariant,
        w_ih: Array2<F>,
        w_hh: Array2<F>,
        b_ih: Array1<F>,
        b_hh: Array1<F>,
    ) -> Result<Self> {
        Ok(Self {
            variant,
            p: GateParams::new("Gru::from_params", 3, w_ih, w_hh, b_ih, b_hh)?,
            packed: PackedWeight::default(),
            packed_n: PackedWeight::default(),
        })
    }

    /// The variant.
    pub fn variant(&self) -> GruVariant {
        self.variant
    }
}

impl<F: Float> Parameterized<F> for Gru<F> {
    fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        self.p.visit(v);
    }

    fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        self.p.visit_mut(v);
    }
}

impl<F: Float> Cell<F> for Gru<F> {
    fn probe(&self) -> Option<&dyn rnnlab_core::Probe<F>> {
        Some(self)
    }

    fn name(&self) -> &'static str {
        match self.variant {
            GruVariant::ResetAfter => "gru",
            GruVariant::ResetBefore => "gru_reset_before",
        }
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
        3 * self.hidden_dim()
    }

    fn rec_grad_dim(&self) -> usize {
        // Reset-after: ∂L/∂(W_hh h + b_hh), whose n block (r ⊙ δn) differs from the input path's.
        match self.variant {
            GruVariant::ResetAfter => 3 * self.hidden_dim(),
            GruVariant::ResetBefore => 0,
        }
    }

    fn cache_len(&self, batch: usize) -> usize {
        // Per row: reset-after hn = W_hn h + b_hn (its r, z, n replace the step's row of the
        // input projection); reset-before r, z, n (the weight gradients rebuild r ⊙ h from r,
        // and they see the cache, not the projection).
        match self.variant {
            GruVariant::ResetAfter => batch * self.hidden_dim(),
            GruVariant::ResetBefore => 3 * batch * self.hidden_dim(),
        }
    }

    fn scratch_len(&self, batch: usize) -> usize {
        4 * batch * self.hidden_dim()
    }

    fn project_input(&mut self, x: ArrayView2<'_, F>, mut out: ArrayViewMut2<'_, F>) -> Result<()> {
        crate::views::check_project(self, "Gru::project_input", x.shape(), out.shape())?;
        let h = self.hidden_dim();
        let mut bias = &self.p.b_ih.value + &self.p.b_hh.value;
        if self.variant == GruVariant::ResetAfter {
            // b_hn sits inside r ⊙ (·): the step adds it to the recurrent projection instead.
            bias.slice_mut(s![2 * h..]).assign(&self.p.b_ih.value.slice(s![2 * h..]));
        }
        self.p.project(x, bias.view(), &mut out)?;
        Ok(())
    }

    fn step(
        &mut self,
        t: usize,
        mut xp: ArrayViewMut2<'_, F>,
        prev: ArrayView2<'_, F>,
        next: ArrayViewMut2<'_, F>,
        cache: &mut [F],
        scratch: &mut [F],
    ) -> Result<()> {
        let op = "Gru::step";
        let sw = self.state_width();
        check_step(
            self,
            op,
            &[("xp", xp.shape(), self.proj_dim()), ("prev", prev.shape(), sw), ("next", next.shape(), sw)],
            cache.len(),
            scratch.len(),
        )?;
        let (b, h) = (xp.nrows(), self.hidden_dim());
        // Layouts checked before anything is written (a refused step changes nothing).
        let xps = slice_mut(op, xp.view_mut())?;
        let hp = slice(op, prev)?;
        let hn_out = slice_mut(op, next)?;
        if t == 0 {
            match self.variant {
                GruVariant::ResetAfter => self.packed.pack_per_step(self.p.w_hh.value.view()),
                GruVariant::ResetBefore => {
                    self.packed.pack_per_step(self.p.w_hh.value.slice(s![..2 * h, ..]));
                    self.packed_n.pack_per_step(self.p.w_hh.value.slice(s![2 * h.., ..]));
                }
            }
        }
        let w = self.p.w_hh.value.view();
        let (w_rz, w_n) = (w.slice(s![..2 * h, ..]), w.slice(s![2 * h.., ..]));
        match self.variant {
            GruVariant::ResetAfter => {
                let mut u =
                    ArrayViewMut2::from_shape((b, 3 * h), &mut scratch[..3 * b * h]).map_err(|e| shape_err(op, e))?;
                self.packed.mul_t(w, prev, false, &mut u)?;
                let u = &scratch[..3 * b * h];
                let b_hn = self.p.b_hh.value.slice(s![2 * h..]);
                let b_hn = b_hn.as_slice().ok_or_else(|| {
                    shape_err(op, ndarray::ShapeError::from_kind(ndarray::ErrorKind::IncompatibleLayout))
                })?;
                for r in 0..b {
                    // r, z, n replace the row's projection; hn goes to the cache.
                    let (x, u) = (&mut xps[r * 3 * h..(r + 1) * 3 * h], &u[r * 3 * h..(r + 1) * 3 * h]);
                    let (x_r, x_zn) = x.split_at_mut(h);
                    let (x_z, x_n) = x_zn.split_at_mut(h);
                    let (u_r, u_zn) = u.split_at(h);
                    let (u_z, u_n) = u_zn.split_at(h);
                    forward_units_after(
                        (x_r, x_z, x_n),
                        (u_r, u_z, u_n),
                        b_hn,
                        &hp[r * h..(r + 1) * h],
                        &mut cache[r * h..(r + 1) * h],
                        &mut hn_out[r * h..(r + 1) * h],
                    );
                }
            }
            GruVariant::ResetBefore => {
                let (u_rz, rest) = scratch.split_at_mut(2 * b * h);
                let (rh, u_n) = rest.split_at_mut(b * h);
                let mut urz = ArrayViewMut2::from_shape((b, 2 * h), &mut *u_rz).map_err(|e| shape_err(op, e))?;
                self.packed.mul_t(w_rz, prev, false, &mut urz)?;
                for r in 0..b {
                    let c = &mut cache[r * 3 * h..(r + 1) * 3 * h];
                    let (x, u) = (&xps[r * 3 * h..(r + 1) * 3 * h], &u_rz[r * 2 * h..(r + 1) * 2 * h]);
                    for k in 0..2 * h {
                        c[k] = x[k] + u[k];
                    }
                    sigmoid_inplace(&mut c[..2 * h]);
                    let hprev = &hp[r * h..(r + 1) * h];
                    for k in 0..h {
                        rh[r * h + k] = c[k] * hprev[k];
                    }
                }
                let rhv = ArrayView2::from_shape((b, h), &*rh).map_err(|e| shape_err(op, e))?;
                let mut unv = ArrayViewMut2::from_shape((b, h), &mut *u_n).map_err(|e| shape_err(op, e))?;
                self.packed_n.mul_t(w_n, rhv, false, &mut unv)?;
                for r in 0..b {
                    let c = &mut cache[r * 3 * h..(r + 1) * 3 * h];
                    let x = &xps[r * 3 * h + 2 * h..(r + 1) * 3 * h];
                    let (rz, n) = c.split_at_mut(2 * h);
                    for k in 0..h {
                        n[k] = x[k] + u_n[r * h + k];
                    }
                    tanh_inplace(n);
                    blend_row(&rz[h..], n, &hp[r * h..(r + 1) * h], &mut hn_out[r * h..(r + 1) * h]);
                }
            }
        }
        Ok(())
    }

    fn step_backward(
        &self,
        step: StepRefs<'_, F>,
        dnext: ArrayView2<'_, F>,
        mut dprev: ArrayViewMut2<'_, F>,
        mut dxp: ArrayViewMut2<'_, F>,
        mut drec: ArrayViewMut2<'_, F>,
        scratch: &mut [F],
    ) -> Result<()> {
        crate::views::check_step_refs(self, "Gru::step_backward", &step, dnext.nrows())?;
        let op = "Gru::step_backward";
        let sw = self.state_width();
        check_step(
            self,
            op,
            &[
                ("dnext", dnext.shape(), sw),
                ("xp", step.xp.shape(), self.proj_dim()),
                ("prev", step.prev.shape(), sw),
                ("next", step.next.shape(), sw),
                ("dprev", dprev.shape(), sw),
                ("dxp", dxp.shape(), self.proj_dim()),
                ("drec", drec.shape(), self.rec_grad_dim()),
            ],
            step.cache.len(),
            scratch.len(),
        )?;
        let (b, h) = (dnext.nrows(), self.hidden_dim());
        let hp = slice(op, step.prev)?;
        let dh = slice(op, dnext)?;
        let one = F::one();
        match self.variant {
            GruVariant::ResetAfter => {
                {
                    let dx = slice_mut(op, dxp.view_mut())?;
                    let dr = slice_mut(op, drec.view_mut())?;
                    let dp = slice_mut(op, dprev.view_mut())?;
                    let gates = slice(op, step.xp)?;
                    for row in 0..b {
                        let g = &gates[row * 3 * h..(row + 1) * 3 * h];
                        let (r, z, n) = (&g[..h], &g[h..2 * h], &g[2 * h..]);
                        let hn = &step.cache[row * h..(row + 1) * h];
                        let hprev = &hp[row * h..(row + 1) * h];
                        let dhr = &dh[row * h..(row + 1) * h];
                        let (dx_r, dx_zn) = dx[row * 3 * h..(row + 1) * 3 * h].split_at_mut(h);
                        let (dx_z, dx_n) = dx_zn.split_at_mut(h);
                        let (dr_r, dr_zn) = dr[row * 3 * h..(row + 1) * 3 * h].split_at_mut(h);
                        let (dr_z, dr_n) = dr_zn.split_at_mut(h);
                        backward_units_after(
                            (r, z, n, hn),
                            hprev,
                            dhr,
                            dx_r,
                            dx_z,
                            dx_n,
                            dr_r,
                            dr_z,
                            dr_n,
                            &mut dp[row * h..(row + 1) * h],
                        );
                    }
                }
                self.packed.mul(self.p.w_hh.value.view(), drec.view(), true, &mut dprev)?;
            }
            GruVariant::ResetBefore => {
                {
                    let dx = slice_mut(op, dxp.view_mut())?;
                    for row in 0..b {
                        let c = &step.cache[row * 3 * h..(row + 1) * 3 * h];
                        let (z, n) = (&c[h..2 * h], &c[2 * h..]);
                        let hprev = &hp[row * h..(row + 1) * h];
                        let dhr = &dh[row * h..(row + 1) * h];
                        let dxr = &mut dx[row * 3 * h..(row + 1) * 3 * h];
                        for k in 0..h {
                            dxr[2 * h + k] = dhr[k] * (one - z[k]) * (one - n[k] * n[k]);
                            dxr[h + k] = dhr[k] * (hprev[k] - n[k]) * z[k] * (one - z[k]);
                        }
                    }
                }
                // δ(r ⊙ h_{t−1}) = δa_n · W_hn
                let drh_buf = &mut scratch[..b * h];
                let mut drh = ArrayViewMut2::from_shape((b, h), &mut *drh_buf).map_err(|e| shape_err(op, e))?;
                self.packed_n.mul(
                    self.p.w_hh.value.slice(s![2 * h.., ..]),
                    dxp.slice(s![.., 2 * h..]),
                    false,
                    &mut drh,
                )?;
                {
                    let dx = slice_mut(op, dxp.view_mut())?;
                    let dp = slice_mut(op, dprev.view_mut())?;
                    for row in 0..b {
                        let c = &step.cache[row * 3 * h..(row + 1) * 3 * h];
                        let (r, z) = (&c[..h], &c[h..2 * h]);
                        let hprev = &hp[row * h..(row + 1) * h];
                        let dhr = &dh[row * h..(row + 1) * h];
                        let drhr = &drh_buf[row * h..(row + 1) * h];
                        let dxr = &mut dx[row * 3 * h..(row + 1) * 3 * h];
                        let dpr = &mut dp[row * h..(row + 1) * h];
                        for k in 0..h {
                            dxr[k] = drhr[k] * hprev[k] * r[k] * (one - r[k]);
                            dpr[k] = dhr[k] * z[k] + drhr[k] * r[k];
                        }
                    }
                }
                self.packed.mul(
                    self.p.w_hh.value.slice(s![..2 * h, ..]),
                    dxp.slice(s![.., ..2 * h]),
                    true,
                    &mut dprev,
                )?;
            }
        }
        Ok(())
    }

    fn accumulate_grads(&mut self, seq: SeqRefs<'_, F>) -> Result<()> {
        crate::views::check_seq(self, "Gru::accumulate_grads", &seq)?;
        let one = F::one();
        let h = self.hidden_dim();
        match self.variant {
            GruVariant::ResetAfter => {
                self.p.acc_weight_grads(seq.dxp, seq.x, seq.drec, seq.prev, 3 * h, BiasGrads::Each)?;
            }
            GruVariant::ResetBefore => {
                let d_rz = seq.dxp.slice(s![.., ..2 * h]);
                self.p.acc_weight_grads(seq.dxp, seq.x, d_rz, seq.prev, 2 * h, BiasGrads::BothFromIh)?;
                // W_hn's input is r ⊙ h_{t−1}: rebuild it from the cached r.
                let n = seq.prev.nrows();
                let mut rh = Array2::<F>::zeros((n, h));
                for t in 0..n / seq.batch.max(1) {
                    let cache = seq.cache.row(t);
                    let cache = cache.as_slice().ok_or_else(|| {
                        shape_err(
                            "Gru::accumulate_grads",
                            ndarray::ShapeError::from_kind(ndarray::ErrorKind::IncompatibleLayout),
                        )
                    })?;
                    for b in 0..seq.batch {
                        let row = t * seq.batch + b;
                        let r = &cache[b * 3 * h..b * 3 * h + h];
                        let mut out = rh.row_mut(row);
                        for k in 0..h {
                            out[k] = r[k] * seq.prev[[row, k]];
                        }
                    }
                }
                gemm(
                    one,
                    &seq.dxp.slice(s![.., 2 * h..]).t(),
                    &rh.view(),
                    one,
                    &mut self.p.w_hh.grad.slice_mut(s![2 * h.., ..]),
                );
            }
        }
        Ok(())
    }

    fn input_grad(&self, dxp: ArrayView2<'_, F>, mut dx: ArrayViewMut2<'_, F>) -> Result<()> {
        crate::views::check_input_grad(self, "Gru::input_grad", dxp.shape(), dx.shape())?;
        self.p.input_grad(dxp, &mut dx)?;
        Ok(())
    }

    fn jvp_state(
        &self,
        step: StepRefs<'_, F>,
        v: ArrayView2<'_, F>,
        out: ArrayViewMut2<'_, F>,
        scratch: &mut [F],
    ) -> Result<()> {
        crate::views::check_step_refs(self, "Gru::jvp_state", &step, v.nrows())?;
        let op = "Gru::jvp_state";
        let sw = self.state_width();
        check_step(
            self,
            op,
            &[
                ("v", v.shape(), sw),
                ("xp", step.xp.shape(), self.proj_dim()),
                ("prev", step.prev.shape(), sw),
                ("next", step.next.shape(), sw),
                ("out", out.shape(), sw),
            ],
            step.cache.len(),
            scratch.len(),
        )?;
        let (b, h) = (v.nrows(), self.hidden_dim());
        let one = F::one();
        let hp = slice(op, step.prev)?;
        let vs = slice(op, v)?;
        let o = slice_mut(op, out)?;
        match self.variant {
            GruVariant::ResetAfter => {
                let mut u =
                    ArrayViewMut2::from_shape((b, 3 * h), &mut scratch[..3 * b * h]).map_err(|e| shape_err(op, e))?;
                self.packed.mul_t(self.p.w_hh.value.view(), v, false, &mut u)?;
                let u = &scratch[..3 * b * h];
                let gates = slice(op, step.xp)?;
                for row in 0..b {
                    let g = &gates[row * 3 * h..(row + 1) * 3 * h];
                    let (r, z, n) = (&g[..h], &g[h..2 * h], &g[2 * h..]);
                    let hn = &step.cache[row * h..(row + 1) * h];
                    let ur = &u[row * 3 * h..(row + 1) * 3 * h];
                    for k in 0..h {
                        let i = row * h + k;
                        let dr = r[k] * (one - r[k]) * ur[k];
                        let dz = z[k] * (one - z[k]) * ur[h + k];
                        let dn = (one - n[k] * n[k]) * (dr * hn[k] + r[k] * ur[2 * h + k]);
                        o[i] = (hp[i] - n[k]) * dz + (one - z[k]) * dn + z[k] * vs[i];
                    }
                }
            }
            GruVariant::ResetBefore => {
                let (u_rz, rest) = scratch.split_at_mut(2 * b * h);
                let (drh, u_n) = rest.split_at_mut(b * h);
                let mut urz = ArrayViewMut2::from_shape((b, 2 * h), &mut *u_rz).map_err(|e| shape_err(op, e))?;
                self.packed.mul_t(self.p.w_hh.value.slice(s![..2 * h, ..]), v, false, &mut urz)?;
                for row in 0..b {
                    let c = &step.cache[row * 3 * h..(row + 1) * 3 * h];
                    for k in 0..h {
                        let i = row * h + k;
                        let dr = c[k] * (one - c[k]) * u_rz[row * 2 * h + k];
                        drh[i] = dr * hp[i] + c[k] * vs[i];
                    }
                }
                let drhv = ArrayView2::from_shape((b, h), &*drh).map_err(|e| shape_err(op, e))?;
                let mut unv = ArrayViewMut2::from_shape((b, h), &mut *u_n).map_err(|e| shape_err(op, e))?;
                self.packed_n.mul_t(self.p.w_hh.value.slice(s![2 * h.., ..]), drhv, false, &mut unv)?;
                for row in 0..b {
                    let c = &step.cache[row * 3 * h..(row + 1) * 3 * h];
                    let (z, n) = (&c[h..2 * h], &c[2 * h..]);
                    for k in 0..h {
                        let i = row * h + k;
                        let dz = z[k] * (one - z[k]) * u_rz[row * 2 * h + h + k];
                        let dn = (one - n[k] * n[k]) * u_n[i];
                        o[i] = (hp[i] - n[k]) * dz + (one - z[k]) * dn + z[k] * vs[i];
                    }
                }
            }
        }
        Ok(())
    }
}

/// h = (1 − z) ⊙ n + z ⊙ h_prev for one batch row.
/// The reset-after step's gate math for one batch row, one pass over the units: from the
/// input and recurrent projections `x_*`, `u_*` (without `b_hn`), `b_hn` and h_{t−1}, writes
/// r, z, n over `x_r`, `x_z`, `x_n`, W_hn h + b_hn into `c_hn`, and h_t. Its own function, not inlined: as separate arguments the
/// slices are known not to overlap, so LLVM vectorises the loop without run-time checks.
#[inline(never)]
fn forward_units_after<F: Float>(
    (x_r, x_z, x_n): (&mut [F], &mut [F], &mut [F]),
    (u_r, u_z, u_n): (&[F], &[F], &[F]),
    b_hn: &[F],
    hprev: &[F],
    c_hn: &mut [F],
    h: &mut [F],
) {
    let len = h.len();
    let (x_r, x_z, x_n) = (&mut x_r[..len], &mut x_z[..len], &mut x_n[..len]);
    let (u_r, u_z, u_n, b_hn, hprev, c_hn) =
        (&u_r[..len], &u_z[..len], &u_n[..len], &b_hn[..len], &hprev[..len], &mut c_hn[..len]);
    for k in 0..len {
        let r = F::sigmoid_fast(x_r[k] + u_r[k]);
        let z = F::sigmoid_fast(x_z[k] + u_z[k]);
        let hn = u_n[k] + b_hn[k];
        let n = F::tanh_fast(x_n[k] + r * hn);
        (x_r[k], x_z[k], x_n[k], c_hn[k]) = (r, z, n, hn);
        h[k] = n + z * (hprev[k] - n);
    }
}

/// The reset-after step's backward for one batch row (formulas on [`Gru`]), one pass over the
/// units, in its own function for the same reason as [`forward_units_after`].
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn backward_units_after<F: Float>(
    (r, z, n, hn): (&[F], &[F], &[F], &[F]),
    hprev: &[F],
    dh: &[F],
    dx_r: &mut [F],
    dx_z: &mut [F],
    dx_n: &mut [F],
    dr_r: &mut [F],
    dr_z: &mut [F],
    dr_n: &mut [F],
    dp: &mut [F],
) {
    let len = dp.len();
    let (r, z, n, hn, hprev, dh) = (&r[..len], &z[..len], &n[..len], &hn[..len], &hprev[..len], &dh[..len]);
    let (dx_r, dx_z, dx_n) = (&mut dx_r[..len], &mut dx_z[..len], &mut dx_n[..len]);
    let (dr_r, dr_z, dr_n) = (&mut dr_r[..len], &mut dr_z[..len], &mut dr_n[..len]);
    let one = F::one();
    for k in 0..len {
        let da_n = dh[k] * (one - z[k]) * (one - n[k] * n[k]);
        let da_z = dh[k] * (hprev[k] - n[k]) * z[k] * (one - z[k]);
        let da_r = da_n * hn[k] * r[k] * (one - r[k]);
        (dx_r[k], dx_z[k], dx_n[k]) = (da_r, da_z, da_n);
        (dr_r[k], dr_z[k], dr_n[k]) = (da_r, da_z, r[k] * da_n);
        dp[k] = dh[k] * z[k];
    }
}

#[inline]
fn blend_row<F: Float>(z: &[F], n: &[F], h_prev: &[F], h: &mut [F]) {
    let k = h.len();
    let (z, n, h_prev) = (&z[..k], &n[..k], &h_prev[..k]);
    for j in 0..k {
        h[j] = n[j] + z[j] * (h_prev[j] - n[j]);
    }
}
