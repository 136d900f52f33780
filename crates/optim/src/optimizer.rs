//! The `Optimizer` trait, its report and its serialisable state keyed by parameter name.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use ndarray::ArrayD;
use rnnlab_core::{Error, Float, ParamViewMut, Parameterized, Result, validate};
use serde::{Deserialize, Serialize};

/// A first-order optimizer: updates every parameter of a model from its current gradient.
///
/// Works on anything [`Parameterized`] through the name visitor and knows nothing about
/// cells or layers. Per-parameter state (moment buffers, step counts) is kept under the
/// parameter's name, the same name the model uses in checkpoints and reports.
///
/// Call order in a training step: backward → [`crate::check_finite`] → [`crate::clip()`] →
/// [`Optimizer::step`] → `zero_grad`. `step` reads the gradients and does not zero them.
///
/// # Examples
/// ```
/// use ndarray::Array1;
/// use rnnlab_core::{Param, ParamView, ParamViewMut, Parameterized};
/// use rnnlab_optim::{Optimizer, SgdConfig};
///
/// struct Model { w: Param<f64, ndarray::Ix1> }
/// impl Parameterized<f64> for Model {
///     fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, f64>)) { v("w", self.w.view()) }
///     fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, f64>)) { v("w", self.w.view_mut()) }
/// }
///
/// let mut model = Model { w: Param::new(Array1::from(vec![1.0, -1.0])) };
/// model.w.grad.assign(&Array1::from(vec![0.5, 0.5]));
/// let mut opt = SgdConfig::new(0.1).init::<f64>()?;
/// let report = opt.step(&mut model)?;
/// assert!((model.w.value[0] - 0.95).abs() < 1e-12);
/// assert_eq!(report.step, 1);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub trait Optimizer<F: Float>: Debug {
    /// The algorithm's name as stored in its state: `"sgd"`, `"adam"`, `"adamw"`, `"rmsprop"`, `"adagrad"`.
    fn algorithm(&self) -> &'static str;

    /// Applies one update to every parameter from its current gradient (gradients are not zeroed).
    ///
    /// # Errors
    /// - [`Error::Shape`] naming the parameter if its shape differs from its stored state, or
    ///   if its gradient's shape differs from its value's.
    /// - [`Error::Config`] if the model visits two parameters with the same name.
    ///
    /// All checks run before any parameter is touched: on `Err` the model and the state are unchanged.
    fn step(&mut self, model: &mut dyn Parameterized<F>) -> Result<StepReport>;

    /// The current learning rate.
    fn lr(&self) -> f64;

    /// Sets the learning rate (for schedules); `0` is allowed and freezes the parameters.
    ///
    /// # Errors
    /// [`Error::Config`] unless `lr` is finite and `>= 0`.
    fn set_lr(&mut self, lr: f64) -> Result<()>;

    /// A copy of the state (learning rate, step counts, per-parameter buffers), serialisable with serde.
    fn state(&self) -> OptimizerState<F>;

    /// Replaces the state with a saved one; hyper-parameters other than `lr` come from the config.
    ///
    /// # Errors
    /// [`Error::Format`] if the state belongs to another algorithm, or a parameter's buffers are
    /// not exactly the ones this configuration keeps, or a buffer's shape differs from the
    /// parameter's recorded shape; [`Error::Config`] for a bad `lr`. On `Err` nothing changes.
    fn load_state(&mut self, state: OptimizerState<F>) -> Result<()>;
}

/// What one [`Optimizer::step`] did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Steps taken so far, this one included.
    pub step: u64,
    /// The learning rate used.
    pub lr: f64,
    /// ‖Δθ‖₂ over all parameters together, computed in f64.
    pub update_norm: f64,
    /// Number of parameter tensors updated.
    pub n_tensors: usize,
    /// Number of scalar parameters updated.
    pub n_scalars: usize,
}

/// An optimizer's state: what must be saved to resume training bit-identically.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerState<F: Float> {
    /// The algorithm that wrote it (see [`Optimizer::algorithm`]).
    pub algorithm: String,
    /// The current learning rate.
    pub lr: f64,
    /// Steps taken.
    pub step: u64,
    /// Per-parameter state under the model's parameter names.
    #[serde(bound(serialize = "F: Float", deserialize = "F: Float"))]
    pub params: BTreeMap<String, ParamState<F>>,
}

/// One parameter's optimizer state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamState<F: Float> {
    /// The parameter's shape when the state was created.
    pub shape: Vec<usize>,
    /// Steps this parameter has taken (PyTorch's per-parameter `state["step"]`).
    pub step: u64,
    /// Named buffers, PyTorch's names: `momentum_buffer`, `exp_avg`, `exp_avg_sq`,
    /// `max_exp_avg_sq`, `square_avg`, `grad_avg`, `sum`. Each has shape [`ParamState::shape`].
    #[serde(bound(serialize = "F: Float", deserialize = "F: Float"))]
    pub buffers: BTreeMap<String, ArrayD<F>>,
}

impl<F: Float> OptimizerState<F> {
    /// An empty state for `algorithm` at learning rate `lr`.
    pub fn new(algorithm: &str, lr: f64) -> Self {
        Self { algorithm: algorithm.to_string(), lr, step: 0, params: BTreeMap::new() }
    }
}

impl<F: Float> ParamState<F> {
    /// A fresh state: step 0 and each named buffer filled with `fill`.
    pub(crate) fn filled(shape: &[usize], names: &[&str], fill: F) -> Self {
        let buffers = names.iter().map(|n| (n.to_string(), ArrayD::from_elem(shape.to_vec(), fill))).collect();
        Self { shape: shape.to_vec(), step: 0, buffers }
    }

    /// Mutable references to the named buffers, in the order asked.
    pub(crate) fn buffers_mut<const N: usize>(&mut self, names: [&str; N]) -> Result<[&mut ArrayD<F>; N]> {
        let mut found: [Option<&mut ArrayD<F>>; N] = std::array::from_fn(|_| None);
        for (key, buf) in self.buffers.iter_mut() {
            if let Some(i) = names.iter().position(|n| n == key) {
                found[i] = Some(buf);
            }
        }
        let all: Option<Vec<&mut ArrayD<F>>> = found.into_iter().collect();
        let missing = || Error::format("optimizer step", format!("state lacks one of the buffers {names:?}"));
        all.ok_or_else(missing)?.try_into().map_err(|_| missing())
    }
}

/// Validates a learning rate given to `Optimizer::set_lr` (finite in `F` and `>= 0`).
pub(crate) fn check_set_lr<F: Float>(lr: f64) -> Result<()> {
    validate::non_negative_in::<F>("Optimizer::set_lr", "lr", lr).map(drop)
}

/// Checks a saved state against what an optimizer expects, then returns it.
pub(crate) fn check_loaded<F: Float>(
    algorithm: &str,
    expected_buffers: &[&str],
    state: OptimizerState<F>,
) -> Result<OptimizerState<F>> {
    let op = "Optimizer::load_state";
    if state.algorithm != algorithm {
        return Err(Error::format(op, format!("state is for `{}`, optimizer is `{algorithm}`", state.algorithm)));
    }
    validate::non_negative_in::<F>(op, "lr", state.lr)?;
    // Step counters as a config's sizes: a parameter never takes more steps than the
    // optimizer, and the optimizer's count must leave room for the next step.
    if state.step == u64::MAX {
        return Err(Error::format(op, format!("step = {} leaves no room for another step", state.step)));
    }
    let want: BTreeSet<&str> = expected_buffers.iter().copied().collect();
    for (name, ps) in &state.params {
        if ps.step > state.step {
            return Err(Error::format(
                op,
                format!("parameter `{name}` has taken {} steps, more than the optimizer's {}", ps.step, state.step),
            ));
        }
        let have: BTreeSet<&str> = ps.buffers.keys().map(String::as_str).collect();
        if have != want {
            return Err(Error::format(op, format!("parameter `{name}` has buffers {have:?}, expected {want:?}")));
        }
        for (buf_name, buf) in &ps.buffers {
            if buf.shape() != ps.shape.as_slice() {
                return Err(Error::format(
                    op,
                    format!(
                        "parameter `{name}` buffer `{buf_name}` has shape {:?}, expected {:?}",
                        buf.shape(),
                        ps.shape
                    ),
                ));
            }
            check_buffer_values(op, name, buf_name, buf)?;
        }
    }
    Ok(state)
}

/// The buffers that hold squared gradients (running averages, maxima or sums): never negative.
const SQUARED_BUFFERS: [&str; 4] = ["exp_avg_sq", "max_exp_avg_sq", "square_avg", "sum"];

/// A loaded buffer's values: [`Error::NonFinite`] for the first NaN or ±∞ (a moment from a
/// file is not trusted to be one the optimizer could have made), [`Error::Format`] for a
/// negative value in a buffer of squares (its square root would be NaN at the next step).
fn check_buffer_values<F: Float>(op: &str, param: &str, buffer: &str, values: &ArrayD<F>) -> Result<()> {
    let what = format!("parameter `{param}` buffer `{buffer}`");
    validate::finite_array(op, &what, &values.view())?;
    if SQUARED_BUFFERS.contains(&buffer)
        && let Some((i, v)) = values.iter().enumerate().find(|(_, v)| **v < F::zero())
    {
        return Err(Error::format(op, format!("{what} holds squares, got {v} at flat index {i}")));
    }
    Ok(())
}

/// The per-parameter update given to [`drive`]: returns Σ(Δθ)² in f64.
pub(crate) type UpdateFn<'u, F> = dyn FnMut(ParamViewMut<'_, F>, &mut ParamState<F>) -> Result<f64> + 'u;

/// The shared step driver: validates every parameter against the state, then calls `update`
/// once per parameter with its (lazily created) state whose `step` has been incremented.
///
/// `update` returns Σ(Δθ)² for that parameter, in f64.
pub(crate) fn drive<F: Float>(
    state: &mut OptimizerState<F>,
    model: &mut dyn Parameterized<F>,
    fresh: &dyn Fn(&[usize]) -> ParamState<F>,
    update: &mut UpdateFn<'_, F>,
) -> Result<StepReport> {
    let op = "optimizer step";
    // Pass 1, read-only: every check that can fail, so a failing step changes nothing.
    // Step counters: checked arithmetic, never a wrap (a parameter's count is at most the
    // optimizer's, as `check_loaded` ensures for a loaded state).
    let Some(next_step) = state.step.checked_add(1) else {
        return Err(Error::config(op, format!("the step counter {} cannot be incremented", state.step)));
    };
    if let Some((name, _)) = state.params.iter().find(|(_, ps)| ps.step == u64::MAX) {
        return Err(Error::config(op, format!("the step counter of `{name}` cannot be incremented")));
    }
    let mut first_err: Option<Error> = None;
    let mut seen = BTreeSet::new();
    model.visit_params(&mut |name, p| {
        if first_err.is_some() {
            return;
        }
        if !seen.insert(name.to_string()) {
            first_err = Some(Error::config(op, format!("parameter name `{name}` is visited twice")));
        } else if p.grad.shape() != p.value.shape() {
            first_err = Some(Error::shape(
                op,
                format!("gradient of `{name}` {:?}", p.value.shape()),
                format!("{:?}", p.grad.shape()),
            ));
        } else if state.params.get(name).is_some_and(|ps| ps.shape.as_slice() != p.value.shape()) {
            let stored = state.params.get(name).map(|ps| ps.shape.clone()).unwrap_or_default();
            first_err = Some(Error::shape(
                op,
                format!("parameter `{name}` {stored:?} (from optimizer state)"),
                format!("{:?}", p.value.shape()),
            ));
        }
    });
    if let Some(e) = first_err {
        return Err(e);
    }
    // Pass 2: update. The closures below can only fail on a model whose second visit differs
    // from its first; the error is kept and reported.
    let mut sq = 0.0f64;
    let mut n_tensors = 0usize;
    let mut n_scalars = 0usize;
    model.visit_params_mut(&mut |name, p| {
        if first_err.is_some() {
            return;
        }
        if p.grad.shape() != p.value.shape() {
            first_err = Some(Error::shape(op, format!("gradient of `{name}`"), format!("{:?}", p.grad.shape())));
            return;
        }
        let ps = state.params.entry(name.to_string()).or_insert_with(|| fresh(p.value.shape()));
        if ps.shape.as_slice() != p.value.shape() {
            first_err =
                Some(Error::shape(op, format!("parameter `{name}` {:?}", ps.shape), format!("{:?}", p.value.shape())));
            return;
        }
        // Cannot wrap: pass 1 refused a counter at u64::MAX.
        ps.step = ps.step.saturating_add(1);
        n_tensors += 1;
        n_scalars += p.value.len();
        match update(p, ps) {
            Ok(s) => sq += s,
            Err(e) => first_err = Some(e),
        }
    });
    if let Some(e) = first_err {
        return Err(e);
    }
    state.step = next_step;
    Ok(StepReport { step: state.step, lr: state.lr, update_norm: sq.sqrt(), n_tensors, n_scalars })
}

/// Σ (new − old)² in f64, for the update norm, over [`SqSum::LANES`] partial sums taken in
/// turn: one running f64 sum would make every element wait for the previous addition (a
/// serial chain that took 3% of an LSTM H = 128 training step); the lanes are independent.
/// The order is fixed by the element order, so the result is deterministic.
pub(crate) struct SqSum {
    lanes: [f64; Self::LANES],
    next: usize,
}

impl SqSum {
    const LANES: usize = 8;

    pub(crate) fn new() -> Self {
        Self { lanes: [0.0; Self::LANES], next: 0 }
    }

    /// Adds (new − old)².
    #[inline]
    pub(crate) fn add<F: Float>(&mut self, new: F, old: F) {
        let d = new.as_f64() - old.as_f64();
        self.lanes[self.next % Self::LANES] += d * d;
        self.next = self.next.wrapping_add(1);
    }

    /// Updates a contiguous run in place, `x ← step(x, g)` for each pair, adding each
    /// (new − old)² as [`SqSum::add`] would (the same lanes, so the same bits), but eight
    /// values at a time so that the loop vectorises.
    #[inline]
    pub(crate) fn update_run<F: Float>(&mut self, xs: &mut [F], gs: &[F], step: impl Fn(F, F) -> F) {
        // Whole runs of LANES only when the next value goes to lane 0 (always, from `new`).
        let whole = if self.next % Self::LANES == 0 { xs.len().min(gs.len()) / Self::LANES * Self::LANES } else { 0 };
        let (head, tail) = xs.split_at_mut(whole);
        for (x8, g8) in head.chunks_exact_mut(Self::LANES).zip(gs.chunks_exact(Self::LANES)) {
            for ((x, &g), lane) in x8.iter_mut().zip(g8).zip(self.lanes.iter_mut()) {
                let new = step(*x, g);
                let d = new.as_f64() - x.as_f64();
                *lane += d * d;
                *x = new;
            }
            self.next = self.next.wrapping_add(Self::LANES);
        }
        for (x, &g) in tail.iter_mut().zip(gs.get(whole..).unwrap_or_default()) {
            let new = step(*x, g);
            self.add(new, *x);
            *x = new;
        }
    }

    /// The sum of the lanes.
    pub(crate) fn total(&self) -> f64 {
        self.lanes.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Tiny, Two};
    use crate::{Optimizer, SgdConfig};
    use ndarray::{Array1, Array2};
    use rnnlab_core::{Param, ParamView};

    #[test]
    fn shape_change_is_an_error_naming_the_parameter_and_changes_nothing() {
        let mut m = Two::new();
        let mut opt = SgdConfig::new(0.1).with_momentum(0.9).init::<f64>().unwrap();
        opt.step(&mut m).unwrap();
        let before = opt.state();
        m.b = Param::new(Array1::zeros(3));
        let w_before = m.w.value.clone();
        let e = opt.step(&mut m).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        assert!(e.to_string().contains("`b`"), "{e}");
        assert_eq!(opt.state(), before);
        assert_eq!(m.w.value, w_before, "w, visited before b, was not touched");
    }

    #[test]
    fn gradient_shape_differing_from_value_is_an_error() {
        let mut m = Tiny::<f64>::new([1.0, 2.0], [0.1, 0.2]);
        m.p.grad = Array1::zeros(3);
        let mut opt = SgdConfig::new(0.1).init::<f64>().unwrap();
        let e = opt.step(&mut m).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }) && e.to_string().contains("`p`"), "{e}");
    }

    struct Dup {
        a: Param<f64, ndarray::Ix1>,
        b: Param<f64, ndarray::Ix1>,
    }
    impl Parameterized<f64> for Dup {
        fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, f64>)) {
            v("x", self.a.view());
            v("x", self.b.view());
        }
        fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, f64>)) {
            v("x", self.a.view_mut());
            v("x", self.b.view_mut());
        }
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let mut m = Dup { a: Param::new(Array1::zeros(2)), b: Param::new(Array1::zeros(2)) };
        let mut opt = SgdConfig::new(0.1).init::<f64>().unwrap();
        let e = opt.step(&mut m).unwrap_err();
        assert!(matches!(e, Error::Config { .. }) && e.to_string().contains("`x`"), "{e}");
    }

    #[test]
    fn set_lr_rejects_negative_and_non_finite() {
        let mut opt = SgdConfig::new(0.1).init::<f64>().unwrap();
        assert!(opt.set_lr(-1e-3).is_err());
        assert!(opt.set_lr(f64::NAN).is_err());
        assert!(opt.set_lr(f64::INFINITY).is_err());
        assert!(opt.set_lr(0.0).is_ok());
        assert_eq!(opt.lr(), 0.0);
    }

    #[test]
    fn load_state_rejects_foreign_or_malformed_state() {
        let mut m = Two::new();
        let mut sgd = SgdConfig::new(0.1).with_momentum(0.9).init::<f64>().unwrap();
        sgd.step(&mut m).unwrap();
        let good = sgd.state();

        let mut wrong_algo = good.clone();
        wrong_algo.algorithm = "adam".into();
        assert!(matches!(sgd.load_state(wrong_algo), Err(Error::Format { .. })));

        let mut bad_lr = good.clone();
        bad_lr.lr = f64::NAN;
        assert!(matches!(sgd.load_state(bad_lr), Err(Error::Config { .. })));

        let mut missing = good.clone();
        missing.params.get_mut("w").unwrap().buffers.clear();
        assert!(matches!(sgd.load_state(missing), Err(Error::Format { .. })));

        let mut bad_shape = good.clone();
        bad_shape
            .params
            .get_mut("w")
            .unwrap()
            .buffers
            .insert("momentum_buffer".into(), Array2::zeros((5, 5)).into_dyn());
        assert!(matches!(sgd.load_state(bad_shape), Err(Error::Format { .. })));

        // A momentum-free SGD keeps no buffers, so the momentum state does not fit it.
        let mut plain = SgdConfig::new(0.1).init::<f64>().unwrap();
        assert!(matches!(plain.load_state(good.clone()), Err(Error::Format { .. })));

        assert!(sgd.load_state(good.clone()).is_ok());
        assert_eq!(sgd.state(), good);
    }

    #[test]
    fn load_state_rejects_non_finite_or_negative_moments() {
        let mut m = Two::new();
        m.w.grad.fill(0.5);
        let mut adam = crate::AdamConfig::new(0.1).with_amsgrad(true).init::<f64>().unwrap();
        adam.step(&mut m).unwrap();
        let good = adam.state();
        for buffer in ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"] {
            for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                let mut s = good.clone();
                s.params.get_mut("w").unwrap().buffers.get_mut(buffer).unwrap()[[1, 0]] = bad;
                let e = adam.load_state(s).unwrap_err();
                assert!(matches!(e, Error::NonFinite { .. }) && e.to_string().contains(buffer), "{e}");
            }
        }
        let mut s = good.clone();
        s.params.get_mut("b").unwrap().buffers.get_mut("exp_avg_sq").unwrap()[[0]] = -1e-3;
        let e = adam.load_state(s).unwrap_err();
        assert!(matches!(e, Error::Format { .. }) && e.to_string().contains("squares"), "{e}");
        // A negative first moment is an ordinary value.
        let mut s = good.clone();
        s.params.get_mut("b").unwrap().buffers.get_mut("exp_avg").unwrap()[[0]] = -1e-3;
        assert!(adam.load_state(s).is_ok());
        // The failed loads left the state as it was before the last good one.
        adam.step(&mut m).unwrap();
        assert!(adam.state().params.values().all(|p| p.buffers.values().all(|b| b.iter().all(|v| v.is_finite()))));
    }

    #[test]
    fn report_counts_and_update_norm() {
        // SGD lr 0.5, grads w = all 1 (2×2), b = [2, 0] → Δ = 0.5·g, ‖Δ‖ = 0.5·√(4 + 4) = √2.
        let mut m = Two::new();
        m.w.grad.fill(1.0);
        m.b.grad.assign(&Array1::from(vec![2.0, 0.0]));
        let mut opt = SgdConfig::new(0.5).init::<f64>().unwrap();
        let r = opt.step(&mut m).unwrap();
        assert_eq!((r.step, r.n_tensors, r.n_scalars), (1, 2, 6));
        assert!((r.update_norm - 2f64.sqrt()).abs() < 1e-12, "{}", r.update_norm);
        assert!((r.lr - 0.5).abs() < 1e-15);
    }

    #[test]
    fn sq_sum_over_lanes_is_the_sum_of_squares() {
        // 21 differences (more than the lanes, not a multiple of them): Δ_k = k/4 (exact in
        // binary), Σ Δ² = Σ k² / 16 = 2870 / 16 over k = 0..=20.
        let mut s = SqSum::new();
        for k in 0..=20 {
            s.add(1.0 + k as f32 / 4.0, 1.0f32);
        }
        assert_eq!(s.total(), 2870.0 / 16.0);
        assert_eq!(SqSum::new().total(), 0.0);
    }

    #[test]
    fn update_run_gives_the_bits_of_one_value_at_a_time() {
        let step = |x: f32, g: f32| x - 0.1 * g;
        for n in [0, 5, 8, 37] {
            let x0: Vec<f32> = (0..n).map(|k| (k as f32 * 0.37).sin()).collect();
            let g: Vec<f32> = (0..n).map(|k| (k as f32 * 1.3).cos() * 3.0).collect();
            // Starting at lane 0 and, after 3 values, in the middle of the lanes.
            for before in [0, 3] {
                let (mut one, mut run) = (SqSum::new(), SqSum::new());
                for k in 0..before {
                    one.add(k as f32, 0.5f32);
                    run.add(k as f32, 0.5f32);
                }
                let mut x_one = x0.clone();
                for (x, &g) in x_one.iter_mut().zip(&g) {
                    let new = step(*x, g);
                    one.add(new, *x);
                    *x = new;
                }
                let mut x_run = x0.clone();
                run.update_run(&mut x_run, &g, step);
                assert_eq!(x_run, x_one, "n = {n}, {before} before");
                assert_eq!(run.total().to_bits(), one.total().to_bits(), "n = {n}, {before} before");
                assert_eq!(run.next, one.next);
            }
        }
    }
}
