//! The verdict of each experiment: a stated rule applied to the runs' own numbers —
//! supported, not supported, or inconclusive (the runs cannot decide), with the evidence.
//! An honest "not supported" is a result.

use serde::{Deserialize, Serialize};

use crate::RunResult;

/// What the runs say about a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The rule holds on the runs' numbers.
    Supported,
    /// The rule fails on the runs' numbers.
    NotSupported,
    /// The numbers the rule needs are missing or the runs cannot decide (say why).
    Inconclusive,
    /// No rule for this experiment id (a user's grid).
    NotEvaluated,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Supported => "supported",
            Status::NotSupported => "not supported",
            Status::Inconclusive => "inconclusive",
            Status::NotEvaluated => "not evaluated",
        })
    }
}

/// A verdict with its rule and evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The outcome.
    pub status: Status,
    /// The rule, in words.
    pub rule: String,
    /// The numbers the rule was applied to.
    pub evidence: String,
}

/// The median of a metric over the runs whose label is `label` (all replicates); `None` if no
/// such run has it.
fn median(runs: &[RunResult], label: &str, metric: impl Fn(&RunResult) -> Option<f64>) -> Option<f64> {
    let mut v: Vec<f64> =
        runs.iter().filter(|r| r.label == label).filter_map(&metric).filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) })
}

fn labels_with<'a>(runs: &'a [RunResult], prefix: &str) -> Vec<&'a str> {
    let mut out: Vec<&str> = runs.iter().map(|r| r.label.as_str()).filter(|l| l.starts_with(prefix)).collect();
    out.dedup();
    out
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.3}"))
}

fn decay(r: &RunResult) -> Option<f64> {
    r.metrics.decay_factor
}

fn horizon(r: &RunResult) -> Option<f64> {
    r.metrics.horizon.map(|h| h as f64)
}

fn final_loss(r: &RunResult) -> Option<f64> {
    if r.metrics.diverged { Some(f64::INFINITY) } else { r.metrics.final_loss }
}

fn verdict(status: Status, rule: &str, evidence: String) -> Verdict {
    Verdict { status, rule: rule.to_string(), evidence }
}

fn decide(ok: Option<bool>, rule: &str, evidence: String) -> Verdict {
    match ok {
        Some(true) => verdict(Status::Supported, rule, evidence),
        Some(false) => verdict(Status::NotSupported, rule, evidence),
        None => verdict(Status::Inconclusive, rule, format!("{evidence}; a number the rule needs is missing")),
    }
}

/// The verdict of experiment `id` on its runs.
pub fn judge(id: &str, runs: &[RunResult]) -> Verdict {
    if let Some(failed) = runs.iter().find(|r| r.error.is_some()) {
        let rule = "every run must finish";
        return verdict(
            Status::Inconclusive,
            rule,
            format!("run {} failed: {}", failed.id, failed.error.as_deref().unwrap_or("")),
        );
    }
    match id {
        "E1" => e1(runs),
        "E2" => e2(runs),
        "E3" => e3(runs),
        "E4" => e4(runs),
        "E5" => e5(runs),
        "E6" => e6(runs),
        "E7" => e7(runs),
        "E8" => e8(runs),
        _ => verdict(Status::NotEvaluated, "no rule for this experiment id", String::new()),
    }
}

/// Saturation grows and the mean derivative falls with the recurrent scale, for tanh and sigmoid.
fn e1(runs: &[RunResult]) -> Verdict {
    let rule = "for tanh and for sigmoid: the saturated fraction at the largest recurrent scale exceeds the one at the \
                smallest, and the mean derivative is lower";
    let mut evidence = Vec::new();
    let mut ok = Some(true);
    for act in ["tanh", "sigmoid"] {
        let labels = labels_with(runs, &format!("{act} ×"));
        let (Some(first), Some(last)) = (labels.first(), labels.last()) else {
            ok = None;
            continue;
        };
        let sat = |l: &str| median(runs, l, |r| r.metrics.saturation);
        let der = |l: &str| median(runs, l, |r| r.metrics.mean_derivative);
        evidence.push(format!(
            "{act}: saturated {} → {}, mean derivative {} → {} ({first} → {last})",
            fmt(sat(first)),
            fmt(sat(last)),
            fmt(der(first)),
            fmt(der(last))
        ));
        let holds = match (sat(first), sat(last), der(first), der(last)) {
            (Some(s0), Some(s1), Some(d0), Some(d1)) => Some(s1 > s0 && d1 < d0),
            _ => None,
        };
        ok = match (ok, holds) {
            (Some(a), Some(b)) => Some(a && b),
            _ => None,
        };
    }
    decide(ok, rule, evidence.join("; "))
}

/// Sigmoid RNNs vanish under every initialisation; a ReLU-family RNN with identity or
/// orthogonal recurrent weights does not.
fn e2(runs: &[RunResult]) -> Verdict {
    let rule = "every sigmoid run has decay < 0.9 per step, and some relu-family run with identity or orthogonal W_hh \
                has decay in [0.9, 1.1]";
    let sig: Vec<(&str, Option<f64>)> =
        labels_with(runs, "sigmoid/").into_iter().map(|l| (l, median(runs, l, decay))).collect();
    let kept: Vec<(&str, Option<f64>)> = runs
        .iter()
        .map(|r| r.label.as_str())
        .filter(|l| {
            ["relu/", "leaky_relu/", "elu/"].iter().any(|p| l.starts_with(p))
                && (l.ends_with("identity") || l.ends_with("orthogonal"))
        })
        .map(|l| (l, median(runs, l, decay)))
        .collect();
    let evidence = format!(
        "sigmoid decay {}; relu-family identity/orthogonal decay {}",
        sig.iter().map(|(l, d)| format!("{l} {}", fmt(*d))).collect::<Vec<_>>().join(", "),
        kept.iter().map(|(l, d)| format!("{l} {}", fmt(*d))).collect::<Vec<_>>().join(", ")
    );
    if sig.is_empty() || kept.is_empty() || sig.iter().any(|(_, d)| d.is_none()) {
        return decide(None, rule, evidence);
    }
    let ok = sig.iter().all(|(_, d)| d.is_some_and(|d| d < 0.9))
        && kept.iter().any(|(_, d)| d.is_some_and(|d| (0.9..=1.1).contains(&d)));
    decide(Some(ok), rule, evidence)
}

/// LSTM and GRU keep the gradient longer than a tanh RNN at initialisation, and solve the
/// adding problem at least as far as it.
fn e3(runs: &[RunResult]) -> Verdict {
    let rule = "at initialisation the LSTM's and each GRU's horizon exceed the tanh RNN's, and the longest adding \
                problem the LSTM solves is at least as long as the tanh RNN's longest";
    let h = |cell: &str| median(runs, &format!("{cell}/init"), horizon);
    let longest = |cell: &str| {
        runs.iter()
            .filter(|r| r.label.starts_with(&format!("{cell}/adding/T")) && r.metrics.solved == Some(true))
            .filter_map(|r| r.label.rsplit('T').next().and_then(|t| t.parse::<f64>().ok()))
            .fold(0.0f64, f64::max)
    };
    let grus: Vec<&str> = ["gru", "gru_reset_before"].into_iter().filter(|c| h(c).is_some()).collect();
    let evidence = format!(
        "horizon rnn {}, lstm {}, {}; longest adding T solved: rnn {}, lstm {}, {}",
        fmt(h("rnn")),
        fmt(h("lstm")),
        grus.iter().map(|g| format!("{g} {}", fmt(h(g)))).collect::<Vec<_>>().join(", "),
        longest("rnn"),
        longest("lstm"),
        grus.iter().map(|g| format!("{g} {}", longest(g))).collect::<Vec<_>>().join(", ")
    );
    let (Some(rnn), Some(lstm)) = (h("rnn"), h("lstm")) else { return decide(None, rule, evidence) };
    if grus.is_empty() {
        return decide(None, rule, evidence);
    }
    if longest("lstm") == 0.0 && longest("rnn") == 0.0 {
        return verdict(
            Status::Inconclusive,
            rule,
            format!("{evidence}; no cell solved any length: the budget is too small"),
        );
    }
    let ok = lstm > rnn && grus.iter().all(|g| h(g).is_some_and(|v| v > rnn)) && longest("lstm") >= longest("rnn");
    decide(Some(ok), rule, evidence)
}

/// Clipping turns diverging runs into finishing ones.
fn e5(runs: &[RunResult]) -> Verdict {
    let rule = "some run without clipping diverges, and no run with global-norm or value clipping does";
    let count = |label: &str| {
        let of: Vec<&RunResult> = runs.iter().filter(|r| r.label == label).collect();
        (of.iter().filter(|r| r.metrics.diverged).count(), of.len())
    };
    let (none, global, value) = (count("no clipping"), count("global norm"), count("value"));
    let evidence = format!(
        "diverged: no clipping {}/{}, global norm {}/{}, value {}/{}",
        none.0, none.1, global.0, global.1, value.0, value.1
    );
    if none.1 == 0 || global.1 == 0 || value.1 == 0 {
        return decide(None, rule, evidence);
    }
    if none.0 == 0 {
        return verdict(Status::Inconclusive, rule, format!("{evidence}; nothing diverged without clipping"));
    }
    decide(Some(global.0 == 0 && value.0 == 0), rule, evidence)
}

/// A forget-gate bias of 1 lengthens the LSTM's horizon and trains at least as well.
fn e7(runs: &[RunResult]) -> Verdict {
    let rule = "at initialisation the horizon with forget bias 1 exceeds the one with bias 0, and its final held-out \
                loss is at most 5% above bias 0's (a tie within noise counts as at least as well)";
    let h1 = median(runs, "forget bias 1", horizon);
    let h0 = median(runs, "forget bias 0", horizon);
    let l1 = median(runs, "forget bias 1", final_loss);
    let l0 = median(runs, "forget bias 0", final_loss);
    let evidence = format!("horizon {} vs {}; final loss {} vs {}", fmt(h1), fmt(h0), fmt(l1), fmt(l0));
    let ok = match (h1, h0, l1, l0) {
        (Some(h1), Some(h0), Some(l1), Some(l0)) => Some(h1 > h0 && l1 <= 1.05 * l0),
        _ => None,
    };
    decide(ok, rule, evidence)
}

/// Orthogonal or identity recurrent weights train further than a naive small Gaussian, whose
/// gradient vanishes fastest at initialisation.
fn e4(runs: &[RunResult]) -> Verdict {
    let rule = "the naive N(0, 0.01²) initialisation has the smallest decay factor at initialisation, and the better of \
                orthogonal and IRNN ends with a lower held-out loss than it (inconclusive unless that loss is below half \
                the baseline)";
    let names = ["naive", "xavier", "he (relu)", "orthogonal", "irnn"];
    let d: Vec<(&str, Option<f64>)> = names.iter().map(|n| (*n, median(runs, n, decay))).collect();
    let l: Vec<(&str, Option<f64>)> = names.iter().map(|n| (*n, median(runs, n, final_loss))).collect();
    let evidence = format!(
        "decay {}; final loss {}",
        d.iter().map(|(n, v)| format!("{n} {}", fmt(*v))).collect::<Vec<_>>().join(", "),
        l.iter().map(|(n, v)| format!("{n} {}", fmt(*v))).collect::<Vec<_>>().join(", ")
    );
    let (Some(naive_d), Some(naive_l)) = (d[0].1, l[0].1) else { return decide(None, rule, evidence) };
    let others_d: Option<Vec<f64>> = d[1..].iter().map(|(_, v)| *v).collect();
    let best = [l[3].1, l[4].1].into_iter().flatten().fold(f64::INFINITY, f64::min);
    let baseline = runs.first().map_or(f64::NAN, |r| r.metrics.baseline_loss);
    // A NaN baseline or an infinite best loss is no learning either.
    if best.partial_cmp(&(0.5 * baseline)) != Some(std::cmp::Ordering::Less) {
        let why =
            "neither orthogonal nor IRNN got below half the baseline: the budget is too small to compare training";
        return verdict(Status::Inconclusive, rule, format!("{evidence}; {why}"));
    }
    let ok = others_d.map(|o| o.iter().all(|&x| x > naive_d) && best < naive_l);
    decide(ok, rule, evidence)
}

/// Batch norm with γ₀ = 0.1 keeps the gradient better than γ₀ = 1, and normalising does not
/// make training worse.
fn e6(runs: &[RunResult]) -> Verdict {
    let rule = "at initialisation the decay factor with per-step batch norm γ₀ = 0.1 exceeds the one with γ₀ = 1, and \
                the best normalised LSTM's final held-out loss is at most 5% above the plain LSTM's";
    let d01 = median(runs, "bn γ0=0.1", decay);
    let d1 = median(runs, "bn γ0=1", decay);
    let plain = median(runs, "none", final_loss);
    let normed = ["bn γ0=0.1", "bn γ0=1", "bn input-only", "ln"];
    let best = normed.iter().filter_map(|n| median(runs, n, final_loss)).fold(f64::INFINITY, f64::min);
    let evidence = format!(
        "decay γ₀=0.1 {} vs γ₀=1 {}; final loss plain {}, {}",
        fmt(d01),
        fmt(d1),
        fmt(plain),
        normed.iter().map(|n| format!("{n} {}", fmt(median(runs, n, final_loss)))).collect::<Vec<_>>().join(", ")
    );
    let ok = match (d01, d1, plain) {
        (Some(a), Some(b), Some(p)) if best.is_finite() => Some(a > b && best <= 1.05 * p),
        _ => None,
    };
    decide(ok, rule, evidence)
}

/// Every model beats chance on the digits, and the gated cells beat the tanh RNN.
fn e8(runs: &[RunResult]) -> Verdict {
    let rule = "on both pixel orders every model's test accuracy exceeds the 10% chance level, and the LSTM's and the \
                GRU's exceed the tanh RNN's";
    let acc = |l: &str| median(runs, l, |r| if r.metrics.diverged { Some(0.0) } else { r.metrics.test_accuracy });
    let mut evidence = Vec::new();
    let mut ok = Some(true);
    for order in ["sequential", "permuted"] {
        let a = |m: &str| acc(&format!("{order}/{m}"));
        let models = ["tanh rnn", "irnn", "lstm", "gru", "ln-lstm"];
        evidence.push(format!(
            "{order}: {}",
            models.iter().map(|m| format!("{m} {}", fmt(a(m)))).collect::<Vec<_>>().join(", ")
        ));
        let all: Option<Vec<f64>> = models.iter().map(|m| a(m)).collect();
        let holds = match (all, a("tanh rnn"), a("lstm"), a("gru")) {
            (Some(all), Some(rnn), Some(lstm), Some(gru)) => {
                Some(all.iter().all(|&x| x > 0.1) && lstm > rnn && gru > rnn)
            }
            _ => None,
        };
        ok = match (ok, holds) {
            (Some(x), Some(y)) => Some(x && y),
            _ => None,
        };
    }
    decide(ok, rule, evidence.join("; "))
}
