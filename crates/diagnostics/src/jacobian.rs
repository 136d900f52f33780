//! Jacobian analysis through state-Jacobian products only: σ₁ of Π ∂s_j/∂s_{j−1} per lag by
//! Golub–Kahan–Lanczos bidiagonalisation, the singular values of one step's Jacobian, and
//! Pascanu et al.'s bound.

use ndarray::{Array2, Array3, ArrayView2, ArrayViewMut2, Axis, s};
use rand::Rng as _;
use rnnlab_cells::{Recurrent, SeqCache};
use rnnlab_core::{Cell, Error, Float, Result, StepRefs};
use serde::{Deserialize, Serialize};

use crate::JacobianConfig;
use crate::linalg::{TopTriple, singular_values, top_singular_triple};

/// σ₁ of the product of `lag` step Jacobians ending at the reference step T_r:
/// ‖∂s_{T_r}/∂s_{T_r−lag}‖₂ = ‖J_{T_r}·…·J_{T_r−lag+1}‖₂, per example.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LagNorm {
    /// The number of step Jacobians in the product.
    pub lag: usize,
    /// σ₁ for each batch row (each example's own Jacobian; rows do not mix).
    pub sigma_max: Vec<f64>,
    /// Iterations run, each one product with the transpose (a backward sweep) and, unless the
    /// iteration stopped after that half, one with the product itself (a forward sweep):
    /// about 2·lag step products each.
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
/// iteration (Golub–Kahan–Lanczos, see [`product_norm`]) runs on all rows at once, one vector
/// per row, at the cost of one batch product per step. Every product ends at the same step, so
/// they share the space of their left singular vectors: the lags are run shortest first, each
/// warm-started from the previous one's top left Ritz vector (the top left vector changes
/// slowly with the lag, so the long, expensive products start close to their answer). Cost per
/// lag k: about 2k step products per iteration; LSTM H = 512, T = 200, B = 1, f32, default
/// lags: ~5,700 step products in all (the `jacobian_cost` example).
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
        // Shortest lag first, each warm-started from the previous (shorter) lag's left vector:
        // every product ends at step `end`, and the top left singular vector changes slowly
        // with the lag, so the long (expensive) products start close to their answer.
        let mut order: Vec<usize> = (0..lags.len()).collect();
        order.sort_by_key(|&i| lags[i]);
        let mut norms: Vec<Option<LagNorm>> = vec![None; lags.len()];
        let mut warm = None;
        for i in order {
            let (n, u) = product_norm_from(cell, cache, l, end, lags[i], cfg, warm.take())?;
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

/// σ₁ of ∂s_end/∂s_{end−lag} for every batch row from a seeded random start, by
/// Golub–Kahan–Lanczos bidiagonalisation of the product P = J_end·…·J_{end−lag+1} applied
/// through the cell's products (never formed); see [`jacobian_analysis`] for how the lags
/// share their work.
///
/// One iteration applies Pᵀ (through `step_backward`, the VJP) and P (through `jvp_state`),
/// like a power iteration on P·Pᵀ, but keeps every vector, so each Ritz value (σ₁ of the small
/// bidiagonal projection of P on the vectors so far) is the largest ‖P·v‖ over the whole
/// Krylov space: a lower bound of σ₁ that converges at a Chebyshev rather than a geometric
/// rate, which matters when the top singular values are close (Golub & Kahan 1965; Golub &
/// Van Loan, *Matrix Computations*, §10.4). A row is done when the estimated relative error
/// of its Ritz value (the Kato–Temple bound, see `error_bound` in the source) is at most
/// `cfg.tol`, or the Krylov space is the whole state space (the Ritz value is then exact).
/// Vectors are fully reorthogonalised (in f64) and the iteration restarts from its best left
/// vector after 24 steps; memory: about 50 vectors of `[batch, state_width]` f64.
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
    product_norm_from(cell, cache, layer, end, lag, cfg, None).map(|(n, _)| n)
}

/// Krylov vectors kept per side before the iteration restarts from its best left vector.
const MAX_BASIS: usize = 24;

/// The products P = J_end·…·J_{first} and Pᵀ applied to one vector per batch row, step by
/// step, with every row renormalised after every step (its scale kept as a logarithm, so
/// nothing under- or overflows whatever the lag). The buffers are allocated once.
struct Sweep<'a, F: Float, C: Cell<F>> {
    cell: &'a C,
    cache: &'a SeqCache<F>,
    layer: usize,
    first: usize,
    end: usize,
    x: Array2<F>,
    y: Array2<F>,
    dxp: Array2<F>,
    drec: Array2<F>,
    scratch: Vec<F>,
    /// ln of each row's norm of the last product (−∞ for a zero row).
    logs: Vec<f64>,
}

impl<'a, F: Float, C: Cell<F>> Sweep<'a, F, C> {
    fn new(cell: &'a C, cache: &'a SeqCache<F>, layer: usize, first: usize, end: usize) -> Self {
        let (b, sw) = (cache.batch(), cell.state_width());
        Self {
            cell,
            cache,
            layer,
            first,
            end,
            x: Array2::zeros((b, sw)),
            y: Array2::zeros((b, sw)),
            dxp: Array2::zeros((b, cell.proj_dim())),
            drec: Array2::zeros((b, cell.rec_grad_dim())),
            scratch: vec![F::zero(); cell.scratch_len(b)],
            logs: vec![0.0; b],
        }
    }

    fn load(&mut self, v: &Array2<f64>) -> Result<()> {
        self.x.zip_mut_with(v, |d, &s| *d = F::of(s));
        self.logs.iter_mut().for_each(|l| *l = 0.0);
        normalise_rows(&mut self.x.view_mut(), &mut self.logs)
    }

    /// `x` ← the direction of Pᵀ·`u` per row, `logs` ← ln of its norm.
    fn back(&mut self, u: &Array2<f64>) -> Result<()> {
        self.load(u)?;
        for t in (self.first..=self.end).rev() {
            let step = refs(self.cache, self.layer, t)?;
            let (dxp, drec) = (self.dxp.view_mut(), self.drec.view_mut());
            self.cell.step_backward(step, self.x.view(), self.y.view_mut(), dxp, drec, &mut self.scratch)?;
            std::mem::swap(&mut self.x, &mut self.y);
            normalise_rows(&mut self.x.view_mut(), &mut self.logs)?;
        }
        Ok(())
    }

    /// `x` ← the direction of P·`v` per row, `logs` ← ln of its norm.
    fn forward(&mut self, v: &Array2<f64>) -> Result<()> {
        self.load(v)?;
        for t in self.first..=self.end {
            let step = refs(self.cache, self.layer, t)?;
            self.cell.jvp_state(step, self.x.view(), self.y.view_mut(), &mut self.scratch)?;
            std::mem::swap(&mut self.x, &mut self.y);
            normalise_rows(&mut self.x.view_mut(), &mut self.logs)?;
        }
        Ok(())
    }

    /// Row `r` of the last product divided by e^`scale` (the row's fixed scale), in f64.
    fn scaled_row(&self, r: usize, scale: f64, out: &mut [f64]) -> Result<()> {
        let lg = self.logs.get(r).copied().unwrap_or(f64::NEG_INFINITY);
        let k = if lg == f64::NEG_INFINITY { 0.0 } else { (lg - scale).exp() };
        if !k.is_finite() {
            return Err(Error::non_finite("product_norm", "a Jacobian product far above the first one (overflow)"));
        }
        for (o, &x) in out.iter_mut().zip(self.x.row(r)) {
            *o = k * x.as_f64();
        }
        Ok(())
    }
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

/// `input` ← `src` in the rows not `done`, 0 in the others (a zero row costs nothing extra
/// and stays 0 through the products).
fn active_rows(input: &mut Array2<f64>, src: ArrayView2<'_, f64>, done: &[bool]) {
    for ((mut row, s), &d) in input.outer_iter_mut().zip(src.outer_iter()).zip(done) {
        row.zip_mut_with(&s, |x, &v| *x = if d { 0.0 } else { v });
    }
}

/// The lower-bidiagonal projection of P with `diag` on the diagonal and `sub` below it,
/// `[diag.len() + extra, diag.len()]` (extra = 0: square, 1: one more row).
fn bidiagonal(diag: &[f64], sub: &[f64], extra: usize) -> Array2<f64> {
    let n = diag.len();
    let mut m = Array2::zeros((n + extra, n));
    for (i, &d) in diag.iter().enumerate() {
        m[[i, i]] = d;
    }
    for (i, &e) in sub.iter().enumerate().take((n + extra).saturating_sub(1)) {
        m[[i + 1, i]] = e;
    }
    m
}

/// σ₁ of P = J_end·…·J_{end−lag+1} for every row by Golub–Kahan–Lanczos bidiagonalisation
/// (Golub & Kahan 1965) from the left vectors `start` (`[batch, state_width]`, at step `end`;
/// seeded random if `None`), with full reorthogonalisation and a restart from the best left
/// Ritz vector after [`MAX_BASIS`] steps.
///
/// One iteration applies Pᵀ (through `step_backward`, the VJP) and P (through `jvp_state`),
/// like a power iteration, but keeps every vector: with orthonormal U (at step `end`) and V
/// (at step end−lag), PᵀU_j = V_j B_jᵀ and P·V_j = U_{j+1}·C_j with B_j (square) and C_j (one
/// more row) lower bidiagonal, so σ₁ of B_j and C_j — the Ritz values — are the largest
/// ‖P·v‖ over the Krylov space so far: lower bounds of σ₁ that converge much faster than a
/// power iteration's (Chebyshev- rather than geometric rate, which matters when the top
/// singular values are close). After each half-iteration the residual of the top Ritz triple
/// is the next bidiagonal entry times the last component of its singular vector (no product
/// needed); [`error_bound`] turns it into the relative error estimate that is compared with
/// `tol` (a row is also done when the Krylov space is the whole state space, where the Ritz
/// value is exact, or at a breakdown, where it is exact too). Every product is divided by a fixed per-row scale (its first norm), so the
/// bidiagonal entries are O(1) whatever σ₁. Returns the best left Ritz vectors too, the warm
/// start of a neighbouring lag.
fn product_norm_from<F: Float, C: Cell<F>>(
    cell: &C,
    cache: &SeqCache<F>,
    layer: usize,
    end: usize,
    lag: usize,
    cfg: &JacobianConfig,
    start: Option<Array2<F>>,
) -> Result<(LagNorm, Array2<F>)> {
    let op = "product_norm";
    if lag == 0 || lag > end + 1 {
        return Err(Error::config(op, format!("lag must be in 1..={}, got {lag}", end + 1)));
    }
    let (b, sw) = (cache.batch(), cell.state_width());
    if sw == 0 {
        // the product of empty matrices: σ₁ = 0, exactly
        return Ok((LagNorm { lag, sigma_max: vec![0.0; b], iterations: 0, converged: true }, Array2::zeros((b, 0))));
    }
    let mut left = match start {
        Some(u) if u.dim() == (b, sw) => u.mapv(|x| x.as_f64()),
        _ => {
            let mut rng = rnnlab_core::seeded_rng(cfg.seed);
            Array2::<f64>::from_shape_fn((b, sw), |_| rng.random::<f64>() - 0.5)
        }
    };
    let m = MAX_BASIS.min(sw);
    // us[i] = u_{i+1}, vs[i] = v_{i+1}: the Lanczos vectors of every row. Every index below is
    // in range: r < b (the length of each per-row vector and the rows of every array), j < m
    // at a backward half (a restart resets j when it reaches m) and 1 ≤ j ≤ m at a forward
    // half (us has m + 1 slots), and sw ≥ 1.
    let mut us = Array3::<f64>::zeros((m + 1, b, sw));
    let mut vs = Array3::<f64>::zeros((m, b, sw));
    let (mut alpha, mut beta) = (Array2::<f64>::zeros((b, m)), Array2::<f64>::zeros((b, m)));
    let mut scale = vec![f64::NAN; b];
    let mut sigma = vec![0.0f64; b];
    let mut done = vec![false; b];
    let mut ratio2 = vec![0.0f64; b];
    let mut input = Array2::<f64>::zeros((b, sw));
    let mut w = vec![0.0f64; sw];
    let mut sweep = Sweep::new(cell, cache, layer, end + 1 - lag, end);
    let mut iterations = 0;
    // j: right vectors so far; restart: u_1 ← the best left Ritz vector
    let mut j = 0;
    let mut restart = true;
    while iterations < cfg.max_iters && done.iter().any(|d| !d) {
        if restart {
            for (r, mut u0) in us.index_axis_mut(Axis(0), 0).outer_iter_mut().enumerate() {
                let n = left.row(r).iter().map(|x| x * x).sum::<f64>().sqrt();
                if n > 0.0 && n.is_finite() {
                    u0.zip_mut_with(&left.row(r), |d, &s| *d = s / n);
                } else {
                    // a zero start row: P·Pᵀ has no direction to amplify yet, take e₁
                    u0.fill(0.0);
                    u0[0] = 1.0;
                }
            }
            j = 0;
        }
        iterations += 1;
        // v_{j+1}·a_{j+1} = Pᵀu_{j+1} − b_j·v_j
        active_rows(&mut input, us.index_axis(Axis(0), j), &done);
        sweep.back(&input)?;
        for r in 0..b {
            if done[r] {
                continue;
            }
            if scale[r].is_nan() {
                let lg = sweep.logs[r];
                if lg == f64::NEG_INFINITY {
                    // Pᵀu = 0 for the start vector: reported as σ₁ = 0, as a power iteration would
                    done[r] = true;
                    continue;
                }
                scale[r] = lg;
            }
            sweep.scaled_row(r, scale[r], &mut w)?;
            if j > 0 {
                let bj = beta[[r, j - 1]];
                w.iter_mut().zip(vs.slice(s![j - 1, r, ..])).for_each(|(x, v)| *x -= bj * v);
            }
            let a = orthogonalise(&mut w, vs.slice(s![..j, r, ..]));
            alpha[[r, j]] = a;
            if j == 0 {
                sigma[r] = a * scale[r].exp();
                left.row_mut(r).assign(&us.slice(s![0, r, ..]));
                done[r] = a == 0.0;
            } else {
                let c = bidiagonal(&alpha.slice(s![r, ..j]).to_vec(), &beta.slice(s![r, ..j]).to_vec(), 1);
                let TopTriple { sigma: theta, second, u: z, .. } = top_singular_triple(&c);
                sigma[r] = theta * scale[r].exp();
                left.row_mut(r).assign(&z.dot(&us.slice(s![..=j, r, ..])));
                let res = a * z.get(j).copied().unwrap_or(0.0).abs();
                ratio2[r] = ratio2[r].max(second / theta);
                done[r] = error_bound(theta, ratio2[r], res) <= cfg.tol || a == 0.0;
            }
            if !done[r] {
                vs.slice_mut(s![j, r, ..]).iter_mut().zip(&w).for_each(|(v, x)| *v = x / a);
            }
        }
        if done.iter().all(|&d| d) {
            break;
        }
        j += 1;
        // u_{j+1}·b_j = P·v_j − a_j·u_j
        active_rows(&mut input, vs.index_axis(Axis(0), j - 1), &done);
        sweep.forward(&input)?;
        for r in 0..b {
            if done[r] {
                continue;
            }
            sweep.scaled_row(r, scale[r], &mut w)?;
            let aj = alpha[[r, j - 1]];
            w.iter_mut().zip(us.slice(s![j - 1, r, ..])).for_each(|(x, u)| *x -= aj * u);
            let bn = orthogonalise(&mut w, us.slice(s![..j, r, ..]));
            beta[[r, j - 1]] = bn;
            let sq = bidiagonal(&alpha.slice(s![r, ..j]).to_vec(), &beta.slice(s![r, ..j - 1]).to_vec(), 0);
            let TopTriple { sigma: theta, second, u: z, v: y } = top_singular_triple(&sq);
            sigma[r] = theta * scale[r].exp();
            left.row_mut(r).assign(&z.dot(&us.slice(s![..j, r, ..])));
            let res = bn * y.get(j - 1).copied().unwrap_or(0.0).abs();
            // with j = state_width the Krylov space is the whole space: θ is exact
            ratio2[r] = ratio2[r].max(second / theta);
            done[r] = error_bound(theta, ratio2[r], res) <= cfg.tol || bn == 0.0 || j == sw;
            if !done[r] {
                us.slice_mut(s![j, r, ..]).iter_mut().zip(&w).for_each(|(u, x)| *u = x / bn);
            }
        }
        restart = j == m;
    }
    let converged = done.iter().all(|&d| d);
    Ok((LagNorm { lag, sigma_max: sigma, iterations, converged }, left.mapv(F::of)))
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
