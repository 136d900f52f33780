//! Training on your own data: [`DataSource`], what the trainer draws batches from (every
//! built-in task is one), [`ArrayData`], a data set given as arrays, and [`DataSpec`], how a
//! run's config describes data that it does not generate itself.

use ndarray::{Array3, Axis};
use rand::Rng as _;
use rnnlab_core::{Error, Float, Result, Rng, limits, validate};
use serde::{Deserialize, Serialize};

use crate::{Batch, TargetKind, Targets, Task, TaskConfig};

/// What a run's config says about data supplied by the caller: its name and shapes, so that a
/// model can be checked against it and a checkpoint resumed only with data of the same form.
/// Serialised as `{"task": "data", "name": "…", "input_dim": 2, "output_dim": 1, "seq_len": 50,
/// "targets": "regression"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct DataSpec {
    /// A name for reports.
    pub name: String,
    /// Features per input step.
    pub input_dim: usize,
    /// Regression outputs or number of classes.
    pub output_dim: usize,
    /// Steps per sequence.
    pub seq_len: usize,
    /// The kind of targets.
    pub targets: TargetKind,
}
rnnlab_core::serde_map_only!(DataSpec);

impl DataSpec {
    /// Checks that every size is at least 1 and within [`limits`].
    ///
    /// # Errors
    /// [`Error::Config`] naming the zero field or the one over its limit.
    pub fn validate(&self) -> Result<()> {
        const OP: &str = "DataSpec";
        limits::size(OP, "input_dim", self.input_dim, limits::MAX_DIM)?;
        limits::size(OP, "output_dim", self.output_dim, limits::MAX_DIM)?;
        limits::size(OP, "seq_len", self.seq_len, limits::MAX_SEQ_LEN)?;
        Ok(())
    }
}

/// A source of training batches and a held-out set: what the trainer needs of a task.
/// Every [`Task`] (every built-in task, and [`AnyTask`](crate::AnyTask)) is one, and so is [`ArrayData`]; implement it for a
/// generator of your own.
///
/// Batches must be a pure function of the generator's state, so that a run is reproducible
/// from its seed and resumes bit-exactly from a checkpoint (which saves the generator).
pub trait DataSource<F: Float>: std::fmt::Debug + Send {
    /// A short name for reports.
    fn name(&self) -> String;
    /// Features per input step.
    fn input_dim(&self) -> usize;
    /// Regression outputs or number of classes.
    fn output_dim(&self) -> usize;
    /// Steps per sequence.
    fn seq_len(&self) -> usize;
    /// The kind of targets.
    fn target_kind(&self) -> TargetKind;
    /// Draws a training batch of `batch` sequences.
    ///
    /// # Errors
    /// [`Error::Config`] for `batch = 0`.
    fn sample(&self, batch: usize, rng: &mut Rng) -> Result<Batch<F>>;
    /// The held-out set: a fixed test split if the data has one, else `size` sequences drawn
    /// once from `rng`.
    ///
    /// # Errors
    /// [`Error::Config`] for `size = 0` when it is used.
    fn eval_set(&self, size: usize, rng: &mut Rng) -> Result<Batch<F>>;
    /// The loss of the best predictor that ignores the inputs, for reference.
    fn baseline_loss(&self) -> f64;

    /// The name and shapes, as a config's [`TaskConfig::Data`] entry states them.
    fn spec(&self) -> DataSpec {
        DataSpec {
            name: self.name(),
            input_dim: self.input_dim(),
            output_dim: self.output_dim(),
            seq_len: self.seq_len(),
            targets: self.target_kind(),
        }
    }
}

impl<F: Float, T: Task + std::fmt::Debug + Send> DataSource<F> for T {
    fn name(&self) -> String {
        Task::name(self)
    }
    fn input_dim(&self) -> usize {
        Task::input_dim(self)
    }
    fn output_dim(&self) -> usize {
        Task::output_dim(self)
    }
    fn seq_len(&self) -> usize {
        Task::seq_len(self)
    }
    fn target_kind(&self) -> TargetKind {
        Task::target_kind(self)
    }
    fn sample(&self, batch: usize, rng: &mut Rng) -> Result<Batch<F>> {
        Task::sample(self, batch, rng)
    }
    fn eval_set(&self, size: usize, rng: &mut Rng) -> Result<Batch<F>> {
        match self.test_set::<F>() {
            Some(test) => Ok(test),
            None => Task::sample(self, size, rng),
        }
    }
    fn baseline_loss(&self) -> f64 {
        Task::baseline_loss(self)
    }
}

/// A data set given as arrays: training sequences and, optionally, a test split.
///
/// Training batches are drawn uniformly with replacement from the training sequences (a pure
/// function of the generator, so runs resume bit-exactly). The held-out set is the test split
/// if there is one, else the first `size` training sequences. The baseline loss is that of the
/// best constant predictor on the training targets: the mean squared deviation from the mean
/// target (regression), the entropy of the label frequencies in nats (classes).
///
/// # Shapes
/// inputs `[seq_len, n, input_dim]`; targets as [`Targets`] for n sequences.
///
/// # Examples
/// ```
/// use ndarray::{Array2, Array3};
/// use rnnlab_tasks::{ArrayData, DataSource, Targets};
/// // 100 sequences of 20 steps with 3 features; the target is the sum of the first feature.
/// let x = Array3::<f32>::from_shape_fn((20, 100, 3), |(t, b, i)| ((t * 7 + b * 3 + i) % 5) as f32 * 0.1);
/// let y = Array2::from_shape_fn((100, 1), |(b, _)| (0..20).map(|t| x[[t, b, 0]]).sum::<f32>());
/// let data = ArrayData::new("sums", x, Targets::Regression(y), 1)?;
/// let batch = DataSource::<f32>::sample(&data, 8, &mut rnnlab_core::seeded_rng(0))?;
/// assert_eq!(batch.inputs.shape(), &[20, 8, 3]);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ArrayData<F> {
    name: String,
    output_dim: usize,
    train: Batch<F>,
    test: Option<Batch<F>>,
    baseline: f64,
}

impl<F: Float> ArrayData<F> {
    /// Training data from arrays; `output_dim` is the number of regression outputs or classes.
    ///
    /// # Errors
    /// [`Error::Config`] for no sequences, zero steps or features, or `output_dim = 0`;
    /// [`Error::Shape`] if the targets do not fit the inputs or `output_dim` (a label ≥
    /// `output_dim`); [`Error::NonFinite`] for a NaN or infinite input or target.
    pub fn new(name: &str, inputs: Array3<F>, targets: Targets<F>, output_dim: usize) -> Result<Self> {
        let train = Batch { inputs, targets };
        check_batch("ArrayData::new", &train, output_dim)?;
        let baseline = baseline(&train.targets, output_dim);
        Ok(Self { name: name.to_string(), output_dim, train, test: None, baseline })
    }

    /// Adds a test split, used as the held-out set.
    ///
    /// # Errors
    /// As [`ArrayData::new`], and [`Error::Shape`] if its steps or features differ from the
    /// training data's.
    pub fn with_test(mut self, inputs: Array3<F>, targets: Targets<F>) -> Result<Self> {
        const OP: &str = "ArrayData::with_test";
        let test = Batch { inputs, targets };
        check_batch(OP, &test, self.output_dim)?;
        let (t, _, i) = self.train.inputs.dim();
        let (tt, _, ti) = test.inputs.dim();
        if (tt, ti) != (t, i) || test.targets.kind() != self.train.targets.kind() {
            return Err(Error::shape(
                OP,
                format!("test inputs [{t}, n, {i}] with {:?} targets", self.train.targets.kind()),
                format!("[{tt}, n, {ti}] with {:?} targets", test.targets.kind()),
            ));
        }
        self.test = Some(test);
        Ok(self)
    }

    /// The config entry describing this data, `{"task": "data", …}`.
    pub fn task_config(&self) -> TaskConfig {
        TaskConfig::Data(DataSource::<F>::spec(self))
    }

    /// The training sequences.
    pub fn train(&self) -> &Batch<F> {
        &self.train
    }

    /// The test split, if any.
    pub fn test(&self) -> Option<&Batch<F>> {
        self.test.as_ref()
    }
}

fn check_batch<F: Float>(op: &str, b: &Batch<F>, output_dim: usize) -> Result<()> {
    let (t, n, i) = b.inputs.dim();
    validate::positive_size(op, "sequences", n)?;
    validate::positive_size(op, "seq_len", t)?;
    validate::positive_size(op, "input_dim", i)?;
    limits::size(op, "output_dim", output_dim, limits::MAX_DIM)?;
    validate::finite_array(op, "inputs", &b.inputs.view())?;
    let labels_fit = |mut labels: Box<dyn Iterator<Item = usize> + '_>| -> Result<()> {
        match labels.find(|&l| l >= output_dim) {
            Some(l) => Err(Error::shape(op, format!("class labels < output_dim = {output_dim}"), format!("label {l}"))),
            None => Ok(()),
        }
    };
    match &b.targets {
        Targets::Regression(y) => {
            validate::shape(op, "regression targets [n, output_dim]", &[n, output_dim], y.shape())?;
            validate::finite_array(op, "targets", &y.view())
        }
        Targets::ClassLast(l) => {
            validate::shape(op, "class labels [n]", &[n], l.shape())?;
            labels_fit(Box::new(l.iter().copied()))
        }
        Targets::ClassEveryStep(l) => {
            validate::shape(op, "per-step class labels [seq_len, n]", &[t, n], l.shape())?;
            labels_fit(Box::new(l.iter().copied()))
        }
    }
}

fn baseline<F: Float>(targets: &Targets<F>, output_dim: usize) -> f64 {
    let entropy = |labels: &mut dyn Iterator<Item = usize>| {
        let mut counts = vec![0usize; output_dim];
        let mut n = 0usize;
        for l in labels {
            counts[l.min(output_dim - 1)] += 1;
            n += 1;
        }
        counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / n as f64).map(|p| -p * p.ln()).sum::<f64>()
    };
    match targets {
        Targets::Regression(y) => {
            let n = y.nrows() as f64;
            let mean = y.map(|v| v.as_f64()).sum_axis(Axis(0)) / n;
            let se: f64 =
                y.outer_iter().map(|r| r.iter().zip(&mean).map(|(v, m)| (v.as_f64() - m).powi(2)).sum::<f64>()).sum();
            se / (n * y.ncols() as f64)
        }
        Targets::ClassLast(l) => entropy(&mut l.iter().copied()),
        Targets::ClassEveryStep(l) => entropy(&mut l.iter().copied()),
    }
}

/// Sequences `idx` of `b`.
fn select<F: Float>(b: &Batch<F>, idx: &[usize]) -> Batch<F> {
    let inputs = b.inputs.select(Axis(1), idx);
    let targets = match &b.targets {
        Targets::Regression(y) => Targets::Regression(y.select(Axis(0), idx)),
        Targets::ClassLast(l) => Targets::ClassLast(l.select(Axis(0), idx)),
        Targets::ClassEveryStep(l) => Targets::ClassEveryStep(l.select(Axis(1), idx)),
    };
    Batch { inputs, targets }
}

impl<F: Float> DataSource<F> for ArrayData<F> {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn input_dim(&self) -> usize {
        self.train.inputs.len_of(Axis(2))
    }
    fn output_dim(&self) -> usize {
        self.output_dim
    }
    fn seq_len(&self) -> usize {
        self.train.n_steps()
    }
    fn target_kind(&self) -> TargetKind {
        self.train.targets.kind()
    }
    fn sample(&self, batch: usize, rng: &mut Rng) -> Result<Batch<F>> {
        const OP: &str = "ArrayData::sample";
        limits::size(OP, "batch", batch, limits::MAX_BATCH)?;
        limits::checked_elements(OP, "batch", &[self.train.n_steps(), batch, self.train.inputs.dim().2])?;
        let n = self.train.batch_size();
        let idx: Vec<usize> = (0..batch).map(|_| rng.random_range(0..n)).collect();
        Ok(select(&self.train, &idx))
    }
    fn eval_set(&self, size: usize, _rng: &mut Rng) -> Result<Batch<F>> {
        match &self.test {
            Some(test) => Ok(test.clone()),
            None => {
                validate::positive_size("ArrayData::eval_set", "size", size)?;
                let idx: Vec<usize> = (0..size.min(self.train.batch_size())).collect();
                Ok(select(&self.train, &idx))
            }
        }
    }
    fn baseline_loss(&self) -> f64 {
        self.baseline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, array};
    use rnnlab_core::seeded_rng;

    fn data() -> ArrayData<f64> {
        let x = Array3::from_shape_fn((4, 6, 2), |(t, b, i)| (t + b + i) as f64);
        ArrayData::new("toy", x, Targets::ClassLast(Array1::from(vec![0, 1, 1, 2, 2, 2])), 3).unwrap()
    }

    #[test]
    fn baselines_are_those_of_the_best_constant() {
        // Label frequencies 1/6, 2/6, 3/6: entropy = −Σ p ln p.
        let h = -(1.0f64 / 6.0 * (1.0f64 / 6.0).ln() + 2.0 / 6.0 * (2.0f64 / 6.0).ln() + 0.5 * 0.5f64.ln());
        assert!((DataSource::<f64>::baseline_loss(&data()) - h).abs() < 1e-15);
        // Targets 1, 3: mean 2, mean squared deviation 1.
        let x = Array3::<f64>::zeros((2, 2, 1));
        let d = ArrayData::new("r", x, Targets::Regression(array![[1.0], [3.0]]), 1).unwrap();
        assert_eq!(DataSource::<f64>::baseline_loss(&d), 1.0);
    }

    #[test]
    fn batches_are_drawn_from_the_data_deterministically() {
        let d = data();
        let a: Batch<f64> = d.sample(5, &mut seeded_rng(3)).unwrap();
        let b: Batch<f64> = d.sample(5, &mut seeded_rng(3)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.inputs.shape(), &[4, 5, 2]);
        // Each drawn sequence is one of the data set's, with its own label.
        let Targets::ClassLast(labels) = &a.targets else { unreachable!() };
        for (k, &l) in labels.iter().enumerate() {
            let first = a.inputs[[0, k, 0]] as usize; // = b, the sequence index
            assert_eq!(l, [0, 1, 1, 2, 2, 2][first]);
        }
        assert_eq!(DataSource::<f64>::spec(&d).targets, TargetKind::ClassLast);
        let cfg = d.task_config();
        assert!(matches!(&cfg, TaskConfig::Data(s) if s.seq_len == 4 && s.output_dim == 3));
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<TaskConfig>(&json).unwrap(), cfg);
        assert!(cfg.build().is_err());
    }

    #[test]
    fn bad_data_is_an_error() {
        let x = Array3::<f64>::zeros((4, 3, 2));
        let e = ArrayData::new("x", x.clone(), Targets::ClassLast(Array1::from(vec![0, 1, 5])), 3).unwrap_err();
        assert!(e.to_string().contains("label 5"), "{e}");
        assert!(ArrayData::new("x", x.clone(), Targets::ClassLast(Array1::from(vec![0, 1])), 3).is_err());
        assert!(
            ArrayData::new("x", Array3::zeros((4, 0, 2)), Targets::<f64>::ClassLast(Array1::from(vec![])), 3).is_err()
        );
        let mut bad = x.clone();
        bad[[1, 1, 1]] = f64::NAN;
        assert!(matches!(
            ArrayData::new("x", bad, Targets::ClassLast(Array1::zeros(3)), 3),
            Err(Error::NonFinite { .. })
        ));
        let ok = ArrayData::new("x", x, Targets::ClassLast(Array1::zeros(3)), 3).unwrap();
        assert!(ok.clone().with_test(Array3::zeros((5, 2, 2)), Targets::ClassLast(Array1::zeros(2))).is_err());
        assert!(DataSource::<f64>::sample(&ok, 0, &mut seeded_rng(0)).is_err());
    }
}
