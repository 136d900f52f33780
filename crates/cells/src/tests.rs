//! Gradient checks, hand-derived values and error cases of every cell and the unroller.

use ndarray::{Array2, Array3, ArrayD, Axis, s};
use rand::Rng as _;
use rnnlab_activations::ActivationKind;
use rnnlab_core::{Cell, Error, GradCheck, NamedInput, Parameterized, State, check_fn, seeded_rng};
use rnnlab_init::Init;

use crate::*;

const TOL: f64 = 1e-6;

fn random3(shape: (usize, usize, usize), seed: u64, scale: f64) -> Array3<f64> {
    let mut rng = seeded_rng(seed);
    Array3::from_shape_fn(shape, |_| rng.random_range(-scale..scale))
}

/// Biases random too (zero biases would hide a missing bias gradient).
fn random_biases<C: Parameterized<f64>>(cell: &mut C, seed: u64) {
    let mut rng = seeded_rng(seed);
    cell.visit_params_mut(&mut |name, mut p| {
        if name.starts_with('b') {
            p.value.mapv_inplace(|_| rng.random_range(-0.5..0.5));
        }
    });
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Loss {
    Last,
    Every,
}

/// L = Σ R ⊙ outputs (last step or every step) + Σ Q_l ⊙ final state_l, with fixed random R, Q.
/// Returns the report of a central-difference check over every parameter, x and each h0.
fn check_stack<C: Cell<f64> + Clone>(
    stack: &mut Recurrent<f64, C>,
    t: usize,
    b: usize,
    loss: Loss,
    truncate: Option<usize>,
) -> rnnlab_core::GradCheckReport {
    let i = stack.input_dim();
    let h = stack.hidden_dim();
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
        inputs.push((format!("s0.{l}"), random3((1, b, c.state_width()), 30 + l as u64, 0.8).index_axis_move(Axis(0), 0).into_dyn()));
    }
    // For truncation, the boundary states of the unperturbed run enter each chunk as constants.
    let frozen = truncate.filter(|&k| k < t).map(|k| {
        let x: Array3<f64> = inputs[0].1.clone().into_dimensionality().unwrap();
        let init: Vec<State<f64>> = inputs[1..]
            .iter()
            .enumerate()
            .map(|(l, (_, a))| State::new(names[l], hs[l], a.clone().into_dimensionality().unwrap()).unwrap())
            .collect();
        let fwd = stack.forward(x.view(), Some(&init)).unwrap();
        let boundaries: Vec<Vec<Array2<f64>>> = (0..t)
            .step_by(k)
            .map(|st| (0..names.len()).map(|l| fwd.cache.states(l).unwrap().index_axis(Axis(0), st).to_owned()).collect())
            .collect();
        (k, boundaries)
    });
    let report = check_fn(&GradCheck::new(), stack, &mut inputs, |stack, inputs| {
        let x: Array3<f64> = inputs[0].1.clone().into_dimensionality().map_err(|e| Error::shape("test", "3-D", e.to_string()))?;
        let init: Vec<State<f64>> = inputs[1..]
            .iter()
            .enumerate()
            .map(|(l, (_, a))| State::new(names[l], hs[l], a.clone().into_dimensionality().unwrap()))
            .collect::<rnnlab_core::Result<_>>()?;
        let fwd = stack.forward(x.view(), Some(&init))?;
        let mut value = match loss {
            Loss::Every => (&fwd.outputs * &r).sum(),
            Loss::Last => (&fwd.outputs.index_axis(Axis(0), t - 1) * &r.index_axis(Axis(0), t - 1)).sum(),
        };
        value += fwd.final_states.iter().zip(&q).map(|(s, q)| (&s.data() * q).sum()).sum::<f64>();
        if let Some((k, boundaries)) = &frozen {
            value = truncated_loss(stack, &x, &init, *k, boundaries, &r, &q, loss)?;
        }
        let last = r.index_axis(Axis(0), t - 1).to_owned();
        let d_out = match loss {
            Loss::Every => OutputGrad::Every(r.view()),
            Loss::Last => OutputGrad::Last(last.view()),
        };
        let d_final: Vec<State<f64>> =
            q.iter().enumerate().map(|(l, q)| State::new(names[l], hs[l], q.clone()).unwrap()).collect();
        let bwd = stack.backward(&fwd.cache, d_out, Some(&d_final), truncate)?;
        let mut grads: Vec<ArrayD<f64>> = vec![bwd.dx.into_dyn()];
        grads.extend(bwd.d_init.into_iter().map(|s| s.into_data().into_dyn()));
        Ok((value, grads))
    })
    .unwrap();
    report
}

/// Loss of the graph with the state detached every k steps: chunk j > 0 starts from the
/// frozen boundary state `boundaries[j]`, a constant, which is what truncation differentiates.
#[allow(clippy::too_many_arguments)]
fn truncated_loss<C: Cell<f64>>(
    stack: &mut Recurrent<f64, C>,
    x: &Array3<f64>,
    init: &[State<f64>],
    k: usize,
    boundaries: &[Vec<Array2<f64>>],
    r: &Array3<f64>,
    q: &[Array2<f64>],
    loss: Loss,
) -> rnnlab_core::Result<f64> {
    let t = x.shape()[0];
    let mut value = 0.0;
    let mut last_states = Vec::new();
    for (j, st) in (0..t).step_by(k).enumerate() {
        let end = (st + k).min(t);
        let chunk_init: Vec<State<f64>> = if j == 0 {
            init.to_vec()
        } else {
            boundaries[j]
                .iter()
                .zip(init)
                .map(|(a, s0)| State::new(&names_of(s0), s0.hidden_dim(), a.clone()))
                .collect::<rnnlab_core::Result<_>>()?
        };
        let fwd = stack.forward(x.slice(s![st..end, .., ..]), Some(&chunk_init))?;
        value += match loss {
            Loss::Every => (&fwd.outputs * &r.slice(s![st..end, .., ..])).sum(),
            Loss::Last if end == t => (&fwd.outputs.index_axis(Axis(0), end - st - 1) * &r.index_axis(Axis(0), t - 1)).sum(),
            Loss::Last => 0.0,
        };
        last_states = fwd.final_states;
    }
    value += last_states.iter().zip(q).map(|(s, q)| (&s.data() * q).sum()).sum::<f64>();
    Ok(value)
}

fn names_of(s: &State<f64>) -> Vec<&str> {
    s.names().iter().map(String::as_str).collect()
}

fn lstm(i: usize, h: usize, seed: u64) -> Lstm<f64> {
    let mut c = LstmConfig::new(i, h).init::<f64>(&mut seeded_rng(seed)).unwrap();
    random_biases(&mut c, seed + 100);
    c
}

fn gru(i: usize, h: usize, v: GruVariant, seed: u64) -> Gru<f64> {
    let mut c = GruConfig::new(i, h).with_variant(v).init::<f64>(&mut seeded_rng(seed)).unwrap();
    random_biases(&mut c, seed + 100);
    c
}

fn rnn(i: usize, h: usize, act: ActivationKind, seed: u64) -> Rnn<f64> {
    let mut c = RnnConfig::new(i, h).with_activation(act).init::<f64>(&mut seeded_rng(seed)).unwrap();
    random_biases(&mut c, seed + 100);
    c
}

fn stack_of<C: Cell<f64>>(make: impl Fn(usize, u64) -> C, n_layers: usize, i: usize, h: usize) -> Recurrent<f64, C> {
    let layers = (0..n_layers).map(|l| make(if l == 0 { i } else { h }, l as u64)).collect();
    Recurrent::new(layers).unwrap()
}

/// Every combination the acceptance asks for: T ∈ {1, 2, 7}, batch ∈ {1, 3}, 1 and 2 layers,
/// loss on the last step and on every step.
fn check_all<C: Cell<f64> + Clone>(label: &str, make: impl Fn(usize, u64) -> C + Copy) {
    let (i, h) = (3, 4);
    for n_layers in [1, 2] {
        for t in [1, 2, 7] {
            for b in [1, 3] {
                for loss in [Loss::Last, Loss::Every] {
                    let mut stack = stack_of(|inp, seed| make(inp, seed), n_layers, i, h);
                    let rep = check_stack(&mut stack, t, b, loss, None);
                    assert!(
                        rep.max_rel_error() <= TOL,
                        "{label}: layers {n_layers}, T {t}, batch {b}, {loss:?}: {rep}"
                    );
                }
            }
        }
    }
}

#[test]
fn lstm_gradients_match_finite_differences() {
    check_all("lstm", |i, s| lstm(i, 4, s));
}

#[test]
fn gru_reset_after_gradients_match_finite_differences() {
    check_all("gru reset-after", |i, s| gru(i, 4, GruVariant::ResetAfter, s));
}

#[test]
fn gru_reset_before_gradients_match_finite_differences() {
    check_all("gru reset-before", |i, s| gru(i, 4, GruVariant::ResetBefore, s));
}

#[test]
fn rnn_gradients_match_finite_differences_for_every_activation() {
    use ActivationKind::*;
    for act in [Tanh, Sigmoid, Relu, LeakyRelu { slope: 0.1 }, Elu { alpha: 1.0 }, Identity, Softsign, Selu, Gelu] {
        check_all(&format!("rnn {act}"), |i, s| rnn(i, 4, act, s));
    }
}

#[test]
fn rnn_gradients_hard_tanh() {
    // Small weights keep every pre-activation inside (−1, 1), away from HardTanh's kinks.
    let make = |i: usize, s: u64| {
        let mut c = RnnConfig::new(i, 4)
            .with_activation(ActivationKind::HardTanh)
            .with_w_ih_init(Init::Uniform { low: -0.1, high: 0.1 })
            .with_w_hh_init(Init::Uniform { low: -0.1, high: 0.1 })
            .init::<f64>(&mut seeded_rng(s))
            .unwrap();
        random_biases(&mut c, s);
        c
    };
    check_all("rnn hard_tanh", make);
}

#[test]
fn truncated_bptt_with_k_at_least_t_is_full_bptt_bit_for_bit() {
    let x = random3((7, 3, 3), 1, 1.0);
    let g = random3((7, 3, 4), 2, 1.0);
    let run = |k: Option<usize>| {
        let mut st = stack_of(|i, s| lstm(i, 4, s), 2, 3, 4);
        let fwd = st.forward(x.view(), None).unwrap();
        let bwd = st.backward(&fwd.cache, OutputGrad::Every(g.view()), None, k).unwrap();
        let mut grads = Vec::new();
        st.visit_params(&mut |_, p| grads.push(p.grad.to_owned()));
        (grads, bwd.dx, bwd.step_grads)
    };
    let full = run(None);
    for k in [7, 8, 1000] {
        let tr = run(Some(k));
        assert_eq!(full.0, tr.0, "k = {k}");
        assert_eq!(full.1, tr.1);
        assert_eq!(full.2, tr.2);
    }
    // The streaming driver with one chunk is the same computation.
    let mut st = stack_of(|i, s| lstm(i, 4, s), 2, 3, 4);
    st.truncated(x.view(), None, 7, |_, _| Ok(g.clone())).unwrap();
    let mut grads = Vec::new();
    st.visit_params(&mut |_, p| grads.push(p.grad.to_owned()));
    assert_eq!(full.0, grads);
}

#[test]
fn truncated_bptt_is_the_gradient_of_the_truncated_graph() {
    for (t, k) in [(7, 3), (7, 1), (6, 2)] {
        for loss in [Loss::Every, Loss::Last] {
            let mut st = stack_of(|i, s| lstm(i, 4, s), 1, 3, 4);
            let rep = check_stack(&mut st, t, 2, loss, Some(k));
            assert!(rep.max_rel_error() <= TOL, "T {t} k {k} {loss:?}: {rep}");
        }
    }
}

#[test]
fn streaming_truncation_equals_in_memory_truncation() {
    let (t, k) = (23, 5);
    let x = random3((t, 2, 3), 5, 1.0);
    let g = random3((t, 2, 4), 6, 1.0);
    let mut a = stack_of(|i, s| gru(i, 4, GruVariant::ResetAfter, s), 2, 3, 4);
    let mut b = a.clone();
    let fwd = a.forward(x.view(), None).unwrap();
    let bwd = a.backward(&fwd.cache, OutputGrad::Every(g.view()), None, Some(k)).unwrap();
    let run = b.truncated(x.view(), None, k, |start, out| Ok(g.slice(s![start..start + out.shape()[0], .., ..]).to_owned())).unwrap();
    assert_eq!(run.n_chunks, 5);
    let mut ga = Vec::new();
    a.visit_params(&mut |_, p| ga.push(p.grad.to_owned()));
    let mut gb = Vec::new();
    b.visit_params(&mut |_, p| gb.push(p.grad.to_owned()));
    for (u, v) in ga.iter().zip(&gb) {
        for (p, q) in u.iter().zip(v) {
            assert!((p - q).abs() <= 1e-12 * (1.0 + p.abs()), "{p} vs {q}");
        }
    }
    let norms = bwd.step_grads[1].norms(0);
    for (p, q) in norms.iter().zip(&run.h_grad_norms[1]) {
        assert!((p - q).abs() <= 1e-12 * (1.0 + p.abs()));
    }
    assert_eq!(run.final_states, fwd.final_states);
}
