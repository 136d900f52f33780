//! Random orthogonal matrices: Householder QR of a Gaussian matrix, sign-corrected by diag(R).

use ndarray::{Array2, s};
use rand::Rng as _;
use rand_distr::StandardNormal;
use rnnlab_core::Rng;

/// A `[rows, cols]` matrix with orthonormal rows (`rows ≤ cols`) or orthonormal columns
/// (`rows ≥ cols`), scaled by `gain`; the algorithm of PyTorch's `orthogonal_`.
///
/// Draws G ~ N(0, 1)^{rows×cols} (row-major), transposes it if wide, takes the thin QR
/// factorisation G = QR, multiplies column j of Q by sign(R_jj) (so Q is the unique factor with a
/// positive diagonal in R and is Haar-distributed), transposes back if wide.
pub(crate) fn orthogonal(rows: usize, cols: usize, gain: f64, rng: &mut Rng) -> Array2<f64> {
    let g = Array2::from_shape_simple_fn((rows, cols), || rng.sample::<f64, _>(StandardNormal));
    let q = if rows < cols { thin_q(g.t().to_owned()).t().to_owned() } else { thin_q(g) };
    // Standard (row-major) layout whatever the transposes above left.
    Array2::from_shape_fn((rows, cols), |(i, j)| gain * q[[i, j]])
}

/// The thin Q factor (m × n) of an m × n matrix `a` with m ≥ n, sign-corrected so that every
/// diagonal entry of R is ≥ 0. Householder reflections H_k = I − 2 v_k v_kᵀ in f64, no LAPACK.
///
/// Works on the transpose (row j of `at` is column j of `a`) so that every column operation
/// runs over contiguous memory.
fn thin_q(a: Array2<f64>) -> Array2<f64> {
    let (m, n) = a.dim();
    debug_assert!(m >= n);
    let mut at = a.t().as_standard_layout().into_owned();
    let mut reflectors: Vec<Option<Vec<f64>>> = Vec::with_capacity(n);
    // flip[k] ⇔ R_kk < 0.
    let mut flip = Vec::with_capacity(n);
    for k in 0..n {
        let x = at.slice(s![k, k..]);
        let norm = x.dot(&x).sqrt();
        if norm == 0.0 {
            // Column already zero on and below the diagonal: H_k = I, R_kk = 0 (sign taken +).
            reflectors.push(None);
            flip.push(false);
            continue;
        }
        // Reflect x = a[k.., k] onto alpha·e₁ with alpha = −sign(x₀)‖x‖ (no cancellation).
        let alpha = if x[0] >= 0.0 { -norm } else { norm };
        let mut v = x.to_owned();
        v[0] -= alpha;
        // |v₀| = |x₀| + ‖x‖ ≥ ‖x‖ > 0, so vn > 0.
        let vn = v.dot(&v).sqrt();
        v.mapv_inplace(|e| e / vn);
        for j in k..n {
            let mut col = at.slice_mut(s![j, k..]);
            let dot = v.dot(&col);
            col.scaled_add(-2.0 * dot, &v);
        }
        // R_kk = alpha.
        flip.push(alpha < 0.0);
        reflectors.push(Some(v.to_vec()));
    }
    // Q = H_0 H_1 … H_{n−1} applied to the first n columns of I_m, right-most first;
    // row j of `qt` is column j of Q.
    let mut qt = Array2::<f64>::zeros((n, m));
    for j in 0..n {
        qt[[j, j]] = 1.0;
    }
    for (k, v) in reflectors.iter().enumerate().rev() {
        let Some(v) = v else { continue };
        let v = ndarray::aview1(v);
        for j in 0..n {
            let mut col = qt.slice_mut(s![j, k..]);
            let dot = v.dot(&col);
            if dot != 0.0 {
                col.scaled_add(-2.0 * dot, &v);
            }
        }
    }
    for (j, &f) in flip.iter().enumerate() {
        if f {
            qt.row_mut(j).mapv_inplace(|e| -e);
        }
    }
    qt.reversed_axes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use rnnlab_core::seeded_rng;

    fn max_abs_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
        a.iter().zip(b.iter()).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
    }

    #[test]
    fn qr_reconstructs_with_positive_r_diagonal() {
        let mut rng = seeded_rng(11);
        let g = Array2::from_shape_simple_fn((7, 4), || rng.sample::<f64, _>(StandardNormal));
        let q = thin_q(g.clone());
        // R = Qᵀ G must be upper triangular with a positive diagonal, and Q R = G.
        let r = q.t().dot(&g);
        for i in 0..4 {
            assert!(r[[i, i]] > 0.0, "R[{i},{i}] = {}", r[[i, i]]);
            for j in 0..i {
                assert!(r[[i, j]].abs() < 1e-12, "R[{i},{j}] = {}", r[[i, j]]);
            }
        }
        assert!(max_abs_diff(&q.dot(&r), &g) < 1e-12);
        assert!(max_abs_diff(&q.t().dot(&q), &Array2::eye(4)) < 1e-13);
    }

    #[test]
    fn qr_of_a_known_matrix() {
        // [[3, 1], [4, 2]]: first column (3, 4)/5; Q is the rotation with positive R diagonal.
        let q = thin_q(array![[3.0, 1.0], [4.0, 2.0]]);
        let expected = array![[0.6, -0.8], [0.8, 0.6]];
        assert!(max_abs_diff(&q, &expected) < 1e-15, "{q}");
    }

    #[test]
    fn rank_deficient_input_still_gives_orthonormal_columns() {
        // A zero column: its reflector is skipped and Q keeps a unit column there.
        let q = thin_q(array![[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]);
        assert!(max_abs_diff(&q.t().dot(&q), &Array2::eye(2)) < 1e-15, "{q}");
    }
}
