//! Charts drawn to SVG text with plotters' SVG backend. No font is needed: the backend writes
//! `<text>` elements and leaves the glyphs to the viewer, and layout uses plotters' built-in
//! size estimate (its `ttf` feature, which would read system fonts, is off).
//!
//! Every chart has a title, both axis labels and a legend in its own pane (one entry per
//! series and reference line), so no curve hides under the legend. Non-finite points, and on a
//! log axis points ≤ 0 or too far below the maximum, are left out (the line breaks there); a
//! chart with nothing to draw says "no data".

use plotters::coord::combinators::{BindKeyPoints, IntoLogRange};
use plotters::coord::ranged1d::Ranged;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use rnnlab_core::{Error, Result};

/// Width of the whole image, in pixels.
const WIDTH: u32 = 780;
/// Width of the legend pane on the right.
const LEGEND_WIDTH: u32 = 230;
/// Height of a line chart.
const LINE_HEIGHT: u32 = 380;
/// On a log axis, values more than this many decades below the largest are not drawn.
pub(crate) const LOG_DECADES: i32 = 20;

/// Ten colours that stay apart (Tableau 10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn colour(i: usize) -> RGBColor {
    // In bounds: the index is taken modulo the palette's length (10).
    PALETTE[i % PALETTE.len()]
}

/// One labelled series of a line chart: one or more polylines in the same colour (e.g. the
/// seeds of one configuration), with an optional band.
#[derive(Clone, Debug, Default)]
pub(crate) struct Series {
    /// The legend text.
    pub label: String,
    /// The polylines, `(x, y)` points in order of x.
    pub lines: Vec<Vec<(f64, f64)>>,
    /// A shaded band `(x, low, high)` behind the lines.
    pub band: Vec<(f64, f64, f64)>,
    /// Mark every point with a dot (sparse curves, where a single point must show).
    pub markers: bool,
}

/// A horizontal reference line (a baseline, a threshold).
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    /// The legend text.
    pub label: String,
    /// Its height.
    pub y: f64,
    /// Dotted (`true`) or dashed.
    pub dotted: bool,
}

/// A chart of lines against a numeric x.
#[derive(Clone, Debug, Default)]
pub(crate) struct LineChart {
    /// The title above the plot.
    pub title: String,
    /// The x axis label.
    pub x_label: String,
    /// The y axis label.
    pub y_label: String,
    /// A log y axis with a tick per decade.
    pub log_y: bool,
    /// The series.
    pub series: Vec<Series>,
    /// Reference lines.
    pub rules: Vec<Rule>,
}

/// Values per category, drawn as markers on a horizontal axis, one row per category.
#[derive(Clone, Debug, Default)]
pub(crate) struct DotChart {
    /// The title above the plot.
    pub title: String,
    /// The value axis label.
    pub x_label: String,
    /// The category axis label.
    pub y_label: String,
    /// The categories, top to bottom.
    pub categories: Vec<String>,
    /// Per series its legend text and one value per category.
    pub series: Vec<(String, Vec<Option<f64>>)>,
}

/// A chart of either kind.
#[derive(Clone, Debug)]
pub(crate) enum Chart {
    /// Lines.
    Line(LineChart),
    /// Markers per category.
    Dots(DotChart),
}

impl Chart {
    /// The texts a reader needs to find in the drawing: the title, the axis labels and every
    /// legend entry.
    #[cfg(test)]
    pub(crate) fn texts(&self) -> Vec<String> {
        match self {
            Chart::Line(c) => [c.title.clone(), c.x_label.clone(), c.y_label.clone()]
                .into_iter()
                .chain(c.series.iter().map(|s| s.label.clone()))
                .chain(c.rules.iter().map(|r| r.label.clone()))
                .collect(),
            Chart::Dots(c) => [c.title.clone(), c.x_label.clone(), c.y_label.clone()]
                .into_iter()
                .chain(c.series.iter().map(|s| s.0.clone()))
                .collect(),
        }
    }

    /// The chart as a standalone SVG document.
    ///
    /// # Errors
    /// [`Error::Format`] if plotters fails to draw it.
    pub(crate) fn to_svg(&self) -> Result<String> {
        match self {
            Chart::Line(c) => line_svg(c),
            Chart::Dots(c) => dots_svg(c),
        }
    }
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::format("report: drawing a plot", e.to_string())
}

/// A legend entry's symbol.
#[derive(Clone, Copy)]
enum Symbol {
    Line(RGBColor),
    Dashed,
    Dotted,
    Marker(RGBColor, usize),
}

/// The y range of a log axis: whole decades around the finite positive values, at most
/// [`LOG_DECADES`] below the largest; `None` if there is none.
fn log_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite() && *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !hi.is_finite() {
        return None;
    }
    let top = hi.log10().ceil() as i32;
    let bottom = (lo.log10().floor() as i32).max(top - LOG_DECADES);
    let top = if top == bottom { top + 1 } else { top };
    Some((10f64.powi(bottom), 10f64.powi(top)))
}

/// A linear range around the finite values with a margin; `None` if there is none.
fn linear_range(values: impl Iterator<Item = f64>, pad: f64) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !hi.is_finite() {
        return None;
    }
    let span = hi - lo;
    if span > 0.0 {
        Some((lo - pad * span, hi + pad * span))
    } else {
        let d = if lo == 0.0 { 1.0 } else { 0.1 * lo.abs() };
        Some((lo - d, hi + d))
    }
}

/// The drawable runs of a polyline: points with finite coordinates inside `[lo, hi]` in y,
/// split where a point is left out.
fn pieces(line: &[(f64, f64)], lo: f64, hi: f64) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur = Vec::new();
    for &(x, y) in line {
        if x.is_finite() && y.is_finite() && y >= lo && y <= hi {
            cur.push((x, y));
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Decade ticks between `lo` and `hi` (powers of ten): every decade, or every 2nd, 5th, 10th…
/// (exponents divisible by the step) so that there are at most 11.
fn decades(lo: f64, hi: f64) -> Vec<f64> {
    let (a, b) = (lo.log10().round() as i32, hi.log10().round() as i32);
    let n = (b - a).max(0);
    let step = [1, 2, 5, 10, 20, 50, 100].into_iter().find(|s| n / s <= 10).unwrap_or(n.max(1));
    (a..=b).filter(|e| e.rem_euclid(step) == 0).map(|e| 10f64.powi(e)).collect()
}

fn tick_label(v: f64) -> String {
    let e = v.log10().round() as i32;
    match e {
        0 => "1".to_string(),
        1 => "10".to_string(),
        _ => format!("1e{e}"),
    }
}

fn number_label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".to_string()
    } else if (1e-2..1e5).contains(&a) {
        let s = format!("{v:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        format!("{v:.1e}")
    }
}

fn line_svg(c: &LineChart) -> Result<String> {
    // The points that can be drawn at all: both coordinates finite, y > 0 on a log axis.
    let usable = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!c.log_y || y > 0.0);
    let points = || c.series.iter().flat_map(|s| s.lines.iter().flatten().copied().filter(usable));
    let xs = points().map(|p| p.0).chain(c.series.iter().flat_map(|s| s.band.iter().map(|b| b.0)));
    // Steps and lags start at 0: so does the axis when no x is negative.
    let x_range = match linear_range(xs, 0.0) {
        Some((lo, hi)) if lo >= 0.0 => (0.0, if hi > 0.0 { hi } else { 1.0 }),
        Some(r) => r,
        None => (0.0, 1.0),
    };
    let ys = || points().map(|p| p.1).chain(c.rules.iter().map(|r| r.y));
    let y_range = if c.log_y { log_range(ys()) } else { linear_range(ys(), 0.05) };
    let (y_lo, y_hi) = y_range.unwrap_or(if c.log_y { (1e-3, 1.0) } else { (0.0, 1.0) });
    let has_data = c.series.iter().flat_map(|s| &s.lines).any(|l| !pieces(l, y_lo, y_hi).is_empty());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, LINE_HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (left, right) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let mut builder = ChartBuilder::on(&left);
        builder.caption(&c.title, ("sans-serif", 17)).margin(12).x_label_area_size(42).y_label_area_size(64);
        let mut legend: Vec<(String, Symbol)> = Vec::new();
        if c.log_y {
            let ticks = decades(y_lo, y_hi);
            let mut chart = builder
                .build_cartesian_2d(x_range.0..x_range.1, (y_lo..y_hi).log_scale().with_key_points(ticks))
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc(&c.x_label)
                .y_desc(&c.y_label)
                .x_label_formatter(&|v| number_label(*v))
                .y_label_formatter(&|v| tick_label(*v))
                .light_line_style(WHITE)
                .draw()
                .map_err(err)?;
            draw_lines(&mut chart, c, x_range, (y_lo, y_hi), &mut legend)?;
            if !has_data {
                no_data(&left)?;
            }
        } else {
            let mut chart = builder.build_cartesian_2d(x_range.0..x_range.1, y_lo..y_hi).map_err(err)?;
            chart
                .configure_mesh()
                .x_desc(&c.x_label)
                .y_desc(&c.y_label)
                .x_label_formatter(&|v| number_label(*v))
                .y_label_formatter(&|v| number_label(*v))
                .light_line_style(WHITE)
                .draw()
                .map_err(err)?;
            draw_lines(&mut chart, c, x_range, (y_lo, y_hi), &mut legend)?;
            if !has_data {
                no_data(&left)?;
            }
        }
        draw_legend(&right, &legend)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Draws the series and rules of `c` on `chart` and adds their legend entries.
fn draw_lines<X, Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, Y>>,
    c: &LineChart,
    x_range: (f64, f64),
    (y_lo, y_hi): (f64, f64),
    legend: &mut Vec<(String, Symbol)>,
) -> Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let ok = |&&(x, l, h): &&(f64, f64, f64)| x.is_finite() && l.is_finite() && h.is_finite() && h >= l;
    for (i, s) in c.series.iter().enumerate() {
        let col = colour(i);
        let band: Vec<(f64, f64)> = s
            .band
            .iter()
            .filter(ok)
            .map(|&(x, _, h)| (x, h.clamp(y_lo, y_hi)))
            .chain(s.band.iter().rev().filter(ok).map(|&(x, l, _)| (x, l.clamp(y_lo, y_hi))))
            .collect();
        if band.len() >= 4 {
            chart.draw_series(std::iter::once(Polygon::new(band, col.mix(0.15).filled()))).map_err(err)?;
        }
        for line in &s.lines {
            for piece in pieces(line, y_lo, y_hi) {
                if s.markers {
                    chart.draw_series(piece.iter().map(|&p| Circle::new(p, 3, col.filled()))).map_err(err)?;
                }
                chart.draw_series(LineSeries::new(piece, col.stroke_width(2))).map_err(err)?;
            }
        }
        let drawn = s.lines.iter().any(|l| !pieces(l, y_lo, y_hi).is_empty());
        let label = if drawn { s.label.clone() } else { format!("{} (no data)", s.label) };
        legend.push((label, if s.markers { Symbol::Marker(col, 0) } else { Symbol::Line(col) }));
    }
    for r in &c.rules {
        if !(r.y.is_finite() && r.y >= y_lo && r.y <= y_hi) {
            continue;
        }
        let pts = vec![(x_range.0, r.y), (x_range.1, r.y)];
        let (size, gap) = if r.dotted { (2, 4) } else { (8, 5) };
        chart.draw_series(DashedLineSeries::new(pts, size, gap, BLACK.stroke_width(1))).map_err(err)?;
        legend.push((r.label.clone(), if r.dotted { Symbol::Dotted } else { Symbol::Dashed }));
    }
    Ok(())
}

fn no_data(area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<()> {
    let (w, h) = area.dim_in_pixel();
    let style =
        TextStyle::from(("sans-serif", 16)).color(&RGBColor(120, 120, 120)).pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new("no data", ((w / 2) as i32, (h / 2) as i32), style)).map_err(err)
}

/// The legend pane: one row per entry, its symbol then its text.
fn draw_legend(area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>, entries: &[(String, Symbol)]) -> Result<()> {
    let mut y = 48;
    for (label, sym) in entries {
        match *sym {
            Symbol::Line(col) => {
                area.draw(&PathElement::new(vec![(8, y), (34, y)], col.stroke_width(2))).map_err(err)?;
            }
            Symbol::Dashed | Symbol::Dotted => {
                let (size, gap) = if matches!(sym, Symbol::Dotted) { (2, 4) } else { (8, 5) };
                let mut x = 8;
                while x < 34 {
                    area.draw(&PathElement::new(vec![(x, y), ((x + size).min(34), y)], BLACK.stroke_width(1)))
                        .map_err(err)?;
                    x += size + gap;
                }
            }
            Symbol::Marker(col, shape) => {
                area.draw(&PathElement::new(vec![(8, y), (34, y)], col.stroke_width(2))).map_err(err)?;
                marker(area, (21, y), col, shape)?;
            }
        }
        area.draw(&Text::new(label.as_str(), (42, y - 6), ("sans-serif", 12))).map_err(err)?;
        y += 20;
    }
    Ok(())
}

/// A marker of one of three shapes (circle, triangle, cross) at a pixel position.
fn marker(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    at: (i32, i32),
    col: RGBColor,
    shape: usize,
) -> Result<()> {
    match shape % 3 {
        0 => area.draw(&Circle::new(at, 4, col.filled())),
        1 => area.draw(&TriangleMarker::new(at, 5, col.filled())),
        _ => area.draw(&Cross::new(at, 4, col.stroke_width(2))),
    }
    .map_err(err)
}

fn dots_svg(c: &DotChart) -> Result<String> {
    let n = c.categories.len();
    let height = 110 + 22 * n.max(1) as u32;
    let max = c.series.iter().flat_map(|s| s.1.iter().flatten()).copied().filter(|v| v.is_finite()).fold(1.0, f64::max);
    let min = c.series.iter().flat_map(|s| s.1.iter().flatten()).copied().filter(|v| v.is_finite()).fold(0.0, f64::min);
    let has_data = c.series.iter().any(|s| s.1.iter().flatten().any(|v| v.is_finite()));
    let rows = n.max(1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (left, right) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let longest = c.categories.iter().map(|s| s.chars().count()).max().unwrap_or(4) as u32;
        let mut chart = ChartBuilder::on(&left)
            .caption(&c.title, ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size((7 * longest + 40).clamp(60, 260))
            .build_cartesian_2d(min..max * 1.05, 0.0..rows)
            .map_err(err)?;
        // The category axis is drawn by hand: a row per category, its name at the left.
        chart
            .configure_mesh()
            .x_desc(&c.x_label)
            .y_desc(&c.y_label)
            .x_label_formatter(&|v| number_label(*v))
            .y_labels(0)
            .disable_y_mesh()
            .light_line_style(WHITE)
            .draw()
            .map_err(err)?;
        let label_style = TextStyle::from(("sans-serif", 12)).pos(Pos::new(HPos::Right, VPos::Center));
        for (i, name) in c.categories.iter().enumerate() {
            let y = rows - i as f64 - 0.5;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(min, y), (max * 1.05, y)],
                    RGBColor(225, 225, 225),
                )))
                .map_err(err)?;
            let (px, py) = chart.backend_coord(&(min, y));
            root.draw(&Text::new(name.as_str(), (px - 6, py), label_style.clone())).map_err(err)?;
        }
        let mut legend = Vec::new();
        for (k, (label, values)) in c.series.iter().enumerate() {
            let col = colour(k);
            for (i, v) in values.iter().enumerate() {
                let Some(v) = v.filter(|v| v.is_finite()) else { continue };
                let at = chart.backend_coord(&(v, rows - i as f64 - 0.5));
                marker(&root, at, col, k)?;
            }
            legend.push((label.clone(), Symbol::Marker(col, k)));
        }
        if !has_data {
            no_data(&left)?;
        }
        // The legend symbols here are markers alone: draw them without the line.
        let mut y = 48;
        for (label, sym) in &legend {
            if let Symbol::Marker(col, shape) = *sym {
                marker(&right, (21, y), col, shape)?;
            }
            right.draw(&Text::new(label.as_str(), (42, y - 6), ("sans-serif", 12))).map_err(err)?;
            y += 20;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}
