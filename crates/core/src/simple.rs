//! [`SimpleCell`]: a recurrent cell written as one step of math on plain arrays, and
//! [`Simple`], the adapter that turns any such cell into a full [`Cell`] — so it gets the
//! unroller's BPTT, stacking, per-step telemetry, the trainer and the diagnostics.

use ndarray::{Array2, ArrayView2, ArrayViewMut2, s};

use crate::{Cell, Error, Float, ParamView, ParamViewMut, Parameterized, Probe, Result, SeqRefs, StepRefs};

/// The arrays of one time step of a [`SimpleCell`], all `[batch, ·]` and row-major.
#[derive(Clone, Copy, Debug)]
pub struct SimpleStep<'a, F> {
    /// The time index t (0-based).
    pub t: usize,
    /// The input x_t, `[batch, input_dim]`.
    pub x: ArrayView2<'a, F>,
    /// The state before the step, s_{t−1}, `[batch, state_width]`.
    pub prev: ArrayView2<'a, F>,
    /// The state [`SimpleCell::step`] returned, s_t, `[batch, state_width]`.
    pub next: ArrayView2<'a, F>,
    /// What [`SimpleCell::step_saved`] saved for the backward, `[batch, saved_width]`
    /// (`[batch, 0]` for a cell that saves nothing).
    pub saved: ArrayView2<'a, F>,
}

/// A recurrent cell as math: s_t = step(x_t, s_{t−1}), its vector–Jacobian product and its
/// parameter gradients for one step. No caches, buffers or scratch to size: every method takes
/// plain views and returns owned arrays. Wrap it in [`Simple`] to use it wherever a [`Cell`]
/// goes (`Recurrent`, `SeqModel`, the `Trainer`, the diagnostics).
///
/// The state is `[batch, state_width]` with `state_width = state_names().len() · hidden_dim()`,
/// the hidden output h in the first `hidden_dim` columns.
///
/// # Contract
/// - **Rows are independent**: row b of every result depends only on row b of the inputs
///   (no batch statistics). The derived Jacobian–vector product relies on it.
/// - [`vjp`](SimpleCell::vjp) touches no parameter gradient (it is also the state VJP that the
///   diagnostics use); [`add_param_grads`](SimpleCell::add_param_grads) adds this step's
///   ∂L/∂θ into the gradients (they are accumulated over the sequence, never overwritten).
/// - Results of the wrong shape are refused by the adapter with [`Error::Shape`]; a NaN
///   produced from finite inputs with [`Error::NonFinite`] naming the cell, the method and
///   the step (an infinity is let through: it is how an exploding run overflows, and the
///   trainer reports that as divergence).
///
/// # Cost
/// Each step allocates its results, and the products are per step (`[batch, ·]` rows) rather
/// than the built-in cells' all-step GEMMs; the adapter adds one copy of the input and of each
/// state. A tanh RNN written this way (`rnnlab_cells::SimpleRnn`) takes 1.75× the time of the
/// hand-split `Rnn` per training step at H = 128 and 2.5× at H = 32 (T = 50, B = 32, one
/// thread; `RNNLAB_THREADS=1 cargo bench -p rnnlab-cells --bench simple`).
///
/// # Examples
/// A minimal cell, h_t = tanh(x_t + u·h_{t−1}) with one learnable scalar u (IndRNN with one
/// unit), checked against central differences:
/// ```
/// use ndarray::{Array1, Array2, Zip};
/// use rnnlab_core::*;
///
/// struct Leaky { u: Param<f64, ndarray::Ix1> }
/// impl Parameterized<f64> for Leaky {
///     fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, f64>)) { v("u", self.u.view()) }
///     fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, f64>)) { v("u", self.u.view_mut()) }
/// }
/// impl SimpleCell<f64> for Leaky {
///     fn name(&self) -> &'static str { "leaky" }
///     fn input_dim(&self) -> usize { 1 }
///     fn hidden_dim(&self) -> usize { 1 }
///     fn step(&self, x: ndarray::ArrayView2<'_, f64>, prev: ndarray::ArrayView2<'_, f64>) -> Result<Array2<f64>> {
///         let u = self.u.value[0];
///         Ok(Zip::from(&x).and(&prev).map_collect(|&x, &h| (x + u * h).tanh()))
///     }
///     fn vjp(&self, s: SimpleStep<'_, f64>, dnext: ndarray::ArrayView2<'_, f64>) -> Result<(Array2<f64>, Array2<f64>)> {
///         let dz = Zip::from(&dnext).and(&s.next).map_collect(|&g, &h| g * (1.0 - h * h));
///         Ok((dz.clone(), dz * self.u.value[0]))
///     }
///     fn add_param_grads(&mut self, s: SimpleStep<'_, f64>, dnext: ndarray::ArrayView2<'_, f64>) -> Result<()> {
///         let dz = Zip::from(&dnext).and(&s.next).map_collect(|&g, &h| g * (1.0 - h * h));
///         self.u.grad[0] += (&dz * &s.prev).sum();
///         Ok(())
///     }
/// }
/// let mut cell = Simple::new(Leaky { u: Param::new(Array1::from_elem(1, 0.7)) });
/// assert_eq!(cell.state_width(), 1);
/// let x = Array2::from_shape_vec((3, 1), vec![0.5, -1.0, 2.0]).unwrap(); // [time·batch, input]
/// let mut xp = Array2::zeros((3, 1));
/// cell.project_input(x.view(), xp.view_mut())?; // the identity
/// # Ok::<(), Error>(())
/// ```
pub trait SimpleCell<F: Float>: Parameterized<F> {
    /// A short name for messages (`"indrnn"`).
    fn name(&self) -> &'static str;
    /// The input width I.
    fn input_dim(&self) -> usize;
    /// The hidden width H.
    fn hidden_dim(&self) -> usize;
    /// The state's parts, `"h"` first; `["h"]` by default.
    fn state_names(&self) -> &'static [&'static str] {
        &["h"]
    }

    /// One forward step: s_t from x_t `[batch, input_dim]` and s_{t−1} `[batch, state_width]`,
    /// returned as `[batch, state_width]`.
    fn step(&self, x: ArrayView2<'_, F>, prev: ArrayView2<'_, F>) -> Result<Array2<F>>;

    /// How many values per batch row [`step_saved`](SimpleCell::step_saved) keeps for the
    /// backward; 0 by default. A cell saves what is costly to recompute (a tanh RNN its
    /// φ′(a_t), which would otherwise need the step's two products again).
    fn saved_width(&self) -> usize {
        0
    }

    /// The forward step as the adapter calls it: s_t and the values to save,
    /// `[batch, saved_width]`, handed back as [`SimpleStep::saved`]. The default runs
    /// [`step`](SimpleCell::step) and saves nothing; a cell with `saved_width() > 0`
    /// overrides both (and makes `step` return the first part of this).
    fn step_saved(&self, x: ArrayView2<'_, F>, prev: ArrayView2<'_, F>) -> Result<(Array2<F>, Array2<F>)> {
        Ok((self.step(x, prev)?, Array2::zeros((x.nrows(), 0))))
    }

    /// The vector–Jacobian product of one step: from `dnext` = ∂L/∂s_t returns
    /// (∂L/∂x_t `[batch, input_dim]`, ∂L/∂s_{t−1} `[batch, state_width]`). Touches no
    /// parameter gradient.
    fn vjp(&self, step: SimpleStep<'_, F>, dnext: ArrayView2<'_, F>) -> Result<(Array2<F>, Array2<F>)>;

    /// Adds this step's parameter gradients (through s_t only, given `dnext` = ∂L/∂s_t) into
    /// the parameters' `grad` arrays.
    fn add_param_grads(&mut self, step: SimpleStep<'_, F>, dnext: ArrayView2<'_, F>) -> Result<()>;

    /// The Jacobian–vector product (∂s_t/∂s_{t−1})·`v`, `[batch, state_width]`, if the cell
    /// has a cheap one. The default `Ok(None)` makes the adapter derive it exactly from
    /// `state_width` calls of [`vjp`](SimpleCell::vjp) with unit vectors (cost: `state_width`
    /// VJPs per product; never finite differences).
    fn jvp(&self, _step: SimpleStep<'_, F>, _v: ArrayView2<'_, F>) -> Result<Option<Array2<F>>> {
        Ok(None)
    }

    /// Switches training/evaluation behaviour; a no-op by default.
    fn set_training(&mut self, _training: bool) {}

    /// The cell's optional diagnostics hook (saturation, derivative bound γ, total state
    /// gradients), which [`Simple`] hands out as its [`Cell::probe`]; `None` ("not available")
    /// by default. Its methods see the unroller's [`StepRefs`]: `xp` is x_t (the identity
    /// projection) and `cache` what [`step_saved`](SimpleCell::step_saved) saved,
    /// `batch · saved_width` values, row-major.
    fn probe(&self) -> Option<&dyn Probe<F>> {
        None
    }
}

/// The adapter from a [`SimpleCell`] to a [`Cell`]: an identity input projection
/// (`proj_dim = input_dim`), no cache (the unroller keeps x_t, s_{t−1} and s_t, which is all a
/// simple cell's backward reads), and ∂L/∂s_t kept as the recurrent-path gradient so that the
/// parameter gradients are accumulated step by step after the backward sweep. Parameters are
/// the simple cell's, under its own names.
#[derive(Clone, Debug, PartialEq)]
pub struct Simple<C> {
    cell: C,
}

impl<C> Simple<C> {
    /// Wraps a simple cell.
    pub fn new(cell: C) -> Self {
        Self { cell }
    }

    /// The wrapped cell.
    pub fn inner(&self) -> &C {
        &self.cell
    }

    /// The wrapped cell, mutable.
    pub fn inner_mut(&mut self) -> &mut C {
        &mut self.cell
    }

    /// Unwraps the cell.
    pub fn into_inner(self) -> C {
        self.cell
    }
}

impl<C> From<C> for Simple<C> {
    fn from(cell: C) -> Self {
        Self::new(cell)
    }
}

impl<F: Float, C: SimpleCell<F>> Parameterized<F> for Simple<C> {
    fn visit_params(&self, visitor: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        self.cell.visit_params(visitor);
    }

    fn visit_params_mut(&mut self, visitor: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        self.cell.visit_params_mut(visitor);
    }
}

impl<C> Simple<C> {
    /// `Err(Shape)` unless a result of the simple cell has the shape it must have.
    fn check_result<F: Float>(
        cell: &str,
        method: &str,
        what: &str,
        t: usize,
        expected: [usize; 2],
        got: &Array2<F>,
    ) -> Result<()> {
        if got.shape() != expected {
            return Err(Error::shape(
                format!("{cell} (SimpleCell::{method}, step {t})"),
                format!("{what} {expected:?}"),
                format!("{:?}", got.shape()),
            ));
        }
        Ok(())
    }

    /// `Err(NonFinite)` if `out` holds a NaN although every input was finite.
    fn check_nan<F: Float>(
        cell: &str,
        method: &str,
        what: &str,
        t: usize,
        inputs: &[ArrayView2<'_, F>],
        out: &Array2<F>,
    ) -> Result<()> {
        if out.iter().any(|v| v.is_nan()) && inputs.iter().all(|a| a.iter().all(|v| v.is_finite())) {
            return Err(Error::non_finite(
                format!("{cell} (SimpleCell::{method}, step {t})"),
                format!("{what}: a NaN from finite inputs"),
            ));
        }
        Ok(())
    }
}

impl<C> Simple<C> {
    /// The simple cell's view of one step of the unroller's buffers.
    fn simple_step<'a, F: Float>(&self, op: Op<'_>, step: StepRefs<'a, F>) -> Result<SimpleStep<'a, F>>
    where
        C: SimpleCell<F>,
    {
        let b = step.prev.nrows();
        let saved_w = self.cell.saved_width();
        let cache = step.cache.get(..b * saved_w).ok_or_else(|| {
            Error::shape(
                op.to_string(),
                format!("a step cache of {} values", b * saved_w),
                format!("{}", step.cache.len()),
            )
        })?;
        let saved = ArrayView2::from_shape((b, saved_w), cache)
            .map_err(|e| Error::shape(op.to_string(), "step cache", e.to_string()))?;
        Ok(SimpleStep { t: step.t, x: step.xp, prev: step.prev, next: step.next, saved })
    }
}

/// The operation of a message: the cell's name and the adapter's method, formatted only when
/// an error is made (the checks run at every step).
#[derive(Clone, Copy)]
struct Op<'a>(&'a str, &'static str);

impl std::fmt::Display for Op<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (Simple::{})", self.0, self.1)
    }
}

/// `Err(Shape)` unless `got == expected`, naming `op` and `what`.
fn shape(op: Op<'_>, what: &str, expected: &[usize], got: &[usize]) -> Result<()> {
    if expected != got {
        return Err(Error::shape(op.to_string(), format!("{what} {expected:?}"), format!("{got:?}")));
    }
    Ok(())
}

fn rows<F>(a: ArrayView2<'_, F>, t: usize, batch: usize) -> ArrayView2<'_, F> {
    a.slice_move(s![t * batch..(t + 1) * batch, ..])
}

impl<F: Float, C: SimpleCell<F>> Cell<F> for Simple<C> {
    fn name(&self) -> &'static str {
        self.cell.name()
    }

    fn input_dim(&self) -> usize {
        self.cell.input_dim()
    }

    fn hidden_dim(&self) -> usize {
        self.cell.hidden_dim()
    }

    fn state_names(&self) -> &'static [&'static str] {
        self.cell.state_names()
    }

    fn proj_dim(&self) -> usize {
        self.cell.input_dim()
    }

    fn rec_grad_dim(&self) -> usize {
        self.state_width()
    }

    fn cache_len(&self, batch: usize) -> usize {
        batch * self.cell.saved_width()
    }

    fn scratch_len(&self, _batch: usize) -> usize {
        0
    }

    fn set_training(&mut self, training: bool) {
        self.cell.set_training(training);
    }

    /// The simple cell's own hook, [`SimpleCell::probe`].
    fn probe(&self) -> Option<&dyn Probe<F>> {
        self.cell.probe()
    }

    fn project_input(&mut self, x: ArrayView2<'_, F>, mut out: ArrayViewMut2<'_, F>) -> Result<()> {
        let op = Op(self.name(), "project_input");
        shape(op, "input [n, input_dim]", &[x.nrows(), self.input_dim()], x.shape())?;
        shape(op, "projection [n, input_dim]", x.shape(), out.shape())?;
        out.assign(&x);
        Ok(())
    }

    fn step(
        &mut self,
        t: usize,
        xp: ArrayViewMut2<'_, F>,
        prev: ArrayView2<'_, F>,
        mut next: ArrayViewMut2<'_, F>,
        cache: &mut [F],
        _scratch: &mut [F],
    ) -> Result<()> {
        let name = self.name();
        let b = prev.nrows();
        let saved_w = self.cell.saved_width();
        let sw = self.state_width();
        let op = Op(name, "step");
        shape(op, "input [batch, input_dim]", &[b, self.input_dim()], xp.shape())?;
        shape(op, "state [batch, state_width]", &[b, sw], prev.shape())?;
        shape(op, "next state [batch, state_width]", &[b, sw], next.shape())?;
        let cache_len = cache.len();
        let cache = cache.get_mut(..b * saved_w).ok_or_else(|| {
            Error::shape(op.to_string(), format!("a cache of {} values", b * saved_w), format!("{cache_len}"))
        })?;
        let x = xp.view();
        let (s, saved) = self.cell.step_saved(x, prev)?;
        Self::check_result(name, "step_saved", "state", t, [b, sw], &s)?;
        Self::check_result(name, "step_saved", "saved values", t, [b, saved_w], &saved)?;
        Self::check_nan(name, "step_saved", "state", t, &[x, prev], &s)?;
        next.assign(&s);
        // Row-major copy into the step's cache (the cache slice is contiguous).
        for (c, v) in cache.iter_mut().zip(saved.iter()) {
            *c = *v;
        }
        Ok(())
    }

    fn step_backward(
        &self,
        step: StepRefs<'_, F>,
        dnext: ArrayView2<'_, F>,
        mut dprev: ArrayViewMut2<'_, F>,
        mut dxp: ArrayViewMut2<'_, F>,
        mut drec: ArrayViewMut2<'_, F>,
        _scratch: &mut [F],
    ) -> Result<()> {
        let name = self.name();
        let (b, sw, i) = (dnext.nrows(), self.state_width(), self.input_dim());
        let op = Op(name, "step_backward");
        for (what, got) in [("∂L/∂s_t", dnext.shape()), ("s_{t-1}", step.prev.shape()), ("s_t", step.next.shape())]
        {
            shape(op, &format!("{what} [batch, state_width]"), &[b, sw], got)?;
        }
        shape(op, "∂L/∂s_{t-1} [batch, state_width]", &[b, sw], dprev.shape())?;
        shape(op, "recurrent gradient [batch, state_width]", &[b, sw], drec.shape())?;
        shape(op, "input [batch, input_dim]", &[b, i], step.xp.shape())?;
        shape(op, "∂L/∂x_t [batch, input_dim]", &[b, i], dxp.shape())?;
        let simple = self.simple_step(op, step)?;
        let (dx, dp) = self.cell.vjp(simple, dnext)?;
        Self::check_result(name, "vjp", "∂L/∂x_t", step.t, [b, i], &dx)?;
        Self::check_result(name, "vjp", "∂L/∂s_{t-1}", step.t, [b, sw], &dp)?;
        let inputs = [step.xp, step.prev, dnext];
        Self::check_nan(name, "vjp", "∂L/∂x_t", step.t, &inputs, &dx)?;
        Self::check_nan(name, "vjp", "∂L/∂s_{t-1}", step.t, &inputs, &dp)?;
        dxp.assign(&dx);
        dprev.assign(&dp);
        drec.assign(&dnext);
        Ok(())
    }

    fn accumulate_grads(&mut self, seq: SeqRefs<'_, F>) -> Result<()> {
        let op = Op(self.name(), "accumulate_grads");
        let (b, sw, i) = (seq.batch, self.state_width(), self.input_dim());
        crate::validate::positive_size(&op.to_string(), "batch", b)?;
        let n = seq.x.nrows();
        if n % b != 0 {
            return Err(Error::shape(op.to_string(), format!("rows a multiple of batch {b}"), format!("{n} rows")));
        }
        shape(op, "inputs [time·batch, input_dim]", &[n, i], seq.x.shape())?;
        shape(op, "states before [time·batch, state_width]", &[n, sw], seq.prev.shape())?;
        shape(op, "states after [time·batch, state_width]", &[n, sw], seq.next.shape())?;
        shape(op, "∂L/∂s [time·batch, state_width]", &[n, sw], seq.drec.shape())?;
        shape(op, "∂L/∂xp [time·batch, input_dim]", &[n, i], seq.dxp.shape())?;
        let saved_w = self.cell.saved_width();
        shape(op, "caches [time, batch·saved_width]", &[n / b, b * saved_w], seq.cache.shape())?;
        for t in 0..n / b {
            let saved = seq
                .cache
                .row(t)
                .into_shape_with_order((b, saved_w))
                .map_err(|e| Error::shape(op.to_string(), "a contiguous cache row", e.to_string()))?;
            let step =
                SimpleStep { t, x: rows(seq.x, t, b), prev: rows(seq.prev, t, b), next: rows(seq.next, t, b), saved };
            self.cell.add_param_grads(step, rows(seq.drec, t, b))?;
        }
        Ok(())
    }

    fn input_grad(&self, dxp: ArrayView2<'_, F>, mut dx: ArrayViewMut2<'_, F>) -> Result<()> {
        let op = Op(self.name(), "input_grad");
        shape(op, "∂L/∂xp [n, input_dim]", &[dxp.nrows(), self.input_dim()], dxp.shape())?;
        shape(op, "∂L/∂x [n, input_dim]", dxp.shape(), dx.shape())?;
        dx.assign(&dxp);
        Ok(())
    }

    fn jvp_state(
        &self,
        step: StepRefs<'_, F>,
        v: ArrayView2<'_, F>,
        mut out: ArrayViewMut2<'_, F>,
        _scratch: &mut [F],
    ) -> Result<()> {
        let name = self.name();
        let (b, sw) = (v.nrows(), self.state_width());
        let op = Op(name, "jvp_state");
        shape(op, "v [batch, state_width]", &[b, sw], v.shape())?;
        shape(op, "out [batch, state_width]", &[b, sw], out.shape())?;
        shape(op, "s_{t-1} [batch, state_width]", &[b, sw], step.prev.shape())?;
        shape(op, "s_t [batch, state_width]", &[b, sw], step.next.shape())?;
        shape(op, "input [batch, input_dim]", &[b, self.input_dim()], step.xp.shape())?;
        let simple = self.simple_step(op, step)?;
        if let Some(j) = self.cell.jvp(simple, v)? {
            Self::check_result(name, "jvp", "J·v", step.t, [b, sw], &j)?;
            out.assign(&j);
            return Ok(());
        }
        // (J v)_i = (Jᵀ e_i) · v, row by row: one VJP per state column, exact.
        let mut unit = Array2::zeros((b, sw));
        for i in 0..sw {
            unit.column_mut(i).fill(F::one());
            let (_, row_i) = self.cell.vjp(simple, unit.view())?;
            Self::check_result(name, "vjp", "∂L/∂s_{t-1}", step.t, [b, sw], &row_i)?;
            for (o, (r, vr)) in out.column_mut(i).iter_mut().zip(row_i.outer_iter().zip(v.outer_iter())) {
                *o = r.dot(&vr);
            }
            unit.column_mut(i).fill(F::zero());
        }
        Ok(())
    }
}
