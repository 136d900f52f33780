//! The training step both benchmarks time, and the loop over the shapes: forward over
//! the sequence, MSE of a Linear(H, 1) head on the last output, full backward with the per-step
//! telemetry, SGD update — the step that `bench/peers/torch_bench.py` times for PyTorch
//! (B = 32, I = H, f32).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use ndarray::{Array2, Array3, Axis};
use rnnlab_cells::{BackwardOptions, Linear, LinearConfig, OutputGrad, Recurrent};
use rnnlab_core::{
    Cell, Layer, ParamView, ParamViewMut, Parameterized, seeded_rng, visit_prefixed, visit_prefixed_mut,
};
use rnnlab_optim::{Optimizer, Sgd, SgdConfig};

/// The batch of every benchmark.
const BATCH: usize = 32;

struct Model<C> {
    rnn: Recurrent<f32, C>,
    head: Linear<f32>,
}

impl<C: Cell<f32>> Parameterized<f32> for Model<C> {
    fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, f32>)) {
        visit_prefixed("rnn", &self.rnn, v);
        visit_prefixed("head", &self.head, v);
    }
    fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, f32>)) {
        visit_prefixed_mut("rnn", &mut self.rnn, v);
        visit_prefixed_mut("head", &mut self.head, v);
    }
}

fn train_step<C: Cell<f32>>(m: &mut Model<C>, opt: &mut Sgd<f32>, x: &Array3<f32>, y: &Array2<f32>) -> f32 {
    m.zero_grad();
    let fwd = m.rnn.forward(x.view(), None).expect("valid shapes");
    let last = fwd.outputs.index_axis(Axis(0), x.shape()[0] - 1);
    let (pred, cache) = m.head.forward(last).expect("valid shapes");
    let diff = &pred - y;
    let loss = diff.iter().map(|d| d * d).sum::<f32>() / diff.len() as f32;
    let dpred = diff * (2.0 / y.len() as f32);
    let dlast = m.head.backward(&cache, dpred.view()).expect("valid shapes");
    let bwd = m
        .rnn
        .backward(&fwd.cache, OutputGrad::Last(dlast.view()), BackwardOptions::default().without_input_grad())
        .expect("valid shapes");
    black_box(&bwd.step_grads);
    m.rnn.recycle(fwd.cache);
    m.rnn.recycle_grads(bwd);
    opt.step(m).expect("finite gradients");
    loss
}

fn flops(gates: usize, h: usize, t: usize) -> u64 {
    // 3 × 2·B·T·(I + H)·G·H with I = H (PERFORMANCE.md).
    (3 * 2 * BATCH * t * (2 * h) * gates * h) as u64
}

/// Benchmarks the training step of the cells `make(h, t)` builds, in the group `{name}_{threads}t`,
/// at every H and T of the issue (H ≤ 128 only with `RNNLAB_BENCH_QUICK=1`); `gates` sets the
/// FLOP count of the throughput.
#[allow(dead_code)] // not every bench binary that includes this module calls it
pub(crate) fn bench_cell<C: Cell<f32>>(c: &mut Criterion, name: &str, gates: usize, make: impl Fn(usize, usize) -> C) {
    let quick = std::env::var_os("RNNLAB_BENCH_QUICK").is_some();
    let shapes: Vec<(usize, usize)> = [50, 200]
        .into_iter()
        .flat_map(|t| [32, 128, 256, 512].into_iter().map(move |h| (h, t)))
        .filter(|&(h, _)| !quick || h <= 128)
        .collect();
    bench_cell_at(c, name, gates, &shapes, make);
}

/// [`bench_cell`] at the given `(H, T)` shapes only.
pub(crate) fn bench_cell_at<C: Cell<f32>>(
    c: &mut Criterion,
    name: &str,
    gates: usize,
    shapes: &[(usize, usize)],
    make: impl Fn(usize, usize) -> C,
) {
    let threads = rnnlab_cells::threads();
    let mut group = c.benchmark_group(format!("{name}_{threads}t"));
    group.sample_size(10);
    for &(h, t) in shapes {
        {
            group.throughput(Throughput::Elements(flops(gates, h, t)));
            // Criterion calls the routine once per sample: the model is built at the first call
            // (so that a filtered run only builds what it measures) and kept, so that every
            // sample times steady-state steps (warm buffers, as a training loop runs), not a
            // cold first step with its page faults.
            let mut built = None;
            group.bench_with_input(BenchmarkId::new(format!("T{t}"), h), &h, |bench, &h| {
                let (m, opt, x, y) = built.get_or_insert_with(|| {
                    let mut rng = seeded_rng(0);
                    let rnn = Recurrent::new(vec![make(h, t)]).expect("one layer");
                    let head = LinearConfig::new(h, 1).init(&mut rng).expect("valid sizes");
                    let opt = SgdConfig::new(1e-3).init::<f32>().expect("valid lr");
                    let x =
                        Array3::from_shape_fn((t, BATCH, h), |(a, b, k)| ((a * 31 + b * 7 + k) as f32 * 0.01).sin());
                    let y = Array2::from_shape_fn((BATCH, 1), |(b, _)| (b as f32 * 0.1).cos());
                    (Model { rnn, head }, opt, x, y)
                });
                bench.iter(|| train_step(m, opt, x, y));
            });
        }
    }
    group.finish();
}
