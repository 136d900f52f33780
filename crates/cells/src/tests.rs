//! Gradient checks, hand-derived values and error cases of every cell and the unroller.

use ndarray::{Array2, Array3, ArrayD, Axis, array, s};
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
        inputs.push((
            format!("s0.{l}"),
            random3((1, b, c.state_width()), 30 + l as u64, 0.8).index_axis_move(Axis(0), 0).into_dyn(),
        ));
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
            .map(|st| {
                (0..names.len()).map(|l| fwd.cache.states(l).unwrap().index_axis(Axis(0), st).to_owned()).collect()
            })
            .collect();
        (k, boundaries)
    });
    check_fn(&GradCheck::new(), stack, &mut inputs, |stack, inputs| {
        let x: Array3<f64> =
            inputs[0].1.clone().into_dimensionality().map_err(|e| Error::shape("test", "3-D", e.to_string()))?;
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
        let mut opts = BackwardOptions::default().with_d_final(&d_final);
        opts.truncate = truncate;
        let bwd = stack.backward(&fwd.cache, d_out, opts)?;
        let mut grads: Vec<ArrayD<f64>> = Vec::new();
        grads.push(bwd.dx.unwrap_or_default().into_dyn());
        grads.extend(bwd.d_init.into_iter().map(|s| s.into_data().into_dyn()));
        Ok((value, grads))
    })
    .unwrap()
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
            Loss::Last if end == t => {
                (&fwd.outputs.index_axis(Axis(0), end - st - 1) * &r.index_axis(Axis(0), t - 1)).sum()
            }
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
                    let mut stack = stack_of(make, n_layers, i, h);
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
        let bwd = st
            .backward(&fwd.cache, OutputGrad::Every(g.view()), BackwardOptions { truncate: k, ..Default::default() })
            .unwrap();
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
    let bwd = a.backward(&fwd.cache, OutputGrad::Every(g.view()), BackwardOptions::default().with_truncate(k)).unwrap();
    let run = b
        .truncated(x.view(), None, k, |start, out| Ok(g.slice(s![start..start + out.shape()[0], .., ..]).to_owned()))
        .unwrap();
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

/// L = Σ_t R_t·h_t + Q·s_{T−1} for a one-layer stack from `init`; returns L and ∂L/∂s_t.
fn loss_and_step_grads<C: Cell<f64>>(
    st: &mut Recurrent<f64, C>,
    x: &Array3<f64>,
    init: &State<f64>,
    r: &Array3<f64>,
    q: &Array2<f64>,
) -> (f64, Option<Array3<f64>>) {
    let c = &st.layers()[0];
    let (names, h) = (c.state_names(), c.hidden_dim());
    let fwd = st.forward(x.view(), Some(std::slice::from_ref(init))).unwrap();
    let value = (&fwd.outputs * r).sum() + (&fwd.final_states[0].data() * q).sum();
    let d_final = State::new(names, h, q.clone()).unwrap();
    let bwd = st
        .backward(&fwd.cache, OutputGrad::Every(r.view()), BackwardOptions::default().with_d_final(&[d_final]))
        .unwrap();
    (value, Some(bwd.step_grads[0].all().to_owned()))
}

/// The telemetry ∂L/∂s_t against central differences: perturb s_t and rerun the rest.
fn check_step_grads<C: Cell<f64>>(mut st: Recurrent<f64, C>) {
    let (t_len, b) = (5, 2);
    let c = &st.layers()[0];
    let (names, h, sw, i) = (c.state_names(), c.hidden_dim(), c.state_width(), c.input_dim());
    let x = random3((t_len, b, i), 3, 1.0);
    let r = random3((t_len, b, h), 4, 1.0);
    let q = random3((1, b, sw), 5, 1.0).index_axis_move(Axis(0), 0);
    let s0 = State::new(names, h, random3((1, b, sw), 6, 0.5).index_axis_move(Axis(0), 0)).unwrap();
    let (_, grads) = loss_and_step_grads(&mut st, &x, &s0, &r, &q);
    let grads = grads.unwrap();
    let fwd = st.forward(x.view(), Some(std::slice::from_ref(&s0))).unwrap();
    let eps = 1e-5;
    for t in 0..t_len {
        let s_t = fwd.cache.states(0).unwrap().index_axis(Axis(0), t + 1).to_owned();
        for bb in 0..b {
            for k in 0..sw {
                // L as a function of s_t: the direct term R_t·h_t plus the rest of the sequence.
                let mut tail = |delta: f64| {
                    let mut s = s_t.clone();
                    s[[bb, k]] += delta;
                    let direct = (&s.slice(s![.., ..h]) * &r.index_axis(Axis(0), t)).sum();
                    if t + 1 == t_len {
                        direct + (&s * &q).sum()
                    } else {
                        let init = State::new(names, h, s).unwrap();
                        let rest = x.slice(s![t + 1.., .., ..]).to_owned();
                        let f = st.forward(rest.view(), Some(&[init])).unwrap();
                        direct
                            + (&f.outputs * &r.slice(s![t + 1.., .., ..])).sum()
                            + (&f.final_states[0].data() * &q).sum()
                    }
                };
                let numeric = (tail(eps) - tail(-eps)) / (2.0 * eps);
                let analytic = grads[[t, bb, k]];
                let rel = (analytic - numeric).abs() / analytic.abs().max(numeric.abs()).max(1e-3);
                assert!(
                    rel <= TOL,
                    "{}: ∂L/∂s_{t}[{bb},{k}] analytic {analytic} numeric {numeric}",
                    st.layers()[0].name()
                );
            }
        }
    }
}

#[test]
fn per_step_state_gradients_match_finite_differences() {
    check_step_grads(stack_of(|i, s| lstm(i, 4, s), 1, 3, 4));
    check_step_grads(stack_of(|i, s| gru(i, 4, GruVariant::ResetAfter, s), 1, 3, 4));
    check_step_grads(stack_of(|i, s| gru(i, 4, GruVariant::ResetBefore, s), 1, 3, 4));
    check_step_grads(stack_of(|i, s| rnn(i, 4, ActivationKind::Tanh, s), 1, 3, 4));
    check_step_grads(stack_of(|i, s| rnn(i, 4, ActivationKind::Gelu, s), 1, 3, 4));
}

/// A linear RNN, h_t = a·h_{t−1} (identity activation, W_hh = a·I, zero input and biases):
/// ∂L/∂h_t = a^(T−1−t)·∂L/∂h_{T−1}, the product of Jacobians written out.
#[test]
fn linear_rnn_step_gradients_are_powers_of_a() {
    let (t_len, h) = (30, 3);
    for a in [0.5f64, 2.0, 0.9, 1.1] {
        let cell = Rnn::from_params(
            ActivationKind::Identity,
            Array2::zeros((h, 1)),
            Array2::eye(h) * a,
            ndarray::Array1::zeros(h),
            ndarray::Array1::zeros(h),
        )
        .unwrap();
        let mut st = Recurrent::new(vec![cell]).unwrap();
        let x = Array3::zeros((t_len, 1, 1));
        let fwd = st.forward(x.view(), None).unwrap();
        let g = array![[1.0, -2.0, 0.25]];
        let bwd = st.backward(&fwd.cache, OutputGrad::Last(g.view()), BackwardOptions::default()).unwrap();
        let dh = bwd.step_grads[0].part(0);
        for t in 0..t_len {
            let expected = &g * a.powi((t_len - 1 - t) as i32);
            for k in 0..h {
                let got = dh[[t, 0, k]];
                if a == 0.5 || a == 2.0 {
                    // Powers of two: every product is exact.
                    assert_eq!(got, expected[[0, k]], "a = {a}, t = {t}");
                } else {
                    assert!((got - expected[[0, k]]).abs() <= 1e-12 * expected[[0, k]].abs(), "a = {a}, t = {t}");
                }
            }
        }
        let norms = bwd.step_grads[0].norms(0);
        assert!(a < 1.0 && norms[0] < norms[t_len - 1] || a > 1.0 && norms[0] > norms[t_len - 1]);
    }
}

/// One-layer, one-unit cells with hand-picked weights; the arithmetic is in the comments.
#[test]
fn rnn_one_step_by_hand() {
    // a = w_ih·x + b_ih + w_hh·h0 + b_hh = 0.5·2 + 0.1 + (−0.3)·1 + 0.2 = 1.0; h = tanh(1.0)
    let cell =
        Rnn::from_params(ActivationKind::Tanh, array![[0.5f64]], array![[-0.3]], array![0.1], array![0.2]).unwrap();
    let mut st = Recurrent::new(vec![cell]).unwrap();
    let h0 = State::new(&["h"], 1, array![[1.0]]).unwrap();
    let fwd = st.forward(Array3::from_elem((1, 1, 1), 2.0).view(), Some(&[h0])).unwrap();
    assert!((fwd.outputs[[0, 0, 0]] - 0.761_594_155_955_764_9).abs() < 1e-15);
}

#[test]
fn lstm_one_step_by_hand() {
    // H = 1, I = 1, x = 1, h0 = 0, c0 = 0.5; w_ih = [1, 2, 3, 4]ᵀ·0.1, w_hh = 0, b = 0 except
    // b_ih_f = 1.  Pre-activations: ĩ = 0.1, f̃ = 0.2 + 1 = 1.2, g̃ = 0.3, õ = 0.4.
    // i = σ(0.1) = 0.52497918747894, f = σ(1.2) = 0.76852478349901, g = tanh(0.3) = 0.29131261245159,
    // o = σ(0.4) = 0.59868766011245.
    // c = f·c0 + i·g = 0.38426239174951 + 0.15293305858720 = 0.53719545033671
    // h = o·tanh(c) = 0.59868766011245 · 0.49086209304914 = 0.29387307792549
    let cell = Lstm::from_params(
        array![[0.1f64], [0.2], [0.3], [0.4]],
        Array2::zeros((4, 1)),
        array![0.0, 1.0, 0.0, 0.0],
        ndarray::Array1::zeros(4),
    )
    .unwrap();
    let mut st = Recurrent::new(vec![cell]).unwrap();
    let s0 = State::new(&["h", "c"], 1, array![[0.0, 0.5]]).unwrap();
    let fwd = st.forward(Array3::ones((1, 1, 1)).view(), Some(&[s0])).unwrap();
    let s = fwd.final_states[0].data();
    assert!((s[[0, 1]] - 0.537_195_450_336_71).abs() < 1e-12, "c = {}", s[[0, 1]]);
    assert!((s[[0, 0]] - 0.293_873_077_925_49).abs() < 1e-12, "h = {}", s[[0, 0]]);
}

#[test]
fn gru_one_step_by_hand() {
    // H = 1, I = 1, x = 1, h0 = 0.5; w_ih = [0.1, 0.2, 0.3]ᵀ, w_hh = [0.4, 0.5, 0.6]ᵀ,
    // b_ih = 0, b_hh = [0, 0, 0.2].
    // r = σ(0.1 + 0.4·0.5) = σ(0.3) = 0.57444251681166, z = σ(0.2 + 0.25) = σ(0.45) = 0.61063923394922
    // reset-after:  n = tanh(0.3 + r·(0.6·0.5 + 0.2)) = tanh(0.3 + 0.28722125840583) = tanh(0.58722125840583)
    //             = 0.52789416513450; h = (1 − z)·n + z·h0 = 0.20554127653050 + 0.30531961697461 = 0.51086089350511
    // reset-before: n = tanh(0.3 + 0.6·(r·0.5) + 0.2) = tanh(0.67233275504350) = 0.58651227183442;
    //             h = (1 − z)·n + z·h0 = 0.22836486745963 + 0.30531961697461 = 0.53368448443424
    for (variant, expected) in
        [(GruVariant::ResetAfter, 0.510_860_893_505_11), (GruVariant::ResetBefore, 0.533_684_484_434_24)]
    {
        let cell = Gru::from_params(
            variant,
            array![[0.1f64], [0.2], [0.3]],
            array![[0.4], [0.5], [0.6]],
            ndarray::Array1::zeros(3),
            array![0.0, 0.0, 0.2],
        )
        .unwrap();
        let mut st = Recurrent::new(vec![cell]).unwrap();
        let h0 = State::new(&["h"], 1, array![[0.5]]).unwrap();
        let fwd = st.forward(Array3::ones((1, 1, 1)).view(), Some(&[h0])).unwrap();
        assert!((fwd.outputs[[0, 0, 0]] - expected).abs() < 1e-12, "{variant:?}: {}", fwd.outputs[[0, 0, 0]]);
    }
}

/// ⟨u, J v⟩ = ⟨Jᵀ u, v⟩ and J v against central differences of one step, for every cell.
fn check_jacobian_products<C: Cell<f64>>(mut st: Recurrent<f64, C>) {
    let c = &st.layers()[0];
    let (names, h, sw, i) = (c.state_names(), c.hidden_dim(), c.state_width(), c.input_dim());
    let b = 2;
    let x = random3((1, b, i), 7, 1.0);
    let s0 = random3((1, b, sw), 8, 0.5).index_axis_move(Axis(0), 0);
    let v = random3((1, b, sw), 9, 1.0).index_axis_move(Axis(0), 0);
    let u = random3((1, b, sw), 10, 1.0).index_axis_move(Axis(0), 0);
    let init = State::new(names, h, s0.clone()).unwrap();
    let fwd = st.forward(x.view(), Some(&[init])).unwrap();
    let step = fwd.cache.step_refs(0, 0).unwrap();
    let cell = &st.layers()[0];
    let mut jv = Array2::zeros((b, sw));
    let mut scratch = vec![0.0; cell.scratch_len(b)];
    cell.jvp_state(step, v.view(), jv.view_mut(), &mut scratch).unwrap();
    let mut jtu = Array2::zeros((b, sw));
    cell.vjp_state(step, u.view(), jtu.view_mut()).unwrap();
    let lhs = (&u * &jv).sum();
    let rhs = (&jtu * &v).sum();
    assert!((lhs - rhs).abs() < 1e-12 * (1.0 + lhs.abs()), "{}: {lhs} vs {rhs}", cell.name());
    let eps = 1e-6;
    let mut run = |sign: f64| {
        let init = State::new(names, h, &s0 + &(&v * (sign * eps))).unwrap();
        st.forward(x.view(), Some(&[init])).unwrap().final_states[0].data().to_owned()
    };
    let numeric = (run(1.0) - run(-1.0)) / (2.0 * eps);
    for (a, n) in jv.iter().zip(&numeric) {
        assert!((a - n).abs() <= 1e-7 * (1.0 + a.abs()), "jvp {a} vs numeric {n}");
    }
}

#[test]
fn state_jacobian_products_are_consistent() {
    check_jacobian_products(stack_of(|i, s| lstm(i, 4, s), 1, 3, 4));
    check_jacobian_products(stack_of(|i, s| gru(i, 4, GruVariant::ResetAfter, s), 1, 3, 4));
    check_jacobian_products(stack_of(|i, s| gru(i, 4, GruVariant::ResetBefore, s), 1, 3, 4));
    for act in [ActivationKind::Tanh, ActivationKind::Relu, ActivationKind::Gelu] {
        check_jacobian_products(stack_of(|i, s| rnn(i, 4, act, s), 1, 3, 4));
    }
}

#[test]
fn linear_gradients_match_finite_differences() {
    let mut lin = LinearConfig::new(4, 3)
        .with_bias_init(Init::Uniform { low: -1.0, high: 1.0 })
        .init::<f64>(&mut seeded_rng(3))
        .unwrap();
    let x = random3((1, 5, 4), 4, 1.0).index_axis_move(Axis(0), 0);
    let rep = rnnlab_core::check_layer(&GradCheck::new(), &mut lin, x.view()).unwrap();
    assert!(rep.max_rel_error() <= TOL, "{rep}");
}

fn err_text<T: std::fmt::Debug>(r: rnnlab_core::Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn error_input_width_mismatch() {
    let mut st = stack_of(|i, s| lstm(i, 4, s), 1, 3, 4);
    let e = err_text(st.forward(Array3::zeros((2, 1, 5)).view(), None));
    assert!(e.contains("Recurrent::forward") && e.contains("[2, 1, 5]") && e.contains("input_dim 3"), "{e}");
}

#[test]
fn error_empty_sequence() {
    let mut st = stack_of(|i, s| lstm(i, 4, s), 1, 3, 4);
    let e = err_text(st.forward(Array3::zeros((0, 1, 3)).view(), None));
    assert!(e.contains("time >= 1"), "{e}");
    let e = err_text(st.truncated(Array3::zeros((0, 1, 3)).view(), None, 2, |_, o| Ok(o.to_owned())));
    assert!(e.contains("time >= 1"), "{e}");
}

#[test]
fn error_initial_state_batch_mismatch() {
    let mut st = stack_of(|i, s| gru(i, 4, GruVariant::ResetAfter, s), 1, 3, 4);
    let h0 = State::zeros(&["h"], 2, 4).unwrap();
    let e = err_text(st.forward(Array3::zeros((2, 3, 3)).view(), Some(&[h0])));
    assert!(e.contains("[3, 4]") && e.contains("[2, 4]"), "{e}");
}

#[test]
fn error_hidden_size_zero() {
    let mut rng = seeded_rng(0);
    assert!(err_text(LstmConfig::new(3, 0).init::<f32>(&mut rng)).contains("hidden_dim"));
    assert!(err_text(GruConfig::new(3, 0).init::<f32>(&mut rng)).contains("hidden_dim"));
    assert!(err_text(RnnConfig::new(3, 0).init::<f32>(&mut rng)).contains("hidden_dim"));
    assert!(err_text(RnnConfig::new(0, 3).init::<f32>(&mut rng)).contains("input_dim"));
    assert!(err_text(LinearConfig::new(3, 0).init::<f32>(&mut rng)).contains("output_dim"));
}

#[test]
fn error_output_gradient_of_wrong_shape() {
    let mut st = stack_of(|i, s| lstm(i, 4, s), 2, 3, 4);
    let fwd = st.forward(Array3::zeros((3, 2, 3)).view(), None).unwrap();
    let bad = Array3::zeros((3, 2, 5));
    let e = err_text(st.backward(&fwd.cache, OutputGrad::Every(bad.view()), BackwardOptions::default()));
    assert!(e.contains("Recurrent::backward") && e.contains("[3, 2, 4]") && e.contains("[3, 2, 5]"), "{e}");
    let bad = Array2::zeros((1, 4));
    let e = err_text(st.backward(&fwd.cache, OutputGrad::Last(bad.view()), BackwardOptions::default()));
    assert!(e.contains("[2, 4]") && e.contains("[1, 4]"), "{e}");
    let nan = Array2::from_elem((2, 4), f64::NAN);
    assert!(matches!(
        st.backward(&fwd.cache, OutputGrad::Last(nan.view()), BackwardOptions::default()),
        Err(Error::NonFinite { .. })
    ));
}

#[test]
fn error_state_of_the_wrong_cell_type() {
    // An LSTM state (h, c) handed to a GRU.
    let mut st = stack_of(|i, s| gru(i, 4, GruVariant::ResetAfter, s), 1, 3, 4);
    let lstm_state = State::zeros(&["h", "c"], 1, 4).unwrap();
    let e = err_text(st.forward(Array3::zeros((2, 1, 3)).view(), Some(&[lstm_state])));
    assert!(e.contains("gru state") && e.contains("[\"h\", \"c\"]"), "{e}");
}

#[test]
fn error_wrong_number_of_states_and_layers() {
    let mut st = stack_of(|i, s| lstm(i, 4, s), 2, 3, 4);
    let one = st.zero_states(1).unwrap()[..1].to_vec();
    assert!(err_text(st.forward(Array3::zeros((2, 1, 3)).view(), Some(&one))).contains("one per layer"));
    assert!(err_text(Recurrent::<f64, Lstm<f64>>::new(vec![])).contains("n_layers"));
    let e = err_text(Recurrent::new(vec![lstm(3, 4, 0), lstm(5, 4, 1)]));
    assert!(e.contains("layer 1 input_dim"), "{e}");
}

#[test]
fn error_non_finite_input_and_bad_truncation() {
    let mut st = stack_of(|i, s| lstm(i, 4, s), 1, 3, 4);
    let mut x = Array3::zeros((2, 1, 3));
    x[[1, 0, 2]] = f64::INFINITY;
    assert!(matches!(st.forward(x.view(), None), Err(Error::NonFinite { .. })));
    let fwd = st.forward(Array3::zeros((2, 1, 3)).view(), None).unwrap();
    assert!(
        err_text(st.backward(&fwd.cache, OutputGrad::None, BackwardOptions::default().with_truncate(0)))
            .contains("truncation")
    );
    assert!(
        err_text(st.truncated(Array3::zeros((2, 1, 3)).view(), None, 0, |_, o| Ok(o.to_owned())))
            .contains("truncation")
    );
}

#[test]
fn error_cache_from_another_stack() {
    let mut a = stack_of(|i, s| lstm(i, 4, s), 2, 3, 4);
    let mut b = stack_of(|i, s| lstm(i, 4, s), 1, 3, 4);
    let fwd = a.forward(Array3::zeros((2, 1, 3)).view(), None).unwrap();
    assert!(err_text(b.backward(&fwd.cache, OutputGrad::None, BackwardOptions::default())).contains("cache"));
}

#[test]
fn error_bad_parameter_shapes() {
    let e = err_text(Lstm::<f64>::from_params(
        Array2::zeros((8, 3)),
        Array2::zeros((8, 3)),
        ndarray::Array1::zeros(8),
        ndarray::Array1::zeros(8),
    ));
    assert!(e.contains("Lstm::from_params") && e.contains("4 gate blocks"), "{e}");
    let e = err_text(Linear::<f64>::from_params(Array2::zeros((2, 3)), ndarray::Array1::zeros(3)));
    assert!(e.contains("bias"), "{e}");
}

#[test]
fn shapes_with_batch_one_and_single_step() {
    for (t, b) in [(1, 1), (1, 4), (6, 1)] {
        let mut st = stack_of(|i, s| gru(i, 4, GruVariant::ResetBefore, s), 2, 3, 4);
        let fwd = st.forward(Array3::zeros((t, b, 3)).view(), None).unwrap();
        assert_eq!(fwd.outputs.shape(), &[t, b, 4]);
        assert_eq!(fwd.final_states.len(), 2);
        let bwd = st.backward(&fwd.cache, OutputGrad::None, BackwardOptions::default()).unwrap();
        assert_eq!(bwd.dx.as_ref().map(|d| d.shape().to_vec()), Some(vec![t, b, 3]));
        assert_eq!(bwd.step_grads[1].all().shape(), &[t, b, 4]);
    }
}

#[test]
fn cells_round_trip_through_serde() {
    let st = stack_of(|i, s| lstm(i, 4, s), 2, 3, 4);
    let json = serde_json::to_string(&st).unwrap();
    let back: Recurrent<f64, Lstm<f64>> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, st);
    assert_eq!(
        st.param_names(),
        [
            "layers.0.w_ih",
            "layers.0.w_hh",
            "layers.0.b_ih",
            "layers.0.b_hh",
            "layers.1.w_ih",
            "layers.1.w_hh",
            "layers.1.b_ih",
            "layers.1.b_hh"
        ]
    );
}

#[test]
fn default_inits_forget_bias_and_orthogonal_gate_blocks() {
    let c = LstmConfig::new(5, 6).init::<f64>(&mut seeded_rng(1)).unwrap();
    let mut w_hh = None;
    let mut b_ih = None;
    c.visit_params(&mut |n, p| match n {
        "w_hh" => w_hh = Some(p.value.to_owned().into_dimensionality::<ndarray::Ix2>().unwrap()),
        "b_ih" => b_ih = Some(p.value.to_owned()),
        _ => {}
    });
    let (w_hh, b_ih) = (w_hh.unwrap(), b_ih.unwrap());
    for g in 0..4 {
        let blk = w_hh.slice(s![g * 6..(g + 1) * 6, ..]);
        let qtq = blk.t().dot(&blk);
        assert!((qtq - Array2::<f64>::eye(6)).iter().all(|v| v.abs() < 1e-12), "gate block {g}");
    }
    assert!(b_ih.iter().enumerate().all(|(k, &v)| v == if (6..12).contains(&k) { 1.0 } else { 0.0 }));
}

#[test]
fn f32_and_f64_agree() {
    let c64 = lstm(3, 8, 4);
    let mut ps = Vec::new();
    c64.visit_params(&mut |_, p| ps.push(p.value.mapv(|v| v as f32)));
    let d2 = |a: &ArrayD<f32>| a.clone().into_dimensionality::<ndarray::Ix2>().unwrap();
    let d1 = |a: &ArrayD<f32>| a.clone().into_dimensionality::<ndarray::Ix1>().unwrap();
    let c32 = Lstm::from_params(d2(&ps[0]), d2(&ps[1]), d1(&ps[2]), d1(&ps[3])).unwrap();
    let x = random3((20, 2, 3), 1, 2.0);
    let mut a = Recurrent::new(vec![c64]).unwrap();
    let mut b = Recurrent::new(vec![c32]).unwrap();
    let y64 = a.forward(x.view(), None).unwrap().outputs;
    let y32 = b.forward(x.mapv(|v| v as f32).view(), None).unwrap().outputs;
    for (p, q) in y64.iter().zip(&y32) {
        assert!((p - f64::from(*q)).abs() < 2e-5, "{p} vs {q}");
    }
}

#[test]
fn long_sequence_runs_without_stack_overflow() {
    // T = 10,000, batch 1, H = 64: forward and full backward, and the streaming truncated pass.
    let mut st: Recurrent<f32, Lstm<f32>> =
        Recurrent::new(vec![LstmConfig::new(2, 64).init(&mut seeded_rng(0)).unwrap()]).unwrap();
    let x = Array3::from_shape_fn((10_000, 1, 2), |(t, _, k)| ((t * 7 + k) as f32 * 0.01).sin());
    let fwd = st.forward(x.view(), None).unwrap();
    let g = Array2::ones((1, 64));
    let bwd = st.backward(&fwd.cache, OutputGrad::Last(g.view()), BackwardOptions::default()).unwrap();
    let norms = bwd.step_grads[0].norms(0);
    assert_eq!(norms.len(), 10_000);
    assert!(norms.iter().all(|n| n.is_finite()));
    let run = st.truncated(x.view(), None, 100, |_, out| Ok(Array3::ones(out.raw_dim()))).unwrap();
    assert_eq!(run.n_chunks, 100);
}

#[test]
fn skipping_the_input_gradient_changes_no_parameter_gradient() {
    let x = random3((6, 2, 3), 1, 1.0);
    let g = random3((6, 2, 4), 2, 1.0);
    let run = |opts: BackwardOptions<'_, f64>| {
        let mut st = stack_of(|i, s| gru(i, 4, GruVariant::ResetBefore, s), 2, 3, 4);
        let fwd = st.forward(x.view(), None).unwrap();
        let bwd = st.backward(&fwd.cache, OutputGrad::Every(g.view()), opts).unwrap();
        let mut grads = Vec::new();
        st.visit_params(&mut |_, p| grads.push(p.grad.to_owned()));
        (grads, bwd.dx.is_some(), bwd.step_grads)
    };
    let with = run(BackwardOptions::default());
    let without = run(BackwardOptions::default().without_input_grad());
    assert_eq!(with.0, without.0);
    assert_eq!(with.2, without.2);
    assert!(with.1 && !without.1);
}

/// The `Cell` methods are public: wrong buffers handed to them directly are an `Err`.
#[test]
fn error_direct_step_calls_with_wrong_buffers() {
    let (b, h) = (2, 4);
    let mut cells: Vec<Box<dyn Cell<f64>>> = vec![
        Box::new(lstm(3, h, 0)),
        Box::new(gru(3, h, GruVariant::ResetAfter, 0)),
        Box::new(gru(3, h, GruVariant::ResetBefore, 0)),
        Box::new(rnn(3, h, ActivationKind::Gelu, 0)),
    ];
    for cell in &mut cells {
        let (p, sw) = (cell.proj_dim(), cell.state_width());
        let mut xp = Array2::zeros((b, p));
        let prev = Array2::zeros((b, sw));
        let mut next = Array2::zeros((b, sw));
        let mut cache = vec![0.0; cell.cache_len(b)];
        let mut scratch = vec![0.0; cell.scratch_len(b)];
        // Right buffers work.
        cell.step(0, xp.view_mut(), prev.view(), next.view_mut(), &mut cache, &mut scratch).unwrap();
        // A short cache, a too-narrow state and a batch mismatch are errors.
        if !cache.is_empty() {
            let e =
                cell.step(0, xp.view_mut(), prev.view(), next.view_mut(), &mut cache[1..], &mut scratch).unwrap_err();
            assert!(e.to_string().contains("cache"), "{}: {e}", cell.name());
        }
        let narrow = Array2::zeros((b, sw - 1));
        assert!(cell.step(0, xp.view_mut(), narrow.view(), next.view_mut(), &mut cache, &mut scratch).is_err());
        let other_batch = Array2::zeros((b + 1, sw));
        assert!(cell.step(0, xp.view_mut(), other_batch.view(), next.view_mut(), &mut cache, &mut scratch).is_err());
        // A column-strided projection (which a step may write into) is refused untouched.
        let mut wide = Array2::from_elem((b, 2 * p), 0.25);
        let before = wide.clone();
        let strided = wide.slice_mut(s![.., ..;2]);
        let prev_nonzero = Array2::from_elem((b, sw), 0.5);
        let refused = cell.step(0, strided, prev_nonzero.view(), next.view_mut(), &mut cache, &mut scratch).is_err();
        // The LSTM writes its gates into the projection, so it needs it contiguous.
        assert!(refused || cell.name() != "lstm");
        if refused {
            assert_eq!(wide, before, "{}", cell.name());
        }
        // Backward and JVP with a wrong-width gradient.
        let step = rnnlab_core::StepRefs { t: 0, xp: xp.view(), prev: prev.view(), next: next.view(), cache: &cache };
        let (mut dprev, mut dxp) = (Array2::zeros((b, sw)), Array2::zeros((b, p)));
        let mut drec = Array2::zeros((b, cell.rec_grad_dim()));
        let bad = Array2::zeros((b, sw + 1));
        assert!(
            cell.step_backward(step, bad.view(), dprev.view_mut(), dxp.view_mut(), drec.view_mut(), &mut scratch)
                .is_err()
        );
        let mut out = Array2::zeros((b, sw));
        assert!(cell.jvp_state(step, bad.view(), out.view_mut(), &mut scratch).is_err());
        assert!(cell.vjp_state(step, bad.view(), out.view_mut()).is_err());
    }
}

#[test]
fn strided_and_contiguous_inputs_give_the_same_bits() {
    // A contiguous input is copied in one piece, any other layout step by step: both give the
    // same outputs and gradients.
    let (t, b, i, h) = (5, 3, 4, 6);
    let wide = Array3::from_shape_fn((t, b, i + 2), |(a, c, k)| ((a * 13 + c * 5 + k) as f64 * 0.37).sin());
    let strided = wide.slice(s![.., .., 1..i + 1]);
    let contiguous = strided.to_owned();
    assert!(strided.as_slice().is_none() && contiguous.as_slice().is_some());
    let mut stack = stack_of(|i, seed| lstm(i, 6, seed), 2, i, h);
    let run = |stack: &mut Recurrent<f64, Lstm<f64>>, x: ndarray::ArrayView3<'_, f64>| {
        let fwd = stack.forward(x, None).unwrap();
        let g = Array2::from_elem((b, h), 0.5);
        let bwd = stack.backward(&fwd.cache, OutputGrad::Last(g.view()), BackwardOptions::default()).unwrap();
        (fwd.outputs, bwd.dx)
    };
    let a = run(&mut stack, strided);
    let bb = run(&mut stack, contiguous.view());
    assert_eq!(a, bb);
}
