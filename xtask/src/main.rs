//! `cargo xtask`: the project's commands beyond building and testing.
//!
//! - `cargo xtask bench [--quick] [--threads 1,2] [--measurement-time S] [--no-run]
//!   [--criterion-dir DIR] [--peers FILE...]`: runs the cells' training-step benchmark once per
//!   thread count (`RNNLAB_THREADS`, see `rnnlab_cells::threads`) and prints the criterion medians
//!   as a markdown table with GFLOP/s.
//!   - `--no-run` skips `cargo bench` and only renders the existing results.
//!   - `--criterion-dir DIR` says where they are (default `$CARGO_TARGET_DIR/criterion`, else
//!     `<workspace>/target/criterion`).
//!   - `--peers FILE...` (JSON lines of `bench/peers/torch_bench.py` / `jax_bench.py`; float32,
//!     B = 32, I = H; repeated configurations merged by their median) prints instead one table
//!     per thread count: ours, torch fused, JAX, torch cell loop (ms), the ratios peer / ours
//!     against the faster of torch fused and JAX, torch fused and the cell loop, and a summary
//!     line with each ratio column's minimum and the minimum vs torch fused at H ≤ 128.
//! - `cargo xtask compare [--profile quick|default|paper | --grid FILE] [--only E3] [--seeds N]
//!   [--shard i/n] [--resume] [--jobs N] [--out DIR]`: runs the comparison suite (see
//!   `compare.rs`); progress as indicatif bars on a terminal, plain lines otherwise.
//! - `cargo xtask merge DIR... [--out DIR]`: joins the shards' output directories into one
//!   `results.json` and report (docs/scaling.md).
//! - `cargo xtask diagnose --config MODEL.json [--weights FILE.safetensors] [--task NAME
//!   --seq-len T | --task-json TASK.json | --input FILE.npy] [--batch N] [--seed S] [--f64]
//!   [--no-jacobian] [--out FILE]`: builds the model of a `rnnlab_train::ModelConfig`, loads
//!   rnnlab's or PyTorch's (`nn.RNN/LSTM/GRU` `state_dict`, `_reverse` names when
//!   bidirectional) weights, runs `rnnlab_diagnostics::diagnose` (or `diagnose_bidirectional`)
//!   on a task's batch or an `.npy` input, prints the report and writes it as JSON and the
//!   gradient curves as an SVG beside it (see `diagnose.rs`).
//! - `cargo xtask docs [--check] [--import DIR]`: regenerates the evidence sections of
//!   `docs/guide.md` / `docs/guide.zh.md` and their plots from `docs/evidence/results.json`
//!   (see `docs.rs`); `--check` fails when they are stale, `--import DIR` first takes a new
//!   `cargo xtask compare --out DIR` run as the evidence.

mod bench;
mod compare;
mod diagnose;
mod docs;
mod peers;
mod progress;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "rnnlab project commands")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Benchmark one training step of each cell (criterion) and print a table of medians,
    /// optionally beside peer (PyTorch, JAX) figures.
    Bench(bench::BenchArgs),
    /// Run the comparison suite: which remedy for vanishing/exploding gradients works,
    /// measured; writes results.json and prints one verdict per claim.
    ///
    /// Profiles: quick (about a minute on 2 cores), default (about 4 minutes), paper (longer
    /// sequences, more seeds; about an hour: see docs/scaling.md). --shard i/n runs every n-th
    /// run for array jobs; --resume skips finished runs. Progress: bars on a terminal, plain
    /// lines otherwise.
    Compare(compare::CompareArgs),
    /// Join the output directories of `compare --shard i/n` into one results.json (the same as
    /// one unsharded run's, but for the runs' wall times) and write the report. Refuses
    /// directories that ran different grids, runs present twice and missing runs, naming the
    /// directory. See docs/scaling.md for Slurm, Kubernetes and GNU parallel.
    Merge(compare::MergeArgs),
    /// Diagnose where a model's gradient vanishes or explodes, per time step: a model of a
    /// ModelConfig JSON (uni- or bidirectional), with rnnlab's or PyTorch's weights (a bare
    /// nn.RNN / nn.LSTM / nn.GRU state_dict saved by safetensors.torch.save_file, `_reverse`
    /// names for bidirectional=True), on a built-in task or an .npy input. Prints the report
    /// (stdout), writes it as JSON and, beside it, an SVG of the relative ‖∂L/∂h_t‖ against
    /// the lag (log axis, one curve per layer and direction).
    ///
    /// What is differentiated: with a task and a known head (rnnlab's weights file, or no
    /// weights), the model's own loss through its head; otherwise (PyTorch weights, .npy
    /// input) the probe L = Σ_b ⟨g_b, h_(T−1),b⟩ with a fixed random unit vector g_b per
    /// example (bidirectional: on h_n, the top layer's forward h at T−1 and reverse h at 0).
    /// The report says which. A bidirectional model's lag k is t = t_r − k in the forward
    /// direction and t = t_r + k in the reverse one (it reads the sequence backwards).
    Diagnose(diagnose::DiagnoseArgs),
    /// Regenerate the evidence sections of the guide (docs/guide.md, docs/guide.zh.md) and its
    /// plots (docs/img/) from the committed suite results (docs/evidence/results.json).
    Docs(docs::DocsArgs),
}

fn main() -> ExitCode {
    let result: Result<()> = match Cli::parse().command {
        Cmd::Bench(args) => bench::bench(&args, &root()),
        Cmd::Compare(args) => compare::compare(&args, &root()),
        Cmd::Merge(args) => compare::merge(&args, &root()),
        Cmd::Diagnose(args) => diagnose::diagnose(&args, &root()),
        Cmd::Docs(args) => docs::docs(&args, &root()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain on one line (`{:#}`), without the backtrace anyhow's `Debug`
            // adds under RUST_BACKTRACE: these are input errors, not bugs.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The target directory: `$CARGO_TARGET_DIR` (relative to `root`, where cargo runs) if the
/// variable is set and non-empty, else `root/target`.
pub(crate) fn target_dir(root: &Path, cargo_target_dir: Option<std::ffi::OsString>) -> PathBuf {
    match cargo_target_dir.filter(|d| !d.is_empty()) {
        Some(d) => root.join(d),
        None => root.join("target"),
    }
}

fn root() -> PathBuf {
    // xtask/ sits directly under the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}
