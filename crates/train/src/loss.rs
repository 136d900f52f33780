//! The losses on the read-out: mean squared error and numerically stable softmax
//! cross-entropy, each with its exact gradient with respect to the read-out's outputs.

use ndarray::{Array2, ArrayView1, ArrayView2};
use rnnlab_core::{Error, Float, Result, validate};
use rnnlab_tasks::TargetKind;
use serde::{Deserialize, Serialize};

/// Which loss a model is trained with, and where the read-out is applied.
///
/// Serialised as `"mse_last"`, `"cross_entropy_last"`, `"cross_entropy_every"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// [`mse`] of the read-out of the last step's h, `[batch, output_dim]`.
    MseLast,
    /// [`softmax_cross_entropy`] of the read-out of the last step's h, mean over the batch.
    CrossEntropyLast,
    /// [`softmax_cross_entropy`] of the read-out of every step's h, mean over time · batch.
    CrossEntropyEvery,
}

impl LossKind {
    /// The loss that fits a task's targets: `Regression` → `MseLast`, `ClassLast` →
    /// `CrossEntropyLast`, `ClassEveryStep` → `CrossEntropyEvery`.
    pub fn for_targets(kind: TargetKind) -> Self {
        match kind {
            TargetKind::Regression => Self::MseLast,
            TargetKind::ClassLast => Self::CrossEntropyLast,
            TargetKind::ClassEveryStep => Self::CrossEntropyEvery,
        }
    }

    /// The target kind this loss reads.
    pub fn target_kind(self) -> TargetKind {
        match self {
            Self::MseLast => TargetKind::Regression,
            Self::CrossEntropyLast => TargetKind::ClassLast,
            Self::CrossEntropyEvery => TargetKind::ClassEveryStep,
        }
    }

    /// Whether the read-out is applied to every step (not only the last).
    pub fn every_step(self) -> bool {
        matches!(self, Self::CrossEntropyEvery)
    }
}

/// A loss value (computed in f64) and its gradient with respect to the predictions.
#[derive(Clone, Debug, PartialEq)]
pub struct LossValue<F> {
    /// L, in f64.
    pub loss: f64,
    /// ∂L/∂(predictions), the predictions' shape.
    pub grad: Array2<F>,
}

/// Mean squared error over all `n = rows · cols` entries (PyTorch's `MSELoss()`):
///
/// L = (1/n) Σᵢⱼ (ŷᵢⱼ − yᵢⱼ)²,  ∂L/∂ŷᵢⱼ = 2(ŷᵢⱼ − yᵢⱼ)/n.
///
/// # Shapes
/// `pred` and `target`: `[rows, cols]`, both non-empty.
///
/// # Errors
/// [`Error::Shape`] for different or empty shapes; [`Error::NonFinite`] naming the first NaN or
/// ±∞ prediction or target (row, column): a loss of non-finite predictions has no meaningful
/// value or gradient. For finite inputs the result is finite, except that the loss is +∞ (and
/// an `f32` gradient ±∞) where a squared error exceeds the float range (|ŷ − y| > 1e154 in
/// `f64`): the trainer reads either as divergence.
///
/// # Examples
/// ```
/// use ndarray::array;
/// // errors 1 and −1: L = (1 + 1)/2 = 1, grad = 2·(±1)/2 = ±1
/// let v = rnnlab_train::mse(array![[2.0f64], [0.0]].view(), array![[1.0], [1.0]].view())?;
/// assert!((v.loss - 1.0).abs() < 1e-12 && (v.grad[[0, 0]] - 1.0).abs() < 1e-12);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn mse<F: Float>(pred: ArrayView2<'_, F>, target: ArrayView2<'_, F>) -> Result<LossValue<F>> {
    const OP: &str = "mse";
    validate::shape(OP, "target", pred.shape(), target.shape())?;
    if pred.is_empty() {
        return Err(Error::shape(OP, "predictions [rows >= 1, cols >= 1]", format!("{:?}", pred.shape())));
    }
    finite_2d(OP, "prediction", &pred)?;
    finite_2d(OP, "target", &target)?;
    let n = pred.len() as f64;
    let mut loss = 0.0f64;
    let mut grad = Array2::zeros(pred.raw_dim());
    for ((g, &p), &y) in grad.iter_mut().zip(pred.iter()).zip(target.iter()) {
        let d = p.as_f64() - y.as_f64();
        loss += d * d;
        *g = F::of(2.0 * d / n);
    }
    Ok(LossValue { loss: loss / n, grad })
}

/// Softmax cross-entropy averaged over rows (PyTorch's `CrossEntropyLoss()` on logits):
///
/// Lᵣ = log Σⱼ exp(zᵣⱼ) − zᵣ,yᵣ, computed as m + log Σⱼ exp(zᵣⱼ − m) with m = maxⱼ zᵣⱼ
/// (no overflow for any finite logits); L = (1/R) Σᵣ Lᵣ;
/// ∂L/∂zᵣⱼ = (softmax(zᵣ)ⱼ − [j = yᵣ])/R.
///
/// For a loss on every step pass logits `[time · batch, classes]` and the labels in the same
/// row order (row t · batch + b): the mean is then over time · batch.
///
/// # Shapes
/// `logits`: `[rows, classes]`; `labels`: `[rows]`, each `< classes`.
///
/// # Errors
/// [`Error::Shape`] for a label count different from the rows, zero rows or zero classes;
/// [`Error::Config`] for a label `>= classes`; [`Error::NonFinite`] naming the first NaN or
/// ±∞ logit (row, class). A +∞ logit has no softmax (∞ − ∞), a −∞ one would be a class of
/// probability 0 that the log-sum-exp cannot tell from an overflow: both are refused, so that
/// the result is always finite.
///
/// # Examples
/// ```
/// use ndarray::array;
/// // two equal logits: L = ln 2, gradient ±½
/// let v = rnnlab_train::softmax_cross_entropy(array![[0.0f64, 0.0]].view(), array![1usize].view())?;
/// assert!((v.loss - 2f64.ln()).abs() < 1e-12);
/// assert!((v.grad[[0, 0]] - 0.5).abs() < 1e-12 && (v.grad[[0, 1]] + 0.5).abs() < 1e-12);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn softmax_cross_entropy<F: Float>(
    logits: ArrayView2<'_, F>,
    labels: ArrayView1<'_, usize>,
) -> Result<LossValue<F>> {
    const OP: &str = "softmax_cross_entropy";
    let (rows, classes) = logits.dim();
    if rows == 0 || classes == 0 || labels.len() != rows {
        return Err(Error::shape(
            OP,
            format!("logits [rows >= 1, classes >= 1] with {} labels", labels.len()),
            format!("{:?}", logits.shape()),
        ));
    }
    if let Some((r, &l)) = labels.iter().enumerate().find(|&(_, &l)| l >= classes) {
        return Err(Error::config(OP, format!("label {l} at row {r} is not below the {classes} classes")));
    }
    finite_2d(OP, "logit", &logits)?;
    let inv_rows = 1.0 / rows as f64;
    let mut loss = 0.0f64;
    let mut grad = Array2::zeros((rows, classes));
    let mut p = vec![0.0f64; classes];
    for ((z, mut g), &y) in logits.outer_iter().zip(grad.outer_iter_mut()).zip(labels.iter()) {
        let m = z.iter().fold(f64::NEG_INFINITY, |m, v| m.max(v.as_f64()));
        let mut sum = 0.0f64;
        for (pj, zj) in p.iter_mut().zip(z.iter()) {
            *pj = (zj.as_f64() - m).exp();
            sum += *pj;
        }
        // log Σ exp(z − m) ≥ 0 because the max term is exp(0) = 1.
        loss += m + sum.ln() - z[y].as_f64();
        for (j, (gj, pj)) in g.iter_mut().zip(&p).enumerate() {
            let onehot = if j == y { 1.0 } else { 0.0 };
            *gj = F::of((pj / sum - onehot) * inv_rows);
        }
    }
    Ok(LossValue { loss: loss * inv_rows, grad })
}

/// `Err(NonFinite)` naming `op` and the first NaN or ±∞ entry of `a` as `what [row, col] = v`:
/// one branch-free pass ([`validate::finite_array`]), the element walk only on failure.
fn finite_2d<F: Float>(op: &str, what: &str, a: &ArrayView2<'_, F>) -> Result<()> {
    if validate::finite_array(op, what, a).is_ok() {
        return Ok(());
    }
    match a.indexed_iter().find(|(_, v)| !v.is_finite()) {
        Some(((r, c), v)) => Err(Error::non_finite(op, format!("{what} [{r}, {c}] = {v}"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, array};
    use rand::Rng as _;
    use rnnlab_core::seeded_rng;

    /// Central differences of `f` at `x`, entry by entry.
    fn numeric(x: &Array2<f64>, f: impl Fn(&Array2<f64>) -> f64) -> Array2<f64> {
        let eps = 1e-6;
        let mut g = Array2::zeros(x.raw_dim());
        for (idx, gi) in g.indexed_iter_mut() {
            let mut a = x.clone();
            a[idx] += eps;
            let mut b = x.clone();
            b[idx] -= eps;
            *gi = (f(&a) - f(&b)) / (2.0 * eps);
        }
        g
    }

    fn assert_close(a: &Array2<f64>, b: &Array2<f64>, tol: f64) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol * (1.0 + x.abs().max(y.abs())), "{x} vs {y}");
        }
    }

    #[test]
    fn mse_gradient_matches_finite_differences() {
        let mut rng = seeded_rng(1);
        let pred = Array2::from_shape_fn((4, 3), |_| rng.random_range(-2.0..2.0));
        let target = Array2::from_shape_fn((4, 3), |_| rng.random_range(-2.0..2.0));
        let v = mse(pred.view(), target.view()).unwrap();
        let num = numeric(&pred, |p| mse(p.view(), target.view()).unwrap().loss);
        assert_close(&v.grad, &num, 1e-8);
    }

    #[test]
    fn mse_hand_value() {
        // errors (1, −2, 0, 3): L = (1 + 4 + 0 + 9)/4 = 3.5
        let v = mse(array![[1.0f64, -2.0], [0.0, 3.0]].view(), Array2::zeros((2, 2)).view()).unwrap();
        assert!((v.loss - 3.5).abs() < 1e-12);
        assert!((v.grad[[1, 1]] - 1.5).abs() < 1e-12, "2·3/4");
    }

    #[test]
    fn mse_rejects_mismatched_and_empty_shapes() {
        let a = Array2::<f32>::zeros((2, 1));
        assert!(matches!(mse(a.view(), Array2::zeros((2, 2)).view()), Err(Error::Shape { .. })));
        let e = Array2::<f32>::zeros((0, 1));
        assert!(matches!(mse(e.view(), e.view()), Err(Error::Shape { .. })));
    }

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        let mut rng = seeded_rng(2);
        let logits = Array2::from_shape_fn((5, 4), |_| rng.random_range(-3.0..3.0));
        let labels = Array1::from(vec![0usize, 3, 1, 1, 2]);
        let v = softmax_cross_entropy(logits.view(), labels.view()).unwrap();
        let num = numeric(&logits, |z| softmax_cross_entropy(z.view(), labels.view()).unwrap().loss);
        assert_close(&v.grad, &num, 1e-8);
    }

    #[test]
    fn cross_entropy_hand_value_and_stability() {
        // logits (ln 1, ln 3): softmax (¼, ¾); label 0 → L = ln 4.
        let v = softmax_cross_entropy(array![[0.0f64, 3f64.ln()]].view(), array![0usize].view()).unwrap();
        assert!((v.loss - 4f64.ln()).abs() < 1e-12);
        // Huge logits: log-sum-exp keeps it finite and exact. L = ln(1 + e^{-1000}) ≈ 0 for the max;
        // for the other label L = 1000.
        let z = array![[1000.0f32, 0.0]];
        let v = softmax_cross_entropy(z.view(), array![1usize].view()).unwrap();
        assert!((v.loss - 1000.0).abs() < 1e-9, "{}", v.loss);
        assert!(v.grad.iter().all(|g| g.is_finite()));
        let v = softmax_cross_entropy(z.view(), array![0usize].view()).unwrap();
        assert!(v.loss.abs() < 1e-12);
    }

    #[test]
    fn cross_entropy_rejects_a_label_out_of_range() {
        let e = softmax_cross_entropy(Array2::<f64>::zeros((2, 3)).view(), array![0usize, 3].view()).unwrap_err();
        assert!(matches!(e, Error::Config { .. }) && e.to_string().contains("label 3 at row 1"), "{e}");
    }

    #[test]
    fn cross_entropy_rejects_bad_shapes() {
        let z = Array2::<f64>::zeros((2, 3));
        assert!(matches!(softmax_cross_entropy(z.view(), array![0usize].view()), Err(Error::Shape { .. })));
        let z0 = Array2::<f64>::zeros((2, 0));
        assert!(matches!(softmax_cross_entropy(z0.view(), array![0usize, 0].view()), Err(Error::Shape { .. })));
        let r0 = Array2::<f64>::zeros((0, 3));
        assert!(matches!(softmax_cross_entropy(r0.view(), Array1::<usize>::zeros(0).view()), Err(Error::Shape { .. })));
    }

    #[test]
    fn loss_kinds_pair_with_target_kinds() {
        for k in [LossKind::MseLast, LossKind::CrossEntropyLast, LossKind::CrossEntropyEvery] {
            assert_eq!(LossKind::for_targets(k.target_kind()), k);
        }
        assert_eq!(serde_json::to_string(&LossKind::CrossEntropyEvery).unwrap(), r#""cross_entropy_every""#);
    }

    #[test]
    fn losses_refuse_non_finite_predictions_targets_and_logits() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = mse(array![[0.5, bad]].view(), array![[1.0, 1.0]].view()).unwrap_err();
            assert!(matches!(e, Error::NonFinite { .. }) && e.to_string().contains("prediction [0, 1]"), "{e}");
            let e = mse(array![[0.5f32]].view(), array![[bad as f32]].view()).unwrap_err();
            assert!(e.to_string().contains("target [0, 0]"), "{e}");
            let e = softmax_cross_entropy(array![[0.0, 1.0], [bad, 0.0]].view(), array![0usize, 1].view()).unwrap_err();
            assert!(matches!(e, Error::NonFinite { .. }) && e.to_string().contains("logit [1, 0]"), "{e}");
        }
        // The most extreme finite logits stay finite, in f32 and f64.
        let v = softmax_cross_entropy(array![[f32::MAX, -f32::MAX]].view(), array![1usize].view()).unwrap();
        assert!(v.loss.is_finite() && v.grad.iter().all(|g| g.is_finite()), "{v:?}");
        let v = softmax_cross_entropy(array![[f64::MAX, -f64::MAX]].view(), array![1usize].view()).unwrap();
        assert!(v.grad.iter().all(|g| g.is_finite()), "{v:?}");
        // A squared error beyond f64's range: +∞ loss (the documented overflow), finite gradient.
        let v = mse(array![[1e200f64]].view(), array![[-1e200]].view()).unwrap();
        assert!(v.loss == f64::INFINITY && v.grad[[0, 0]].is_finite());
    }
}
