//! Allocation-free batch-norm kernels over plain row-major slices `[batch, n]` (statistics per
//! feature over the batch; Ioffe & Szegedy 2015), with the backward to the input split from the
//! parameter gradients so that a recurrent cell can call them per step (Cooijmans et al. 2016).

use rnnlab_core::{Error, Float, Result};

use crate::checks;

/// Training-mode batch-norm forward over `x` `[B, n]` (B = `x.len() / n` ≥ 1), per feature j:
///
/// ```text
/// µ_j = (1/B) Σ_b x_bj,   σ²_j = (1/B) Σ_b (x_bj − µ_j)²   (biased)
/// s_j = 1/√(σ²_j + ε),    x̂_bj = (x_bj − µ_j)·s_j,   y_bj = γ_j x̂_bj + β_j
/// ```
///
/// Writes `y`, `xhat` (`x.len()`), and per feature `inv_std` (s), `mean` (µ) and `var` (the
/// BIASED σ², as used for normalising; [`batch_norm_update_running`] turns it into the unbiased
/// estimate). A batch of one, or a constant feature, has σ² = 0: x̂ = 0 and y = β, finite
/// because ε > 0. Inputs are not checked for NaN/∞ here (they show up in `mean`/`var`, which
/// [`crate::BatchNorm::forward_step`] checks). No allocation.
///
/// # Errors
/// [`rnnlab_core::Error::Config`] for `n = 0` or `eps` not finite and > 0;
/// [`rnnlab_core::Error::Shape`] for an empty batch, a length of `x` that is not a multiple of
/// `n`, or any other slice of the wrong length (`y`, `xhat`: `x.len()`; `gamma`, `beta`,
/// `inv_std`, `mean`, `var`: `n`).
///
/// # Examples
/// ```
/// use rnnlab_norm::batch_norm_forward_train;
/// // one feature over a batch of 2: x = [1, 3], µ = 2, σ² = 1
/// let (mut y, mut xh, mut s, mut m, mut v) = ([0.0; 2], [0.0; 2], [0.0], [0.0], [0.0]);
/// batch_norm_forward_train(&[1.0f64, 3.0], 1, 1e-5, &[1.0], &[0.0], &mut y, &mut xh, &mut s, &mut m, &mut v)?;
/// assert_eq!((m[0], v[0]), (2.0, 1.0));
/// assert!((y[1] - 1.0 / (1.0f64 + 1e-5).sqrt()).abs() < 1e-12);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward_train<F: Float>(
    x: &[F],
    n: usize,
    eps: F,
    gamma: &[F],
    beta: &[F],
    y: &mut [F],
    xhat: &mut [F],
    inv_std: &mut [F],
    mean: &mut [F],
    var: &mut [F],
) -> Result<()> {
    let op = "batch_norm_forward_train";
    let rows = checks::rows(op, n, x.len())?;
    if rows == 0 {
        return Err(Error::shape(op, "a batch of at least 1 row", "0 rows"));
    }
    check_common(op, x.len(), n, eps, gamma, beta, y.len(), xhat.len(), inv_std.len())?;
    checks::len(op, "mean", n, mean.len())?;
    checks::len(op, "var", n, var.len())?;
    let bf = F::of(rows as f64);
    mean.fill(F::zero());
    var.fill(F::zero());
    for xr in x.chunks_exact(n) {
        for j in 0..n {
            mean[j] += xr[j];
        }
    }
    mean.iter_mut().for_each(|m| *m /= bf);
    for xr in x.chunks_exact(n) {
        for j in 0..n {
            let d = xr[j] - mean[j];
            var[j] += d * d;
        }
    }
    var.iter_mut().for_each(|v| *v /= bf);
    for j in 0..n {
        inv_std[j] = (var[j] + eps).sqrt().recip();
    }
    normalise(x, n, mean, inv_std, gamma, beta, y, xhat);
    Ok(())
}

/// Evaluation-mode batch-norm forward with fixed (running) statistics, per feature j:
///
/// ```text
/// s_j = 1/√(var_j + ε),   x̂_bj = (x_bj − mean_j)·s_j,   y_bj = γ_j x̂_bj + β_j
/// ```
///
/// Writes `y` and `xhat` (`x.len()`) and `inv_std` (s, per feature): the statistics do not
/// depend on the batch, so the backward is [`batch_norm_backward_eval`], and x̂ is what
/// [`batch_norm_param_grads`] needs. Any batch size works, including 0 rows. No allocation.
///
/// # Errors
/// [`rnnlab_core::Error::Config`] for `n = 0`, `eps` not finite and > 0, or a negative entry of
/// `running_var`; [`rnnlab_core::Error::NonFinite`] for a non-finite running statistic;
/// [`rnnlab_core::Error::Shape`] for slices of the wrong length (`y`, `xhat`: `x.len()`;
/// `gamma`, `beta`, `running_mean`, `running_var`, `inv_std`: `n`).
///
/// # Examples
/// ```
/// use rnnlab_norm::batch_norm_forward_eval;
/// let (mut y, mut xh, mut s) = ([0.0; 1], [0.0; 1], [0.0; 1]);
/// // (5 − 1)/√(4 + ε)·2 + 1 ≈ 5
/// batch_norm_forward_eval(&[5.0f64], 1, 1e-5, &[2.0], &[1.0], &[1.0], &[4.0], &mut y, &mut xh, &mut s)?;
/// assert!((y[0] - 5.0).abs() < 1e-4);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward_eval<F: Float>(
    x: &[F],
    n: usize,
    eps: F,
    gamma: &[F],
    beta: &[F],
    running_mean: &[F],
    running_var: &[F],
    y: &mut [F],
    xhat: &mut [F],
    inv_std: &mut [F],
) -> Result<()> {
    let op = "batch_norm_forward_eval";
    checks::rows(op, n, x.len())?;
    check_common(op, x.len(), n, eps, gamma, beta, y.len(), xhat.len(), inv_std.len())?;
    checks::len(op, "running_mean", n, running_mean.len())?;
    checks::len(op, "running_var", n, running_var.len())?;
    rnnlab_core::validate::finite_values(op, "running_mean", running_mean.iter().copied())?;
    rnnlab_core::validate::finite_values(op, "running_var", running_var.iter().copied())?;
    if let Some(v) = running_var.iter().find(|v| **v < F::zero()) {
        return Err(Error::config(op, format!("running_var must be >= 0, got {v}")));
    }
    for j in 0..n {
        inv_std[j] = (running_var[j] + eps).sqrt().recip();
    }
    normalise(x, n, running_mean, inv_std, gamma, beta, y, xhat);
    Ok(())
}

/// Training-mode backward to the input through the batch statistics, OVERWRITING `dx`
/// `[B, n]`; touches no parameter gradient. With g = dy ⊙ γ, per feature j over the batch:
///
/// ```text
/// ∂L/∂x_bj = s_j/B · (B·g_bj − Σ_b' g_b'j − x̂_bj · Σ_b' g_b'j x̂_b'j)
/// ```
///
/// `xhat` and `inv_std` are what [`batch_norm_forward_train`] wrote. For B = 1 (x̂ = 0) the
/// result is exactly 0: the output β does not depend on x. No allocation (column sums are taken
/// feature by feature).
///
/// # Errors
/// [`rnnlab_core::Error::Config`] for `n = 0`; [`rnnlab_core::Error::Shape`] if `dy.len()` is
/// not a multiple of `n` or `xhat`, `dx` (`dy.len()`), `inv_std` or `gamma` (`n`) have other
/// lengths.
///
/// # Examples
/// ```
/// use rnnlab_norm::batch_norm_backward_input;
/// // a gradient equal for every batch row is removed by the mean subtraction
/// let mut dx = [5.0f64; 2];
/// batch_norm_backward_input(&[1.0, 1.0], &[-1.0, 1.0], &[1.0], &[1.0], 1, &mut dx)?;
/// assert_eq!(dx, [0.0, 0.0]);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn batch_norm_backward_input<F: Float>(
    dy: &[F],
    xhat: &[F],
    inv_std: &[F],
    gamma: &[F],
    n: usize,
    dx: &mut [F],
) -> Result<()> {
    backward_train("batch_norm_backward_input", dy, xhat, inv_std, gamma, n, dx, false)
}

/// [`batch_norm_backward_input`] that ADDS ∂L/∂x into `dx` instead of overwriting it.
///
/// # Errors
/// As [`batch_norm_backward_input`].
///
/// # Examples
/// ```
/// use rnnlab_norm::batch_norm_backward_input_add;
/// // x̂ = [−1, 1], s = 1, γ = 1, dy = [0, 1]: ½(2·[0, 1] − 1 − [−1, 1]·1) = [0, 0]
/// let mut dx = [1.0f64, 2.0];
/// batch_norm_backward_input_add(&[0.0, 1.0], &[-1.0, 1.0], &[1.0], &[1.0], 1, &mut dx)?;
/// assert_eq!(dx, [1.0, 2.0]);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn batch_norm_backward_input_add<F: Float>(
    dy: &[F],
    xhat: &[F],
    inv_std: &[F],
    gamma: &[F],
    n: usize,
    dx: &mut [F],
) -> Result<()> {
    backward_train("batch_norm_backward_input_add", dy, xhat, inv_std, gamma, n, dx, true)
}

/// Evaluation-mode backward to the input, OVERWRITING `dx` `[B, n]`: the statistics are
/// constants, so ∂L/∂x_bj = dy_bj · γ_j · s_j with s from [`batch_norm_forward_eval`].
///
/// # Errors
/// [`rnnlab_core::Error::Config`] for `n = 0`; [`rnnlab_core::Error::Shape`] if `dy.len()` is
/// not a multiple of `n`, `dx.len() ≠ dy.len()` or `inv_std`/`gamma` are not of length `n`.
///
/// # Examples
/// ```
/// use rnnlab_norm::batch_norm_backward_eval;
/// let mut dx = [0.0f64; 2];
/// batch_norm_backward_eval(&[1.0, 2.0], &[0.5], &[3.0], 1, &mut dx)?;
/// assert_eq!(dx, [1.5, 3.0]);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn batch_norm_backward_eval<F: Float>(dy: &[F], inv_std: &[F], gamma: &[F], n: usize, dx: &mut [F]) -> Result<()> {
    backward_eval("batch_norm_backward_eval", dy, inv_std, gamma, n, dx, false)
}

/// [`batch_norm_backward_eval`] that ADDS into `dx`.
///
/// # Errors
/// As [`batch_norm_backward_eval`].
///
/// # Examples
/// ```
/// use rnnlab_norm::batch_norm_backward_eval_add;
/// let mut dx = [1.0f64; 2];
/// batch_norm_backward_eval_add(&[1.0, 2.0], &[0.5], &[3.0], 1, &mut dx)?;
/// assert_eq!(dx, [2.5, 4.0]);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn batch_norm_backward_eval_add<F: Float>(
    dy: &[F],
    inv_std: &[F],
    gamma: &[F],
    n: usize,
    dx: &mut [F],
) -> Result<()> {
    backward_eval("batch_norm_backward_eval_add", dy, inv_std, gamma, n, dx, true)
}

/// ADDS the parameter gradients of batch norm (either mode): `dgamma += Σ_rows dy ⊙ x̂`,
/// `dbeta += Σ_rows dy`. Call it over all steps' `[T·B, n]` buffers at once (γ and β are shared
/// across time steps), or per step. No allocation.
///
/// # Errors
/// [`rnnlab_core::Error::Config`] for `n = 0`; [`rnnlab_core::Error::Shape`] if `dy.len()` is
/// not a multiple of `n`, `xhat.len() ≠ dy.len()` or `dgamma`/`dbeta` are not of length `n`.
///
/// # Examples
/// ```
/// use rnnlab_norm::batch_norm_param_grads;
/// let (mut dg, mut db) = ([0.0f64], [0.0f64]);
/// batch_norm_param_grads(&[1.0, 2.0], &[-1.0, 1.0], 1, &mut dg, &mut db)?;
/// assert_eq!((dg[0], db[0]), (1.0, 3.0));
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn batch_norm_param_grads<F: Float>(
    dy: &[F],
    xhat: &[F],
    n: usize,
    dgamma: &mut [F],
    dbeta: &mut [F],
) -> Result<()> {
    let op = "batch_norm_param_grads";
    checks::rows(op, n, dy.len())?;
    checks::len(op, "xhat", dy.len(), xhat.len())?;
    checks::len(op, "dgamma", n, dgamma.len())?;
    checks::len(op, "dbeta", n, dbeta.len())?;
    checks::add_affine_grads(dy, xhat, n, dgamma, dbeta);
    Ok(())
}

/// Updates running statistics from one training batch of `batch` rows, as PyTorch's
/// `BatchNorm1d` does:
///
/// ```text
/// running_mean ← (1 − m)·running_mean + m·mean
/// running_var  ← (1 − m)·running_var  + m·var·B/(B − 1)     (the UNBIASED batch variance)
/// ```
///
/// with `var` the biased batch variance from [`batch_norm_forward_train`]. With `batch = 1` the
/// unbiased variance is undefined (0/0): `running_mean` is updated and `running_var` is LEFT
/// UNCHANGED (PyTorch raises an error in that case instead). No allocation.
///
/// # Errors
/// [`rnnlab_core::Error::Config`] for `batch = 0` or `momentum` outside `[0, 1]` (or not
/// finite); [`rnnlab_core::Error::Shape`] unless `var`, `running_mean` and `running_var` have
/// the length of `mean`.
///
/// # Examples
/// ```
/// use rnnlab_norm::batch_norm_update_running;
/// let (mut rm, mut rv) = ([0.0f64], [1.0f64]);
/// // batch [1, 3]: mean 2, biased var 1, unbiased 2
/// batch_norm_update_running(&[2.0], &[1.0], 2, 0.1, &mut rm, &mut rv)?;
/// assert!((rm[0] - 0.2).abs() < 1e-15 && (rv[0] - 1.1).abs() < 1e-15);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn batch_norm_update_running<F: Float>(
    mean: &[F],
    var: &[F],
    batch: usize,
    momentum: F,
    running_mean: &mut [F],
    running_var: &mut [F],
) -> Result<()> {
    let op = "batch_norm_update_running";
    rnnlab_core::validate::positive_size(op, "batch", batch)?;
    checks::momentum(op, momentum.as_f64())?;
    checks::len(op, "var", mean.len(), var.len())?;
    checks::len(op, "running_mean", mean.len(), running_mean.len())?;
    checks::len(op, "running_var", mean.len(), running_var.len())?;
    let keep = F::one() - momentum;
    for (r, &m) in running_mean.iter_mut().zip(mean) {
        *r = keep * *r + momentum * m;
    }
    if batch > 1 {
        let bessel = F::of(batch as f64 / (batch - 1) as f64);
        for (r, &v) in running_var.iter_mut().zip(var) {
            *r = keep * *r + momentum * v * bessel;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn check_common<F: Float>(
    op: &str,
    x_len: usize,
    n: usize,
    eps: F,
    gamma: &[F],
    beta: &[F],
    y_len: usize,
    xhat_len: usize,
    inv_std_len: usize,
) -> Result<()> {
    checks::eps(op, eps)?;
    checks::len(op, "gamma", n, gamma.len())?;
    checks::len(op, "beta", n, beta.len())?;
    checks::len(op, "y", x_len, y_len)?;
    checks::len(op, "xhat", x_len, xhat_len)?;
    checks::len(op, "inv_std", n, inv_std_len)
}

/// x̂ = (x − mean)·s and y = γ x̂ + β, row by row (lengths checked by the caller).
#[allow(clippy::too_many_arguments)]
fn normalise<F: Float>(
    x: &[F],
    n: usize,
    mean: &[F],
    inv_std: &[F],
    gamma: &[F],
    beta: &[F],
    y: &mut [F],
    xhat: &mut [F],
) {
    for ((xr, hr), yr) in x.chunks_exact(n).zip(xhat.chunks_exact_mut(n)).zip(y.chunks_exact_mut(n)) {
        for j in 0..n {
            let h = (xr[j] - mean[j]) * inv_std[j];
            hr[j] = h;
            yr[j] = gamma[j] * h + beta[j];
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn backward_train<F: Float>(
    op: &str,
    dy: &[F],
    xhat: &[F],
    inv_std: &[F],
    gamma: &[F],
    n: usize,
    dx: &mut [F],
    add: bool,
) -> Result<()> {
    let rows = checks::rows(op, n, dy.len())?;
    checks::len(op, "xhat", dy.len(), xhat.len())?;
    checks::len(op, "inv_std", n, inv_std.len())?;
    checks::len(op, "gamma", n, gamma.len())?;
    checks::len(op, "dx", dy.len(), dx.len())?;
    if rows == 0 {
        return Ok(());
    }
    let bf = F::of(rows as f64);
    for j in 0..n {
        let (mut sum_g, mut sum_gh) = (F::zero(), F::zero());
        for b in 0..rows {
            let g = dy[b * n + j] * gamma[j];
            sum_g += g;
            sum_gh += g * xhat[b * n + j];
        }
        let k = inv_std[j] / bf;
        for b in 0..rows {
            let i = b * n + j;
            let v = k * (bf * dy[i] * gamma[j] - sum_g - xhat[i] * sum_gh);
            if add {
                dx[i] += v;
            } else {
                dx[i] = v;
            }
        }
    }
    Ok(())
}

fn backward_eval<F: Float>(
    op: &str,
    dy: &[F],
    inv_std: &[F],
    gamma: &[F],
    n: usize,
    dx: &mut [F],
    add: bool,
) -> Result<()> {
    checks::rows(op, n, dy.len())?;
    checks::len(op, "inv_std", n, inv_std.len())?;
    checks::len(op, "gamma", n, gamma.len())?;
    checks::len(op, "dx", dy.len(), dx.len())?;
    for (dyr, dxr) in dy.chunks_exact(n).zip(dx.chunks_exact_mut(n)) {
        for j in 0..n {
            let v = dyr[j] * gamma[j] * inv_std[j];
            if add {
                dxr[j] += v;
            } else {
                dxr[j] = v;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BatchNormConfig;
    use ndarray::{Array2, ArrayD};
    use rnnlab_core::{GradCheck, NamedInput, Parameterized, check_fn};

    fn input(rows: usize, n: usize) -> Array2<f64> {
        Array2::from_shape_fn((rows, n), |(i, j)| ((i * n + j) as f64 * 0.83 + 0.1).sin() * (1.0 + j as f64) + 0.3)
    }

    /// L = Σ R ⊙ BN(x) through the kernels only (train or eval mode), parameter gradients added
    /// afterwards from (dy, x̂); `add` exercises the accumulating backward.
    fn kernel_loss(
        bn: &mut crate::BatchNorm<f64>,
        inputs: &[NamedInput],
        r: &Array2<f64>,
        train: bool,
        add: bool,
    ) -> Result<(f64, Vec<ArrayD<f64>>)> {
        let x = inputs[0].1.as_slice().unwrap();
        let n = r.ncols();
        let (mut y, mut xh) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        let (mut s, mut m, mut v) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let gamma = bn.gamma().value.to_vec();
        let beta = bn.beta().value.to_vec();
        let (rm, rv) = ([0.3, -0.2, 1.0], [0.5, 2.0, 0.1]);
        if train {
            batch_norm_forward_train(x, n, 1e-5, &gamma, &beta, &mut y, &mut xh, &mut s, &mut m, &mut v)?;
        } else {
            batch_norm_forward_eval(x, n, 1e-5, &gamma, &beta, &rm, &rv, &mut y, &mut xh, &mut s)?;
        }
        let rs = r.as_slice().unwrap();
        let loss: f64 = y.iter().zip(rs).map(|(a, b)| a * b).sum();
        let offset = -0.4;
        let mut dx = vec![if add { offset } else { 3.0 }; x.len()];
        match (train, add) {
            (true, false) => batch_norm_backward_input(rs, &xh, &s, &gamma, n, &mut dx)?,
            (true, true) => batch_norm_backward_input_add(rs, &xh, &s, &gamma, n, &mut dx)?,
            (false, false) => batch_norm_backward_eval(rs, &s, &gamma, n, &mut dx)?,
            (false, true) => batch_norm_backward_eval_add(rs, &s, &gamma, n, &mut dx)?,
        }
        if add {
            dx.iter_mut().for_each(|d| *d -= offset);
        }
        let (mut dg, mut db) = (vec![0.0; n], vec![0.0; n]);
        batch_norm_param_grads(rs, &xh, n, &mut dg, &mut db)?;
        bn.visit_params_mut(&mut |name, mut p| {
            let src = if name == "gamma" { &dg } else { &db };
            p.grad.iter_mut().zip(src).for_each(|(g, v)| *g += v);
        });
        Ok((loss, vec![ArrayD::from_shape_vec(inputs[0].1.shape(), dx).unwrap()]))
    }

    #[test]
    fn kernels_match_finite_differences_in_both_modes() {
        let r = Array2::from_shape_fn((4, 3), |(i, j)| ((i * 3 + j) as f64 * 1.7).cos());
        for train in [true, false] {
            for add in [false, true] {
                let mut bn = BatchNormConfig::new(3).with_gamma_init(0.1).init::<f64>().unwrap();
                bn.visit_params_mut(&mut |_, mut p| {
                    p.value.iter_mut().enumerate().for_each(|(i, v)| *v += 0.3 * i as f64)
                });
                let mut inputs = vec![("x".to_string(), input(4, 3).into_dyn())];
                let rep =
                    check_fn(&GradCheck::new(), &mut bn, &mut inputs, |m, inp| kernel_loss(m, inp, &r, train, add))
                        .unwrap();
                assert_eq!(rep.n_checked, 12 + 6);
                assert!(rep.max_rel_error() <= 1e-6, "train = {train}, add = {add}: {rep}");
            }
        }
    }

    #[test]
    fn hand_values_train_and_running_update() {
        // feature 0: x = [1, 3, 8]: µ = 4, σ² = (9 + 1 + 16)/3 = 26/3, unbiased 13
        // feature 1: x = [2, 2, 2]: µ = 2, σ² = 0 → x̂ = 0, y = β = −1
        let x = [1.0f64, 2.0, 3.0, 2.0, 8.0, 2.0];
        let (mut y, mut xh) = ([0.0; 6], [0.0; 6]);
        let (mut s, mut m, mut v) = ([0.0; 2], [0.0; 2], [0.0; 2]);
        batch_norm_forward_train(&x, 2, 1e-5, &[2.0, 1.0], &[0.5, -1.0], &mut y, &mut xh, &mut s, &mut m, &mut v)
            .unwrap();
        assert_eq!(m, [4.0, 2.0]);
        assert!((v[0] - 26.0 / 3.0).abs() < 1e-14 && v[1] == 0.0);
        let s0 = 1.0 / (26.0f64 / 3.0 + 1e-5).sqrt();
        assert!((y[4] - (2.0 * 4.0 * s0 + 0.5)).abs() < 1e-13);
        assert_eq!([y[1], y[3], y[5]], [-1.0; 3]);
        // running: mean 0.9·0 + 0.1·[4, 2] = [0.4, 0.2]; var 0.9·1 + 0.1·[13, 0] = [2.2, 0.9]
        let (mut rm, mut rv) = ([0.0; 2], [1.0; 2]);
        batch_norm_update_running(&m, &v, 3, 0.1, &mut rm, &mut rv).unwrap();
        assert!((rm[0] - 0.4).abs() < 1e-15 && (rm[1] - 0.2).abs() < 1e-15);
        assert!((rv[0] - 2.2).abs() < 1e-14 && (rv[1] - 0.9).abs() < 1e-15);
    }

    #[test]
    fn batch_of_one_gives_beta_zero_input_gradient_and_keeps_running_var() {
        let (mut y, mut xh) = ([0.0f32; 2], [0.0f32; 2]);
        let (mut s, mut m, mut v) = ([0.0f32; 2], [0.0f32; 2], [0.0f32; 2]);
        batch_norm_forward_train(
            &[3.0f32, -7.0],
            2,
            1e-5,
            &[0.1; 2],
            &[0.25, 0.5],
            &mut y,
            &mut xh,
            &mut s,
            &mut m,
            &mut v,
        )
        .unwrap();
        assert_eq!(y, [0.25, 0.5]);
        assert!(s.iter().all(|s| s.is_finite()));
        let mut dx = [9.0f32; 2];
        batch_norm_backward_input(&[1.0, -1.0], &xh, &s, &[0.1; 2], 2, &mut dx).unwrap();
        assert_eq!(dx, [0.0, 0.0]);
        let (mut rm, mut rv) = ([0.0f32; 2], [1.0f32; 2]);
        batch_norm_update_running(&m, &v, 1, 0.1, &mut rm, &mut rv).unwrap();
        assert!((rm[0] - 0.3).abs() < 1e-7 && (rm[1] + 0.7).abs() < 1e-7);
        assert_eq!(rv, [1.0, 1.0], "running variance untouched for a batch of one");
    }

    #[test]
    fn forward_train_rejects_empty_batch() {
        let e = batch_norm_forward_train::<f64>(
            &[],
            2,
            1e-5,
            &[1.0; 2],
            &[0.0; 2],
            &mut [],
            &mut [],
            &mut [0.0; 2],
            &mut [0.0; 2],
            &mut [0.0; 2],
        );
        assert!(matches!(e, Err(Error::Shape { .. })), "{e:?}");
    }

    #[test]
    fn forward_train_rejects_zero_n_and_bad_eps() {
        let e = batch_norm_forward_train::<f64>(
            &[1.0],
            0,
            1e-5,
            &[],
            &[],
            &mut [0.0],
            &mut [0.0],
            &mut [],
            &mut [],
            &mut [],
        );
        assert!(matches!(e, Err(Error::Config { .. })));
        let e = batch_norm_forward_train(
            &[1.0],
            1,
            0.0,
            &[1.0],
            &[0.0],
            &mut [0.0],
            &mut [0.0],
            &mut [0.0],
            &mut [0.0],
            &mut [0.0],
        );
        assert!(matches!(e, Err(Error::Config { .. })));
    }

    #[test]
    fn forward_train_rejects_each_bad_length() {
        let x = [1.0f64, 2.0, 3.0, 4.0];
        #[allow(clippy::too_many_arguments)]
        let run = |x: &[f64], g: usize, b: usize, y: usize, h: usize, s: usize, m: usize, v: usize| {
            let (g, b) = (vec![1.0; g], vec![0.0; b]);
            let (mut y, mut h, mut s, mut m, mut v) =
                (vec![0.0; y], vec![0.0; h], vec![0.0; s], vec![0.0; m], vec![0.0; v]);
            batch_norm_forward_train(x, 2, 1e-5, &g, &b, &mut y, &mut h, &mut s, &mut m, &mut v)
        };
        assert!(run(&x, 2, 2, 4, 4, 2, 2, 2).is_ok());
        for (case, r) in [
            ("ragged", run(&x[..3], 2, 2, 3, 3, 2, 2, 2)),
            ("gamma", run(&x, 1, 2, 4, 4, 2, 2, 2)),
            ("beta", run(&x, 2, 3, 4, 4, 2, 2, 2)),
            ("y", run(&x, 2, 2, 3, 4, 2, 2, 2)),
            ("xhat", run(&x, 2, 2, 4, 5, 2, 2, 2)),
            ("inv_std", run(&x, 2, 2, 4, 4, 1, 2, 2)),
            ("mean", run(&x, 2, 2, 4, 4, 2, 3, 2)),
            ("var", run(&x, 2, 2, 4, 4, 2, 2, 0)),
        ] {
            assert!(matches!(r, Err(Error::Shape { .. })), "{case}: {r:?}");
        }
    }

    #[test]
    fn forward_eval_rejects_bad_running_statistics() {
        let run = |rm: [f64; 2], rv: [f64; 2]| {
            batch_norm_forward_eval(
                &[1.0, 2.0],
                2,
                1e-5,
                &[1.0; 2],
                &[0.0; 2],
                &rm,
                &rv,
                &mut [0.0; 2],
                &mut [0.0; 2],
                &mut [0.0; 2],
            )
        };
        assert!(run([0.0, 0.0], [0.0, 1.0]).is_ok());
        assert!(matches!(run([f64::NAN, 0.0], [1.0, 1.0]), Err(Error::NonFinite { .. })));
        assert!(matches!(run([0.0, 0.0], [1.0, f64::INFINITY]), Err(Error::NonFinite { .. })));
        assert!(matches!(run([0.0, 0.0], [1.0, -0.5]), Err(Error::Config { .. })));
    }

    #[test]
    fn forward_eval_rejects_zero_n_bad_eps_and_each_bad_length() {
        let e = batch_norm_forward_eval::<f64>(&[1.0], 0, 1e-5, &[], &[], &[], &[], &mut [0.0], &mut [0.0], &mut []);
        assert!(matches!(e, Err(Error::Config { .. })));
        let e = batch_norm_forward_eval(
            &[1.0],
            1,
            f64::NAN,
            &[1.0],
            &[0.0],
            &[0.0],
            &[1.0],
            &mut [0.0],
            &mut [0.0],
            &mut [0.0],
        );
        assert!(matches!(e, Err(Error::Config { .. })));
        #[allow(clippy::too_many_arguments)]
        let run = |x: &[f64], g: usize, b: usize, rm: usize, rv: usize, y: usize, h: usize, s: usize| {
            let (g, b, rm, rv) = (vec![1.0; g], vec![0.0; b], vec![0.0; rm], vec![1.0; rv]);
            let (mut y, mut h, mut s) = (vec![0.0; y], vec![0.0; h], vec![0.0; s]);
            batch_norm_forward_eval(x, 2, 1e-5, &g, &b, &rm, &rv, &mut y, &mut h, &mut s)
        };
        let x = [1.0f64, 2.0, 3.0, 4.0];
        assert!(run(&x, 2, 2, 2, 2, 4, 4, 2).is_ok());
        assert!(run(&[], 2, 2, 2, 2, 0, 0, 2).is_ok(), "an empty batch is fine in evaluation");
        for (case, r) in [
            ("ragged", run(&x[..1], 2, 2, 2, 2, 1, 1, 2)),
            ("gamma", run(&x, 3, 2, 2, 2, 4, 4, 2)),
            ("beta", run(&x, 2, 1, 2, 2, 4, 4, 2)),
            ("running_mean", run(&x, 2, 2, 1, 2, 4, 4, 2)),
            ("running_var", run(&x, 2, 2, 2, 3, 4, 4, 2)),
            ("y", run(&x, 2, 2, 2, 2, 2, 4, 2)),
            ("xhat", run(&x, 2, 2, 2, 2, 4, 2, 2)),
            ("inv_std", run(&x, 2, 2, 2, 2, 4, 4, 4)),
        ] {
            assert!(matches!(r, Err(Error::Shape { .. })), "{case}: {r:?}");
        }
    }

    #[test]
    fn backward_input_rejects_each_bad_length() {
        let dy = [1.0f64, 2.0, 3.0, 4.0];
        let run = |add: bool, dy: &[f64], n: usize, h: usize, s: usize, g: usize, dx: usize| {
            let (h, s, g, mut dx) = (vec![0.0; h], vec![1.0; s], vec![1.0; g], vec![0.0; dx]);
            if add {
                batch_norm_backward_input_add(dy, &h, &s, &g, n, &mut dx)
            } else {
                batch_norm_backward_input(dy, &h, &s, &g, n, &mut dx)
            }
        };
        for add in [false, true] {
            assert!(run(add, &dy, 2, 4, 2, 2, 4).is_ok());
            assert!(run(add, &[], 2, 0, 2, 2, 0).is_ok());
            assert!(matches!(run(add, &dy, 0, 4, 2, 2, 4), Err(Error::Config { .. })));
            for (case, r) in [
                ("ragged", run(add, &dy[..3], 2, 3, 2, 2, 3)),
                ("xhat", run(add, &dy, 2, 2, 2, 2, 4)),
                ("inv_std", run(add, &dy, 2, 4, 1, 2, 4)),
                ("gamma", run(add, &dy, 2, 4, 2, 3, 4)),
                ("dx", run(add, &dy, 2, 4, 2, 2, 6)),
            ] {
                assert!(matches!(r, Err(Error::Shape { .. })), "add = {add}, {case}: {r:?}");
            }
        }
    }

    #[test]
    fn backward_eval_rejects_each_bad_length() {
        let dy = [1.0f64, 2.0, 3.0, 4.0];
        let run = |add: bool, dy: &[f64], n: usize, s: usize, g: usize, dx: usize| {
            let (s, g, mut dx) = (vec![1.0; s], vec![1.0; g], vec![0.0; dx]);
            if add {
                batch_norm_backward_eval_add(dy, &s, &g, n, &mut dx)
            } else {
                batch_norm_backward_eval(dy, &s, &g, n, &mut dx)
            }
        };
        for add in [false, true] {
            assert!(run(add, &dy, 2, 2, 2, 4).is_ok());
            assert!(matches!(run(add, &dy, 0, 2, 2, 4), Err(Error::Config { .. })));
            for r in [
                run(add, &dy[..3], 2, 2, 2, 3),
                run(add, &dy, 2, 1, 2, 4),
                run(add, &dy, 2, 2, 3, 4),
                run(add, &dy, 2, 2, 2, 3),
            ] {
                assert!(matches!(r, Err(Error::Shape { .. })), "add = {add}: {r:?}");
            }
        }
    }

    #[test]
    fn param_grads_reject_each_bad_length() {
        let dy = [1.0f64, 2.0, 3.0, 4.0];
        let run = |dy: &[f64], n: usize, h: usize, g: usize, b: usize| {
            batch_norm_param_grads(dy, &vec![0.0; h], n, &mut vec![0.0; g], &mut vec![0.0; b])
        };
        assert!(run(&dy, 2, 4, 2, 2).is_ok());
        assert!(matches!(run(&dy, 0, 4, 2, 2), Err(Error::Config { .. })));
        for r in [run(&dy[..3], 2, 3, 2, 2), run(&dy, 2, 2, 2, 2), run(&dy, 2, 4, 1, 2), run(&dy, 2, 4, 2, 3)] {
            assert!(matches!(r, Err(Error::Shape { .. })), "{r:?}");
        }
    }

    #[test]
    fn update_running_rejects_zero_batch() {
        let e = batch_norm_update_running(&[0.0f64], &[1.0], 0, 0.1, &mut [0.0], &mut [1.0]);
        assert!(matches!(e, Err(Error::Config { .. })));
    }

    #[test]
    fn update_running_rejects_bad_momentum() {
        for m in [-0.1, 1.1, f64::NAN] {
            let e = batch_norm_update_running(&[0.0f64], &[1.0], 2, m, &mut [0.0], &mut [1.0]);
            assert!(matches!(e, Err(Error::Config { .. })), "momentum {m}");
        }
    }

    #[test]
    fn update_running_rejects_each_bad_length() {
        let run = |v: usize, rm: usize, rv: usize| {
            batch_norm_update_running(&[0.0f64; 2], &vec![1.0; v], 2, 0.1, &mut vec![0.0; rm], &mut vec![1.0; rv])
        };
        assert!(run(2, 2, 2).is_ok());
        for r in [run(1, 2, 2), run(2, 3, 2), run(2, 2, 1)] {
            assert!(matches!(r, Err(Error::Shape { .. })), "{r:?}");
        }
    }
}
