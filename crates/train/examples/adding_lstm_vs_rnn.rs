//! The adding problem at T = 50 (Le et al. 2015; baseline MSE 1/6 ≈ 0.167): an LSTM (hidden
//! 64, forget bias 1) against a tanh RNN (hidden 64, orthogonal W_hh), both with Adam and
//! global-norm clipping at 1, on the same data stream and the same held-out set of 1,000
//! sequences. The RNN gets the same wall-time budget as the LSTM used (so more steps, as its
//! steps are cheaper).
//!
//! ```text
//! cargo run --release -p rnnlab-train --example adding_lstm_vs_rnn
//! ```
//!
//! Environment overrides: `LSTM_LR` (default 0.01), `RNN_LR` (default 0.001), `STEPS` (LSTM
//! steps, default 3000), `BATCH` (default 64), `SEED` (default 0), `ONLY` (`lstm` or `rnn`).

use std::time::Instant;

use rnnlab_optim::{AdamConfig, ClipConfig};
use rnnlab_tasks::AddingConfig;
use rnnlab_train::{
    CellConfig, Control, EvalMetrics, LstmSpec, ModelConfig, Observer, Progress, RnnSpec, RunSummary, StepMetrics,
    TrainConfig, Trainer,
};

/// Prints progress and stops the run when its wall-time budget is spent.
struct Budget {
    progress: Progress,
    start: Instant,
    seconds: f64,
}

impl Observer for Budget {
    fn on_step(&mut self, m: &StepMetrics) -> Control {
        self.progress.on_step(m);
        if self.start.elapsed().as_secs_f64() > self.seconds { Control::Stop } else { Control::Continue }
    }

    fn on_eval(&mut self, m: &EvalMetrics) -> Control {
        self.progress.on_eval(m)
    }

    fn on_end(&mut self, s: &RunSummary) {
        self.progress.on_end(s);
    }
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn config(cell: CellConfig, lr: f64, steps: u64, batch: usize, seed: u64) -> rnnlab_core::Result<TrainConfig> {
    let task = AddingConfig::new(50);
    let model = ModelConfig::for_task(&task.build()?, 64, cell).with_seed(seed);
    Ok(TrainConfig::new(task.into(), model, AdamConfig::new(lr).into())
        .with_clip(ClipConfig::global_norm(1.0))
        .with_batch_size(batch)
        .with_n_steps(steps)
        .with_eval_every(500)
        .with_eval_batch(1000)
        .with_seed(seed))
}

fn run(label: &str, cfg: TrainConfig, seconds: f64) -> rnnlab_core::Result<RunSummary> {
    println!("== {label}: {}", serde_json::to_string(&cfg).unwrap_or_default());
    let mut trainer = Trainer::<f32>::new(cfg)?;
    let mut observer = Budget { progress: Progress::new(label, 250)?, start: Instant::now(), seconds };
    trainer.run(&mut observer)
}

fn main() -> rnnlab_core::Result<()> {
    let (steps, batch, seed) = (env("STEPS", 3000u64), env("BATCH", 64usize), env("SEED", 0u64));
    let only: String = env("ONLY", String::new());
    let budget = 290.0;
    let mut lstm_time = budget;
    let mut results = Vec::new();
    if only != "rnn" {
        let lstm = LstmSpec::new().with_forget_bias(1.0).into();
        let s = run("lstm", config(lstm, env("LSTM_LR", 0.01), steps, batch, seed)?, budget)?;
        lstm_time = s.wall_time_s;
        results.push(("LSTM", s));
    }
    if only != "lstm" {
        // Same wall time as the LSTM used; the step count is only a cap.
        let rnn = RnnSpec::new().into();
        let s = run("rnn", config(rnn, env("RNN_LR", 0.001), 50 * steps, batch, seed)?, lstm_time)?;
        results.push(("tanh RNN", s));
    }
    println!("\nadding problem, T = 50, hidden 64, baseline MSE {:.4}", 1.0 / 6.0);
    for (name, s) in &results {
        let e = s.final_eval.as_ref();
        println!(
            "{name:>9}: {} steps in {:.1} s; test MSE {:.5} (accuracy |err|² ≤ 0.04: {:.3}); best test MSE {:.5}{}",
            s.steps,
            s.wall_time_s,
            e.map_or(f64::NAN, |e| e.loss),
            e.map_or(f64::NAN, |e| e.accuracy),
            s.best_eval.as_ref().map_or(f64::NAN, |e| e.loss),
            if s.diverged.is_some() { " (diverged)" } else { "" }
        );
    }
    Ok(())
}
