//! A small public plotting API over the report's SVG charts: [`LinePlot`], lines (each with an
//! optional shaded band) against a numeric x, on a linear or log y axis, to a standalone SVG.
//!
//! It draws with the same code as the suite's report (plotters' SVG backend, no font files, no
//! URL): a title, both axis labels and a legend pane with one entry per series and reference
//! line. Non-finite points, and on a log axis points ≤ 0 or more than 20 decades below the
//! largest, are left out (the line breaks there); a plot with nothing to draw says "no data".

use rnnlab_core::Result;

use crate::report::{Chart, LineChart, Rule, Series};

/// A line plot, built with [`LinePlot::new`] and `with_*` methods, written by
/// [`LinePlot::to_svg`].
///
/// # Examples
/// ```
/// use rnnlab_suite::plot::LinePlot;
/// let curve: Vec<(f64, f64)> = (0..50).map(|k| (k as f64, 0.9f64.powi(k))).collect();
/// let band: Vec<(f64, f64, f64)> = curve.iter().map(|&(k, y)| (k, 0.5 * y, 2.0 * y)).collect();
/// let svg = LinePlot::new("gradient flow", "lag k", "relative norm")
///     .with_log_y(true)
///     .with_band_series("h, geometric mean (band 10–90 %)", curve, band)
///     .with_rule("threshold 1e-3", 1e-3)
///     .to_svg()?;
/// assert!(svg.starts_with("<svg") && svg.contains("lag k") && svg.contains("threshold 1e-3"));
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LinePlot {
    chart: LineChart,
}

impl LinePlot {
    /// An empty plot with its title and axis labels (linear y axis).
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, y_label: impl Into<String>) -> Self {
        Self {
            chart: LineChart {
                title: title.into(),
                x_label: x_label.into(),
                y_label: y_label.into(),
                ..LineChart::default()
            },
        }
    }

    /// A log y axis with a tick per decade (`true`) or a linear one.
    pub fn with_log_y(mut self, log_y: bool) -> Self {
        self.chart.log_y = log_y;
        self
    }

    /// Adds a series: one polyline of `(x, y)` points in order of x, in the next colour, with a
    /// legend entry `label`.
    pub fn with_series(self, label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        self.with_band_series(label, points, Vec::new())
    }

    /// Adds a series with a shaded band `(x, low, high)` behind its line, in its colour.
    pub fn with_band_series(
        mut self,
        label: impl Into<String>,
        points: Vec<(f64, f64)>,
        band: Vec<(f64, f64, f64)>,
    ) -> Self {
        self.chart.series.push(Series { label: label.into(), lines: vec![points], band, markers: false });
        self
    }

    /// Adds a dashed horizontal reference line at `y` with a legend entry `label`.
    pub fn with_rule(mut self, label: impl Into<String>, y: f64) -> Self {
        self.chart.rules.push(Rule { label: label.into(), y, dotted: false });
        self
    }

    /// The number of series.
    pub fn n_series(&self) -> usize {
        self.chart.series.len()
    }

    /// The plot as a standalone SVG document.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Format`] if plotters fails to draw it.
    pub fn to_svg(&self) -> Result<String> {
        Chart::Line(self.chart.clone()).to_svg()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_plot_is_xml_with_its_labels_legend_and_band() {
        let curve: Vec<(f64, f64)> = (0..30).map(|k| (k as f64, 0.8f64.powi(k))).collect();
        let band = curve.iter().map(|&(k, y)| (k, 0.5 * y, 1.5 * y)).collect();
        let plot = LinePlot::new("flow", "lag k (steps)", "relative norm")
            .with_log_y(true)
            .with_band_series("layer 0 h", curve, band)
            .with_series("empty", vec![(0.0, f64::NAN)])
            .with_rule("threshold", 1e-3);
        assert_eq!(plot.n_series(), 2);
        let svg = plot.to_svg().unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("not XML: {e}\n{svg}"));
        let texts: Vec<String> = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "text")
            .map(|n| n.text().unwrap_or("").trim().to_string())
            .collect();
        for want in ["flow", "lag k (steps)", "relative norm", "layer 0 h", "empty (no data)", "threshold", "1e-3"] {
            assert!(texts.iter().any(|t| t == want), "{want:?} not in {texts:?}");
        }
        // The band is a filled polygon; nothing is fetched from outside the document.
        assert!(doc.descendants().any(|n| n.tag_name().name() == "polygon"), "{svg}");
        assert!(!svg.replace("http://www.w3.org/2000/svg", "").contains("http"), "{svg}");
    }
}
