//! Running a grid: every (run, replicate) not already done, in parallel over the cores (each
//! run single-threaded and deterministic from its seeds), each result written to its own file
//! as it finishes, so an interrupted suite keeps what it did.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;
use rnnlab_core::{Error, Result};

use crate::{
    CustomCells, Grid, Manifest, Results, RunResult, RunSpec, assemble, read_runs, replicate, run_file_name, run_with,
};

/// How to run a grid.
#[derive(Clone, Debug)]
pub struct Options {
    /// The output directory (`runs/` and `results.json` go there).
    pub out: PathBuf,
    /// Seeds per run: replicate k moves every seed of the run by k (default 1: the grid's own).
    pub replicates: u64,
    /// Run only the jobs `j` with `j % n == i` (`Some((i, n))`), for array jobs.
    pub shard: Option<(usize, usize)>,
    /// Skip the runs whose result file is already in `out` with the same config.
    pub resume: bool,
    /// Worker threads (default: every core).
    pub jobs: Option<usize>,
}

impl Options {
    /// Defaults: one replicate, no shard, no resume, every core.
    pub fn new(out: &Path) -> Self {
        Self { out: out.to_path_buf(), replicates: 1, shard: None, resume: false, jobs: None }
    }
}

/// What [`run_grid`] reports while it runs.
pub trait Progress: Sync {
    /// Before anything runs: how many runs there are to do, and how many were already done.
    fn start(&self, _todo: usize, _done: usize) {}
    /// A run starts.
    fn started(&self, _id: &str) {}
    /// A training run took step `step` of `n_steps` with training loss `loss` (called up to
    /// [`crate::STEP_REPORTS`] times per run, and at its last step; from the run's thread).
    fn step(&self, _id: &str, _step: u64, _n_steps: u64, _loss: f64) {}
    /// A run finished.
    fn finished(&self, _result: &RunResult) {}
}

/// Reports nothing.
impl Progress for () {}

/// Runs `grid` as `options` say and returns its results (also written: `results.json` in
/// `options.out`, each run's result in `runs/`, and the grid that ran in
/// [`crate::MANIFEST_FILE`] for [`crate::merge`]). A failed or diverged run is recorded and the
/// others go on.
///
/// # Errors
/// [`Error::Config`] for a bad shard or zero replicates; [`Error::Io`] if the output directory
/// cannot be written; [`Error::Format`] for a run file in it that is not a run result.
pub fn run_grid(grid: &Grid, grid_name: &str, options: &Options, progress: &dyn Progress) -> Result<Results> {
    run_grid_with(grid, grid_name, options, progress, &CustomCells::new())
}

/// [`run_grid`] for a grid whose entries may name the custom cells of `cells` (a grid parsed
/// by [`Grid::parse_with`]).
///
/// # Errors
/// As [`run_grid`], and [`Error::Config`] naming a custom cell of the grid that `cells` has no
/// maker for (before any run starts).
///
/// # Examples
/// ```no_run
/// # use rnnlab_suite::{CustomCells, Grid, Options, run_grid_with};
/// # fn demo(json: &str, cells: &CustomCells) -> rnnlab_core::Result<()> {
/// let grid = Grid::parse_with("my-grid.json", json, cells)?;
/// let results = run_grid_with(&grid, "mine", &Options::new("target/mine".as_ref()), &(), cells)?;
/// println!("{}", results.summary_lines().join("\n"));
/// # Ok(())
/// # }
/// ```
pub fn run_grid_with(
    grid: &Grid,
    grid_name: &str,
    options: &Options,
    progress: &dyn Progress,
    cells: &CustomCells,
) -> Result<Results> {
    const OP: &str = "run_grid";
    for (_, spec) in grid.runs() {
        if let rnnlab_train::CellConfig::Custom(c) = &spec.config.model.cell
            && !cells.contains(&c.name)
        {
            return Err(cells.unknown(OP, &c.name));
        }
    }
    if options.replicates == 0 {
        return Err(Error::config(OP, "replicates must be at least 1, got 0"));
    }
    if let Some((i, n)) = options.shard
        && (n == 0 || i >= n)
    {
        return Err(Error::config(OP, format!("shard {i}/{n}: needs 0 <= i < n")));
    }
    let runs_dir = options.out.join(crate::RUNS_DIR);
    std::fs::create_dir_all(&runs_dir).map_err(|e| Error::io(OP, runs_dir.display().to_string(), e))?;
    Manifest {
        grid_name: grid_name.to_string(),
        replicates: options.replicates,
        shard: options.shard,
        grid: grid.clone(),
    }
    .write(&options.out)?;
    let existing = if options.resume { read_runs(std::slice::from_ref(&options.out))? } else { Default::default() };
    let jobs: Vec<RunSpec> = grid
        .runs()
        .flat_map(|(_, spec)| (0..options.replicates).map(move |k| (spec, k)))
        .enumerate()
        .filter(|(j, _)| options.shard.is_none_or(|(i, n)| j % n == i))
        .map(|(_, (spec, k))| replicate(spec, k))
        .collect();
    let (done, todo): (Vec<RunSpec>, Vec<RunSpec>) =
        jobs.into_iter().partition(|s| existing.get(&s.id).is_some_and(|r| r.config == s.config));
    progress.start(todo.len(), done.len());
    // Each run on one thread: the suite's parallelism is across runs.
    rnnlab_cells::set_threads(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.jobs.unwrap_or(0))
        .build()
        .map_err(|e| Error::config(OP, format!("thread pool: {e}")))?;
    let write_error: Mutex<Option<Error>> = Mutex::new(None);
    pool.install(|| {
        todo.par_iter().for_each(|spec| {
            progress.started(&spec.id);
            let k = spec.id.rsplit_once('#').and_then(|(_, k)| k.parse().ok()).unwrap_or(0);
            let n_steps = spec.config.n_steps;
            let result = run_with(spec, k, cells, &mut |step, loss| progress.step(&spec.id, step, n_steps, loss));
            let written = serde_json::to_vec_pretty(&result)
                .map_err(|e| Error::format(OP, e.to_string()))
                .and_then(|json| rnnlab_train::write_atomic(&runs_dir.join(run_file_name(&result.id)), &json));
            if let Err(e) = written
                && let Ok(mut slot) = write_error.lock()
            {
                slot.get_or_insert(e);
            }
            progress.finished(&result);
        });
    });
    if let Some(e) = write_error.into_inner().ok().flatten() {
        return Err(e);
    }
    let all = read_runs(std::slice::from_ref(&options.out))?;
    let results = assemble(grid, grid_name, options.replicates, &all);
    results.write(&options.out)?;
    Ok(results)
}
