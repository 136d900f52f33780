//! Bidirectional stacks through safetensors under PyTorch's names: the names a
//! `nn.LSTM(…, num_layers=2, bidirectional=True).state_dict()` has, a bit-exact round trip,
//! and weights of another architecture refused with the expected names listed.

use ndarray::Array3;
use rnnlab_cells::{Bidirectional, GruConfig, LstmConfig};
use rnnlab_core::{Cell, Error, Parameterized, seeded_rng};
use rnnlab_train::{DtypePolicy, load_torch_rnn_weights, torch_rnn_weights_bytes};

fn bi_lstm(seed: u64, layers: usize) -> Bidirectional<f32, rnnlab_cells::Lstm<f32>> {
    let mut rng = seeded_rng(seed);
    let cells = (0..layers)
        .map(|l| {
            let i = if l == 0 { 3 } else { 8 };
            (LstmConfig::new(i, 4).init(&mut rng).unwrap(), LstmConfig::new(i, 4).init(&mut rng).unwrap())
        })
        .collect();
    Bidirectional::new(cells).unwrap()
}

#[test]
fn a_bidirectional_lstm_round_trips_under_pytorchs_names() {
    let source = bi_lstm(1, 2);
    let bytes = torch_rnn_weights_bytes(&source).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = file.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut torch: Vec<String> = Vec::new();
    for l in 0..2 {
        for suffix in ["", "_reverse"] {
            for p in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
                torch.push(format!("{p}_l{l}{suffix}"));
            }
        }
    }
    torch.sort();
    assert_eq!(names, torch);
    // Into a differently drawn model of the same architecture: the same values and outputs.
    let mut target = bi_lstm(2, 2);
    load_torch_rnn_weights(&bytes, &mut target, DtypePolicy::Exact).unwrap();
    assert_eq!(target.state_dict(), source.state_dict());
    let x = Array3::from_shape_fn((5, 2, 3), |(t, b, i)| ((t * 3 + b + i) as f32 * 0.4).sin());
    let (mut a, mut b) = (source.clone(), target);
    assert_eq!(a.forward(x.view(), None).unwrap().outputs, b.forward(x.view(), None).unwrap().outputs);
}

#[test]
fn weights_of_another_architecture_are_refused() {
    let mut bi = bi_lstm(3, 2);
    // Unidirectional weights (no `_reverse` tensors) into a bidirectional model.
    let mut rng = seeded_rng(4);
    let uni = rnnlab_cells::Recurrent::new(vec![
        LstmConfig::new(3, 4).init::<f32>(&mut rng).unwrap(),
        LstmConfig::new(4, 4).init::<f32>(&mut rng).unwrap(),
    ])
    .unwrap();
    let before = bi.state_dict();
    let e = load_torch_rnn_weights(&torch_rnn_weights_bytes(&uni).unwrap(), &mut bi, DtypePolicy::Exact).unwrap_err();
    assert!(e.to_string().contains("weight_ih_l0_reverse"), "{e}");
    assert_eq!(bi.state_dict(), before, "a refused load writes nothing");
    // A bidirectional GRU into a bidirectional LSTM: every shape differs.
    let gru = Bidirectional::new(vec![(
        GruConfig::new(3, 4).init::<f32>(&mut rng).unwrap(),
        GruConfig::new(3, 4).init::<f32>(&mut rng).unwrap(),
    )])
    .unwrap();
    let mut one = bi_lstm(5, 1);
    let e = load_torch_rnn_weights(&torch_rnn_weights_bytes(&gru).unwrap(), &mut one, DtypePolicy::Exact).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }) && e.to_string().contains("weight_ih_l0_reverse"), "{e}");
    assert_eq!(one.cell(0, rnnlab_cells::Direction::Reverse).unwrap().name(), "lstm");
}
