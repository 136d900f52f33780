//! `cargo xtask`: the project's commands beyond building and testing.
//!
//! - `cargo xtask bench [--quick] [--threads 1,2] [--measurement-time S]`: runs the cells'
//!   training-step benchmark once per thread count (`MATMUL_NUM_THREADS`, read once per
//!   process) and prints the medians as a markdown table with GFLOP/s.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "rnnlab project commands")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Benchmark one training step of each cell (criterion) and print a table of medians.
    Bench {
        /// Only H ≤ 128.
        #[arg(long)]
        quick: bool,
        /// Thread counts to measure, comma-separated.
        #[arg(long, default_value = "1,2", value_delimiter = ',')]
        threads: Vec<usize>,
        /// Criterion measurement time per benchmark, seconds.
        #[arg(long, default_value_t = 5)]
        measurement_time: u64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Bench { quick, threads, measurement_time } => bench(quick, &threads, measurement_time),
    }
}

fn root() -> PathBuf {
    // xtask/ sits directly under the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

const CELLS: [(&str, usize); 3] = [("lstm", 4), ("gru", 3), ("rnn_tanh", 1)];
const SHAPES: [(usize, usize); 8] =
    [(32, 50), (128, 50), (256, 50), (512, 50), (32, 200), (128, 200), (256, 200), (512, 200)];

fn bench(quick: bool, threads: &[usize], measurement_time: u64) -> Result<()> {
    if threads.is_empty() || threads.contains(&0) {
        bail!("--threads needs thread counts of at least 1, got {threads:?}");
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = root();
    for &t in threads {
        eprintln!("xtask bench: {t} thread(s)…");
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&root)
            .args([
                "bench",
                "-p",
                "rnnlab-cells",
                "--bench",
                "cells",
                "--",
                "--warm-up-time",
                "1",
                "--measurement-time",
            ])
            .arg(measurement_time.to_string())
            .env("MATMUL_NUM_THREADS", t.to_string());
        if quick {
            cmd.env("RNNLAB_BENCH_QUICK", "1");
        }
        let status = cmd.status().context("running cargo bench")?;
        if !status.success() {
            bail!("cargo bench failed with {status}");
        }
    }
    println!(
        "| cell | H | T | {} |",
        threads.iter().map(|t| format!("{t} thread(s): ms (GFLOP/s)")).collect::<Vec<_>>().join(" | ")
    );
    println!("|---|---:|---:|{}", "---:|".repeat(threads.len()));
    for (cell, gates) in CELLS {
        for (h, t_len) in SHAPES {
            if quick && h > 128 {
                continue;
            }
            let flop = 3.0 * 2.0 * 32.0 * t_len as f64 * 2.0 * h as f64 * gates as f64 * h as f64;
            let mut cols = Vec::new();
            for &t in threads {
                let file = root.join(format!("target/criterion/{cell}_{t}t/T{t_len}/{h}/new/estimates.json"));
                cols.push(match median_ns(&file) {
                    Ok(ns) => format!("{:.2} ({:.0})", ns / 1e6, flop / ns),
                    Err(_) => "–".into(),
                });
            }
            println!("| {cell} | {h} | {t_len} | {} |", cols.join(" | "));
        }
    }
    Ok(())
}

fn median_ns(file: &Path) -> Result<f64> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    v["median"]["point_estimate"].as_f64().with_context(|| format!("no median in {}", file.display()))
}
