//! Joining shards: every output directory of [`crate::run_grid`] holds its [`Manifest`] (the
//! grid that ran, its name, the replicates and the shard); [`merge`] checks that the
//! directories ran the same grid, that no run was done twice and that none is missing, and
//! assembles the results of the whole grid — the same `results.json` as one unsharded run but
//! for the runs' wall times.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rnnlab_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::{Grid, Results, RunResult, assemble, read_runs, replicate, run_file_name};

/// The file of the manifest in an output directory.
pub const MANIFEST_FILE: &str = "suite.json";

/// What an output directory ran: written by [`crate::run_grid`] before any run starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The grid's name (`quick`, `default`, `paper`, or a file), as in `results.json`.
    pub grid_name: String,
    /// Seeds per run.
    pub replicates: u64,
    /// `Some((i, n))` when the directory holds shard `i` of `n`.
    pub shard: Option<(usize, usize)>,
    /// The grid that ran (after `--only`).
    pub grid: Grid,
}

impl Manifest {
    /// Writes [`MANIFEST_FILE`] into `dir` atomically.
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Format`] if it cannot be written.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        const OP: &str = "Manifest::write";
        std::fs::create_dir_all(dir).map_err(|e| Error::io(OP, dir.display().to_string(), e))?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::format(OP, e.to_string()))?;
        let path = dir.join(MANIFEST_FILE);
        rnnlab_train::write_atomic(&path, &json)?;
        Ok(path)
    }

    /// Reads the manifest of the output directory `dir`.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file if it cannot be read (not an output directory of
    /// [`crate::run_grid`]); [`Error::Format`] naming it if it is not a manifest.
    pub fn read(dir: &Path) -> Result<Self> {
        const OP: &str = "Manifest::read";
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::io(OP, format!("{} (is {} an output directory of the suite?)", path.display(), dir.display()), e)
        })?;
        serde_json::from_str(&text).map_err(|e| Error::format(OP, format!("{}: not a manifest: {e}", path.display())))
    }

    /// The ids of every run of the grid (every replicate) with its config, in grid order.
    fn jobs(&self) -> Vec<RunResultKey> {
        self.grid
            .runs()
            .flat_map(|(_, spec)| (0..self.replicates).map(move |k| replicate(spec, k)))
            .enumerate()
            .map(|(j, s)| RunResultKey { job: j, id: s.id, config: s.config })
            .collect()
    }

    /// `dir`, with its shard when it has one.
    fn describe(&self, dir: &Path) -> String {
        match self.shard {
            Some((i, n)) => format!("{} (shard {i}/{n})", dir.display()),
            None => dir.display().to_string(),
        }
    }
}

/// A job of the grid: its index, id and config.
struct RunResultKey {
    job: usize,
    id: String,
    config: rnnlab_train::TrainConfig,
}

/// Joins the output directories `dirs` (the shards of one grid) into `out`: the run files of
/// all of them in `out/runs/`, a manifest of the whole grid, and `results.json`, which it also
/// returns. `out` may be one of `dirs`. Run files of runs outside the grid (left by an earlier
/// suite in the same directory) are ignored.
///
/// The merged `results.json` equals that of one unsharded run of the grid except for the
/// runs' `metrics.wall_ms`, each run's own measured wall time.
///
/// # Errors
/// [`Error::Config`] naming the directories for: no directory, directories that ran different
/// grids (another grid name, replicates or grid), a run that two directories both hold, a run
/// file whose config is not the grid's, or runs of the grid that no directory holds (naming the
/// first of them and the shard that should have run them); [`Error::Io`] / [`Error::Format`]
/// naming a file that cannot be read or written.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Results> {
    const OP: &str = "merge";
    let Some(first_dir) = dirs.first() else {
        return Err(Error::config(OP, "no directory to merge"));
    };
    let manifests = dirs.iter().map(|d| Manifest::read(d)).collect::<Result<Vec<_>>>()?;
    let first = &manifests[0];
    for (dir, m) in dirs.iter().zip(&manifests).skip(1) {
        let differs = if m.grid_name != first.grid_name {
            Some(format!("grid {:?} against {:?}", m.grid_name, first.grid_name))
        } else if m.replicates != first.replicates {
            Some(format!("{} seeds per run against {}", m.replicates, first.replicates))
        } else if m.grid != first.grid {
            let (a, b) = (m.grid.runs().count(), first.grid.runs().count());
            Some(format!("another grid of the same name ({a} runs against {b}, or other configs)"))
        } else {
            None
        };
        if let Some(what) = differs {
            return Err(Error::config(
                OP,
                format!("{} ran another grid than {}: {what}", m.describe(dir), first.describe(first_dir)),
            ));
        }
    }
    let jobs = first.jobs();
    let by_id: BTreeMap<&str, &RunResultKey> = jobs.iter().map(|j| (j.id.as_str(), j)).collect();
    let mut runs: BTreeMap<String, RunResult> = BTreeMap::new();
    let mut from: BTreeMap<String, &Path> = BTreeMap::new();
    for (dir, m) in dirs.iter().zip(&manifests) {
        for (id, run) in read_runs(std::slice::from_ref(dir))? {
            let Some(job) = by_id.get(id.as_str()) else { continue };
            if run.config != job.config {
                return Err(Error::config(
                    OP,
                    format!("{}: run {id:?} ran another config than the grid's (a stale run file?)", m.describe(dir)),
                ));
            }
            if let Some(other) = from.get(&id) {
                if *other != dir.as_path() {
                    return Err(Error::config(
                        OP,
                        format!(
                            "run {id:?} is in both {} and {}: the shards overlap",
                            other.display(),
                            m.describe(dir)
                        ),
                    ));
                }
            }
            from.insert(id.clone(), dir);
            runs.insert(id, run);
        }
    }
    let missing: Vec<&RunResultKey> = jobs.iter().filter(|j| !runs.contains_key(&j.id)).collect();
    if let Some(j) = missing.first() {
        let owner =
            dirs.iter().zip(&manifests).find(|(_, m)| m.shard.is_some_and(|(i, n)| j.job % n == i)).map_or_else(
                || "no directory given was meant to run it (a shard left out?)".to_string(),
                |(d, m)| format!("{} was meant to run it (unfinished?)", m.describe(d)),
            );
        return Err(Error::config(
            OP,
            format!("{} of {} runs have no result, the first {:?}: {owner}", missing.len(), jobs.len(), j.id),
        ));
    }
    let runs_dir = out.join(crate::RUNS_DIR);
    std::fs::create_dir_all(&runs_dir).map_err(|e| Error::io(OP, runs_dir.display().to_string(), e))?;
    for run in runs.values() {
        let json = serde_json::to_vec_pretty(run).map_err(|e| Error::format(OP, e.to_string()))?;
        rnnlab_train::write_atomic(&runs_dir.join(run_file_name(&run.id)), &json)?;
    }
    Manifest { shard: None, ..first.clone() }.write(out)?;
    let results = assemble(&first.grid, &first.grid_name, first.replicates, &runs);
    results.write(out)?;
    Ok(results)
}
