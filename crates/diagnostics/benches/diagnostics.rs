//! The cost of recording gradient flow during training: `gradient_flow` from an existing
//! backward pass, beside the forward + backward pass it reads (LSTM, H = 128, T = 50, B = 32,
//! I = H, f32, loss on the last step). The overhead of recording every step is the ratio of
//! the two; run with `RNNLAB_THREADS=1` for the 1-thread figure. And the Jacobian
//! analysis of an LSTM with H = 512, T = 200, B = 1 (f32, default lags and tolerance), the
//! `jacobian_cost` example's seed 1.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array2, Array3};
use rand::Rng as _;
use rnnlab_cells::{BackwardOptions, LstmConfig, OutputGrad, Recurrent};
use rnnlab_core::seeded_rng;
use rnnlab_diagnostics::{FlowConfig, JacobianConfig, gradient_flow, jacobian_analysis};

const H: usize = 128;
const T: usize = 50;
const B: usize = 32;

fn flow(c: &mut Criterion) {
    let mut rng = seeded_rng(1);
    let cell = LstmConfig::new(H, H).init::<f32>(&mut rng).expect("valid sizes");
    let mut model = Recurrent::new(vec![cell]).expect("one layer");
    let x = Array3::from_shape_fn((T, B, H), |_| rng.random::<f32>() - 0.5);
    let g = Array2::from_shape_fn((B, H), |_| rng.random::<f32>() - 0.5);
    let opts = BackwardOptions::default().without_input_grad();
    let cfg = FlowConfig::default();
    let mut group = c.benchmark_group("gradient_flow");
    group.throughput(Throughput::Elements((T * B) as u64));
    let id = format!("lstm_h{H}_t{T}_b{B}");
    group.bench_function(BenchmarkId::new("forward_backward", &id), |b| {
        b.iter(|| {
            let fwd = model.forward(x.view(), None).expect("valid shapes");
            let bwd = model.backward(&fwd.cache, OutputGrad::Last(g.view()), opts).expect("valid shapes");
            black_box(&bwd.step_grads);
            model.recycle(fwd.cache);
            model.recycle_grads(bwd);
        })
    });
    let fwd = model.forward(x.view(), None).expect("valid shapes");
    let bwd = model.backward(&fwd.cache, OutputGrad::Last(g.view()), opts).expect("valid shapes");
    group.bench_function(BenchmarkId::new("record_flow", &id), |b| {
        b.iter(|| black_box(gradient_flow(&model, &fwd.cache, &bwd, &cfg).expect("finite gradients")))
    });
    group.finish();
}

fn jacobian(c: &mut Criterion) {
    let (h, t) = (512, 200);
    let mut rng = seeded_rng(1);
    let cell = LstmConfig::new(h, h).init::<f32>(&mut rng).expect("valid sizes");
    let mut model = Recurrent::new(vec![cell]).expect("one layer");
    let x = Array3::from_shape_fn((t, 1, h), |_| rng.random::<f32>() - 0.5);
    let fwd = model.forward(x.view(), None).expect("valid shapes");
    let cfg = JacobianConfig::default();
    let mut group = c.benchmark_group("jacobian_analysis");
    group.sample_size(10);
    group.throughput(Throughput::Elements(t as u64));
    group.bench_function(BenchmarkId::new("default_lags", format!("lstm_h{h}_t{t}_b1")), |b| {
        b.iter(|| black_box(jacobian_analysis(&model, &fwd.cache, None, &cfg).expect("finite products")))
    });
    group.finish();
}

criterion_group!(benches, flow, jacobian);
criterion_main!(benches);
