//! Forward + derivative-from-output over 1 M f32 values, one `BenchmarkId` per activation.
//!
//! Each iteration resets two preallocated buffers (`copy_from_slice` of the input and
//! `fill(1)` of the gradient, so repeated products never drift into subnormals), runs
//! `forward_slice` in place, then the backward product: from the output through a precomputed
//! `OutputDerivative`, or from the input for GELU. No allocation per element or per iteration.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rnnlab_activations::ActivationKind;

const N: usize = 1 << 20;

fn forward_backward(c: &mut Criterion) {
    // Inputs spread over (−8, 8), deterministic, built once.
    let input: Vec<f32> = (0..N).map(|i| 8.0 * ((i as f32) * 0.618_034).sin()).collect();
    let mut y = vec![0.0f32; N];
    let mut grad = vec![0.0f32; N];
    let mut group = c.benchmark_group("activation_forward_backward_f32");
    group.throughput(Throughput::Elements(N as u64));
    for kind in ActivationKind::ALL {
        let output_derivative = kind.output_derivative().ok();
        group.bench_with_input(BenchmarkId::from_parameter(kind.name()), &kind, |b, kind| {
            b.iter(|| {
                y.copy_from_slice(&input);
                grad.fill(1.0);
                kind.forward_slice(black_box(&mut y[..]));
                match output_derivative {
                    Some(d) => d.backward(black_box(&y[..]), black_box(&mut grad[..])).expect("equal lengths"),
                    None => kind
                        .backward_from_input(black_box(&input[..]), black_box(&mut grad[..]))
                        .expect("equal lengths"),
                }
                black_box(grad[N / 2])
            });
        });
    }
    group.finish();
}

criterion_group!(benches, forward_backward);
criterion_main!(benches);
