//! The copy memory problem of Arjovsky, Shah, Bengio 2016.

use ndarray::{Array2, Array3, ArrayView3};
use rand::Rng as _;
use rnnlab_core::{Error, Float, Result, Rng};
use serde::{Deserialize, Serialize};

use crate::task::{check_batch, check_seq_len};
use crate::{Batch, TargetKind, Targets, Task};

/// Categories a copied symbol is drawn from: a0 … a7.
pub const COPY_SYMBOLS: usize = 8;
/// The blank a8, as input and as target class.
pub const COPY_BLANK: usize = 8;
/// The delimiter a9 (input only).
pub const COPY_DELIMITER: usize = 9;

fn default_n_copy() -> usize {
    10
}

/// Configuration of [`CopyMemory`]: the delay T and the number of copied symbols (10).
///
/// # Examples
/// ```
/// use rnnlab_tasks::{CopyMemoryConfig, Task};
/// let task = CopyMemoryConfig::new(100).build()?;
/// assert_eq!(task.seq_len(), 120);
/// assert!((task.baseline_loss() - 10.0 * 8f64.ln() / 120.0).abs() < 1e-15);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct CopyMemoryConfig {
    /// T ≥ 1: the input holds T − 1 blanks between the symbols and the delimiter.
    pub delay: usize,
    /// Symbols to copy, ≥ 1 (Arjovsky et al.: 10).
    #[serde(default = "default_n_copy")]
    pub n_copy: usize,
}
rnnlab_core::serde_map_only!(CopyMemoryConfig);

impl CopyMemoryConfig {
    /// Delay `delay` (T), 10 symbols.
    pub fn new(delay: usize) -> Self {
        Self { delay, n_copy: default_n_copy() }
    }

    /// Sets the number of copied symbols.
    pub fn with_n_copy(mut self, n_copy: usize) -> Self {
        self.n_copy = n_copy;
        self
    }

    /// Validates and builds the task.
    ///
    /// # Errors
    /// [`Error::Config`] if `delay == 0` (there must be T − 1 ≥ 0 blanks) or `n_copy == 0`,
    /// or if the sequence length `delay + 2·n_copy` overflows or is over
    /// [`rnnlab_core::limits::MAX_SEQ_LEN`] (computed with checked arithmetic).
    pub fn build(&self) -> Result<CopyMemory> {
        const OP: &str = "copy_memory";
        rnnlab_core::validate::positive_size(OP, "delay", self.delay)?;
        rnnlab_core::validate::positive_size(OP, "n_copy", self.n_copy)?;
        let field = "delay + 2·n_copy";
        let copied = rnnlab_core::limits::checked_mul(OP, field, 2, self.n_copy)?;
        check_seq_len(OP, field, rnnlab_core::limits::checked_add(OP, field, self.delay, copied)?)?;
        Ok(CopyMemory { delay: self.delay, n_copy: self.n_copy })
    }
}

/// The copy memory problem (Arjovsky, Shah, Bengio 2016, §4.1), with k = `n_copy` (10).
///
/// T + 2k steps. Inputs, one-hot over 10 categories: k symbols drawn uniformly from
/// a0 … a7, then T − 1 blanks a8, the delimiter a9 at step T + k − 1, then k blanks.
/// Targets, one class of 9 (a0 … a8) per step: the blank a8 for the first T + k steps, then
/// the k symbols in order. Loss: cross-entropy averaged over all T + 2k steps.
///
/// Baseline: a predictor without memory of the symbols (it may count steps) outputs the blank
/// with certainty for the first T + k steps (loss 0) and the uniform distribution over the 8
/// symbols for the last k (loss ln 8 each): mean cross-entropy k·ln 8 / (T + 2k), i.e.
/// 10·ln 8/(T + 20).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyMemory {
    delay: usize,
    n_copy: usize,
}

impl CopyMemory {
    /// The per-step targets `[T + 2k, batch]` implied by `inputs` `[T + 2k, batch, 10]`: blanks,
    /// then the argmax categories of the first k input steps. [`Task::sample`] labels its own
    /// inputs with it.
    ///
    /// # Errors
    /// [`Error::Shape`] unless `inputs` is `[T + 2k, batch, 10]`; [`Error::Format`] if one of
    /// the first k steps does not hold a symbol a0 … a7.
    pub fn targets_of<F: Float>(&self, inputs: ArrayView3<'_, F>) -> Result<Array2<usize>> {
        const OP: &str = "copy_memory.targets_of";
        let (t, b, i) = inputs.dim();
        if t != self.seq_len() || i != 10 {
            return Err(Error::shape(
                OP,
                format!("inputs [{}, batch, 10]", self.seq_len()),
                format!("{:?}", inputs.shape()),
            ));
        }
        let mut y = Array2::from_elem((t, b), COPY_BLANK);
        for s in 0..self.n_copy {
            for k in 0..b {
                let row = inputs.slice(ndarray::s![s, k, ..]);
                let sym = (0..10).fold(0, |best, c| if row[c] > row[best] { c } else { best });
                if sym >= COPY_SYMBOLS {
                    return Err(Error::format(
                        OP,
                        format!("step {s} of sequence {k} holds a{sym}, not a symbol a0..a7"),
                    ));
                }
                y[[self.delay + self.n_copy + s, k]] = sym;
            }
        }
        Ok(y)
    }

    /// The step holding the delimiter, T + k − 1.
    pub fn delimiter_step(&self) -> usize {
        self.delay + self.n_copy - 1
    }
}

impl Task for CopyMemory {
    fn name(&self) -> String {
        format!("copy_memory(T={})", self.delay)
    }

    fn input_dim(&self) -> usize {
        10
    }

    fn output_dim(&self) -> usize {
        9
    }

    fn seq_len(&self) -> usize {
        self.delay + 2 * self.n_copy
    }

    fn target_kind(&self) -> TargetKind {
        TargetKind::ClassEveryStep
    }

    /// Draws the k symbols of each sequence, sequence by sequence.
    fn sample<F: Float>(&self, batch: usize, rng: &mut Rng) -> Result<Batch<F>> {
        check_batch("copy_memory.sample", batch, self.seq_len(), 10)?;
        let t = self.seq_len();
        let mut x = Array3::<F>::zeros((t, batch, 10));
        for b in 0..batch {
            for s in 0..self.n_copy {
                x[[s, b, rng.random_range(0..COPY_SYMBOLS)]] = F::one();
            }
            for s in self.n_copy..t {
                let c = if s == self.delimiter_step() { COPY_DELIMITER } else { COPY_BLANK };
                x[[s, b, c]] = F::one();
            }
        }
        let y = self.targets_of(x.view())?;
        Ok(Batch { inputs: x, targets: Targets::ClassEveryStep(y) })
    }

    /// k·ln 8 / (T + 2k); see [`CopyMemory`].
    fn baseline_loss(&self) -> f64 {
        self.n_copy as f64 * (COPY_SYMBOLS as f64).ln() / self.seq_len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rnnlab_core::seeded_rng;

    fn labels(b: &Batch<f64>) -> &Array2<usize> {
        match &b.targets {
            Targets::ClassEveryStep(y) => y,
            other => unreachable!("copy memory returns per-step classes, got {:?}", other.kind()),
        }
    }

    #[test]
    fn rejects_zero_delay() {
        assert!(CopyMemoryConfig::new(0).build().is_err());
        assert!(CopyMemoryConfig::new(1).build().is_ok());
    }

    #[test]
    fn rejects_zero_copies() {
        assert!(CopyMemoryConfig::new(5).with_n_copy(0).build().is_err());
    }

    #[test]
    fn rejects_zero_batch() {
        let task = CopyMemoryConfig::new(5).build().unwrap();
        assert!(task.sample::<f64>(0, &mut seeded_rng(0)).is_err());
    }

    #[test]
    fn targets_of_rejects_bad_inputs() {
        let task = CopyMemoryConfig::new(5).build().unwrap();
        assert!(task.targets_of(Array3::<f64>::zeros((24, 1, 10)).view()).is_err());
        assert!(task.targets_of(Array3::<f64>::zeros((25, 1, 9)).view()).is_err());
        let mut x = task.sample::<f64>(1, &mut seeded_rng(0)).unwrap().inputs;
        x.slice_mut(ndarray::s![0, 0, ..]).fill(0.0);
        x[[0, 0, COPY_DELIMITER]] = 1.0;
        assert!(task.targets_of(x.view()).is_err());
    }

    #[test]
    fn layout_of_inputs_and_targets() {
        for (delay, b) in [(1, 1), (5, 3), (100, 4)] {
            let task = CopyMemoryConfig::new(delay).build().unwrap();
            let t = delay + 20;
            assert_eq!(task.seq_len(), t);
            let batch = task.sample::<f64>(b, &mut seeded_rng(4)).unwrap();
            assert_eq!(batch.inputs.dim(), (t, b, 10));
            let y = labels(&batch);
            assert_eq!(y.dim(), (t, b));
            for k in 0..b {
                for s in 0..t {
                    let row = batch.inputs.slice(ndarray::s![s, k, ..]);
                    assert_eq!(row.iter().filter(|&&v| v == 1.0).count(), 1);
                    assert_eq!(row.iter().filter(|&&v| v == 0.0).count(), 9);
                    let c = row.iter().position(|&v| v == 1.0).unwrap();
                    if s < 10 {
                        assert!(c < 8);
                        assert_eq!(y[[delay + 10 + s, k]], c);
                    } else if s == delay + 9 {
                        assert_eq!(c, COPY_DELIMITER);
                    } else {
                        assert_eq!(c, COPY_BLANK);
                    }
                    if s < delay + 10 {
                        assert_eq!(y[[s, k]], COPY_BLANK);
                    }
                    assert!(y[[s, k]] < task.output_dim());
                }
            }
        }
    }

    #[test]
    fn targets_depend_on_symbols_only() {
        let task = CopyMemoryConfig::new(8).build().unwrap();
        let batch = task.sample::<f64>(2, &mut seeded_rng(5)).unwrap();
        let y0 = labels(&batch).clone();
        // change the third symbol of sequence 1: exactly one target moves
        let mut x = batch.inputs.clone();
        let old = y0[[8 + 10 + 2, 1]];
        let new = (old + 1) % 8;
        x.slice_mut(ndarray::s![2, 1, ..]).fill(0.0);
        x[[2, 1, new]] = 1.0;
        let y = task.targets_of(x.view()).unwrap();
        assert_eq!(y[[20, 1]], new);
        assert_eq!(y.iter().zip(y0.iter()).filter(|(a, b)| a != b).count(), 1);
        // overwrite a blank in the gap with a symbol: no target moves
        let mut x = batch.inputs.clone();
        x.slice_mut(ndarray::s![12, 0, ..]).fill(0.0);
        x[[12, 0, 3]] = 1.0;
        assert_eq!(task.targets_of(x.view()).unwrap(), y0);
    }

    #[test]
    fn baseline_matches_formula_and_symbol_frequencies() {
        let task = CopyMemoryConfig::new(100).build().unwrap();
        assert!((task.baseline_loss() - 10.0 * 8f64.ln() / 120.0).abs() < 1e-15);
        let short = CopyMemoryConfig::new(4).with_n_copy(3).build().unwrap();
        assert!((short.baseline_loss() - 3.0 * 8f64.ln() / 10.0).abs() < 1e-15);
        // The ln 8 per symbol rests on uniform symbols: the empirical entropy of 10^5 symbols
        // is within 0.001 of ln 8 (its bias is about −7/(2·10^5)).
        let batch = task.sample::<f64>(10_000, &mut seeded_rng(6)).unwrap();
        let mut counts = [0usize; 8];
        for &c in labels(&batch).slice(ndarray::s![110.., ..]).iter() {
            counts[c] += 1;
        }
        let n: usize = counts.iter().sum();
        assert_eq!(n, 100_000);
        let h: f64 = counts.iter().map(|&c| c as f64 / n as f64).map(|p| -p * p.ln()).sum();
        assert!((h - 8f64.ln()).abs() < 1e-3, "entropy {h}");
        let ce = 10.0 * h / 120.0;
        assert!((ce - task.baseline_loss()).abs() < 1e-3);
    }

    #[test]
    fn deterministic_from_seed() {
        let task = CopyMemoryConfig::new(20).build().unwrap();
        let a = task.sample::<f32>(3, &mut seeded_rng(1)).unwrap();
        assert_eq!(a, task.sample::<f32>(3, &mut seeded_rng(1)).unwrap());
        assert_ne!(a, task.sample::<f32>(3, &mut seeded_rng(2)).unwrap());
    }

    #[test]
    fn config_defaults_n_copy_in_json() {
        let cfg: CopyMemoryConfig = serde_json::from_str(r#"{"delay": 50}"#).unwrap();
        assert_eq!(cfg, CopyMemoryConfig::new(50));
    }
}
