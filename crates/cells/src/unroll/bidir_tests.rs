//! Tests of the bidirectional stack: gradient checks, equality with the reverse direction run
//! by hand on the time-reversed input, time indexing of the telemetry, and error cases.

use ndarray::{Array2, Array3, ArrayD, Axis, s};
use rand::Rng as _;
use rnnlab_activations::ActivationKind;
use rnnlab_core::{Cell, Error, GradCheck, NamedInput, Parameterized, State, check_fn, seeded_rng};

use crate::*;

const TOL: f64 = 1e-6;

fn random3(shape: (usize, usize, usize), seed: u64, scale: f64) -> Array3<f64> {
    let mut rng = seeded_rng(seed);
    Array3::from_shape_fn(shape, |_| rng.random_range(-scale..scale))
}

fn random2(shape: (usize, usize), seed: u64, scale: f64) -> Array2<f64> {
    random3((1, shape.0, shape.1), seed, scale).index_axis_move(Axis(0), 0)
}

/// Biases random too (zero biases would hide a missing bias gradient).
fn random_biases<C: Parameterized<f64>>(cell: &mut C, seed: u64) {
    let mut rng = seeded_rng(seed);
    cell.visit_params_mut(&mut |name, mut p| {
        if name.starts_with('b') || name.ends_with(".beta") {
            p.value.mapv_inplace(|_| rng.random_range(-0.5..0.5));
        }
    });
}

fn lstm(i: usize, h: usize, seed: u64) -> Lstm<f64> {
    let mut c = LstmConfig::new(i, h).init::<f64>(&mut seeded_rng(seed)).unwrap();
    random_biases(&mut c, seed + 100);
    c
}

fn gru(i: usize, h: usize, seed: u64) -> Gru<f64> {
    let mut c = GruConfig::new(i, h).init::<f64>(&mut seeded_rng(seed)).unwrap();
    random_biases(&mut c, seed + 100);
    c
}

fn rnn(i: usize, h: usize, seed: u64) -> Rnn<f64> {
    let mut c = RnnConfig::new(i, h).with_activation(ActivationKind::Tanh).init::<f64>(&mut seeded_rng(seed)).unwrap();
    random_biases(&mut c, seed + 100);
    c
}

fn norm_gru(i: usize, h: usize, seed: u64) -> NormGru<f64> {
    let cfg = NormGruConfig::new(GruConfig::new(i, h), NormConfig::layer(NormPlacement::Full));
    let mut c = cfg.init::<f64>(&mut seeded_rng(seed)).unwrap();
    random_biases(&mut c, seed + 100);
    c
}

/// `n_layers` bidirectional layers of width `h`, every cell from its own seed.
fn bi_of<C: Cell<f64>>(
    make: impl Fn(usize, usize, u64) -> C,
    n_layers: usize,
    i: usize,
    h: usize,
) -> Bidirectional<f64, C> {
    let layers = (0..n_layers)
        .map(|l| {
            let input = if l == 0 { i } else { 2 * h };
            (make(input, h, 2 * l as u64), make(input, h, 2 * l as u64 + 1))
        })
        .collect();
    Bidirectional::new(layers).unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Loss {
    Last,
    Every,
    /// Only the final states.
    FinalOnly,
}

/// L = Σ R ⊙ outputs (last step, every step or none) + Σ_k Q_k ⊙ final state_k, with fixed
/// random R, Q; a central-difference check over every parameter, x and each initial state.
fn check_bi<C: Cell<f64>>(
    bi: &mut Bidirectional<f64, C>,
    t: usize,
    b: usize,
    loss: Loss,
) -> rnnlab_core::GradCheckReport {
    let (i, out) = (bi.input_dim(), bi.output_dim());
    let r = random3((t, b, out), 11, 1.0);
    let zeros = bi.zero_states(b).unwrap();
    let shapes: Vec<(Vec<String>, usize, usize)> =
        zeros.iter().map(|s| (s.names().to_vec(), s.hidden_dim(), s.data().ncols())).collect();
    let q: Vec<Array2<f64>> = shapes.iter().enumerate().map(|(k, sh)| random2((b, sh.2), 20 + k as u64, 1.0)).collect();
    let mut inputs: Vec<NamedInput> = vec![("x".into(), random3((t, b, i), 1, 1.0).into_dyn())];
    for (k, sh) in shapes.iter().enumerate() {
        inputs.push((format!("s0.{k}"), random2((b, sh.2), 30 + k as u64, 0.8).into_dyn()));
    }
    let state = |k: usize, a: Array2<f64>| {
        let names: Vec<&str> = shapes[k].0.iter().map(String::as_str).collect();
        State::new(&names, shapes[k].1, a)
    };
    check_fn(&GradCheck::new(), bi, &mut inputs, |bi, inputs| {
        let x: Array3<f64> =
            inputs[0].1.clone().into_dimensionality().map_err(|e| Error::shape("test", "3-D", e.to_string()))?;
        let init: Vec<State<f64>> = inputs[1..]
            .iter()
            .enumerate()
            .map(|(k, (_, a))| state(k, a.clone().into_dimensionality().unwrap()))
            .collect::<rnnlab_core::Result<_>>()?;
        let fwd = bi.forward(x.view(), Some(&init))?;
        let mut value = match loss {
            Loss::Every => (&fwd.outputs * &r).sum(),
            Loss::Last => (&fwd.outputs.index_axis(Axis(0), t - 1) * &r.index_axis(Axis(0), t - 1)).sum(),
            Loss::FinalOnly => 0.0,
        };
        value += fwd.final_states.iter().zip(&q).map(|(s, q)| (&s.data() * q).sum()).sum::<f64>();
        let last = r.index_axis(Axis(0), t - 1).to_owned();
        let d_out = match loss {
            Loss::Every => OutputGrad::Every(r.view()),
            Loss::Last => OutputGrad::Last(last.view()),
            Loss::FinalOnly => OutputGrad::None,
        };
        let d_final: Vec<State<f64>> = q.iter().enumerate().map(|(k, q)| state(k, q.clone()).unwrap()).collect();
        let bwd = bi.backward(&fwd.cache, d_out, BackwardOptions::default().with_d_final(&d_final))?;
        let mut grads: Vec<ArrayD<f64>> = vec![bwd.dx.unwrap_or_default().into_dyn()];
        grads.extend(bwd.d_init.into_iter().map(|s| s.into_data().into_dyn()));
        bi.recycle(fwd.cache);
        Ok((value, grads))
    })
    .unwrap()
}

fn check_all<C: Cell<f64>>(label: &str, make: impl Fn(usize, usize, u64) -> C + Copy) {
    for (t, b) in [(5, 2), (1, 1)] {
        for loss in [Loss::Every, Loss::Last, Loss::FinalOnly] {
            let mut bi = bi_of(make, 2, 3, 3);
            let rep = check_bi(&mut bi, t, b, loss);
            assert!(rep.max_rel_error() <= TOL, "{label}: T {t}, batch {b}, {loss:?}: {rep}");
            assert!(rep.n_checked > bi.n_params(), "{label}: {rep}");
        }
    }
}

#[test]
fn bidirectional_lstm_gradients_match_finite_differences() {
    check_all("lstm", lstm);
}

#[test]
fn bidirectional_gru_gradients_match_finite_differences() {
    check_all("gru", gru);
}

#[test]
fn bidirectional_rnn_gradients_match_finite_differences() {
    check_all("rnn", rnn);
}

#[test]
fn bidirectional_layer_norm_gru_gradients_match_finite_differences() {
    let mut bi = bi_of(norm_gru, 2, 3, 3);
    let rep = check_bi(&mut bi, 4, 2, Loss::Every);
    assert!(rep.max_rel_error() <= TOL, "norm gru: {rep}");
}

/// One direction by hand: a one-layer `Recurrent` of a clone of the cell, on the input as is
/// (forward) or reversed in time and its outputs reversed back (reverse).
fn by_hand<C: Cell<f64> + Clone>(
    cell: &C,
    x: &Array3<f64>,
    init: &State<f64>,
    reverse: bool,
) -> (Array3<f64>, State<f64>) {
    let mut rec = Recurrent::new(vec![cell.clone()]).unwrap();
    let input = if reverse { x.slice(s![..;-1, .., ..]).to_owned() } else { x.clone() };
    let fwd = rec.forward(input.view(), Some(std::slice::from_ref(init))).unwrap();
    let out = if reverse { fwd.outputs.slice(s![..;-1, .., ..]).to_owned() } else { fwd.outputs };
    (out, fwd.final_states[0].clone())
}

/// The whole stack by hand: per layer both directions with `by_hand`, outputs concatenated.
/// Same cells, same values, same code, so the same bits are expected.
fn outputs_equal_hand_run<C: Cell<f64> + Clone>(mut bi: Bidirectional<f64, C>) {
    let (t, b, i) = (6, 2, bi.input_dim());
    let x = random3((t, b, i), 3, 1.0);
    let init: Vec<State<f64>> = bi
        .zero_states(b)
        .unwrap()
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let names: Vec<&str> = s.names().iter().map(String::as_str).collect();
            State::new(&names, s.hidden_dim(), random2((b, s.data().ncols()), 40 + k as u64, 0.5)).unwrap()
        })
        .collect();
    let got = bi.forward(x.view(), Some(&init)).unwrap();
    let mut input = x;
    let mut finals = Vec::new();
    for (l, (f, r)) in bi.layers().enumerate() {
        let (out_f, fin_f) = by_hand(f, &input, &init[2 * l], false);
        let (out_r, fin_r) = by_hand(r, &input, &init[2 * l + 1], true);
        if l == 0 {
            // Layer 0's reverse half is in the cache: the reverse direction's h in processing
            // order is exactly `out_r` reversed.
            let states = got.cache.direction(0, Direction::Reverse).unwrap().states(0).unwrap();
            let h = f.hidden_dim();
            assert_eq!(states.slice(s![1..;-1, .., ..h]), out_r);
        }
        input = ndarray::concatenate(Axis(2), &[out_f.view(), out_r.view()]).unwrap();
        finals.push(fin_f);
        finals.push(fin_r);
    }
    assert_eq!(got.outputs, input);
    assert_eq!(got.final_states, finals);
}

#[test]
fn outputs_are_the_reverse_direction_run_on_the_reversed_input_bit_for_bit() {
    outputs_equal_hand_run(bi_of(lstm, 2, 3, 4));
    outputs_equal_hand_run(bi_of(gru, 2, 3, 4));
    outputs_equal_hand_run(bi_of(rnn, 3, 2, 5));
    outputs_equal_hand_run(bi_of(norm_gru, 2, 3, 4));
}

#[test]
fn reverse_final_state_is_after_reading_x0_and_output_halves_match_it() {
    // PyTorch: h_n[2l] = output[T−1, :, :H] (forward), h_n[2l+1] = output[0, :, H:] (reverse).
    let mut bi = bi_of(lstm, 2, 3, 4);
    let x = random3((5, 2, 3), 4, 1.0);
    let fwd = bi.forward(x.view(), None).unwrap();
    let h = 4;
    assert_eq!(fwd.final_states[2].h(), fwd.outputs.slice(s![4, .., ..h]));
    assert_eq!(fwd.final_states[3].h(), fwd.outputs.slice(s![0, .., h..]));
}

/// L = ⟨g, chosen output entries⟩; returns the backward result.
fn backward_of<C: Cell<f64>>(
    bi: &mut Bidirectional<f64, C>,
    x: &Array3<f64>,
    d_out: OutputGrad<'_, f64>,
) -> BiBackward<f64> {
    let fwd = bi.forward(x.view(), None).unwrap();
    bi.backward(&fwd.cache, d_out, BackwardOptions::default()).unwrap()
}

fn is_zero(a: ndarray::ArrayView2<'_, f64>) -> bool {
    a.iter().all(|&v| v == 0.0)
}

fn nonzero(a: ndarray::ArrayView2<'_, f64>) -> bool {
    a.iter().any(|&v| v.abs() > 1e-12)
}

#[test]
fn telemetry_is_in_the_original_time_order() {
    let (t, b, h) = (6, 2, 4);
    let x = random3((t, b, 3), 5, 1.0);
    let g = random2((b, 2 * h), 6, 1.0);
    // (a) A loss on output[T−1]'s reverse half only: the reverse direction has read only x_{T−1}
    // there, so its ∂L/∂h_t is g at t = T − 1 and zero before; the forward direction gets
    // nothing; ∂L/∂x_t is zero for t < T − 1.
    let mut last_rev = Array2::zeros((b, 2 * h));
    last_rev.slice_mut(s![.., h..]).assign(&g.slice(s![.., h..]));
    for n_layers in [1, 2] {
        let mut bi = bi_of(lstm, n_layers, 3, h);
        let bwd = backward_of(&mut bi, &x, OutputGrad::Last(last_rev.view()));
        let top = n_layers - 1;
        let rev = bwd.step_grads_of(top, Direction::Reverse).unwrap().part(0);
        assert_eq!(rev.index_axis(Axis(0), t - 1), g.slice(s![.., h..]));
        for tt in 0..t - 1 {
            assert!(is_zero(rev.index_axis(Axis(0), tt)), "layers {n_layers}, t = {tt}");
        }
        assert!(bwd.step_grads_of(top, Direction::Forward).unwrap().all().iter().all(|&v| v == 0.0));
        let dx = bwd.dx.as_ref().unwrap();
        assert!(nonzero(dx.index_axis(Axis(0), t - 1)));
        if n_layers == 1 {
            for tt in 0..t - 1 {
                assert!(is_zero(dx.index_axis(Axis(0), tt)), "t = {tt}");
            }
        } else {
            // Layer 1's reverse step T−1 reads layer 0's output at T−1: layer 0's forward
            // direction there has seen every x, its reverse direction only x_{T−1}.
            let f0 = bwd.step_grads_of(0, Direction::Forward).unwrap().norms(0);
            let r0 = bwd.step_grads_of(0, Direction::Reverse).unwrap().norms(0);
            assert!(f0.iter().all(|&n| n > 1e-12), "{f0:?}");
            assert!(r0[t - 1] > 1e-12 && r0[..t - 1].iter().all(|&n| n == 0.0), "{r0:?}");
        }
    }
    // (b) A loss on output[0]'s reverse half: the gradient flows along the reverse chain from
    // t = 0 to t = T − 1 and into the reverse initial state; the forward direction gets nothing.
    let mut every = Array3::zeros((t, b, 2 * h));
    every.slice_mut(s![0, .., h..]).assign(&g.slice(s![.., h..]));
    let mut bi = bi_of(gru, 1, 3, h);
    let bwd = backward_of(&mut bi, &x, OutputGrad::Every(every.view()));
    let rev = bwd.step_grads_of(0, Direction::Reverse).unwrap();
    assert_eq!(rev.part(0).index_axis(Axis(0), 0), g.slice(s![.., h..]));
    assert!(rev.norms(0).iter().all(|&n| n > 1e-12), "{:?}", rev.norms(0));
    assert!(nonzero(bwd.d_init_of(0, Direction::Reverse).unwrap().data()));
    assert!(is_zero(bwd.d_init_of(0, Direction::Forward).unwrap().data()));
    assert!(bwd.step_grads_of(0, Direction::Forward).unwrap().all().iter().all(|&v| v == 0.0));
    // (c) A loss on output[T−1]'s forward half: the mirror image.
    let mut last_fwd = Array2::zeros((b, 2 * h));
    last_fwd.slice_mut(s![.., ..h]).assign(&g.slice(s![.., ..h]));
    let bwd = backward_of(&mut bi, &x, OutputGrad::Last(last_fwd.view()));
    let fwd = bwd.step_grads_of(0, Direction::Forward).unwrap();
    assert_eq!(fwd.part(0).index_axis(Axis(0), t - 1), g.slice(s![.., ..h]));
    assert!(fwd.norms(0).iter().all(|&n| n > 1e-12));
    assert!(bwd.step_grads_of(0, Direction::Reverse).unwrap().all().iter().all(|&v| v == 0.0));
}

#[test]
fn reverse_telemetry_is_the_hand_run_telemetry_reversed() {
    // One layer: the reverse direction by hand on the reversed input, with the reversed output
    // gradient, gives the same ∂L/∂s_τ; the stack reports it at t = T − 1 − τ.
    let (t, b, h) = (5, 3, 4);
    let x = random3((t, b, 3), 7, 1.0);
    let g = random3((t, b, 2 * h), 8, 1.0);
    let mut bi = bi_of(lstm, 1, 3, h);
    let mut rec = Recurrent::new(vec![bi.cell(0, Direction::Reverse).unwrap().clone()]).unwrap();
    let bwd = backward_of(&mut bi, &x, OutputGrad::Every(g.view()));
    let x_rev = x.slice(s![..;-1, .., ..]).to_owned();
    let g_rev = g.slice(s![..;-1, .., h..]).to_owned();
    let fwd = rec.forward(x_rev.view(), None).unwrap();
    let hand = rec.backward(&fwd.cache, OutputGrad::Every(g_rev.view()), BackwardOptions::default()).unwrap();
    let got = bwd.step_grads_of(0, Direction::Reverse).unwrap();
    assert_eq!(got.all(), hand.step_grads[0].all().slice(s![..;-1, .., ..]));
    assert_eq!(got.names(), ["h", "c"]);
    assert_eq!(bwd.d_init_of(0, Direction::Reverse), hand.d_init.first());
    // The reverse cell's parameter gradients are the hand run's.
    let mut a = Vec::new();
    bi.visit_params(&mut |n, p| {
        if n.contains("reverse") {
            a.push(p.grad.to_owned())
        }
    });
    let mut bb = Vec::new();
    rec.visit_params(&mut |_, p| bb.push(p.grad.to_owned()));
    assert_eq!(a, bb);
}

#[test]
fn step_refs_follow_the_original_time_order() {
    let (t, b, h) = (4, 2, 3);
    let mut bi = bi_of(gru, 1, 2, h);
    let x = random3((t, b, 2), 9, 1.0);
    let init = bi.zero_states(b).unwrap();
    let fwd = bi.forward(x.view(), Some(&init)).unwrap();
    for tt in 0..t {
        let f = fwd.cache.step_refs(0, Direction::Forward, tt).unwrap();
        let r = fwd.cache.step_refs(0, Direction::Reverse, tt).unwrap();
        assert_eq!(f.t, tt);
        assert_eq!(r.t, t - 1 - tt);
        assert_eq!(f.next, fwd.outputs.slice(s![tt, .., ..h]));
        assert_eq!(r.next, fwd.outputs.slice(s![tt, .., h..]));
        // The reverse step reading x_t starts from the reverse state at t + 1.
        if tt + 1 < t {
            assert_eq!(r.prev, fwd.outputs.slice(s![tt + 1, .., h..]));
        } else {
            assert_eq!(r.prev, init[1].data());
        }
    }
    assert!(fwd.cache.step_refs(0, Direction::Reverse, t).is_none());
    assert!(fwd.cache.step_refs(1, Direction::Forward, 0).is_none());
    // A Jacobian product through the reverse cell works on these refs.
    let cell = bi.cell(0, Direction::Reverse).unwrap();
    let step = fwd.cache.step_refs(0, Direction::Reverse, 1).unwrap();
    let v = random2((b, h), 10, 1.0);
    let mut out = Array2::zeros((b, h));
    let mut scratch = vec![0.0; cell.scratch_len(b)];
    cell.jvp_state(step, v.view(), out.view_mut(), &mut scratch).unwrap();
    assert!(nonzero(out.view()));
}

#[test]
fn parameter_names_follow_pytorch_state_dict_order_and_serde_round_trips() {
    let bi = bi_of(lstm, 2, 3, 4);
    let mut expected = Vec::new();
    for l in 0..2 {
        for dir in ["", ".reverse"] {
            for p in ["w_ih", "w_hh", "b_ih", "b_hh"] {
                expected.push(format!("layers.{l}{dir}.{p}"));
            }
        }
    }
    assert_eq!(bi.param_names(), expected);
    // Reverse weights are the reverse cell's.
    let mut w = None;
    bi.visit_params(&mut |n, p| {
        if n == "layers.1.reverse.w_hh" {
            w = Some(p.value.to_owned());
        }
    });
    let mut w_cell = None;
    bi.cell(1, Direction::Reverse).unwrap().visit_params(&mut |n, p| {
        if n == "w_hh" {
            w_cell = Some(p.value.to_owned());
        }
    });
    assert_eq!(w, w_cell);
    let json = serde_json::to_string(&bi).unwrap();
    assert!(json.starts_with("{\"layers\":[{\"forward\":"), "{}", &json[..40]);
    let back: Bidirectional<f64, Lstm<f64>> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, bi);
    // A file whose layers do not chain is refused on load.
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let layers = v["layers"].as_array_mut().unwrap();
    layers.swap(0, 1);
    assert!(serde_json::from_value::<Bidirectional<f64, Lstm<f64>>>(v).unwrap_err().to_string().contains("input_dim"));
}

#[test]
fn accessors_and_dims() {
    let mut bi = bi_of(gru, 2, 3, 5);
    assert_eq!((bi.n_layers(), bi.input_dim(), bi.hidden_dim(), bi.output_dim()), (2, 3, 5, 10));
    assert_eq!(bi.layers().len(), 2);
    assert_eq!(bi.layers().nth(1).map(|(f, r)| (f.input_dim(), r.input_dim())), Some((10, 10)));
    let zs = bi.zero_states(3).unwrap();
    assert_eq!(zs.len(), 4);
    assert!(zs.iter().all(|s| s.data().shape() == [3, 5]));
    for (f, r) in bi.layers_mut() {
        f.zero_grad();
        r.zero_grad();
    }
    bi.set_training(false);
    assert_eq!(Direction::Reverse.index(1), 3);
}

fn err_text<T: std::fmt::Debug>(r: rnnlab_core::Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn error_bad_construction() {
    assert!(err_text(Bidirectional::<f64, Lstm<f64>>::new(vec![])).contains("n_layers"));
    // Directions of different widths.
    let e = err_text(Bidirectional::new(vec![(lstm(3, 4, 0), lstm(3, 5, 1))]));
    assert!(e.contains("Bidirectional::new") && e.contains("reverse hidden_dim"), "{e}");
    let e = err_text(Bidirectional::new(vec![(lstm(3, 4, 0), lstm(2, 4, 1))]));
    assert!(e.contains("reverse input_dim"), "{e}");
    // Layer 1 reading H instead of 2H.
    let e = err_text(Bidirectional::new(vec![(lstm(3, 4, 0), lstm(3, 4, 1)), (lstm(4, 4, 2), lstm(4, 4, 3))]));
    assert!(e.contains("layer 1 input_dim = 2 · layer 0 hidden_dim = 8") && e.contains("got 4"), "{e}");
    // Two kinds of cell in one layer: a reset-after and a reset-before GRU.
    let before = GruConfig::new(3, 4).with_variant(GruVariant::ResetBefore).init::<f64>(&mut seeded_rng(1)).unwrap();
    let e = Bidirectional::new(vec![(gru(3, 4, 0), before)]).unwrap_err();
    assert!(matches!(e, Error::Config { .. }) && e.to_string().contains("gru_reset_before"), "{e}");
}

#[test]
fn error_bad_forward_inputs() {
    let mut bi = bi_of(lstm, 2, 3, 4);
    let e = err_text(bi.forward(Array3::zeros((2, 1, 5)).view(), None));
    assert!(e.contains("Bidirectional::forward") && e.contains("[2, 1, 5]") && e.contains("input_dim 3"), "{e}");
    assert!(err_text(bi.forward(Array3::zeros((0, 1, 3)).view(), None)).contains("time >= 1"));
    let mut x = Array3::zeros((2, 1, 3));
    x[[1, 0, 0]] = f64::NAN;
    assert!(matches!(bi.forward(x.view(), None), Err(Error::NonFinite { .. })));
    // Two states (one per layer) instead of four (one per layer and direction).
    let two = bi.zero_states(1).unwrap()[..2].to_vec();
    let e = err_text(bi.forward(Array3::zeros((2, 1, 3)).view(), Some(&two)));
    assert!(e.contains("4 initial states") && e.contains("got 2"), "{e}");
    // A GRU state for the LSTM's reverse direction; a wrong batch.
    let mut states = bi.zero_states(1).unwrap();
    states[1] = State::zeros(&["h"], 1, 4).unwrap();
    let e = err_text(bi.forward(Array3::zeros((2, 1, 3)).view(), Some(&states)));
    assert!(e.contains("layer 0 Reverse initial state") && e.contains("lstm"), "{e}");
    let states = bi.zero_states(2).unwrap();
    assert!(err_text(bi.forward(Array3::zeros((2, 1, 3)).view(), Some(&states))).contains("[1, 8]"));
}

#[test]
fn error_bad_backward_inputs() {
    let mut bi = bi_of(gru, 2, 3, 4);
    let fwd = bi.forward(Array3::zeros((3, 2, 3)).view(), None).unwrap();
    // H instead of 2H.
    let bad = Array3::zeros((3, 2, 4));
    let e = err_text(bi.backward(&fwd.cache, OutputGrad::Every(bad.view()), BackwardOptions::default()));
    assert!(e.contains("Bidirectional::backward") && e.contains("[3, 2, 8]") && e.contains("[3, 2, 4]"), "{e}");
    let bad = Array2::zeros((2, 4));
    let e = err_text(bi.backward(&fwd.cache, OutputGrad::Last(bad.view()), BackwardOptions::default()));
    assert!(e.contains("[2, 8]"), "{e}");
    let nan = Array2::from_elem((2, 8), f64::NAN);
    assert!(matches!(
        bi.backward(&fwd.cache, OutputGrad::Last(nan.view()), BackwardOptions::default()),
        Err(Error::NonFinite { .. })
    ));
    let two = bi.zero_states(2).unwrap()[..2].to_vec();
    let e = err_text(bi.backward(&fwd.cache, OutputGrad::None, BackwardOptions::default().with_d_final(&two)));
    assert!(e.contains("final-state gradient"), "{e}");
    // A cache from a one-layer stack.
    let mut other = bi_of(gru, 1, 3, 4);
    let f1 = other.forward(Array3::zeros((3, 2, 3)).view(), None).unwrap();
    assert!(err_text(bi.backward(&f1.cache, OutputGrad::None, BackwardOptions::default())).contains("cache"));
}

#[test]
fn truncation_is_refused() {
    let mut bi = bi_of(lstm, 1, 3, 4);
    let x = Array3::zeros((4, 1, 3));
    let fwd = bi.forward(x.view(), None).unwrap();
    for k in [1, 2, 4, 100] {
        let r = bi.backward(&fwd.cache, OutputGrad::None, BackwardOptions::default().with_truncate(k));
        let e = err_text(r);
        assert!(
            e.contains("Bidirectional::backward") && e.contains("truncated BPTT") && e.contains("whole sequence"),
            "{e}"
        );
    }
    let r = bi.truncated(x.view(), None, 2, |_, o| Ok(o.to_owned()));
    assert!(matches!(&r, Err(Error::Config { .. })), "{r:?}");
    assert!(err_text(r).contains("bidirectional"));
}

#[test]
fn batch_one_and_single_step_shapes() {
    for (t, b) in [(1, 1), (1, 3), (5, 1)] {
        let mut bi = bi_of(lstm, 2, 3, 4);
        let fwd = bi.forward(Array3::zeros((t, b, 3)).view(), None).unwrap();
        assert_eq!(fwd.outputs.shape(), &[t, b, 8]);
        assert_eq!(fwd.final_states.len(), 4);
        let g = Array2::ones((b, 8));
        let bwd = bi.backward(&fwd.cache, OutputGrad::Last(g.view()), BackwardOptions::default()).unwrap();
        assert_eq!(bwd.dx.as_ref().map(|d| d.shape().to_vec()), Some(vec![t, b, 3]));
        assert_eq!(bwd.d_init.len(), 4);
        assert_eq!(bwd.step_grads.len(), 4);
        assert!(bwd.step_grads.iter().all(|sg| sg.all().shape() == [t, b, 8]));
        assert_eq!(fwd.cache.time(), t);
        assert_eq!(fwd.cache.batch(), b);
        assert!(fwd.cache.len_values() > 0);
    }
}

#[test]
fn recycling_and_skipping_the_input_gradient_change_no_bits() {
    let x = random3((6, 2, 3), 1, 1.0);
    let g = random3((6, 2, 8), 2, 1.0);
    let run = |bi: &mut Bidirectional<f64, Lstm<f64>>, input_grad: bool| {
        bi.zero_grad();
        let fwd = bi.forward(x.view(), None).unwrap();
        let opts = BackwardOptions { input_grad, ..Default::default() };
        let bwd = bi.backward(&fwd.cache, OutputGrad::Every(g.view()), opts).unwrap();
        let mut grads = Vec::new();
        bi.visit_params(&mut |_, p| grads.push(p.grad.to_owned()));
        let out = (fwd.outputs.clone(), grads, bwd.dx.clone(), bwd.step_grads.clone());
        bi.recycle(fwd.cache);
        bi.recycle_grads(bwd);
        out
    };
    let mut bi = bi_of(lstm, 2, 3, 4);
    let first = run(&mut bi, true);
    // Recycled buffers (NaN-filled when taken in tests) are fully overwritten.
    let second = run(&mut bi, true);
    assert_eq!(first, second);
    let without = run(&mut bi, false);
    assert_eq!((&first.0, &first.1, &first.3), (&without.0, &without.1, &without.3));
    assert!(without.2.is_none());
}

#[test]
fn f32_and_f64_agree() {
    let c64: Vec<(Gru<f64>, Gru<f64>)> = vec![(gru(3, 6, 0), gru(3, 6, 1))];
    let to32 = |c: &Gru<f64>| {
        let mut ps = Vec::new();
        c.visit_params(&mut |_, p| ps.push(p.value.mapv(|v| v as f32)));
        let d2 = |a: &ArrayD<f32>| a.clone().into_dimensionality::<ndarray::Ix2>().unwrap();
        let d1 = |a: &ArrayD<f32>| a.clone().into_dimensionality::<ndarray::Ix1>().unwrap();
        Gru::from_params(GruVariant::ResetAfter, d2(&ps[0]), d2(&ps[1]), d1(&ps[2]), d1(&ps[3])).unwrap()
    };
    let c32: Vec<(Gru<f32>, Gru<f32>)> = c64.iter().map(|(f, r)| (to32(f), to32(r))).collect();
    let x = random3((12, 2, 3), 1, 2.0);
    let y64 = Bidirectional::new(c64).unwrap().forward(x.view(), None).unwrap().outputs;
    let y32 = Bidirectional::new(c32).unwrap().forward(x.mapv(|v| v as f32).view(), None).unwrap().outputs;
    for (p, q) in y64.iter().zip(&y32) {
        assert!((p - f64::from(*q)).abs() < 2e-5, "{p} vs {q}");
    }
}
