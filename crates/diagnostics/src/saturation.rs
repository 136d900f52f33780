//! Saturation per step: what the cell's [`rnnlab_core::Probe`] reports for each step's buffers.

use rnnlab_cells::{Recurrent, SeqCache};
use rnnlab_core::{Cell, Error, Float, Result};
use serde::{Deserialize, Serialize};

/// One step's saturation statistics (see [`rnnlab_core::Saturation`] for the definitions).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepSaturation {
    /// The step t.
    pub step: usize,
    /// The fraction of units whose relative derivative φ′/sup φ′ is below ε.
    pub saturated: f64,
    /// The mean relative derivative.
    pub mean_derivative: f64,
    /// Each gate's mean activation, `(name, mean)` (LSTM i, f, g, o; GRU r, z, n).
    pub gates: Vec<(String, f64)>,
}

/// The saturation trace of every layer; a layer whose cell does not report saturation gets
/// `None` ("not available").
///
/// # Errors
/// [`Error::Config`] for `eps` outside (0, 1); [`Error::Shape`] for a cache of another model;
/// any error of the cell's probe.
pub fn saturation_trace<F: Float, C: Cell<F>>(
    model: &Recurrent<F, C>,
    cache: &SeqCache<F>,
    eps: f64,
) -> Result<Vec<Option<Vec<StepSaturation>>>> {
    let op = "saturation_trace";
    if !(eps.is_finite() && eps > 0.0 && eps < 1.0) {
        return Err(Error::config(op, format!("eps must be in (0, 1), got {eps}")));
    }
    let mut out = Vec::with_capacity(model.n_layers());
    for (l, cell) in model.layers().iter().enumerate() {
        let Some(probe) = cell.probe() else {
            out.push(None);
            continue;
        };
        let mut steps = Vec::with_capacity(cache.time());
        for t in 0..cache.time() {
            let step = cache
                .step_refs(l, t)
                .ok_or_else(|| Error::shape(op, format!("a cache with layer {l}, step {t}"), "none"))?;
            match probe.saturation(step, eps)? {
                Some(s) => steps.push(StepSaturation {
                    step: t,
                    saturated: s.fraction(),
                    mean_derivative: s.mean_derivative,
                    gates: s.gates.iter().map(|g| (g.name.to_string(), g.mean)).collect(),
                }),
                None => break,
            }
        }
        out.push((steps.len() == cache.time()).then_some(steps));
    }
    Ok(out)
}
