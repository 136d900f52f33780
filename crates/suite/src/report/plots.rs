//! Which plots an experiment gets, chosen from the metrics its runs have (not from its id, so
//! a user's grid gets sensible plots too):
//! - gradient norm vs lag (log y) when runs have a curve at initialisation: one line per label
//!   (the median over the label's runs, i.e. its seeds), the probe batch's p10–p90 band when a
//!   panel has at most [`BAND_LINES`] lines; runs diagnosed only (not trained) are preferred
//!   when the experiment has both;
//! - held-out loss and training loss vs step (log y) for trained runs, every run drawn, with the
//!   task's baseline dashed and the solved line dotted;
//! - the pre-clip gradient norm vs step (log y) when a trained run clips or diverged;
//! - saturation, mean derivative and forget-gate mean per label when a run saturates at least
//!   [`SATURATION_SHOWN`] of its units or has a forget gate.
//!
//! - test accuracy per configuration against chance (1 / classes) when trained runs classify
//!   (E8: sequential and permuted digits against the 10% baseline).
//!
//! More than [`MAX_LINES`] labels are split into panels by the label's first word (`tanh/…`,
//! `relu/…`), or in chunks when that does not split them.

use rnnlab_train::TrainConfig;

use super::format_num;
use super::svg::{Chart, DotChart, LineChart, Rule, Series};
use crate::{ExperimentResult, RunResult, SOLVED_FRACTION};

/// At most this many lines (labels) per plot; more are split into panels.
pub(crate) const MAX_LINES: usize = 10;

/// The p10–p90 band is drawn when a gradient-norm panel has at most this many lines.
pub(crate) const BAND_LINES: usize = 4;

/// The activation-statistics plot is drawn when some run saturates at least this fraction.
pub(crate) const SATURATION_SHOWN: f64 = 0.01;

/// One plot of an experiment.
#[derive(Clone, Debug)]
pub(crate) struct Plot {
    /// What it shows, as a file-name part: `grad-norm`, `grad-norm-tanh`, `held-out-loss`, …
    pub kind: String,
    /// What a reader needs to know to read it (grouping, band, omissions).
    pub caption: String,
    /// The chart.
    pub chart: Chart,
}

/// The runs grouped by label, in order of first appearance.
fn by_label<'a>(runs: impl Iterator<Item = &'a RunResult>) -> Vec<(&'a str, Vec<&'a RunResult>)> {
    let mut out: Vec<(&str, Vec<&RunResult>)> = Vec::new();
    for r in runs {
        match out.iter_mut().find(|(l, _)| *l == r.label) {
            Some((_, v)) => v.push(r),
            None => out.push((r.label.as_str(), vec![r])),
        }
    }
    out
}

/// The first word of a label: up to its first `/`, space or comma.
fn prefix(label: &str) -> &str {
    label.split(['/', ' ', ',']).next().unwrap_or(label)
}

/// A file-name-safe form of `s`.
pub(crate) fn slug(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '_' })
        .collect();
    if out.is_empty() { "_".to_string() } else { out }
}

/// Splits the groups into panels of at most [`MAX_LINES`]: by the label's first word when
/// that gives several panels each small enough, otherwise in chunks. Each panel comes with
/// its name (empty for a single panel).
fn panels<T>(groups: Vec<(&str, T)>) -> Vec<(String, Vec<(&str, T)>)> {
    if groups.len() <= MAX_LINES {
        return vec![(String::new(), groups)];
    }
    let mut by_prefix: Vec<(String, Vec<(&str, T)>)> = Vec::new();
    for (label, t) in groups {
        let p = prefix(label).to_string();
        match by_prefix.iter_mut().find(|(q, _)| *q == p) {
            Some((_, v)) => v.push((label, t)),
            None => by_prefix.push((p, vec![(label, t)])),
        }
    }
    if by_prefix.len() > 1 && by_prefix.iter().all(|(_, v)| v.len() <= MAX_LINES) {
        return by_prefix;
    }
    let all: Vec<(&str, T)> = by_prefix.into_iter().flat_map(|(_, v)| v).collect();
    let mut out: Vec<(String, Vec<(&str, T)>)> = Vec::new();
    for (i, item) in all.into_iter().enumerate() {
        if i % MAX_LINES == 0 {
            out.push((format!("part {}", i / MAX_LINES + 1), Vec::new()));
        }
        if let Some((_, v)) = out.last_mut() {
            v.push(item);
        }
    }
    out
}

/// The median of the finite values; `None` if there is none.
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    // In bounds: n >= 1, so n / 2 < n and, for even n >= 2, n / 2 - 1 >= 0.
    Some(if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) })
}

/// The per-index median of several curves (of possibly different lengths); NaN where no curve
/// has a finite value.
fn median_curve<'a>(curves: impl Iterator<Item = &'a [f64]> + Clone) -> Vec<f64> {
    let len = curves.clone().map(<[f64]>::len).max().unwrap_or(0);
    (0..len).map(|k| median(curves.clone().filter_map(|c| c.get(k).copied()).collect()).unwrap_or(f64::NAN)).collect()
}

fn title(e: &ExperimentResult, what: &str, panel: &str) -> String {
    if panel.is_empty() { format!("{}: {what}", e.id) } else { format!("{}: {what} ({panel})", e.id) }
}

fn kind(base: &str, panel: &str) -> String {
    if panel.is_empty() { base.to_string() } else { format!("{base}-{}", slug(panel)) }
}

/// Every plot of an experiment, in reading order.
pub(crate) fn plots(e: &ExperimentResult) -> Vec<Plot> {
    let mut out = grad_norm(e);
    let trained: Vec<&RunResult> = e.runs.iter().filter(|r| r.metrics.trained).collect();
    let baselines = baseline_rules(&trained);
    let solved: Vec<Rule> = baselines
        .iter()
        .map(|b| Rule {
            label: format!("solved line {} ({SOLVED_FRACTION} × baseline)", format_num(SOLVED_FRACTION * b.y)),
            y: SOLVED_FRACTION * b.y,
            dotted: true,
        })
        .collect();
    let eval_rules: Vec<Rule> = baselines.iter().cloned().chain(solved).collect();
    out.extend(traces(
        e,
        &trained,
        &Trace {
            kind: "held-out-loss",
            what: "held-out loss during training",
            y_label: "held-out loss",
            rules: eval_rules,
            markers: true,
            get: |r| &r.metrics.eval_curve,
        },
    ));
    out.extend(traces(
        e,
        &trained,
        &Trace {
            kind: "training-loss",
            what: "training loss",
            y_label: "training loss (batch)",
            rules: baselines,
            markers: false,
            get: |r| &r.metrics.loss_trace,
        },
    ));
    let clips = trained.iter().any(|r| r.metrics.diverged || r.config.clip != rnnlab_optim::ClipConfig::None);
    if clips {
        out.extend(traces(
            e,
            &trained,
            &Trace {
                kind: "pre-clip-norm",
                what: "gradient norm before clipping",
                y_label: "global gradient norm before clipping",
                rules: clip_rules(&trained),
                markers: false,
                get: |r| &r.metrics.pre_clip_trace,
            },
        ));
    }
    out.extend(activation_stats(e));
    out.extend(accuracy(e));
    out
}

fn grad_norm(e: &ExperimentResult) -> Vec<Plot> {
    let with_curve = |r: &&RunResult| !r.metrics.grad_norm_by_lag.is_empty();
    let diagnosed: Vec<&RunResult> = e.runs.iter().filter(with_curve).filter(|r| !r.metrics.trained).collect();
    let (runs, which) = if diagnosed.is_empty() {
        (e.runs.iter().filter(with_curve).collect(), "")
    } else if diagnosed.len() < e.runs.iter().filter(with_curve).count() {
        (
            diagnosed,
            " Only the runs diagnosed without training are drawn; the trained runs' decay and horizon are in the table.",
        )
    } else {
        (diagnosed, "")
    };
    if runs.is_empty() {
        return Vec::new();
    }
    let groups = by_label(runs.into_iter());
    let seeds = groups.iter().map(|(_, v)| v.len()).max().unwrap_or(1);
    let mut out = Vec::new();
    for (panel, groups) in panels(groups) {
        let band = groups.len() <= BAND_LINES;
        let series = groups
            .iter()
            .map(|(label, runs)| {
                let mid = median_curve(runs.iter().map(|r| r.metrics.grad_norm_by_lag.as_slice()));
                let p10 = median_curve(runs.iter().map(|r| r.metrics.grad_norm_p10.as_slice()));
                let p90 = median_curve(runs.iter().map(|r| r.metrics.grad_norm_p90.as_slice()));
                Series {
                    label: (*label).to_string(),
                    lines: vec![mid.iter().enumerate().map(|(k, &y)| (k as f64, y)).collect()],
                    band: if band {
                        p10.iter().zip(&p90).enumerate().map(|(k, (&l, &h))| (k as f64, l, h)).collect()
                    } else {
                        Vec::new()
                    },
                    markers: false,
                }
            })
            .collect();
        let mut caption = String::from(
            "At initialisation: ‖∂L/∂h‖ at each lag relative to the last step (lag 0), geometric mean over the probe batch; log scale.",
        );
        if seeds > 1 {
            caption.push_str(" Each line is the median over the runs sharing its label (seeds).");
        }
        if band {
            caption.push_str(" Shaded: the 10th–90th percentile over the probe batch.");
        }
        caption.push_str(&format!(
            " Values more than {} decades below the largest are not drawn.",
            super::svg::LOG_DECADES
        ));
        caption.push_str(which);
        out.push(Plot {
            kind: kind("grad-norm", &panel),
            caption,
            chart: Chart::Line(LineChart {
                title: title(e, "gradient norm vs lag at initialisation", &panel),
                x_label: "lag k (steps before the last)".to_string(),
                y_label: "relative gradient norm".to_string(),
                log_y: true,
                series,
                rules: Vec::new(),
            }),
        });
    }
    out
}

/// The task baselines of the trained runs, one dashed rule per distinct value.
fn baseline_rules(trained: &[&RunResult]) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    for r in trained {
        let b = r.metrics.baseline_loss;
        if b.is_finite() && b > 0.0 && !out.iter().any(|q| (q.y - b).abs() <= 1e-9 * b) {
            out.push(Rule { label: format!("baseline {}", format_num(b)), y: b, dotted: false });
        }
    }
    out
}

/// The global-norm clipping thresholds of the trained runs, one dashed rule per value.
fn clip_rules(trained: &[&RunResult]) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    for r in trained {
        let TrainConfig { clip: rnnlab_optim::ClipConfig::GlobalNorm { max_norm }, .. } = r.config else { continue };
        if max_norm.is_finite() && max_norm > 0.0 && !out.iter().any(|q| q.y == max_norm) {
            out.push(Rule {
                label: format!("global-norm threshold {}", format_num(max_norm)),
                y: max_norm,
                dotted: false,
            });
        }
    }
    out
}

/// A per-step trace of the trained runs.
struct Trace {
    kind: &'static str,
    what: &'static str,
    y_label: &'static str,
    rules: Vec<Rule>,
    markers: bool,
    get: fn(&RunResult) -> &Vec<(u64, f64)>,
}

fn traces(e: &ExperimentResult, trained: &[&RunResult], t: &Trace) -> Vec<Plot> {
    if !trained.iter().any(|r| !(t.get)(r).is_empty()) {
        return Vec::new();
    }
    let groups = by_label(trained.iter().copied());
    let seeds = groups.iter().map(|(_, v)| v.len()).max().unwrap_or(1);
    let diverged = trained.iter().filter(|r| r.metrics.diverged).count();
    let mut out = Vec::new();
    for (panel, groups) in panels(groups) {
        let series = groups
            .iter()
            .map(|(label, runs)| Series {
                label: (*label).to_string(),
                lines: runs.iter().map(|r| (t.get)(r).iter().map(|&(s, y)| (s as f64, y)).collect()).collect(),
                band: Vec::new(),
                markers: t.markers,
            })
            .collect();
        let mut caption = format!("{} against the optimizer step; log scale.", capitalise(t.what));
        if seeds > 1 {
            caption.push_str(" Every run is drawn; runs sharing a label (seeds) share a colour.");
        }
        if diverged > 0 {
            caption.push_str(&format!(
                " {diverged} run(s) diverged: their lines end where the loss stopped being finite or exploded."
            ));
        }
        out.push(Plot {
            kind: kind(t.kind, &panel),
            caption,
            chart: Chart::Line(LineChart {
                title: title(e, t.what, &panel),
                x_label: "step".to_string(),
                y_label: t.y_label.to_string(),
                log_y: true,
                series,
                rules: t.rules.clone(),
            }),
        });
    }
    out
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

fn activation_stats(e: &ExperimentResult) -> Vec<Plot> {
    let saturates = e.runs.iter().any(|r| r.metrics.saturation.is_some_and(|s| s >= SATURATION_SHOWN));
    let gates = e.runs.iter().any(|r| r.metrics.forget_gate.is_some());
    if !(saturates || gates) {
        return Vec::new();
    }
    let has = |r: &&RunResult| {
        r.metrics.saturation.is_some() || r.metrics.mean_derivative.is_some() || r.metrics.forget_gate.is_some()
    };
    let groups = by_label(e.runs.iter().filter(has));
    type Get = fn(&RunResult) -> Option<f64>;
    let metrics: [(&str, Get); 3] = [
        ("saturated fraction", |r| r.metrics.saturation),
        ("mean relative derivative f′/max f′", |r| r.metrics.mean_derivative),
        ("forget-gate mean", |r| r.metrics.forget_gate),
    ];
    let series: Vec<(String, Vec<Option<f64>>)> = metrics
        .iter()
        .map(|(name, get)| {
            let values = groups.iter().map(|(_, runs)| median(runs.iter().filter_map(|r| get(r)).collect())).collect();
            (name.to_string(), values)
        })
        .filter(|(_, v): &(String, Vec<Option<f64>>)| v.iter().any(Option::is_some))
        .collect();
    let seeds = groups.iter().map(|(_, v)| v.len()).max().unwrap_or(1);
    let mut caption = String::from(
        "At initialisation, top layer, averaged over the steps: the fraction of saturated units, the mean derivative of the activation relative to its largest value (f′/max f′: 1 where the activation is steepest, e.g. where σ′ = 1/4), and the forget gate's mean where the cell has one.",
    );
    if seeds > 1 {
        caption.push_str(" Median over the runs sharing a label (seeds).");
    }
    vec![Plot {
        kind: "activation-stats".to_string(),
        caption,
        chart: Chart::Dots(DotChart {
            title: title(e, "activation statistics at initialisation", ""),
            x_label: "value (fraction or mean)".to_string(),
            y_label: "run".to_string(),
            categories: groups.iter().map(|(l, _)| (*l).to_string()).collect(),
            series,
        }),
    }]
}

/// Test accuracy per configuration against chance, for trained classification runs: a row per
/// configuration, a dot per variant (the label's part before its first `/`, e.g. `sequential`
/// and `permuted`, when every label has one), the median over the runs sharing a label.
fn accuracy(e: &ExperimentResult) -> Vec<Plot> {
    let classifies = |r: &&RunResult| r.metrics.trained && r.config.model.loss != rnnlab_train::LossKind::MseLast;
    let runs: Vec<&RunResult> = e.runs.iter().filter(classifies).collect();
    if !runs.iter().any(|r| r.metrics.test_accuracy.is_some()) {
        return Vec::new();
    }
    let split = runs.iter().all(|r| r.label.contains('/'));
    let part = |label: &str| -> (String, String) {
        match label.split_once('/') {
            Some((v, c)) if split => (v.to_string(), c.to_string()),
            _ => ("test accuracy".to_string(), label.to_string()),
        }
    };
    let mut variants: Vec<String> = Vec::new();
    let mut configs: Vec<String> = Vec::new();
    for r in &runs {
        let (v, c) = part(&r.label);
        if !variants.contains(&v) {
            variants.push(v);
        }
        if !configs.contains(&c) {
            configs.push(c);
        }
    }
    let mut series: Vec<(String, Vec<Option<f64>>)> = variants
        .iter()
        .map(|v| {
            let values = configs
                .iter()
                .map(|c| {
                    let of = runs.iter().filter(|r| part(&r.label) == (v.clone(), c.clone()));
                    median(of.filter_map(|r| r.metrics.test_accuracy).collect())
                })
                .collect();
            (v.clone(), values)
        })
        .collect();
    let chance: Vec<Option<f64>> = configs
        .iter()
        .map(|c| {
            let classes = runs.iter().find(|r| part(&r.label).1 == *c).map_or(0, |r| r.config.model.output_dim);
            (classes > 0).then(|| 1.0 / classes as f64)
        })
        .collect();
    let classes: Vec<usize> = runs.iter().map(|r| r.config.model.output_dim).collect();
    let chance_label = if classes.iter().all(|&k| k == classes[0]) {
        format!("chance (1/{} = {}%)", classes[0], format_num(100.0 / classes[0] as f64))
    } else {
        "chance (1 / classes)".to_string()
    };
    series.push((chance_label, chance));
    let seeds = by_label(runs.iter().copied()).iter().map(|(_, v)| v.len()).max().unwrap_or(1);
    let mut caption = String::from(
        "Final held-out (test) accuracy of each trained configuration, against chance: the accuracy of guessing, 1 / the number of classes.",
    );
    if split {
        caption.push_str(&format!(" One dot per variant ({}).", variants.join(", ")));
    }
    if seeds > 1 {
        caption.push_str(" Median over the runs sharing a label (seeds).");
    }
    let diverged = runs.iter().filter(|r| r.metrics.test_accuracy.is_none()).count();
    if diverged > 0 {
        caption.push_str(&format!(" {diverged} run(s) have no accuracy (diverged or failed) and are not drawn."));
    }
    vec![Plot {
        kind: "accuracy".to_string(),
        caption,
        chart: Chart::Dots(DotChart {
            title: title(e, "test accuracy against chance", ""),
            x_label: "test accuracy (fraction correct)".to_string(),
            y_label: "configuration".to_string(),
            categories: configs,
            series,
        }),
    }]
}
