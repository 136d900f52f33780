//! One training step of the normalised LSTMs — the step of `benches/cells.rs` (forward over the
//! sequence, MSE of a Linear(H, 1) head on the last output, full backward with the per-step
//! telemetry, SGD update; B = 32, I = H, f32) — for LN-LSTM and BN-LSTM (Full placement, BN
//! with statistics for every step, T_max = T). Compare with the `lstm_*` group of
//! `benches/cells.rs` run in the same sitting for the overhead of the normalisation.
//!
//! Threads: run with `RNNLAB_THREADS=1` or `=2` (`rnnlab_cells::threads`).
//! `RNNLAB_BENCH_QUICK=1` limits the shapes to H ≤ 128 for a fast look.

mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use rnnlab_cells::{LstmConfig, NormConfig, NormLstmConfig, NormPlacement};
use rnnlab_core::seeded_rng;

use common::bench_cell;

fn norm_cells(c: &mut Criterion) {
    bench_cell(c, "ln_lstm", 4, |h, _| {
        NormLstmConfig::new(LstmConfig::new(h, h), NormConfig::layer(NormPlacement::Full))
            .init(&mut seeded_rng(1))
            .expect("valid sizes")
    });
    bench_cell(c, "bn_lstm", 4, |h, t| {
        NormLstmConfig::new(LstmConfig::new(h, h), NormConfig::batch(NormPlacement::Full, t))
            .init(&mut seeded_rng(1))
            .expect("valid sizes")
    });
}

criterion_group!(benches, norm_cells);
criterion_main!(benches);
