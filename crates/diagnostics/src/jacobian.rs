//! Jacobian analysis through state-Jacobian products only: σ₁ of Π ∂s_j/∂s_{j−1} per lag by
//! power iteration, the singular values of one step's Jacobian, and Pascanu et al.'s bound.

use ndarray::{Array2, ArrayViewMut2, Axis};
use rand::Rng as _;
use rnnlab_cells::{Recurrent, SeqCache};
use rnnlab_core::{Cell, Error, Float, Result, StepRefs};
use serde::{Deserialize, Serialize};

use crate::JacobianConfig;
use crate::linalg::singular_values;

/// σ₁ of the product of `lag` step Jacobians ending at the reference step T_r:
/// ‖∂s_{T_r}/∂s_{T_r−lag}‖₂ = ‖J_{T_r}·…·J_{T_r−lag+1}‖₂, per example.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LagNorm {
    /// The number of step Jacobians in the product.
    pub lag: usize,
    /// σ₁ for each batch row (each example's own Jacobian; rows do not mix).
    pub sigma_max: Vec<f64>,
    /// Power iterations run.
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
/// power iteration runs on all rows at once, one vector per row, at the cost of one batch
/// product per step. Every product ends at the same step, so they share the space of their
/// left singular vectors: the lags are run longest first, each warm-started from the previous
/// one's left vector (for long products the top left vector hardly depends on the lag, and one
/// or two iterations suffice). Cost per lag k: 2k step products per iteration.
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
        // Longest lag first: its top left singular vector (at step `end`, shared by every
        // lag) converges fastest and warm-starts the shorter products.
        let mut order: Vec<usize> = (0..lags.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(lags[i]));
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

/// σ₁ of ∂s_end/∂s_{end−lag} for every batch row by power iteration on P·Pᵀ from a seeded
/// random start; see [`jacobian_analysis`] for how the lags share their iterations.
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

/// The power iteration on P·Pᵀ, P = J_end·…·J_{end−lag+1}, from the left vectors `start`
/// (`[batch, state_width]`, at step `end`; seeded random if `None`). One iteration: w = Pᵀu
/// through `step_backward` (the VJP) for steps end..=end−lag+1, then u = P·ŵ through
/// `jvp_state`; every vector is renormalised after every step (the scale kept in log space,
/// so nothing under- or overflows). ‖Pᵀu‖ and ‖Pŵ‖ are two successive lower bounds of σ₁
/// (‖Pᵀu‖² = ⟨u, PPᵀu⟩ ≤ ‖PPᵀu‖); the iteration stops when they agree to `tol` in every row.
/// Returns the last left vectors too, the warm start of a neighbouring lag.
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
    let first = end + 1 - lag;
    let (b, sw) = (cache.batch(), cell.state_width());
    let mut u = match start {
        Some(u) if u.dim() == (b, sw) => u,
        _ => {
            let mut rng = rnnlab_core::seeded_rng(cfg.seed);
            Array2::<F>::from_shape_fn((b, sw), |_| F::of(rng.random::<f64>() - 0.5))
        }
    };
    let mut logs = vec![0.0; b];
    normalise_rows(&mut u.view_mut(), &mut logs)?;
    let mut x = Array2::<F>::zeros((b, sw));
    let mut y = Array2::<F>::zeros((b, sw));
    let mut dxp = Array2::<F>::zeros((b, cell.proj_dim()));
    let mut drec = Array2::<F>::zeros((b, cell.rec_grad_dim()));
    let mut scratch = vec![F::zero(); cell.scratch_len(b)];
    let mut sigma = vec![0.0f64; b];
    let mut back = vec![0.0f64; b];
    let (mut iterations, mut converged) = (0, false);
    while iterations < cfg.max_iters && !converged {
        iterations += 1;
        // w = Pᵀu
        x.assign(&u);
        logs.iter_mut().for_each(|l| *l = 0.0);
        for t in (first..=end).rev() {
            let step = refs(cache, layer, t)?;
            cell.step_backward(step, x.view(), y.view_mut(), dxp.view_mut(), drec.view_mut(), &mut scratch)?;
            std::mem::swap(&mut x, &mut y);
            normalise_rows(&mut x.view_mut(), &mut logs)?;
        }
        back.iter_mut().zip(&logs).for_each(|(s, l)| *s = l.exp());
        // u = P·ŵ
        logs.iter_mut().for_each(|l| *l = 0.0);
        for t in first..=end {
            cell.jvp_state(refs(cache, layer, t)?, x.view(), y.view_mut(), &mut scratch)?;
            std::mem::swap(&mut x, &mut y);
            normalise_rows(&mut x.view_mut(), &mut logs)?;
        }
        converged = true;
        for ((s, &lg), &bk) in sigma.iter_mut().zip(&logs).zip(&back) {
            let new = lg.exp();
            if (new - bk).abs() > cfg.tol * new || (new - *s).abs() > cfg.tol * new {
                converged = false;
            }
            *s = new;
        }
        // rows whose product is exactly zero keep their vector (σ₁ = 0 is exact then)
        for ((mut ur, xr), &lg) in u.outer_iter_mut().zip(x.outer_iter()).zip(&logs) {
            if lg.is_finite() {
                ur.assign(&xr);
            }
        }
    }
    Ok((LagNorm { lag, sigma_max: sigma, iterations, converged }, u))
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
