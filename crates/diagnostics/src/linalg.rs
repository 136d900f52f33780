//! Singular values of a small dense matrix by one-sided Jacobi (Hestenes), in f64.

use ndarray::Array2;

/// Sweeps at most; a sweep rotates every column pair once.
const MAX_SWEEPS: usize = 60;
/// A pair counts as orthogonal when |⟨a_p, a_q⟩| ≤ this · ‖a_p‖·‖a_q‖.
const ORTHO_TOL: f64 = 1e-15;

/// The singular values of `a` (`[m, n]`), largest first: rotations make the columns mutually
/// orthogonal (Hestenes 1958), and the singular values are then the column norms. Accurate to
/// a few ulps of σ₁ for every value, small ones included (JᵀJ is never formed).
pub(crate) fn singular_values(a: Array2<f64>) -> Vec<f64> {
    // Columns as contiguous rows of the transpose.
    let mut c = a.reversed_axes().as_standard_layout().to_owned();
    let n = c.nrows();
    for _ in 0..MAX_SWEEPS {
        let mut rotated = false;
        for p in 0..n {
            for q in p + 1..n {
                let (alpha, beta, gamma) = {
                    let (cp, cq) = (c.row(p), c.row(q));
                    let mut s = (0.0, 0.0, 0.0);
                    for (&x, &y) in cp.iter().zip(cq.iter()) {
                        s.0 += x * x;
                        s.1 += y * y;
                        s.2 += x * y;
                    }
                    s
                };
                if gamma == 0.0 || gamma.abs() <= ORTHO_TOL * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let cs = 1.0 / (1.0 + t * t).sqrt();
                let sn = cs * t;
                let (mut lo, mut hi) = c.view_mut().split_at(ndarray::Axis(0), q);
                let mut cp = lo.row_mut(p);
                let mut cq = hi.row_mut(0);
                for (x, y) in cp.iter_mut().zip(cq.iter_mut()) {
                    let (xp, yq) = (*x, *y);
                    *x = cs * xp - sn * yq;
                    *y = sn * xp + cs * yq;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let mut s: Vec<f64> = c.rows().into_iter().map(|r| r.iter().map(|x| x * x).sum::<f64>().sqrt()).collect();
    s.sort_by(|x, y| y.total_cmp(x));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn singular_values_of_known_matrices() {
        // diag(3, 1) rotated by 30° on the left: singular values 3, 1
        let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
        let a = array![[c, -s], [s, c]].dot(&array![[3.0, 0.0], [0.0, 1.0]]);
        let sv = singular_values(a);
        assert!((sv[0] - 3.0).abs() < 1e-14 && (sv[1] - 1.0).abs() < 1e-14, "{sv:?}");
        // rank one: [1 2; 2 4] = [1;2][1 2] → σ = 5, 0
        let sv = singular_values(array![[1.0, 2.0], [2.0, 4.0]]);
        assert!((sv[0] - 5.0).abs() < 1e-14 && sv[1].abs() < 1e-14, "{sv:?}");
    }
}
