//! A new activation in the Elman RNN: SiLU (swish, Elfwing et al. 2018; Ramachandran et al.
//! 2017), f(x) = x·σ(x), f′(x) = σ(x)·(1 + x·(1 − σ(x))), which rnnlab does not ship. It goes
//! into `SimpleRnn<F, A>` through the `ActivationFn` trait; the cell then gets BPTT, the
//! gradient check, the trainer and the diagnostics with no other code.
//!
//! ```text
//! cargo run --release -p rnnlab --example custom_activation
//! ```
//!
//! 1000 training steps in a release build, 200 in a debug build (what `cargo test` runs);
//! `STEPS` overrides both.

use rnnlab::prelude::*;

/// SiLU. `df` takes the input x (as every `ActivationFn` does), so the cell saves f′(a_t) in
/// its forward pass and its backward needs no recomputation.
#[derive(Clone, Copy, Debug)]
struct Silu;

impl<F: Float> ActivationFn<F> for Silu {
    fn name(&self) -> &'static str {
        "silu"
    }
    fn f(&self, x: F) -> F {
        x * sigmoid(x)
    }
    fn df(&self, x: F) -> F {
        let s = sigmoid(x);
        s * (F::one() + x * (F::one() - s))
    }
}

/// σ(x) without overflow: e^x is only taken for x < 0.
fn sigmoid<F: Float>(x: F) -> F {
    if x >= F::zero() {
        F::one() / (F::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (F::one() + e)
    }
}

fn main() -> Result<()> {
    // 1. f′ against a central difference of f, in f64, including far into both tails.
    let mut worst: f64 = 0.0;
    for x in [-40.0, -6.0, -1.5, -0.3, 0.0, 0.7, 2.0, 9.0, 40.0] {
        let h = 1e-6;
        let numeric = (Silu.f(x + h) - Silu.f(x - h)) / (2.0 * h);
        let analytic: f64 = Silu.df(x);
        worst = worst.max((analytic - numeric).abs() / numeric.abs().max(1e-3));
    }
    println!("f′ against central differences: worst relative error {worst:.1e}");
    assert!(worst < 1e-7, "SiLU's derivative is wrong: {worst:e}");

    // 2. The whole two-layer recurrent net's backward pass against central differences: every
    //    parameter, the input and the initial states, 6 steps, batch 3.
    let mut rng = seeded_rng(1);
    let layers = vec![
        Simple::new(SimpleRnn::<f64, _>::init(&RnnConfig::new(2, 5), Silu, &mut rng)?),
        Simple::new(SimpleRnn::<f64, _>::init(&RnnConfig::new(5, 5), Silu, &mut rng)?),
    ];
    let mut net = Recurrent::new(layers)?;
    let check = check_recurrent(&mut net, 6, 3, 7)?;
    println!("BPTT against central differences: {check}");
    assert!(check.max_rel_error() < 1e-6, "{check}");

    // 3. Train a SiLU RNN on the adding problem (T = 30, baseline MSE 1/6) with the stock trainer,
    //    with a diagnostics report at initialisation and at the middle of the run.
    let default_steps = if cfg!(debug_assertions) { 200 } else { 1000 };
    let steps = std::env::var("STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(default_steps);
    let task = AddingConfig::new(30);
    let model = ModelConfig::for_task(&task.build()?, 32, CellConfig::custom("simple_rnn"));
    let config = TrainConfig::new(task.clone().into(), model.clone(), AdamConfig::new(2e-3).into())
        .with_clip(ClipConfig::global_norm(1.0))
        .with_n_steps(steps)
        .with_eval_every(steps.div_ceil(4));
    // RnnConfig's initialisers: Xavier-uniform w_ih, orthogonal w_hh, zero biases.
    let net =
        model.build_with(|i, h, rng| Ok(Simple::new(SimpleRnn::<f32, _>::init(&RnnConfig::new(i, h), Silu, rng)?)))?;
    let mut trainer = Trainer::with_parts(config, net, Box::new(task.build()?))?;
    let mut diagnostics = DiagnosticsRecorder::new(steps.div_ceil(2))?;
    trainer.run_inspected(&mut Progress::new("silu rnn", steps.div_ceil(4))?, &mut diagnostics)?;
    for r in diagnostics.reports() {
        println!("\nstep {}:\n{}", r.step, r.report);
    }
    Ok(())
}
