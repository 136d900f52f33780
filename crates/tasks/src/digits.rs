//! Sequential (and permuted) 8×8 digits: the real-data task, read pixel by pixel or row by row.

use ndarray::{Array1, Array3};
use rand::Rng as _;
use rnnlab_core::{Float, Result, Rng};
use serde::{Deserialize, Serialize};

use crate::optdigits::{self, MAX_PIXEL, N_PIXELS, N_ROWS};
use crate::shuffle::fixed_permutation;
use crate::task::check_batch;
use crate::{Batch, TargetKind, Targets, Task};

/// Seed of the fixed shuffle of the 1,797 rows that defines the train/test split.
pub const DIGITS_SPLIT_SEED: u64 = 1998;
/// Seed of the fixed pixel permutation of the permuted variant.
pub const DIGITS_PERMUTATION_SEED: u64 = 2015;
/// Examples in the training split (the first 1,437 of the shuffled rows, 80 %).
pub const DIGITS_N_TRAIN: usize = 1_437;
/// Examples in the test split (the last 360 of the shuffled rows).
pub const DIGITS_N_TEST: usize = N_ROWS - DIGITS_N_TRAIN;

/// How an 8×8 image becomes a sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DigitsLayout {
    /// 64 steps of 1 input: one pixel per step.
    #[default]
    Pixels,
    /// 8 steps of 8 inputs: one row (of the possibly permuted pixel order) per step.
    Rows,
}

/// One of the two fixed splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// 1,437 examples; [`Task::sample`] draws from it.
    Train,
    /// 360 held-out examples.
    Test,
}

/// Configuration of [`SequentialDigits`]: layout and whether the pixels are permuted.
///
/// # Examples
/// ```
/// use rnnlab_tasks::{DigitsConfig, DigitsLayout, Task};
/// let task = DigitsConfig::new().with_permuted(true).build()?;
/// assert_eq!((task.seq_len(), task.input_dim()), (64, 1));
/// let rows = DigitsConfig::new().with_layout(DigitsLayout::Rows).build()?;
/// assert_eq!((rows.seq_len(), rows.input_dim()), (8, 8));
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct DigitsConfig {
    /// Pixel by pixel (default) or row by row.
    pub layout: DigitsLayout,
    /// Read the pixels in the fixed order [`SequentialDigits::pixel_order`] instead of raster order.
    pub permuted: bool,
}
rnnlab_core::serde_map_only!(DigitsConfig);

impl DigitsConfig {
    /// Pixel by pixel, raster order.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the layout.
    pub fn with_layout(mut self, layout: DigitsLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Sets whether the pixels are permuted.
    pub fn with_permuted(mut self, permuted: bool) -> Self {
        self.permuted = permuted;
        self
    }

    /// Parses the embedded data and builds the task.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Format`] if the embedded data is corrupt (the crate's tests
    /// guarantee it is not).
    pub fn build(&self) -> Result<SequentialDigits> {
        let data = optdigits::load()?;
        let order = fixed_permutation(N_ROWS, DIGITS_SPLIT_SEED);
        let pixel_order =
            if self.permuted { fixed_permutation(N_PIXELS, DIGITS_PERMUTATION_SEED) } else { (0..N_PIXELS).collect() };
        let mut counts = [0usize; 10];
        for &i in &order[..DIGITS_N_TRAIN] {
            counts[usize::from(data.labels[i])] += 1;
        }
        let baseline =
            counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / DIGITS_N_TRAIN as f64).map(|p| -p * p.ln()).sum();
        Ok(SequentialDigits { config: self.clone(), data, order, pixel_order, baseline })
    }
}

/// Sequential digits: the 1,797 8×8 optdigits images (Alpaydin & Kaynak 1998, UCI, CC BY 4.0;
/// the test split as redistributed by scikit-learn) read as sequences, the small-scale
/// analogue of sequential / permuted MNIST (Le, Jaitly, Hinton 2015).
///
/// Each pixel p ∈ {0, …, 16} becomes the input p/16 ∈ [0, 1]. [`DigitsLayout::Pixels`]: 64
/// steps of 1 input, in raster order or, if permuted, in the fixed order
/// [`SequentialDigits::pixel_order`] (Fisher–Yates from `seeded_rng(DIGITS_PERMUTATION_SEED)`);
/// [`DigitsLayout::Rows`]: 8 steps of 8 consecutive pixels of that order. The class (10) is
/// read at the last step.
///
/// Split: the rows, shuffled by a Fisher–Yates permutation from
/// `seeded_rng(DIGITS_SPLIT_SEED)`, give the first 1,437 to training and the last 360 to
/// test. [`Task::sample`] draws training examples uniformly with replacement;
/// [`SequentialDigits::split`] returns a whole split in its fixed order.
///
/// Baseline: a memoryless predictor can only output the class prior; the best one outputs
/// the training split's class frequencies, whose cross-entropy on training data is their
/// entropy H = −Σ_c p_c ln p_c. [`Task::baseline_loss`] returns this H computed from the
/// data (≈ 2.30184, just under ln 10 ≈ 2.30259, because the classes are nearly balanced);
/// chance accuracy is ≈ 10 %.
#[derive(Clone, Debug, PartialEq)]
pub struct SequentialDigits {
    config: DigitsConfig,
    data: optdigits::OptDigits,
    order: Vec<usize>,
    pixel_order: Vec<usize>,
    baseline: f64,
}

impl SequentialDigits {
    /// The order in which pixels are read: `pixel_order()[s]` is the raster index (row·8 + col)
    /// of the s-th pixel of the sequence; the identity unless permuted.
    pub fn pixel_order(&self) -> &[usize] {
        &self.pixel_order
    }

    /// The file rows of a split, in their fixed order.
    pub fn split_rows(&self, which: Split) -> &[usize] {
        match which {
            Split::Train => &self.order[..DIGITS_N_TRAIN],
            Split::Test => &self.order[DIGITS_N_TRAIN..],
        }
    }

    /// A whole split as one batch, in its fixed order: `[seq_len, 1437 or 360, input_dim]`.
    ///
    /// # Examples
    /// ```
    /// use rnnlab_tasks::{DigitsConfig, Split};
    /// let task = DigitsConfig::new().build()?;
    /// assert_eq!(task.split::<f32>(Split::Test).batch_size(), 360);
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn split<F: Float>(&self, which: Split) -> Batch<F> {
        self.batch_of(self.split_rows(which))
    }

    /// The batch of the given file rows; every row index comes from `order`, so it is < N_ROWS.
    fn batch_of<F: Float>(&self, rows: &[usize]) -> Batch<F> {
        let (steps, width) = self.geometry();
        let scale = F::of(1.0 / f64::from(MAX_PIXEL));
        let mut x = Array3::<F>::zeros((steps, rows.len(), width));
        let mut y = Array1::zeros(rows.len());
        for (b, &r) in rows.iter().enumerate() {
            let img = &self.data.pixels[r];
            for (s, &p) in self.pixel_order.iter().enumerate() {
                x[[s / width, b, s % width]] = F::of(f64::from(img[p])) * scale;
            }
            y[b] = usize::from(self.data.labels[r]);
        }
        Batch { inputs: x, targets: Targets::ClassLast(y) }
    }

    /// (steps, inputs per step).
    fn geometry(&self) -> (usize, usize) {
        match self.config.layout {
            DigitsLayout::Pixels => (N_PIXELS, 1),
            DigitsLayout::Rows => (8, 8),
        }
    }
}

impl Task for SequentialDigits {
    fn name(&self) -> String {
        let kind = if self.config.permuted { "permuted_digits" } else { "sequential_digits" };
        let layout = match self.config.layout {
            DigitsLayout::Pixels => "pixels",
            DigitsLayout::Rows => "rows",
        };
        format!("{kind}({layout})")
    }

    fn input_dim(&self) -> usize {
        self.geometry().1
    }

    fn output_dim(&self) -> usize {
        10
    }

    fn seq_len(&self) -> usize {
        self.geometry().0
    }

    fn target_kind(&self) -> TargetKind {
        TargetKind::ClassLast
    }

    /// Draws `batch` training examples uniformly with replacement.
    fn sample<F: Float>(&self, batch: usize, rng: &mut Rng) -> Result<Batch<F>> {
        check_batch("sequential_digits.sample", batch, self.seq_len(), self.input_dim())?;
        let train = self.split_rows(Split::Train);
        let rows: Vec<usize> = (0..batch).map(|_| train[rng.random_range(0..DIGITS_N_TRAIN)]).collect();
        Ok(self.batch_of(&rows))
    }

    /// The entropy of the training split's class frequencies; see [`SequentialDigits`].
    fn baseline_loss(&self) -> f64 {
        self.baseline
    }

    fn test_set<F: Float>(&self) -> Option<Batch<F>> {
        Some(self.split(Split::Test))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rnnlab_core::seeded_rng;

    fn labels<F>(b: &Batch<F>) -> &Array1<usize> {
        match &b.targets {
            Targets::ClassLast(y) => y,
            _ => unreachable!("digits return one class per sequence"),
        }
    }

    #[test]
    fn rejects_zero_batch() {
        let task = DigitsConfig::new().build().unwrap();
        assert!(task.sample::<f32>(0, &mut seeded_rng(0)).is_err());
    }

    #[test]
    fn split_is_a_fixed_partition() {
        let task = DigitsConfig::new().build().unwrap();
        let (tr, te) = (task.split_rows(Split::Train), task.split_rows(Split::Test));
        assert_eq!((tr.len(), te.len()), (1437, 360));
        let mut all: Vec<usize> = tr.iter().chain(te).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..N_ROWS).collect::<Vec<_>>());
        // pinned: a change of shuffle or seed would silently change the benchmark
        assert_eq!(&tr[..5], &PINNED_TRAIN_HEAD);
        assert_eq!(&te[..5], &PINNED_TEST_HEAD);
        // every class is in both splits
        for split in [Split::Train, Split::Test] {
            let b = task.split::<f64>(split);
            for c in 0..10 {
                assert!(labels(&b).iter().any(|&l| l == c), "class {c} missing from {split:?}");
            }
        }
    }

    const PINNED_TRAIN_HEAD: [usize; 5] = [637, 1100, 755, 1327, 395];
    const PINNED_TEST_HEAD: [usize; 5] = [1757, 175, 675, 731, 820];
    const PINNED_PERMUTATION_HEAD: [usize; 8] = [19, 26, 41, 44, 34, 51, 62, 30];

    #[test]
    fn pixel_sequences_match_the_images() {
        let data = optdigits::load().unwrap();
        let task = DigitsConfig::new().build().unwrap();
        let test = task.split::<f64>(Split::Test);
        assert_eq!(test.inputs.dim(), (64, 360, 1));
        let rows = task.split_rows(Split::Test);
        for (b, &r) in rows.iter().enumerate() {
            for s in 0..64 {
                assert!((test.inputs[[s, b, 0]] - f64::from(data.pixels[r][s]) / 16.0).abs() < 1e-15);
            }
            assert_eq!(labels(&test)[b], usize::from(data.labels[r]));
        }
        assert!(test.inputs.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert!(test.inputs.iter().any(|&v| v == 1.0));
        assert_eq!(task.test_set::<f64>(), Some(test));
    }

    #[test]
    fn permutation_is_fixed_and_applied() {
        let plain = DigitsConfig::new().build().unwrap();
        let perm = DigitsConfig::new().with_permuted(true).build().unwrap();
        assert_eq!(plain.pixel_order(), (0..64).collect::<Vec<_>>().as_slice());
        let order = perm.pixel_order();
        assert_eq!(&order[..8], &PINNED_PERMUTATION_HEAD);
        let mut sorted = order.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..64).collect::<Vec<_>>());
        let (a, b) = (plain.split::<f32>(Split::Train), perm.split::<f32>(Split::Train));
        assert_eq!(labels(&a), labels(&b));
        for k in [0, 100, 1436] {
            for (s, &p) in order.iter().enumerate() {
                assert_eq!(b.inputs[[s, k, 0]], a.inputs[[p, k, 0]]);
            }
        }
        assert_eq!(perm.name(), "permuted_digits(pixels)");
        assert_eq!(DigitsConfig::new().with_permuted(true).build().unwrap().pixel_order(), order);
    }

    #[test]
    fn rows_layout_reshapes_pixels() {
        let pixels = DigitsConfig::new().with_permuted(true).build().unwrap();
        let rows = DigitsConfig::new().with_permuted(true).with_layout(DigitsLayout::Rows).build().unwrap();
        let (p, r) = (pixels.split::<f64>(Split::Test), rows.split::<f64>(Split::Test));
        assert_eq!(r.inputs.dim(), (8, 360, 8));
        for k in 0..360 {
            for s in 0..64 {
                assert_eq!(r.inputs[[s / 8, k, s % 8]], p.inputs[[s, k, 0]]);
            }
        }
    }

    #[test]
    fn sample_draws_from_train_only_and_is_deterministic() {
        let task = DigitsConfig::new().build().unwrap();
        let train = task.split::<f64>(Split::Train);
        let batch = task.sample::<f64>(50, &mut seeded_rng(1)).unwrap();
        assert_eq!(batch.inputs.dim(), (64, 50, 1));
        for k in 0..50 {
            let col = batch.inputs.slice(ndarray::s![.., k, 0]);
            let found = (0..DIGITS_N_TRAIN)
                .any(|j| train.inputs.slice(ndarray::s![.., j, 0]) == col && labels(&train)[j] == labels(&batch)[k]);
            assert!(found, "sequence {k} is not a training example");
        }
        assert_eq!(batch, task.sample::<f64>(50, &mut seeded_rng(1)).unwrap());
        assert_ne!(batch, task.sample::<f64>(50, &mut seeded_rng(2)).unwrap());
    }

    #[test]
    fn baseline_is_the_train_class_entropy() {
        let task = DigitsConfig::new().build().unwrap();
        let train = task.split::<f64>(Split::Train);
        let mut counts = [0usize; 10];
        for &l in labels(&train) {
            counts[l] += 1;
        }
        let h: f64 = counts.iter().map(|&c| c as f64 / 1437.0).map(|p| -p * p.ln()).sum();
        assert!((task.baseline_loss() - h).abs() < 1e-12);
        // pinned: train class counts [150, 137, 148, 137, 140, 149, 147, 137, 141, 151]
        assert!((task.baseline_loss() - 2.301_843).abs() < 1e-6, "{}", task.baseline_loss());
        assert!(task.baseline_loss() <= 10f64.ln() + 1e-12);
        assert!(task.baseline_loss() > 10f64.ln() - 0.005, "{}", task.baseline_loss());
    }

    #[test]
    fn config_json_defaults() {
        let cfg: DigitsConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg, DigitsConfig::new());
        let cfg: DigitsConfig = serde_json::from_str(r#"{"layout": "rows", "permuted": true}"#).unwrap();
        assert_eq!(cfg, DigitsConfig::new().with_layout(DigitsLayout::Rows).with_permuted(true));
    }
}
