#![doc = include_str!("../README.md")]

mod execute;
mod grid;
pub mod plot;
#[cfg(test)]
mod quick_tests;
mod report;
mod results;
mod run;
#[cfg(test)]
mod tests;
mod verdict;

pub use execute::{Options, Progress, run_grid};
pub use grid::{ExperimentSpec, GRID_SCHEMA, Grid, Limits, RunSpec};
pub use report::{PLOTS_DIR, ReportFiles, ReportInfo, write_report};
pub use results::{ExperimentResult, RESULTS_SCHEMA, RUNS_DIR, Results, assemble, read_runs, run_file_name};
pub use run::{Metrics, RunResult, SOLVED_FRACTION, TRACE_POINTS, replicate, run};
pub use verdict::{Status, Verdict, judge};

/// The embedded grids, by profile name: `quick` (about a minute on 2 cores: what the snapshot
/// tests run), `default` (what `cargo xtask compare` runs).
pub const PROFILES: [(&str, &str); 2] =
    [("quick", include_str!("../grids/quick.json")), ("default", include_str!("../grids/default.json"))];

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
