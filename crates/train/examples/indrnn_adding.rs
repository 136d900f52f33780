//! A cell rnnlab does not ship — IndRNN (Li et al. 2018), defined in `cells/indrnn.rs` against
//! the public traits only — trained by the stock `Trainer` on the adding problem at T = 50
//! (baseline MSE 1/6 ≈ 0.167), with a checkpoint saved and resumed, and its per-step gradient
//! norms from the same backward pass.
//!
//! ```text
//! cargo run --release -p rnnlab-train --example indrnn_adding
//! ```
//!
//! Environment overrides: `STEPS` (default 1500), `SEED` (default 0), `LR` (default 0.002), `LAYERS` (default 2, as the paper).

#[path = "cells/indrnn.rs"]
mod indrnn;

use indrnn::IndRnn;
use rnnlab_activations::ActivationKind;
use rnnlab_core::{Result, Simple};
use rnnlab_optim::{AdamConfig, ClipConfig};
use rnnlab_tasks::AddingConfig;
use rnnlab_train::{CellConfig, LossKind, ModelConfig, Progress, TrainConfig, Trainer};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Layer l of the model: a ReLU IndRNN with recurrent weights u ~ U(0, 1), as in the paper.
fn make_cell(
    input_dim: usize,
    hidden_dim: usize,
    rng: &mut rnnlab_core::Rng,
) -> Result<Simple<IndRnn<f32, ActivationKind>>> {
    Ok(Simple::new(IndRnn::new(input_dim, hidden_dim, ActivationKind::Relu, 0.0, 1.0, rng)?))
}

fn main() -> Result<()> {
    let (steps, seed) = (env("STEPS", 1500u64), env("SEED", 0u64));
    let task = AddingConfig::new(50);
    let model = ModelConfig::new(2, 64, 1, CellConfig::custom("indrnn"), LossKind::MseLast)
        .with_n_layers(env("LAYERS", 2))
        .with_seed(seed);
    let config = TrainConfig::new(task.clone().into(), model.clone(), AdamConfig::new(env("LR", 2e-3)).into())
        .with_clip(ClipConfig::global_norm(1.0))
        .with_batch_size(64)
        .with_n_steps(steps)
        .with_eval_every(250)
        .with_eval_batch(1000)
        .with_telemetry_every(250)
        .with_seed(seed);
    let mut trainer = Trainer::with_parts(config.clone(), model.build_with(make_cell)?, Box::new(task.build()?))?;
    let mut progress = Progress::new("indrnn", 250)?;
    let summary = trainer.run(&mut progress)?;
    println!("{summary}");

    // Save, resume through the same cell maker, and check the weights came back bit for bit.
    let dir = std::env::temp_dir().join(format!("rnnlab-custom-cell-{}", std::process::id()));
    trainer.save_checkpoint(&dir)?;
    let resumed: Trainer<f32, _> =
        Trainer::resume_with(&dir, |cfg| Ok((cfg.model.build_with(make_cell)?, Box::new(cfg.task.build()?) as _)))?;
    let same = resumed.model().state_bits() == trainer.model().state_bits();
    println!("checkpoint at step {}: resumed bit-exactly: {same}", resumed.step());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

trait StateBits {
    fn state_bits(&self) -> Vec<u32>;
}

impl<P: rnnlab_core::Parameterized<f32>> StateBits for P {
    fn state_bits(&self) -> Vec<u32> {
        let mut bits = Vec::new();
        self.visit_params(&mut |_, p| bits.extend(p.value.iter().map(|v| v.to_bits())));
        bits
    }
}
