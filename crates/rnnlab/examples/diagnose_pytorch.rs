//! Diagnose an LSTM trained (or just initialised) in PyTorch: load the `state_dict` that
//! `safetensors` saved, run a batch of the adding problem through it, and print where its
//! gradient vanishes.
//!
//! In Python (`pip install torch safetensors`):
//!
//! ```python
//! import torch
//! from torch import nn
//! from safetensors.torch import save_file
//!
//! torch.manual_seed(0)
//! m = nn.LSTM(input_size=2, hidden_size=64, num_layers=2)
//! # ... train m ...
//! save_file(m.state_dict(), "lstm.safetensors")
//! ```
//!
//! and then
//!
//! ```text
//! cargo run --release -p rnnlab --example diagnose_pytorch -- lstm.safetensors
//! ```
//!
//! Without an argument (as `cargo test` runs it, with no Python at hand) the example first
//! writes such a file itself: an `nn.LSTM(2, 64, num_layers=2)` at PyTorch's default
//! initialisation, every weight and bias uniform in (−1/√64, 1/√64), saved under PyTorch's names
//! (`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, …, `bias_hh_l1`) as float32 with
//! `format = "pt"` — the layout `save_file` writes. The draws are rnnlab's, not those of
//! `torch.manual_seed(0)`; the distribution is PyTorch's.

use std::path::PathBuf;

use rnnlab::ndarray::{Array2, Axis};
use rnnlab::prelude::*;

const INPUT: usize = 2;
const HIDDEN: usize = 64;
const LAYERS: usize = 2;

/// A two-layer LSTM stack of the sizes above, its weights drawn by `init` from `seed`.
fn lstm(init: Init, seed: u64) -> Result<Recurrent<f32, Lstm<f32>>> {
    let mut rng = seeded_rng(seed);
    let mut layers = Vec::with_capacity(LAYERS);
    for l in 0..LAYERS {
        let input = if l == 0 { INPUT } else { HIDDEN };
        let config = LstmConfig::new(input, HIDDEN)
            .with_w_ih_init(init.clone())
            .with_w_hh_init(init.clone())
            .with_bias_init(init.clone())
            .with_forget_bias(0.0); // PyTorch adds nothing to the forget gate
        layers.push(config.init(&mut rng)?);
    }
    Recurrent::new(layers)
}

fn main() -> Result<()> {
    let k = 1.0 / (HIDDEN as f64).sqrt();
    let torch_default = Init::Uniform { low: -k, high: k };

    // The weights file: the one given, or one written here in PyTorch's layout.
    let (path, written) = match std::env::args_os().nth(1) {
        Some(p) => (PathBuf::from(p), None),
        None => {
            let saved = lstm(torch_default.clone(), 0)?;
            let path = std::env::temp_dir().join(format!("rnnlab-diagnose-pytorch-{}.safetensors", std::process::id()));
            std::fs::write(&path, torch_rnn_weights_bytes(&saved)?)
                .map_err(|e| Error::io("diagnose_pytorch", path.display().to_string(), e))?;
            (path, Some(saved))
        }
    };

    // Load it into a model of the same architecture, its weights zero until then: names, shapes,
    // dtype and finiteness are all checked first, and nothing is written on a mismatch.
    let mut model = lstm(Init::Zeros, 1)?;
    let loaded = load_torch_rnn_weights_file(&path, &mut model, DtypePolicy::Exact);
    if written.is_some() {
        std::fs::remove_file(&path).map_err(|e| Error::io("diagnose_pytorch", path.display().to_string(), e))?;
    }
    loaded?;
    println!("loaded {} tensors ({} values) from {}", model.param_names().len(), model.n_params(), path.display());
    if let Some(saved) = &written {
        let same = saved.state_dict() == model.state_dict();
        println!("the weights read back are the ones written: {same}");
        assert!(same, "the safetensors round trip changed the weights");
    }

    // A batch of the adding problem at T = 200, and a last-step probe loss L = Σ_b ⟨g_b, h_{T−1,b}⟩
    // with g_b a fixed random unit vector per example: a state dict has no read-out, and the
    // curves, relative to the last step, do not depend on g's scale.
    let mut rng = seeded_rng(7);
    let batch = AddingConfig::new(200).build()?.sample::<f32>(32, &mut rng)?;
    let mut g: Array2<f32> = Init::Normal { mean: 0.0, std: 1.0 }.array2(32, HIDDEN, &mut rng)?;
    for mut row in g.axis_iter_mut(Axis(0)) {
        let norm = row.dot(&row).sqrt();
        row /= norm;
    }
    let report = diagnose(&mut model, batch.inputs.view(), OutputGrad::Last(g.view()), &DiagnoseConfig::new())?;
    println!("\n{report}");
    Ok(())
}
