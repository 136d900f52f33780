//! Same seed, same bits: a short training run repeated, or run with another thread count,
//! gives identical parameters.

use ndarray::{Array2, Array3, Axis};
use rnnlab_cells::{BackwardOptions, LstmConfig, OutputGrad, Recurrent};
use rnnlab_core::{Parameterized, seeded_rng};
use rnnlab_optim::{AdamConfig, Optimizer};

/// FNV-1a over the bits of every parameter after a few Adam steps of an LSTM (H = 128, T = 20,
/// batch 32), with buffers recycled between steps (a reused buffer must not leak old values).
fn training_digest() -> u64 {
    let mut st: Recurrent<f32, _> =
        Recurrent::new(vec![LstmConfig::new(16, 128).init(&mut seeded_rng(3)).expect("sizes")]).expect("stack");
    let mut opt = AdamConfig::new(1e-3).init::<f32>().expect("lr");
    let x = Array3::from_shape_fn((20, 32, 16), |(t, b, k)| ((t * 512 + b * 16 + k) as f32 * 0.013).sin());
    for _ in 0..3 {
        st.zero_grad();
        let fwd = st.forward(x.view(), None).expect("input");
        let last = fwd.outputs.index_axis(Axis(0), 19).to_owned();
        let g: Array2<f32> = last.mapv(|v| v - 0.1);
        let bwd = st.backward(&fwd.cache, OutputGrad::Last(g.view()), BackwardOptions::default()).expect("grads");
        st.recycle(fwd.cache);
        st.recycle_grads(bwd);
        opt.step(&mut st).expect("step");
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    st.visit_params(&mut |_, p| {
        for v in p.value.iter() {
            h = (h ^ u64::from(v.to_bits())).wrapping_mul(0x0100_0000_01b3);
        }
    });
    h
}

#[test]
fn the_same_run_gives_the_same_bits() {
    assert_eq!(training_digest(), training_digest());
}

#[test]
fn the_thread_count_does_not_change_a_bit() {
    // The all-step products of this run are big enough to be cut between threads (see
    // `rnnlab_cells::threads`); every element is the same multiply-add chain either way.
    let digests: Vec<u64> = [1, 2, 3]
        .into_iter()
        .map(|n| {
            rnnlab_cells::set_threads(n);
            training_digest()
        })
        .collect();
    rnnlab_cells::set_threads(1);
    assert_eq!(digests[0], digests[1]);
    assert_eq!(digests[0], digests[2]);
}
