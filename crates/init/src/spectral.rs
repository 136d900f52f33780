//! Spectral radius (Gelfand's formula) and largest singular value (power iteration), in f64.

use ndarray::{Array1, Array2, ArrayBase, Data, Ix2};
use rnnlab_core::{Error, Result, validate};

/// Squarings of Gelfand's formula at most: ρ is read from ‖A^(2^m)‖^(1/2^m), m ≤ 64.
const MAX_SQUARINGS: i32 = 64;
/// Relative change between successive estimates at which the squaring stops.
const SQUARING_TOL: f64 = 1e-15;
/// Power iterations at most for the largest singular value.
const MAX_POWER_ITERS: usize = 20_000;
/// Relative change of the Rayleigh quotient at which the power iteration stops.
const POWER_TOL: f64 = 1e-12;

/// The spectral radius ρ(A) = max |λᵢ(A)| of a square matrix, real or complex eigenvalues alike.
///
/// Plain power iteration does not converge on a non-symmetric matrix whose dominant eigenvalues
/// are a complex pair (or ±λ), so this uses Gelfand's formula ρ(A) = lim ‖A^k‖^{1/k} with
/// repeated normalised squaring in f64: B₀ = A/‖A‖_F, B_{k+1} = B_k²/‖B_k²‖_F, keeping
/// log‖A^(2^k)‖_F = 2·log‖A^(2^(k−1))‖_F + log‖B_{k−1}²‖_F, and
/// ρ ≈ exp(log‖A^(2^m)‖_F / 2^m). Each estimate is an upper bound (‖·‖_F is sub-multiplicative)
/// and the error after m squarings is O(log(n)/2^m); the loop stops when two successive
/// estimates agree to 1e-15 relative, or after 64 squarings. Cost O(n³) per squaring.
///
/// If some power A^(2^k) is exactly zero (a nilpotent matrix, e.g. strictly triangular) the
/// result is exactly 0. A nilpotent matrix that is not exactly triangular gives a tiny
/// rounding-level value instead, as any floating-point method would.
///
/// # Errors
/// - [`Error::Shape`] if `a` is not square.
/// - [`Error::Config`] if `a` is empty (0 × 0).
/// - [`Error::NonFinite`] if an entry of `a` is NaN or infinite.
///
/// # Examples
/// ```
/// use ndarray::array;
/// // A rotation by 90° scaled by 2: eigenvalues ±2i, which power iteration cannot find.
/// let a = array![[0.0, -2.0], [2.0, 0.0]];
/// let rho = rnnlab_init::spectral_radius(&a.view())?;
/// assert!((rho - 2.0).abs() < 1e-12);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn spectral_radius<S: Data<Elem = f64>>(a: &ArrayBase<S, Ix2>) -> Result<f64> {
    const OP: &str = "spectral_radius";
    let (rows, cols) = a.dim();
    if rows != cols {
        return Err(Error::shape(OP, "a square matrix", format!("[{rows}, {cols}]")));
    }
    check_matrix(OP, a)?;
    let fro = frobenius(a.iter().copied());
    if fro == 0.0 {
        return Ok(0.0);
    }
    let mut b = a.mapv(|x| x / fro);
    // log ‖A^(2^k)‖_F-like accumulator, so that B_k = A^(2^k) / exp(log_norm).
    let mut log_norm = fro.ln();
    let mut estimate = fro;
    let mut power = 1.0f64; // 2^k
    for _ in 0..MAX_SQUARINGS {
        let c = b.dot(&b);
        let s = frobenius(c.iter().copied());
        if s == 0.0 {
            // A^(2^(k+1)) = 0 exactly: every eigenvalue is 0.
            return Ok(0.0);
        }
        log_norm = 2.0 * log_norm + s.ln();
        power *= 2.0;
        b = c.mapv(|x| x / s);
        let next = (log_norm / power).exp();
        let converged = (next - estimate).abs() <= SQUARING_TOL * next;
        estimate = next;
        if converged {
            break;
        }
    }
    Ok(estimate)
}

/// The largest singular value σ₁(A) = ‖A‖₂ of a matrix of any shape.
///
/// Power iteration on AᵀA in f64: v ← AᵀA v / ‖AᵀA v‖, σ₁² ≈ ‖A v‖² (the Rayleigh quotient),
/// until the Rayleigh quotient changes by less than 1e-12 relative (at most 20 000 iterations).
/// The matrix is first divided by ‖A‖_F to keep the iteration in range. The start vector is
/// Aᵀc for fixed irregular weights c, so it lies in the row space of A and is not orthogonal to
/// the top singular vector except by coincidence. When σ₁ ≈ σ₂ convergence slows, but the
/// Rayleigh quotient is then already within the gap of σ₁.
///
/// # Errors
/// - [`Error::Config`] if `a` has a zero dimension.
/// - [`Error::NonFinite`] if an entry of `a` is NaN or infinite.
///
/// # Examples
/// ```
/// use ndarray::array;
/// let a = array![[3.0, 0.0, 0.0], [0.0, -5.0, 0.0]];
/// let sigma = rnnlab_init::max_singular_value(&a.view())?;
/// assert!((sigma - 5.0).abs() < 1e-10);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn max_singular_value<S: Data<Elem = f64>>(a: &ArrayBase<S, Ix2>) -> Result<f64> {
    const OP: &str = "max_singular_value";
    check_matrix(OP, a)?;
    let fro = frobenius(a.iter().copied());
    if fro == 0.0 {
        return Ok(0.0);
    }
    let b: Array2<f64> = a.mapv(|x| x / fro);
    let (rows, cols) = b.dim();
    // Irregular positive weights (golden-ratio sequence) for the start vector Aᵀc.
    let c = Array1::from_shape_fn(rows, |i| 1.0 + (i as f64 * 0.618_033_988_749_895).fract());
    let mut v = b.t().dot(&c);
    if frobenius(v.iter().copied()) == 0.0 {
        // The weighted rows cancelled exactly: start from the longest row instead.
        let longest = (0..rows)
            .max_by(|&i, &j| frobenius(b.row(i).iter().copied()).total_cmp(&frobenius(b.row(j).iter().copied())))
            .unwrap_or(0);
        v = b.row(longest).to_owned();
    }
    let vn = frobenius(v.iter().copied());
    if vn == 0.0 {
        // Cannot happen: ‖B‖_F = 1 so some row is non-zero; kept as a guard.
        return Ok(0.0);
    }
    v.mapv_inplace(|x| x / vn);
    debug_assert_eq!(v.len(), cols);
    let mut lambda_old = f64::NAN;
    let mut lambda = 0.0;
    for _ in 0..MAX_POWER_ITERS {
        let w = b.dot(&v);
        lambda = w.dot(&w);
        let u = b.t().dot(&w);
        let un = frobenius(u.iter().copied());
        if un == 0.0 || lambda == 0.0 {
            break;
        }
        v = u.mapv(|x| x / un);
        if (lambda - lambda_old).abs() <= POWER_TOL * lambda {
            break;
        }
        lambda_old = lambda;
    }
    Ok(fro * lambda.sqrt())
}

/// ‖x‖₂ of a sequence of values, scaled to avoid overflow and underflow.
pub(crate) fn frobenius(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let scale = values.clone().fold(0.0f64, |m, x| m.max(x.abs()));
    if scale == 0.0 || !scale.is_finite() {
        return scale;
    }
    scale * values.map(|x| (x / scale) * (x / scale)).sum::<f64>().sqrt()
}

/// `Err(Config)` for an empty matrix, `Err(NonFinite)` for a NaN or infinite entry.
fn check_matrix<S: Data<Elem = f64>>(op: &str, a: &ArrayBase<S, Ix2>) -> Result<()> {
    let (rows, cols) = a.dim();
    if rows == 0 || cols == 0 {
        return Err(Error::config(op, format!("the matrix [{rows}, {cols}] is empty")));
    }
    validate::finite_values(op, "matrix", a.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};
    use rand::Rng as _;
    use rnnlab_core::seeded_rng;

    fn rel_close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    fn gaussian(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
        let mut rng = seeded_rng(seed);
        Array2::from_shape_simple_fn((rows, cols), || rng.sample::<f64, _>(rand_distr::StandardNormal))
    }

    #[test]
    fn rotation_scaled_block_has_known_radius() -> Result<()> {
        // r·R(θ) ⊕ diag(0.5 r, −0.3 r): eigenvalues r·e^{±iθ}, 0.5 r, −0.3 r, so ρ = r = 1.7.
        let (r, th) = (1.7f64, 0.9f64);
        let a = array![
            [r * th.cos(), -r * th.sin(), 0.0, 0.0],
            [r * th.sin(), r * th.cos(), 0.0, 0.0],
            [0.0, 0.0, 0.5 * r, 0.0],
            [0.0, 0.0, 0.0, -0.3 * r],
        ];
        assert!(rel_close(spectral_radius(&a)?, r, 1e-12), "{}", spectral_radius(&a)?);
        // A non-normal block [[a, b], [c, a]] with bc < 0: λ = a ± i√(−bc), |λ| = √(a² − bc).
        let b = array![[0.3, 2.0], [-0.5, 0.3]];
        assert!(rel_close(spectral_radius(&b)?, (0.09f64 + 1.0).sqrt(), 1e-12));
        Ok(())
    }

    #[test]
    fn diagonal_and_triangular_have_known_radius() -> Result<()> {
        let d = Array2::from_diag(&array![0.2, -1.7, 1.1]);
        assert!(rel_close(spectral_radius(&d)?, 1.7, 1e-12));
        // Upper triangular: eigenvalues are the diagonal (0.5, −2.5, 1.0) whatever lies above it.
        let t = array![[0.5, 10.0, -7.0], [0.0, -2.5, 30.0], [0.0, 0.0, 1.0]];
        assert!(rel_close(spectral_radius(&t)?, 2.5, 1e-10), "{}", spectral_radius(&t)?);
        // ρ(A) = 1 for a Jordan block: slow polynomial growth ‖A^k‖ ~ k must not bias it much.
        let j = array![[1.0, 1.0], [0.0, 1.0]];
        assert!(rel_close(spectral_radius(&j)?, 1.0, 1e-10), "{}", spectral_radius(&j)?);
        let one = array![[-4.0]];
        assert!(rel_close(spectral_radius(&one)?, 4.0, 1e-15));
        Ok(())
    }

    #[test]
    fn nilpotent_and_zero_have_radius_zero() -> Result<()> {
        let n = array![[0.0, 3.0, 1.0, 2.0], [0.0, 0.0, -4.0, 5.0], [0.0, 0.0, 0.0, 6.0], [0.0, 0.0, 0.0, 0.0]];
        assert_eq!(spectral_radius(&n)?, 0.0);
        assert_eq!(spectral_radius(&Array2::<f64>::zeros((3, 3)))?, 0.0);
        Ok(())
    }

    #[test]
    fn symmetric_radius_equals_max_singular_value() -> Result<()> {
        // For a symmetric matrix |λ|max = σ₁: two independent algorithms must agree.
        let g = gaussian(40, 40, 3);
        let s = &g + &g.t();
        let rho = spectral_radius(&s)?;
        let sigma = max_singular_value(&s)?;
        assert!(rel_close(rho, sigma, 1e-9), "{rho} vs {sigma}");
        Ok(())
    }

    #[test]
    fn singular_value_matches_known_cases() -> Result<()> {
        let d = array![[3.0, 0.0, 0.0], [0.0, -5.0, 0.0]];
        assert!(rel_close(max_singular_value(&d)?, 5.0, 1e-12));
        // Rank one u vᵀ: σ₁ = ‖u‖‖v‖ = √14 · √2.
        let u = array![1.0, 2.0, 3.0];
        let v = array![1.0, -1.0];
        let r1 = Array2::from_shape_fn((3, 2), |(i, j)| u[i] * v[j]);
        assert!(rel_close(max_singular_value(&r1)?, 14f64.sqrt() * 2f64.sqrt(), 1e-12));
        // Rectangular Gaussian: σ₁² = ρ(A Aᵀ), computed independently by Gelfand's formula.
        let g = gaussian(20, 35, 4);
        let via_gram = spectral_radius(&g.dot(&g.t()))?.sqrt();
        assert!(rel_close(max_singular_value(&g)?, via_gram, 1e-9));
        assert!(rel_close(max_singular_value(&g.t())?, via_gram, 1e-9));
        assert_eq!(max_singular_value(&Array2::<f64>::zeros((2, 3)))?, 0.0);
        Ok(())
    }

    #[test]
    fn radius_is_homogeneous() -> Result<()> {
        let g = gaussian(30, 30, 5);
        let rho = spectral_radius(&g)?;
        assert!(rho > 0.0 && rho <= frobenius(g.iter().copied()));
        let scaled = g.mapv(|x| 1e-3 * x);
        assert!(rel_close(spectral_radius(&scaled)?, 1e-3 * rho, 1e-12));
        Ok(())
    }

    #[test]
    fn non_square_radius_is_a_shape_error() {
        let e = spectral_radius(&Array2::<f64>::zeros((2, 3)));
        assert!(matches!(e, Err(Error::Shape { .. })), "{e:?}");
    }

    #[test]
    fn empty_matrices_are_config_errors() {
        let e = spectral_radius(&Array2::<f64>::zeros((0, 0)));
        assert!(matches!(e, Err(Error::Config { .. })), "{e:?}");
        let e = max_singular_value(&Array2::<f64>::zeros((0, 4)));
        assert!(matches!(e, Err(Error::Config { .. })), "{e:?}");
    }

    #[test]
    fn non_finite_entries_are_rejected() {
        let a = array![[1.0, f64::NAN], [0.0, 1.0]];
        assert!(matches!(spectral_radius(&a), Err(Error::NonFinite { .. })));
        let b = array![[1.0, f64::INFINITY]];
        assert!(matches!(max_singular_value(&b), Err(Error::NonFinite { .. })));
    }

    #[test]
    fn frobenius_survives_extreme_magnitudes() {
        let big = [3e200, 4e200];
        assert!(rel_close(frobenius(big.iter().copied()), 5e200, 1e-15));
        let small = [3e-200, 4e-200];
        assert!(rel_close(frobenius(small.iter().copied()), 5e-200, 1e-15));
    }
}
