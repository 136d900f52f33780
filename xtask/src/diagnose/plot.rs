//! The SVG beside `cargo xtask diagnose`'s JSON: the relative ‖∂L/∂h_t‖ against the lag on a
//! log axis, one curve per layer (and direction), drawn with `rnnlab_suite::plot::LinePlot`.

use anyhow::{Context, Result};
use rnnlab_diagnostics::Report;
use rnnlab_suite::plot::LinePlot;

/// The plot of `report`'s h curves: per layer (and direction) the geometric mean over the
/// batch of ‖∂L/∂h_t‖ / ‖∂L/∂h_(t_r)‖ against the lag k, the 10th–90th percentile band shaded,
/// and the horizon's threshold as a dashed line. A curve that is undefined (a zero gradient
/// where the loss enters) is listed in the legend as "no data".
pub(crate) fn gradient_svg(report: &Report) -> Result<String> {
    let title = format!(
        "gradient flow: {} {}, T = {}, B = {}, verdict {}",
        report.cell, report.precision, report.time, report.batch, report.verdict.kind
    );
    let x_label = if report.bidirectional {
        "lag k (forward: t = t_r − k; reverse: t = t_r + k)"
    } else {
        "lag k = t_r − t (steps before the loss enters at t_r)"
    };
    let mut plot = LinePlot::new(title, x_label, "geo. mean of ‖∂L/∂h_t‖ / ‖∂L/∂h_(t_r)‖").with_log_y(true);
    let mut threshold = None;
    for lr in &report.layers {
        let Some(h) = lr.flow.parts.first() else { continue };
        let points = h.geo_mean.iter().enumerate().map(|(k, &v)| (k as f64, v)).collect();
        let band = h.p10.iter().zip(&h.p90).enumerate().map(|(k, (&lo, &hi))| (k as f64, lo, hi)).collect();
        plot = plot.with_band_series(format!("layer {} h (band 10–90 %)", lr.label()), points, band);
        threshold = threshold.or(h.horizon.as_ref().map(|hz| hz.threshold));
    }
    if let Some(th) = threshold {
        plot = plot.with_rule(format!("horizon threshold {th:e}"), th);
    }
    plot.to_svg().context("drawing the gradient-flow plot")
}
