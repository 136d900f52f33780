//! The recurrent `Cell` trait: one time step forward and backward over preallocated buffers,
//! and the products of one step's state Jacobian with a vector.

use ndarray::{Array2, ArrayView2, ArrayViewMut2, s};

use crate::{Error, Float, Parameterized, Probe, Result};

/// The recurrent state of one layer for a batch: named parts of width `hidden_dim` stored side
/// by side in one `[batch, n_parts · hidden_dim]` array.
///
/// Part 0 is always the hidden output `h`; an LSTM has parts `["h", "c"]`.
#[derive(Clone, Debug, PartialEq)]
pub struct State<F> {
    names: Vec<String>,
    hidden_dim: usize,
    data: Array2<F>,
}

impl<F: Float> State<F> {
    /// A state from part names and data `[batch, names.len() · hidden_dim]`.
    ///
    /// # Errors
    /// [`Error::Config`] for no parts or `hidden_dim = 0`; [`Error::Shape`] when the width of
    /// `data` is not `names.len() · hidden_dim`.
    pub fn new(names: &[&str], hidden_dim: usize, data: Array2<F>) -> Result<Self> {
        if names.is_empty() || hidden_dim == 0 {
            return Err(Error::config("State::new", "a state needs at least one part and hidden_dim >= 1"));
        }
        if data.ncols() != names.len() * hidden_dim {
            return Err(Error::shape(
                "State::new",
                format!("[batch, {}] for parts {names:?} of width {hidden_dim}", names.len() * hidden_dim),
                format!("{:?}", data.shape()),
            ));
        }
        Ok(Self { names: names.iter().map(|n| n.to_string()).collect(), hidden_dim, data })
    }

    /// The all-zero state.
    pub fn zeros(names: &[&str], batch: usize, hidden_dim: usize) -> Result<Self> {
        Self::new(names, hidden_dim, Array2::zeros((batch, names.len() * hidden_dim)))
    }

    /// The part names, `h` first.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The batch size.
    pub fn batch(&self) -> usize {
        self.data.nrows()
    }

    /// The width of each part.
    pub fn hidden_dim(&self) -> usize {
        self.hidden_dim
    }

    /// All parts side by side, `[batch, n_parts · hidden_dim]`.
    pub fn data(&self) -> ArrayView2<'_, F> {
        self.data.view()
    }

    /// All parts side by side, mutable.
    pub fn data_mut(&mut self) -> ArrayViewMut2<'_, F> {
        self.data.view_mut()
    }

    /// Part `k` (`0` is `h`), `[batch, hidden_dim]`; `None` if there is no such part.
    pub fn part(&self, k: usize) -> Option<ArrayView2<'_, F>> {
        (k < self.names.len()).then(|| self.data.slice(s![.., k * self.hidden_dim..(k + 1) * self.hidden_dim]))
    }

    /// A state from named parts, e.g. `[("h", h0), ("c", c0)]` for an LSTM, copied side by
    /// side in the given order (put `h` first: part 0 is the hidden output).
    ///
    /// # Errors
    /// [`Error::Config`] for no parts, a repeated name or parts of width 0; [`Error::Shape`]
    /// naming the first part whose `[batch, width]` differs from the first part's.
    ///
    /// # Examples
    /// ```
    /// use ndarray::Array2;
    /// use rnnlab_core::State;
    /// let (h0, c0) = (Array2::<f32>::zeros((2, 3)), Array2::<f32>::ones((2, 3)));
    /// let s = State::from_parts(&[("h", h0.view()), ("c", c0.view())])?;
    /// assert_eq!(s.data().shape(), &[2, 6]);
    /// assert_eq!(s.part_by_name("c"), Some(c0.view()));
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn from_parts(parts: &[(&str, ArrayView2<'_, F>)]) -> Result<Self> {
        const OP: &str = "State::from_parts";
        let Some((first_name, first)) = parts.first() else {
            return Err(Error::config(OP, "a state needs at least one part"));
        };
        let (batch, width) = first.dim();
        for (i, (name, p)) in parts.iter().enumerate() {
            if parts.iter().take(i).any(|(n, _)| n == name) {
                return Err(Error::config(OP, format!("part `{name}` appears twice")));
            }
            if p.dim() != (batch, width) {
                return Err(Error::shape(
                    OP,
                    format!("part `{name}` [{batch}, {width}] (the shape of part `{first_name}`)"),
                    format!("{:?}", p.shape()),
                ));
            }
        }
        let mut data = Array2::zeros((batch, parts.len() * width));
        for (k, (_, p)) in parts.iter().enumerate() {
            // Every part is [batch, width] (checked above), the slice too.
            data.slice_mut(s![.., k * width..(k + 1) * width]).assign(p);
        }
        let names: Vec<&str> = parts.iter().map(|(n, _)| *n).collect();
        Self::new(&names, width, data).map_err(|e| match e {
            Error::Config { msg, .. } => Error::config(OP, msg),
            other => other,
        })
    }

    /// The part called `name` (`"h"`, `"c"`), `[batch, hidden_dim]`; `None` if there is none.
    pub fn part_by_name(&self, name: &str) -> Option<ArrayView2<'_, F>> {
        self.part(self.names.iter().position(|n| n == name)?)
    }

    /// The hidden output `h`, `[batch, hidden_dim]`.
    pub fn h(&self) -> ArrayView2<'_, F> {
        self.data.slice(s![.., ..self.hidden_dim])
    }

    /// Consumes the state, returning its data.
    pub fn into_data(self) -> Array2<F> {
        self.data
    }

    /// The batch rows `range` of every part, as a new state.
    ///
    /// # Errors
    /// [`Error::Shape`] if `range` is empty or reaches past the batch.
    pub fn rows(&self, range: std::ops::Range<usize>) -> Result<Self> {
        if range.start >= range.end || range.end > self.batch() {
            return Err(Error::shape(
                "State::rows",
                format!("a non-empty range of rows within 0..{}", self.batch()),
                format!("{range:?}"),
            ));
        }
        let data = self.data.slice(s![range, ..]).to_owned();
        Ok(Self { names: self.names.clone(), hidden_dim: self.hidden_dim, data })
    }
}

/// The forward-pass buffers of one time step, as the unroller lays them out.
#[derive(Clone, Copy, Debug)]
pub struct StepRefs<'a, F> {
    /// The time index `t` of this step (0-based).
    pub t: usize,
    /// This step's row block of the input projection, `[batch, proj_dim]`, as [`Cell::step`]
    /// left it: the projection from [`Cell::project_input`], unless the step overwrote it
    /// (an LSTM keeps its activated gates there).
    pub xp: ArrayView2<'a, F>,
    /// The state before the step, s_{t−1}, `[batch, state_width]`.
    pub prev: ArrayView2<'a, F>,
    /// The state after the step, s_t, `[batch, state_width]`.
    pub next: ArrayView2<'a, F>,
    /// What [`Cell::step`] cached, `cache_len(batch)` values.
    pub cache: &'a [F],
}

/// Whole-sequence buffers handed to [`Cell::accumulate_grads`] after the backward sweep.
/// Row `t · batch + b` of each 2-D array belongs to step `t`, batch row `b`.
#[derive(Clone, Copy, Debug)]
pub struct SeqRefs<'a, F> {
    /// The batch size.
    pub batch: usize,
    /// The inputs, `[time · batch, input_dim]`.
    pub x: ArrayView2<'a, F>,
    /// The states before each step, `[time · batch, state_width]`.
    pub prev: ArrayView2<'a, F>,
    /// The states after each step, `[time · batch, state_width]`.
    pub next: ArrayView2<'a, F>,
    /// Each step's cache, `[time, cache_len(batch)]`.
    pub cache: ArrayView2<'a, F>,
    /// ∂L/∂(input projection), `[time · batch, proj_dim]`.
    pub dxp: ArrayView2<'a, F>,
    /// The cell's own recurrent-path gradients, `[time · batch, rec_grad_dim]`.
    pub drec: ArrayView2<'a, F>,
}

/// A recurrent cell: s_t = cell(x_t, s_{t−1}).
///
/// The generic unroller (`rnnlab-cells`'s `Recurrent`) owns the time loop, the buffers,
/// stacking, truncation and the per-step gradient telemetry; a cell supplies one step in each
/// direction. The work is split so that everything that can be done for all steps at once is:
///
/// 1. [`project_input`](Cell::project_input): the input-dependent part of every step in one
///    GEMM, `[time · batch, input_dim] → [time · batch, proj_dim]`;
/// 2. [`step`](Cell::step) for t = 0..T: the recurrent part and the gate math, writing s_t and a
///    cache into preallocated buffers (no allocation);
/// 3. [`step_backward`](Cell::step_backward) for t = T−1..0: from ∂L/∂s_t to ∂L/∂s_{t−1}, and
///    ∂L/∂(input projection) plus any recurrent-path gradient the cell needs later;
/// 4. [`accumulate_grads`](Cell::accumulate_grads) and [`input_grad`](Cell::input_grad): the
///    weight gradients and ∂L/∂x for all steps at once (GEMMs over `time · batch` rows).
///
/// `step_backward` must not touch parameter gradients: it is also the vector–Jacobian product
/// uᵀ·∂s_t/∂s_{t−1} that diagnostics use. [`jvp_state`](Cell::jvp_state) is the
/// Jacobian–vector product ∂s_t/∂s_{t−1}·v.
///
/// # Shapes
/// States are `[batch, state_width]` with `state_width = state_names().len() · hidden_dim`.
/// The unroller hands every method standard-layout (row-major, contiguous) views of exactly
/// these shapes; a cell may return [`Error::Shape`] for anything else.
///
/// # Errors
/// Every method returns `Result` so that a cell can refuse views it cannot work on
/// (non-contiguous or wrongly shaped) instead of panicking.
pub trait Cell<F: Float>: Parameterized<F> {
    /// A short name for messages (`"lstm"`).
    fn name(&self) -> &'static str;
    /// The input width I.
    fn input_dim(&self) -> usize;
    /// The hidden width H.
    fn hidden_dim(&self) -> usize;
    /// The state's parts, `"h"` first (`["h", "c"]` for an LSTM).
    fn state_names(&self) -> &'static [&'static str];
    /// The width of the input projection per row.
    fn proj_dim(&self) -> usize;
    /// The width of the cell's recurrent-path gradient per row (0 if it needs none).
    fn rec_grad_dim(&self) -> usize {
        0
    }
    /// How many values [`Cell::step`] caches for a batch of `batch` rows.
    fn cache_len(&self, batch: usize) -> usize;
    /// How many scratch values a step (either direction, or a JVP) needs for `batch` rows.
    fn scratch_len(&self, batch: usize) -> usize;

    /// `state_names().len() · hidden_dim()`.
    fn state_width(&self) -> usize {
        self.state_names().len() * self.hidden_dim()
    }

    /// Switches training/evaluation behaviour (normalised cells); a no-op by default.
    fn set_training(&mut self, _training: bool) {}

    /// Writes the input projection of all rows: `x` `[n, input_dim]` → `out` `[n, proj_dim]`,
    /// every value of `out` (the unroller hands in a recycled, not zeroed, buffer). The
    /// unroller has checked both shapes. Called once per forward pass before the steps; a
    /// cell may pack or cache its input weights here for the products of this pass (hence
    /// `&mut self`).
    fn project_input(&mut self, x: ArrayView2<'_, F>, out: ArrayViewMut2<'_, F>) -> Result<()>;

    /// One forward step at time `t`: reads `xp` `[batch, proj_dim]` and `prev`, writes every
    /// value of `next` and of the first `cache_len(batch)` values of `cache` (recycled buffers,
    /// not zeroed). `&mut self` lets normalised cells update running statistics.
    ///
    /// `xp` is this step's row block of the input projection, read by no one else: the step
    /// may overwrite it with values its backward needs (an LSTM turns it into its activated
    /// gates in place, so they need no room in the cache and no second stream of writes);
    /// [`StepRefs::xp`] is then what the step left there.
    fn step(
        &mut self,
        t: usize,
        xp: ArrayViewMut2<'_, F>,
        prev: ArrayView2<'_, F>,
        next: ArrayViewMut2<'_, F>,
        cache: &mut [F],
        scratch: &mut [F],
    ) -> Result<()>;

    /// One backward step: from `dnext` = ∂L/∂s_t writes `dprev` = ∂L/∂s_{t−1}, `dxp` =
    /// ∂L/∂xp_t and `drec` (`[batch, rec_grad_dim]`), every value of each (overwriting: the
    /// buffers are recycled, not zeroed). Touches no parameter gradient.
    #[allow(clippy::too_many_arguments)]
    fn step_backward(
        &self,
        step: StepRefs<'_, F>,
        dnext: ArrayView2<'_, F>,
        dprev: ArrayViewMut2<'_, F>,
        dxp: ArrayViewMut2<'_, F>,
        drec: ArrayViewMut2<'_, F>,
        scratch: &mut [F],
    ) -> Result<()>;

    /// Adds ∂L/∂θ for every parameter from the whole sequence's buffers.
    fn accumulate_grads(&mut self, seq: SeqRefs<'_, F>) -> Result<()>;

    /// Writes ∂L/∂x `[n, input_dim]` from ∂L/∂xp `[n, proj_dim]`, every value of `dx`.
    fn input_grad(&self, dxp: ArrayView2<'_, F>, dx: ArrayViewMut2<'_, F>) -> Result<()>;

    /// Jacobian–vector product: writes `out` = (∂s_t/∂s_{t−1})·`v`, both `[batch, state_width]`.
    fn jvp_state(
        &self,
        step: StepRefs<'_, F>,
        v: ArrayView2<'_, F>,
        out: ArrayViewMut2<'_, F>,
        scratch: &mut [F],
    ) -> Result<()>;

    /// Vector–Jacobian product: writes `out` = `u`ᵀ·(∂s_t/∂s_{t−1}), both `[batch, state_width]`.
    /// Provided through [`Cell::step_backward`]; allocates its temporaries.
    fn vjp_state(&self, step: StepRefs<'_, F>, u: ArrayView2<'_, F>, out: ArrayViewMut2<'_, F>) -> Result<()> {
        let batch = u.nrows();
        let mut dxp = Array2::zeros((batch, self.proj_dim()));
        let mut drec = Array2::zeros((batch, self.rec_grad_dim()));
        let mut scratch = vec![F::zero(); self.scratch_len(batch)];
        self.step_backward(step, u, out, dxp.view_mut(), drec.view_mut(), &mut scratch)
    }

    /// The cell's optional diagnostics hook (saturation, derivative bound, total state
    /// gradients); `None` by default, i.e. "not available", which every diagnostic handles.
    fn probe(&self) -> Option<&dyn Probe<F>> {
        None
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn state_from_named_parts() {
        let h = array![[1.0f64, 2.0], [3.0, 4.0]];
        let c = array![[5.0f64, 6.0], [7.0, 8.0]];
        let s = State::from_parts(&[("h", h.view()), ("c", c.view())]).unwrap();
        assert_eq!(s.data(), array![[1.0, 2.0, 5.0, 6.0], [3.0, 4.0, 7.0, 8.0]]);
        assert_eq!((s.names(), s.hidden_dim(), s.batch()), (&["h".to_string(), "c".to_string()][..], 2, 2));
        assert_eq!(s.part_by_name("c"), Some(c.view()));
        assert_eq!(s.part_by_name("h"), Some(s.h()));
        assert_eq!(s.part_by_name("n"), None);
        // a transposed (non-standard) view is copied by element
        let t = State::from_parts(&[("h", h.t())]).unwrap();
        assert_eq!(t.h(), h.t());
    }

    #[test]
    fn state_from_bad_parts_is_an_error() {
        let a = Array2::<f32>::zeros((2, 3));
        let e = State::<f32>::from_parts(&[]).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        let e = State::from_parts(&[("h", a.view()), ("c", Array2::zeros((3, 3)).view())]).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }) && e.to_string().contains("part `c` [2, 3]"), "{e}");
        let e = State::from_parts(&[("h", a.view()), ("c", Array2::zeros((2, 4)).view())]).unwrap_err();
        assert!(e.to_string().contains("[2, 4]"), "{e}");
        let e = State::from_parts(&[("h", a.view()), ("h", a.view())]).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = State::from_parts(&[("h", Array2::<f32>::zeros((2, 0)).view())]).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
    }
}
