//! Cells written only against the public traits — IndRNN and the minimal gated unit, the very
//! files `crates/train/examples/cells/` ships — get BPTT, the gradient check, per-step telemetry,
//! the trainer and checkpoints with no other change; and what a careless cell does is an error.

#[path = "../../../crates/train/examples/cells/indrnn.rs"]
mod indrnn;
#[path = "../../../crates/train/examples/cells/mgu.rs"]
mod mgu;

use indrnn::IndRnn;
use mgu::Mgu;
use ndarray::{Array2, Array3, ArrayView2, Axis};
use rnnlab_activations::ActivationKind;
use rnnlab_cells::{BackwardOptions, OutputGrad, Recurrent, check_recurrent};
use rnnlab_core::{
    Cell, Error, ParamView, ParamViewMut, Parameterized, Result, Rng, Simple, SimpleCell, SimpleStep, seeded_rng,
};
use rnnlab_optim::{AdamConfig, ClipConfig};
use rnnlab_tasks::{AddingConfig, ArrayData, DataSource, Targets};
use rnnlab_train::{CellConfig, Control, LossKind, ModelConfig, Observer, Silent, StepMetrics, TrainConfig, Trainer};

fn indrnn(i: usize, h: usize, act: ActivationKind, rng: &mut Rng) -> Result<Simple<IndRnn<f64, ActivationKind>>> {
    Ok(Simple::new(IndRnn::new(i, h, act, -1.0, 1.0, rng)?))
}

#[test]
fn indrnn_and_mgu_gradients_match_central_differences() {
    let mut rng = seeded_rng(1);
    for act in [ActivationKind::Tanh, ActivationKind::Relu] {
        let layers = vec![indrnn(3, 5, act, &mut rng).unwrap(), indrnn(5, 5, act, &mut rng).unwrap()];
        let mut stack = Recurrent::new(layers).unwrap();
        // Biases off zero: a ReLU pre-activation of exactly 0 (a dead input) sits on the kink.
        stack.visit_params_mut(&mut |name, mut p| {
            if name.ends_with(".b") {
                p.value.iter_mut().enumerate().for_each(|(j, v)| *v = 0.1 + 0.05 * j as f64);
            }
        });
        let report = check_recurrent(&mut stack, 6, 2, 11).unwrap();
        assert!(report.max_rel_error() < 1e-6, "indrnn {act}: {report}");
        assert_eq!(report.n_checked, stack.n_params() + 6 * 2 * 3 + 2 * 2 * 5);
    }
    let layers =
        vec![Simple::new(Mgu::<f64>::new(3, 4, &mut rng).unwrap()), Simple::new(Mgu::new(4, 4, &mut rng).unwrap())];
    let mut stack = Recurrent::new(layers).unwrap();
    let report = check_recurrent(&mut stack, 5, 3, 12).unwrap();
    assert!(report.max_rel_error() < 1e-6, "mgu: {report}");
}

/// The adapter's Jacobian–vector product — the cell's own (IndRNN) or derived from VJPs (MGU,
/// which has none) — against central differences of the step itself.
#[test]
fn state_jacobian_products_match_differences_of_the_step() {
    let mut rng = seeded_rng(2);
    jvp_matches_differences(indrnn(3, 4, ActivationKind::Tanh, &mut rng).unwrap());
    jvp_matches_differences(Simple::new(Mgu::<f64>::new(3, 4, &mut rng).unwrap()));
}

fn jvp_matches_differences<C: Cell<f64>>(cell: C) {
    let name = cell.name();
    let mut stack = Recurrent::new(vec![cell]).unwrap();
    let x = Array3::from_shape_fn((3, 2, 3), |(t, b, i)| ((t * 5 + b * 3 + i) as f64 * 0.7).sin());
    let fwd = stack.forward(x.view(), None).unwrap();
    let step = fwd.cache.step_refs(0, 2).unwrap();
    let v = Array2::from_shape_fn((2, 4), |(b, j)| ((b * 4 + j) as f64 * 1.3).cos());
    let mut jv = Array2::zeros((2, 4));
    stack.layers()[0].jvp_state(step, v.view(), jv.view_mut(), &mut []).unwrap();
    // (s(prev + εv) − s(prev − εv)) / 2ε through a one-step run from x_2.
    let (eps, prev) = (1e-6, step.prev.to_owned());
    let xt = x.slice(ndarray::s![2..3, .., ..]).to_owned();
    let mut run = |sign: f64| {
        let init = rnnlab_core::State::new(&["h"], 4, &prev + &(&v * (sign * eps))).unwrap();
        stack.forward(xt.view(), Some(&[init])).unwrap().outputs.index_axis_move(Axis(0), 0)
    };
    let numeric = (run(1.0) - run(-1.0)) / (2.0 * eps);
    let err = (&numeric - &jv).iter().fold(0.0f64, |m, d| m.max(d.abs()));
    assert!(err < 1e-8, "{name}: J·v differs from the difference quotient by {err}");
}

#[test]
fn per_step_telemetry_comes_from_the_backward_pass() {
    let mut rng = seeded_rng(3);
    let mut stack = Recurrent::new(vec![indrnn(2, 6, ActivationKind::Relu, &mut rng).unwrap()]).unwrap();
    let x = Array3::from_shape_fn((20, 4, 2), |(t, b, i)| ((t + b + i) as f64 * 0.3).sin());
    let fwd = stack.forward(x.view(), None).unwrap();
    let g = Array2::ones((4, 6));
    let bwd = stack.backward(&fwd.cache, OutputGrad::Last(g.view()), BackwardOptions::default()).unwrap();
    let norms = bwd.step_grads[0].norms(0);
    assert_eq!(norms.len(), 20);
    // Where the loss enters, ∂L/∂h_{T−1} is the output gradient itself: ‖1‖ over 4 × 6 entries.
    assert!((norms[19] - 24f64.sqrt()).abs() < 1e-12, "{norms:?}");
    assert!(norms.iter().all(|n| n.is_finite()));
    // |u| ≤ 1 and relu′ ∈ {0, 1}: the gradient cannot grow going back in time.
    assert!(norms.windows(2).all(|w| w[0] <= w[1] + 1e-12), "{norms:?}");
}

fn adding_config(steps: u64) -> (TrainConfig, ModelConfig) {
    let task = AddingConfig::new(50);
    let model = ModelConfig::new(2, 32, 1, CellConfig::custom("indrnn"), LossKind::MseLast).with_seed(4);
    let cfg = TrainConfig::new(task.into(), model.clone(), AdamConfig::new(2e-3).into())
        .with_clip(ClipConfig::global_norm(1.0))
        .with_batch_size(32)
        .with_n_steps(steps)
        .with_eval_batch(500)
        .with_eval_every(100)
        .with_seed(5);
    (cfg, model)
}

fn make_f32(i: usize, h: usize, rng: &mut Rng) -> Result<Simple<IndRnn<f32, ActivationKind>>> {
    Ok(Simple::new(IndRnn::new(i, h, ActivationKind::Relu, 0.0, 1.0, rng)?))
}

/// Stops the run after `0` steps.
struct StopAt(u64);

impl Observer for StopAt {
    fn on_step(&mut self, m: &StepMetrics) -> Control {
        if m.step >= self.0 { Control::Stop } else { Control::Continue }
    }
}

fn bits<P: Parameterized<f32>>(p: &P) -> Vec<u32> {
    let mut v = Vec::new();
    p.visit_params(&mut |_, p| v.extend(p.value.iter().map(|x| x.to_bits())));
    v
}

/// The stock trainer on the adding problem at T = 50 with a user's cell: the loss falls below
/// the baseline (the memoryless MSE 1/6), and a checkpoint resumes bit-exactly.
#[test]
fn the_trainer_trains_a_users_cell_and_resumes_it_bit_exactly() {
    let (cfg, model) = adding_config(300);
    let task = AddingConfig::new(50).build().unwrap();
    let mut trainer =
        Trainer::with_parts(cfg.clone(), model.build_with(make_f32).unwrap(), Box::new(task.clone())).unwrap();
    let summary = trainer.run(&mut Silent).unwrap();
    let eval = summary.final_eval.clone().unwrap();
    assert!(summary.diverged.is_none(), "{summary}");
    assert!(eval.loss < 0.95 * summary.baseline_loss, "{summary}");

    // Stop at 150, save, resume, finish: the same bits as the uninterrupted run.
    let dir = std::env::temp_dir().join(format!("rnnlab-it-custom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut first = Trainer::with_parts(cfg.clone(), model.build_with(make_f32).unwrap(), Box::new(task)).unwrap();
    first.run(&mut StopAt(150)).unwrap();
    first.save_checkpoint(&dir).unwrap();
    let mut resumed: Trainer<f32, _> = Trainer::resume_with(&dir, |c| {
        Ok((c.model.build_with(make_f32)?, Box::new(c.task.build()?) as Box<dyn DataSource<f32>>))
    })
    .unwrap();
    assert_eq!(resumed.step(), 150);
    resumed.run(&mut Silent).unwrap();
    assert_eq!(bits(resumed.model()), bits(trainer.model()));
    // A checkpoint of this cell does not load into another custom cell.
    let other = Trainer::<f32, _>::resume_with(&dir, |c| {
        let mut m = c.model.clone();
        m.cell = CellConfig::custom("mgu");
        Ok((m.build_with(|i, h, rng| Ok(Simple::new(Mgu::<f32>::new(i, h, rng)?)))?, Box::new(c.task.build()?) as _))
    });
    assert!(other.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Own data as arrays: a model learns to output the sum of the first feature of a sequence.
#[test]
fn the_trainer_trains_on_arrays() {
    let mut rng = seeded_rng(6);
    use rand::Rng as _;
    let x = Array3::<f32>::from_shape_fn((8, 400, 2), |_| rng.random_range(0.0..1.0));
    let y = Array2::from_shape_fn((400, 1), |(b, _)| (0..8).map(|t| x[[t, b, 0]]).sum::<f32>() / 8.0);
    let data = ArrayData::new("mean-of-first", x, Targets::Regression(y), 1).unwrap();
    let model = ModelConfig::new(2, 16, 1, CellConfig::lstm(), LossKind::MseLast);
    let cfg = TrainConfig::new(data.task_config(), model.clone(), AdamConfig::new(1e-2).into())
        .with_n_steps(300)
        .with_batch_size(32);
    let mut trainer = Trainer::with_parts(cfg.clone(), model.build::<f32>().unwrap(), Box::new(data.clone())).unwrap();
    let s = trainer.run(&mut Silent).unwrap();
    let eval = s.final_eval.clone().unwrap();
    assert!(eval.loss < 0.2 * s.baseline_loss, "{s}");
    // The config must describe the data: another sequence length is refused.
    let mut wrong = cfg.clone();
    if let rnnlab_tasks::TaskConfig::Data(spec) = &mut wrong.task {
        spec.seq_len = 9;
    }
    let e = Trainer::with_parts(wrong, model.build::<f32>().unwrap(), Box::new(data)).unwrap_err();
    assert!(matches!(e, Error::Config { .. }) && e.to_string().contains("seq_len: 9"), "{e}");
    // A data config cannot build itself.
    assert!(Trainer::<f32>::new(cfg).is_err());
}

/// A cell that returns what it should not.
#[derive(Clone, Debug)]
struct Careless {
    wrong_shape: bool,
}

impl Parameterized<f64> for Careless {
    fn visit_params(&self, _: &mut dyn FnMut(&str, ParamView<'_, f64>)) {}
    fn visit_params_mut(&mut self, _: &mut dyn FnMut(&str, ParamViewMut<'_, f64>)) {}
}

impl SimpleCell<f64> for Careless {
    fn name(&self) -> &'static str {
        "careless"
    }
    fn input_dim(&self) -> usize {
        2
    }
    fn hidden_dim(&self) -> usize {
        3
    }
    fn step(&self, x: ArrayView2<'_, f64>, _prev: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        if self.wrong_shape {
            Ok(Array2::zeros((x.nrows(), 2)))
        } else {
            Ok(Array2::from_elem((x.nrows(), 3), f64::NAN))
        }
    }
    fn vjp(&self, s: SimpleStep<'_, f64>, _: ArrayView2<'_, f64>) -> Result<(Array2<f64>, Array2<f64>)> {
        Ok((Array2::zeros(s.x.raw_dim()), Array2::zeros(s.prev.raw_dim())))
    }
    fn add_param_grads(&mut self, _: SimpleStep<'_, f64>, _: ArrayView2<'_, f64>) -> Result<()> {
        Ok(())
    }
}

#[test]
fn a_careless_cell_is_an_error_not_a_panic() {
    let x = Array3::<f64>::ones((4, 2, 2));
    let mut stack = Recurrent::new(vec![Simple::new(Careless { wrong_shape: true })]).unwrap();
    let e = stack.forward(x.view(), None).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }) && e.to_string().contains("careless"), "{e}");
    assert!(e.to_string().contains("[2, 3]") && e.to_string().contains("[2, 2]"), "{e}");
    let mut stack = Recurrent::new(vec![Simple::new(Careless { wrong_shape: false })]).unwrap();
    let e = stack.forward(x.view(), None).unwrap_err();
    assert!(matches!(e, Error::NonFinite { .. }) && e.to_string().contains("step 0"), "{e}");
    // A model config naming one cell and a maker making another.
    let cfg = ModelConfig::new(2, 3, 1, CellConfig::custom("indrnn"), LossKind::MseLast);
    let e = cfg.build_with::<f64, _>(|_, _, _| Ok(Simple::new(Careless { wrong_shape: false }))).unwrap_err();
    assert!(e.to_string().contains("careless"), "{e}");
}
