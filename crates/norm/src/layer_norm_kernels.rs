//! Allocation-free layer-norm kernels over plain row-major slices `[rows, n]`, with the backward
//! to the input split from the parameter gradients (Ba, Kiros & Hinton 2016).
//!
//! A recurrent cell calls [`layer_norm_forward`] in its step, [`layer_norm_backward_input`] (or
//! the `_add` twin) in its `step_backward`, which must not touch parameter gradients, and
//! [`layer_norm_param_grads`] once over all steps' buffers afterwards.

use rnnlab_core::{Float, Result};

use crate::checks;

/// Layer-norm forward over the last axis of `x` `[rows, n]` (rows = `x.len() / n`):
///
/// ```text
/// µ = (1/n) Σ_j x_j,   σ² = (1/n) Σ_j (x_j − µ)²   (per row, biased)
/// x̂ = (x − µ)·s,  s = 1/√(σ² + ε),   y = γ ⊙ x̂ + β
/// ```
///
/// Writes `y` and `xhat` (both `x.len()`) and `inv_std` (s, one per row). Two passes per row
/// (mean, then centred squares), so a large common offset does not cancel the variance away.
/// No allocation; a constant row gives x̂ = 0 and y = β (finite, thanks to ε > 0). Inputs are
/// not checked for NaN/∞ (they propagate): the layers do that.
///
/// # Errors
/// [`rnnlab_core::Error::Config`] for `n = 0` or `eps` not finite and > 0;
/// [`rnnlab_core::Error::Shape`] if `x.len()` is not a multiple of `n`, `gamma`/`beta` are not
/// of length `n`, `y`/`xhat` not of length `x.len()` or `inv_std` not of length rows.
///
/// # Examples
/// ```
/// use rnnlab_norm::layer_norm_forward;
/// // one row [1, 3]: µ = 2, σ² = 1, x̂ = [−1, 1]/√(1 + ε)
/// let (mut y, mut xhat, mut s) = ([0.0; 2], [0.0; 2], [0.0; 1]);
/// layer_norm_forward(&[1.0f64, 3.0], 2, 1e-5, &[2.0, 2.0], &[0.5, 0.5], &mut y, &mut xhat, &mut s)?;
/// assert!((y[0] - (0.5 - 2.0 / (1.0f64 + 1e-5).sqrt())).abs() < 1e-12);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_forward<F: Float>(
    x: &[F],
    n: usize,
    eps: F,
    gamma: &[F],
    beta: &[F],
    y: &mut [F],
    xhat: &mut [F],
    inv_std: &mut [F],
) -> Result<()> {
    let op = "layer_norm_forward";
    check_forward(op, x.len(), n, eps, gamma, beta, y.len(), xhat.len(), inv_std.len())?;
    normalise_rows(x, n, eps, xhat, inv_std);
    affine_rows(xhat, n, gamma, beta, y);
    Ok(())
}

/// In-place twin of [`layer_norm_forward`]: `xy` holds x on entry and y on return.
///
/// # Errors
/// As [`layer_norm_forward`], with `xy` in the role of both `x` and `y`.
///
/// # Examples
/// ```
/// use rnnlab_norm::layer_norm_forward_inplace;
/// let mut xy = [1.0f64, 3.0, 5.0, 5.0]; // two rows of n = 2
/// let (mut xhat, mut s) = ([0.0; 4], [0.0; 2]);
/// layer_norm_forward_inplace(&mut xy, 2, 1e-5, &[1.0, 1.0], &[0.0, 0.0], &mut xhat, &mut s)?;
/// assert!((xy[1] - 1.0 / (1.0f64 + 1e-5).sqrt()).abs() < 1e-12);
/// assert_eq!(&xy[2..], &[0.0, 0.0]); // a constant row maps to β
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn layer_norm_forward_inplace<F: Float>(
    xy: &mut [F],
    n: usize,
    eps: F,
    gamma: &[F],
    beta: &[F],
    xhat: &mut [F],
    inv_std: &mut [F],
) -> Result<()> {
    let op = "layer_norm_forward_inplace";
    check_forward(op, xy.len(), n, eps, gamma, beta, xy.len(), xhat.len(), inv_std.len())?;
    normalise_rows(xy, n, eps, xhat, inv_std);
    affine_rows(xhat, n, gamma, beta, xy);
    Ok(())
}

/// Backward of layer norm to its input, OVERWRITING `dx` `[rows, n]`; touches no parameter
/// gradient. With g = dy ⊙ γ, per row:
///
/// ```text
/// ∂L/∂x = s/n · (n·g − Σ_j g_j − x̂ ⊙ Σ_j g_j x̂_j)
/// ```
///
/// (the derivative of x̂ = (x − µ)·s through µ and σ²). `xhat` and `inv_std` are what
/// [`layer_norm_forward`] wrote. No allocation.
///
/// # Errors
/// [`rnnlab_core::Error::Config`] for `n = 0`; [`rnnlab_core::Error::Shape`] if `dy.len()` is
/// not a multiple of `n` or `xhat`, `dx` (length `dy.len()`), `inv_std` (rows) or `gamma`
/// (`n`) have other lengths.
///
/// # Examples
/// ```
/// use rnnlab_norm::{layer_norm_backward_input, layer_norm_forward};
/// let (mut y, mut xhat, mut s) = ([0.0; 2], [0.0; 2], [0.0; 1]);
/// layer_norm_forward(&[1.0f64, 3.0], 2, 1e-5, &[1.0, 1.0], &[0.0, 0.0], &mut y, &mut xhat, &mut s)?;
/// // a gradient along the constant direction is removed by the mean subtraction
/// let mut dx = [9.0; 2];
/// layer_norm_backward_input(&[1.0, 1.0], &xhat, &s, &[1.0, 1.0], 2, &mut dx)?;
/// assert!(dx.iter().all(|d| d.abs() < 1e-12));
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn layer_norm_backward_input<F: Float>(
    dy: &[F],
    xhat: &[F],
    inv_std: &[F],
    gamma: &[F],
    n: usize,
    dx: &mut [F],
) -> Result<()> {
    backward_rows("layer_norm_backward_input", dy, xhat, inv_std, gamma, n, dx, false)
}

/// [`layer_norm_backward_input`] that ADDS ∂L/∂x into `dx` instead of overwriting it (for
/// cells that sum several paths into one gradient buffer).
///
/// # Errors
/// As [`layer_norm_backward_input`].
///
/// # Examples
/// ```
/// use rnnlab_norm::layer_norm_backward_input_add;
/// // x̂ = [−1, 1], s = 1: dy = [1, 0] gives ∂L/∂x = ½(2·[1, 0] − 1 − [−1, 1]·(−1)) = [0, 0]
/// let mut dx = [1.0f64, 2.0];
/// layer_norm_backward_input_add(&[1.0, 0.0], &[-1.0, 1.0], &[1.0], &[1.0, 1.0], 2, &mut dx)?;
/// assert_eq!(dx, [1.0, 2.0]);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn layer_norm_backward_input_add<F: Float>(
    dy: &[F],
    xhat: &[F],
    inv_std: &[F],
    gamma: &[F],
    n: usize,
    dx: &mut [F],
) -> Result<()> {
    backward_rows("layer_norm_backward_input_add", dy, xhat, inv_std, gamma, n, dx, true)
}

/// ADDS the parameter gradients of layer norm: `dgamma += Σ_rows dy ⊙ x̂`,
/// `dbeta += Σ_rows dy` (∂y/∂γ = x̂, ∂y/∂β = 1). Call it once over all steps' `[T·B, n]`
/// buffers, or once per step. No allocation.
///
/// # Errors
/// [`rnnlab_core::Error::Config`] for `n = 0`; [`rnnlab_core::Error::Shape`] if `dy.len()` is
/// not a multiple of `n`, `xhat.len() ≠ dy.len()` or `dgamma`/`dbeta` are not of length `n`.
///
/// # Examples
/// ```
/// use rnnlab_norm::layer_norm_param_grads;
/// let (mut dg, mut db) = ([0.0f64; 2], [0.0f64; 2]);
/// layer_norm_param_grads(&[1.0, 2.0, 3.0, 4.0], &[-1.0, 1.0, 1.0, -1.0], 2, &mut dg, &mut db)?;
/// assert_eq!(dg, [2.0, -2.0]); // 1·(−1) + 3·1, 2·1 + 4·(−1)
/// assert_eq!(db, [4.0, 6.0]);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn layer_norm_param_grads<F: Float>(
    dy: &[F],
    xhat: &[F],
    n: usize,
    dgamma: &mut [F],
    dbeta: &mut [F],
) -> Result<()> {
    let op = "layer_norm_param_grads";
    checks::rows(op, n, dy.len())?;
    checks::len(op, "xhat", dy.len(), xhat.len())?;
    checks::len(op, "dgamma", n, dgamma.len())?;
    checks::len(op, "dbeta", n, dbeta.len())?;
    checks::add_affine_grads(dy, xhat, n, dgamma, dbeta);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn check_forward<F: Float>(
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
    let rows = checks::rows(op, n, x_len)?;
    checks::eps(op, eps)?;
    checks::len(op, "gamma", n, gamma.len())?;
    checks::len(op, "beta", n, beta.len())?;
    checks::len(op, "y", x_len, y_len)?;
    checks::len(op, "xhat", x_len, xhat_len)?;
    checks::len(op, "inv_std", rows, inv_std_len)
}

/// x̂ and s per row (lengths checked by the caller).
fn normalise_rows<F: Float>(x: &[F], n: usize, eps: F, xhat: &mut [F], inv_std: &mut [F]) {
    let nf = F::of(n as f64);
    for ((xr, hr), s) in x.chunks_exact(n).zip(xhat.chunks_exact_mut(n)).zip(inv_std.iter_mut()) {
        let mean = xr.iter().copied().sum::<F>() / nf;
        let var = xr.iter().map(|&v| (v - mean) * (v - mean)).sum::<F>() / nf;
        let inv = (var + eps).sqrt().recip();
        *s = inv;
        for (h, &v) in hr.iter_mut().zip(xr) {
            *h = (v - mean) * inv;
        }
    }
}

/// y = γ ⊙ x̂ + β per row.
fn affine_rows<F: Float>(xhat: &[F], n: usize, gamma: &[F], beta: &[F], y: &mut [F]) {
    for (hr, yr) in xhat.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
        for j in 0..n {
            yr[j] = gamma[j] * hr[j] + beta[j];
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn backward_rows<F: Float>(
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
    checks::len(op, "inv_std", rows, inv_std.len())?;
    checks::len(op, "gamma", n, gamma.len())?;
    checks::len(op, "dx", dy.len(), dx.len())?;
    let nf = F::of(n as f64);
    for (((dyr, hr), &s), dxr) in dy.chunks_exact(n).zip(xhat.chunks_exact(n)).zip(inv_std).zip(dx.chunks_exact_mut(n))
    {
        let (mut sum_g, mut sum_gh) = (F::zero(), F::zero());
        for j in 0..n {
            let g = dyr[j] * gamma[j];
            sum_g += g;
            sum_gh += g * hr[j];
        }
        let k = s / nf;
        for j in 0..n {
            let v = k * (nf * dyr[j] * gamma[j] - sum_g - hr[j] * sum_gh);
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
    use crate::LayerNormConfig;
    use ndarray::{Array2, ArrayD};
    use rnnlab_core::{Error, GradCheck, NamedInput, Parameterized, check_fn};

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }

    fn input(rows: usize, n: usize) -> Array2<f64> {
        Array2::from_shape_fn((rows, n), |(i, j)| ((i * n + j) as f64 * 0.71 + 0.3).sin() * 1.5 + 0.2 * i as f64)
    }

    #[test]
    fn hand_value_one_row() {
        // x = [1, 2, 6]: µ = 3, σ² = (4 + 1 + 9)/3 = 14/3, s = 1/√(14/3 + ε);
        // x̂ = [−2, −1, 3]·s, y = γ ⊙ x̂ + β with γ = [1, 2, 0.5], β = [0, 1, −1].
        let (mut y, mut xh, mut s) = ([0.0; 3], [0.0; 3], [0.0; 1]);
        let gamma = [1.0, 2.0, 0.5];
        let beta = [0.0, 1.0, -1.0];
        layer_norm_forward(&[1.0, 2.0, 6.0], 3, 1e-5, &gamma, &beta, &mut y, &mut xh, &mut s).unwrap();
        let inv = 1.0 / (14.0f64 / 3.0 + 1e-5).sqrt();
        assert!(close(s[0], inv, 1e-14));
        for (k, d) in [-2.0, -1.0, 3.0].iter().enumerate() {
            assert!(close(xh[k], d * inv, 1e-14));
            assert!(close(y[k], gamma[k] * d * inv + beta[k], 1e-14));
        }
    }

    #[test]
    fn inplace_matches_out_of_place() {
        let x = input(3, 4);
        let xs = x.as_slice().unwrap();
        let (g, b) = ([1.0, 0.5, -2.0, 0.1], [0.3, 0.0, -0.2, 1.0]);
        let (mut y, mut xh, mut s) = (vec![0.0; 12], vec![0.0; 12], vec![0.0; 3]);
        layer_norm_forward(xs, 4, 1e-5, &g, &b, &mut y, &mut xh, &mut s).unwrap();
        let (mut xy, mut xh2, mut s2) = (xs.to_vec(), vec![0.0; 12], vec![0.0; 3]);
        layer_norm_forward_inplace(&mut xy, 4, 1e-5, &g, &b, &mut xh2, &mut s2).unwrap();
        assert_eq!(y, xy);
        assert_eq!(xh, xh2);
        assert_eq!(s, s2);
    }

    /// L = Σ R ⊙ LN(x) computed through the kernels only, with the parameter gradients added
    /// afterwards from (dy, x̂), as a cell does.
    fn kernel_loss(
        ln: &mut crate::LayerNorm<f64>,
        inputs: &[NamedInput],
        r: &Array2<f64>,
        add: bool,
    ) -> rnnlab_core::Result<(f64, Vec<ArrayD<f64>>)> {
        let x = inputs[0].1.as_slice().unwrap();
        let n = r.ncols();
        let (mut y, mut xh, mut s) = (vec![0.0; x.len()], vec![0.0; x.len()], vec![0.0; x.len() / n]);
        let gamma = ln.gamma().value.to_vec();
        let beta = ln.beta().value.to_vec();
        layer_norm_forward(x, n, 1e-5, &gamma, &beta, &mut y, &mut xh, &mut s)?;
        let rs = r.as_slice().unwrap();
        let loss: f64 = y.iter().zip(rs).map(|(a, b)| a * b).sum();
        let offset = 0.75;
        let mut dx = vec![if add { offset } else { 7.0 }; x.len()];
        if add {
            layer_norm_backward_input_add(rs, &xh, &s, &gamma, n, &mut dx)?;
            dx.iter_mut().for_each(|d| *d -= offset);
        } else {
            layer_norm_backward_input(rs, &xh, &s, &gamma, n, &mut dx)?;
        }
        let (mut dg, mut db) = (vec![0.0; n], vec![0.0; n]);
        layer_norm_param_grads(rs, &xh, n, &mut dg, &mut db)?;
        ln.visit_params_mut(&mut |name, mut p| {
            let src = if name == "gamma" { &dg } else { &db };
            p.grad.iter_mut().zip(src).for_each(|(g, v)| *g += v);
        });
        Ok((loss, vec![ArrayD::from_shape_vec(inputs[0].1.shape(), dx).unwrap()]))
    }

    #[test]
    fn kernels_match_finite_differences() {
        for add in [false, true] {
            let mut ln = LayerNormConfig::new(5).with_gamma_init(0.7).init::<f64>().unwrap();
            ln.visit_params_mut(&mut |_, mut p| p.value.iter_mut().enumerate().for_each(|(i, v)| *v += 0.1 * i as f64));
            let r = Array2::from_shape_fn((3, 5), |(i, j)| ((i * 5 + j) as f64 * 1.3).cos());
            let mut inputs = vec![("x".to_string(), input(3, 5).into_dyn())];
            let rep = check_fn(&GradCheck::new(), &mut ln, &mut inputs, |m, inp| kernel_loss(m, inp, &r, add)).unwrap();
            assert_eq!(rep.n_checked, 15 + 10);
            assert!(rep.max_rel_error() <= 1e-6, "add = {add}: {rep}");
        }
    }

    #[test]
    fn constant_row_gives_beta_and_finite_input_gradient() {
        let (mut y, mut xh, mut s) = ([0.0f32; 3], [0.0f32; 3], [0.0f32; 1]);
        layer_norm_forward(&[4.0f32; 3], 3, 1e-5, &[2.0; 3], &[0.5, -0.5, 1.0], &mut y, &mut xh, &mut s).unwrap();
        assert_eq!(y, [0.5, -0.5, 1.0]);
        assert!(s[0].is_finite());
        let mut dx = [1.0f32; 3];
        layer_norm_backward_input(&[1.0, -2.0, 0.5], &xh, &s, &[2.0; 3], 3, &mut dx).unwrap();
        // g = [2, −4, 1], Σg = −1, x̂ = 0: dx = s/3·(3g + 1), finite
        assert!(dx.iter().all(|d| d.is_finite()));
        assert!(close(f64::from(dx[0]), f64::from(s[0]) / 3.0 * 7.0, 1e-5));
    }

    #[test]
    fn forward_rejects_zero_n() {
        let e = layer_norm_forward::<f64>(&[], 0, 1e-5, &[], &[], &mut [], &mut [], &mut []).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
    }

    #[test]
    fn forward_rejects_bad_eps() {
        for eps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e =
                layer_norm_forward(&[1.0, 2.0], 2, eps, &[1.0; 2], &[0.0; 2], &mut [0.0; 2], &mut [0.0; 2], &mut [0.0])
                    .unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{e}");
        }
    }

    #[test]
    fn forward_rejects_each_bad_length() {
        let x = [1.0f64, 2.0, 3.0, 4.0];
        let run = |x: &[f64], g: usize, b: usize, y: usize, h: usize, s: usize| {
            layer_norm_forward(
                x,
                2,
                1e-5,
                &vec![1.0; g],
                &vec![0.0; b],
                &mut vec![0.0; y],
                &mut vec![0.0; h],
                &mut vec![0.0; s],
            )
        };
        assert!(run(&x, 2, 2, 4, 4, 2).is_ok());
        for (case, r) in [
            ("ragged x", run(&x[..3], 2, 2, 3, 3, 1)),
            ("gamma", run(&x, 3, 2, 4, 4, 2)),
            ("beta", run(&x, 2, 1, 4, 4, 2)),
            ("y", run(&x, 2, 2, 5, 4, 2)),
            ("xhat", run(&x, 2, 2, 4, 3, 2)),
            ("inv_std", run(&x, 2, 2, 4, 4, 1)),
        ] {
            assert!(matches!(r, Err(Error::Shape { .. })), "{case}: {r:?}");
        }
    }

    #[test]
    fn inplace_rejects_bad_inputs() {
        let mut xy = [1.0f64, 2.0, 3.0];
        let e = layer_norm_forward_inplace(&mut xy, 2, 1e-5, &[1.0; 2], &[0.0; 2], &mut [0.0; 3], &mut [0.0]);
        assert!(matches!(e, Err(Error::Shape { .. })));
        let e = layer_norm_forward_inplace(&mut xy, 0, 1e-5, &[], &[], &mut [0.0; 3], &mut []);
        assert!(matches!(e, Err(Error::Config { .. })));
        let e = layer_norm_forward_inplace(&mut xy, 3, -1.0, &[1.0; 3], &[0.0; 3], &mut [0.0; 3], &mut [0.0]);
        assert!(matches!(e, Err(Error::Config { .. })));
    }

    #[test]
    fn backward_input_rejects_each_bad_length() {
        let dy = [1.0f64, 2.0, 3.0, 4.0];
        let run = |add: bool, dy: &[f64], n: usize, h: usize, s: usize, g: usize, dx: usize| {
            let (xh, sv, gv, mut dxv) = (vec![0.0; h], vec![1.0; s], vec![1.0; g], vec![0.0; dx]);
            if add {
                layer_norm_backward_input_add(dy, &xh, &sv, &gv, n, &mut dxv)
            } else {
                layer_norm_backward_input(dy, &xh, &sv, &gv, n, &mut dxv)
            }
        };
        for add in [false, true] {
            assert!(run(add, &dy, 2, 4, 2, 2, 4).is_ok());
            assert!(matches!(run(add, &dy, 0, 4, 2, 2, 4), Err(Error::Config { .. })));
            for (case, r) in [
                ("ragged dy", run(add, &dy[..3], 2, 3, 1, 2, 3)),
                ("xhat", run(add, &dy, 2, 3, 2, 2, 4)),
                ("inv_std", run(add, &dy, 2, 4, 3, 2, 4)),
                ("gamma", run(add, &dy, 2, 4, 2, 1, 4)),
                ("dx", run(add, &dy, 2, 4, 2, 2, 2)),
            ] {
                assert!(matches!(r, Err(Error::Shape { .. })), "add = {add}, {case}: {r:?}");
            }
        }
    }

    #[test]
    fn param_grads_reject_each_bad_length() {
        let dy = [1.0f64, 2.0, 3.0, 4.0];
        let run = |dy: &[f64], n: usize, h: usize, g: usize, b: usize| {
            layer_norm_param_grads(dy, &vec![0.0; h], n, &mut vec![0.0; g], &mut vec![0.0; b])
        };
        assert!(run(&dy, 2, 4, 2, 2).is_ok());
        assert!(matches!(run(&dy, 0, 4, 2, 2), Err(Error::Config { .. })));
        for r in [run(&dy[..3], 2, 3, 2, 2), run(&dy, 2, 3, 2, 2), run(&dy, 2, 4, 3, 2), run(&dy, 2, 4, 2, 1)] {
            assert!(matches!(r, Err(Error::Shape { .. })), "{r:?}");
        }
    }
}
