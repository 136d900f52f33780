//! `cargo xtask`: the project's commands beyond building and testing.
//!
//! - `cargo xtask bench [--quick] [--threads 1,2] [--measurement-time S] [--no-run]
//!   [--criterion-dir DIR] [--peers FILE...]`: runs the cells' training-step benchmark once per
//!   thread count (`RNNLAB_THREADS`, see `rnnlab_cells::threads`) and prints the criterion medians
//!   as a markdown table with GFLOP/s.
//!   - `--no-run` skips `cargo bench` and only renders the existing results.
//!   - `--criterion-dir DIR` says where they are (default `$CARGO_TARGET_DIR/criterion`, else
//!     `<workspace>/target/criterion`).
//!   - `--peers FILE...` (JSON lines of `shared/peers/torch_bench.py` / `jax_bench.py`; float32,
//!     B = 32, I = H; repeated configurations merged by their median) prints instead one table
//!     per thread count: ours, torch fused, JAX, torch cell loop (ms), the ratios peer / ours
//!     against the faster of torch fused and JAX, torch fused and the cell loop, and a summary
//!     line with each ratio column's minimum and the minimum vs torch fused at H ≤ 128.

mod bench;
mod compare;
mod peers;

use std::path::{Path, PathBuf};

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
    Compare(compare::CompareArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Bench(args) => bench::bench(&args, &root()),
        Cmd::Compare(args) => compare::compare(&args, &root()),
    }
}

fn root() -> PathBuf {
    // xtask/ sits directly under the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}
