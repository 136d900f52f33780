//! The part every normalised cell shares: the weights, the input and recurrent projections and
//! their normalisers, with the per-step buffers laid out once.
//!
//! Per step the projection writes ŷ_x = N_x(W_ih x_t) and the recurrent branch
//! q = N_h(W_hh h_{t−1}) (Full) or q = W_hh h_{t−1} (InputOnly); the cell combines them with its
//! biases and gates. Layouts, per step:
//!
//! - cache front: `[mode flag (1) | x̂_x (B·P) | s_x | x̂_h (B·P) | s_h]` (the `_h` part in Full
//!   placement only); the flag records whether batch statistics were used, so that the
//!   backward matches the forward whatever `set_training` did in between;
//! - drec front, per row: `[e_x (P) | e_h (P) | δu (P)]` with e_x = ∂L/∂ŷ_x, e_h = ∂L/∂q and
//!   δu = ∂L/∂(W_hh h_{t−1}) (Full only; in InputOnly δu = e_h).

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Ix1, Ix2, s};
use rnnlab_core::{Error, Float, Param, ParamView, ParamViewMut, Parameterized, Result, SeqRefs};
use serde::{Deserialize, Serialize};

use rnnlab_kernels::{GradPack, PackedWeight, add_col_sums};

use super::config::{NormConfig, NormKind, NormPlacement};
use super::unit::{NormUnit, inv_len};
use crate::plain::params::{check_param_shapes, shape_err};
use crate::views::{check_at_least, check_view};

/// Weights, biases and the input/recurrent normalisers of a normalised cell with P = G·H.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "F: Float")]
pub(crate) struct NormProj<F: Float> {
    pub(crate) w_ih: Param<F, Ix2>,
    pub(crate) w_hh: Param<F, Ix2>,
    pub(crate) b_ih: Param<F, Ix1>,
    pub(crate) b_hh: Param<F, Ix1>,
    pub(crate) norm_x: NormUnit<F>,
    pub(crate) norm_h: Option<NormUnit<F>>,
    /// `w_hh` packed for the per-step products, refreshed at step 0 of each forward pass.
    #[serde(skip)]
    pub(crate) packed: PackedWeight<F>,
    /// `w_ih` packed by `project_input` for the input products of the same pass.
    #[serde(skip)]
    packed_ih: PackedWeight<F>,
    /// The packing buffers of the weight-gradient products.
    #[serde(skip)]
    grads: GradPack<F>,
}

/// A plain cell's `(w_ih, w_hh, b_ih, b_hh)`.
pub(crate) type PlainParams<F> = (Array2<F>, Array2<F>, Array1<F>, Array1<F>);

/// The parameters of a plain cell by name: `w_ih`, `w_hh`, `b_ih`, `b_hh`.
pub(crate) fn plain_params<F: Float, C: Parameterized<F>>(op: &str, cell: &C) -> Result<PlainParams<F>> {
    let (mut w2, mut w1) = (Vec::new(), Vec::new());
    let mut bad = None;
    cell.visit_params(&mut |name, p| match name {
        "w_ih" | "w_hh" => match p.value.to_owned().into_dimensionality::<Ix2>() {
            Ok(a) => w2.push(a),
            Err(e) => bad = Some(e),
        },
        "b_ih" | "b_hh" => match p.value.to_owned().into_dimensionality::<Ix1>() {
            Ok(a) => w1.push(a),
            Err(e) => bad = Some(e),
        },
        _ => {}
    });
    if let Some(e) = bad {
        return Err(shape_err(op, e));
    }
    match (w2.len(), w1.len()) {
        (2, 2) => {
            let (b_hh, b_ih) = (w1.remove(1), w1.remove(0));
            let (w_hh, w_ih) = (w2.remove(1), w2.remove(0));
            Ok((w_ih, w_hh, b_ih, b_hh))
        }
        _ => Err(Error::shape(op, "parameters w_ih, w_hh, b_ih, b_hh", format!("{:?}", cell.param_names()))),
    }
}

/// A `[rows, cols]` view of the first `rows · cols` values of `buf`.
pub(crate) fn view_mut<'a, F>(op: &str, buf: &'a mut [F], rows: usize, cols: usize) -> Result<ArrayViewMut2<'a, F>> {
    check_at_least(op, "buffer", rows * cols, buf.len())?;
    ArrayViewMut2::from_shape((rows, cols), &mut buf[..rows * cols]).map_err(|e| shape_err(op, e))
}

/// Read-only twin of [`view_mut`].
pub(crate) fn view<'a, F>(op: &str, buf: &'a [F], rows: usize, cols: usize) -> Result<ArrayView2<'a, F>> {
    check_at_least(op, "buffer", rows * cols, buf.len())?;
    ArrayView2::from_shape((rows, cols), &buf[..rows * cols]).map_err(|e| shape_err(op, e))
}

/// The pieces of a cache front.
pub(crate) struct Front<'a, F> {
    /// Whether batch statistics were used.
    pub(crate) batch_stats: bool,
    pub(crate) xh_x: &'a [F],
    pub(crate) s_x: &'a [F],
    pub(crate) xh_h: &'a [F],
    pub(crate) s_h: &'a [F],
}

impl<F: Float> NormProj<F> {
    /// Validates `cfg` and the shapes, and adds the normalisers (γ = `cfg.gamma_init`, β = 0).
    pub(crate) fn new(
        op: &str,
        cfg: &NormConfig,
        gates: usize,
        (w_ih, w_hh, b_ih, b_hh): PlainParams<F>,
    ) -> Result<Self> {
        check_param_shapes(op, gates, &w_ih, &w_hh, &b_ih, &b_hh)?;
        let p = w_hh.nrows();
        cfg.validate_in::<F>(p).map_err(|e| e.within(op, "norm"))?;
        Ok(Self {
            w_ih: Param::new(w_ih),
            w_hh: Param::new(w_hh),
            b_ih: Param::new(b_ih),
            b_hh: Param::new(b_hh),
            norm_x: NormUnit::new(cfg, p),
            norm_h: (cfg.placement == NormPlacement::Full).then(|| NormUnit::new(cfg, p)),
            packed: PackedWeight::default(),
            packed_ih: PackedWeight::default(),
            grads: GradPack::default(),
        })
    }

    pub(crate) fn input_dim(&self) -> usize {
        self.w_ih.value.ncols()
    }

    pub(crate) fn hidden_dim(&self) -> usize {
        self.w_hh.value.ncols()
    }

    /// P = G·H.
    pub(crate) fn proj_dim(&self) -> usize {
        self.w_hh.value.nrows()
    }

    /// `Err` unless parameters, normalisers and `cfg` fit together (a hand-edited checkpoint
    /// could break this; O(1) per call).
    pub(crate) fn check(&self, op: &str, cfg: &NormConfig, gates: usize) -> Result<()> {
        check_param_shapes(op, gates, &self.w_ih.value, &self.w_hh.value, &self.b_ih.value, &self.b_hh.value)?;
        let p = self.proj_dim();
        self.norm_x.check(op, cfg, p)?;
        match (cfg.placement, &self.norm_h) {
            (NormPlacement::Full, Some(u)) => u.check(op, cfg, p),
            (NormPlacement::InputOnly, None) => Ok(()),
            _ => Err(Error::config(op, "the recurrent normaliser does not match the placement")),
        }
    }

    /// The length of the cache front for `b` rows.
    pub(crate) fn front_len(&self, kind: NormKind, b: usize) -> usize {
        let p = self.proj_dim();
        let one = b * p + inv_len(kind, b, p);
        1 + if self.norm_h.is_some() { 2 * one } else { one }
    }

    /// The width of the drec front per row.
    pub(crate) fn rec_len(&self) -> usize {
        let p = self.proj_dim();
        if self.norm_h.is_some() { 3 * p } else { 2 * p }
    }

    /// Splits a cache front.
    pub(crate) fn front<'a>(&self, op: &str, kind: NormKind, b: usize, cache: &'a [F]) -> Result<Front<'a, F>> {
        check_at_least(op, "cache", self.front_len(kind, b), cache.len())?;
        let (p, il) = (self.proj_dim(), inv_len(kind, b, self.proj_dim()));
        let (xh_x, rest) = cache[1..].split_at(b * p);
        let (s_x, rest) = rest.split_at(il);
        let (xh_h, s_h) = if self.norm_h.is_some() {
            let (xh_h, rest) = rest.split_at(b * p);
            (xh_h, &rest[..il])
        } else {
            (&rest[..0], &rest[..0])
        };
        Ok(Front { batch_stats: cache[0] > F::of(0.5), xh_x, s_x, xh_h, s_h })
    }

    /// `xp` `[n, I]` → `out` `[n, P]`: the raw W_ih x (no bias: the biases are added after the
    /// normalisation, inside the step).
    pub(crate) fn project_input(
        &mut self,
        op: &str,
        x: ArrayView2<'_, F>,
        mut out: ArrayViewMut2<'_, F>,
    ) -> Result<()> {
        check_view(op, "input", x.nrows(), self.input_dim(), x.shape())?;
        check_view(op, "projection", x.nrows(), self.proj_dim(), out.shape())?;
        self.packed_ih.pack(self.w_ih.value.view());
        self.packed_ih.mul_t(self.w_ih.value.view(), x, false, &mut out)?;
        Ok(())
    }

    /// ∂L/∂x = ∂L/∂(W_ih x) · W_ih.
    pub(crate) fn input_grad(&self, op: &str, dxp: ArrayView2<'_, F>, mut dx: ArrayViewMut2<'_, F>) -> Result<()> {
        check_view(op, "projection gradient", dxp.nrows(), self.proj_dim(), dxp.shape())?;
        check_view(op, "input gradient", dxp.nrows(), self.input_dim(), dx.shape())?;
        self.packed_ih.mul(self.w_ih.value.view(), dxp, false, &mut dx)?;
        Ok(())
    }

    /// Step t forward: ŷ_x = N_x(xp) into `yx`, q into `q` (both `[B, P]`), the front of the
    /// cache; `u` (B·P) and `stats` (2P) are scratch.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &mut self,
        op: &str,
        cfg: &NormConfig,
        batch_stats: bool,
        t: usize,
        xp: &[F],
        prev_h: ArrayView2<'_, F>,
        yx: &mut [F],
        q: &mut [F],
        front: &mut [F],
        u: &mut [F],
        stats: &mut [F],
    ) -> Result<()> {
        let (b, p) = (prev_h.nrows(), self.proj_dim());
        let il = inv_len(cfg.kind, b, p);
        check_at_least(op, "cache", self.front_len(cfg.kind, b), front.len())?;
        if t == 0 {
            self.packed.pack_per_step(self.w_hh.value.view());
        }
        let (flag, rest) = front.split_at_mut(1);
        flag[0] = if batch_stats { F::one() } else { F::zero() };
        let (xh_x, rest) = rest.split_at_mut(b * p);
        let (s_x, rest) = rest.split_at_mut(il);
        self.norm_x.forward(cfg, batch_stats, t, xp, yx, xh_x, s_x, stats)?;
        match &mut self.norm_h {
            Some(nh) => {
                let (xh_h, rest) = rest.split_at_mut(b * p);
                let mut uv = view_mut(op, u, b, p)?;
                self.packed.mul_t(self.w_hh.value.view(), prev_h, false, &mut uv)?;
                nh.forward(cfg, batch_stats, t, &u[..b * p], q, xh_h, &mut rest[..il], stats)
            }
            None => {
                let mut qv = view_mut(op, q, b, p)?;
                self.packed.mul_t(self.w_hh.value.view(), prev_h, false, &mut qv)?;
                Ok(())
            }
        }
    }

    /// Step backward from e_x, e_h (`[B, P]`): ∂L/∂xp into `dxp`, δu into `du` (Full), and
    /// δu·W_hh into `dprev_h` (overwriting, or adding with `accumulate`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &self,
        op: &str,
        kind: NormKind,
        front: &Front<'_, F>,
        e_x: &[F],
        e_h: &[F],
        dxp: &mut [F],
        du: &mut [F],
        dprev_h: &mut ArrayViewMut2<'_, F>,
        accumulate: bool,
    ) -> Result<()> {
        let (b, p) = (dprev_h.nrows(), self.proj_dim());
        self.norm_x.backward(kind, front.batch_stats, e_x, front.xh_x, front.s_x, dxp, false)?;
        let src = match &self.norm_h {
            Some(nh) => {
                nh.backward(kind, front.batch_stats, e_h, front.xh_h, front.s_h, &mut du[..b * p], false)?;
                &du[..b * p]
            }
            None => e_h,
        };
        self.packed.mul(self.w_hh.value.view(), view(op, src, b, p)?, accumulate, dprev_h)?;
        Ok(())
    }

    /// dq = ∂q/∂h_{t−1} · `v_h` into `dq` `[B, P]`; `u` is scratch (B·P).
    pub(crate) fn jvp(
        &self,
        op: &str,
        kind: NormKind,
        front: &Front<'_, F>,
        v_h: ArrayView2<'_, F>,
        dq: &mut [F],
        u: &mut [F],
    ) -> Result<()> {
        let (b, p) = (v_h.nrows(), self.proj_dim());
        match &self.norm_h {
            Some(nh) => {
                self.packed.mul_t(self.w_hh.value.view(), v_h, false, &mut view_mut(op, u, b, p)?)?;
                nh.jvp(kind, front.batch_stats, &u[..b * p], front.xh_h, front.s_h, &mut dq[..b * p])
            }
            None => {
                self.packed.mul_t(self.w_hh.value.view(), v_h, false, &mut view_mut(op, dq, b, p)?)?;
                Ok(())
            }
        }
    }

    /// Copies e_x, e_h and (Full) δu, each `[B, P]`, into the drec front.
    pub(crate) fn store_rec(&self, op: &str, drec: &mut [F], b: usize, e_x: &[F], e_h: &[F], du: &[F]) -> Result<()> {
        let p = self.proj_dim();
        let w = drec.len() / b.max(1);
        check_at_least(op, "drec row", self.rec_len(), w)?;
        for r in 0..b {
            let row = &mut drec[r * w..(r + 1) * w];
            row[..p].copy_from_slice(&e_x[r * p..(r + 1) * p]);
            row[p..2 * p].copy_from_slice(&e_h[r * p..(r + 1) * p]);
            if self.norm_h.is_some() {
                row[2 * p..3 * p].copy_from_slice(&du[r * p..(r + 1) * p]);
            }
        }
        Ok(())
    }

    /// Adds ∂L/∂θ of the weights, biases and the two normalisers from the whole sequence.
    pub(crate) fn accumulate(&mut self, op: &str, kind: NormKind, seq: &SeqRefs<'_, F>) -> Result<()> {
        let (p, h, b) = (self.proj_dim(), self.hidden_dim(), seq.batch);
        let n = seq.dxp.nrows();
        let n_t = seq.cache.nrows();
        if b == 0 || n != n_t * b {
            return Err(Error::shape(op, format!("{n_t} steps of batch {b}"), format!("{n} rows")));
        }
        check_view(op, "projection gradient", n, p, seq.dxp.shape())?;
        check_view(op, "input", n, self.input_dim(), seq.x.shape())?;
        check_at_least(op, "drec width", self.rec_len(), seq.drec.ncols())?;
        check_at_least(op, "previous-state width", h, seq.prev.ncols())?;
        check_at_least(op, "cache width", self.front_len(kind, b), seq.cache.ncols())?;
        check_view(op, "previous states", n, seq.prev.ncols(), seq.prev.shape())?;
        check_view(op, "drec", n, seq.drec.ncols(), seq.drec.shape())?;
        self.grads.acc_tn(seq.dxp, &mut [(seq.x, self.w_ih.grad.view_mut())], &mut [])?;
        let e_x = seq.drec.slice(s![.., ..p]);
        let e_h = seq.drec.slice(s![.., p..2 * p]);
        let du = if self.norm_h.is_some() { seq.drec.slice(s![.., 2 * p..3 * p]) } else { e_h };
        self.grads.acc_tn(du, &mut [(seq.prev.slice(s![.., ..h]), self.w_hh.grad.view_mut())], &mut [])?;
        add_col_sums([&mut self.b_ih.grad], &e_x)?;
        add_col_sums([&mut self.b_hh.grad], &e_h)?;
        for t in 0..n_t {
            let row = seq.cache.row(t);
            let cache = row.to_slice().ok_or_else(|| Error::shape(op, "contiguous cache", "strided"))?;
            let front = self.front(op, kind, b, cache)?;
            let rows = t * b..(t + 1) * b;
            self.norm_x.add_param_grads(kind, e_x.slice(s![rows.clone(), ..]), front.xh_x)?;
            if let Some(nh) = &mut self.norm_h {
                nh.add_param_grads(kind, e_h.slice(s![rows, ..]), front.xh_h)?;
            }
        }
        Ok(())
    }

    /// The biases b_ih, b_hh as slices.
    pub(crate) fn biases(&self, op: &str) -> Result<(&[F], &[F])> {
        let bi = self.b_ih.value.as_slice().ok_or_else(|| Error::shape(op, "contiguous bias", "strided"))?;
        let bh = self.b_hh.value.as_slice().ok_or_else(|| Error::shape(op, "contiguous bias", "strided"))?;
        Ok((bi, bh))
    }

    pub(crate) fn visit(&self, v: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        v("w_ih", self.w_ih.view());
        v("w_hh", self.w_hh.view());
        v("b_ih", self.b_ih.view());
        v("b_hh", self.b_hh.view());
        self.norm_x.visit("norm_x", v);
        if let Some(nh) = &self.norm_h {
            nh.visit("norm_h", v);
        }
    }

    pub(crate) fn visit_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        v("w_ih", self.w_ih.view_mut());
        v("w_hh", self.w_hh.view_mut());
        v("b_ih", self.b_ih.view_mut());
        v("b_hh", self.b_hh.view_mut());
        self.norm_x.visit_mut("norm_x", v);
        if let Some(nh) = &mut self.norm_h {
            nh.visit_mut("norm_h", v);
        }
    }

    /// The running statistics of `"norm_x"` or `"norm_h"` (mean, variance), `[T_max, P]`.
    pub(crate) fn running(&self, unit: &str) -> Option<(ArrayView2<'_, F>, ArrayView2<'_, F>)> {
        let u = match unit {
            "norm_x" => Some(&self.norm_x),
            "norm_h" => self.norm_h.as_ref(),
            _ => None,
        }?;
        Some((u.running_mean(), u.running_var()))
    }
}
