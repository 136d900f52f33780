//! A cell rnnlab does not ship — IndRNN (Li et al. 2018, "Independently Recurrent Neural
//! Network") — written against the public API only, through the `SimpleCell` trait: one step
//! forward and its vector–Jacobian product on plain arrays. With no other code it gets BPTT
//! through the unroller, stacking, the f64 gradient check, the stock trainer, checkpoints and
//! the diagnostics, and it runs in the comparison suite from a one-entry grid.
//!
//! ```text
//! cargo run --release -p rnnlab --example custom_cell
//! ```
//!
//! Trains a two-layer ReLU IndRNN on the adding problem at T = 50 (baseline MSE 1/6): 1500
//! steps in a release build, 60 in a debug build (what `cargo test` runs); `STEPS` overrides.

use rnnlab::ndarray::{Array1, Array2, ArrayView2, Axis, Ix1, Ix2};
use rnnlab::prelude::*;

/// IndRNN: h_t = φ(W x_t + u ⊙ h_{t−1} + b). Each unit has one recurrent weight, so
/// ∂h_t/∂h_{t−1} = diag(φ′(a_t) ⊙ u): with ReLU and 0 ≤ u ≤ 1 the gradient through an active
/// unit is multiplied by u per step, never more.
#[derive(Clone, Debug)]
struct IndRnn<F: Float, A> {
    act: A,
    w: Param<F, Ix2>, // [H, I]
    u: Param<F, Ix1>, // [H]
    b: Param<F, Ix1>, // [H]
}

impl<F: Float, A: ActivationFn<F>> IndRnn<F, A> {
    /// W Xavier-uniform, u uniform in [u_low, u_high] (the paper: [0, 1] for ReLU), b = 0.
    fn new(input_dim: usize, hidden_dim: usize, act: A, (u_low, u_high): (f64, f64), rng: &mut Rng) -> Result<Self> {
        let w = Init::XavierUniform { gain: 1.0 }.array2(hidden_dim, input_dim, rng)?;
        let u = Init::Uniform { low: u_low, high: u_high }.array1(hidden_dim, rng)?;
        Ok(Self { act, w: Param::new(w), u: Param::new(u), b: Param::new(Array1::zeros(hidden_dim)) })
    }

    /// `Err(Shape)` before any product that would panic on mismatched shapes.
    fn check(&self, op: &str, x: ArrayView2<'_, F>, prev: ArrayView2<'_, F>) -> Result<()> {
        let (h, i) = self.w.value.dim();
        rnnlab::core::validate::shape(op, "x_t [batch, input_dim]", &[x.nrows(), i], x.shape())?;
        rnnlab::core::validate::shape(op, "h_{t-1} [batch, hidden_dim]", &[x.nrows(), h], prev.shape())
    }

    /// δa = ∂L/∂h_t ⊙ φ′(a_t), from the saved φ′(a_t).
    fn delta(&self, op: &str, s: &SimpleStep<'_, F>, dnext: ArrayView2<'_, F>) -> Result<Array2<F>> {
        self.check(op, s.x, s.prev)?;
        rnnlab::core::validate::shape(op, "∂L/∂h_t", s.prev.shape(), dnext.shape())?;
        Ok(&dnext * &s.saved)
    }
}

impl<F: Float, A: ActivationFn<F>> Parameterized<F> for IndRnn<F, A> {
    fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        v("w_ih", self.w.view());
        v("u", self.u.view());
        v("b", self.b.view());
    }
    fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        v("w_ih", self.w.view_mut());
        v("u", self.u.view_mut());
        v("b", self.b.view_mut());
    }
}

impl<F: Float, A: ActivationFn<F>> SimpleCell<F> for IndRnn<F, A> {
    fn name(&self) -> &'static str {
        "indrnn"
    }
    fn input_dim(&self) -> usize {
        self.w.value.ncols()
    }
    fn hidden_dim(&self) -> usize {
        self.w.value.nrows()
    }
    fn step(&self, x: ArrayView2<'_, F>, prev: ArrayView2<'_, F>) -> Result<Array2<F>> {
        Ok(self.step_saved(x, prev)?.0)
    }
    fn saved_width(&self) -> usize {
        self.hidden_dim() // φ′(a_t)
    }
    fn step_saved(&self, x: ArrayView2<'_, F>, prev: ArrayView2<'_, F>) -> Result<(Array2<F>, Array2<F>)> {
        self.check("IndRnn::step", x, prev)?;
        let a = x.dot(&self.w.value.t()) + &prev * &self.u.value + &self.b.value;
        Ok((a.mapv(|v| self.act.f(v)), a.mapv(|v| self.act.df(v))))
    }
    /// (∂L/∂x_t, ∂L/∂h_{t−1}) = (δa W, δa ⊙ u).
    fn vjp(&self, s: SimpleStep<'_, F>, dnext: ArrayView2<'_, F>) -> Result<(Array2<F>, Array2<F>)> {
        let da = self.delta("IndRnn::vjp", &s, dnext)?;
        Ok((da.dot(&self.w.value), &da * &self.u.value))
    }
    /// ∂L/∂W += δaᵀ x_t, ∂L/∂u += Σ_batch δa ⊙ h_{t−1}, ∂L/∂b += Σ_batch δa.
    fn add_param_grads(&mut self, s: SimpleStep<'_, F>, dnext: ArrayView2<'_, F>) -> Result<()> {
        let da = self.delta("IndRnn::add_param_grads", &s, dnext)?;
        self.w.grad += &da.t().dot(&s.x);
        self.u.grad += &(&da * &s.prev).sum_axis(Axis(0));
        self.b.grad += &da.sum_axis(Axis(0));
        Ok(())
    }
    /// ∂h_t/∂h_{t−1} · v = φ′(a_t) ⊙ u ⊙ v: what the Jacobian analysis of the diagnostics uses.
    fn jvp(&self, s: SimpleStep<'_, F>, v: ArrayView2<'_, F>) -> Result<Option<Array2<F>>> {
        self.check("IndRnn::jvp", s.x, s.prev)?;
        rnnlab::core::validate::shape("IndRnn::jvp", "v", s.prev.shape(), v.shape())?;
        Ok(Some(&(&v * &s.saved) * &self.u.value))
    }
}

fn main() -> Result<()> {
    // 1. BPTT of a two-layer stack against central differences in f64: every parameter, the
    //    input and the initial states. Tanh here: ReLU's kink makes finite differences
    //    unreliable wherever a pre-activation lies within ε of 0.
    let mut rng = seeded_rng(3);
    let layers = vec![
        Simple::new(IndRnn::<f64, _>::new(2, 6, ActivationKind::Tanh, (-1.0, 1.0), &mut rng)?),
        Simple::new(IndRnn::<f64, _>::new(6, 6, ActivationKind::Tanh, (-1.0, 1.0), &mut rng)?),
    ];
    let check = check_recurrent(&mut Recurrent::new(layers)?, 8, 3, 11)?;
    println!("IndRNN BPTT against central differences: {check}");
    assert!(check.max_rel_error() < 1e-6, "{check}");

    // 2. Train a two-layer ReLU IndRNN (u ~ U(0, 1), as the paper) on the adding problem.
    let default_steps = if cfg!(debug_assertions) { 60 } else { 1500 };
    let steps = std::env::var("STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(default_steps);
    let task = AddingConfig::new(50);
    let model = ModelConfig::for_task(&task.build()?, 64, CellConfig::custom("indrnn")).with_n_layers(2);
    let config = TrainConfig::new(task.clone().into(), model.clone(), AdamConfig::new(2e-3).into())
        .with_clip(ClipConfig::global_norm(1.0))
        .with_n_steps(steps)
        .with_eval_every(steps.div_ceil(4));
    let make_cell =
        |i, h, rng: &mut Rng| Ok(Simple::new(IndRnn::<f32, _>::new(i, h, ActivationKind::Relu, (0.0, 1.0), rng)?));
    let mut trainer = Trainer::with_parts(config, model.build_with(make_cell)?, Box::new(task.build()?))?;

    // 3. Diagnostics from the training steps' own passes: at initialisation and halfway.
    let mut diagnostics = DiagnosticsRecorder::new(steps.div_ceil(2))?;
    trainer.run_inspected(&mut Progress::new("indrnn", steps.div_ceil(4))?, &mut diagnostics)?;
    for r in diagnostics.reports() {
        println!("\nstep {}:\n{}", r.step, r.report);
    }

    // 4. A suite run: a one-entry grid naming the cell, run by the suite's own runner (diagnosed
    //    at initialisation, trained, judged against the task's baseline, written as results.json).
    let grid_steps = steps.min(300);
    let json = format!(
        r#"{{"schema": 1, "experiments": [{{"id": "indrnn", "title": "IndRNN on adding, T = 50",
          "claim": "a two-layer ReLU IndRNN trains on the adding problem", "runs": [
          {{"id": "indrnn-t50", "label": "indrnn", "train": true, "probe_batch": 8, "config": {{
            "task": {{"task": "adding", "seq_len": 50}},
            "model": {{"input_dim": 2, "output_dim": 1, "hidden_dim": 64, "n_layers": 2,
                       "cell": {{"kind": "custom", "name": "indrnn"}}, "loss": "mse_last"}},
            "optimizer": {{"kind": "adam", "lr": 0.002}}, "clip": {{"kind": "global_norm", "max_norm": 1.0}},
            "n_steps": {grid_steps}, "batch_size": 32, "eval_batch": 256, "eval_every": {grid_steps}}}}}]}}]}}"#
    );
    let cells = rnnlab::suite::CustomCells::new().with("indrnn", make_cell);
    let grid = rnnlab::suite::Grid::parse_with("custom_cell example", &json, &cells)?;
    let out = std::env::temp_dir().join("rnnlab-custom-cell-suite");
    let results = rnnlab::suite::run_grid_with(&grid, "custom", &rnnlab::suite::Options::new(&out), &(), &cells)?;
    println!("\nsuite run ({grid_steps} steps), results in {}:", out.display());
    for line in results.summary_lines() {
        println!("{line}");
    }
    let m = &results.experiments[0].runs[0].metrics;
    println!(
        "decay factor {:?}, horizon {:?}, final loss {:?} vs baseline {:?}",
        m.decay_factor, m.horizon, m.final_loss, m.baseline_loss
    );
    Ok(())
}
