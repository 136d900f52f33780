//! Train an LSTM on the adding problem (T = 50, baseline MSE 1/6) and diagnose its gradient
//! flow before and after, in about thirty lines.
//!
//! ```text
//! cargo run --release -p rnnlab --example train_adding
//! ```
//!
//! 1500 steps in a release build; 200 in a debug build (what `cargo test` runs); `STEPS`
//! overrides both.

use rnnlab::ndarray::{Array2, s};
use rnnlab::prelude::*;

fn main() -> Result<()> {
    let default_steps = if cfg!(debug_assertions) { 200 } else { 1500 };
    let steps = std::env::var("STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(default_steps);

    let task = AddingConfig::new(50);
    let model = ModelConfig::for_task(&task.build()?, 32, CellConfig::lstm());
    let config = TrainConfig::new(task.into(), model, AdamConfig::new(1e-2).into())
        .with_clip(ClipConfig::global_norm(1.0))
        .with_n_steps(steps)
        .with_eval_every(steps.div_ceil(3));
    let mut trainer = Trainer::<f32>::new(config)?;
    let mut at_init = DiagnosticsRecorder::new(steps)?; // one report: step 0, at initialisation
    let summary = trainer.run_inspected(&mut Progress::new("lstm", steps.div_ceil(3))?, &mut at_init)?;
    println!("\nat initialisation:\n{}", at_init.reports()[0].report); // Progress printed the summary

    // The trained model on 16 held-out sequences. For a last-step MSE the loss gradient at h_{T−1}
    // is, per example, a multiple of the read-out's weight row, so probing with that row gives
    // the per-example relative curves of the loss itself.
    let inputs = trainer.eval_set().inputs.slice(s![.., ..16, ..]).to_owned();
    let w = trainer.model().get_param("head.weight")?; // [1, H]
    let g = Array2::from_shape_fn((inputs.dim().1, w.len()), |(_, j)| w[[0, j]]);
    let rnn = trainer.model_mut().rnn_mut().as_unidirectional_mut();
    let rnn = rnn.ok_or_else(|| Error::config("train_adding", "the model is bidirectional"))?;
    let trained = diagnose(rnn, inputs.view(), OutputGrad::Last(g.view()), &DiagnoseConfig::new())?;
    println!("after {} steps:\n{trained}", summary.steps);
    Ok(())
}
