//! The generic unroller: any [`Cell`] over time, stacked, with full or truncated BPTT and the
//! per-step state gradients ∂L/∂s_t from the same backward pass.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, Axis, s};
use rnnlab_core::{
    Cell, Error, Float, ParamView, ParamViewMut, Parameterized, Result, SeqRefs, State, StepRefs, visit_prefixed,
    visit_prefixed_mut,
};
use serde::{Deserialize, Serialize};

use super::pool::Pool;

/// A stack of `n_layers` recurrent layers of one cell type, unrolled over time.
///
/// Layer 0 reads the input `[time, batch, input_dim]`; layer l > 0 reads layer l − 1's hidden
/// outputs. Parameters are named `layers.{l}.{name}` (`layers.0.w_ih` is PyTorch's
/// `weight_ih_l0`).
///
/// # Examples
/// ```
/// use ndarray::Array3;
/// use rnnlab_cells::{BackwardOptions, LstmConfig, OutputGrad, Recurrent};
/// let mut rng = rnnlab_core::seeded_rng(0);
/// let mut lstm: Recurrent<f32, _> = Recurrent::new(vec![LstmConfig::new(3, 8).init(&mut rng)?])?;
/// let x = Array3::<f32>::ones((5, 2, 3)); // [time, batch, input_dim]
/// let fwd = lstm.forward(x.view(), None)?;
/// assert_eq!(fwd.outputs.shape(), &[5, 2, 8]);
/// // Loss = sum of the last output: its gradient is ones on the last step.
/// let g = ndarray::Array2::<f32>::ones((2, 8));
/// let bwd = lstm.backward(&fwd.cache, OutputGrad::Last(g.view()), BackwardOptions::default())?;
/// // ∂L/∂h_t for every step t, from the same pass: vanishing or not?
/// let norms = bwd.step_grads[0].norms(0);
/// assert_eq!(norms.len(), 5);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "C: Serialize", deserialize = "C: Deserialize<'de>, F: Float"))]
pub struct Recurrent<F, C> {
    layers: Vec<C>,
    #[serde(skip)]
    id: StackId,
    #[serde(skip)]
    pool: Pool<F>,
    #[serde(skip)]
    _float: PhantomData<F>,
}

/// Gradient of the loss with respect to the top layer's outputs.
#[derive(Clone, Copy, Debug)]
pub enum OutputGrad<'a, F> {
    /// ∂L/∂h_t for every step, `[time, batch, hidden_dim]` (zeros where no loss reads h_t).
    Every(ArrayView3<'a, F>),
    /// ∂L/∂h_{T−1} for the last step only, `[batch, hidden_dim]`.
    Last(ArrayView2<'a, F>),
    /// No loss on the outputs (only on the final states).
    None,
}

/// What [`Recurrent::forward`] keeps for [`Recurrent::backward`]: per layer the input
/// projections `[T·B, proj_dim]`, all states `[(T+1)·B, state_width]` and the cells' caches
/// `[T, cache_len]` — O(T·B·gates·H) values — and the stamp of the stack and parameters
/// that made it, which the backward pass checks.
#[derive(Clone, Debug)]
pub struct SeqCache<F> {
    time: usize,
    batch: usize,
    stamp: Stamp,
    x: Array2<F>,
    layers: Vec<LayerCache<F>>,
}

/// The identity of a [`Recurrent`] value: unique per value (a clone or a deserialised copy
/// gets a fresh one), ignored by equality. Numbers come from a process-wide counter.
#[derive(Debug)]
struct StackId(u64);

impl Default for StackId {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl Clone for StackId {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for StackId {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Where a [`SeqCache`] comes from: the stack's [`StackId`], each layer's cell kind and sizes,
/// and a fingerprint of every parameter value at the forward pass. [`Recurrent::backward`]
/// refuses a cache whose stamp differs from the stack's: a cache of another stack (even of
/// the same kind and widths), or of the same stack before its layers or parameters changed —
/// the products would mix two models (PyTorch's "modified by an inplace operation").
#[derive(Clone, Debug, PartialEq)]
struct Stamp {
    stack: u64,
    layers: Vec<LayerStamp>,
    params: u64,
}

/// A layer's kind and sizes, as a cache depends on them.
#[derive(Clone, Copy, Debug, PartialEq)]
struct LayerStamp {
    name: &'static str,
    input_dim: usize,
    hidden_dim: usize,
    state_width: usize,
    proj_dim: usize,
    rec_grad_dim: usize,
    cache_len: usize,
}

#[derive(Clone, Debug)]
struct LayerCache<F> {
    xp: Array2<F>,
    states: Array2<F>,
    cache: Array2<F>,
}

impl<F: Float> SeqCache<F> {
    /// The number of time steps.
    pub fn time(&self) -> usize {
        self.time
    }

    /// The batch size.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Layer `l`'s state s_t for t = −1..T−1 as `[T + 1, batch, state_width]` (index 0 is the
    /// initial state); `None` if there is no such layer.
    pub fn states(&self, l: usize) -> Option<ArrayView3<'_, F>> {
        let lc = self.layers.get(l)?;
        lc.states.view().into_shape_with_order((self.time + 1, self.batch, lc.states.ncols())).ok()
    }

    /// The buffers of step `t` of layer `l`, for [`Cell::jvp_state`] / [`Cell::vjp_state`].
    pub fn step_refs(&self, l: usize, t: usize) -> Option<StepRefs<'_, F>> {
        let lc = self.layers.get(l)?;
        if t >= self.time {
            return None;
        }
        let b = self.batch;
        Some(StepRefs {
            t,
            xp: lc.xp.slice(s![t * b..(t + 1) * b, ..]),
            prev: lc.states.slice(s![t * b..(t + 1) * b, ..]),
            next: lc.states.slice(s![(t + 1) * b..(t + 2) * b, ..]),
            cache: lc.cache.row(t).to_slice()?,
        })
    }

    /// The number of cached values, all layers together.
    pub fn len_values(&self) -> usize {
        self.x.len() + self.layers.iter().map(|l| l.xp.len() + l.states.len() + l.cache.len()).sum::<usize>()
    }
}

/// The result of [`Recurrent::forward`].
#[derive(Clone, Debug)]
pub struct Forward<F> {
    /// The top layer's hidden outputs h_t, `[time, batch, hidden_dim]`.
    pub outputs: Array3<F>,
    /// Each layer's final state s_{T−1}.
    pub final_states: Vec<State<F>>,
    /// The cache for [`Recurrent::backward`].
    pub cache: SeqCache<F>,
}

/// Per-step state gradients ∂L/∂s_t of one layer, t = 0..T−1, from the backward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct StepGrads<F> {
    names: &'static [&'static str],
    hidden_dim: usize,
    data: Array3<F>,
}

impl<F: Float> StepGrads<F> {
    /// The state part names (`["h", "c"]` for an LSTM).
    pub fn names(&self) -> &'static [&'static str] {
        self.names
    }

    /// All parts, `[time, batch, state_width]`.
    pub fn all(&self) -> ArrayView3<'_, F> {
        self.data.view()
    }

    /// Part `k` (0 is h), `[time, batch, hidden_dim]`; `k` past the last part gives an empty view.
    pub fn part(&self, k: usize) -> ArrayView3<'_, F> {
        let h = self.hidden_dim;
        let k = k.min(self.names.len());
        self.data.slice(s![.., .., k * h..((k + 1) * h).min(self.data.shape()[2])])
    }

    /// ‖∂L/∂(part k)_t‖₂ over the batch, for each step t (computed in f64).
    pub fn norms(&self, k: usize) -> Vec<f64> {
        self.part(k).outer_iter().map(|g| g.iter().map(|v| v.as_f64().powi(2)).sum::<f64>().sqrt()).collect()
    }

    /// Reverses the time axis in place (step t becomes step T − 1 − t): a bidirectional
    /// stack's reverse direction reports its steps in the original time order, and this turns
    /// them back into its processing order (or the other way round).
    pub fn reverse_time(&mut self) {
        let step = self.data.shape()[1] * self.data.shape()[2];
        match self.data.as_slice_mut() {
            // Reversing everything reverses the order of the steps and each step's values;
            // reversing each step again restores its values.
            Some(v) if step > 0 => {
                v.reverse();
                for block in v.chunks_exact_mut(step) {
                    block.reverse();
                }
            }
            Some(_) => {}
            None => self.data = self.data.slice(s![..;-1, .., ..]).to_owned(),
        }
    }
}

/// Options of [`Recurrent::backward`]; the default is full BPTT from the output gradients
/// alone, with ∂L/∂x.
#[derive(Clone, Copy, Debug)]
pub struct BackwardOptions<'a, F> {
    /// ∂L/∂(final state) of each layer, if a loss reads the final states.
    pub d_final: Option<&'a [State<F>]>,
    /// Truncated BPTT in chunks of k steps (`None`: full BPTT).
    pub truncate: Option<usize>,
    /// Compute ∂L/∂x (default true). Without it the bottom layer skips one GEMM of the six —
    /// what a training step needs when the input is data.
    pub input_grad: bool,
}

impl<F> Default for BackwardOptions<'_, F> {
    fn default() -> Self {
        Self { d_final: None, truncate: None, input_grad: true }
    }
}

impl<'a, F> BackwardOptions<'a, F> {
    /// Sets the final-state gradients.
    pub fn with_d_final(mut self, d_final: &'a [State<F>]) -> Self {
        self.d_final = Some(d_final);
        self
    }

    /// Sets the truncation length k.
    pub fn with_truncate(mut self, k: usize) -> Self {
        self.truncate = Some(k);
        self
    }

    /// Skips ∂L/∂x.
    pub fn without_input_grad(mut self) -> Self {
        self.input_grad = false;
        self
    }
}

/// The result of [`Recurrent::backward`]. Parameter gradients were added to the cells.
#[derive(Clone, Debug)]
pub struct Backward<F> {
    /// ∂L/∂x, `[time, batch, input_dim]` (`None` when not asked for).
    pub dx: Option<Array3<F>>,
    /// ∂L/∂(initial state) of each layer.
    pub d_init: Vec<State<F>>,
    /// ∂L/∂s_t for every step of each layer (the per-step telemetry).
    pub step_grads: Vec<StepGrads<F>>,
}

impl<F: Float, C: Cell<F>> Recurrent<F, C> {
    /// A stack from its layers, bottom first.
    ///
    /// # Errors
    /// [`Error::Config`] for no layers; [`Error::Shape`] if layer l + 1's input width is not
    /// layer l's hidden width.
    pub fn new(layers: Vec<C>) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::config("Recurrent::new", "n_layers must be at least 1, got 0"));
        }
        for (l, pair) in layers.windows(2).enumerate() {
            if pair[1].input_dim() != pair[0].hidden_dim() {
                return Err(Error::shape(
                    "Recurrent::new",
                    format!("layer {} input_dim = layer {l} hidden_dim = {}", l + 1, pair[0].hidden_dim()),
                    format!("{}", pair[1].input_dim()),
                ));
            }
        }
        Ok(Self { layers, id: StackId::default(), pool: Pool::default(), _float: PhantomData })
    }

    /// The layers, bottom first.
    pub fn layers(&self) -> &[C] {
        &self.layers
    }

    /// The layers, mutable (e.g. to set weights).
    pub fn layers_mut(&mut self) -> &mut [C] {
        &mut self.layers
    }

    /// The number of layers.
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// The input width of layer 0.
    pub fn input_dim(&self) -> usize {
        self.layers[0].input_dim()
    }

    /// The hidden width of the top layer.
    pub fn hidden_dim(&self) -> usize {
        self.layers[self.layers.len() - 1].hidden_dim()
    }

    /// Switches every layer between training and evaluation behaviour.
    pub fn set_training(&mut self, training: bool) {
        for c in &mut self.layers {
            c.set_training(training);
        }
    }

    /// Gives a finished pass's buffers back for reuse by later passes. Optional, but a
    /// training loop that recycles its caches allocates nothing large after the first step
    /// (fresh buffers cost page faults: ~15% of a step at H = 128).
    pub fn recycle(&mut self, cache: SeqCache<F>) {
        self.pool.put(cache.x);
        for lc in cache.layers {
            self.pool.put(lc.xp);
            self.pool.put(lc.states);
            self.pool.put(lc.cache);
        }
    }

    /// Gives a backward pass's result buffers (input gradient and step gradients) back.
    pub fn recycle_grads(&mut self, grads: Backward<F>) {
        if let Some(dx) = grads.dx {
            self.pool.put(dx);
        }
        for sg in grads.step_grads {
            self.pool.put(sg.data);
        }
    }

    /// Zero initial states for a batch, one per layer.
    pub fn zero_states(&self, batch: usize) -> Result<Vec<State<F>>> {
        self.layers.iter().map(|c| State::zeros(c.state_names(), batch, c.hidden_dim())).collect()
    }

    /// Runs the stack over `x` `[time, batch, input_dim]` from `init` (one state per layer;
    /// zeros if `None`).
    ///
    /// # Errors
    /// [`Error::Shape`] for an input of the wrong width, zero time steps or zero batch, or
    /// initial states of the wrong number, batch, width or cell type (part names);
    /// [`Error::NonFinite`] for a NaN or infinite input.
    pub fn forward(&mut self, x: ArrayView3<'_, F>, init: Option<&[State<F>]>) -> Result<Forward<F>> {
        let op = "Recurrent::forward";
        let (t_len, batch, i) = x.dim();
        if t_len == 0 || batch == 0 {
            return Err(Error::shape(op, "input [time >= 1, batch >= 1, input_dim]", format!("{:?}", x.shape())));
        }
        if i != self.input_dim() {
            return Err(Error::shape(
                op,
                format!(
                    "input [time, batch, {}] for a {} with input_dim {}",
                    self.input_dim(),
                    self.layers[0].name(),
                    self.input_dim()
                ),
                format!("{:?}", x.shape()),
            ));
        }
        rnnlab_core::validate::finite_array(op, "input x", &x)?;
        if let Some(init) = init {
            self.check_states(op, "initial state", init, batch)?;
        }
        let stamp = self.stamp(op, batch)?;
        // Buffers from `take` are overwritten completely before they are read (the `Cell`
        // contract: `project_input`, `step` and `step_backward` write all of their outputs).
        let mut x2 = self.pool.take(t_len * batch, i)?;
        match (x2.as_slice_mut(), x.as_slice()) {
            (Some(dst), Some(src)) if dst.len() == src.len() => dst.copy_from_slice(src),
            _ => {
                for (mut dst, src) in x2.axis_chunks_iter_mut(Axis(0), batch).zip(x.outer_iter()) {
                    dst.assign(&src);
                }
            }
        }
        let mut layers: Vec<LayerCache<F>> = Vec::with_capacity(self.layers.len());
        for (l, cell) in self.layers.iter_mut().enumerate() {
            let sw = cell.state_width();
            let mut xp = self.pool.take(t_len * batch, cell.proj_dim())?;
            {
                let input = match layers.last() {
                    None => x2.view(),
                    Some(below) => below.states.slice(s![batch.., ..cell.input_dim()]),
                };
                cell.project_input(input, xp.view_mut())?;
            }
            let mut states = self.pool.take((t_len + 1) * batch, sw)?;
            match init {
                Some(init) => states.slice_mut(s![..batch, ..]).assign(&init[l].data()),
                None => states.slice_mut(s![..batch, ..]).fill(F::zero()),
            }
            let mut cache = self.pool.take(t_len, cell.cache_len(batch))?;
            let mut scratch = vec![F::zero(); cell.scratch_len(batch)];
            for t in 0..t_len {
                let (done, todo) = states.view_mut().split_at(Axis(0), (t + 1) * batch);
                let prev = done.slice_move(s![t * batch.., ..]);
                let next = todo.slice_move(s![..batch, ..]);
                let mut cache_row = cache.row_mut(t);
                let cache_t =
                    cache_row.as_slice_mut().ok_or_else(|| Error::shape(op, "contiguous cache", "strided"))?;
                let xp_t = xp.slice_mut(s![t * batch..(t + 1) * batch, ..]);
                cell.step(t, xp_t, prev.view(), next, cache_t, &mut scratch)?;
            }
            layers.push(LayerCache { xp, states, cache });
        }
        let top = &layers[layers.len() - 1];
        let h = self.hidden_dim();
        // h is the first `h` values of each state row: copied row slice by row slice (an
        // element iterator over the strided view was 0.7% of an LSTM H = 128 step).
        let mut out = Vec::with_capacity(t_len * batch * h);
        for row in top.states.slice(s![batch.., ..h]).rows() {
            match row.to_slice() {
                Some(r) => out.extend_from_slice(r),
                None => out.extend(row.iter().copied()),
            }
        }
        let outputs =
            Array3::from_shape_vec((t_len, batch, h), out).map_err(|e| Error::shape(op, "outputs", e.to_string()))?;
        let final_states = self
            .layers
            .iter()
            .zip(&layers)
            .map(|(c, lc)| {
                State::new(c.state_names(), c.hidden_dim(), lc.states.slice(s![t_len * batch.., ..]).to_owned())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Forward { outputs, final_states, cache: SeqCache { time: t_len, batch, stamp, x: x2, layers } })
    }

    /// Back-propagates through time from gradients on the top layer's outputs and/or on each
    /// layer's final state (`options.d_final`), adding ∂L/∂θ into every cell's parameter
    /// gradients, and returns ∂L/∂x, ∂L/∂(initial states) and the per-step ∂L/∂s_t.
    ///
    /// `options.truncate = Some(k)`: truncated BPTT in chunks of k steps — the state gradient does not
    /// flow from step jk back to step jk − 1 (j ≥ 1), which is the exact gradient of the graph
    /// with the state detached every k steps (PyTorch's `h.detach()` every k steps). Any
    /// `k ≥ T` is full BPTT, bit for bit.
    ///
    /// # Errors
    /// [`Error::Shape`] for gradients of the wrong shape or a cache from another stack,
    /// [`Error::Config`] for `k = 0`, [`Error::NonFinite`] for NaN/infinite gradients.
    pub fn backward(
        &mut self,
        cache: &SeqCache<F>,
        d_out: OutputGrad<'_, F>,
        options: BackwardOptions<'_, F>,
    ) -> Result<Backward<F>> {
        let op = "Recurrent::backward";
        let BackwardOptions { d_final, truncate, input_grad } = options;
        let (t_len, batch) = (cache.time, cache.batch);
        if truncate == Some(0) {
            return Err(Error::config(op, "truncation length k must be at least 1, got 0"));
        }
        self.check_stamp(op, cache)?;
        check_output_grad(op, d_out, t_len, batch, self.hidden_dim(), "hidden_dim")?;
        if let Some(d_final) = d_final {
            self.check_states(op, "final-state gradient", d_final, batch)?;
        }
        let n_layers = self.layers.len();
        let mut step_grads: Vec<Option<StepGrads<F>>> = vec![None; n_layers];
        let mut d_init: Vec<Option<State<F>>> = vec![None; n_layers];
        // ∂L/∂(this layer's outputs), [T·B, H], coming from the layer above.
        let mut from_above: Option<Array2<F>> = None;
        let mut dx_bottom = None;
        for l in (0..n_layers).rev() {
            let cell = &mut self.layers[l];
            let lc = &cache.layers[l];
            let (sw, h) = (cell.state_width(), cell.hidden_dim());
            if lc.states.shape() != [(t_len + 1) * batch, sw] || lc.xp.ncols() != cell.proj_dim() {
                return Err(Error::shape(
                    op,
                    format!("a cache made by this stack (layer {l})"),
                    format!("states {:?}", lc.states.shape()),
                ));
            }
            // Row block t of `dstates` is written (overwritten) by step t's `dprev`; the last
            // one is the final-state gradient.
            let mut dstates = self.pool.take((t_len + 1) * batch, sw)?;
            match d_final {
                Some(d_final) => dstates.slice_mut(s![t_len * batch.., ..]).assign(&d_final[l].data()),
                None => dstates.slice_mut(s![t_len * batch.., ..]).fill(F::zero()),
            }
            let mut dxp = self.pool.take(t_len * batch, cell.proj_dim())?;
            let mut drec = self.pool.take(t_len * batch, cell.rec_grad_dim())?;
            let mut scratch = vec![F::zero(); cell.scratch_len(batch)];
            for t in (0..t_len).rev() {
                let (mut done, mut todo) = dstates.view_mut().split_at(Axis(0), (t + 1) * batch);
                let mut dnext = todo.slice_mut(s![..batch, ..h]);
                match (&from_above, d_out) {
                    (Some(g), _) => dnext += &g.slice(s![t * batch..(t + 1) * batch, ..]),
                    (None, OutputGrad::Every(g)) => dnext += &g.index_axis(Axis(0), t),
                    (None, OutputGrad::Last(g)) if t + 1 == t_len => dnext += &g,
                    _ => {}
                }
                let step = StepRefs {
                    t,
                    xp: lc.xp.slice(s![t * batch..(t + 1) * batch, ..]),
                    prev: lc.states.slice(s![t * batch..(t + 1) * batch, ..]),
                    next: lc.states.slice(s![(t + 1) * batch..(t + 2) * batch, ..]),
                    cache: lc.cache.row(t).to_slice().ok_or_else(|| Error::shape(op, "contiguous cache", "strided"))?,
                };
                let dprev = done.slice_mut(s![t * batch.., ..]);
                cell.step_backward(
                    step,
                    todo.slice(s![..batch, ..]),
                    dprev,
                    dxp.slice_mut(s![t * batch..(t + 1) * batch, ..]),
                    drec.slice_mut(s![t * batch..(t + 1) * batch, ..]),
                    &mut scratch,
                )?;
                if let Some(k) = truncate
                    && t % k == 0
                    && t > 0
                {
                    done.slice_mut(s![t * batch.., ..]).fill(F::zero());
                }
            }
            let input = if l == 0 {
                cache.x.view()
            } else {
                let below = &cache.layers[l - 1];
                below.states.slice(s![batch.., ..cell.input_dim()])
            };
            cell.accumulate_grads(SeqRefs {
                batch,
                x: input,
                prev: lc.states.slice(s![..t_len * batch, ..]),
                next: lc.states.slice(s![batch.., ..]),
                cache: lc.cache.view(),
                dxp: dxp.view(),
                drec: drec.view(),
            })?;
            let dx = if l > 0 || input_grad {
                let mut dx = self.pool.take(t_len * batch, cell.input_dim())?;
                cell.input_grad(dxp.view(), dx.view_mut())?;
                Some(dx)
            } else {
                None
            };
            self.pool.put(dxp);
            self.pool.put(drec);
            if let Some(used) = from_above.take() {
                self.pool.put(used);
            }
            d_init[l] = Some(State::new(cell.state_names(), h, dstates.slice(s![..batch, ..]).to_owned())?);
            let data = dstates
                .slice_move(s![batch.., ..])
                .into_shape_with_order((t_len, batch, sw))
                .map_err(|e| Error::shape(op, "step gradients", e.to_string()))?;
            step_grads[l] = Some(StepGrads { names: cell.state_names(), hidden_dim: h, data });
            if l == 0 {
                dx_bottom = dx;
            } else {
                from_above = dx;
            }
        }
        let i = self.input_dim();
        let dx = dx_bottom
            .map(|dx| dx.into_shape_with_order((t_len, batch, i)))
            .transpose()
            .map_err(|e| Error::shape(op, "input gradient", e.to_string()))?;
        Ok(Backward {
            dx,
            d_init: d_init.into_iter().flatten().collect(),
            step_grads: step_grads.into_iter().flatten().collect(),
        })
    }

    /// The stamp a forward pass of `batch` rows gives its cache; checks that every parameter
    /// is finite on the way (one pass over the parameters, for the fingerprint and the check).
    ///
    /// # Errors
    /// [`Error::NonFinite`] naming the first parameter holding a NaN or an infinity.
    fn stamp(&self, op: &str, batch: usize) -> Result<Stamp> {
        let layers = self
            .layers
            .iter()
            .map(|c| LayerStamp {
                name: c.name(),
                input_dim: c.input_dim(),
                hidden_dim: c.hidden_dim(),
                state_width: c.state_width(),
                proj_dim: c.proj_dim(),
                rec_grad_dim: c.rec_grad_dim(),
                cache_len: c.cache_len(batch),
            })
            .collect();
        Ok(Stamp { stack: self.id.0, layers, params: self.fingerprint(op)? })
    }

    /// A hash of every parameter value (names and bits, in visiting order), and `Err` if one is
    /// not finite. Four independent lanes over contiguous memory: about a nanosecond per value
    /// on one core, i.e. well under 1% of a training step (each value takes part in at least
    /// 2·time·batch multiply-adds of the forward pass alone).
    fn fingerprint(&self, op: &str) -> Result<u64> {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut lanes = [0xCBF2_9CE4_8422_2325u64; 4];
        let mut bad: Option<String> = None;
        self.visit_params(&mut |name, p| {
            if bad.is_some() {
                return;
            }
            for b in name.bytes() {
                lanes[0] = (lanes[0] ^ u64::from(b)).wrapping_mul(K);
            }
            let mut finite = true;
            let mut mix = |chunk: &[F]| {
                for quad in chunk.chunks(4) {
                    for (lane, v) in lanes.iter_mut().zip(quad) {
                        finite &= v.is_finite();
                        *lane = (*lane ^ v.as_f64().to_bits()).wrapping_mul(K);
                    }
                }
            };
            match p.value.as_slice_memory_order() {
                Some(values) => mix(values),
                None => mix(&p.value.iter().copied().collect::<Vec<_>>()),
            }
            if !finite {
                bad = Some(name.to_string());
            }
        });
        if let Some(name) = bad {
            return Err(Error::non_finite(op, format!("parameter {name} (NaN or infinite weights)")));
        }
        Ok(lanes.iter().fold(0u64, |h, &l| (h.rotate_left(17) ^ l).wrapping_mul(K)))
    }

    /// `Err(Shape)` unless `cache` was made by this stack, with its current layers and
    /// parameter values.
    pub(crate) fn check_stamp(&self, op: &str, cache: &SeqCache<F>) -> Result<()> {
        let stamp = self.stamp(op, cache.batch)?;
        let got = &cache.stamp;
        let describe = |s: &Stamp| {
            let layers: Vec<String> =
                s.layers.iter().map(|l| format!("{} {}→{}", l.name, l.input_dim, l.hidden_dim)).collect();
            format!("[{}]", layers.join(", "))
        };
        if got.layers != stamp.layers {
            return Err(Error::shape(
                op,
                format!("a cache of this stack's layers {}", describe(&stamp)),
                format!("a cache of layers {}", describe(got)),
            ));
        }
        if got.stack != stamp.stack {
            return Err(Error::shape(
                op,
                "a cache made by this stack's forward pass",
                "a cache of another stack (of the same layers)",
            ));
        }
        if got.params != stamp.params {
            return Err(Error::shape(
                op,
                "a cache made with the current parameter values",
                "a cache made before the parameters changed",
            ));
        }
        Ok(())
    }

    fn check_states(&self, op: &str, what: &str, states: &[State<F>], batch: usize) -> Result<()> {
        if states.len() != self.layers.len() {
            return Err(Error::shape(
                op,
                format!("{} {what}s (one per layer)", self.layers.len()),
                format!("{}", states.len()),
            ));
        }
        for (l, (c, st)) in self.layers.iter().zip(states).enumerate() {
            check_state(op, &format!("layer {l}"), what, c, st, batch)?;
        }
        Ok(())
    }
}

/// `Err` unless `st` is a state of `cell` (its parts) for `batch` rows, all finite; `whose`
/// names the layer (and direction) in messages.
pub(crate) fn check_state<F: Float, C: Cell<F>>(
    op: &str,
    whose: &str,
    what: &str,
    cell: &C,
    st: &State<F>,
    batch: usize,
) -> Result<()> {
    let names: Vec<&str> = st.names().iter().map(String::as_str).collect();
    if names != cell.state_names() {
        return Err(Error::shape(
            op,
            format!("{whose} {what} with parts {:?} (a {} state)", cell.state_names(), cell.name()),
            format!("parts {names:?}"),
        ));
    }
    rnnlab_core::validate::shape(
        op,
        &format!("{whose} {what} [batch, state_width]"),
        &[batch, cell.state_width()],
        st.data().shape(),
    )?;
    rnnlab_core::validate::finite_values(op, what, st.data().iter().copied())
}

/// `Err` unless the output gradient is `[time, batch, width]` (every step) or `[batch, width]`
/// (last step) and finite; `width_name` names the width in the message.
pub(crate) fn check_output_grad<F: Float>(
    op: &str,
    d_out: OutputGrad<'_, F>,
    t_len: usize,
    batch: usize,
    width: usize,
    width_name: &str,
) -> Result<()> {
    match d_out {
        OutputGrad::Every(g) => {
            let what = format!("output gradient [time, batch, {width_name}]");
            rnnlab_core::validate::shape(op, &what, &[t_len, batch, width], g.shape())?;
            rnnlab_core::validate::finite_array(op, "output gradient", &g)
        }
        OutputGrad::Last(g) => {
            let what = format!("last-step output gradient [batch, {width_name}]");
            rnnlab_core::validate::shape(op, &what, &[batch, width], g.shape())?;
            rnnlab_core::validate::finite_array(op, "output gradient", &g)
        }
        OutputGrad::None => Ok(()),
    }
}

impl<F: Float, C: Cell<F>> Parameterized<F> for Recurrent<F, C> {
    fn visit_params(&self, visitor: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        for (l, c) in self.layers.iter().enumerate() {
            visit_prefixed(&format!("layers.{l}"), c, visitor);
        }
    }

    fn visit_params_mut(&mut self, visitor: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        for (l, c) in self.layers.iter_mut().enumerate() {
            visit_prefixed_mut(&format!("layers.{l}"), c, visitor);
        }
    }
}

/// The result of [`Recurrent::truncated`].
#[derive(Clone, Debug, PartialEq)]
pub struct TruncatedRun<F> {
    /// Each layer's state after the last step.
    pub final_states: Vec<State<F>>,
    /// ‖∂L/∂h_t‖₂ over the batch for every step t, per layer (gradients within each chunk).
    pub h_grad_norms: Vec<Vec<f64>>,
    /// How many chunks were processed.
    pub n_chunks: usize,
}

impl<F: Float, C: Cell<F>> Recurrent<F, C> {
    /// Truncated BPTT over a long sequence in bounded memory: runs forward and backward on
    /// consecutive chunks of `k` steps, carrying the state forward (detached), and adds every
    /// chunk's parameter gradients into the cells. `output_grad(start, outputs)` receives a
    /// chunk's first step index and its outputs `[chunk_len, batch, hidden_dim]` and returns
    /// ∂L/∂outputs of the same shape (compute the chunk's loss there).
    ///
    /// Memory is that of one chunk, O(k·B·gates·H), whatever the sequence length. The
    /// gradients equal [`Recurrent::backward`] with `truncate = Some(k)` up to rounding (the
    /// weight-gradient sums are grouped per chunk); with `k ≥ T` they are identical.
    ///
    /// # Errors
    /// As [`Recurrent::forward`] and [`Recurrent::backward`]; [`Error::Config`] for `k = 0`.
    pub fn truncated(
        &mut self,
        x: ArrayView3<'_, F>,
        init: Option<&[State<F>]>,
        k: usize,
        mut output_grad: impl FnMut(usize, ArrayView3<'_, F>) -> Result<Array3<F>>,
    ) -> Result<TruncatedRun<F>> {
        let op = "Recurrent::truncated";
        rnnlab_core::validate::positive_size(op, "truncation length k", k)?;
        let t_len = x.shape()[0];
        if t_len == 0 {
            return Err(Error::shape(op, "input [time >= 1, batch, input_dim]", format!("{:?}", x.shape())));
        }
        let mut state: Option<Vec<State<F>>> = init.map(<[State<F>]>::to_vec);
        let mut norms = vec![Vec::with_capacity(t_len); self.layers.len()];
        let mut n_chunks = 0;
        for start in (0..t_len).step_by(k) {
            let end = (start + k).min(t_len);
            let fwd = self.forward(x.slice(s![start..end, .., ..]), state.as_deref())?;
            let g = output_grad(start, fwd.outputs.view())?;
            let bwd = self.backward(
                &fwd.cache,
                OutputGrad::Every(g.view()),
                BackwardOptions::default().without_input_grad(),
            )?;
            for (n, sg) in norms.iter_mut().zip(&bwd.step_grads) {
                n.extend(sg.norms(0));
            }
            state = Some(fwd.final_states.clone());
            self.recycle(fwd.cache);
            self.recycle_grads(bwd);
            n_chunks += 1;
        }
        let final_states = state.ok_or_else(|| Error::config(op, "no chunk was run"))?;
        Ok(TruncatedRun { final_states, h_grad_norms: norms, n_chunks })
    }
}
