//! A whole model — stacked LSTM, Linear read-out, MSE on the last step — checked by the core
//! gradient checker through the public APIs of three crates.

use ndarray::{Array2, Array3, ArrayD, Axis};
use rnnlab_cells::{BackwardOptions, Linear, LinearConfig, Lstm, LstmConfig, OutputGrad, Recurrent};
use rnnlab_core::{
    GradCheck, Layer, NamedInput, ParamView, ParamViewMut, Parameterized, check_fn, seeded_rng, visit_prefixed,
    visit_prefixed_mut,
};

struct Model {
    rnn: Recurrent<f64, Lstm<f64>>,
    head: Linear<f64>,
}

impl Parameterized<f64> for Model {
    fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, f64>)) {
        visit_prefixed("rnn", &self.rnn, v);
        visit_prefixed("head", &self.head, v);
    }
    fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, f64>)) {
        visit_prefixed_mut("rnn", &mut self.rnn, v);
        visit_prefixed_mut("head", &mut self.head, v);
    }
}

#[test]
fn stacked_lstm_with_head_and_mse_matches_finite_differences() {
    let mut rng = seeded_rng(5);
    let layers = vec![
        LstmConfig::new(3, 5).init(&mut rng).expect("sizes"),
        LstmConfig::new(5, 5).init(&mut rng).expect("sizes"),
    ];
    let mut model = Model {
        rnn: Recurrent::new(layers).expect("stack"),
        head: LinearConfig::new(5, 2).init(&mut rng).expect("sizes"),
    };
    let target = Array2::from_shape_fn((4, 2), |(b, k)| (b as f64 - k as f64) * 0.3);
    let x = Array3::from_shape_fn((6, 4, 3), |(t, b, k)| ((t * 12 + b * 3 + k) as f64 * 0.7).sin());
    let mut inputs: Vec<NamedInput> = vec![("x".into(), x.into_dyn())];
    let report = check_fn(&GradCheck::new(), &mut model, &mut inputs, |m, inputs| {
        let x: Array3<f64> = inputs[0]
            .1
            .clone()
            .into_dimensionality()
            .map_err(|e| rnnlab_core::Error::shape("test", "3-D input", e.to_string()))?;
        let fwd = m.rnn.forward(x.view(), None)?;
        let last = fwd.outputs.index_axis(Axis(0), 5);
        let (pred, cache) = m.head.forward(last)?;
        let diff = &pred - &target;
        let loss = diff.mapv(|d| d * d).mean().unwrap_or(0.0);
        let dpred = diff * (2.0 / target.len() as f64);
        let dlast = m.head.backward(&cache, dpred.view())?;
        let bwd = m.rnn.backward(&fwd.cache, OutputGrad::Last(dlast.view()), BackwardOptions::default())?;
        let dx: ArrayD<f64> = bwd.dx.map(|d| d.into_dyn()).unwrap_or_default();
        Ok((loss, vec![dx]))
    })
    .expect("check runs");
    assert!(report.max_rel_error() <= 1e-6, "{report}");
    assert_eq!(report.n_checked, model.n_params() + 6 * 4 * 3);
}
