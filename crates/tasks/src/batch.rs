//! A batch of sequences and its targets, `[time, batch, features]`, plus accuracy.

use ndarray::{Array1, Array2, Array3, ArrayViewD, Axis, Ix2, Ix3};
use rnnlab_core::{Error, Float, Result};

/// Squared error at or under which a regression sequence counts as correct:
/// Pascanu, Mikolov, Bengio 2013 call a sequence wrong if its squared error exceeds 0.04.
pub const REGRESSION_TOLERANCE: f64 = 0.04;

/// What a task asks for, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A real vector read off the last step; loss = mean squared error.
    Regression,
    /// One class per sequence, read off the last step; loss = cross-entropy.
    ClassLast,
    /// One class per step; loss = cross-entropy averaged over all steps and sequences.
    ClassEveryStep,
}

/// The targets of a [`Batch`].
///
/// # Shapes
/// - [`Targets::Regression`]: `[batch, output_dim]`
/// - [`Targets::ClassLast`]: `[batch]`, each `< output_dim`
/// - [`Targets::ClassEveryStep`]: `[time, batch]`, each `< output_dim`
#[derive(Clone, Debug, PartialEq)]
pub enum Targets<F> {
    /// Real targets at the last step, `[batch, output_dim]`.
    Regression(Array2<F>),
    /// A class index per sequence, `[batch]`.
    ClassLast(Array1<usize>),
    /// A class index per step and sequence, `[time, batch]`.
    ClassEveryStep(Array2<usize>),
}

/// Inputs and targets of a batch of sequences.
///
/// # Shapes
/// `inputs`: `[time, batch, input_dim]`; `targets`: see [`Targets`].
#[derive(Clone, Debug, PartialEq)]
pub struct Batch<F> {
    /// `[time, batch, input_dim]`.
    pub inputs: Array3<F>,
    /// The targets, of the task's [`TargetKind`].
    pub targets: Targets<F>,
}

impl<F: Float> Batch<F> {
    /// The number of sequences.
    pub fn batch_size(&self) -> usize {
        self.inputs.len_of(Axis(1))
    }

    /// The number of steps.
    pub fn n_steps(&self) -> usize {
        self.inputs.len_of(Axis(0))
    }
}

impl<F: Float> Targets<F> {
    /// The kind of these targets.
    pub fn kind(&self) -> TargetKind {
        match self {
            Targets::Regression(_) => TargetKind::Regression,
            Targets::ClassLast(_) => TargetKind::ClassLast,
            Targets::ClassEveryStep(_) => TargetKind::ClassEveryStep,
        }
    }

    /// The fraction of correct predictions, in [0, 1].
    ///
    /// - `Regression`: `outputs` `[batch, output_dim]`; a sequence is correct if its squared
    ///   error Σ_j (ŷ_j − y_j)² is at most [`REGRESSION_TOLERANCE`] (Pascanu et al. 2013).
    /// - `ClassLast`: `outputs` (scores or logits) `[batch, n_classes]`; correct if the argmax
    ///   equals the label.
    /// - `ClassEveryStep`: `outputs` `[time, batch, n_classes]`; the fraction of (step,
    ///   sequence) pairs whose argmax equals the label.
    ///
    /// NaN scores never win the argmax; a row of NaNs counts as wrong.
    ///
    /// # Errors
    /// [`Error::Shape`] if `outputs` does not have the shape above, or has zero classes.
    ///
    /// # Examples
    /// ```
    /// use ndarray::{arr1, arr2};
    /// use rnnlab_tasks::Targets;
    /// let t = Targets::<f64>::ClassLast(arr1(&[1, 0]));
    /// let logits = arr2(&[[0.1, 0.9], [0.2, 0.3]]);
    /// assert_eq!(t.accuracy(logits.view().into_dyn())?, 0.5);
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn accuracy(&self, outputs: ArrayViewD<'_, F>) -> Result<f64> {
        const OP: &str = "targets.accuracy";
        let got = format!("{:?}", outputs.shape());
        match self {
            Targets::Regression(y) => {
                let out = outputs
                    .into_dimensionality::<Ix2>()
                    .map_err(|_| Error::shape(OP, format!("outputs {:?}", y.shape()), got.clone()))?;
                rnnlab_core::validate::shape(OP, "outputs", y.shape(), out.shape())?;
                let n = y.nrows();
                if n == 0 {
                    return Ok(0.0);
                }
                let correct = y
                    .outer_iter()
                    .zip(out.outer_iter())
                    .filter(|(yr, or)| {
                        let se: f64 = yr.iter().zip(or.iter()).map(|(a, b)| (a.as_f64() - b.as_f64()).powi(2)).sum();
                        se <= REGRESSION_TOLERANCE
                    })
                    .count();
                Ok(correct as f64 / n as f64)
            }
            Targets::ClassLast(labels) => {
                let out = outputs
                    .into_dimensionality::<Ix2>()
                    .map_err(|_| Error::shape(OP, format!("outputs [{}, n_classes]", labels.len()), got.clone()))?;
                if out.nrows() != labels.len() || out.ncols() == 0 {
                    return Err(Error::shape(OP, format!("outputs [{}, n_classes >= 1]", labels.len()), got));
                }
                if labels.is_empty() {
                    return Ok(0.0);
                }
                let correct =
                    labels.iter().zip(out.outer_iter()).filter(|(l, row)| argmax(row.iter()) == Some(**l)).count();
                Ok(correct as f64 / labels.len() as f64)
            }
            Targets::ClassEveryStep(labels) => {
                let (t, b) = labels.dim();
                let out = outputs
                    .into_dimensionality::<Ix3>()
                    .map_err(|_| Error::shape(OP, format!("outputs [{t}, {b}, n_classes]"), got.clone()))?;
                let (ot, ob, oc) = out.dim();
                if ot != t || ob != b || oc == 0 {
                    return Err(Error::shape(OP, format!("outputs [{t}, {b}, n_classes >= 1]"), got));
                }
                if labels.is_empty() {
                    return Ok(0.0);
                }
                let mut correct = 0usize;
                for ((i, j), &l) in labels.indexed_iter() {
                    if argmax(out.slice(ndarray::s![i, j, ..]).iter()) == Some(l) {
                        correct += 1;
                    }
                }
                Ok(correct as f64 / labels.len() as f64)
            }
        }
    }
}

/// Index of the largest non-NaN value (the first on ties), `None` if all are NaN.
fn argmax<'a, F: Float>(values: impl Iterator<Item = &'a F>) -> Option<usize> {
    let mut best: Option<(usize, F)> = None;
    for (i, &v) in values.enumerate() {
        if v.is_nan() {
            continue;
        }
        match best {
            Some((_, b)) if v <= b => {}
            _ => best = Some((i, v)),
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr1, arr2, arr3};

    #[test]
    fn regression_accuracy_uses_pascanu_threshold() {
        let t = Targets::Regression(arr2(&[[1.0f64], [0.5], [0.0]]));
        // squared errors 0.04 (correct, at the threshold), 0.01 (correct), 0.09 (wrong)
        let out = arr2(&[[1.2f64], [0.6], [0.3]]);
        let acc = t.accuracy(out.view().into_dyn()).unwrap();
        assert!((acc - 2.0 / 3.0).abs() < 1e-12, "{acc}");
    }

    #[test]
    fn class_every_step_accuracy_counts_steps() {
        let t = Targets::<f32>::ClassEveryStep(arr2(&[[0, 1], [1, 1]]));
        let out = arr3(&[[[1.0f32, 0.0], [1.0, 0.0]], [[0.0, 1.0], [f32::NAN, f32::NAN]]]);
        // (0,0) right, (0,1) wrong, (1,0) right, (1,1) all NaN → wrong
        assert!((t.accuracy(out.view().into_dyn()).unwrap() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn accuracy_rejects_bad_shapes() {
        let t = Targets::<f64>::ClassLast(arr1(&[0, 1]));
        assert!(t.accuracy(arr2(&[[1.0, 0.0]]).view().into_dyn()).is_err());
        assert!(t.accuracy(ndarray::Array2::<f64>::zeros((2, 0)).view().into_dyn()).is_err());
        assert!(t.accuracy(arr1(&[1.0, 0.0]).view().into_dyn()).is_err());
        let r = Targets::Regression(arr2(&[[1.0f64]]));
        assert!(r.accuracy(arr2(&[[1.0, 2.0]]).view().into_dyn()).is_err());
        let e = Targets::<f64>::ClassEveryStep(arr2(&[[0]]));
        assert!(e.accuracy(arr2(&[[1.0]]).view().into_dyn()).is_err());
        assert!(e.accuracy(ndarray::Array3::<f64>::zeros((1, 1, 0)).view().into_dyn()).is_err());
    }

    #[test]
    fn argmax_takes_first_of_ties_and_skips_nan() {
        assert_eq!(argmax([f64::NAN, 2.0, 2.0].iter()), Some(1));
        assert_eq!(argmax([f64::NAN].iter()), None);
    }
}
