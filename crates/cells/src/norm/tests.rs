//! Acceptance tests of the normalised cells: gradient checks, state-Jacobian products,
//! per-step statistics, evaluation with running statistics, checkpoints and edge cases.

use ndarray::{Array1, Array2, Array3, ArrayD, Axis, array, s};
use rand::Rng as _;
use rnnlab_activations::ActivationKind;
use rnnlab_core::{Cell, Error, GradCheck, NamedInput, Parameterized, State, check_fn, seeded_rng};

use crate::*;

const TOL: f64 = 1e-6;

/// The finite-difference step. With batch 2, batch norm's x̂ = ±d/√(d² + ε) is sharply
/// curved, and the central difference's truncation error (∝ step²) is ~1.3e-6 relative at
/// the default step 1e-5 (measured: 1.3e-4 at 1e-4, 1.1e-5 at 3e-5), ~2e-7 at 3e-6, where
/// rounding error (∝ 1/step) is still below it.
const FD_STEP: f64 = 3e-6;

fn random3(shape: (usize, usize, usize), seed: u64, scale: f64) -> Array3<f64> {
    let mut rng = seeded_rng(seed);
    Array3::from_shape_fn(shape, |_| rng.random_range(-scale..scale))
}

/// Random biases and β's, γ's perturbed around their initial value (so that a missing
/// gradient of any of them shows).
fn randomise<C: Parameterized<f64>>(cell: &mut C, seed: u64) {
    let mut rng = seeded_rng(seed);
    cell.visit_params_mut(&mut |name, mut p| {
        if name.starts_with('b') || name.ends_with(".beta") {
            p.value.mapv_inplace(|_| rng.random_range(-0.5..0.5));
        } else if name.ends_with(".gamma") {
            p.value.mapv_inplace(|v| v + rng.random_range(-0.2..0.3));
        }
    });
}

const PLACEMENTS: [NormPlacement; 2] = [NormPlacement::Full, NormPlacement::InputOnly];

fn norm(kind: NormKind, placement: NormPlacement) -> NormConfig {
    match kind {
        NormKind::Layer => NormConfig::layer(placement),
        // T_max = 3 < T = 5: the later steps share the last statistics
        NormKind::Batch => NormConfig::batch(placement, 3),
    }
}

fn rnn(kind: NormKind, placement: NormPlacement, i: usize, h: usize, seed: u64) -> NormRnn<f64> {
    let cfg = NormRnnConfig::new(RnnConfig::new(i, h), norm(kind, placement));
    let mut c = cfg.init::<f64>(&mut seeded_rng(seed)).unwrap();
    randomise(&mut c, seed + 100);
    c
}

fn lstm(kind: NormKind, placement: NormPlacement, i: usize, h: usize, seed: u64) -> NormLstm<f64> {
    let cfg = NormLstmConfig::new(LstmConfig::new(i, h), norm(kind, placement));
    let mut c = cfg.init::<f64>(&mut seeded_rng(seed)).unwrap();
    randomise(&mut c, seed + 100);
    c
}

fn gru(kind: NormKind, placement: NormPlacement, i: usize, h: usize, seed: u64) -> NormGru<f64> {
    let cfg = NormGruConfig::new(GruConfig::new(i, h), norm(kind, placement));
    let mut c = cfg.init::<f64>(&mut seeded_rng(seed)).unwrap();
    randomise(&mut c, seed + 100);
    c
}

/// L = Σ R ⊙ outputs (every step) + Σ Q_l ⊙ final state_l with fixed random R, Q; a
/// central-difference check over every parameter, x and each initial state (the pattern of
/// `check_stack` in `tests.rs`, without truncation).
fn check_stack<C: Cell<f64>>(stack: &mut Recurrent<f64, C>, t: usize, b: usize) -> rnnlab_core::GradCheckReport {
    let (i, h) = (stack.input_dim(), stack.hidden_dim());
    let r = random3((t, b, h), 11, 1.0);
    let q: Vec<Array2<f64>> = stack
        .layers()
        .iter()
        .enumerate()
        .map(|(l, c)| random3((1, b, c.state_width()), 20 + l as u64, 1.0).index_axis_move(Axis(0), 0))
        .collect();
    let names: Vec<&'static [&'static str]> = stack.layers().iter().map(|c| c.state_names()).collect();
    let hs: Vec<usize> = stack.layers().iter().map(|c| c.hidden_dim()).collect();
    let mut inputs: Vec<NamedInput> = vec![("x".into(), random3((t, b, i), 1, 1.0).into_dyn())];
    for (l, c) in stack.layers().iter().enumerate() {
        inputs.push((
            format!("s0.{l}"),
            random3((1, b, c.state_width()), 30 + l as u64, 0.8).index_axis_move(Axis(0), 0).into_dyn(),
        ));
    }
    check_fn(&GradCheck::new().with_eps(FD_STEP), stack, &mut inputs, |stack, inputs| {
        let x: Array3<f64> =
            inputs[0].1.clone().into_dimensionality().map_err(|e| Error::shape("test", "3-D", e.to_string()))?;
        let init: Vec<State<f64>> = inputs[1..]
            .iter()
            .enumerate()
            .map(|(l, (_, a))| State::new(names[l], hs[l], a.clone().into_dimensionality().unwrap()))
            .collect::<rnnlab_core::Result<_>>()?;
        let fwd = stack.forward(x.view(), Some(&init))?;
        let value = (&fwd.outputs * &r).sum()
            + fwd.final_states.iter().zip(&q).map(|(s, q)| (&s.data() * q).sum()).sum::<f64>();
        let d_final: Vec<State<f64>> =
            q.iter().enumerate().map(|(l, q)| State::new(names[l], hs[l], q.clone()).unwrap()).collect();
        let opts = BackwardOptions::default().with_d_final(&d_final);
        let bwd = stack.backward(&fwd.cache, OutputGrad::Every(r.view()), opts)?;
        let mut grads: Vec<ArrayD<f64>> = vec![bwd.dx.unwrap_or_default().into_dyn()];
        grads.extend(bwd.d_init.into_iter().map(|s| s.into_data().into_dyn()));
        Ok((value, grads))
    })
    .unwrap()
}

/// T ∈ {1, 5}, batch ∈ {2, 4}, both placements, training mode.
fn check_all<C: Cell<f64>>(label: &str, make: impl Fn(NormPlacement, usize, u64) -> C) {
    for placement in PLACEMENTS {
        for t in [1, 5] {
            for b in [2, 4] {
                let mut stack = Recurrent::new(vec![make(placement, 3, 0)]).unwrap();
                let name = stack.layers()[0].name();
                let rep = check_stack(&mut stack, t, b);
                assert!(rep.n_checked > 0);
                assert!(rep.max_rel_error() <= TOL, "{label} ({name}), T {t}, batch {b}: {rep}");
            }
        }
    }
}

#[test]
fn ln_rnn_gradients_match_finite_differences() {
    check_all("ln rnn", |p, i, s| rnn(NormKind::Layer, p, i, 4, s));
}

#[test]
fn bn_rnn_gradients_match_finite_differences() {
    check_all("bn rnn", |p, i, s| rnn(NormKind::Batch, p, i, 4, s));
}

#[test]
fn ln_lstm_gradients_match_finite_differences() {
    check_all("ln lstm", |p, i, s| lstm(NormKind::Layer, p, i, 4, s));
}

#[test]
fn bn_lstm_gradients_match_finite_differences() {
    check_all("bn lstm", |p, i, s| lstm(NormKind::Batch, p, i, 4, s));
}

#[test]
fn ln_gru_gradients_match_finite_differences() {
    check_all("ln gru", |p, i, s| gru(NormKind::Layer, p, i, 4, s));
}

#[test]
fn bn_gru_gradients_match_finite_differences() {
    check_all("bn gru", |p, i, s| gru(NormKind::Batch, p, i, 4, s));
}

#[test]
fn rnn_with_an_activation_whose_derivative_needs_the_input() {
    let make = |p, i, s| {
        let cfg =
            NormRnnConfig::new(RnnConfig::new(i, 4).with_activation(ActivationKind::Gelu), norm(NormKind::Batch, p));
        let mut c = cfg.init::<f64>(&mut seeded_rng(s)).unwrap();
        randomise(&mut c, s + 7);
        c
    };
    check_all("bn rnn gelu", make);
}

#[test]
fn two_layer_stack_gradients_match_finite_differences() {
    let mut stack = Recurrent::new(vec![
        lstm(NormKind::Layer, NormPlacement::Full, 3, 4, 0),
        lstm(NormKind::Layer, NormPlacement::Full, 4, 4, 1),
    ])
    .unwrap();
    let rep = check_stack(&mut stack, 5, 2);
    assert!(rep.max_rel_error() <= TOL, "{rep}");
    let mut stack = Recurrent::new(vec![
        gru(NormKind::Batch, NormPlacement::Full, 3, 4, 0),
        gru(NormKind::Batch, NormPlacement::InputOnly, 4, 4, 1),
    ])
    .unwrap();
    let rep = check_stack(&mut stack, 5, 4);
    assert!(rep.max_rel_error() <= TOL, "{rep}");
}

/// Trains the running statistics on a few batches, then checks in evaluation mode (T = 5 >
/// T_max = 3, so the last steps use the last row).
fn check_eval<C: Cell<f64>>(cell: C) {
    let mut stack = Recurrent::new(vec![cell]).unwrap();
    for k in 0..4 {
        stack.forward(random3((5, 4, 3), 50 + k, 1.5).view(), None).unwrap();
    }
    stack.set_training(false);
    let name = stack.layers()[0].name();
    for b in [1, 3] {
        let rep = check_stack(&mut stack, 5, b);
        assert!(rep.max_rel_error() <= TOL, "{name} eval, batch {b}: {rep}");
    }
}

#[test]
fn eval_mode_gradients_match_finite_differences() {
    for p in PLACEMENTS {
        check_eval(rnn(NormKind::Batch, p, 3, 4, 2));
        check_eval(lstm(NormKind::Batch, p, 3, 4, 2));
        check_eval(gru(NormKind::Batch, p, 3, 4, 2));
        check_eval(lstm(NormKind::Layer, p, 3, 4, 2));
    }
}

/// ⟨u, J v⟩ = ⟨Jᵀ u, v⟩ and J v against central differences of one step (batch 3, so that
/// training-mode batch norm couples the rows).
fn check_jacobian_products<C: Cell<f64>>(cell: C, training: bool) {
    let mut st = Recurrent::new(vec![cell]).unwrap();
    if !training {
        st.forward(random3((2, 5, st.input_dim()), 60, 1.0).view(), None).unwrap();
        st.set_training(false);
    }
    let c = &st.layers()[0];
    let (names, h, sw, i) = (c.state_names(), c.hidden_dim(), c.state_width(), c.input_dim());
    let b = 3;
    let x = random3((1, b, i), 7, 1.0);
    let s0 = random3((1, b, sw), 8, 0.5).index_axis_move(Axis(0), 0);
    let v = random3((1, b, sw), 9, 1.0).index_axis_move(Axis(0), 0);
    let u = random3((1, b, sw), 10, 1.0).index_axis_move(Axis(0), 0);
    let init = State::new(names, h, s0.clone()).unwrap();
    let fwd = st.forward(x.view(), Some(&[init])).unwrap();
    let step = fwd.cache.step_refs(0, 0).unwrap();
    let cell = &st.layers()[0];
    let name = cell.name();
    let mut jv = Array2::zeros((b, sw));
    let mut scratch = vec![0.0; cell.scratch_len(b)];
    cell.jvp_state(step, v.view(), jv.view_mut(), &mut scratch).unwrap();
    let mut jtu = Array2::zeros((b, sw));
    cell.vjp_state(step, u.view(), jtu.view_mut()).unwrap();
    let lhs = (&u * &jv).sum();
    let rhs = (&jtu * &v).sum();
    assert!((lhs - rhs).abs() < 1e-12 * (1.0 + lhs.abs()), "{name}: {lhs} vs {rhs}");
    let eps = 1e-6;
    let mut run = |sign: f64| {
        let init = State::new(names, h, &s0 + &(&v * (sign * eps))).unwrap();
        st.forward(x.view(), Some(&[init])).unwrap().final_states[0].data().to_owned()
    };
    let numeric = (run(1.0) - run(-1.0)) / (2.0 * eps);
    for (a, n) in jv.iter().zip(&numeric) {
        assert!((a - n).abs() <= 1e-7 * (1.0 + a.abs()), "{name} (training {training}): jvp {a} vs numeric {n}");
    }
}

#[test]
fn state_jacobian_products_are_exact() {
    for kind in [NormKind::Layer, NormKind::Batch] {
        for p in PLACEMENTS {
            for training in [true, false] {
                check_jacobian_products(rnn(kind, p, 3, 4, 3), training);
                check_jacobian_products(lstm(kind, p, 3, 4, 3), training);
                check_jacobian_products(gru(kind, p, 3, 4, 3), training);
            }
        }
    }
}

#[test]
fn training_batch_norm_couples_the_rows_of_the_state_jacobian() {
    // Perturbing the state of row 0 moves row 1's next state through the batch statistics.
    let cell = rnn(NormKind::Batch, NormPlacement::Full, 3, 4, 5);
    let st = {
        let mut st = Recurrent::new(vec![cell]).unwrap();
        let fwd = st.forward(random3((1, 2, 3), 1, 1.0).view(), None).unwrap();
        (st, fwd)
    };
    let (st, fwd) = st;
    let step = fwd.cache.step_refs(0, 0).unwrap();
    let mut v = Array2::zeros((2, 4));
    v.row_mut(0).fill(1.0);
    let mut jv = Array2::zeros((2, 4));
    let mut scratch = vec![0.0; st.layers()[0].scratch_len(2)];
    st.layers()[0].jvp_state(step, v.view(), jv.view_mut(), &mut scratch).unwrap();
    assert!(jv.row(1).iter().any(|d| d.abs() > 1e-6), "{jv}");
}

fn w_ih_of<C: Parameterized<f64>>(c: &C) -> Array2<f64> {
    let mut w = None;
    c.visit_params(&mut |n, p| {
        if n == "w_ih" {
            w = Some(p.value.to_owned().into_dimensionality().unwrap());
        }
    });
    w.unwrap()
}

#[test]
fn per_step_statistics_differ_and_later_steps_reuse_the_last() {
    // T_max = 3, T = 5: steps 0, 1 own rows 0, 1; steps 2, 3, 4 all update row 2. For norm_x
    // the batch mean of step t is the mean of W_ih x_t over the batch, so (momentum m = 0.1,
    // rows start at 0): row0 = m·µ0, row1 = m·µ1, row2 = (1−m)·((1−m)·m·µ2 + m·µ3) + m·µ4.
    let cell = lstm(NormKind::Batch, NormPlacement::Full, 3, 4, 9);
    let w = w_ih_of(&cell);
    let x = random3((5, 4, 3), 12, 2.0);
    let mut st = Recurrent::new(vec![cell]).unwrap();
    st.forward(x.view(), None).unwrap();
    let mu: Vec<Array1<f64>> =
        (0..5).map(|t| x.index_axis(Axis(0), t).dot(&w.t()).mean_axis(Axis(0)).unwrap()).collect();
    let m = 0.1;
    let expected =
        [&mu[0] * m, &mu[1] * m, &(&(&(&mu[2] * ((1.0 - m) * m)) + &(&mu[3] * m)) * (1.0 - m)) + &(&mu[4] * m)];
    let c = &st.layers()[0];
    let rm = c.running_mean("norm_x").unwrap();
    assert_eq!(rm.dim(), (3, 16));
    for (k, e) in expected.iter().enumerate() {
        for (a, b) in rm.row(k).iter().zip(e) {
            assert!((a - b).abs() < 1e-12, "row {k}: {a} vs {b}");
        }
    }
    // the unbiased variance of step 0 enters row 0: 0.9·1 + 0.1·var
    let xp0 = x.index_axis(Axis(0), 0).dot(&w.t());
    let var0 = xp0.var_axis(Axis(0), 1.0);
    for (a, v) in c.running_var("norm_x").unwrap().row(0).iter().zip(&var0) {
        assert!((a - (0.9 + 0.1 * v)).abs() < 1e-12);
    }
    // the rows really differ, for every normaliser
    for unit in ["norm_x", "norm_h", "norm_c"] {
        let rm = c.running_mean(unit).unwrap();
        for (a, b) in [(0, 1), (1, 2), (0, 2)] {
            let d: f64 = (&rm.row(a) - &rm.row(b)).iter().map(|v| v.abs()).sum();
            assert!(d > 1e-6, "{unit}: rows {a} and {b} equal");
        }
    }
    assert!(c.running_mean("norm_q").is_none());
    let ln = lstm(NormKind::Layer, NormPlacement::InputOnly, 3, 4, 9);
    assert_eq!(ln.running_mean("norm_x").map(|m| m.dim()), Some((0, 16)));
    assert!(ln.running_mean("norm_h").is_none() && ln.running_var("norm_c").is_none());
}

#[test]
fn eval_after_training_uses_the_running_statistics_by_hand() {
    // BN-RNN (input only), I = H = 1, w_ih = 1, w_hh = 0, b = 0, γ = 0.1, β = 0, T_max = 2.
    // Training on batches [1, 3], [0, 4], [2, 2] (steps 0, 1, 2):
    //   step 0: µ = 2, biased var 1, unbiased 2 → row 0: mean 0.1·2 = 0.2, var 0.9 + 0.2 = 1.1;
    //           h = tanh(0.1·(1 − 2)/√(1 + ε)) for row 0 of the batch
    //   step 1: µ = 2, unbiased var 8 → row 1: mean 0.2, var 0.9 + 0.8 = 1.7
    //   step 2 ≥ T_max updates row 1: µ = 2, var 0 (a constant feature: x̂ = 0, h = tanh(0) = 0)
    //           → mean 0.9·0.2 + 0.1·2 = 0.38, var 0.9·1.7 + 0 = 1.53
    // Evaluation on x = 1 at steps 0, 1, 2:
    //   h_0 = tanh(0.1·(1 − 0.2)/√(1.1 + ε)),  h_1 = h_2 = tanh(0.1·(1 − 0.38)/√(1.53 + ε))
    let norm = NormConfig::batch(NormPlacement::InputOnly, 2);
    let cell =
        NormRnn::from_params(ActivationKind::Tanh, array![[1.0f64]], array![[0.0]], array![0.0], array![0.0], &norm)
            .unwrap();
    let mut st = Recurrent::new(vec![cell]).unwrap();
    let x = Array3::from_shape_vec((3, 2, 1), vec![1.0, 3.0, 0.0, 4.0, 2.0, 2.0]).unwrap();
    let out = st.forward(x.view(), None).unwrap().outputs;
    let eps = 1e-5f64;
    assert!((out[[0, 0, 0]] - (-0.1 / (1.0 + eps).sqrt()).tanh()).abs() < 1e-15);
    assert_eq!([out[[2, 0, 0]], out[[2, 1, 0]]], [0.0, 0.0]);
    let c = &st.layers()[0];
    let (rm, rv) = (c.running_mean("norm_x").unwrap(), c.running_var("norm_x").unwrap());
    assert!((rm[[0, 0]] - 0.2).abs() < 1e-15 && (rv[[0, 0]] - 1.1).abs() < 1e-15);
    assert!((rm[[1, 0]] - 0.38).abs() < 1e-15 && (rv[[1, 0]] - 1.53).abs() < 1e-15);
    st.set_training(false);
    assert!(!st.layers()[0].is_training());
    let before = st.layers()[0].clone();
    let out = st.forward(Array3::ones((3, 1, 1)).view(), None).unwrap().outputs;
    let h0 = (0.1 * 0.8 / (1.1 + eps).sqrt()).tanh();
    let h1 = (0.1 * 0.62 / (1.53 + eps).sqrt()).tanh();
    assert!((out[[0, 0, 0]] - h0).abs() < 1e-15, "{} vs {h0}", out[[0, 0, 0]]);
    assert!((out[[1, 0, 0]] - h1).abs() < 1e-15 && (out[[2, 0, 0]] - h1).abs() < 1e-15);
    assert_eq!(st.layers()[0], before, "evaluation leaves the running statistics alone");
}

#[test]
fn running_statistics_survive_a_json_round_trip_bit_for_bit() {
    let make = |l: usize| lstm(NormKind::Batch, NormPlacement::Full, if l == 0 { 3 } else { 4 }, 4, l as u64);
    let mut st: Recurrent<f64, NormLstm<f64>> = Recurrent::new(vec![make(0), make(1)]).unwrap();
    for k in 0..3 {
        st.forward(random3((4, 5, 3), 70 + k, 1.0).view(), None).unwrap();
    }
    let json = serde_json::to_string(&st).unwrap();
    let mut back: Recurrent<f64, NormLstm<f64>> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, st);
    for (a, b) in st.layers().iter().zip(back.layers()) {
        for unit in ["norm_x", "norm_h", "norm_c"] {
            let (ma, mb) = (a.running_mean(unit).unwrap(), b.running_mean(unit).unwrap());
            assert!(ma.iter().zip(mb).all(|(p, q)| p.to_bits() == q.to_bits()));
            let (va, vb) = (a.running_var(unit).unwrap(), b.running_var(unit).unwrap());
            assert!(va.iter().zip(vb).all(|(p, q)| p.to_bits() == q.to_bits()));
            assert!(ma.iter().any(|v| *v != 0.0), "{unit} was trained");
        }
    }
    st.set_training(false);
    back.set_training(false);
    let x = random3((6, 2, 3), 80, 1.0);
    let (ya, yb) = (st.forward(x.view(), None).unwrap().outputs, back.forward(x.view(), None).unwrap().outputs);
    assert!(ya.iter().zip(&yb).all(|(p, q)| p.to_bits() == q.to_bits()));
    // the training flag is saved too
    let json = serde_json::to_string(&st).unwrap();
    let back: Recurrent<f64, NormLstm<f64>> = serde_json::from_str(&json).unwrap();
    assert!(!back.layers()[0].is_training());
}

#[test]
fn batch_of_one_in_training_is_finite() {
    // With one row, batch norm's variance is 0: x̂ = 0 and N(v) = β, finite through ε. The
    // normalised projections then carry no information about x or h (their gradient is exactly
    // 0), and the running variance is left unchanged (the unbiased variance of one sample is
    // 0/0); the running mean is updated. Layer norm does not care about the batch size.
    let x = random3((4, 1, 3), 90, 1.0);
    let g = random3((4, 1, 4), 91, 1.0);
    let check = |name: &str, fwd: Forward<f64>, bwd: Backward<f64>| {
        assert!(fwd.outputs.iter().all(|v| v.is_finite()), "{name}");
        assert!(bwd.dx.as_ref().is_some_and(|d| d.iter().all(|v| v.is_finite())), "{name}");
        assert!(bwd.d_init.iter().all(|s| s.data().iter().all(|v| v.is_finite())), "{name}");
    };
    for kind in [NormKind::Batch, NormKind::Layer] {
        for p in PLACEMENTS {
            let mut a = Recurrent::new(vec![rnn(kind, p, 3, 4, 1)]).unwrap();
            let fwd = a.forward(x.view(), None).unwrap();
            let bwd = a.backward(&fwd.cache, OutputGrad::Every(g.view()), BackwardOptions::default()).unwrap();
            if kind == NormKind::Batch {
                assert!(bwd.dx.as_ref().unwrap().iter().all(|v| *v == 0.0), "input ignored with one row");
                let c = &a.layers()[0];
                assert!(c.running_var("norm_x").unwrap().iter().all(|v| *v == 1.0));
                assert!(c.running_mean("norm_x").unwrap().iter().any(|v| *v != 0.0));
            }
            check(a.layers()[0].name(), fwd, bwd);
            let mut b = Recurrent::new(vec![lstm(kind, p, 3, 4, 1)]).unwrap();
            let fwd = b.forward(x.view(), None).unwrap();
            let bwd = b.backward(&fwd.cache, OutputGrad::Every(g.view()), BackwardOptions::default()).unwrap();
            check(b.layers()[0].name(), fwd, bwd);
            let mut c = Recurrent::new(vec![gru(kind, p, 3, 4, 1)]).unwrap();
            let fwd = c.forward(x.view(), None).unwrap();
            let bwd = c.backward(&fwd.cache, OutputGrad::Every(g.view()), BackwardOptions::default()).unwrap();
            check(c.layers()[0].name(), fwd, bwd);
        }
    }
}

#[test]
fn constant_features_give_finite_values_and_gradients() {
    // Zero input and zero state: every projection is constant (0) over both the batch and the
    // features, σ² = 0 for layer and batch norm alike: x̂ = 0 and N(v) = β, all finite.
    let x = Array3::zeros((3, 2, 3));
    let g = random3((3, 2, 4), 92, 1.0);
    for kind in [NormKind::Batch, NormKind::Layer] {
        let mut st = Recurrent::new(vec![lstm(kind, NormPlacement::Full, 3, 4, 2)]).unwrap();
        let fwd = st.forward(x.view(), None).unwrap();
        assert!(fwd.outputs.iter().all(|v| v.is_finite()));
        let bwd = st.backward(&fwd.cache, OutputGrad::Every(g.view()), BackwardOptions::default()).unwrap();
        assert!(bwd.dx.unwrap().iter().all(|v| v.is_finite()));
        st.visit_params(&mut |n, p| assert!(p.grad.iter().all(|v| v.is_finite()), "{n}"));
    }
}

#[test]
fn evaluation_beyond_t_max_runs_and_reuses_the_last_statistics() {
    // T_max = 3, evaluation over T = 12. Cell b is cell a with every statistics row replaced
    // by a's row 2; one step of b from a's state s_{t−1} is b's step 0 (row 0 = a's row 2), so
    // it must reproduce a's step t for every t ≥ 2 — steps beyond T_max use row T_max − 1.
    let mut a = Recurrent::new(vec![gru(NormKind::Batch, NormPlacement::Full, 3, 4, 4)]).unwrap();
    a.forward(random3((3, 4, 3), 93, 1.0).view(), None).unwrap();
    a.set_training(false);
    let x = random3((12, 2, 3), 94, 1.0);
    let ya = a.forward(x.view(), None).unwrap().outputs;
    assert!(ya.iter().all(|v| v.is_finite()));
    let mut shifted = serde_json::to_value(a.layers()[0].clone()).unwrap();
    for unit in ["norm_x", "norm_h"] {
        for stat in ["running_mean", "running_var"] {
            let node = if unit == "norm_x" { &mut shifted["proj"]["norm_x"] } else { &mut shifted["proj"]["norm_h"] };
            let data = node[stat]["data"].as_array().unwrap().clone();
            let n = data.len() / 3;
            let row2: Vec<_> = data[2 * n..].to_vec();
            let mut new = row2.clone();
            new.extend(row2.clone());
            new.extend(row2);
            node[stat]["data"] = serde_json::Value::Array(new);
        }
    }
    let b_cell: NormGru<f64> = serde_json::from_value(shifted).unwrap();
    let mut b = Recurrent::new(vec![b_cell]).unwrap();
    let fa = a.forward(x.view(), None).unwrap();
    for t in 2..12 {
        let s_prev = State::new(&["h"], 4, fa.cache.states(0).unwrap().index_axis(Axis(0), t).to_owned()).unwrap();
        let y = b.forward(x.slice(s![t..t + 1, .., ..]), Some(&[s_prev])).unwrap().outputs;
        for (p, q) in y.index_axis(Axis(0), 0).iter().zip(ya.index_axis(Axis(0), t)) {
            assert!((p - q).abs() < 1e-14, "step {t}: {p} vs {q}");
        }
    }
}

#[test]
fn the_mode_of_the_forward_is_kept_for_the_backward() {
    // set_training between forward and backward does not change the gradients: the cache
    // records whether batch statistics were used.
    let x = random3((4, 3, 3), 95, 1.0);
    let g = random3((4, 3, 4), 96, 1.0);
    let run = |switch: bool| {
        let mut st = Recurrent::new(vec![lstm(NormKind::Batch, NormPlacement::Full, 3, 4, 6)]).unwrap();
        let fwd = st.forward(x.view(), None).unwrap();
        if switch {
            st.set_training(false);
        }
        let bwd = st.backward(&fwd.cache, OutputGrad::Every(g.view()), BackwardOptions::default()).unwrap();
        let mut grads = Vec::new();
        st.visit_params(&mut |_, p| grads.push(p.grad.to_owned()));
        (grads, bwd.dx)
    };
    assert_eq!(run(false), run(true));
}

#[test]
fn init_draws_the_plain_weights_then_adds_the_normalisers() {
    let plain = LstmConfig::new(3, 5).init::<f64>(&mut seeded_rng(7)).unwrap();
    let normed = NormLstmConfig::new(LstmConfig::new(3, 5), NormConfig::batch(NormPlacement::Full, 4))
        .init::<f64>(&mut seeded_rng(7))
        .unwrap();
    let mut a = Vec::new();
    plain.visit_params(&mut |n, p| a.push((n.to_string(), p.value.to_owned())));
    let mut b = Vec::new();
    normed.visit_params(&mut |n, p| b.push((n.to_string(), p.value.to_owned())));
    assert_eq!(a[..], b[..4]);
    let names: Vec<&str> = b.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "w_ih",
            "w_hh",
            "b_ih",
            "b_hh",
            "norm_x.gamma",
            "norm_x.beta",
            "norm_h.gamma",
            "norm_h.beta",
            "norm_c.gamma",
            "norm_c.beta"
        ]
    );
    assert!(b[4].1.iter().all(|v| *v == 0.1) && b[5].1.iter().all(|v| *v == 0.0));
    assert_eq!((b[4].1.len(), b[8].1.len()), (20, 5));
    // the same for the other two cells, and layer norm's γ₀ = 1
    let plain = GruConfig::new(3, 5).init::<f64>(&mut seeded_rng(8)).unwrap();
    let normed = NormGruConfig::new(GruConfig::new(3, 5), NormConfig::layer(NormPlacement::InputOnly))
        .init::<f64>(&mut seeded_rng(8))
        .unwrap();
    assert_eq!(w_ih_of(&plain), w_ih_of(&normed));
    assert_eq!(normed.param_names()[4..], ["norm_x.gamma", "norm_x.beta"]);
    let mut g = Vec::new();
    normed.visit_params(&mut |n, p| {
        if n == "norm_x.gamma" {
            g.extend(p.value.iter().copied());
        }
    });
    assert!(g.iter().all(|v| *v == 1.0));
    let plain = RnnConfig::new(3, 5).init::<f64>(&mut seeded_rng(9)).unwrap();
    let normed = NormRnnConfig::new(RnnConfig::new(3, 5), NormConfig::layer(NormPlacement::Full))
        .init::<f64>(&mut seeded_rng(9))
        .unwrap();
    assert_eq!(w_ih_of(&plain), w_ih_of(&normed));
}

#[test]
fn names_of_every_variant() {
    let mut names = Vec::new();
    for kind in [NormKind::Layer, NormKind::Batch] {
        for p in PLACEMENTS {
            names.push(rnn(kind, p, 2, 3, 0).name());
            names.push(lstm(kind, p, 2, 3, 0).name());
            names.push(gru(kind, p, 2, 3, 0).name());
        }
    }
    assert_eq!(
        names,
        [
            "ln_rnn",
            "ln_lstm",
            "ln_gru",
            "ln_rnn_input",
            "ln_lstm_input",
            "ln_gru_input",
            "bn_rnn",
            "bn_lstm",
            "bn_gru",
            "bn_rnn_input",
            "bn_lstm_input",
            "bn_gru_input"
        ]
    );
}

fn err_text<T: std::fmt::Debug>(r: rnnlab_core::Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn error_input_feature_size_mismatch() {
    let mut st = Recurrent::new(vec![lstm(NormKind::Batch, NormPlacement::Full, 3, 4, 0)]).unwrap();
    let e = err_text(st.forward(Array3::zeros((2, 2, 5)).view(), None));
    assert!(e.contains("bn_lstm") && e.contains("input_dim 3"), "{e}");
}

#[test]
fn error_step_buffers_of_the_wrong_width() {
    // Called directly (not through Recurrent), a cell refuses instead of panicking.
    let mut cell = lstm(NormKind::Layer, NormPlacement::Full, 3, 4, 0);
    let (b, p) = (2, cell.proj_dim());
    let mut cache = vec![0.0; cell.cache_len(b)];
    let mut scratch = vec![0.0; cell.scratch_len(b)];
    let (mut xp, prev, mut next) = (Array2::zeros((b, p + 1)), Array2::zeros((b, 8)), Array2::zeros((b, 8)));
    let e = err_text(cell.step(0, xp.view_mut(), prev.view(), next.view_mut(), &mut cache, &mut scratch));
    assert!(e.contains("NormLstm::step") && e.contains("projection"), "{e}");
    let mut xp = Array2::zeros((b, p));
    let e = err_text(cell.step(0, xp.view_mut(), prev.view(), next.view_mut(), &mut cache[1..], &mut scratch));
    assert!(e.contains("cache"), "{e}");
    let mut gru_cell = gru(NormKind::Batch, NormPlacement::InputOnly, 3, 4, 0);
    let mut out = Array2::zeros((5, 12));
    let e = err_text(gru_cell.project_input(Array2::zeros((5, 2)).view(), out.view_mut()));
    assert!(e.contains("input"), "{e}");
    let mut rnn_cell = rnn(NormKind::Batch, NormPlacement::Full, 3, 4, 0);
    let mut scratch = vec![0.0; rnn_cell.scratch_len(b)];
    let mut cache = vec![0.0; rnn_cell.cache_len(b)];
    let e = err_text(rnn_cell.step(
        0,
        Array2::zeros((b, 4)).view_mut(),
        Array2::zeros((b, 5)).view(),
        Array2::zeros((b, 4)).view_mut(),
        &mut cache,
        &mut scratch,
    ));
    assert!(e.contains("state"), "{e}");
    gru_cell.set_training(false);
    assert!(!gru_cell.is_training());
}

#[test]
fn error_parameter_shapes_do_not_fit() {
    let n = NormConfig::layer(NormPlacement::Full);
    let e = err_text(NormLstm::<f64>::from_params(
        Array2::zeros((8, 3)),
        Array2::zeros((8, 3)),
        Array1::zeros(8),
        Array1::zeros(8),
        &n,
    ));
    assert!(e.contains("NormLstm::from_params") && e.contains("4 gate blocks"), "{e}");
    let e = err_text(NormGru::<f64>::from_params(
        Array2::zeros((6, 3)),
        Array2::zeros((6, 2)),
        Array1::zeros(5),
        Array1::zeros(6),
        &n,
    ));
    assert!(e.contains("NormGru::from_params"), "{e}");
    let e = err_text(NormRnn::<f64>::from_params(
        ActivationKind::LeakyRelu { slope: -1.0 },
        Array2::zeros((2, 3)),
        Array2::zeros((2, 2)),
        Array1::zeros(2),
        Array1::zeros(2),
        &n,
    ));
    assert!(e.contains("slope"), "{e}");
}

#[test]
fn error_invalid_norm_config_in_init() {
    let bad = NormConfig::batch(NormPlacement::Full, 0);
    let mut rng = seeded_rng(0);
    assert!(
        err_text(NormLstmConfig::new(LstmConfig::new(3, 4), bad.clone()).init::<f64>(&mut rng)).contains("time_steps")
    );
    assert!(
        err_text(NormRnnConfig::new(RnnConfig::new(3, 4), bad.clone()).init::<f64>(&mut rng)).contains("time_steps")
    );
    assert!(err_text(NormGruConfig::new(GruConfig::new(3, 4), bad).init::<f64>(&mut rng)).contains("time_steps"));
    let bad = NormConfig::layer(NormPlacement::Full).with_eps(-1.0);
    assert!(
        err_text(NormLstm::<f64>::from_params(
            Array2::zeros((4, 1)),
            Array2::zeros((4, 1)),
            Array1::zeros(4),
            Array1::zeros(4),
            &bad
        ))
        .contains("eps")
    );
}

#[test]
fn error_zero_hidden_size() {
    let mut rng = seeded_rng(0);
    let n = NormConfig::layer(NormPlacement::Full);
    assert!(
        err_text(NormLstmConfig::new(LstmConfig::new(3, 0), n.clone()).init::<f32>(&mut rng)).contains("hidden_dim")
    );
    assert!(err_text(NormGruConfig::new(GruConfig::new(0, 3), n.clone()).init::<f32>(&mut rng)).contains("input_dim"));
    assert!(err_text(NormRnnConfig::new(RnnConfig::new(3, 0), n).init::<f32>(&mut rng)).contains("hidden_dim"));
}

#[test]
fn error_reset_before_gru() {
    let cfg = NormGruConfig::new(
        GruConfig::new(3, 4).with_variant(GruVariant::ResetBefore),
        NormConfig::layer(NormPlacement::Full),
    );
    assert!(err_text(cfg.init::<f64>(&mut seeded_rng(0))).contains("reset-after"));
}

#[test]
fn error_corrupt_checkpoint() {
    // A checkpoint whose placement says Full but has no recurrent normaliser: Err, no panic.
    let cell = rnn(NormKind::Layer, NormPlacement::InputOnly, 3, 4, 0);
    let mut json = serde_json::to_value(&cell).unwrap();
    json["norm"]["placement"] = serde_json::Value::String("full".into());
    let bad: NormRnn<f64> = serde_json::from_value(json).unwrap();
    let mut st = Recurrent::new(vec![bad]).unwrap();
    assert!(err_text(st.forward(Array3::zeros((2, 2, 3)).view(), None)).contains("placement"));
}

#[test]
fn f32_matches_f64() {
    let c64 = lstm(NormKind::Batch, NormPlacement::Full, 3, 8, 4);
    let c32: NormLstm<f32> = serde_json::from_str(&serde_json::to_string(&c64).unwrap()).unwrap();
    let x = random3((20, 4, 3), 1, 2.0);
    let mut a = Recurrent::new(vec![c64]).unwrap();
    let mut b = Recurrent::new(vec![c32]).unwrap();
    let y64 = a.forward(x.view(), None).unwrap().outputs;
    let y32 = b.forward(x.mapv(|v| v as f32).view(), None).unwrap().outputs;
    for (p, q) in y64.iter().zip(&y32) {
        assert!((p - f64::from(*q)).abs() < 1e-4, "{p} vs {q}");
    }
}
