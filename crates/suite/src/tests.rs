//! The suite's mechanics: hostile grids refused before any run, a failed run reported while the
//! others finish, shards merged into the results of one run, resume skipping finished runs.

use std::path::PathBuf;

use rnnlab_core::Error;

use crate::*;

fn tmp(name: &str) -> PathBuf {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("rnnlab-suite-{name}-{}-{call}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A small grid: an init-only run and a short training run per experiment.
fn small() -> Grid {
    let json = r#"{"schema": 1, "experiments": [
      {"id": "E7", "title": "forget bias", "claim": "c", "runs": [
        {"id": "a", "label": "forget bias 0", "train": true, "probe_batch": 4, "config": {
          "task": {"task": "adding", "seq_len": 12},
          "model": {"input_dim": 2, "output_dim": 1, "hidden_dim": 6, "cell": {"kind": "lstm", "forget_bias": 0.0}, "loss": "mse_last"},
          "optimizer": {"kind": "adam", "lr": 0.01}, "n_steps": 20, "batch_size": 8, "eval_batch": 32, "eval_every": 10}},
        {"id": "b", "label": "forget bias 1", "train": true, "probe_batch": 4, "config": {
          "task": {"task": "adding", "seq_len": 12},
          "model": {"input_dim": 2, "output_dim": 1, "hidden_dim": 6, "cell": {"kind": "lstm", "forget_bias": 1.0}, "loss": "mse_last"},
          "optimizer": {"kind": "adam", "lr": 0.01}, "n_steps": 20, "batch_size": 8, "eval_batch": 32, "eval_every": 10}}]},
      {"id": "X", "title": "init only", "claim": "c", "runs": [
        {"id": "c", "label": "rnn", "probe_batch": 4, "config": {
          "task": {"task": "temporal_order", "seq_len": 20},
          "model": {"input_dim": 6, "output_dim": 4, "hidden_dim": 5, "cell": {"kind": "rnn"}, "loss": "cross_entropy_last"},
          "optimizer": {"kind": "sgd", "lr": 0.01}}}]}]}"#;
    Grid::parse("small", json).unwrap()
}

#[test]
fn the_embedded_profiles_are_valid_grids() {
    for (name, _) in PROFILES {
        let grid = profile(name).unwrap();
        assert!(grid.experiments.len() >= 5, "{name}");
    }
    assert!(profile("huge").unwrap_err().to_string().contains("quick"));
}

#[test]
fn hostile_grids_are_refused_naming_the_file_the_entry_and_the_reason() {
    let base: serde_json::Value = serde_json::to_value(small()).unwrap();
    let refused = |edit: &dyn Fn(&mut serde_json::Value), want: &str| {
        let mut v = base.clone();
        edit(&mut v);
        let e = Grid::parse("grid.json", &v.to_string()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("grid.json") && msg.contains(want), "{want}: {msg}");
    };
    let run = |v: &mut serde_json::Value| v["experiments"][0]["runs"][0].clone();
    refused(
        &|v| v["experiments"][0]["runs"][0]["config"]["model"]["cell"]["kind"] = "transformer".into(),
        "not a grid",
    );
    refused(&|v| v["experiments"][0]["runs"][0]["config"]["model"]["hidden_dim"] = 0.into(), "hidden_dim");
    refused(&|v| v["experiments"][0]["runs"][0]["config"]["model"]["hidden_dim"] = (-3).into(), "not a grid");
    refused(&|v| v["experiments"][0]["runs"][0]["config"]["task"]["seq_len"] = 0.into(), "run \"a\"");
    refused(&|v| v["experiments"][0]["runs"][0]["config"]["model"]["hidden_dim"] = 1_000_000.into(), "over the limit");
    refused(&|v| v["experiments"][0]["runs"][0]["config"]["task"]["seq_len"] = 10_000_000.into(), "over the limit");
    refused(&|v| v["experiments"][0]["runs"][0]["config"]["batch_size"] = "32".into(), "not a grid");
    refused(&|v| v["experiments"][0]["runs"][0]["surprise"] = 1.into(), "unknown field");
    refused(
        &|v| {
            let r = run(v);
            v["experiments"][0]["runs"].as_array_mut().unwrap().push(r);
        },
        "repeated",
    );
    refused(&|v| v["experiments"][1]["id"] = "E7".into(), "repeated");
    refused(&|v| v["schema"] = 2.into(), "schema 2");
    refused(&|v| v["experiments"][1]["runs"] = serde_json::json!([]), "no runs");
    refused(
        &|v| {
            v["experiments"][0]["runs"][0]["config"]["model"]["cell"] =
                serde_json::json!({"kind": "custom", "name": "x"})
        },
        "custom cell",
    );
    // The cache estimate: a long sequence with a large batch and width.
    refused(
        &|v| {
            let c = &mut v["experiments"][0]["runs"][0]["config"];
            c["task"]["seq_len"] = 2_000.into();
            c["model"]["hidden_dim"] = 256.into();
            c["batch_size"] = 256.into();
        },
        "estimated cache",
    );
    // Over the shared limits, named by the field (the config's own validation).
    refused(
        &|v| {
            let c = &mut v["experiments"][0]["runs"][0]["config"];
            c["task"]["seq_len"] = 50_000.into();
            c["model"]["hidden_dim"] = 2048.into();
            c["batch_size"] = 4096.into();
        },
        "task.seq_len: an array of shape",
    );
    refused(&|v| v["experiments"][0]["runs"][0]["probe_batch"] = 0.into(), "probe_batch must be at least 1");
    refused(&|v| v["experiments"][0]["runs"][0]["config"]["task"]["delay"] = u64::MAX.into(), "not a grid");
    refused(&|v| v["experiments"][0] = serde_json::json!(["E1", "t", "c", "", []]), "not a grid");
    refused(
        &|v| {
            let run = v["experiments"][0]["runs"][0].take();
            v["experiments"][0]["runs"][0] =
                serde_json::Value::Array(run.as_object().unwrap().values().cloned().collect());
        },
        "not a grid",
    );
    assert!(matches!(Grid::parse("grid.json", "[1, 2"), Err(Error::Format { .. })));
}

#[test]
fn a_failed_run_is_reported_and_the_others_finish() {
    let mut grid = small();
    // An adding problem whose model reads the wrong width passes no check of the grid if we
    // skip validation: build the failing run by hand (a probe batch the task cannot fill).
    grid.experiments[1].runs[0].config.model.input_dim = 3;
    let out = tmp("failed");
    let results = run_grid(&grid, "small", &Options::new(&out), &()).unwrap();
    let x = &results.experiments[1];
    assert!(
        x.runs[0].error.as_deref().is_some_and(|e| e.contains("input_dim") || e.contains("widths")),
        "{:?}",
        x.runs[0].error
    );
    assert_eq!(x.verdict.status, Status::Inconclusive);
    assert!(results.experiments[0].runs.iter().all(|r| r.error.is_none() && r.metrics.trained));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn shards_merge_into_the_results_of_one_run_and_resume_skips_done_runs() {
    let grid = small();
    let one = tmp("one");
    let whole = run_grid(&grid, "small", &Options::new(&one), &()).unwrap();
    assert_eq!(whole.experiments[0].runs.len(), 2);
    assert!(whole.experiments.iter().all(|e| e.missing.is_empty()));
    let (s0, s1) = (tmp("s0"), tmp("s1"));
    for (i, dir) in [(0, &s0), (1, &s1)] {
        let mut o = Options::new(dir);
        o.shard = Some((i, 2));
        let part = run_grid(&grid, "small", &o, &()).unwrap();
        assert!(part.experiments.iter().any(|e| !e.missing.is_empty()), "a shard alone misses runs");
    }
    let merged = assemble(&grid, "small", 1, &read_runs(&[s0.clone(), s1.clone()]).unwrap());
    let strip = |mut r: Results| {
        for e in &mut r.experiments {
            for run in &mut e.runs {
                run.metrics.wall_ms = 0.0;
            }
        }
        serde_json::to_string(&r).unwrap()
    };
    assert_eq!(strip(merged), strip(whole.clone()), "the same results, timings aside");
    // Resume: nothing left to do, the same results.
    struct Count(std::sync::atomic::AtomicUsize);
    impl Progress for Count {
        fn started(&self, _: &str) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let count = Count(std::sync::atomic::AtomicUsize::new(0));
    let mut o = Options::new(&one);
    o.resume = true;
    let again = run_grid(&grid, "small", &o, &count).unwrap();
    assert_eq!(count.0.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(again, whole);
    for d in [one, s0, s1] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn replicates_move_every_seed() {
    let grid = small();
    let spec = &grid.experiments[0].runs[0];
    let r = replicate(spec, 2);
    assert_eq!(r.id, "a#2");
    assert_eq!((r.config.seed, r.config.model.seed), (spec.config.seed + 2, spec.config.model.seed + 2));
    assert_eq!(replicate(spec, 0), *spec);
    let mut o = Options::new(&tmp("zero"));
    o.replicates = 0;
    assert!(run_grid(&grid, "small", &o, &()).is_err());
    o.replicates = 1;
    o.shard = Some((2, 2));
    assert!(run_grid(&grid, "small", &o, &()).is_err());
}
