//! One normaliser inside a recurrent cell: γ, β and (batch norm) per-step running statistics,
//! with the step kernels of `rnnlab-norm` and the exact Jacobian–vector product.

use std::ops::Range;

use ndarray::{Array1, Array2, ArrayView2, Ix1};
use rnnlab_core::{Error, Float, Param, ParamView, ParamViewMut, Result, validate};
use rnnlab_norm::{
    batch_norm_backward_eval, batch_norm_backward_eval_add, batch_norm_backward_input, batch_norm_backward_input_add,
    batch_norm_forward_eval, batch_norm_forward_train, batch_norm_param_grads, batch_norm_update_running,
    layer_norm_backward_input, layer_norm_backward_input_add, layer_norm_forward, layer_norm_param_grads,
};
use serde::{Deserialize, Serialize};

use super::config::{NormConfig, NormKind};

/// y = γ ⊙ x̂ + β over `n` features, x̂ from layer or batch statistics (see [`NormKind`]).
///
/// `running_mean` / `running_var` are `[T_max, n]` for batch norm (row `min(t, T_max − 1)` per
/// step) and `[0, n]` for layer norm. They are buffers, not parameters: serialised, not visited.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "F: Float")]
pub(crate) struct NormUnit<F: Float> {
    gamma: Param<F, Ix1>,
    beta: Param<F, Ix1>,
    running_mean: Array2<F>,
    running_var: Array2<F>,
}

/// The length of the per-step `inv_std` buffer: one per row (layer) or per feature (batch).
pub(crate) fn inv_len(kind: NormKind, batch: usize, n: usize) -> usize {
    match kind {
        NormKind::Layer => batch,
        NormKind::Batch => n,
    }
}

fn contiguous<'a, F>(op: &str, a: &'a Array1<F>) -> Result<&'a [F]> {
    a.as_slice().ok_or_else(|| Error::shape(op, "a contiguous parameter", "a strided array"))
}

fn len(op: &str, what: &str, expected: usize, got: usize) -> Result<()> {
    validate::shape(op, what, &[expected], &[got])
}

impl<F: Float> NormUnit<F> {
    /// γ = `cfg.gamma_init`, β = 0, running means 0 and variances 1.
    pub(crate) fn new(cfg: &NormConfig, n: usize) -> Self {
        let t = match cfg.kind {
            NormKind::Layer => 0,
            NormKind::Batch => cfg.time_steps,
        };
        Self {
            gamma: Param::new(Array1::from_elem(n, F::of(cfg.gamma_init))),
            beta: Param::new(Array1::zeros(n)),
            running_mean: Array2::zeros((t, n)),
            running_var: Array2::ones((t, n)),
        }
    }

    /// The feature width n.
    pub(crate) fn n(&self) -> usize {
        self.gamma.value.len()
    }

    /// `Err` unless every array fits `n` features and `kind` (a hand-edited checkpoint).
    pub(crate) fn check(&self, op: &str, cfg: &NormConfig, n: usize) -> Result<()> {
        len(op, "normaliser gamma", n, self.gamma.value.len())?;
        len(op, "normaliser beta", n, self.beta.value.len())?;
        let t = match cfg.kind {
            NormKind::Layer => 0,
            NormKind::Batch => cfg.time_steps,
        };
        validate::shape(op, "running_mean", &[t, n], self.running_mean.shape())?;
        validate::shape(op, "running_var", &[t, n], self.running_var.shape())
    }

    /// The running means `[T_max, n]` (`[0, n]` for layer norm).
    pub(crate) fn running_mean(&self) -> ArrayView2<'_, F> {
        self.running_mean.view()
    }

    /// The running variances `[T_max, n]` (`[0, n]` for layer norm).
    pub(crate) fn running_var(&self) -> ArrayView2<'_, F> {
        self.running_var.view()
    }

    fn stats_row(&self, t: usize) -> Range<usize> {
        let n = self.n();
        let k = t.min(self.running_mean.nrows().saturating_sub(1));
        k * n..(k + 1) * n
    }

    /// Forward of step `t` over `x` `[rows, n]`: writes `y`, `xhat` (`rows · n`) and `inv_std`
    /// ([`inv_len`]). Batch norm in training (`batch_stats`) normalises with the batch's
    /// statistics and updates row `min(t, T_max − 1)` of the running ones (`stats`: 2n
    /// scratch values for the batch mean and variance); in evaluation it uses that row.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &mut self,
        cfg: &NormConfig,
        batch_stats: bool,
        t: usize,
        x: &[F],
        y: &mut [F],
        xhat: &mut [F],
        inv_std: &mut [F],
        stats: &mut [F],
    ) -> Result<()> {
        let op = "normaliser forward";
        let n = self.n();
        let eps = F::of(cfg.eps);
        let row = self.stats_row(t);
        let gamma = contiguous(op, &self.gamma.value)?;
        let beta = contiguous(op, &self.beta.value)?;
        match cfg.kind {
            NormKind::Layer => layer_norm_forward(x, n, eps, gamma, beta, y, xhat, inv_std),
            NormKind::Batch => {
                if self.running_mean.nrows() == 0 || stats.len() < 2 * n {
                    return Err(Error::shape(op, "running statistics and 2n scratch values", "none"));
                }
                let rm = self.running_mean.as_slice_mut().ok_or_else(|| Error::shape(op, "contiguous", "strided"))?;
                let rv = self.running_var.as_slice_mut().ok_or_else(|| Error::shape(op, "contiguous", "strided"))?;
                let (rm, rv) = (&mut rm[row.clone()], &mut rv[row]);
                if batch_stats {
                    let (mean, var) = stats[..2 * n].split_at_mut(n);
                    batch_norm_forward_train(x, n, eps, gamma, beta, y, xhat, inv_std, mean, var)?;
                    validate::finite_values(op, "batch mean", mean.iter().copied())?;
                    validate::finite_values(op, "batch variance", var.iter().copied())?;
                    batch_norm_update_running(mean, var, x.len() / n, F::of(cfg.momentum), rm, rv)
                } else {
                    batch_norm_forward_eval(x, n, eps, gamma, beta, rm, rv, y, xhat, inv_std)
                }
            }
        }
    }

    /// ∂L/∂x from `dy` (overwriting `dx`, or adding into it with `add`), in the mode of the
    /// forward (`batch_stats`). Touches no parameter gradient.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &self,
        kind: NormKind,
        batch_stats: bool,
        dy: &[F],
        xhat: &[F],
        inv_std: &[F],
        dx: &mut [F],
        add: bool,
    ) -> Result<()> {
        let n = self.n();
        let gamma = contiguous("normaliser backward", &self.gamma.value)?;
        match (kind, batch_stats, add) {
            (NormKind::Layer, _, false) => layer_norm_backward_input(dy, xhat, inv_std, gamma, n, dx),
            (NormKind::Layer, _, true) => layer_norm_backward_input_add(dy, xhat, inv_std, gamma, n, dx),
            (NormKind::Batch, true, false) => batch_norm_backward_input(dy, xhat, inv_std, gamma, n, dx),
            (NormKind::Batch, true, true) => batch_norm_backward_input_add(dy, xhat, inv_std, gamma, n, dx),
            (NormKind::Batch, false, false) => batch_norm_backward_eval(dy, inv_std, gamma, n, dx),
            (NormKind::Batch, false, true) => batch_norm_backward_eval_add(dy, inv_std, gamma, n, dx),
        }
    }

    /// The Jacobian–vector product `out` = γ ⊙ (∂x̂/∂x)·`dx` over `[rows, n]`. ∂x̂/∂x is
    /// symmetric, s·(I − 𝟙𝟙ᵀ/m − x̂x̂ᵀ/m) over the m values sharing statistics (the n features
    /// of a row for layer norm, the rows of a feature for training-mode batch norm), and
    /// diag(s) for evaluation-mode batch norm:
    ///
    /// ```text
    /// dx̂ = s·(dx − mean(dx) − x̂ ⊙ mean(x̂ ⊙ dx))
    /// ```
    pub(crate) fn jvp(
        &self,
        kind: NormKind,
        batch_stats: bool,
        dx: &[F],
        xhat: &[F],
        inv_std: &[F],
        out: &mut [F],
    ) -> Result<()> {
        let op = "normaliser jvp";
        let n = self.n();
        let rows = dx.len() / n.max(1);
        len(op, "tangent", rows * n, dx.len())?;
        len(op, "xhat", dx.len(), xhat.len())?;
        len(op, "output", dx.len(), out.len())?;
        len(op, "inv_std", inv_len(kind, rows, n), inv_std.len())?;
        let g = contiguous(op, &self.gamma.value)?;
        match (kind, batch_stats) {
            (NormKind::Layer, _) => {
                let m = F::of(n as f64);
                for r in 0..rows {
                    let (d, h, o) = (&dx[r * n..(r + 1) * n], &xhat[r * n..(r + 1) * n], &mut out[r * n..(r + 1) * n]);
                    let (mut m1, mut m2) = (F::zero(), F::zero());
                    for j in 0..n {
                        m1 += d[j];
                        m2 += h[j] * d[j];
                    }
                    let (m1, m2) = (m1 / m, m2 / m);
                    for j in 0..n {
                        o[j] = g[j] * inv_std[r] * (d[j] - m1 - h[j] * m2);
                    }
                }
            }
            (NormKind::Batch, true) => {
                let m = F::of(rows as f64);
                for j in 0..n {
                    let (mut m1, mut m2) = (F::zero(), F::zero());
                    for r in 0..rows {
                        m1 += dx[r * n + j];
                        m2 += xhat[r * n + j] * dx[r * n + j];
                    }
                    let (m1, m2) = (m1 / m, m2 / m);
                    for r in 0..rows {
                        let i = r * n + j;
                        out[i] = g[j] * inv_std[j] * (dx[i] - m1 - xhat[i] * m2);
                    }
                }
            }
            (NormKind::Batch, false) => {
                for r in 0..rows {
                    for j in 0..n {
                        out[r * n + j] = g[j] * inv_std[j] * dx[r * n + j];
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds ∂L/∂γ = Σ_rows dy ⊙ x̂ and ∂L/∂β = Σ_rows dy from `dy` `[rows, n]` (rows may be
    /// strided, each row contiguous) and the matching `xhat` (`rows · n`).
    pub(crate) fn add_param_grads(&mut self, kind: NormKind, dy: ArrayView2<'_, F>, xhat: &[F]) -> Result<()> {
        let op = "normaliser param grads";
        let n = self.n();
        validate::shape(op, "output gradient", &[dy.nrows(), n], dy.shape())?;
        len(op, "xhat", dy.nrows() * n, xhat.len())?;
        let dg = self.gamma.grad.as_slice_mut().ok_or_else(|| Error::shape(op, "contiguous", "strided"))?;
        let db = self.beta.grad.as_slice_mut().ok_or_else(|| Error::shape(op, "contiguous", "strided"))?;
        for (r, row) in dy.rows().into_iter().enumerate() {
            let dyr = row.to_slice().ok_or_else(|| Error::shape(op, "contiguous gradient rows", "strided"))?;
            let xr = &xhat[r * n..(r + 1) * n];
            match kind {
                NormKind::Layer => layer_norm_param_grads(dyr, xr, n, dg, db)?,
                NormKind::Batch => batch_norm_param_grads(dyr, xr, n, dg, db)?,
            }
        }
        Ok(())
    }

    /// Visits `{prefix}.gamma` and `{prefix}.beta`.
    pub(crate) fn visit(&self, prefix: &str, v: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        v(&format!("{prefix}.gamma"), self.gamma.view());
        v(&format!("{prefix}.beta"), self.beta.view());
    }

    /// Mutable twin of [`NormUnit::visit`].
    pub(crate) fn visit_mut(&mut self, prefix: &str, v: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        v(&format!("{prefix}.gamma"), self.gamma.view_mut());
        v(&format!("{prefix}.beta"), self.beta.view_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NormPlacement;

    /// ⟨u, J v⟩ = ⟨Jᵀ u, v⟩: the hand-written JVP against the norm crate's backward kernels.
    #[test]
    fn jvp_is_the_transpose_of_the_backward_kernels() {
        let (rows, n) = (3, 4);
        let x: Vec<f64> = (0..rows * n).map(|i| (i as f64 * 0.7).sin() * 2.0 + 0.1 * i as f64).collect();
        let v: Vec<f64> = (0..rows * n).map(|i| (i as f64 * 1.3).cos()).collect();
        let u: Vec<f64> = (0..rows * n).map(|i| (i as f64 * 0.4 + 1.0).sin()).collect();
        for (kind, batch_stats) in [(NormKind::Layer, true), (NormKind::Batch, true), (NormKind::Batch, false)] {
            let cfg = match kind {
                NormKind::Layer => NormConfig::layer(NormPlacement::Full),
                NormKind::Batch => NormConfig::batch(NormPlacement::Full, 2),
            }
            .with_gamma_init(0.7);
            let mut unit = NormUnit::<f64>::new(&cfg, n);
            let (mut y, mut xh, mut s, mut st) =
                (vec![0.0; rows * n], vec![0.0; rows * n], vec![0.0; inv_len(kind, rows, n)], vec![0.0; 2 * n]);
            unit.forward(&cfg, batch_stats, 0, &x, &mut y, &mut xh, &mut s, &mut st).unwrap();
            let mut jv = vec![0.0; rows * n];
            unit.jvp(kind, batch_stats, &v, &xh, &s, &mut jv).unwrap();
            let mut jtu = vec![0.0; rows * n];
            unit.backward(kind, batch_stats, &u, &xh, &s, &mut jtu, false).unwrap();
            let lhs: f64 = u.iter().zip(&jv).map(|(a, b)| a * b).sum();
            let rhs: f64 = jtu.iter().zip(&v).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-12 * (1.0 + lhs.abs()), "{kind:?} {batch_stats}: {lhs} vs {rhs}");
        }
    }
}
