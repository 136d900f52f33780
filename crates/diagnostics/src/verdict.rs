//! The verdict — vanishing, exploding, healthy or undefined — with the evidence beside it.

use rnnlab_cells::Direction;
use serde::{Deserialize, Serialize};

use crate::{LayerFlow, Thresholds};

/// What the gradient does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// No decision possible (the reason says why): never a NaN.
    Undefined,
    /// Neither vanishing nor exploding by the thresholds.
    Healthy,
    /// The decay factor is below [`Thresholds::vanishing_decay`].
    Vanishing,
    /// The decay factor or a relative norm is above the exploding thresholds.
    Exploding,
}

impl std::fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Undefined => "undefined",
            Self::Healthy => "healthy",
            Self::Vanishing => "vanishing",
            Self::Exploding => "exploding",
        })
    }
}

/// A verdict and the numbers it was decided from (all finite when present).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The decision.
    pub kind: VerdictKind,
    /// The layer it was decided on (the worst one for a model).
    pub layer: Option<usize>,
    /// That layer's direction in a bidirectional model; `None` for a unidirectional one (and
    /// in schema-1 reports).
    #[serde(default)]
    pub direction: Option<Direction>,
    /// One sentence with the numbers.
    pub reason: String,
    /// The fitted decay factor per step of ‖∂L/∂h‖.
    pub decay_factor: Option<f64>,
    /// The fit's R².
    pub r2: Option<f64>,
    /// The fit's lag range.
    pub fit_lags: Option<(usize, usize)>,
    /// The memory horizon (lags).
    pub horizon: Option<usize>,
    /// The largest relative norm over the lags.
    pub max_ratio: Option<f64>,
}

impl Verdict {
    pub(crate) fn undefined(layer: Option<usize>, reason: String) -> Self {
        Self::undefined_in(layer, None, reason)
    }

    pub(crate) fn undefined_in(layer: Option<usize>, direction: Option<Direction>, reason: String) -> Self {
        Self {
            kind: VerdictKind::Undefined,
            layer,
            direction,
            reason,
            decay_factor: None,
            r2: None,
            fit_lags: None,
            horizon: None,
            max_ratio: None,
        }
    }
}

/// The verdict of one layer from its h curve (the first part), by the rule on [`Thresholds`].
pub fn layer_verdict(flow: &LayerFlow, th: &Thresholds) -> Verdict {
    direction_verdict(flow, None, th)
}

/// The verdict of one direction of a bidirectional layer (`None`: a unidirectional layer, as
/// [`layer_verdict`]); the reason names the layer and direction ("layer 0 reverse").
pub fn direction_verdict(flow: &LayerFlow, direction: Option<Direction>, th: &Thresholds) -> Verdict {
    let l = flow.layer;
    let who = match direction {
        None => format!("layer {l}"),
        Some(Direction::Forward) => format!("layer {l} forward"),
        Some(Direction::Reverse) => format!("layer {l} reverse"),
    };
    let undefined = |reason: String| Verdict::undefined_in(Some(l), direction, reason);
    let Some(h) = flow.parts.first() else {
        return undefined(format!("{who} has no gradient curve"));
    };
    if let Some(why) = &h.undefined {
        return undefined(format!("{who}: {why}"));
    }
    let Some(fit) = &h.fit else {
        return undefined(format!(
            "{who}: fewer than two lags above the fit floor (trace of {} lags): no decay factor",
            h.geo_mean.len()
        ));
    };
    let max_ratio = h.geo_mean.iter().copied().fold(0.0, f64::max);
    let horizon = h.horizon.as_ref();
    let hz = match horizon {
        Some(hz) if hz.capped => format!("horizon ≥ {} (never below {:e})", hz.lag, hz.threshold),
        Some(hz) => format!("horizon {} (threshold {:e})", hz.lag, hz.threshold),
        None => "no horizon".into(),
    };
    let evidence = format!(
        "decay {:.4}/step (lags {}–{}, R² {:.3}), max relative norm {:.3e}, {hz}",
        fit.factor, fit.first_lag, fit.last_lag, fit.r2, max_ratio
    );
    let (kind, why) = if fit.factor > th.exploding_decay {
        (VerdictKind::Exploding, format!("decay factor > {}", th.exploding_decay))
    } else if max_ratio > th.exploding_ratio {
        (VerdictKind::Exploding, format!("relative norm > {:e}", th.exploding_ratio))
    } else if fit.factor < th.vanishing_decay {
        (VerdictKind::Vanishing, format!("decay factor < {}", th.vanishing_decay))
    } else {
        (VerdictKind::Healthy, format!("{} ≤ decay factor ≤ {}", th.vanishing_decay, th.exploding_decay))
    };
    Verdict {
        kind,
        layer: Some(l),
        direction,
        reason: format!("{who} {kind}: {why}; {evidence}"),
        decay_factor: Some(fit.factor),
        r2: Some(fit.r2),
        fit_lags: Some((fit.first_lag, fit.last_lag)),
        horizon: horizon.map(|h| h.lag),
        max_ratio: Some(max_ratio),
    }
}

/// The model's verdict: the worst defined layer's (exploding > vanishing > healthy); undefined
/// only when no layer is defined (or there are none), with every layer's reason.
pub fn model_verdict(layers: &[Verdict]) -> Verdict {
    match layers.iter().filter(|v| v.kind != VerdictKind::Undefined).max_by_key(|v| v.kind) {
        Some(v) => v.clone(),
        None if layers.is_empty() => Verdict::undefined(None, "no layer to judge".into()),
        None => Verdict::undefined(None, layers.iter().map(|v| v.reason.as_str()).collect::<Vec<_>>().join("; ")),
    }
}
