//! `cargo xtask bench`: runs the cells' training-step benchmark and tabulates the criterion
//! medians, on their own (ms and GFLOP/s per thread count) or beside peer figures and ratios.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::peers::{Key, Peer, Peers};

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    /// Only H ≤ 128.
    #[arg(long)]
    quick: bool,
    /// Thread counts to measure, comma-separated.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    threads: Vec<usize>,
    /// Criterion measurement time per benchmark, seconds.
    #[arg(long, default_value_t = 5)]
    measurement_time: u64,
    /// Peer result files (JSON lines of bench/peers/torch_bench.py, jax_bench.py): print one
    /// table per thread count with the peers' medians and the ratios peer / ours.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    peers: Vec<PathBuf>,
    /// Do not run `cargo bench`; only render the table from the existing criterion results.
    #[arg(long)]
    no_run: bool,
    /// Where criterion writes its results [default: $CARGO_TARGET_DIR/criterion, else
    /// target/criterion in the workspace].
    #[arg(long, value_name = "DIR")]
    criterion_dir: Option<PathBuf>,
}

/// One benchmarked configuration: a cell (with its gate count) at hidden size `h`, length `t`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Row {
    pub(crate) cell: &'static str,
    pub(crate) gates: usize,
    pub(crate) h: usize,
    pub(crate) t: usize,
}

impl Row {
    fn key(&self, threads: usize) -> Key {
        Key { cell: self.cell.to_owned(), h: self.h, t: self.t, threads }
    }

    fn label(&self) -> String {
        format!("{} H={} T={}", self.cell, self.h, self.t)
    }

    /// Matmul FLOPs of one training step at batch 32, I = H (3 × forward, as the peers count).
    fn flop(&self) -> f64 {
        3.0 * 2.0 * 32.0 * self.t as f64 * 2.0 * self.h as f64 * self.gates as f64 * self.h as f64
    }
}

/// Our criterion medians in ms, by configuration and thread count.
pub(crate) type Ours = BTreeMap<Key, f64>;

const CELLS: [(&str, usize); 3] = [("lstm", 4), ("gru", 3), ("rnn_tanh", 1)];
const SHAPES: [(usize, usize); 8] =
    [(32, 50), (128, 50), (256, 50), (512, 50), (32, 200), (128, 200), (256, 200), (512, 200)];

/// Runs `cargo xtask bench` from the workspace `root`.
pub(crate) fn bench(args: &BenchArgs, root: &Path) -> Result<()> {
    let threads = &args.threads;
    if threads.is_empty() || threads.contains(&0) {
        bail!("--threads needs thread counts of at least 1, got {threads:?}");
    }
    // Read the peer files first: a bad file should fail before minutes of benchmarking.
    let mut peers = Peers::default();
    for file in &args.peers {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        peers.add_jsonl(&file.display().to_string(), &text)?;
    }
    if !args.peers.is_empty() && peers.is_empty() {
        eprintln!(
            "xtask bench: no float32, B = 32, I = H results of torch fused / cell_loop or JAX scan_jit in --peers"
        );
    }
    if !args.no_run {
        run_criterion(root, args)?;
    }
    let dir = match &args.criterion_dir {
        Some(d) => d.clone(),
        None => default_criterion_dir(root, std::env::var_os("CARGO_TARGET_DIR")),
    };
    let rows = rows(args.quick);
    let ours = read_ours(&dir, &rows, threads);
    if ours.is_empty() {
        eprintln!("xtask bench: no criterion results under {} (see --criterion-dir)", dir.display());
    }
    if args.peers.is_empty() {
        print!("{}", render_plain(&rows, threads, &ours));
    } else {
        print!("{}", render_peer_tables(&rows, threads, &ours, &peers));
    }
    Ok(())
}

fn run_criterion(root: &Path, args: &BenchArgs) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for &t in &args.threads {
        eprintln!("xtask bench: {t} thread(s)…");
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(root)
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
            .arg(args.measurement_time.to_string())
            .env("RNNLAB_THREADS", t.to_string()); // rnnlab_cells::THREADS_ENV
        if args.quick {
            cmd.env("RNNLAB_BENCH_QUICK", "1");
        }
        let status = cmd.status().context("running cargo bench")?;
        if !status.success() {
            bail!("cargo bench failed with {status}");
        }
    }
    Ok(())
}

/// `$CARGO_TARGET_DIR/criterion` (relative to `root`, where `cargo bench` runs) if the
/// variable is set and non-empty, else `root/target/criterion`.
fn default_criterion_dir(root: &Path, cargo_target_dir: Option<OsString>) -> PathBuf {
    crate::target_dir(root, cargo_target_dir).join("criterion")
}

/// The benchmarked configurations in table order: per cell, T = 50 then 200, H ascending.
pub(crate) fn rows(quick: bool) -> Vec<Row> {
    CELLS
        .iter()
        .flat_map(|&(cell, gates)| SHAPES.iter().map(move |&(h, t)| Row { cell, gates, h, t }))
        .filter(|r| !quick || r.h <= 128)
        .collect()
}

/// Reads `{dir}/{cell}_{t}t/T{T}/{H}/new/estimates.json` for every row and thread count;
/// missing or unreadable results are left out.
fn read_ours(dir: &Path, rows: &[Row], threads: &[usize]) -> Ours {
    let mut ours = Ours::new();
    for row in rows {
        for &th in threads {
            let file = dir.join(format!("{}_{th}t/T{}/{}/new/estimates.json", row.cell, row.t, row.h));
            if let Ok(ns) = median_ns(&file) {
                ours.insert(row.key(th), ns / 1e6);
            }
        }
    }
    ours
}

fn median_ns(file: &Path) -> Result<f64> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    v["median"]["point_estimate"].as_f64().with_context(|| format!("no median in {}", file.display()))
}

/// The table without peers: one column per thread count, `ms (GFLOP/s)`.
pub(crate) fn render_plain(rows: &[Row], threads: &[usize], ours: &Ours) -> String {
    let mut lines = vec![
        format!(
            "| cell | H | T | {} |",
            threads.iter().map(|t| format!("{t} thread(s): ms (GFLOP/s)")).collect::<Vec<_>>().join(" | ")
        ),
        format!("|---|---:|---:|{}", "---:|".repeat(threads.len())),
    ];
    for row in rows {
        let cols: Vec<String> = threads
            .iter()
            .map(|&th| match ours.get(&row.key(th)) {
                Some(&ms) => format!("{ms:.2} ({:.0})", row.flop() / (ms * 1e6)),
                None => "–".into(),
            })
            .collect();
        lines.push(format!("| {} | {} | {} | {} |", row.cell, row.h, row.t, cols.join(" | ")));
    }
    lines.push(String::new());
    lines.join("\n")
}

/// One [`render_peer_table`] per thread count, under a line saying what the ratios mean.
pub(crate) fn render_peer_tables(rows: &[Row], threads: &[usize], ours: &Ours, peers: &Peers) -> String {
    let mut out = String::from(
        "Ratios are peer ms / ours ms (above 1×: ours is faster). Peers: float32, B = 32, I = H, \
         median over repeated runs; \"faster of\" uses whichever of torch fused and JAX was measured.\n",
    );
    for &th in threads {
        out.push_str(&format!("\n### {th} thread{}\n\n", if th == 1 { "" } else { "s" }));
        out.push_str(&render_peer_table(rows, th, ours, peers));
    }
    out
}

/// The table for one thread count: ours, the three peers, the ratios peer / ours, and a
/// summary line with each ratio column's minimum (and the minimum vs torch fused at H ≤ 128).
pub(crate) fn render_peer_table(rows: &[Row], threads: usize, ours: &Ours, peers: &Peers) -> String {
    let mut lines = vec![
        "| cell | H | T | ours ms | torch fused ms | JAX ms | torch cell loop ms \
         | ours vs faster of (torch fused, JAX) | vs torch fused | vs cell loop |"
            .to_owned(),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|".to_owned(),
    ];
    let (mut min_best, mut min_fused, mut min_loop, mut min_fused_small) =
        (Min::default(), Min::default(), Min::default(), Min::default());
    for row in rows {
        let key = row.key(threads);
        let us = ours.get(&key).copied();
        let fused = peers.median_ms(Peer::TorchFused, &key);
        let jax = peers.median_ms(Peer::Jax, &key);
        let cell_loop = peers.median_ms(Peer::TorchCellLoop, &key);
        let best = match (fused, jax) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let (r_best, r_fused, r_loop) = (ratio(best, us), ratio(fused, us), ratio(cell_loop, us));
        let label = row.label();
        min_best.offer(r_best, &label);
        min_fused.offer(r_fused, &label);
        min_loop.offer(r_loop, &label);
        if row.h <= 128 {
            min_fused_small.offer(r_fused, &label);
        }
        lines.push(format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.cell,
            row.h,
            row.t,
            fmt_ms(us),
            fmt_ms(fused),
            fmt_ms(jax),
            fmt_ms(cell_loop),
            fmt_ratio(r_best),
            fmt_ratio(r_fused),
            fmt_ratio(r_loop),
        ));
    }
    lines.push(String::new());
    lines.push(format!(
        "Minimum ratio: vs faster of (torch fused, JAX) {}; vs torch fused {}; vs cell loop {}; \
         H ≤ 128 vs torch fused {}.",
        min_best.render(),
        min_fused.render(),
        min_loop.render(),
        min_fused_small.render(),
    ));
    lines.push(String::new());
    lines.join("\n")
}

/// `peer_ms / ours_ms` when both are known, finite and positive.
pub(crate) fn ratio(peer_ms: Option<f64>, ours_ms: Option<f64>) -> Option<f64> {
    match (peer_ms, ours_ms) {
        (Some(p), Some(o)) if p.is_finite() && o.is_finite() && p > 0.0 && o > 0.0 => Some(p / o),
        _ => None,
    }
}

/// A ratio as `1.23×`, or `–` when missing.
pub(crate) fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "–".into(), |r| format!("{r:.2}×"))
}

fn fmt_ms(ms: Option<f64>) -> String {
    ms.map_or_else(|| "–".into(), |ms| format!("{ms:.2}"))
}

/// The smallest ratio offered so far and the shape it was seen at (the first one on ties).
#[derive(Default)]
struct Min(Option<(f64, String)>);

impl Min {
    fn offer(&mut self, r: Option<f64>, label: &str) {
        let Some(r) = r else { return };
        if self.0.as_ref().is_none_or(|(m, _)| r < *m) {
            self.0 = Some((r, label.to_owned()));
        }
    }

    fn render(&self) -> String {
        self.0.as_ref().map_or_else(|| "–".into(), |(r, label)| format!("{} ({label})", fmt_ratio(Some(*r))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cell: &'static str, gates: usize, h: usize, t: usize) -> Row {
        Row { cell, gates, h, t }
    }

    fn key(cell: &str, h: usize, t: usize, threads: usize) -> Key {
        Key { cell: cell.into(), h, t, threads }
    }

    #[test]
    fn ratio_formatting() {
        assert_eq!(fmt_ratio(ratio(Some(24.6), Some(10.0))), "2.46×");
        assert_eq!(fmt_ratio(ratio(Some(1.0), Some(3.0))), "0.33×");
        assert_eq!(fmt_ratio(ratio(None, Some(3.0))), "–");
        assert_eq!(fmt_ratio(ratio(Some(1.0), None)), "–");
        assert_eq!(fmt_ratio(ratio(Some(1.0), Some(0.0))), "–");
    }

    #[test]
    fn rows_in_table_order_and_quick_drops_large_h() {
        let all = rows(false);
        assert_eq!(all.len(), 24);
        assert_eq!((all[0].cell, all[0].h, all[0].t), ("lstm", 32, 50));
        assert_eq!((all[23].cell, all[23].h, all[23].t), ("rnn_tanh", 512, 200));
        assert!(rows(true).iter().all(|r| r.h <= 128));
        assert_eq!(rows(true).len(), 12);
    }

    #[test]
    fn default_criterion_dir_follows_cargo_target_dir() {
        let root = Path::new("/ws");
        assert_eq!(default_criterion_dir(root, None), Path::new("/ws/target/criterion"));
        assert_eq!(default_criterion_dir(root, Some("".into())), Path::new("/ws/target/criterion"));
        assert_eq!(default_criterion_dir(root, Some("/t/x".into())), Path::new("/t/x/criterion"));
        assert_eq!(default_criterion_dir(root, Some("tgt".into())), Path::new("/ws/tgt/criterion"));
    }

    #[test]
    fn peer_table_row_and_summary() -> Result<()> {
        let rows = [row("lstm", 4, 128, 50), row("lstm", 4, 512, 200), row("gru", 3, 32, 50)];
        let mut ours = Ours::new();
        ours.insert(key("lstm", 128, 50, 1), 10.0);
        ours.insert(key("lstm", 512, 200, 1), 1000.0);
        ours.insert(key("gru", 32, 50, 1), 2.0);
        ours.insert(key("gru", 32, 50, 2), 99.0); // another thread count: not in this table
        let mut peers = Peers::default();
        let line = |fw: &str, imp: &str, cell: &str, h: usize, t: usize, ms: f64| {
            format!(
                r#"{{"kind": "result", "framework": "{fw}", "cell": "{cell}", "impl": "{imp}", "dtype": "float32", "B": 32, "I": {h}, "H": {h}, "T": {t}, "threads": 1, "median_ms": {ms}}}"#
            )
        };
        let text = [
            line("torch", "fused", "lstm", 128, 50, 21.8),
            line("jax", "scan_jit", "lstm", 128, 50, 26.5),
            line("torch", "cell_loop", "lstm", 128, 50, 51.0),
            line("torch", "fused", "lstm", 512, 200, 700.0),
            line("torch", "cell_loop", "lstm", 512, 200, 1968.0),
            line("torch", "fused", "gru", 32, 50, 3.0),
            line("jax", "scan_jit", "gru", 32, 50, 1.5),
        ]
        .join("\n");
        peers.add_jsonl("t.jsonl", &text)?;
        let table = render_peer_table(&rows, 1, &ours, &peers);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "| cell | H | T | ours ms | torch fused ms | JAX ms | torch cell loop ms \
             | ours vs faster of (torch fused, JAX) | vs torch fused | vs cell loop |"
        );
        // 21.8 / 10 = 2.18 (torch fused is the faster peer), 51 / 10 = 5.1.
        assert_eq!(lines[2], "| lstm | 128 | 50 | 10.00 | 21.80 | 26.50 | 51.00 | 2.18× | 2.18× | 5.10× |");
        // No JAX figure: the faster peer is torch fused alone, 700 / 1000 = 0.70.
        assert_eq!(lines[3], "| lstm | 512 | 200 | 1000.00 | 700.00 | – | 1968.00 | 0.70× | 0.70× | 1.97× |");
        // JAX is faster: 1.5 / 2 = 0.75; no cell loop figure.
        assert_eq!(lines[4], "| gru | 32 | 50 | 2.00 | 3.00 | 1.50 | – | 0.75× | 1.50× | – |");
        assert_eq!(lines[5], "");
        assert_eq!(
            lines[6],
            "Minimum ratio: vs faster of (torch fused, JAX) 0.70× (lstm H=512 T=200); \
             vs torch fused 0.70× (lstm H=512 T=200); vs cell loop 1.97× (lstm H=512 T=200); \
             H ≤ 128 vs torch fused 1.50× (gru H=32 T=50)."
        );
        assert_eq!(lines.len(), 7);

        // Two threads: only ours is known, every peer and ratio is missing.
        let table = render_peer_table(&rows[2..], 2, &ours, &peers);
        assert_eq!(table.lines().nth(2), Some("| gru | 32 | 50 | 99.00 | – | – | – | – | – | – |"));
        assert!(table.ends_with(
            "Minimum ratio: vs faster of (torch fused, JAX) –; vs torch fused –; vs cell loop –; \
             H ≤ 128 vs torch fused –.\n"
        ));
        Ok(())
    }

    #[test]
    fn plain_table_keeps_ms_and_gflops() {
        let rows = [row("rnn_tanh", 1, 32, 50)];
        let mut ours = Ours::new();
        // FLOP = 3 · 2 · 32 · 50 · 2 · 32 · 1 · 32 = 19_660_800; at 1.5 ms → 13.1 GFLOP/s.
        ours.insert(key("rnn_tanh", 32, 50, 1), 1.5);
        let table = render_plain(&rows, &[1, 2], &ours);
        assert_eq!(
            table,
            "| cell | H | T | 1 thread(s): ms (GFLOP/s) | 2 thread(s): ms (GFLOP/s) |\n\
             |---|---:|---:|---:|---:|\n\
             | rnn_tanh | 32 | 50 | 1.50 (13) | – |\n"
        );
    }
}
