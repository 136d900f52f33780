//! The quick profile, run whole: its results snapshot-tested (rounded so that another CPU's
//! rounding cannot change them, yet a change to a cell's math or an experiment's outcome does)
//! and its conclusions asserted directly.

use std::sync::OnceLock;

use crate::*;

/// `x` to two significant digits, as text (`0.92`, `49`, `1.1e-3`).
fn sig2(x: f64) -> String {
    if !x.is_finite() || x == 0.0 {
        return format!("{x}");
    }
    let e = x.abs().log10().floor() as i32;
    let scale = 10f64.powi(1 - e);
    let r = (x * scale).round() / scale;
    // The exponent of the rounded value: 0.99996 rounds to 1.0, not "1.00".
    let e = r.abs().log10().floor() as i32;
    if (-3..=4).contains(&e) { format!("{r:.*}", (1 - e).max(0) as usize) } else { format!("{r:.1e}") }
}

/// A lag count to two significant digits (exact below 100).
fn sig2_count(n: usize) -> String {
    if n < 100 { n.to_string() } else { sig2(n as f64) }
}

/// The results of the quick profile, run once for every test of this module.
fn quick() -> &'static Results {
    static RESULTS: OnceLock<Results> = OnceLock::new();
    RESULTS.get_or_init(|| {
        let out = std::env::temp_dir().join(format!("rnnlab-suite-quick-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let results = run_grid(&profile("quick").expect("the quick grid is valid"), "quick", &Options::new(&out), &())
            .expect("the quick profile runs");
        let _ = std::fs::remove_dir_all(&out);
        results
    })
}

/// One line per run: what may be snapshotted without depending on the last bits.
fn rounded(results: &Results) -> String {
    let mut out = String::new();
    for e in &results.experiments {
        out.push_str(&format!("{} {}\n", e.id, e.verdict.status));
        for r in &e.runs {
            let m = &r.metrics;
            let mut line = format!("  {:<28}", r.label);
            if let Some(d) = m.decay_factor {
                line.push_str(&format!(" decay {}", sig2(d)));
            }
            if let Some(h) = m.horizon {
                line.push_str(&format!(" horizon {}", sig2_count(h)));
            }
            if m.trained {
                // Solved or not only where the margin is wide: far below or far above the line.
                let line_loss = SOLVED_FRACTION * m.baseline_loss;
                let outcome = match (m.diverged, m.final_loss) {
                    (true, _) => "diverged",
                    (false, Some(l)) if l < 0.5 * line_loss => "solved",
                    (false, Some(l)) if l > 2.0 * line_loss => "unsolved",
                    (false, Some(_)) => "near the line",
                    (false, None) => "no loss",
                };
                line.push_str(&format!(" {outcome}"));
            }
            if r.error.is_some() {
                line.push_str(" FAILED");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

#[test]
fn the_quick_profile_snapshot() {
    insta::assert_snapshot!("quick_profile", rounded(quick()));
}

fn run<'a>(e: &'a ExperimentResult, label: &str) -> &'a RunResult {
    e.runs.iter().find(|r| r.label == label).unwrap_or_else(|| panic!("{}: no run {label}", e.id))
}

fn experiment(id: &str) -> &'static ExperimentResult {
    quick().experiments.iter().find(|e| e.id == id).unwrap_or_else(|| panic!("no experiment {id}"))
}

#[test]
fn the_conclusions_hold_on_the_quick_profile() {
    // Every run finished.
    for e in &quick().experiments {
        assert!(e.runs.iter().all(|r| r.error.is_none()), "{}: a run failed", e.id);
    }
    // E3: the LSTM's horizon at initialisation exceeds the vanilla tanh RNN's.
    let e3 = experiment("E3");
    let h = |l: &str| run(e3, l).metrics.horizon.expect("a horizon");
    assert!(h("lstm/init") > h("rnn/init"), "{}", e3.verdict.evidence);
    // E5: every unclipped run diverges, no clipped one does.
    let e5 = experiment("E5");
    for r in &e5.runs {
        assert_eq!(r.metrics.diverged, r.label == "no clipping", "{}: {:?}", r.id, r.metrics.divergence);
    }
    // E2: sigmoid decays faster than tanh under the same initialisation.
    let e2 = experiment("E2");
    for init in ["xavier", "orthogonal", "identity"] {
        let d = |a: &str| run(e2, &format!("{a}/{init}")).metrics.decay_factor.expect("a decay factor");
        assert!(d("sigmoid") < d("tanh"), "{init}");
    }
    // E7: forget bias 1 remembers longer at initialisation.
    let e7 = experiment("E7");
    assert!(run(e7, "forget bias 1").metrics.horizon > run(e7, "forget bias 0").metrics.horizon);
    // No metric is NaN in the JSON: absent values are null.
    let json = serde_json::to_string(quick()).expect("serialisable");
    assert!(!json.contains("NaN") && !json.contains("inf"), "non-finite numbers in results.json");
}

#[test]
fn two_significant_digits() {
    assert_eq!(sig2(0.9213), "0.92");
    assert_eq!(sig2(49.0), "49");
    assert_eq!(sig2(123.0), "120");
    assert_eq!(sig2(0.000_123_4), "1.2e-4");
    assert_eq!(sig2(0.0123), "0.012");
    assert_eq!(sig2(1.0), "1.0");
    assert_eq!(sig2(0.99996), "1.0");
    assert_eq!(sig2(1.00004), "1.0");
    assert_eq!(sig2_count(9), "9");
    assert_eq!(sig2_count(123), "120");
}
