#![doc = include_str!("../README.md")]

mod custom;
mod execute;
mod grid;
mod merge;
#[cfg(test)]
mod ops_tests;
pub mod plot;
#[cfg(test)]
mod quick_tests;
mod report;
mod results;
mod run;
#[cfg(test)]
mod tests;
mod verdict;

pub use custom::CustomCells;
pub use execute::{Options, Progress, run_grid, run_grid_with};
pub use grid::{ExperimentSpec, GRID_SCHEMA, Grid, Limits, RunSpec};
pub use merge::{MANIFEST_FILE, Manifest, merge};
pub use report::{PLOTS_DIR, ReportFiles, ReportInfo, write_report};
pub use results::{ExperimentResult, RESULTS_SCHEMA, RUNS_DIR, Results, assemble, read_runs, run_file_name};
pub use run::{Metrics, RunResult, SOLVED_FRACTION, STEP_REPORTS, TRACE_POINTS, replicate, run, run_with};
pub use verdict::{Status, Verdict, judge};

/// The embedded grids, by profile name: `quick` (about a minute on 2 cores: what the snapshot
/// tests run), `default` (what `cargo xtask compare` runs), `paper` (opt-in: longer sequences,
/// wider models, more seeds, longer training; about an hour on 2 cores).
pub const PROFILES: [(&str, &str); 3] = [
    ("quick", include_str!("../grids/quick.json")),
    ("default", include_str!("../grids/default.json")),
    ("paper", include_str!("../grids/paper.json")),
];

/// The embedded grid of a profile.
///
/// # Errors
/// [`rnnlab_core::Error::Config`] for an unknown profile, and as [`Grid::parse`].
pub fn profile(name: &str) -> rnnlab_core::Result<Grid> {
    let (_, json) = PROFILES.iter().find(|(n, _)| *n == name).ok_or_else(|| {
        let names: Vec<&str> = PROFILES.iter().map(|(n, _)| *n).collect();
        rnnlab_core::Error::config("profile", format!("no profile {name:?} (there are {names:?})"))
    })?;
    Grid::parse(&format!("the {name} grid"), json)
}
