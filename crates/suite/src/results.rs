//! [`Results`]: what `results.json` holds — per experiment its claim, its runs with their
//! configs and metrics, and its verdict — assembled from the run files a suite (or its shards)
//! wrote, so that merging shards gives the results of one run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rnnlab_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::{Grid, RunResult, Verdict, judge};

/// The version of `results.json` this crate writes.
pub const RESULTS_SCHEMA: u32 = 1;

/// The folder of per-run files below an output directory.
pub const RUNS_DIR: &str = "runs";

/// Everything a suite run measured and concluded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// [`RESULTS_SCHEMA`].
    pub schema: u32,
    /// The grid that ran (its name: `quick`, `default`, `paper`, or a file).
    pub grid: String,
    /// Per experiment, in grid order.
    pub experiments: Vec<ExperimentResult>,
}

/// One experiment's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentResult {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// The claim.
    pub claim: String,
    /// Where the set-up differs from the papers'.
    pub differs: String,
    /// The runs (every replicate), in grid order.
    pub runs: Vec<RunResult>,
    /// Runs of the grid with no result (a shard that did not run them); the verdict is then
    /// inconclusive.
    pub missing: Vec<String>,
    /// The verdict.
    pub verdict: Verdict,
}

/// The file name of a run's result: its id with every character outside `[A-Za-z0-9._-]`
/// replaced, and a hash of the id so that different ids never share a file.
pub fn run_file_name(id: &str) -> String {
    let clean: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{clean}-{h:08x}.json", h = h & 0xffff_ffff)
}

/// Reads every run file below `dirs` (each an output directory), keyed by run id; a later
/// directory's file for the same id replaces an earlier one.
///
/// # Errors
/// [`Error::Io`] for a directory that cannot be read, [`Error::Format`] naming a run file that
/// is not a run result.
pub fn read_runs(dirs: &[PathBuf]) -> Result<BTreeMap<String, RunResult>> {
    let mut out = BTreeMap::new();
    for dir in dirs {
        let runs = dir.join(RUNS_DIR);
        if !runs.exists() {
            continue;
        }
        let entries = std::fs::read_dir(&runs).map_err(|e| Error::io("read_runs", runs.display().to_string(), e))?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths.into_iter().filter(|p| p.extension().is_some_and(|x| x == "json")) {
            let text = std::fs::read_to_string(&p).map_err(|e| Error::io("read_runs", p.display().to_string(), e))?;
            let run: RunResult = serde_json::from_str(&text)
                .map_err(|e| Error::format("read_runs", format!("{}: not a run result: {e}", p.display())))?;
            out.insert(run.id.clone(), run);
        }
    }
    Ok(out)
}

/// The results of `grid` with `replicates` seeds per run, from the run results at hand.
pub fn assemble(grid: &Grid, grid_name: &str, replicates: u64, runs: &BTreeMap<String, RunResult>) -> Results {
    let experiments = grid
        .experiments
        .iter()
        .map(|e| {
            let mut got = Vec::new();
            let mut missing = Vec::new();
            for spec in &e.runs {
                for k in 0..replicates {
                    let id = crate::replicate(spec, k).id;
                    match runs.get(&id) {
                        Some(r) => got.push(r.clone()),
                        None => missing.push(id),
                    }
                }
            }
            let verdict = if missing.is_empty() {
                judge(&e.id, &got)
            } else {
                Verdict {
                    status: crate::Status::Inconclusive,
                    rule: "every run of the experiment must have a result".to_string(),
                    evidence: format!(
                        "{} of {} runs missing (a shard's results alone?)",
                        missing.len(),
                        missing.len() + got.len()
                    ),
                }
            };
            ExperimentResult {
                id: e.id.clone(),
                title: e.title.clone(),
                claim: e.claim.clone(),
                differs: e.differs.clone(),
                runs: got,
                missing,
                verdict,
            }
        })
        .collect();
    Results { schema: RESULTS_SCHEMA, grid: grid_name.to_string(), experiments }
}

impl Results {
    /// Writes `results.json` into `dir` atomically.
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Format`] if it cannot be written.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::format("Results::write", e.to_string()))?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io("Results::write", dir.display().to_string(), e))?;
        let path = dir.join("results.json");
        rnnlab_train::write_atomic(&path, &json)?;
        Ok(path)
    }

    /// One line per claim: `E2 supported — <claim>`.
    pub fn summary_lines(&self) -> Vec<String> {
        self.experiments
            .iter()
            .map(|e| format!("{:<4} {:<14} {}", e.id, e.verdict.status.to_string(), e.claim))
            .collect()
    }
}
