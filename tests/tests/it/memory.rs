//! Truncated BPTT over long sequences runs in memory bounded by the chunk, not the sequence.

use ndarray::Array3;
use rnnlab_cells::{LstmConfig, Recurrent};
use rnnlab_core::seeded_rng;

use crate::alloc_counter::{peak, reset_peak};

/// Peak bytes allocated during a truncated pass (k = 100) of an LSTM, batch 1, H = 64, over
/// `t_len` steps, beyond what was live before (the input itself).
fn peak_of_truncated_pass(t_len: usize) -> (i64, i64) {
    let mut st: Recurrent<f32, _> =
        Recurrent::new(vec![LstmConfig::new(2, 64).init(&mut seeded_rng(0)).expect("valid sizes")]).expect("one layer");
    let x = Array3::from_shape_fn((t_len, 1, 2), |(t, _, k)| ((t * 3 + k) as f32 * 0.01).sin());
    let before = reset_peak();
    let run = st.truncated(x.view(), None, 100, |_, out| Ok(Array3::ones(out.raw_dim()))).expect("valid input");
    let used = peak() - before;
    // The per-step gradient norms returned are O(T) by design (8 bytes per step and layer).
    (used, run.h_grad_norms.iter().map(|n| (n.capacity() * 8) as i64).sum())
}

#[test]
fn truncated_bptt_peak_memory_does_not_grow_with_sequence_length() {
    // Warm up once so lazily initialised statics do not count.
    peak_of_truncated_pass(200);
    let (short, short_norms) = peak_of_truncated_pass(1_000);
    let (long, long_norms) = peak_of_truncated_pass(10_000);
    let growth = long - short;
    let norms_growth = long_norms - short_norms;
    eprintln!(
        "truncated BPTT (k = 100, LSTM H = 64, batch 1): peak {short} B at T = 1,000, {long} B at T = 10,000 \
         (of which per-step norms {short_norms} and {long_norms} B)"
    );
    // Everything but the O(T) norm vector must be the same; allow 16 KiB of slack.
    assert!(growth <= norms_growth + 16 * 1024, "peak grew by {growth} B, norms by {norms_growth} B");
}
