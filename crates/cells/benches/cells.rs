//! One training step per cell: forward over the sequence, MSE of a Linear(H, 1) head on the
//! last output, full backward with the per-step telemetry, SGD update — the step that
//! `bench/peers/torch_bench.py` times for PyTorch (B = 32, I = H, f32).
//!
//! Threads: run with `RNNLAB_THREADS=1` or `=2` (`rnnlab_cells::threads`: the all-step products
//! are cut between threads; results are the same bits for every count).
//! `RNNLAB_BENCH_QUICK=1` limits the shapes to H ≤ 128 for a fast look.

mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use rnnlab_cells::{GruConfig, LstmConfig, RnnConfig};
use rnnlab_core::seeded_rng;

use common::bench_cell;

fn cells(c: &mut Criterion) {
    bench_cell(c, "lstm", 4, |h, _| LstmConfig::new(h, h).init(&mut seeded_rng(1)).expect("valid sizes"));
    bench_cell(c, "gru", 3, |h, _| GruConfig::new(h, h).init(&mut seeded_rng(1)).expect("valid sizes"));
    bench_cell(c, "rnn_tanh", 1, |h, _| RnnConfig::new(h, h).init(&mut seeded_rng(1)).expect("valid sizes"));
}

criterion_group!(benches, cells);
criterion_main!(benches);
