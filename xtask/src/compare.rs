//! `cargo xtask compare`: runs the comparison suite (an embedded profile or a grid file) and
//! writes `results.json` with every run's metrics and each claim's verdict, and the report
//! (`report.html`, `report.md`, `plots/*.svg`) with the date, machine and wall time of the run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use rnnlab_suite::{Grid, Options, ReportInfo, Results};

use crate::progress::Display;

/// Options of `cargo xtask compare`.
#[derive(Args, Debug)]
pub(crate) struct CompareArgs {
    /// The embedded grid to run: `quick` (about a minute on 2 cores), `default` (about 4
    /// minutes) or `paper` (longer sequences, more seeds: see docs/scaling.md).
    #[arg(long, default_value = "default")]
    profile: String,
    /// Run a grid file of your own instead (JSON; see crates/suite/grids/ for the format).
    #[arg(long)]
    grid: Option<PathBuf>,
    /// Only these experiments (repeatable, e.g. `--only E3 --only E7`).
    #[arg(long)]
    only: Vec<String>,
    /// Seeds per run (replicate k moves every seed by k).
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Run every n-th job starting at i: `--shard i/n` (for array jobs; join with `merge`).
    #[arg(long)]
    shard: Option<String>,
    /// Skip runs whose results are already in the output directory.
    #[arg(long)]
    resume: bool,
    /// Worker threads (default: every core).
    #[arg(long)]
    jobs: Option<usize>,
    /// Output directory (default `target/compare`).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let (i, n) = s.split_once('/').with_context(|| format!("--shard {s}: expected i/n, e.g. 0/4"))?;
    let (i, n): (usize, usize) = (i.parse().context("--shard: i")?, n.parse().context("--shard: n")?);
    if n == 0 || i >= n {
        bail!("--shard {s}: needs 0 <= i < n");
    }
    Ok((i, n))
}

pub(crate) fn compare(args: &CompareArgs, root: &std::path::Path) -> Result<()> {
    let (grid, name) = match &args.grid {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading grid {}", path.display()))?;
            (Grid::parse(&path.display().to_string(), &text)?, path.display().to_string())
        }
        None => (rnnlab_suite::profile(&args.profile)?, args.profile.clone()),
    };
    let grid = if args.only.is_empty() { grid } else { grid.only(&args.only)? };
    let out = args.out.clone().unwrap_or_else(|| root.join("target").join("compare"));
    let mut options = Options::new(&out);
    options.replicates = args.seeds;
    options.shard = args.shard.as_deref().map(parse_shard).transpose()?;
    options.resume = args.resume;
    options.jobs = args.jobs;
    let start = Instant::now();
    let progress = Display::new(start);
    let date = now();
    let results = rnnlab_suite::run_grid(&grid, &name, &options, &progress);
    progress.finish();
    let results = results?;
    let wall = start.elapsed().as_secs_f64();
    println!("# rnnlab compare: {name} ({wall:.0} s)");
    let mut wall_time = format!("{wall:.1} s");
    if options.resume {
        wall_time.push_str(" (resumed: runs done before are not counted)");
    }
    let info = ReportInfo::new(date, machine(options.jobs), wall_time);
    summarise(&results, &out, &info)
}

/// Prints the verdicts, writes the report and prints where the files are.
fn summarise(results: &Results, out: &Path, info: &ReportInfo) -> Result<()> {
    for line in results.summary_lines() {
        println!("{line}");
    }
    println!("results: {}", out.join("results.json").display());
    let files = rnnlab_suite::write_report(results, out, info)?;
    println!("report: {}", files.html.display());
    println!("report: {}", files.markdown.display());
    println!("plots:  {} in {}", files.plots.len(), out.join(rnnlab_suite::PLOTS_DIR).display());
    Ok(())
}

/// Options of `cargo xtask merge`.
#[derive(Args, Debug)]
pub(crate) struct MergeArgs {
    /// The output directories of the shards (`compare --shard i/n --out DIR`).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Where the merged results and report go (default `target/compare`).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `cargo xtask merge DIR… [--out DIR]`: joins the shards' results into one results.json (the
/// same as one unsharded run's, but for the runs' wall times) and writes the report.
pub(crate) fn merge(args: &MergeArgs, root: &Path) -> Result<()> {
    let out = args.out.clone().unwrap_or_else(|| root.join("target").join("compare"));
    let date = now();
    let results = rnnlab_suite::merge(&args.dirs, &out)?;
    let runs: Vec<_> = results.experiments.iter().flat_map(|e| &e.runs).collect();
    let cpu_s: f64 = runs.iter().map(|r| r.metrics.wall_ms).sum::<f64>() / 1e3;
    println!("# rnnlab merge: {} ({} runs from {} directories)", results.grid, runs.len(), args.dirs.len());
    let info = ReportInfo::new(
        format!("{date} (merged)"),
        format!("merged from {} output directories; their machines are not recorded", args.dirs.len()),
        format!(
            "{cpu_s:.1} s summed over the runs (each run single-threaded; the shards' own wall times are not recorded)"
        ),
    );
    summarise(&results, &out, &info)
}

/// The current UTC time from the system's `date`, or a plain statement that it is unknown.
fn now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown (no `date` command)".to_string())
}

/// The CPU model (from /proc/cpuinfo where there is one), the cores available, the worker
/// threads used, and the OS and architecture.
fn machine(jobs: Option<usize>) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|info| {
        info.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    });
    let cores = std::thread::available_parallelism().map_or_else(|_| "? cores".to_string(), |n| format!("{n} cores"));
    let workers = jobs.map_or_else(String::new, |j| format!(", {j} worker threads"));
    let os = format!("{} {}", std::env::consts::OS, std::env::consts::ARCH);
    match cpu {
        Some(cpu) => format!("{cpu}, {cores} available{workers}, {os}"),
        None => format!("{cores} available{workers}, {os}"),
    }
}
