//! Gradient flow: ‖∂L/∂s_t‖ per step, example and state part, relative to the reference step,
//! with its fitted decay factor and memory horizon — read from the backward's per-step trace.

use ndarray::{Array2, ArrayView3, Axis};
use rnnlab_cells::{Backward, Recurrent, SeqCache};
use rnnlab_core::{Cell, Error, Float, Result};
use serde::{Deserialize, Serialize};

use crate::FlowConfig;

/// Which derivative a part's curve shows (see the crate docs, "Conventions").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Convention {
    /// The total derivative through the step's own computation: for an LSTM's c,
    /// ∂L/∂c_t + o_t ⊙ (1 − tanh²c_t) ⊙ ∂L/∂h_t, PyTorch's `c_t.grad`. Always the case for h.
    Total,
    /// The state part as an independent variable (h_t held fixed): only the path through
    /// s_{t+1}. Reported for a part whose cell does not implement
    /// [`rnnlab_core::Probe::total_state_grad`].
    Partial,
}

/// A least-squares line through ln(relative norm) against the lag: ln r ≈ intercept + slope·k.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecayFit {
    /// e^slope: the factor by which the gradient norm shrinks (< 1) or grows (> 1) per step.
    pub factor: f64,
    /// The slope per step of ln r.
    pub slope: f64,
    /// The intercept (ln r at lag 0).
    pub intercept: f64,
    /// The coefficient of determination; 1 when the curve is flat to 1e-10 in ln r (the
    /// factor is then 1 and nothing is left to explain).
    pub r2: f64,
    /// The first lag used.
    pub first_lag: usize,
    /// The last lag used (the fit stops before the first lag below the floor).
    pub last_lag: usize,
}

/// The memory horizon: the largest lag k such that the relative norm is at least `threshold`
/// at every lag 0..=k.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Horizon {
    /// That lag.
    pub lag: usize,
    /// The threshold used.
    pub threshold: f64,
    /// True when the curve never fell below the threshold: the horizon is the longest lag the
    /// trace has (the reference step), a lower bound.
    pub capped: bool,
}

/// The gradient flow of one state part of one layer.
///
/// The curves are indexed by the lag k = reference_step − t, k = 0..=reference_step. For
/// example b, r_b(k) = ‖∂L/∂part_{t}\[b\]‖ / ‖∂L/∂part_{ref}\[b\]‖. Examples whose reference norm is
/// exactly 0 have no relative curve; they are counted in `n_undefined` and left out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartFlow {
    /// The part's name (`"h"`, `"c"`).
    pub part: String,
    /// Which derivative the curve shows.
    pub convention: Convention,
    /// The step the curve is relative to (lag 0).
    pub reference_step: usize,
    /// The batch size.
    pub n_examples: usize,
    /// Examples left out (zero norm at the reference step).
    pub n_undefined: usize,
    /// Geometric mean over the examples of r_b(k) (0 if some r_b(k) is 0).
    pub geo_mean: Vec<f64>,
    /// 10th percentile over the examples (nearest rank).
    pub p10: Vec<f64>,
    /// 90th percentile over the examples (nearest rank).
    pub p90: Vec<f64>,
    /// ‖∂L/∂part_t‖ over the whole batch relative to the same at the reference step.
    pub batch: Vec<f64>,
    /// r_b(k) per example (empty for an undefined one); only with [`FlowConfig::per_example`].
    pub per_example: Option<Vec<Vec<f64>>>,
    /// The decay fit on ln of `geo_mean`; `None` with fewer than two usable lags.
    pub fit: Option<DecayFit>,
    /// The memory horizon of `geo_mean`; `None` when undefined.
    pub horizon: Option<Horizon>,
    /// Why the curve is undefined (every example's reference norm is 0), else `None`.
    pub undefined: Option<String>,
}

/// The gradient flow of one layer: h first, then the other state parts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerFlow {
    /// The layer index (0 = bottom).
    pub layer: usize,
    /// One flow per state part.
    pub parts: Vec<PartFlow>,
}

/// The gradient flow of every layer from a finished backward pass (no second pass): reads
/// `grads.step_grads` and, for the non-h parts' total derivatives, each step's buffers in
/// `cache` through the cell's [`rnnlab_core::Probe`]. O(T·B·state_width) work.
///
/// # Errors
/// [`Error::Shape`] for step gradients or a cache that do not belong to `model` or an empty
/// trace; [`Error::NonFinite`] for a NaN or infinite gradient (naming layer, part and step);
/// [`Error::Config`] for an invalid `cfg` or a reference step past the trace.
pub fn gradient_flow<F: Float, C: Cell<F>>(
    model: &Recurrent<F, C>,
    cache: &SeqCache<F>,
    grads: &Backward<F>,
    cfg: &FlowConfig,
) -> Result<Vec<LayerFlow>> {
    let op = "gradient_flow";
    cfg.validate()?;
    if grads.step_grads.len() != model.n_layers() {
        return Err(Error::shape(
            op,
            format!("step gradients of {} layers", model.n_layers()),
            format!("{}", grads.step_grads.len()),
        ));
    }
    let (t_len, batch) = (cache.time(), cache.batch());
    let mut out = Vec::with_capacity(model.n_layers());
    for (l, (cell, sg)) in model.layers().iter().zip(&grads.step_grads).enumerate() {
        let (h, sw) = (cell.hidden_dim(), cell.state_width());
        let all = sg.all();
        if all.shape() != [t_len, batch, sw] {
            return Err(Error::shape(
                op,
                format!("layer {l} step gradients [{t_len}, {batch}, {sw}] (the cache's pass)"),
                format!("{:?}", all.shape()),
            ));
        }
        let names = cell.state_names();
        let mut parts = Vec::with_capacity(names.len());
        let h_norms = row_norms(&format!("layer {l} ∂L/∂h"), sg.part(0))?;
        parts.push(flow_from_norms("h", Convention::Total, h_norms.view(), cfg)?);
        if names.len() > 1 {
            let (norms, conv) = other_part_norms(cell, cache, l, all, h, names.len())?;
            for (k, n) in norms.iter().enumerate() {
                parts.push(flow_from_norms(names[k + 1], conv, n.view(), cfg)?);
            }
        }
        out.push(LayerFlow { layer: l, parts });
    }
    Ok(out)
}

/// Row norms `[T, B]` of parts 1.. of one layer, total derivatives where the cell can convert.
fn other_part_norms<F: Float, C: Cell<F>>(
    cell: &C,
    cache: &SeqCache<F>,
    l: usize,
    all: ArrayView3<'_, F>,
    h: usize,
    n_parts: usize,
) -> Result<(Vec<Array2<f64>>, Convention)> {
    let op = "gradient_flow";
    let (t_len, batch, sw) = all.dim();
    let mut norms = vec![Array2::<f64>::zeros((t_len, batch)); n_parts - 1];
    let mut buf = Array2::<F>::zeros((batch, sw));
    let mut conv = Convention::Partial;
    if let Some(probe) = cell.probe() {
        let step = cache.step_refs(l, 0).ok_or_else(|| Error::shape(op, "a cache with step 0", "none"))?;
        if probe.total_state_grad(step, all.index_axis(Axis(0), 0), buf.view_mut())? {
            conv = Convention::Total;
        }
    }
    for t in 0..t_len {
        let g = all.index_axis(Axis(0), t);
        let src = if conv == Convention::Total {
            let step =
                cache.step_refs(l, t).ok_or_else(|| Error::shape(op, format!("a cache with step {t}"), "none"))?;
            let g = g.as_standard_layout();
            if let Some(probe) = cell.probe() {
                probe.total_state_grad(step, g.view(), buf.view_mut())?;
            }
            buf.view()
        } else {
            g
        };
        for (b, row) in src.outer_iter().enumerate() {
            for (k, n) in norms.iter_mut().enumerate() {
                let from = ((k + 1) * h).min(sw);
                let to = ((k + 2) * h).min(sw);
                let s: f64 = row.iter().skip(from).take(to - from).map(|v| v.as_f64().powi(2)).sum();
                n[[t, b]] = s.sqrt();
            }
        }
    }
    for (k, n) in norms.iter().enumerate() {
        if let Some(((t, _), _)) = n.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::non_finite(op, format!("layer {l} ∂L/∂(state part {}) at step {t}", k + 1)));
        }
    }
    Ok((norms, conv))
}

/// ‖g[t, b, ·]‖₂ for every step and example, `[T, B]`, in f64.
///
/// # Errors
/// [`Error::Shape`] for an empty trace (no step, example or unit); [`Error::NonFinite`] for a
/// NaN or infinite value (or a norm that overflows), naming `what` and the step.
pub fn row_norms<F: Float>(what: &str, g: ArrayView3<'_, F>) -> Result<Array2<f64>> {
    let op = "row_norms";
    let (t_len, batch, width) = g.dim();
    if t_len == 0 || batch == 0 || width == 0 {
        return Err(Error::shape(
            op,
            format!("a non-empty trace of {what} [time, batch, width]"),
            format!("{:?}", g.shape()),
        ));
    }
    let mut out = Array2::zeros((t_len, batch));
    for ((t, b), v) in out.indexed_iter_mut() {
        let s: f64 = g.slice(ndarray::s![t, b, ..]).iter().map(|x| x.as_f64().powi(2)).sum();
        if !s.is_finite() {
            return Err(Error::non_finite(op, format!("{what} at step {t} (example {b})")));
        }
        *v = s.sqrt();
    }
    Ok(out)
}

/// The flow of one part from its gradient trace `[T, B, width]` (what [`gradient_flow`] does
/// per part; usable on any trace, e.g. one recorded elsewhere).
///
/// # Errors
/// As [`row_norms`] and [`flow_from_norms`].
///
/// # Examples
/// ```
/// use ndarray::Array3;
/// use rnnlab_diagnostics::{Convention, FlowConfig, part_flow};
/// // ∂L/∂h_t = 0.5^(T−1−t): a decay factor of 0.5 per step
/// let g = Array3::from_shape_fn((20, 1, 1), |(t, _, _)| 0.5f64.powi(19 - t as i32));
/// let flow = part_flow("h", Convention::Total, g.view(), &FlowConfig::default())?;
/// assert!((flow.fit.unwrap().factor - 0.5).abs() < 1e-12);
/// assert_eq!(flow.horizon.unwrap().lag, 9); // 0.5⁹ ≥ 1e-3 > 0.5¹⁰
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn part_flow<F: Float>(
    part: &str,
    convention: Convention,
    g: ArrayView3<'_, F>,
    cfg: &FlowConfig,
) -> Result<PartFlow> {
    let norms = row_norms(&format!("∂L/∂{part}"), g)?;
    flow_from_norms(part, convention, norms.view(), cfg)
}

/// The flow from per-step, per-example norms `[T, B]` (finite, ≥ 0).
///
/// A zero norm at the reference step for every example is not an error: the part's flow is
/// returned with `undefined` saying so and no curve (the verdict then says "undefined").
///
/// # Errors
/// [`Error::Shape`] for an empty trace; [`Error::Config`] for an invalid `cfg` or a reference
/// step past the trace; [`Error::NonFinite`] for a NaN, infinite or negative norm.
pub fn flow_from_norms(
    part: &str,
    convention: Convention,
    norms: ndarray::ArrayView2<'_, f64>,
    cfg: &FlowConfig,
) -> Result<PartFlow> {
    let op = "flow_from_norms";
    cfg.validate()?;
    let (t_len, batch) = norms.dim();
    if t_len == 0 || batch == 0 {
        return Err(Error::shape(op, "a non-empty trace [time >= 1, batch >= 1]", format!("{:?}", norms.shape())));
    }
    if let Some(((t, b), _)) = norms.indexed_iter().find(|(_, v)| !(v.is_finite() && **v >= 0.0)) {
        return Err(Error::non_finite(op, format!("norm of ∂L/∂{part} at step {t} (example {b})")));
    }
    let reference = cfg.reference_step.unwrap_or(t_len - 1);
    if reference >= t_len {
        return Err(Error::config(op, format!("reference_step {reference} is past the trace of {t_len} steps")));
    }
    let mut flow = PartFlow {
        part: part.to_string(),
        convention,
        reference_step: reference,
        n_examples: batch,
        n_undefined: 0,
        geo_mean: Vec::new(),
        p10: Vec::new(),
        p90: Vec::new(),
        batch: Vec::new(),
        per_example: None,
        fit: None,
        horizon: None,
        undefined: None,
    };
    let ref_norms = norms.row(reference);
    let defined: Vec<usize> = (0..batch).filter(|&b| ref_norms[b] > 0.0).collect();
    flow.n_undefined = batch - defined.len();
    if defined.is_empty() {
        flow.undefined = Some(format!(
            "∂L/∂{part} is exactly zero at the reference step {reference} for every example: relative norms are undefined"
        ));
        return Ok(flow);
    }
    let ref_batch = ref_norms.iter().map(|v| v * v).sum::<f64>().sqrt();
    let n_lags = reference + 1;
    let mut log_geo = Vec::with_capacity(n_lags);
    let mut rel = vec![0.0; defined.len()];
    let mut per_example = cfg.per_example.then(|| vec![Vec::with_capacity(n_lags); batch]);
    for k in 0..n_lags {
        let t = reference - k;
        let row = norms.row(t);
        let mut sum_ln = 0.0;
        for (i, &b) in defined.iter().enumerate() {
            let r = row[b] / ref_norms[b];
            rel[i] = r;
            sum_ln += r.ln();
            if let Some(pe) = per_example.as_mut() {
                pe[b].push(r);
            }
        }
        let lg = sum_ln / defined.len() as f64;
        log_geo.push(lg);
        flow.geo_mean.push(lg.exp());
        rel.sort_by(f64::total_cmp);
        flow.p10.push(nearest_rank(&rel, 0.1));
        flow.p90.push(nearest_rank(&rel, 0.9));
        flow.batch.push(row.iter().map(|v| v * v).sum::<f64>().sqrt() / ref_batch);
    }
    flow.per_example = per_example;
    flow.fit = fit_decay(&log_geo, cfg);
    let below = flow.geo_mean.iter().position(|&r| r < cfg.horizon_threshold);
    flow.horizon = Some(match below {
        // lag 0 is 1 ≥ threshold, so the first lag below is at least 1
        Some(k) => Horizon { lag: k.saturating_sub(1), threshold: cfg.horizon_threshold, capped: false },
        None => Horizon { lag: reference, threshold: cfg.horizon_threshold, capped: true },
    });
    Ok(flow)
}

/// The value at quantile `q` of sorted `v` by the nearest-rank rule (`v` non-empty).
fn nearest_rank(v: &[f64], q: f64) -> f64 {
    let n = v.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n.max(1));
    v.get(rank - 1).copied().unwrap_or(0.0)
}

/// Least squares of `log_r[k]` on k over the configured lags, stopping before the first
/// non-finite value or value below ln(floor).
fn fit_decay(log_r: &[f64], cfg: &FlowConfig) -> Option<DecayFit> {
    let last = cfg.fit_last_lag.unwrap_or(usize::MAX).min(log_r.len().checked_sub(1)?);
    let floor = cfg.fit_floor.ln();
    let first = cfg.fit_first_lag;
    let mut pts = Vec::new();
    for k in first..=last {
        let y = *log_r.get(k)?;
        if !(y.is_finite() && y >= floor) {
            break;
        }
        pts.push((k as f64, y));
    }
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = pts.iter().map(|p| (p.1 - my).powi(2)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let ss_res: f64 = pts.iter().map(|p| (p.1 - intercept - slope * p.0).powi(2)).sum();
    let r2 = if syy <= n * 1e-20 { 1.0 } else { (1.0 - ss_res / syy).clamp(0.0, 1.0) };
    Some(DecayFit { factor: slope.exp(), slope, intercept, r2, first_lag: first, last_lag: first + pts.len() - 1 })
}
