//! The LSTM cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000),
//! PyTorch's gate order and parameter layout.

use ndarray::{Array1, ArrayView2, ArrayViewMut2, s};
use rnnlab_core::{Cell, Float, ParamView, ParamViewMut, Parameterized, Result, Rng, SeqRefs, StepRefs};
use rnnlab_init::Init;
use rnnlab_kernels::PackedWeight;
use serde::{Deserialize, Serialize};

use super::params::{BiasGrads, GateParams, shape_err};
use crate::views::{check_step, slice, slice_mut};

/// Configuration of an [`Lstm`] cell.
///
/// Defaults: `w_ih` Xavier-uniform and `w_hh` orthogonal, each initialised per gate block
/// (fans and orthogonality from the `[hidden_dim, ·]` block, not the packed matrix), biases
/// zero except the forget gate's `b_ih` block, set to `forget_bias = 1.0`
/// (Jozefowicz et al. 2015; `b_hh`'s forget block stays 0, so the effective bias is 1.0).
///
/// # Examples
/// A two-layer LSTM with the forget bias at 0 (PyTorch's initial value) and its parameters
/// under PyTorch's layout (gates i, f, g, o stacked in `[4H, ·]`):
/// ```
/// use rnnlab_cells::{LstmConfig, Recurrent};
/// use rnnlab_core::Parameterized;
/// let mut rng = rnnlab_core::seeded_rng(0);
/// let layer0 = LstmConfig::new(2, 8).with_forget_bias(0.0).init::<f64>(&mut rng)?;
/// let layer1 = LstmConfig::new(8, 8).with_forget_bias(0.0).init::<f64>(&mut rng)?;
/// let lstm = Recurrent::new(vec![layer0, layer1])?;
/// assert_eq!(lstm.get_param("layers.1.w_hh")?.shape(), &[32, 8]);
/// assert_eq!(lstm.n_params(), 4 * 8 * (2 + 8 + 2) + 4 * 8 * (8 + 8 + 2));
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct LstmConfig {
    /// Input width I.
    pub input_dim: usize,
    /// Hidden width H.
    pub hidden_dim: usize,
    /// The initial forget-gate bias (default 1.0).
    pub forget_bias: f64,
    /// Initialiser of `w_ih`, applied per gate block.
    pub w_ih_init: Init,
    /// Initialiser of `w_hh`, applied per gate block.
    pub w_hh_init: Init,
    /// Initialiser of both biases before the forget bias is set (default zeros).
    pub bias_init: Init,
}
rnnlab_core::serde_map_only!(LstmConfig);

impl LstmConfig {
    /// The default configuration for the given sizes.
    pub fn new(input_dim: usize, hidden_dim: usize) -> Self {
        Self {
            input_dim,
            hidden_dim,
            forget_bias: 1.0,
            w_ih_init: Init::XavierUniform { gain: 1.0 },
            w_hh_init: Init::Orthogonal { gain: 1.0 },
            bias_init: Init::Zeros,
        }
    }

    /// Sets the initial forget-gate bias.
    pub fn with_forget_bias(mut self, forget_bias: f64) -> Self {
        self.forget_bias = forget_bias;
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
    /// [`rnnlab_core::Error::Config`] for a zero size, a non-finite forget bias or an invalid
    /// initialiser.
    pub fn init<F: Float>(&self, rng: &mut Rng) -> Result<Lstm<F>> {
        let op = "LstmConfig::init";
        super::check_dims(op, 4, self.input_dim, self.hidden_dim)?;
        rnnlab_core::validate::finite_in::<F>(op, "forget_bias", self.forget_bias)?;
        let (i, h) = (self.input_dim, self.hidden_dim);
        let w_ih = self.w_ih_init.packed::<F>(4, h, i, rng).map_err(|e| e.within(op, "w_ih_init"))?;
        let w_hh = self.w_hh_init.packed::<F>(4, h, h, rng).map_err(|e| e.within(op, "w_hh_init"))?;
        let mut b_ih = self.bias_init.array1::<F>(4 * h, rng).map_err(|e| e.within(op, "bias_init"))?;
        let b_hh = self.bias_init.array1::<F>(4 * h, rng).map_err(|e| e.within(op, "bias_init"))?;
        b_ih.slice_mut(s![h..2 * h]).fill(F::of(self.forget_bias));
        Lstm::from_params(w_ih, w_hh, b_ih, b_hh)
    }
}

/// An LSTM cell with PyTorch's gate order i, f, g, o:
///
/// ```text
/// [ĩ f̃ g̃ õ] = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh
/// i = σ(ĩ), f = σ(f̃), g = tanh(g̃), o = σ(õ)
/// c_t = f ⊙ c_{t−1} + i ⊙ g,   h_t = o ⊙ tanh(c_t)
/// ```
///
/// Parameters, as `torch.nn.LSTM` layer 0 (`weight_ih_l0` = `w_ih`, …): `w_ih` `[4H, I]`,
/// `w_hh` `[4H, H]`, `b_ih` `[4H]`, `b_hh` `[4H]`, rows in blocks of H in the order i, f, g, o.
/// State parts `["h", "c"]`.
///
/// Backward (δ = ∂L/∂·): δc = δc_t + δh ⊙ o ⊙ (1 − tanh²c_t); δõ = δh ⊙ tanh c_t ⊙ o(1−o);
/// δĩ = δc ⊙ g ⊙ i(1−i); δf̃ = δc ⊙ c_{t−1} ⊙ f(1−f); δg̃ = δc ⊙ i ⊙ (1−g²);
/// δc_{t−1} = δc ⊙ f; δh_{t−1} = [δĩ δf̃ δg̃ δõ] W_hh.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "F: Float")]
pub struct Lstm<F: Float> {
    #[serde(flatten)]
    p: GateParams<F>,
    /// `w_hh` packed for the per-step products, refreshed at step 0 of each forward pass.
    #[serde(skip)]
    packed: PackedWeight<F>,
}

const STATE: &[&str] = &["h", "c"];

impl<F: Float> Lstm<F> {
    /// A cell from given parameters (e.g. PyTorch's), `w_ih` `[4H, I]`, `w_hh` `[4H, H]`,
    /// `b_ih` and `b_hh` `[4H]`.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Shape`] if the shapes do not fit together,
    /// [`rnnlab_core::Error::Config`] for a zero size.
    pub fn from_params(
        w_ih: ndarray::Array2<F>,
        w_hh: ndarray::Array2<F>,
        b_ih: Array1<F>,
        b_hh: Array1<F>,
    ) -> Result<Self> {
        Ok(Self {
            p: GateParams::new("Lstm::from_params", 4, w_ih, w_hh, b_ih, b_hh)?,
            packed: PackedWeight::default(),
        })
    }
}

impl<F: Float> Parameterized<F> for Lstm<F> {
    fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        self.p.visit(v);
    }

    fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        self.p.visit_mut(v);
    }
}

impl<F: Float> Cell<F> for Lstm<F> {
    fn probe(&self) -> Option<&dyn rnnlab_core::Probe<F>> {
        Some(self)
    }

    fn name(&self) -> &'static str {
        "lstm"
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
        4 * self.hidden_dim()
    }

    fn cache_len(&self, batch: usize) -> usize {
        // tanh(c_t) [batch, H]; the activated gates [batch, 4H] are kept in the step's row of
        // the input projection, which they replace
        batch * self.hidden_dim()
    }

    fn scratch_len(&self, batch: usize) -> usize {
        4 * batch * self.hidden_dim()
    }

    fn project_input(&mut self, x: ArrayView2<'_, F>, mut out: ArrayViewMut2<'_, F>) -> Result<()> {
        crate::views::check_project(self, "Lstm::project_input", x.shape(), out.shape())?;
        let bias = &self.p.b_ih.value + &self.p.b_hh.value;
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
        let op = "Lstm::step";
        let sw = self.state_width();
        check_step(
            self,
            op,
            &[("xp", xp.shape(), self.proj_dim()), ("prev", prev.shape(), sw), ("next", next.shape(), sw)],
            cache.len(),
            scratch.len(),
        )?;
        let (b, h) = (xp.nrows(), self.hidden_dim());
        let tc = &mut cache[..b * h];
        // Layouts checked before anything is written (a refused step changes nothing).
        slice(op, xp.view())?;
        let prev_s = slice(op, prev)?;
        let next = slice_mut(op, next)?;
        if t == 0 {
            self.packed.pack_per_step(self.p.w_hh.value.view());
        }
        // gates = xp + h_{t−1}·W_hhᵀ, in place of xp (its only reader is this step)
        self.packed.mul_t(self.p.w_hh.value.view(), prev.slice(s![.., ..h]), true, &mut xp)?;
        let gates = slice_mut(op, xp)?;
        let prev = prev_s;
        for r in 0..b {
            let g = &mut gates[r * 4 * h..(r + 1) * 4 * h];
            let c_prev = &prev[r * 2 * h + h..(r + 1) * 2 * h];
            let (h_next, c_next) = next[r * 2 * h..(r + 1) * 2 * h].split_at_mut(h);
            forward_row(g, c_prev, c_next, &mut tc[r * h..(r + 1) * h], h_next);
        }
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
        crate::views::check_step_refs(self, "Lstm::step_backward", &step, dnext.nrows())?;
        let op = "Lstm::step_backward";
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
        let (gates, tc) = (slice(op, step.xp)?, step.cache);
        let prev = slice(op, step.prev)?;
        let dn = slice(op, dnext)?;
        {
            let dg = slice_mut(op, dxp.view_mut())?;
            let dp = slice_mut(op, dprev.view_mut())?;
            for r in 0..b {
                let row2 = r * 2 * h..(r + 1) * 2 * h;
                let (dh, dc_next) = dn[row2.clone()].split_at(h);
                let dc_prev = &mut dp[row2.clone()][h..];
                backward_row(
                    &gates[r * 4 * h..(r + 1) * 4 * h],
                    &tc[r * h..(r + 1) * h],
                    &prev[row2][h..],
                    dh,
                    dc_next,
                    &mut dg[r * 4 * h..(r + 1) * 4 * h],
                    dc_prev,
                );
            }
        }
        self.packed.mul(self.p.w_hh.value.view(), dxp.view(), false, &mut dprev.slice_mut(s![.., ..h]))?;
        Ok(())
    }

    fn accumulate_grads(&mut self, seq: SeqRefs<'_, F>) -> Result<()> {
        crate::views::check_seq(self, "Lstm::accumulate_grads", &seq)?;
        let h = self.hidden_dim();
        self.p.acc_weight_grads(seq.dxp, seq.x, seq.dxp, seq.prev.slice(s![.., ..h]), 4 * h, BiasGrads::BothFromIh)?;
        Ok(())
    }

    fn input_grad(&self, dxp: ArrayView2<'_, F>, mut dx: ArrayViewMut2<'_, F>) -> Result<()> {
        crate::views::check_input_grad(self, "Lstm::input_grad", dxp.shape(), dx.shape())?;
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
        crate::views::check_step_refs(self, "Lstm::jvp_state", &step, v.nrows())?;
        let op = "Lstm::jvp_state";
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
        let u_buf = &mut scratch[..4 * b * h];
        let mut u = ArrayViewMut2::from_shape((b, 4 * h), &mut *u_buf).map_err(|e| shape_err(op, e))?;
        self.packed.mul_t(self.p.w_hh.value.view(), v.slice(s![.., ..h]), false, &mut u)?;
        let (gates, tc) = (slice(op, step.xp)?, step.cache);
        let prev = slice(op, step.prev)?;
        let vs = slice(op, v)?;
        let out = slice_mut(op, out)?;
        for r in 0..b {
            let g = &gates[r * 4 * h..(r + 1) * 4 * h];
            let u = &u_buf[r * 4 * h..(r + 1) * 4 * h];
            let row2 = r * 2 * h..(r + 1) * 2 * h;
            let c_prev = &prev[row2.clone()][h..];
            let v_c = &vs[row2.clone()][h..];
            let (o_h, o_c) = out[row2].split_at_mut(h);
            for k in 0..h {
                let (i, f, gg, o) = (g[k], g[h + k], g[2 * h + k], g[3 * h + k]);
                let one = F::one();
                let di = i * (one - i) * u[k];
                let df = f * (one - f) * u[h + k];
                let dg = (one - gg * gg) * u[2 * h + k];
                let d_o = o * (one - o) * u[3 * h + k];
                let t = tc[r * h + k];
                let dc = df * c_prev[k] + f * v_c[k] + di * gg + i * dg;
                o_c[k] = dc;
                o_h[k] = d_o * t + o * (one - t * t) * dc;
            }
        }
        Ok(())
    }
}

/// One batch row of the step after the product: activates the gates in place
/// (`g` = [ĩ | f̃ | g̃ | õ] → [i | f | g | o]), then c = f⊙c_prev + i⊙g, tc = tanh(c),
/// h = o⊙tc — one pass over the row, so that nothing is read back from memory.
#[inline]
fn forward_row<F: Float>(g: &mut [F], c_prev: &[F], c: &mut [F], tc: &mut [F], h: &mut [F]) {
    let n = c.len();
    let (i, rest) = g.split_at_mut(n);
    let (f, rest) = rest.split_at_mut(n);
    let (gg, o) = rest.split_at_mut(n);
    forward_units(i, f, gg, &mut o[..n], &c_prev[..n], c, &mut tc[..n], &mut h[..n]);
}

/// [`forward_row`]'s loop. Its own function, not inlined: as separate arguments the eight
/// slices are known not to overlap, so LLVM vectorises the loop without run-time checks.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn forward_units<F: Float>(
    i: &mut [F],
    f: &mut [F],
    gg: &mut [F],
    o: &mut [F],
    c_prev: &[F],
    c: &mut [F],
    tc: &mut [F],
    h: &mut [F],
) {
    let n = c.len();
    let (i, f, gg, o, c_prev, tc, h) =
        (&mut i[..n], &mut f[..n], &mut gg[..n], &mut o[..n], &c_prev[..n], &mut tc[..n], &mut h[..n]);
    for k in 0..n {
        let (iv, fv) = (F::sigmoid_fast(i[k]), F::sigmoid_fast(f[k]));
        let (gv, ov) = (F::tanh_fast(gg[k]), F::sigmoid_fast(o[k]));
        (i[k], f[k], gg[k], o[k]) = (iv, fv, gv, ov);
        c[k] = fv * c_prev[k] + iv * gv;
    }
    for k in 0..n {
        let t = F::tanh_fast(c[k]);
        tc[k] = t;
        h[k] = o[k] * t;
    }
}

/// The LSTM step's backward for one batch row (formulas on [`Lstm`]).
#[inline]
fn backward_row<F: Float>(g: &[F], tc: &[F], c_prev: &[F], dh: &[F], dc_next: &[F], dg: &mut [F], dc_prev: &mut [F]) {
    let n = tc.len();
    let (i, rest) = g.split_at(n);
    let (f, rest) = rest.split_at(n);
    let (gg, o) = rest.split_at(n);
    let (di, rest) = dg.split_at_mut(n);
    let (df, rest) = rest.split_at_mut(n);
    let (dgg, d_o) = rest.split_at_mut(n);
    let (o, c_prev, dh, dc_next, d_o, dc_prev) =
        (&o[..n], &c_prev[..n], &dh[..n], &dc_next[..n], &mut d_o[..n], &mut dc_prev[..n]);
    let one = F::one();
    for k in 0..n {
        let t = tc[k];
        let dc = dc_next[k] + dh[k] * o[k] * (one - t * t);
        d_o[k] = dh[k] * t * o[k] * (one - o[k]);
        di[k] = dc * gg[k] * i[k] * (one - i[k]);
        df[k] = dc * c_prev[k] * f[k] * (one - f[k]);
        dgg[k] = dc * i[k] * (one - gg[k] * gg[k]);
        dc_prev[k] = dc * f[k];
    }
}
