//! docs/scaling.md's command lines, run: every block marked `<!-- tested: NAME -->` is taken
//! from the document, a tiny grid put in place of `--profile paper` and the xtask binary in
//! place of `cargo xtask`, then run with the scheduler simulated (Slurm's and Kubernetes'
//! variables set for each index in turn; GNU parallel if it is installed, else the loop the
//! document gives), merged with the document's merge command, and compared with one unsharded
//! run: the same results.json but for the runs' wall times.

use std::path::{Path, PathBuf};
use std::process::Command;

const DOC: &str = include_str!("../../docs/scaling.md");

/// Five short runs over two experiments.
const TINY_GRID: &str = r#"{"schema": 1, "experiments": [
  {"id": "E7", "title": "forget bias", "claim": "c", "runs": [
    {"id": "a", "label": "forget bias 0", "train": true, "probe_batch": 4, "config": {
      "task": {"task": "adding", "seq_len": 8},
      "model": {"input_dim": 2, "output_dim": 1, "hidden_dim": 5, "cell": {"kind": "lstm", "forget_bias": 0.0}, "loss": "mse_last"},
      "optimizer": {"kind": "adam", "lr": 0.01}, "n_steps": 12, "batch_size": 8, "eval_batch": 16, "eval_every": 6}},
    {"id": "b", "label": "forget bias 1", "train": true, "probe_batch": 4, "config": {
      "task": {"task": "adding", "seq_len": 8},
      "model": {"input_dim": 2, "output_dim": 1, "hidden_dim": 5, "cell": {"kind": "lstm", "forget_bias": 1.0}, "loss": "mse_last"},
      "optimizer": {"kind": "adam", "lr": 0.01}, "n_steps": 12, "batch_size": 8, "eval_batch": 16, "eval_every": 6}}]},
  {"id": "X", "title": "other", "claim": "c", "runs": [
    {"id": "c", "label": "rnn", "probe_batch": 4, "config": {
      "task": {"task": "adding", "seq_len": 8},
      "model": {"input_dim": 2, "output_dim": 1, "hidden_dim": 5, "cell": {"kind": "rnn"}, "loss": "mse_last"},
      "optimizer": {"kind": "sgd", "lr": 0.01}}},
    {"id": "d", "label": "gru", "train": true, "probe_batch": 4, "config": {
      "task": {"task": "temporal_order", "seq_len": 10},
      "model": {"input_dim": 6, "output_dim": 4, "hidden_dim": 5, "cell": {"kind": "gru"}, "loss": "cross_entropy_last"},
      "optimizer": {"kind": "adam", "lr": 0.01}, "n_steps": 12, "batch_size": 8, "eval_batch": 16, "eval_every": 6}},
    {"id": "e", "label": "gru init", "probe_batch": 4, "config": {
      "task": {"task": "adding", "seq_len": 8},
      "model": {"input_dim": 2, "output_dim": 1, "hidden_dim": 5, "cell": {"kind": "gru"}, "loss": "mse_last"},
      "optimizer": {"kind": "sgd", "lr": 0.01}}}]}]}"#;

/// The `sh` block after `<!-- tested: NAME -->`.
fn block(name: &str) -> String {
    let marker = format!("<!-- tested: {name} -->");
    let after = DOC.split_once(&marker).unwrap_or_else(|| panic!("docs/scaling.md has no block {marker}")).1;
    let body =
        after.trim_start().strip_prefix("```sh\n").unwrap_or_else(|| panic!("{marker} is not followed by ```sh"));
    let end = body.find("\n```").unwrap_or_else(|| panic!("{marker}: the block does not end"));
    body[..end].to_string()
}

/// A scratch directory holding the tiny grid.
struct Scratch {
    dir: PathBuf,
    grid: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rnnlab-scaling-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let grid = dir.join("tiny.json");
        std::fs::write(&grid, TINY_GRID).unwrap();
        Self { dir, grid }
    }

    /// Runs a documented block in the scratch directory with the substitutions and `env`.
    fn run(&self, script: &str, env: &[(&str, String)]) {
        let xtask = env!("CARGO_BIN_EXE_xtask");
        assert!(script.contains("cargo xtask"), "{script}");
        let script = script
            .replace("cargo xtask", &format!("'{xtask}'"))
            .replace("--profile paper", &format!("--grid '{}'", self.grid.display()));
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(&self.dir)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The documented merge, then its results.json against an unsharded run's.
    fn merge_and_compare(&self) {
        self.run(&block("merge"), &[]);
        self.run("cargo xtask compare --profile paper --out whole --jobs 1 > /dev/null 2>&1", &[]);
        assert_eq!(results(&self.dir.join("results/all")), results(&self.dir.join("whole")));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A results.json with every run's `wall_ms` set to 0.
fn results(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("results.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let exps = v["experiments"].as_array_mut().unwrap();
    assert!(!exps.is_empty());
    for e in exps {
        assert_eq!(e["missing"], serde_json::json!([]));
        for r in e["runs"].as_array_mut().unwrap() {
            assert!(r["metrics"]["wall_ms"].as_f64().is_some());
            r["metrics"]["wall_ms"] = 0.0.into();
        }
    }
    v
}

#[test]
fn slurm_array_job_as_documented() {
    let script = block("slurm");
    let range = script.lines().find_map(|l| l.strip_prefix("#SBATCH --array=")).unwrap();
    let (lo, hi) = range.split_once('-').unwrap();
    let (lo, hi): (usize, usize) = (lo.parse().unwrap(), hi.trim().parse().unwrap());
    let s = Scratch::new("slurm");
    for i in lo..=hi {
        s.run(
            &script,
            &[("SLURM_ARRAY_TASK_ID", i.to_string()), ("SLURM_ARRAY_TASK_COUNT", (hi - lo + 1).to_string())],
        );
    }
    s.merge_and_compare();
}

#[test]
fn kubernetes_indexed_job_as_documented() {
    let command = block("kubernetes");
    // The Job's manifest runs the same command, with SHARDS equal to completions.
    assert!(DOC.contains(&format!("- {command}")), "the Job's args are the tested command");
    assert!(DOC.contains("completionMode: Indexed"));
    let completions: usize =
        DOC.lines().find_map(|l| l.trim().strip_prefix("completions: ")).and_then(|n| n.parse().ok()).unwrap();
    assert!(DOC.contains(&format!("value: \"{completions}\"")), "SHARDS is the completion count");
    let s = Scratch::new("kubernetes");
    for i in 0..completions {
        s.run(&command, &[("JOB_COMPLETION_INDEX", i.to_string()), ("SHARDS", completions.to_string())]);
    }
    s.merge_and_compare();
}

#[test]
fn gnu_parallel_or_its_loop_as_documented() {
    let has_parallel =
        Command::new("sh").args(["-c", "command -v parallel"]).output().is_ok_and(|o| o.status.success());
    let s = Scratch::new("parallel");
    s.run(&block(if has_parallel { "parallel" } else { "loop" }), &[]);
    s.merge_and_compare();
}
