//! Jacobian analysis through state-Jacobian products only: σ₁ of Π ∂s_j/∂s_{j−1} per lag by
//! block Lanczos (a block of probe vectors run as one batch of the cell), the singular values
//! of one step's Jacobian, and Pascanu et al.'s bound.

use ndarray::{Array1, Array2, Array3, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, s};
use rand::Rng as _;
use rnnlab_cells::{Recurrent, SeqCache};
use rnnlab_core::{Cell, Error, Float, Result, StepRefs};
use serde::{Deserialize, Serialize};

use crate::JacobianConfig;
use crate::linalg::{singular_values, sym_eigen};

/// σ₁ of the product of `lag` step Jacobians ending at the reference step T_r:
/// ‖∂s_{T_r}/∂s_{T_r−lag}‖₂ = ‖J_{T_r}·…·J_{T_r−lag+1}‖₂, per example.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LagNorm {
    /// The number of step Jacobians in the product.
    pub lag: usize,
    /// σ₁ for each batch row (each example's own Jacobian; rows do not mix).
    pub sigma_max: Vec<f64>,
    /// Block iterations run, each one product with the block of probe vectors (a forward
    /// sweep) and one with the transpose (a backward sweep): 2·lag step products each (of
    /// `BLOCK` (2) vectors per row, one batch when the cell's buffers tile), after one backward
    /// sweep of the start vectors.
    pub iterations: usize,
    /// Whether every row met the tolerance within `max_iters`.
    pub converged: bool,
}

/// The singular values of one step's state Jacobian ∂s_t/∂s_{t−1} for one example, built
/// column by column from [`Cell::jvp_state`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepSvd {
    /// The step t.
    pub step: usize,
    /// The batch row.
    pub row: usize,
    /// The singular values, largest first.
    pub singular_values: Vec<f64>,
}

/// Pascanu, Mikolov & Bengio (2013, §3.1): for h_t = φ(W_hh h_{t−1} + …) with |φ′| ≤ γ, the
/// step Jacobian's norm is at most γ·σ₁(W_hh), so σ₁(W_hh) < 1/γ is sufficient for the
/// gradient to vanish exponentially (γ = 1 for tanh, ¼ for sigmoid).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Pascanu {
    /// The cell has a single `[H, H]` recurrent weight `w_hh` and reports γ.
    Applicable {
        /// γ = sup |φ′| (from the cell's [`rnnlab_core::Probe::derivative_bound`]).
        gamma: f64,
        /// σ₁(W_hh).
        sigma_max: f64,
        /// ρ(W_hh) = |λ₁|.
        spectral_radius: f64,
        /// 1/γ.
        bound: f64,
        /// σ₁(W_hh) < 1/γ: vanishing is guaranteed (the converse does not hold).
        vanishing_guaranteed: bool,
    },
    /// Why the condition does not apply.
    NotApplicable {
        /// The reason.
        reason: String,
    },
}

/// The Jacobian analysis of one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JacobianReport {
    /// The layer.
    pub layer: usize,
    /// The step the products end at.
    pub reference_step: usize,
    /// σ₁ of the product per lag.
    pub lags: Vec<LagNorm>,
    /// The one-step singular values at the reference step, if state_width ≤ `svd_max_width`.
    pub step_svd: Option<StepSvd>,
    /// Pascanu et al.'s sufficient condition for vanishing.
    pub pascanu: Pascanu,
}

/// The Jacobian analysis of every layer of the pass in `cache` (which must be `model`'s latest
/// forward pass: the cells' Jacobian products use the weights of that pass), with products
/// ending at `reference_step` (`None` = T−1).
///
/// Each example's Jacobian is its own (batch rows do not mix; not true of batch norm in
/// training mode, whose statistics couple the rows: switch it to evaluation first), so the
/// iteration (block Lanczos, see [`product_norm`]) runs on all rows at once. It keeps a block
/// of `BLOCK` (2) probe vectors per row and, when the cell's step buffers can be tiled (checked
/// once per layer, see [`product_norm`]), runs the whole block as one batch of
/// `BLOCK · batch` rows through `jvp_state`/`step_backward` (a matrix–matrix product per
/// step, which reads the weights once for both vectors). Every product ends at the same step,
/// so they share the space of their left singular vectors: the lags are run shortest first,
/// each warm-started from the previous one's top left Ritz vectors (the top left vectors
/// change slowly with the lag, so the long, expensive products start close to their answer).
/// Cost per lag k: 2k step products (of the block) per iteration plus k for the start; LSTM
/// H = 512, T = 200, B = 1, f32, default lags, seeds 1..=10 of the `jacobian_cost` example:
/// 5,100–6,300 two-vector step products (a single vector needed 5,300–8,700 one-vector ones:
/// the block needs fewer iterations where the top singular values are close, and does not
/// settle on the second one there).
///
/// # Errors
/// [`Error::Config`] for an invalid `cfg`, a lag past the trace, or a reference step past it;
/// [`Error::Shape`] for a cache of another model; [`Error::NonFinite`] if a product overflows;
/// any error of the cell's products.
pub fn jacobian_analysis<F: Float, C: Cell<F>>(
    model: &Recurrent<F, C>,
    cache: &SeqCache<F>,
    reference_step: Option<usize>,
    cfg: &JacobianConfig,
) -> Result<Vec<JacobianReport>> {
    let op = "jacobian_analysis";
    cfg.validate()?;
    let t_len = cache.time();
    let end = reference_step.unwrap_or(t_len.saturating_sub(1));
    if end >= t_len {
        return Err(Error::config(op, format!("reference step {end} is past the trace of {t_len} steps")));
    }
    let lags = match &cfg.lags {
        Some(l) => l.clone(),
        None => default_lags(end + 1),
    };
    if let Some(&bad) = lags.iter().find(|&&k| k > end + 1) {
        return Err(Error::config(op, format!("lag {bad} needs more than the {} steps up to the reference", end + 1)));
    }
    let mut out = Vec::with_capacity(model.n_layers());
    for (l, cell) in model.layers().iter().enumerate() {
        // Shortest lag first, each warm-started from the previous (shorter) lag's left vectors:
        // every product ends at step `end`, and the top left singular vectors change slowly
        // with the lag, so the long (expensive) products start close to their answer.
        let mut order: Vec<usize> = (0..lags.len()).collect();
        order.sort_by_key(|&i| lags[i]);
        let mut norms: Vec<Option<LagNorm>> = vec![None; lags.len()];
        let mut sweep = Sweep::new(cell, cache, l, end)?;
        let mut warm = None;
        for i in order {
            let (n, u) = block_norm(&mut sweep, lags[i], cfg, warm.take())?;
            norms[i] = Some(n);
            warm = Some(u);
        }
        let norms: Vec<LagNorm> = norms.into_iter().flatten().collect();
        let step_svd = if cell.state_width() <= cfg.svd_max_width {
            let row = cfg.svd_row;
            let j = step_jacobian(cell, cache, l, end, row)?;
            Some(StepSvd { step: end, row, singular_values: singular_values(j) })
        } else {
            None
        };
        out.push(JacobianReport { layer: l, reference_step: end, lags: norms, step_svd, pascanu: pascanu(cell)? });
    }
    Ok(out)
}

/// 1, 2, 4, … below `max`, then `max`.
fn default_lags(max: usize) -> Vec<usize> {
    let mut v = Vec::new();
    let mut k = 1;
    while k < max {
        v.push(k);
        k *= 2;
    }
    v.push(max);
    v
}

fn refs<'a, F: Float>(cache: &'a SeqCache<F>, l: usize, t: usize) -> Result<StepRefs<'a, F>> {
    cache
        .step_refs(l, t)
        .ok_or_else(|| Error::shape("jacobian_analysis", format!("a cache with layer {l}, step {t}"), "none"))
}

/// Divides each row of `v` by its norm, adding ln(norm) to `logs` (−∞ and the row left as is
/// when the norm is 0).
fn normalise_rows<F: Float>(v: &mut ArrayViewMut2<'_, F>, logs: &mut [f64]) -> Result<()> {
    for (mut row, lg) in v.axis_iter_mut(Axis(0)).zip(logs.iter_mut()) {
        let n = row.iter().map(|x| x.as_f64().powi(2)).sum::<f64>().sqrt();
        if !n.is_finite() {
            return Err(Error::non_finite("jacobian_analysis", "a Jacobian product (overflow or NaN)"));
        }
        if n > 0.0 {
            let inv = F::of(1.0 / n);
            row.mapv_inplace(|x| x * inv);
            *lg += n.ln();
        } else {
            *lg = f64::NEG_INFINITY;
        }
    }
    Ok(())
}

/// σ₁ of ∂s_end/∂s_{end−lag} for every batch row from a seeded random start, by block Lanczos
/// on PᵀP for the product P = J_end·…·J_{end−lag+1}, applied through the cell's products
/// (never formed); see [`jacobian_analysis`] for how the lags share their work.
///
/// Each row keeps an orthonormal basis V of right vectors (at step end−lag) with P·V and
/// Pᵀ·P·V. An iteration takes the next block of `BLOCK` (2) vectors (the part of Pᵀ·P·V of the
/// last block outside V, i.e. the block Krylov space of PᵀP grows by one power; the first
/// block is Pᵀ applied to the start vectors), applies P to it (a forward sweep through
/// `jvp_state`) and Pᵀ to the result (a backward sweep through `step_backward`, the VJP),
/// and computes the Ritz values: the singular values of P·V, the largest of which, θ₁, is
/// the largest ‖P·v‖ over the whole Krylov space so far, a lower bound of σ₁ that converges
/// much faster than a power iteration's (Golub & Van Loan, *Matrix Computations*, §10.3–10.4;
/// the block gains when the top singular values are close, Golub & Underwood 1977). The
/// residual ρ = ‖Pᵀũ − θ₁ṽ‖ of the top Ritz triple (ṽ = V·y, ũ = P·ṽ/θ₁, so P·ṽ = θ₁ũ exactly)
/// is known without another product, from Pᵀ·P·V. A row is done when the estimated relative
/// error of θ₁ (the Kato–Temple bound, see `error_bound` in the source) is at most `cfg.tol`,
/// or the Krylov space is the whole state space or stops growing (θ₁ is then exact up to
/// rounding). Vectors are fully reorthogonalised in f64, and the basis restarts from the
/// top `BLOCK` (2) Ritz vectors once it holds `MAX_BASIS` (32); memory: about 3·`MAX_BASIS`
/// vectors of `[batch, state_width]` f64. Every product is divided by a fixed per-row scale
/// (the largest norm of the first P·V), so the entries are O(1) whatever σ₁.
///
/// The block runs as one batch of `BLOCK · batch` rows when the cell's step buffers tile:
/// `cache_len(BLOCK · batch) = BLOCK · cache_len(batch)` and the cell's products on the step
/// buffers repeated `BLOCK` times agree (to 1e-4 of their largest value) with the products
/// of each copy on the original ones, checked on one step per layer (true of the plain cells,
/// whose buffers are laid out row by row). Otherwise the block is one vector (a single-vector
/// Lanczos, equivalent to Golub–Kahan bidiagonalisation).
///
/// # Errors
/// As [`jacobian_analysis`].
pub fn product_norm<F: Float, C: Cell<F>>(
    cell: &C,
    cache: &SeqCache<F>,
    layer: usize,
    end: usize,
    lag: usize,
    cfg: &JacobianConfig,
) -> Result<LagNorm> {
    let mut sweep = Sweep::new(cell, cache, layer, end)?;
    block_norm(&mut sweep, lag, cfg, None).map(|(n, _)| n)
}

/// Probe vectors per batch row, run as one batch when the cell's buffers tile.
const BLOCK: usize = 2;

/// Right vectors kept per row before the basis restarts from its top `BLOCK` (2) Ritz vectors.
const MAX_BASIS: usize = 32;

/// A candidate vector counts as dependent on the basis when orthogonalising leaves less than
/// this fraction of its norm.
const DEFLATE: f64 = 1e-12;

/// Writes the step buffers of `step` repeated `n` times (copy c in rows c·batch..) into the
/// tiles.
fn tile<F: Float>(
    step: &StepRefs<'_, F>,
    n: usize,
    xp: &mut Array2<F>,
    prev: &mut Array2<F>,
    next: &mut Array2<F>,
    cache: &mut [F],
) -> Result<()> {
    let b = step.prev.nrows();
    let l = step.cache.len();
    let fits = xp.dim() == (n * b, step.xp.ncols())
        && step.xp.nrows() == b
        && prev.dim() == (n * b, step.prev.ncols())
        && next.dim() == (n * b, step.next.ncols())
        && step.next.nrows() == b
        && cache.len() == n * l;
    if !fits {
        return Err(Error::shape("jacobian_analysis", "the same step buffers at every step", "another layout"));
    }
    for c in 0..n {
        let rows = s![c * b..(c + 1) * b, ..];
        xp.slice_mut(rows).assign(&step.xp);
        prev.slice_mut(rows).assign(&step.prev);
        next.slice_mut(rows).assign(&step.next);
        cache[c * l..(c + 1) * l].copy_from_slice(step.cache);
    }
    Ok(())
}

/// The largest |a − b| over the largest |b| (0 for two zero arrays).
fn rel_diff<F: Float>(a: ArrayView2<'_, F>, b: ArrayView2<'_, F>) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.as_f64().abs()));
    let diff = a.iter().zip(b.iter()).fold(0.0f64, |m, (x, y)| m.max((x.as_f64() - y.as_f64()).abs()));
    if diff == 0.0 { 0.0 } else { diff / scale }
}

/// Whether the cell's products on step `t`'s buffers repeated `n` times equal, copy by copy,
/// its products on the buffers themselves (see [`product_norm`]).
fn tiling_works<F: Float, C: Cell<F>>(cell: &C, cache: &SeqCache<F>, layer: usize, t: usize, n: usize) -> Result<bool> {
    let (b, sw) = (cache.batch(), cell.state_width());
    let step = refs(cache, layer, t)?;
    if cell.cache_len(n * b) != n * cell.cache_len(b) || step.cache.len() != cell.cache_len(b) {
        return Ok(false);
    }
    let mut xp = Array2::zeros((n * b, step.xp.ncols()));
    let mut prev = Array2::zeros((n * b, step.prev.ncols()));
    let mut next = Array2::zeros((n * b, step.next.ncols()));
    let mut tc = vec![F::zero(); n * step.cache.len()];
    tile(&step, n, &mut xp, &mut prev, &mut next, &mut tc)?;
    let tiled = StepRefs { t: step.t, xp: xp.view(), prev: prev.view(), next: next.view(), cache: &tc };
    let v = Array2::from_shape_fn((n * b, sw), |(i, j)| F::of(((i * 7 + j * 13) % 17) as f64 / 17.0 - 0.5));
    let (mut y, mut y1) = (Array2::zeros((n * b, sw)), Array2::zeros((b, sw)));
    let mut scratch = vec![F::zero(); cell.scratch_len(n * b).max(cell.scratch_len(b))];
    let (mut dxp, mut drec) = (Array2::zeros((n * b, cell.proj_dim())), Array2::zeros((n * b, cell.rec_grad_dim())));
    for back in [false, true] {
        let batched = if back {
            cell.step_backward(tiled, v.view(), y.view_mut(), dxp.view_mut(), drec.view_mut(), &mut scratch)
        } else {
            cell.jvp_state(tiled, v.view(), y.view_mut(), &mut scratch)
        };
        if batched.is_err() {
            return Ok(false);
        }
        for c in 0..n {
            let rows = s![c * b..(c + 1) * b, ..];
            if back {
                let (dxp1, drec1) = (dxp.slice_mut(s![..b, ..]), drec.slice_mut(s![..b, ..]));
                cell.step_backward(step, v.slice(rows), y1.view_mut(), dxp1, drec1, &mut scratch)?;
            } else {
                cell.jvp_state(step, v.slice(rows), y1.view_mut(), &mut scratch)?;
            }
            let d = rel_diff(y.slice(rows), y1.view());
            if d.is_nan() || d > 1e-4 {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The products P = J_end·…·J_{first} and Pᵀ applied to a block of vectors per batch row,
/// step by step, with every vector renormalised after every step (its scale kept as a
/// logarithm, so nothing under- or overflows whatever the lag). Vector c of batch row r is row
/// c·batch + r. The buffers are allocated once per layer.
struct Sweep<'a, F: Float, C: Cell<F>> {
    cell: &'a C,
    cache: &'a SeqCache<F>,
    layer: usize,
    end: usize,
    /// Batch rows of the pass.
    b: usize,
    /// Vectors per row.
    copies: usize,
    /// The copies run as one batch (else one call per copy).
    tiled: bool,
    /// Copies holding a live vector in the current sweep.
    live: usize,
    x: Array2<F>,
    y: Array2<F>,
    dxp: Array2<F>,
    drec: Array2<F>,
    scratch: Vec<F>,
    xp_t: Array2<F>,
    prev_t: Array2<F>,
    next_t: Array2<F>,
    cache_t: Vec<F>,
    /// ln of each vector's norm of the last product (−∞ for a zero vector).
    logs: Vec<f64>,
}

impl<'a, F: Float, C: Cell<F>> Sweep<'a, F, C> {
    fn new(cell: &'a C, cache: &'a SeqCache<F>, layer: usize, end: usize) -> Result<Self> {
        let (b, sw) = (cache.batch(), cell.state_width());
        let n = BLOCK.min(sw).max(1);
        let tiled = n > 1 && tiling_works(cell, cache, layer, end, n)?;
        let copies = if tiled { n } else { 1 };
        let (rows, tile_rows) = (copies * b, if tiled { copies * b } else { 0 });
        let step = refs(cache, layer, end)?;
        Ok(Self {
            cell,
            cache,
            layer,
            end,
            b,
            copies,
            tiled,
            live: copies,
            x: Array2::zeros((rows, sw)),
            y: Array2::zeros((rows, sw)),
            dxp: Array2::zeros((rows, cell.proj_dim())),
            drec: Array2::zeros((rows, cell.rec_grad_dim())),
            scratch: vec![F::zero(); cell.scratch_len(rows)],
            xp_t: Array2::zeros((tile_rows, step.xp.ncols())),
            prev_t: Array2::zeros((tile_rows, step.prev.ncols())),
            next_t: Array2::zeros((tile_rows, step.next.ncols())),
            cache_t: vec![F::zero(); if tiled { copies * step.cache.len() } else { 0 }],
            logs: vec![0.0; rows],
        })
    }

    /// Loads vector c < `count[r]` of row r from `input` (`[batch, copies, state_width]`) for
    /// the rows not `done`, normalised in f64 (its ln norm in `logs`), 0 elsewhere.
    fn load(&mut self, input: &Array3<f64>, count: &[usize], done: &[bool]) {
        let b = self.b;
        self.live = 0;
        for c in 0..self.copies {
            for r in 0..b {
                let i = c * b + r;
                let mut row = self.x.row_mut(i);
                let src = input.slice(s![r, c, ..]);
                let n = src.iter().map(|x| x * x).sum::<f64>().sqrt();
                if !done[r] && c < count[r] && n > 0.0 && n.is_finite() {
                    row.zip_mut_with(&src, |d, &v| *d = F::of(v / n));
                    self.logs[i] = n.ln();
                    self.live = self.live.max(c + 1);
                } else {
                    row.fill(F::zero());
                    self.logs[i] = f64::NEG_INFINITY;
                }
            }
        }
    }

    /// One step's product on every vector: `x` ← J_t·`x` (or J_tᵀ·`x` when `back`), renormalised.
    fn apply(&mut self, t: usize, back: bool) -> Result<()> {
        let step = refs(self.cache, self.layer, t)?;
        let b = self.b;
        if self.tiled {
            tile(&step, self.copies, &mut self.xp_t, &mut self.prev_t, &mut self.next_t, &mut self.cache_t)?;
            let tiled = StepRefs {
                t: step.t,
                xp: self.xp_t.view(),
                prev: self.prev_t.view(),
                next: self.next_t.view(),
                cache: &self.cache_t,
            };
            if back {
                let (dxp, drec) = (self.dxp.view_mut(), self.drec.view_mut());
                self.cell.step_backward(tiled, self.x.view(), self.y.view_mut(), dxp, drec, &mut self.scratch)?;
            } else {
                self.cell.jvp_state(tiled, self.x.view(), self.y.view_mut(), &mut self.scratch)?;
            }
        } else {
            for c in 0..self.live {
                let rows = s![c * b..(c + 1) * b, ..];
                let (x, y) = (self.x.slice(rows), self.y.slice_mut(rows));
                if back {
                    let (dxp, drec) = (self.dxp.slice_mut(rows), self.drec.slice_mut(rows));
                    self.cell.step_backward(step, x, y, dxp, drec, &mut self.scratch)?;
                } else {
                    self.cell.jvp_state(step, x, y, &mut self.scratch)?;
                }
            }
        }
        std::mem::swap(&mut self.x, &mut self.y);
        normalise_rows(&mut self.x.view_mut(), &mut self.logs)
    }

    /// `x` ← the directions of P·v (`back`: Pᵀ·u) for the vectors of `input` (see
    /// [`Sweep::load`]) with P = J_end·…·J_first, `logs` ← ln of their norms.
    fn run(&mut self, first: usize, input: &Array3<f64>, count: &[usize], done: &[bool], back: bool) -> Result<()> {
        self.load(input, count, done);
        if self.live == 0 {
            return Ok(());
        }
        if back {
            for t in (first..=self.end).rev() {
                self.apply(t, true)?;
            }
        } else {
            for t in first..=self.end {
                self.apply(t, false)?;
            }
        }
        Ok(())
    }

    /// ln of the norm of vector c of row r after the last sweep.
    fn log(&self, r: usize, c: usize) -> f64 {
        self.logs.get(c * self.b + r).copied().unwrap_or(f64::NEG_INFINITY)
    }

    /// Vector c of row r after the last sweep divided by e^`scale` (the row's fixed scale),
    /// in f64.
    fn scaled(&self, r: usize, c: usize, scale: f64, mut out: ArrayViewMut1<'_, f64>) -> Result<()> {
        let lg = self.log(r, c);
        let k = if lg == f64::NEG_INFINITY { 0.0 } else { (lg - scale).exp() };
        if !k.is_finite() {
            return Err(Error::non_finite("product_norm", "a Jacobian product far above the first one (overflow)"));
        }
        out.zip_mut_with(&self.x.row(c * self.b + r), |o, &x| *o = k * x.as_f64());
        Ok(())
    }
}

/// Σᵢ `y`ᵢ·`rows`ᵢ, row by row (contiguous, unlike `y.dot(rows)`).
fn combine(y: ArrayView1<'_, f64>, rows: ArrayView2<'_, f64>) -> Array1<f64> {
    let mut out = Array1::zeros(rows.ncols());
    for (&c, row) in y.iter().zip(rows.rows()) {
        out.zip_mut_with(&row, |o, &x| *o += c * x);
    }
    out
}

/// `w` minus its projections on the (orthonormal) rows `basis`, twice ("twice is enough":
/// Giraud et al. 2005), and its norm afterwards.
fn orthogonalise(w: &mut [f64], basis: ArrayView2<'_, f64>) -> f64 {
    for _ in 0..2 {
        for q in basis.rows() {
            let d: f64 = w.iter().zip(q).map(|(a, b)| a * b).sum();
            w.iter_mut().zip(q).for_each(|(a, b)| *a -= d * b);
        }
    }
    w.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Orthonormalises the first `count` rows of `cand` against the rows of `basis` and against
/// each other, packing the independent ones first (a row that keeps less than [`DEFLATE`] of
/// its norm is dropped) and zeroing the rest; returns how many were kept.
fn orth_block(mut cand: ArrayViewMut2<'_, f64>, count: usize, basis: ArrayView2<'_, f64>, w: &mut [f64]) -> usize {
    let mut kept = 0;
    for c in 0..count.min(cand.nrows()) {
        w.iter_mut().zip(cand.row(c)).for_each(|(d, &s)| *d = s);
        let n0 = w.iter().map(|x| x * x).sum::<f64>().sqrt();
        if !(n0 > 0.0 && n0.is_finite()) {
            continue;
        }
        orthogonalise(w, basis);
        let n1 = orthogonalise(w, cand.slice(s![..kept, ..]));
        if n1 > DEFLATE * n0 {
            cand.row_mut(kept).iter_mut().zip(w.iter()).for_each(|(d, &s)| *d = s / n1);
            kept += 1;
        }
    }
    for mut row in cand.rows_mut().into_iter().skip(kept) {
        row.fill(0.0);
    }
    kept
}

/// The estimated relative error of the top Ritz value θ₁, from the residual ρ of the top Ritz
/// triple (‖P·ṽ − θ₁ũ‖ or ‖Pᵀũ − θ₁ṽ‖, the other one being 0) and `ratio2`, an estimate of
/// σ₂/σ₁. Kato–Temple on P·Pᵀ (Parlett, *The Symmetric Eigenvalue Problem*, §10.2; residual
/// θ₁ρ there): σ₁² − θ₁² ≤ θ₁²ρ²/(θ₁² − σ₂²), so (σ₁ − θ₁)/θ₁ ≤ (ρ/θ₁)²/(2(1 − σ₂²/θ₁²)).
/// σ₂ is not known: the caller passes the largest θ₂/θ₁ seen so far (θ₂ ≤ σ₂ by interlacing,
/// so this can underestimate σ₂), and the factor ½ is dropped as the margin for that
/// estimate. Never above ρ/θ₁, the distance to the nearest singular value, which needs no gap
/// (and is all there is before a second Ritz value exists).
fn error_bound(theta: f64, ratio2: f64, res: f64) -> f64 {
    if theta <= 0.0 {
        return if res <= 0.0 { 0.0 } else { f64::INFINITY };
    }
    let rel = res / theta;
    let gap = 1.0 - ratio2 * ratio2;
    if gap > 0.0 { rel.min(rel * rel / gap) } else { rel }
}

/// σ₁ of P = J_end·…·J_{end−lag+1} for every row by block Lanczos (see [`product_norm`]) from
/// the left vectors `start` (`[batch, copies, state_width]`, at step `end`, completed with
/// seeded random ones; all random if `None`). Returns the top left Ritz vectors too, the warm
/// start of a neighbouring lag.
fn block_norm<F: Float, C: Cell<F>>(
    sweep: &mut Sweep<'_, F, C>,
    lag: usize,
    cfg: &JacobianConfig,
    start: Option<Array3<f64>>,
) -> Result<(LagNorm, Array3<f64>)> {
    let op = "product_norm";
    let end = sweep.end;
    if lag == 0 || lag > end + 1 {
        return Err(Error::config(op, format!("lag must be in 1..={}, got {lag}", end + 1)));
    }
    let (b, n, sw) = (sweep.b, sweep.copies, sweep.cell.state_width());
    if sw == 0 {
        // the product of empty matrices: σ₁ = 0, exactly
        return Ok((
            LagNorm { lag, sigma_max: vec![0.0; b], iterations: 0, converged: true },
            Array3::zeros((b, n, 0)),
        ));
    }
    let first = end + 1 - lag;
    // The basis holds at most `mb` vectors: the whole space if MAX_BASIS (or two blocks) covers
    // it, else it restarts. Every index below is in range: r < b, c < count[r] ≤ n, and
    // m[r] + count[r] ≤ mb (the next block is capped at mb − m[r], after a restart if needed).
    let cap = MAX_BASIS.max(2 * n);
    let mb = if cap >= sw { sw } else { cap };
    let mut vs = Array3::<f64>::zeros((b, mb, sw));
    let mut pvs = Array3::<f64>::zeros((b, mb, sw));
    let mut gs = Array3::<f64>::zeros((b, mb, sw));
    let mut m = vec![0usize; b];
    let mut rng = rnnlab_core::seeded_rng(cfg.seed);
    let mut block = Array3::<f64>::from_shape_fn((b, n, sw), |_| rng.random::<f64>() - 0.5);
    if let Some(u) = start.filter(|u| u.dim() == (b, n, sw)) {
        for r in 0..b {
            for c in 0..n {
                let src = u.slice(s![r, c, ..]);
                let nu = src.iter().map(|x| x * x).sum::<f64>();
                if nu > 0.0 && nu.is_finite() {
                    block.slice_mut(s![r, c, ..]).assign(&src);
                }
            }
        }
    }
    let mut w = vec![0.0f64; sw];
    let none = Array2::<f64>::zeros((0, sw));
    let mut count: Vec<usize> =
        (0..b).map(|r| orth_block(block.index_axis_mut(Axis(0), r), n, none.view(), &mut w)).collect();
    let mut done = vec![false; b];
    // the first right block: Pᵀ·U₀
    sweep.run(first, &block, &count, &done, true)?;
    for r in 0..b {
        for c in 0..count[r] {
            let own = sweep.log(r, c);
            sweep.scaled(r, c, own, block.slice_mut(s![r, c, ..]))?;
        }
        count[r] = orth_block(block.index_axis_mut(Axis(0), r), count[r], none.view(), &mut w);
        // Pᵀ·U₀ = 0: reported as σ₁ = 0, as a power iteration would
        done[r] = count[r] == 0;
    }
    let mut scale = vec![f64::NAN; b];
    let mut sigma = vec![0.0f64; b];
    let mut ratio2 = vec![0.0f64; b];
    let mut left = Array3::<f64>::zeros((b, n, sw));
    let mut pblock = Array3::<f64>::zeros((b, n, sw));
    let mut iterations = 0;
    while iterations < cfg.max_iters && done.iter().any(|d| !d) {
        iterations += 1;
        // P·X
        sweep.run(first, &block, &count, &done, false)?;
        for r in 0..b {
            if done[r] {
                continue;
            }
            if scale[r].is_nan() {
                let s = (0..count[r]).map(|c| sweep.log(r, c)).fold(f64::NEG_INFINITY, f64::max);
                if s == f64::NEG_INFINITY {
                    done[r] = true;
                    continue;
                }
                scale[r] = s;
            }
            for c in 0..count[r] {
                let k = m[r] + c;
                vs.slice_mut(s![r, k, ..]).assign(&block.slice(s![r, c, ..]));
                sweep.scaled(r, c, scale[r], pvs.slice_mut(s![r, k, ..]))?;
                pblock.slice_mut(s![r, c, ..]).assign(&pvs.slice(s![r, k, ..]));
            }
        }
        // Pᵀ·P·X
        sweep.run(first, &pblock, &count, &done, true)?;
        for r in 0..b {
            if done[r] {
                continue;
            }
            for c in 0..count[r] {
                sweep.scaled(r, c, scale[r], gs.slice_mut(s![r, m[r] + c, ..]))?;
            }
            let mm = m[r] + count[r];
            m[r] = mm;
            // Rayleigh–Ritz: the Ritz values are the singular values of P·V, the square roots of
            // the eigenvalues of (P·V)ᵀ(P·V)
            let (lam, y) = {
                let pv = pvs.slice(s![r, ..mm, ..]);
                sym_eigen(&pv.dot(&pv.t()))
            };
            let y0 = y.row(0);
            let v = combine(y0, vs.slice(s![r, ..mm, ..]));
            let pv0 = combine(y0, pvs.slice(s![r, ..mm, ..]));
            let g0 = combine(y0, gs.slice(s![r, ..mm, ..]));
            let theta = pv0.dot(&pv0).sqrt();
            if theta == 0.0 {
                // P·V = 0 on the whole Krylov space: reported as σ₁ = 0
                sigma[r] = 0.0;
                done[r] = true;
                continue;
            }
            let res = g0.iter().zip(&v).map(|(g, v)| (g / theta - theta * v).powi(2)).sum::<f64>().sqrt();
            let second = lam.get(1).map_or(0.0, |l| l.max(0.0).sqrt());
            ratio2[r] = ratio2[r].max(second / theta);
            sigma[r] = theta * scale[r].exp();
            let k = n.min(mm);
            for i in 0..n {
                let mut u = left.slice_mut(s![r, i, ..]);
                u.fill(0.0);
                if i < k {
                    let ui = combine(y.row(i), pvs.slice(s![r, ..mm, ..]));
                    let nu = ui.dot(&ui).sqrt();
                    if nu > 0.0 {
                        u.zip_mut_with(&ui, |d, &s| *d = s / nu);
                    }
                }
            }
            // with mm = sw the Krylov space is the whole space: θ is exact
            if error_bound(theta, ratio2[r], res) <= cfg.tol || mm == sw {
                done[r] = true;
                continue;
            }
            let last = if mb < sw && mm + n > mb {
                // restart from the top k Ritz vectors (V·Y, with P·V·Y and PᵀP·V·Y by linearity)
                for a in [&mut vs, &mut pvs, &mut gs] {
                    let kept: Vec<Array1<f64>> = (0..k).map(|i| combine(y.row(i), a.slice(s![r, ..mm, ..]))).collect();
                    for (i, row) in kept.iter().enumerate() {
                        a.slice_mut(s![r, i, ..]).assign(row);
                    }
                }
                m[r] = k;
                0..k
            } else {
                mm - count[r]..mm
            };
            // the next block: PᵀP of the last block (or of the kept Ritz vectors) outside V
            let take = last.len().min(n).min(mb - m[r]);
            let mut nb = block.index_axis_mut(Axis(0), r);
            nb.fill(0.0);
            nb.slice_mut(s![..take, ..]).assign(&gs.slice(s![r, last.start..last.start + take, ..]));
            count[r] = orth_block(nb, take, vs.slice(s![r, ..m[r], ..]), &mut w);
            // the Krylov space stopped growing: it is invariant, θ is exact
            done[r] = count[r] == 0;
        }
    }
    let converged = done.iter().all(|&d| d);
    Ok((LagNorm { lag, sigma_max: sigma, iterations, converged }, left))
}

/// One example's step Jacobian ∂s_t/∂s_{t−1} `[state_width, state_width]` in f64, column j
/// from `jvp_state` of the unit vector e_j (all rows at once; row `row` kept).
///
/// # Errors
/// [`Error::Config`] for a row past the batch; as [`jacobian_analysis`] otherwise.
pub fn step_jacobian<F: Float, C: Cell<F>>(
    cell: &C,
    cache: &SeqCache<F>,
    layer: usize,
    t: usize,
    row: usize,
) -> Result<Array2<f64>> {
    let (b, sw) = (cache.batch(), cell.state_width());
    if row >= b {
        return Err(Error::config("step_jacobian", format!("row {row} is past the batch of {b}")));
    }
    let step = refs(cache, layer, t)?;
    let mut v = Array2::<F>::zeros((b, sw));
    let mut y = Array2::<F>::zeros((b, sw));
    let mut scratch = vec![F::zero(); cell.scratch_len(b)];
    let mut j = Array2::<f64>::zeros((sw, sw));
    for c in 0..sw {
        v.column_mut(c).fill(F::one());
        cell.jvp_state(step, v.view(), y.view_mut(), &mut scratch)?;
        v.column_mut(c).fill(F::zero());
        for (dst, src) in j.column_mut(c).iter_mut().zip(y.row(row)) {
            *dst = src.as_f64();
        }
    }
    if j.iter().any(|x| !x.is_finite()) {
        return Err(Error::non_finite("step_jacobian", format!("the Jacobian of layer {layer} step {t}")));
    }
    Ok(j)
}

/// Pascanu et al.'s condition for a cell with a single `[H, H]` parameter named `w_hh` whose
/// probe reports γ; "not applicable" (with the reason) otherwise.
///
/// # Errors
/// [`Error::NonFinite`] for a NaN or infinite `w_hh`.
pub fn pascanu<F: Float, C: Cell<F>>(cell: &C) -> Result<Pascanu> {
    let h = cell.hidden_dim();
    let mut w: Option<Array2<f64>> = None;
    let mut shape = None;
    cell.visit_params(&mut |name, p| {
        if name == "w_hh" {
            shape = Some(p.value.shape().to_vec());
            if p.value.shape() == [h, h] {
                w = p.value.to_owned().into_shape_with_order((h, h)).ok().map(|a| a.mapv(|x| x.as_f64()));
            }
        }
    });
    let na = |reason: String| Ok(Pascanu::NotApplicable { reason });
    let Some(w) = w else {
        return match shape {
            Some(s) => na(format!("w_hh is {s:?}, not one [{h}, {h}] matrix (a gated cell)")),
            None => na("the cell has no parameter named w_hh".into()),
        };
    };
    let Some(gamma) = cell.probe().and_then(|p| p.derivative_bound()) else {
        return na(format!(
            "the {} cell reports no activation-derivative bound γ (its step Jacobian is not diag(φ′)·W_hh)",
            cell.name()
        ));
    };
    let sigma_max = rnnlab_init::max_singular_value(&w)?;
    let spectral_radius = rnnlab_init::spectral_radius(&w)?;
    let bound = 1.0 / gamma;
    Ok(Pascanu::Applicable { gamma, sigma_max, spectral_radius, bound, vanishing_guaranteed: sigma_max < bound })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rnnlab_cells::{LstmConfig, NormConfig, NormLstmConfig, NormPlacement};

    fn pass<C: Cell<f64>>(cell: C, b: usize) -> (Recurrent<f64, C>, SeqCache<f64>) {
        let mut model = Recurrent::new(vec![cell]).unwrap();
        let x = Array3::from_shape_fn((4, b, 3), |(t, r, i)| ((t * 5 + r * 3 + i) % 7) as f64 / 7.0 - 0.4);
        let fwd = model.forward(x.view(), None).unwrap();
        (model, fwd.cache)
    }

    #[test]
    fn tiling_is_used_where_the_buffers_tile_and_refused_where_they_do_not() {
        // A plain LSTM lays its buffers out row by row: the block runs as one batch. A layer-norm
        // LSTM keeps its normalisers first and each quantity as a [batch, ·] block, so the
        // repeated buffers are not its layout at 2·batch: the check refuses, and the block falls
        // back to one vector (the matches with the explicit products are in crate::tests).
        let mut rng = rnnlab_core::seeded_rng(3);
        for b in [1, 3] {
            let (m, c) = pass(LstmConfig::new(3, 5).init::<f64>(&mut rng).unwrap(), b);
            let s = Sweep::new(&m.layers()[0], &c, 0, 3).unwrap();
            assert!(s.tiled && s.copies == BLOCK, "plain LSTM, batch {b}");
            let cell = NormLstmConfig::new(LstmConfig::new(3, 5), NormConfig::layer(NormPlacement::Full))
                .init::<f64>(&mut rng)
                .unwrap();
            let (m, c) = pass(cell, b);
            let s = Sweep::new(&m.layers()[0], &c, 0, 3).unwrap();
            assert!(!s.tiled && s.copies == 1, "layer-norm LSTM, batch {b}");
        }
    }
}
