//! Times the Jacobian analysis of an LSTM with H = 512, T = 200, B = 1 (f32), default settings:
//! `cargo run --release -p rnnlab-diagnostics --example jacobian_cost` (`BATCH=…` for more rows,
//! `SEED=…` for another model and input; the default, seed 1, is the figure the docs quote).

use std::time::Instant;

use ndarray::Array3;
use rand::Rng as _;
use rnnlab_cells::{LstmConfig, Recurrent};
use rnnlab_diagnostics::{JacobianConfig, jacobian_analysis};

fn main() -> Result<(), rnnlab_core::Error> {
    let (h, t) = (512, 200);
    let b: usize = std::env::var("BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let seed: u64 = std::env::var("SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let mut rng = rnnlab_core::seeded_rng(seed);
    let mut model = Recurrent::new(vec![LstmConfig::new(h, h).init::<f32>(&mut rng)?])?;
    let x = Array3::from_shape_fn((t, b, h), |_| rng.random::<f32>() - 0.5);
    let fwd = model.forward(x.view(), None)?;
    let start = Instant::now();
    let reports = jacobian_analysis(&model, &fwd.cache, None, &JacobianConfig::default())?;
    let secs = start.elapsed().as_secs_f64();
    for n in &reports[0].lags {
        println!(
            "lag {:>3}: σ₁ {:.6e} after {} iterations{}",
            n.lag,
            n.sigma_max[0],
            n.iterations,
            if n.converged { "" } else { " (not converged)" }
        );
    }
    println!("jacobian analysis, LSTM H = {h}, T = {t}, B = {b}, f32: {secs:.3} s");
    Ok(())
}
