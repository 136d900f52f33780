//! What the simple-cell path costs: the same tanh RNN as the hand-split `Rnn` and as a
//! `SimpleRnn` through the `Simple` adapter (per-step ndarray products, allocated results), one
//! training step each (forward, MSE head on the last output, backward with telemetry, SGD) at
//! B = 32, I = H. Compare the two groups' medians at the same shape:
//!
//! ```text
//! RNNLAB_THREADS=1 cargo bench -p rnnlab-cells --bench simple
//! ```

mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use rnnlab_activations::ActivationKind;
use rnnlab_cells::{RnnConfig, SimpleRnn};
use rnnlab_core::{Simple, seeded_rng};

use common::bench_cell_at;

const SHAPES: [(usize, usize); 2] = [(32, 50), (128, 50)];

fn simple(c: &mut Criterion) {
    bench_cell_at(c, "rnn_tanh", 1, &SHAPES, |h, _| {
        RnnConfig::new(h, h).init(&mut seeded_rng(1)).expect("valid sizes")
    });
    bench_cell_at(c, "simple_rnn_tanh", 1, &SHAPES, |h, _| {
        Simple::new(
            SimpleRnn::init(&RnnConfig::new(h, h), ActivationKind::Tanh, &mut seeded_rng(1)).expect("valid sizes"),
        )
    });
}

criterion_group!(benches, simple);
criterion_main!(benches);
