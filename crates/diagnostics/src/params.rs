//! Parameter statistics: gradient and value norms, and the update-to-weight ratio of an
//! optimizer step.

use rnnlab_core::{Error, Float, Parameterized, Result};
use serde::{Deserialize, Serialize};

/// The statistics of one parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamStat {
    /// The parameter's stable name (`layers.0.w_hh`).
    pub name: String,
    /// ‖θ‖₂ (Frobenius), before the update when there is one.
    pub value_norm: f64,
    /// ‖∂L/∂θ‖₂.
    pub grad_norm: f64,
    /// ‖Δθ‖₂ of an optimizer step, when known.
    pub update_norm: Option<f64>,
    /// ‖Δθ‖₂ / ‖θ‖₂ (`None` without an update or for θ = 0); ~1e-3 is the usual healthy order.
    pub update_ratio: Option<f64>,
}

fn norm<F: Float>(v: impl Iterator<Item = F>) -> f64 {
    v.map(|x| x.as_f64().powi(2)).sum::<f64>().sqrt()
}

/// Value and gradient norms of every parameter, in visiting order.
///
/// # Examples
/// ```
/// use rnnlab_cells::RnnConfig;
/// use rnnlab_core::Parameterized;
/// let cell = RnnConfig::new(2, 3).init::<f64>(&mut rnnlab_core::seeded_rng(0))?;
/// let stats = rnnlab_diagnostics::param_stats(&cell);
/// assert_eq!(stats.len(), 4);
/// assert_eq!(stats[1].name, "w_hh");
/// assert!((stats[1].value_norm - 3f64.sqrt()).abs() < 1e-12); // orthogonal 3×3
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn param_stats<F: Float>(model: &dyn Parameterized<F>) -> Vec<ParamStat> {
    let mut out = Vec::new();
    model.visit_params(&mut |name, p| {
        out.push(ParamStat {
            name: name.to_string(),
            value_norm: norm(p.value.iter().copied()),
            grad_norm: norm(p.grad.iter().copied()),
            update_norm: None,
            update_ratio: None,
        });
    });
    out
}

/// The values and gradient norms of a model before an optimizer step; [`ParamSnapshot::after`]
/// turns them into update-to-weight ratios. An optimizer-step observer takes one before the
/// step (when the gradients are there) and calls `after` once the step is done.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSnapshot<F> {
    entries: Vec<(String, Vec<F>, f64)>,
}

impl<F: Float> ParamSnapshot<F> {
    /// Copies every parameter's value and records its gradient norm.
    pub fn take(model: &dyn Parameterized<F>) -> Self {
        let mut entries = Vec::new();
        model.visit_params(&mut |name, p| {
            entries.push((name.to_string(), p.value.iter().copied().collect(), norm(p.grad.iter().copied())));
        });
        Self { entries }
    }

    /// The statistics of the step from the snapshot to `model`'s current values:
    /// `value_norm` and `grad_norm` from the snapshot, `update_norm` = ‖θ_after − θ_before‖.
    ///
    /// # Errors
    /// [`Error::Shape`] if `model`'s parameters (names or sizes) are not the snapshot's.
    pub fn after(&self, model: &dyn Parameterized<F>) -> Result<Vec<ParamStat>> {
        let op = "ParamSnapshot::after";
        let mut out = Vec::with_capacity(self.entries.len());
        let mut i = 0;
        let mut bad = None;
        model.visit_params(&mut |name, p| {
            match self.entries.get(i) {
                Some((n, before, g)) if n == name && before.len() == p.value.len() => {
                    let value_norm = norm(before.iter().copied());
                    let update = norm(p.value.iter().zip(before).map(|(&a, &b)| a - b));
                    out.push(ParamStat {
                        name: name.to_string(),
                        value_norm,
                        grad_norm: *g,
                        update_norm: Some(update),
                        update_ratio: (value_norm > 0.0).then(|| update / value_norm),
                    });
                }
                _ => {
                    if bad.is_none() {
                        bad = Some(format!("{name} ({} values) at position {i}", p.value.len()));
                    }
                }
            }
            i += 1;
        });
        if let Some(got) = bad.or_else(|| (i != self.entries.len()).then(|| format!("{i} parameters"))) {
            return Err(Error::shape(op, format!("the snapshot's {} parameters", self.entries.len()), got));
        }
        Ok(out)
    }
}
