//! The adding problem in the form of Le et al. 2015 and Arjovsky et al. 2016.

use ndarray::{Array2, Array3, ArrayView3, Axis};
use rand::Rng as _;
use rnnlab_core::{Error, Float, Result, Rng};
use serde::{Deserialize, Serialize};

use crate::task::{check_batch, check_seq_len};
use crate::{Batch, TargetKind, Targets, Task};

/// Configuration of the [`Adding`] problem: the sequence length T.
///
/// # Examples
/// ```
/// use rnnlab_tasks::{AddingConfig, Task};
/// let task = AddingConfig::new(100).build()?;
/// assert!((task.baseline_loss() - 1.0 / 6.0).abs() < 1e-15);
/// assert!(AddingConfig::new(1).build().is_err());
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct AddingConfig {
    /// Steps per sequence T, at least 2 (one marker in each half).
    pub seq_len: usize,
}
rnnlab_core::serde_map_only!(AddingConfig);

impl AddingConfig {
    /// Sequences of `seq_len` steps.
    pub fn new(seq_len: usize) -> Self {
        Self { seq_len }
    }

    /// Validates and builds the task.
    ///
    /// # Errors
    /// [`Error::Config`] if `seq_len < 2` (each half must hold a marker) or over
    /// [`rnnlab_core::limits::MAX_SEQ_LEN`].
    pub fn build(&self) -> Result<Adding> {
        check_seq_len("adding", "seq_len", self.seq_len)?;
        if self.seq_len < 2 {
            return Err(Error::config(
                "adding",
                format!("seq_len must be at least 2 (one marker per half), got {}", self.seq_len),
            ));
        }
        Ok(Adding { seq_len: self.seq_len })
    }
}

/// The adding problem (Le, Jaitly, Hinton 2015; Arjovsky, Shah, Bengio 2016).
///
/// Two input channels over T steps: channel 0 holds values x_t ~ U[0, 1) (drawn in f64; the
/// rounding to `f32` can give 1.0, with probability about 2⁻²⁵), channel 1 a marker
/// m_t ∈ {0, 1} with exactly two ones, one at i ~ U{0, …, h−1} and one at
/// j ~ U{h, …, T−1}, h = ⌊T/2⌋ (for odd T the second "half" is one step longer). The target,
/// read at the last step, is y = Σ_t x_t·m_t = x_i + x_j.
///
/// Baseline: a memoryless predictor outputs a constant c; the MSE E((y − c)²) is smallest at
/// c = E(y) = 1, where it equals Var(x_i + x_j) = 2·(1/12) = 1/6 ≈ 0.167.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adding {
    seq_len: usize,
}

impl Adding {
    /// The target y_b = Σ_t inputs[t, b, 0]·inputs[t, b, 1], `[batch, 1]`: what [`Task::sample`]
    /// uses to label its own inputs, so the label provably depends on the marked values only.
    ///
    /// # Errors
    /// [`Error::Shape`] unless `inputs` is `[T, batch, 2]` with T ≥ 1.
    ///
    /// # Examples
    /// ```
    /// use ndarray::arr3;
    /// use rnnlab_tasks::AddingConfig;
    /// let task = AddingConfig::new(3).build()?;
    /// let x = arr3(&[[[0.5, 1.0]], [[0.9, 0.0]], [[0.25, 1.0]]]);
    /// assert_eq!(task.targets_of(x.view())?[[0, 0]], 0.75);
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn targets_of<F: Float>(&self, inputs: ArrayView3<'_, F>) -> Result<Array2<F>> {
        let (t, b, i) = inputs.dim();
        if t == 0 || i != 2 {
            return Err(Error::shape(
                "adding.targets_of",
                "inputs [T >= 1, batch, 2]",
                format!("{:?}", inputs.shape()),
            ));
        }
        let mut y = Array2::zeros((b, 1));
        for step in inputs.axis_iter(Axis(0)) {
            for (k, row) in step.outer_iter().enumerate() {
                y[[k, 0]] += row[0] * row[1];
            }
        }
        Ok(y)
    }

    /// The two marked steps' windows: `[0, h)` and `[h, T)` with h = ⌊T/2⌋.
    pub fn marker_windows(&self) -> [std::ops::Range<usize>; 2] {
        let h = self.seq_len / 2;
        [0..h, h..self.seq_len]
    }
}

impl Task for Adding {
    fn name(&self) -> String {
        format!("adding(T={})", self.seq_len)
    }

    fn input_dim(&self) -> usize {
        2
    }

    fn output_dim(&self) -> usize {
        1
    }

    fn seq_len(&self) -> usize {
        self.seq_len
    }

    fn target_kind(&self) -> TargetKind {
        TargetKind::Regression
    }

    /// Draws, in this order: the values x[t, b] for t-major then b, then per sequence the first
    /// and the second marked step.
    fn sample<F: Float>(&self, batch: usize, rng: &mut Rng) -> Result<Batch<F>> {
        check_batch("adding.sample", batch, self.seq_len, 2)?;
        let mut x = Array3::<F>::zeros((self.seq_len, batch, 2));
        for t in 0..self.seq_len {
            for b in 0..batch {
                x[[t, b, 0]] = F::of(rng.random::<f64>());
            }
        }
        let [first, second] = self.marker_windows();
        for b in 0..batch {
            // Both windows are non-empty because seq_len >= 2 was validated.
            let i = rng.random_range(first.clone());
            let j = rng.random_range(second.clone());
            x[[i, b, 1]] = F::one();
            x[[j, b, 1]] = F::one();
        }
        let y = self.targets_of(x.view())?;
        Ok(Batch { inputs: x, targets: Targets::Regression(y) })
    }

    /// 1/6: Var(x_i + x_j) for independent U[0, 1) values; see [`Adding`].
    fn baseline_loss(&self) -> f64 {
        1.0 / 6.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rnnlab_core::seeded_rng;

    fn regression(b: &Batch<f64>) -> &Array2<f64> {
        match &b.targets {
            Targets::Regression(y) => y,
            other => unreachable!("adding returns regression targets, got {:?}", other.kind()),
        }
    }

    #[test]
    fn rejects_too_short_sequences() {
        assert!(AddingConfig::new(0).build().is_err());
        assert!(AddingConfig::new(1).build().is_err());
        assert!(AddingConfig::new(2).build().is_ok());
    }

    #[test]
    fn rejects_zero_batch() {
        let task = AddingConfig::new(10).build().unwrap();
        assert!(task.sample::<f32>(0, &mut seeded_rng(0)).is_err());
    }

    #[test]
    fn targets_of_rejects_bad_shapes() {
        let task = AddingConfig::new(10).build().unwrap();
        assert!(task.targets_of(Array3::<f64>::zeros((10, 2, 3)).view()).is_err());
        assert!(task.targets_of(Array3::<f64>::zeros((0, 2, 2)).view()).is_err());
    }

    #[test]
    fn shapes_ranges_and_markers() {
        for (t, b) in [(2, 1), (7, 3), (100, 16)] {
            let task = AddingConfig::new(t).build().unwrap();
            let batch = task.sample::<f64>(b, &mut seeded_rng(1)).unwrap();
            assert_eq!(batch.inputs.dim(), (t, b, 2));
            assert_eq!(batch.n_steps(), t);
            assert_eq!(batch.batch_size(), b);
            let y = regression(&batch);
            assert_eq!(y.dim(), (b, 1));
            let [first, second] = task.marker_windows();
            for k in 0..b {
                let marks: Vec<usize> = (0..t).filter(|&s| batch.inputs[[s, k, 1]] != 0.0).collect();
                assert_eq!(marks.len(), 2);
                assert!(first.contains(&marks[0]) && second.contains(&marks[1]), "{marks:?}");
                for s in 0..t {
                    let v = batch.inputs[[s, k, 0]];
                    assert!((0.0..1.0).contains(&v));
                    let m = batch.inputs[[s, k, 1]];
                    assert!(m == 0.0 || m == 1.0);
                }
                let want = batch.inputs[[marks[0], k, 0]] + batch.inputs[[marks[1], k, 0]];
                assert!((y[[k, 0]] - want).abs() < 1e-12);
                assert!((0.0..2.0).contains(&y[[k, 0]]));
            }
        }
    }

    #[test]
    fn target_depends_on_marked_values_only() {
        let task = AddingConfig::new(20).build().unwrap();
        let batch = task.sample::<f64>(4, &mut seeded_rng(2)).unwrap();
        let y0 = task.targets_of(batch.inputs.view()).unwrap();
        assert_eq!(&y0, regression(&batch));
        for k in 0..4 {
            for s in 0..20 {
                let mut x = batch.inputs.clone();
                x[[s, k, 0]] += 0.5;
                let y = task.targets_of(x.view()).unwrap();
                let changed = (y[[k, 0]] - y0[[k, 0]]).abs() > 1e-12;
                assert_eq!(changed, batch.inputs[[s, k, 1]] == 1.0, "step {s} sequence {k}");
                // other sequences never move
                for other in (0..4).filter(|&o| o != k) {
                    assert_eq!(y[[other, 0]], y0[[other, 0]]);
                }
            }
        }
    }

    #[test]
    fn marker_windows_cover_odd_lengths() {
        let task = AddingConfig::new(7).build().unwrap();
        assert_eq!(task.marker_windows(), [0..3, 3..7]);
    }

    #[test]
    fn baseline_is_one_sixth_empirically() {
        // 10^5 sequences of length 2 (the target's law does not depend on T): the mean of y is 1
        // and the MSE of predicting 1 is 1/6. Std of the MSE estimate: √((1/15 − 1/36)/10^5) ≈ 6.2e-4.
        let task = AddingConfig::new(2).build().unwrap();
        let mut rng = seeded_rng(3);
        let (mut sum, mut sq, mut n) = (0.0, 0.0, 0usize);
        for _ in 0..10 {
            let batch = task.sample::<f64>(10_000, &mut rng).unwrap();
            for &y in regression(&batch).iter() {
                sum += y;
                sq += (y - 1.0) * (y - 1.0);
                n += 1;
            }
        }
        let (mean, mse) = (sum / n as f64, sq / n as f64);
        assert!((mean - 1.0).abs() < 0.005, "mean {mean}");
        assert!((mse - task.baseline_loss()).abs() < 0.003, "mse {mse}");
        assert!((task.baseline_loss() - 1.0 / 6.0).abs() < 1e-15);
    }

    #[test]
    fn deterministic_from_seed() {
        let task = AddingConfig::new(30).build().unwrap();
        let a = task.sample::<f32>(5, &mut seeded_rng(9)).unwrap();
        let b = task.sample::<f32>(5, &mut seeded_rng(9)).unwrap();
        let c = task.sample::<f32>(5, &mut seeded_rng(10)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn config_round_trips_through_json() {
        let cfg = AddingConfig::new(200);
        let s = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<AddingConfig>(&s).unwrap(), cfg);
    }
}
