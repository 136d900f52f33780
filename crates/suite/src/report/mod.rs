//! The suite's report: `report.html` (one self-contained file: inline SVG and CSS, no script,
//! no font, no URL), `report.md` (the same tables, linking the plots) and every plot as its
//! own SVG in `plots/`. The verdict table comes first, then per experiment its claim, where it
//! differs from the papers, its plots (chosen from the metrics its runs have) and a table of
//! each run's key metrics.

mod html;
mod markdown;
mod plots;
mod svg;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use rnnlab_core::{Error, Result};

use crate::{ExperimentResult, Results, RunResult, Status};

/// The chart types behind [`crate::plot`].
pub(crate) use svg::{Chart, LineChart, Rule, Series};

/// The folder of plot files below the report's directory.
pub const PLOTS_DIR: &str = "plots";

/// What the report states about the run but cannot know itself: the caller measures or reads
/// these (the report prints them as given and makes nothing up).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportInfo {
    /// When the suite ran, e.g. `2025-06-01 14:03 UTC`.
    pub date: String,
    /// The machine, e.g. `AMD EPYC 7B13, 2 cores, linux x86_64`.
    pub machine: String,
    /// The suite's wall time, e.g. `14.8 s`.
    pub wall_time: String,
}

impl ReportInfo {
    /// The three facts, as the caller states them.
    pub fn new(date: impl Into<String>, machine: impl Into<String>, wall_time: impl Into<String>) -> Self {
        Self { date: date.into(), machine: machine.into(), wall_time: wall_time.into() }
    }
}

/// The files [`write_report`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportFiles {
    /// `report.html`.
    pub html: PathBuf,
    /// `report.md`.
    pub markdown: PathBuf,
    /// Every plot's SVG file, in report order.
    pub plots: Vec<PathBuf>,
}

/// One plot, drawn, with the name of its file relative to the report.
pub(crate) struct Drawn {
    /// `plots/<experiment>-<kind>.svg`.
    pub(crate) file: String,
    /// The chart's title.
    pub(crate) title: String,
    /// What a reader needs to know to read it.
    pub(crate) caption: String,
    /// The standalone SVG document.
    pub(crate) svg: String,
}

/// An experiment with its plots drawn.
pub(crate) struct Section<'a> {
    pub(crate) exp: &'a ExperimentResult,
    /// The HTML id of its section, unique in the report.
    pub(crate) anchor: String,
    pub(crate) plots: Vec<Drawn>,
}

/// Writes the report of `results` into `out`: `report.html`, `report.md` and `plots/*.svg`
/// (SVG files already in `plots/` are removed first, so that every plot there belongs to this
/// report).
///
/// # Errors
/// [`Error::Io`] naming the path that could not be written, [`Error::Format`] if a plot cannot
/// be drawn.
///
/// # Examples
/// ```no_run
/// # use rnnlab_suite::{ReportInfo, Results, write_report};
/// # fn demo(results: &Results) -> rnnlab_core::Result<()> {
/// let info = ReportInfo::new("2025-06-01 14:03 UTC", "2 cores, linux x86_64", "14.8 s");
/// let files = write_report(results, std::path::Path::new("target/compare"), &info)?;
/// println!("{}", files.html.display());
/// # Ok(())
/// # }
/// ```
pub fn write_report(results: &Results, out: &Path, info: &ReportInfo) -> Result<ReportFiles> {
    const OP: &str = "write_report";
    let plots_dir = out.join(PLOTS_DIR);
    std::fs::create_dir_all(&plots_dir).map_err(|e| Error::io(OP, plots_dir.display().to_string(), e))?;
    let old = std::fs::read_dir(&plots_dir).map_err(|e| Error::io(OP, plots_dir.display().to_string(), e))?;
    for p in old.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "svg")) {
        std::fs::remove_file(&p).map_err(|e| Error::io(OP, p.display().to_string(), e))?;
    }
    let mut files = ReportFiles::default();
    let mut used: Vec<String> = Vec::new();
    let mut sections = Vec::new();
    for exp in &results.experiments {
        let mut drawn = Vec::new();
        for plot in plots::plots(exp) {
            let svg = plot.chart.to_svg()?;
            let stem = format!("{}-{}", plots::slug(&exp.id), plot.kind);
            let mut name = format!("{stem}.svg");
            let mut k = 2;
            while used.contains(&name) {
                name = format!("{stem}-{k}.svg");
                k += 1;
            }
            used.push(name.clone());
            let path = plots_dir.join(&name);
            rnnlab_train::write_atomic(&path, svg.as_bytes())?;
            files.plots.push(path);
            let title = match &plot.chart {
                svg::Chart::Line(c) => c.title.clone(),
                svg::Chart::Dots(c) => c.title.clone(),
            };
            drawn.push(Drawn { file: format!("{PLOTS_DIR}/{name}"), title, caption: plot.caption, svg });
        }
        let base = format!("exp-{}", plots::slug(&exp.id));
        let mut anchor = base.clone();
        let mut k = 2;
        while sections.iter().any(|s: &Section<'_>| s.anchor == anchor) {
            anchor = format!("{base}-{k}");
            k += 1;
        }
        sections.push(Section { exp, anchor, plots: drawn });
    }
    files.html = out.join("report.html");
    rnnlab_train::write_atomic(&files.html, html::render(results, info, &sections).as_bytes())?;
    files.markdown = out.join("report.md");
    rnnlab_train::write_atomic(&files.markdown, markdown::render(results, info, &sections).as_bytes())?;
    Ok(files)
}

/// A number in at most 3 significant digits (scientific outside `[1e-3, 1e5)`).
pub(crate) fn format_num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        return v.to_string();
    }
    if a == 0.0 {
        return "0".to_string();
    }
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.2e}");
    }
    let digits = (2 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), format_num)
}

/// The CSS class and text of a verdict status.
pub(crate) fn status_class(s: Status) -> &'static str {
    match s {
        Status::Supported => "supported",
        Status::NotSupported => "not-supported",
        Status::Inconclusive => "inconclusive",
        Status::NotEvaluated => "not-evaluated",
    }
}

/// The header of the per-run metrics table.
pub(crate) const METRIC_COLUMNS: [&str; 9] = [
    "run",
    "label",
    "decay factor",
    "horizon",
    "σ₁(W_hh) / bound",
    "final loss",
    "baseline",
    "solved",
    "diverged / error",
];

/// A run's row of the metrics table.
pub(crate) fn metric_row(r: &RunResult) -> [String; 9] {
    let m = &r.metrics;
    let horizon = match m.horizon {
        Some(h) if m.horizon_capped => format!("≥ {h}"),
        Some(h) => h.to_string(),
        None => "–".to_string(),
    };
    let sigma = match (m.sigma1_whh, m.pascanu_bound) {
        (Some(s), Some(b)) => format!("{} / {}", format_num(s), format_num(b)),
        (Some(s), None) => format_num(s),
        _ => "–".to_string(),
    };
    let solved = match (m.solved, m.steps_to_solve) {
        (Some(true), Some(s)) => format!("yes (step {s})"),
        (Some(true), None) => "yes".to_string(),
        (Some(false), _) => "no".to_string(),
        (None, _) => "–".to_string(),
    };
    let trouble = match (&r.error, m.diverged, &m.divergence) {
        (Some(e), _, _) => format!("error: {e}"),
        (None, true, Some(d)) => format!("diverged: {d}"),
        (None, true, None) => "diverged".to_string(),
        (None, false, _) if m.trained => "no".to_string(),
        _ => "–".to_string(),
    };
    [
        r.id.clone(),
        r.label.clone(),
        opt(m.decay_factor),
        horizon,
        sigma,
        if m.trained { opt(m.final_loss) } else { "–".to_string() },
        if m.trained { format_num(m.baseline_loss) } else { "–".to_string() },
        solved,
        trouble,
    ]
}
