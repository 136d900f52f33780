//! cells + optim: gradients flow from the per-step backward into a clipped optimizer step.

use ndarray::{Array2, Array3, Axis};
use rnnlab_cells::{BackwardOptions, Gru, GruConfig, OutputGrad, Recurrent};
use rnnlab_core::{Parameterized, seeded_rng};
use rnnlab_optim::{ClipConfig, Optimizer, SgdConfig, clip};

fn loss_and_grads(st: &mut Recurrent<f64, Gru<f64>>, x: &Array3<f64>, target: &Array2<f64>) -> f64 {
    st.zero_grad();
    let fwd = st.forward(x.view(), None).expect("valid input");
    let last = fwd.outputs.index_axis(Axis(0), x.shape()[0] - 1);
    let diff = &last - target;
    let loss = diff.mapv(|d| d * d).sum();
    let g = diff * 2.0;
    st.backward(&fwd.cache, OutputGrad::Last(g.view()), BackwardOptions::default().without_input_grad())
        .expect("valid grads");
    loss
}

#[test]
fn clipped_sgd_steps_reduce_the_loss_and_report_the_pre_clip_norm() {
    let mut st = Recurrent::new(vec![GruConfig::new(2, 6).init(&mut seeded_rng(2)).expect("sizes")]).expect("stack");
    let x = Array3::from_shape_fn((8, 3, 2), |(t, b, k)| ((t + 2 * b + k) as f64 * 0.4).cos());
    let target = Array2::from_elem((3, 6), 0.5);
    let mut opt = SgdConfig::new(0.05).init::<f64>().expect("lr");
    let first = loss_and_grads(&mut st, &x, &target);
    let mut last = first;
    for _ in 0..30 {
        let report = clip(&mut st, &ClipConfig::global_norm(0.5)).expect("finite");
        assert!(report.pre_norm.is_finite() && report.post_norm <= 0.5 + 1e-9);
        opt.step(&mut st).expect("step");
        last = loss_and_grads(&mut st, &x, &target);
    }
    assert!(last < 0.5 * first, "loss {first} -> {last}");
}
