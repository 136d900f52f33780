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
    orthogonalise_columns(&mut c, None);
    let mut s: Vec<f64> = c.rows().into_iter().map(|r| r.iter().map(|x| x * x).sum::<f64>().sqrt()).collect();
    s.sort_by(|x, y| y.total_cmp(x));
    s
}

/// The eigenvalues (largest first) and the eigenvectors (as rows, in the same order) of a
/// symmetric positive semi-definite `a` (`[n, n]`): its singular values and right singular
/// vectors, by the same rotations as [`singular_values`], accumulated into V.
pub(crate) fn sym_eigen(a: &Array2<f64>) -> (Vec<f64>, Array2<f64>) {
    let mut c = a.t().as_standard_layout().to_owned();
    let n = c.nrows();
    // row i of `vt` is column i of V: A·V = C (C's columns are the rotated columns of A)
    let mut vt = Array2::<f64>::eye(n);
    orthogonalise_columns(&mut c, Some(&mut vt));
    let norms: Vec<f64> = c.rows().into_iter().map(|r| r.iter().map(|x| x * x).sum::<f64>().sqrt()).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| norms[j].total_cmp(&norms[i]));
    let values = order.iter().map(|&i| norms[i]).collect();
    let vectors = Array2::from_shape_fn((n, n), |(i, j)| vt[[order[i], j]]);
    (values, vectors)
}

/// One-sided Jacobi on the rows of `c` (the columns of the matrix): rotates pairs until every
/// pair is orthogonal to [`ORTHO_TOL`], applying each rotation to the rows of `v` too.
fn orthogonalise_columns(c: &mut Array2<f64>, mut v: Option<&mut Array2<f64>>) {
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
                rotate_rows(c, p, q, cs, sn);
                if let Some(v) = v.as_deref_mut() {
                    rotate_rows(v, p, q, cs, sn);
                }
            }
        }
        if !rotated {
            break;
        }
    }
}

/// Rows p < q of `m` ← (cs·r_p − sn·r_q, sn·r_p + cs·r_q).
fn rotate_rows(m: &mut Array2<f64>, p: usize, q: usize, cs: f64, sn: f64) {
    let (mut lo, mut hi) = m.view_mut().split_at(ndarray::Axis(0), q);
    let mut rp = lo.row_mut(p);
    let mut rq = hi.row_mut(0);
    for (x, y) in rp.iter_mut().zip(rq.iter_mut()) {
        let (xp, yq) = (*x, *y);
        *x = cs * xp - sn * yq;
        *y = sn * xp + cs * yq;
    }
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

    #[test]
    fn sym_eigen_of_known_matrices() {
        // [2 1; 1 2]: λ = 3 with (1, 1)/√2, λ = 1 with (1, −1)/√2
        let (l, v) = sym_eigen(&array![[2.0, 1.0], [1.0, 2.0]]);
        assert!((l[0] - 3.0).abs() < 1e-14 && (l[1] - 1.0).abs() < 1e-14, "{l:?}");
        let r = 0.5f64.sqrt();
        assert!((v[[0, 0]].abs() - r).abs() < 1e-14 && (v[[0, 0]] - v[[0, 1]]).abs() < 1e-14, "{v}");
        assert!((v[[1, 0]] + v[[1, 1]]).abs() < 1e-14, "{v}");
        // a random Gram matrix BᵀB (5×4 B): A·v_i = λ_i·v_i, λ_i = σ_i(B)², largest first
        let b = Array2::from_shape_fn((5, 4), |(i, j)| ((i * 7 + j * 3) % 11) as f64 - 5.0);
        let a = b.t().dot(&b);
        let (l, v) = sym_eigen(&a);
        let sv = singular_values(b);
        for i in 0..4 {
            assert!((l[i] - sv[i] * sv[i]).abs() < 1e-12 * l[0], "{l:?} vs {sv:?}");
            let av = a.dot(&v.row(i));
            assert!(av.iter().zip(v.row(i)).all(|(x, y)| (x - l[i] * y).abs() < 1e-11 * l[0]));
        }
        // zero: every eigenvalue 0
        let (l, _) = sym_eigen(&Array2::zeros((3, 3)));
        assert!(l.iter().all(|&x| x == 0.0));
    }
}
