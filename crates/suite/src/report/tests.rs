//! The report checked structurally: every SVG (file and inline) parses as XML and shows its
//! title, axis labels and legend; the HTML names no URL and links only its anchors and plot
//! files; the verdict table comes before the first plot; report.md links every plot file;
//! non-finite and empty data never break a plot.

use std::path::{Path, PathBuf};

use super::plots::{MAX_LINES, plots};
use super::svg::{Chart, LineChart, Rule, Series};
use super::*;
use crate::{Grid, Metrics, Options, Verdict, run_grid};

fn tmp(name: &str) -> PathBuf {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("rnnlab-report-{name}-{}-{call}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn info() -> ReportInfo {
    ReportInfo::new("2025-01-02 03:04 UTC", "test machine, 2 cores", "1.5 s")
}

/// A tiny grid: two init-only RNNs whose tanh saturates, and a clipped / unclipped pair of
/// short training runs with two seeds each.
fn tiny_grid() -> Grid {
    let rnn = |id: &str, label: &str, scale: f64| {
        format!(
            r#"{{"id": "{id}", "label": "{label}", "probe_batch": 4, "config": {{
              "task": {{"task": "adding", "seq_len": 15}},
              "model": {{"input_dim": 2, "output_dim": 1, "hidden_dim": 6,
                "cell": {{"kind": "rnn", "activation": "tanh", "w_hh_init": {{"orthogonal": {{"gain": {scale}}}}}}}, "loss": "mse_last"}},
              "optimizer": {{"kind": "sgd", "lr": 0.01}}}}}}"#
        )
    };
    let trained = |id: &str, label: &str, clip: &str, seed: u64| {
        format!(
            r#"{{"id": "{id}", "label": "{label}", "train": true, "probe_batch": 4, "config": {{
              "task": {{"task": "adding", "seq_len": 10}},
              "model": {{"input_dim": 2, "output_dim": 1, "hidden_dim": 5, "cell": {{"kind": "rnn"}}, "loss": "mse_last", "seed": {seed}}},
              "optimizer": {{"kind": "adam", "lr": 0.01}}, "clip": {clip}, "seed": {seed},
              "n_steps": 16, "batch_size": 8, "eval_batch": 32, "eval_every": 4}}}}"#
        )
    };
    let json = format!(
        r#"{{"schema": 1, "experiments": [
          {{"id": "S1", "title": "saturation", "claim": "a claim with <markup> & \"quotes\"", "differs": "smaller", "runs": [{}, {}]}},
          {{"id": "C/2", "title": "clipping", "claim": "clipping helps", "runs": [{}, {}, {}, {}]}}]}}"#,
        rnn("s/small", "tanh ×0.1", 0.1),
        rnn("s/big", "tanh ×3 <big>", 3.0),
        trained("c/none/0", "no clipping", r#"{"kind": "none"}"#, 1),
        trained("c/none/1", "no clipping", r#"{"kind": "none"}"#, 2),
        trained("c/global/0", "global norm", r#"{"kind": "global_norm", "max_norm": 1.0}"#, 1),
        trained("c/global/1", "global norm", r#"{"kind": "global_norm", "max_norm": 1.0}"#, 2),
    );
    Grid::parse("tiny", &json).unwrap()
}

/// Results with hostile data: non-finite and empty curves, zero losses, a run that failed,
/// an experiment with no run at all, and more labels than fit one plot.
fn hostile() -> Results {
    let base = tiny_grid().experiments[1].runs[0].config.clone();
    let run = |id: &str, label: &str, m: Metrics| RunResult {
        id: id.to_string(),
        label: label.to_string(),
        replicate: 0,
        config: base.clone(),
        metrics: m,
        error: None,
    };
    let curve = |f: f64| (0..30).map(|k| f.powi(k)).collect::<Vec<f64>>();
    let mut nan_curve = curve(0.9);
    nan_curve[3] = f64::NAN;
    nan_curve[4] = f64::INFINITY;
    nan_curve[5] = -1.0;
    nan_curve[6] = 0.0;
    let weird = Metrics {
        grad_norm_by_lag: nan_curve,
        grad_norm_p10: vec![f64::NAN; 30],
        grad_norm_p90: vec![f64::INFINITY; 30],
        trained: true,
        eval_curve: vec![(0, f64::NAN), (5, 0.0), (10, -3.0)],
        loss_trace: vec![(0, f64::INFINITY)],
        pre_clip_trace: vec![],
        baseline_loss: f64::NAN,
        diverged: true,
        saturation: Some(f64::NAN),
        ..Metrics::default()
    };
    let tiny = Metrics { grad_norm_by_lag: curve(1e-5), saturation: Some(0.5), ..Metrics::default() };
    let empty = Metrics::default();
    let mut failed = run("w/failed", "failed", Metrics::default());
    failed.error = Some("widths <differ> | badly".to_string());
    let many: Vec<RunResult> = (0..25)
        .map(|i| {
            let m = Metrics { grad_norm_by_lag: curve(0.5 + 0.02 * i as f64), ..Metrics::default() };
            run(&format!("m/{i}"), &format!("act{}/init{}", i / 5, i % 5), m)
        })
        .collect();
    let exp = |id: &str, runs: Vec<RunResult>| ExperimentResult {
        id: id.to_string(),
        title: format!("{id} title"),
        claim: "c".to_string(),
        differs: String::new(),
        runs,
        missing: Vec::new(),
        verdict: Verdict { status: Status::NotEvaluated, rule: "none".to_string(), evidence: "n/a".to_string() },
    };
    let mut nothing = exp("N", Vec::new());
    nothing.missing = vec!["n/1".to_string()];
    nothing.verdict.status = Status::Inconclusive;
    Results {
        schema: crate::RESULTS_SCHEMA,
        grid: "hostile <grid>".to_string(),
        experiments: vec![
            exp(
                "W",
                vec![
                    run("w/weird", "weird", weird),
                    run("w/tiny", "tiny", tiny),
                    run("w/empty", "empty", empty),
                    failed,
                ],
            ),
            exp("M", many),
            nothing,
        ],
    }
}

/// The trimmed contents of every `<text>` element of an SVG document.
fn svg_texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML: {e}\n{svg}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.tag_name().name() == "text")
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect()
}

/// Every `<svg …>…</svg>` inside the page.
fn inline_svgs(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<svg") {
        let end = rest[start..].find("</svg>").expect("an <svg> is closed") + start + "</svg>".len();
        out.push(&rest[start..end]);
        rest = &rest[end..];
    }
    out
}

/// The values of `attr="…"` in the page.
fn attr_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let pat = format!("{attr}=\"");
    html.match_indices(&pat)
        .map(|(i, _)| {
            let v = &html[i + pat.len()..];
            &v[..v.find('"').unwrap()]
        })
        .collect()
}

/// Every structural property of a written report.
fn check(results: &Results, out: &Path, files: &ReportFiles) {
    let html = std::fs::read_to_string(&files.html).unwrap();
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    // Which plots each experiment should have, and the texts each must show.
    let expected: Vec<Vec<String>> =
        results.experiments.iter().flat_map(|e| plots(e).into_iter().map(|p| p.chart.texts())).collect();
    assert_eq!(files.plots.len(), expected.len());
    assert!(!files.plots.is_empty());
    let on_disk: Vec<PathBuf> = std::fs::read_dir(out.join(PLOTS_DIR)).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(on_disk.len(), files.plots.len(), "plots/ holds exactly this report's plots");
    let inline = inline_svgs(&html);
    assert_eq!(inline.len(), files.plots.len(), "every plot inline in the page");
    for ((path, want), inline) in files.plots.iter().zip(&expected).zip(&inline) {
        let svg = std::fs::read_to_string(path).unwrap();
        let texts = svg_texts(&svg);
        for t in want {
            let no_data = format!("{t} (no data)");
            assert!(texts.iter().any(|x| *x == *t || *x == no_data), "{}: no text {t:?} in {texts:?}", path.display());
        }
        assert!(want.len() >= 4, "a title, two axis labels and at least one legend entry: {want:?}");
        assert_eq!(svg_texts(inline), texts, "the inline copy of {}", path.display());
        assert!(!svg.replace(r#"xmlns="http://www.w3.org/2000/svg""#, "").contains("http"), "{}", path.display());
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(md.contains(&format!("](plots/{name})")), "report.md links {name}");
        assert!(html.contains(&format!("href=\"plots/{name}\"")), "report.html links {name}");
    }
    for p in &on_disk {
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(md.contains(&format!("](plots/{name})")), "report.md links {name}");
    }
    // No URL, nothing loaded: links go to anchors of the page or to plot files beside it.
    for bad in ["http://", "https://", "src=", "<script", "url(", "@import", "<link", "<img", "//"] {
        assert!(!html.contains(bad), "the page contains {bad:?}");
    }
    let ids = attr_values(&html, "id");
    for href in attr_values(&html, "href") {
        if let Some(anchor) = href.strip_prefix('#') {
            assert!(ids.contains(&anchor), "#{anchor} is not an id of the page");
        } else {
            assert!(href.starts_with("plots/") && out.join(href).is_file(), "href {href:?}");
        }
    }
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "ids are unique");
    // The verdict table first: every experiment's verdict row comes before the first plot.
    let table = html.find("<h2>Verdicts</h2>").unwrap();
    let first_plot = html.find("<svg").unwrap();
    assert!(table < first_plot);
    let table_html = &html[table..html[table..].find("</table>").unwrap() + table];
    for e in &results.experiments {
        let class = status_class(e.verdict.status);
        assert!(table_html.contains(&format!("status {class}\">{}</span>", e.verdict.status)), "{}", e.id);
    }
    for (what, text) in [("html", &html), ("md", &md)] {
        for s in [&info().date, &info().machine, &info().wall_time] {
            assert!(text.contains(s.as_str()), "{what} states {s}");
        }
        assert!(text.find("Verdicts").unwrap() < text.find("decay factor").unwrap(), "{what}");
        for e in &results.experiments {
            for r in &e.runs {
                assert!(text.contains(&r.id), "{what} lists run {}", r.id);
            }
        }
    }
}

#[test]
fn a_tiny_grid_reports_every_plot_kind_as_valid_svg_with_labels_and_legends() {
    let dir = tmp("tiny");
    let results = run_grid(&tiny_grid(), "tiny", &Options::new(&dir), &()).unwrap();
    let files = write_report(&results, &dir, &info()).unwrap();
    check(&results, &dir, &files);
    let names: Vec<String> =
        files.plots.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for want in [
        "s1-grad-norm.svg",
        "s1-activation-stats.svg",
        "c_2-grad-norm.svg",
        "c_2-held-out-loss.svg",
        "c_2-training-loss.svg",
        "c_2-pre-clip-norm.svg",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    assert_eq!(names.len(), 6, "{names:?}");
    let html = std::fs::read_to_string(&files.html).unwrap();
    assert!(html.contains("a claim with &lt;markup&gt; &amp; &quot;quotes&quot;"));
    // Two seeds per label: one line per label, and the legend says each label once.
    let pre_clip = std::fs::read_to_string(dir.join("plots/c_2-pre-clip-norm.svg")).unwrap();
    let texts = svg_texts(&pre_clip);
    assert_eq!(texts.iter().filter(|t| *t == "global norm").count(), 1, "{texts:?}");
    assert!(texts.iter().any(|t| t == "global-norm threshold 1"), "{texts:?}");
    // Writing again replaces the plots rather than piling them up.
    let again = write_report(&results, &dir, &info()).unwrap();
    assert_eq!(again, files);
    check(&results, &dir, &again);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hostile_data_never_breaks_a_plot_and_many_labels_split_into_panels() {
    let dir = tmp("hostile");
    let results = hostile();
    // A stale plot from an earlier report is removed.
    std::fs::create_dir_all(dir.join(PLOTS_DIR)).unwrap();
    std::fs::write(dir.join(PLOTS_DIR).join("old.svg"), "<svg/>").unwrap();
    let files = write_report(&results, &dir, &info()).unwrap();
    assert!(!dir.join(PLOTS_DIR).join("old.svg").exists());
    check(&results, &dir, &files);
    let m = &results.experiments[1];
    let panels = plots(m);
    assert_eq!(panels.len(), 5, "25 labels in 5 panels by their first word");
    for p in &panels {
        let Chart::Line(c) = &p.chart else { panic!("a line chart") };
        assert!(c.series.len() <= MAX_LINES && c.series.len() == 5);
        assert!(c.series.iter().all(|s| s.band.is_empty()), "no band for more than 4 lines");
    }
    let html = std::fs::read_to_string(&files.html).unwrap();
    assert!(html.contains("hostile &lt;grid&gt;"));
    assert!(html.contains("error: widths &lt;differ&gt; | badly"));
    assert!(html.contains("Missing runs (1)"));
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    assert!(md.contains("widths &lt;differ&gt; \\| badly"), "a | in a cell is escaped");
    // The weird run's eval curve has no drawable point, its loss trace neither: those plots
    // say "no data" but still carry their axes and legend.
    let held_out = std::fs::read_to_string(dir.join("plots/w-held-out-loss.svg")).unwrap();
    assert!(svg_texts(&held_out).iter().any(|t| t == "no data"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn charts_with_nothing_finite_say_no_data_and_log_axes_span_whole_decades() {
    let empty = LineChart {
        title: "t".to_string(),
        x_label: "x".to_string(),
        y_label: "y".to_string(),
        log_y: true,
        series: vec![Series {
            label: "s".to_string(),
            lines: vec![vec![], vec![(f64::NAN, 1.0), (1.0, f64::INFINITY)]],
            ..Series::default()
        }],
        rules: vec![Rule { label: "r".to_string(), y: f64::NAN, dotted: false }],
    };
    for log_y in [true, false] {
        let svg = Chart::Line(LineChart { log_y, ..empty.clone() }).to_svg().unwrap();
        let texts = svg_texts(&svg);
        for t in ["t", "x", "y", "s (no data)", "no data"] {
            assert!(texts.iter().any(|x| x == t), "{t} in {texts:?}");
        }
    }
    // 1e-30 is more than 20 decades below 1: the axis stops at 1e-20, a tick per two decades.
    let deep = LineChart {
        series: vec![Series {
            label: "s".to_string(),
            lines: vec![vec![(0.0, 1.0), (1.0, 1e-10), (2.0, 1e-30)]],
            ..Series::default()
        }],
        ..empty
    };
    let texts = svg_texts(&Chart::Line(deep).to_svg().unwrap());
    assert!(texts.iter().any(|t| t == "1e-20") && texts.iter().any(|t| t == "1"), "{texts:?}");
    assert!(!texts.iter().any(|t| t == "1e-21" || t == "1e-30" || t == "no data"), "{texts:?}");
}

#[test]
fn numbers_are_written_in_three_significant_digits() {
    for (v, want) in [
        (0.0, "0"),
        (1.0, "1"),
        (0.16666, "0.167"),
        (12.345, "12.3"),
        (999.9, "1000"),
        (1234.6, "1235"),
        (2e-5, "2.00e-5"),
        (-0.5, "-0.5"),
        (f64::INFINITY, "inf"),
    ] {
        assert_eq!(format_num(v), want, "{v}");
    }
}
