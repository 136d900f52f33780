//! Times the Jacobian analysis of an LSTM with H = 512, T = 200, B = 1 (f32), default settings,
//! for the models and inputs of seeds 1..=10:
//! `cargo run --release -p rnnlab-diagnostics --example jacobian_cost`. Prints each seed's
//! time and the min / median / max; `SEED=…` runs one seed and prints its lags too,
//! `BATCH=…` sets the rows, `TOL=…` the stopping tolerance (default
//! [`JacobianConfig::default`]'s).

use std::time::Instant;

use ndarray::Array3;
use rand::Rng as _;
use rnnlab_cells::{LstmConfig, Recurrent};
use rnnlab_diagnostics::{JacobianConfig, JacobianReport, jacobian_analysis};

const H: usize = 512;
const T: usize = 200;

/// The analysis of seed `seed`'s model and input, and its wall time in seconds (the forward
/// pass not included).
fn run(seed: u64, b: usize, cfg: &JacobianConfig) -> Result<(Vec<JacobianReport>, f64), rnnlab_core::Error> {
    let mut rng = rnnlab_core::seeded_rng(seed);
    let mut model = Recurrent::new(vec![LstmConfig::new(H, H).init::<f32>(&mut rng)?])?;
    let x = Array3::from_shape_fn((T, b, H), |_| rng.random::<f32>() - 0.5);
    let fwd = model.forward(x.view(), None)?;
    let start = Instant::now();
    let reports = jacobian_analysis(&model, &fwd.cache, None, cfg)?;
    Ok((reports, start.elapsed().as_secs_f64()))
}

fn main() -> Result<(), rnnlab_core::Error> {
    let var = |name: &str| std::env::var(name).ok();
    let b: usize = var("BATCH").and_then(|v| v.parse().ok()).unwrap_or(1);
    let mut cfg = JacobianConfig::default();
    if let Some(tol) = var("TOL").and_then(|v| v.parse().ok()) {
        cfg.tol = tol;
    }
    let one: Option<u64> = var("SEED").and_then(|v| v.parse().ok());
    let seeds: Vec<u64> = match one {
        Some(s) => vec![s],
        None => (1..=10).collect(),
    };
    let mut times = Vec::with_capacity(seeds.len());
    for &seed in &seeds {
        let (reports, secs) = run(seed, b, &cfg)?;
        let lags = &reports[0].lags;
        if one.is_some() {
            for n in lags {
                println!(
                    "lag {:>3}: σ₁ {:.6e} after {} iterations{}",
                    n.lag,
                    n.sigma_max[0],
                    n.iterations,
                    if n.converged { "" } else { " (not converged)" }
                );
            }
        }
        let all = lags.iter().all(|n| n.converged);
        println!(
            "seed {seed:>2}: jacobian analysis, LSTM H = {H}, T = {T}, B = {b}, f32: {secs:.3} s{}",
            if all { "" } else { " (some lag not converged)" }
        );
        times.push(secs);
    }
    times.sort_by(f64::total_cmp);
    if times.len() > 1 {
        let n = times.len();
        let median = if n % 2 == 1 { times[n / 2] } else { 0.5 * (times[n / 2 - 1] + times[n / 2]) };
        println!("{n} seeds: min {:.3} s, median {median:.3} s, max {:.3} s", times[0], times[n - 1]);
    }
    Ok(())
}
