//! Running the suite at scale and with a user's cells: the paper grid checked without running
//! it, shards merged (and bad merges refused naming the directory), a custom cell run from a
//! grid, and docs/results.md checked against the serialized results.

use std::collections::BTreeSet;
use std::path::PathBuf;

use rnnlab_activations::ActivationKind;
use rnnlab_core::Simple;

use crate::*;

#[path = "../../train/examples/cells/indrnn.rs"]
mod indrnn;

fn tmp(name: &str) -> PathBuf {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("rnnlab-suiteops-{name}-{}-{call}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A tiny grid: three short training runs and two diagnosed at initialisation, over two
/// experiments (one with a rule, one without).
fn tiny() -> Grid {
    let run = |id: &str, label: &str, cell: &str, train: bool| {
        format!(
            r#"{{"id": "{id}", "label": "{label}", "train": {train}, "probe_batch": 4, "config": {{
              "task": {{"task": "adding", "seq_len": 8}},
              "model": {{"input_dim": 2, "output_dim": 1, "hidden_dim": 5, "cell": {cell}, "loss": "mse_last"}},
              "optimizer": {{"kind": "adam", "lr": 0.01}}, "n_steps": 12, "batch_size": 8, "eval_batch": 16, "eval_every": 6}}}}"#
        )
    };
    let json = format!(
        r#"{{"schema": 1, "experiments": [
          {{"id": "E7", "title": "forget bias", "claim": "c", "runs": [{}, {}]}},
          {{"id": "X", "title": "other", "claim": "c", "runs": [{}, {}, {}]}}]}}"#,
        run("a", "forget bias 0", r#"{"kind": "lstm", "forget_bias": 0.0}"#, true),
        run("b", "forget bias 1", r#"{"kind": "lstm", "forget_bias": 1.0}"#, true),
        run("c", "rnn", r#"{"kind": "rnn"}"#, false),
        run("d", "gru", r#"{"kind": "gru"}"#, true),
        run("e", "gru init", r#"{"kind": "gru"}"#, false),
    );
    Grid::parse("tiny", &json).unwrap()
}

/// `results` with every run's wall time set to 0, as JSON.
fn without_wall_times(mut r: Results) -> String {
    for e in &mut r.experiments {
        for run in &mut e.runs {
            run.metrics.wall_ms = 0.0;
        }
    }
    serde_json::to_string_pretty(&r).unwrap()
}

#[test]
fn the_paper_grid_is_valid_larger_than_the_default_and_within_limits() {
    let paper = profile("paper").unwrap();
    let default = profile("default").unwrap();
    // Parsing validated it (ids unique, every config valid, sizes within the default limits);
    // check again against the limits, and that it is what it says: more runs, longer sequences,
    // longer training, more seeds.
    paper.validate("the paper grid", &Limits::default()).unwrap();
    let ids: BTreeSet<&str> = paper.runs().map(|(_, r)| r.id.as_str()).collect();
    assert_eq!(ids.len(), paper.runs().count(), "run ids are unique");
    let exps = |g: &Grid| g.experiments.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(exps(&paper), exps(&default), "the same experiments, so the same rules judge them");
    assert!(paper.runs().count() > default.runs().count());
    let longest = |g: &Grid| g.runs().map(|(_, r)| r.config.task.build().map_or(0, |t| seq_len(&t))).max().unwrap();
    assert!(longest(&paper) > longest(&default), "{} vs {}", longest(&paper), longest(&default));
    let steps = |g: &Grid| g.runs().map(|(_, r)| r.config.n_steps).sum::<u64>();
    assert!(steps(&paper) > 2 * steps(&default));
    for e in &paper.experiments {
        let d = default.experiments.iter().find(|d| d.id == e.id).unwrap();
        assert!(e.runs.len() >= d.runs.len(), "{}: {} runs, the default {}", e.id, e.runs.len(), d.runs.len());
        // Every label of the default is still there: the rules select runs by label.
        for r in &d.runs {
            let kind = |l: &str| l.split("/T").next().unwrap_or(l).to_string();
            assert!(e.runs.iter().any(|p| kind(&p.label) == kind(&r.label)), "{}: label {:?}", e.id, r.label);
        }
        let trained = e.runs.iter().filter(|r| r.train).count();
        let labels: BTreeSet<&str> = e.runs.iter().filter(|r| r.train).map(|r| r.label.as_str()).collect();
        if trained > 0 {
            assert!(trained >= 2 * labels.len(), "{}: at least two seeds per trained configuration", e.id);
        }
    }
}

fn seq_len(task: &rnnlab_tasks::AnyTask) -> usize {
    rnnlab_tasks::DataSource::<f32>::seq_len(task)
}

#[test]
fn merged_shards_equal_one_run_and_bad_merges_are_refused_naming_the_directory() {
    let grid = tiny();
    let whole_dir = tmp("whole");
    let whole = run_grid(&grid, "tiny", &Options::new(&whole_dir), &()).unwrap();
    let shards: Vec<PathBuf> = (0..3)
        .map(|i| {
            let dir = tmp(&format!("shard{i}"));
            let mut o = Options::new(&dir);
            o.shard = Some((i, 3));
            o.jobs = Some(1);
            run_grid(&grid, "tiny", &o, &()).unwrap();
            dir
        })
        .collect();
    let out = tmp("merged");
    let merged = merge(&shards, &out).unwrap();
    assert_eq!(merged.experiments.iter().map(|e| e.runs.len()).sum::<usize>(), 5);
    assert!(merged.experiments.iter().all(|e| e.missing.is_empty()));
    // Only the runs' wall times differ: the written files, compared with them zeroed.
    let read = |d: &PathBuf| -> Results {
        serde_json::from_str(&std::fs::read_to_string(d.join("results.json")).unwrap()).unwrap()
    };
    assert_eq!(without_wall_times(read(&out)), without_wall_times(read(&whole_dir)));
    assert_eq!(without_wall_times(merged.clone()), without_wall_times(whole));
    // The merged directory merges again (it holds a manifest and the run files).
    assert_eq!(merge(std::slice::from_ref(&out), &tmp("again")).unwrap(), merged);

    let refused = |dirs: &[PathBuf], want: &[&str]| {
        let msg = merge(dirs, &tmp("refused")).unwrap_err().to_string();
        for w in want {
            assert!(msg.contains(w), "{w:?} not in: {msg}");
        }
    };
    let name = |d: &PathBuf| d.display().to_string();
    // A shard left out: the missing runs are named with the shard meant to run them, or none.
    refused(&shards[..2], &["have no result", "no directory given was meant to run it"]);
    std::fs::remove_dir_all(shards[2].join(RUNS_DIR)).unwrap();
    refused(&shards, &["have no result", &name(&shards[2]), "shard 2/3"]);
    // Overlap: a shard and the whole run.
    refused(&[shards[0].clone(), whole_dir.clone()], &["overlap", &name(&whole_dir), &name(&shards[0])]);
    // Another grid: other replicates, another grid of the same name, another name.
    let other = tmp("other");
    let mut o = Options::new(&other);
    o.shard = Some((2, 3));
    o.replicates = 2;
    run_grid(&grid, "tiny", &o, &()).unwrap();
    refused(&[shards[0].clone(), other.clone()], &["ran another grid", &name(&other), "seeds per run"]);
    let mut smaller = grid.clone();
    smaller.experiments[1].runs.pop();
    Manifest { grid_name: "tiny".into(), replicates: 1, shard: Some((2, 3)), grid: smaller }.write(&other).unwrap();
    refused(&[shards[0].clone(), other.clone()], &["ran another grid", "same name", &name(&other)]);
    Manifest { grid_name: "big".into(), replicates: 1, shard: None, grid: grid.clone() }.write(&other).unwrap();
    refused(&[shards[0].clone(), other.clone()], &["\"big\"", &name(&other)]);
    // Not an output directory; no directory.
    let empty = tmp("empty");
    std::fs::create_dir_all(&empty).unwrap();
    refused(&[shards[0].clone(), empty.clone()], &[&name(&empty), MANIFEST_FILE]);
    refused(&[], &["no directory"]);
    // A run file whose config is not the grid's.
    let stale = tmp("stale");
    let mut edited = grid.clone();
    edited.experiments[0].runs[0].config.n_steps = 5;
    let mut o = Options::new(&stale);
    o.shard = Some((0, 3));
    run_grid(&edited, "tiny", &o, &()).unwrap();
    Manifest { grid_name: "tiny".into(), replicates: 1, shard: Some((0, 3)), grid: grid.clone() }
        .write(&stale)
        .unwrap();
    refused(&[stale.clone(), shards[1].clone()], &["another config", &name(&stale), "\"a\""]);
    for d in shards.iter().chain([&whole_dir, &out, &other, &empty, &stale]) {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A ReLU IndRNN layer (u ~ U(0, 1)), as the train crate's custom-cell example makes it.
fn indrnn(
    i: usize,
    h: usize,
    rng: &mut rnnlab_core::Rng,
) -> rnnlab_core::Result<Simple<indrnn::IndRnn<f32, ActivationKind>>> {
    Ok(Simple::new(indrnn::IndRnn::new(i, h, ActivationKind::Relu, 0.0, 1.0, rng)?))
}

#[test]
fn a_custom_cell_runs_from_a_one_entry_grid() {
    let json = r#"{"schema": 1, "experiments": [{"id": "mine", "title": "my cell", "claim": "it learns", "runs": [
        {"id": "indrnn", "label": "indrnn", "train": true, "probe_batch": 4, "config": {
          "task": {"task": "adding", "seq_len": 10},
          "model": {"input_dim": 2, "output_dim": 1, "hidden_dim": 8, "n_layers": 2, "cell": {"kind": "custom", "name": "indrnn"}, "loss": "mse_last"},
          "optimizer": {"kind": "adam", "lr": 0.01}, "n_steps": 30, "batch_size": 8, "eval_batch": 32, "eval_every": 10}}]}]}"#;
    let cells = CustomCells::new().with("indrnn", indrnn);
    // Without its maker the grid is refused, naming the file and the run; with another cell's
    // maker too, naming the cells it knows.
    let msg = Grid::parse("mine.json", json).unwrap_err().to_string();
    assert!(msg.contains("mine.json") && msg.contains("\"indrnn\"") && msg.contains("custom cell"), "{msg}");
    let other = CustomCells::new().with("mgu", indrnn);
    let msg = Grid::parse_with("mine.json", json, &other).unwrap_err().to_string();
    assert!(msg.contains("no maker") && msg.contains("mgu"), "{msg}");
    let grid = Grid::parse_with("mine.json", json, &cells).unwrap();
    let out = tmp("custom");
    assert!(run_grid(&grid, "mine", &Options::new(&out), &()).unwrap_err().to_string().contains("no maker"));

    // The progress hook sees the run's steps, in order, ending at the last.
    struct Steps(std::sync::Mutex<Vec<(u64, f64)>>);
    impl Progress for Steps {
        fn step(&self, id: &str, step: u64, n_steps: u64, loss: f64) {
            assert_eq!((id, n_steps), ("indrnn", 30));
            self.0.lock().unwrap().push((step, loss));
        }
    }
    let steps = Steps(std::sync::Mutex::new(Vec::new()));
    let results = run_grid_with(&grid, "mine", &Options::new(&out), &steps, &cells).unwrap();
    let seen = steps.0.into_inner().unwrap();
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), (1..=30).collect::<Vec<_>>());
    let r = &results.experiments[0].runs[0];
    assert_eq!(r.error, None);
    let m = &r.metrics;
    assert!(m.trained && m.steps == 30 && !m.diverged);
    assert_eq!(m.grad_norm_by_lag.len(), 10, "diagnosed at initialisation over T = 10 lags");
    assert!((m.grad_norm_by_lag[0] - 1.0).abs() < 1e-9);
    let (first, last) = (m.loss_trace[0].1, m.final_loss.unwrap());
    assert!(last.is_finite() && m.eval_curve.len() == 3, "{m:?}");
    assert!(first.is_finite());
    // The training trace is what the hook saw.
    assert_eq!(m.loss_trace.iter().map(|&(s, _)| s).collect::<Vec<_>>(), (1..=30).collect::<Vec<_>>());
    for (&(_, traced), &(_, seen)) in m.loss_trace.iter().zip(&seen) {
        assert_eq!(traced.to_bits(), seen.to_bits());
    }
    // Deterministic from its seed: a second run gives the same results but for wall time.
    let again = run_grid_with(&grid, "mine", &Options::new(&tmp("custom2")), &(), &cells).unwrap();
    assert_eq!(without_wall_times(again), without_wall_times(results));
    let _ = std::fs::remove_dir_all(&out);
}

/// Every key of a JSON value, by its path (`experiments[].runs[].metrics.horizon`), not
/// descending into run configs (documented as the train crate's `TrainConfig`).
fn keys(v: &serde_json::Value, path: &str, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                out.insert(p.clone());
                if k != "config" {
                    keys(v, &p, out);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                keys(v, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn docs_results_md_documents_every_field_of_results_json() {
    let doc = include_str!("../../../docs/results.md");
    // Real results with every optional metric present: a trained run and a diagnosed one.
    let mut results = run_grid(&tiny(), "tiny", &Options::new(&tmp("doc")), &()).unwrap();
    let m = &mut results.experiments[0].runs[0].metrics;
    // Fill what a short adding run leaves empty, to see every key.
    m.divergence = Some("x".into());
    m.steps_to_solve = Some(1);
    m.sigma1_whh = Some(1.0);
    m.pascanu_bound = Some(1.0);
    m.saturation = Some(0.0);
    m.mean_derivative = Some(0.0);
    m.forget_gate = Some(0.5);
    results.experiments[0].runs[0].error = Some("x".into());
    let mut found = BTreeSet::new();
    keys(&serde_json::to_value(&results).unwrap(), "", &mut found);
    // The documented keys: the first cell of every table row, `path`.
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(k, _)| k.to_string()))
        .collect();
    let undocumented: Vec<&String> = found.difference(&documented).collect();
    assert!(undocumented.is_empty(), "in results.json but not in docs/results.md: {undocumented:?}");
    let stale: Vec<&String> = documented.difference(&found).collect();
    assert!(stale.is_empty(), "in docs/results.md but not in results.json: {stale:?}");
    assert!(doc.contains(&format!("schema version is {RESULTS_SCHEMA}")), "the doc states the schema version");
}

#[test]
fn classification_runs_get_an_accuracy_plot_against_chance() {
    let run = |id: &str, label: &str, permuted_seed: u64| {
        format!(
            r#"{{"id": "{id}", "label": "{label}", "train": true, "probe_batch": 4, "config": {{
              "task": {{"task": "temporal_order", "seq_len": 10}},
              "model": {{"input_dim": 6, "output_dim": 4, "hidden_dim": 5, "cell": {{"kind": "gru"}}, "loss": "cross_entropy_last", "seed": {permuted_seed}}},
              "optimizer": {{"kind": "adam", "lr": 0.01}}, "n_steps": 8, "batch_size": 8, "eval_batch": 16, "eval_every": 4}}}}"#
        )
    };
    let json = format!(
        r#"{{"schema": 1, "experiments": [{{"id": "E8", "title": "real data", "claim": "c", "runs": [{}, {}, {}]}}]}}"#,
        run("s/gru", "sequential/gru", 0),
        run("p/gru", "permuted/gru", 1),
        run("p/rnn", "permuted/rnn", 2)
    );
    let grid = Grid::parse("acc", &json).unwrap();
    let out = tmp("accuracy");
    let results = run_grid(&grid, "acc", &Options::new(&out), &()).unwrap();
    let files = write_report(&results, &out, &ReportInfo::new("d", "m", "w")).unwrap();
    let path = files.plots.iter().find(|p| p.ends_with("e8-accuracy.svg")).expect("an accuracy plot");
    let svg = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(|t| t.trim().to_string())
        .collect();
    for want in [
        "E8: test accuracy against chance",
        "test accuracy (fraction correct)",
        "configuration",
        "sequential",
        "permuted",
        "chance (1/4 = 25%)",
        "gru",
        "rnn",
    ] {
        assert!(texts.iter().any(|t| t == want), "{want:?} not in {texts:?}");
    }
    let html = std::fs::read_to_string(&files.html).unwrap();
    assert!(html.contains("test accuracy against chance"));
    // Regression runs get none.
    assert!(!std::fs::read_dir(out.join(PLOTS_DIR)).unwrap().any(|f| {
        let name = f.unwrap().file_name().to_string_lossy().to_string();
        name.contains("accuracy") && !name.starts_with("e8")
    }));
    let _ = std::fs::remove_dir_all(&out);
}
