//! Bidirectional recurrent stacks with PyTorch's semantics (`nn.LSTM(bidirectional=True)`):
//! per layer a forward and a reverse direction of one cell type, their outputs concatenated.

use ndarray::{Array3, ArrayView3, s};
use rnnlab_core::{
    Cell, Error, Float, ParamView, ParamViewMut, Parameterized, Result, State, StepRefs, visit_prefixed,
    visit_prefixed_mut,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::pool::Pool;
use super::recurrent::{
    Backward, BackwardOptions, OutputGrad, Recurrent, SeqCache, StepGrads, TruncatedRun, check_output_grad, check_state,
};

/// One of the two directions of a bidirectional layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Reads x_0, x_1, …, x_{T−1}; its state at time t has seen x_0..=x_t.
    Forward,
    /// Reads x_{T−1}, …, x_0; its state at time t has seen x_t..=x_{T−1}.
    Reverse,
}

impl Direction {
    /// Both directions, forward first.
    pub const BOTH: [Direction; 2] = [Direction::Forward, Direction::Reverse];

    /// The position of layer `l`'s entry of this direction in the flat per-direction lists
    /// (`init`, [`BiForward::final_states`], [`BiBackward::d_init`],
    /// [`BiBackward::step_grads`]): `2l` forward, `2l + 1` reverse — PyTorch's order of the
    /// rows of `h_0` / `h_n`.
    pub fn index(self, l: usize) -> usize {
        2 * l + usize::from(self == Direction::Reverse)
    }
}

/// A stack of `n_layers` bidirectional recurrent layers of one cell type, unrolled over time,
/// with PyTorch's semantics (`nn.LSTM(..., num_layers = L, bidirectional = True)`).
///
/// Layer l has a forward cell and a reverse cell of the same kind and widths. Layer 0 reads the
/// input `[time, batch, input_dim]`; layer l > 0 reads layer l − 1's concatenated outputs
/// `[h_fwd, h_rev]` (width 2·H). The output `[time, batch, 2·H]` holds the forward direction's
/// h_t in columns `0..H` and the reverse direction's h_t — which has seen x_t..x_{T−1} — in
/// `H..2H`: exactly PyTorch's `output`.
///
/// Per-direction lists (initial and final states, their gradients, the per-step telemetry) are
/// in PyTorch's order: layer 0 forward, layer 0 reverse, layer 1 forward, … (see
/// [`Direction::index`]). The reverse direction's final state is the one after it has read x_0,
/// as PyTorch's `h_n`.
///
/// Parameters are named `layers.{l}.{name}` (forward) and `layers.{l}.reverse.{name}`
/// (reverse), visited layer by layer, forward before reverse — PyTorch's `state_dict` order
/// (`layers.0.reverse.w_ih` is PyTorch's `weight_ih_l0_reverse`).
///
/// A cell with per-step behaviour of its own (batch norm's per-time-step statistics) sees the
/// reverse direction's steps in processing order: its step τ reads x_{T−1−τ}.
///
/// Truncated BPTT is refused: the reverse direction's state at time t depends on every later
/// input, so a chunk of the sequence cannot be run on its own. [`BackwardOptions::truncate`]
/// and [`Bidirectional::truncated`] return [`Error::Config`].
///
/// # Cost
/// Each direction of each layer is a one-layer [`Recurrent`]; the reverse one reads its input
/// through a time-reversed view. Besides the two directions' own work, a layer costs O(T·B·H)
/// copies: forward, the concatenation of the two outputs (T·B·2H values), and the layer's input
/// is kept in both directions' caches (2·T·B·I values, where a fused pass could keep it once);
/// backward, the sum of the two directions' input gradients (T·B·I adds) and the reversal of
/// the reverse direction's step gradients (T·B·state_width swaps). Small against the products,
/// O(T·B·gates·H·(I + H)).
///
/// # Examples
/// ```
/// use ndarray::Array3;
/// use rnnlab_cells::{Bidirectional, BackwardOptions, Direction, LstmConfig, OutputGrad};
/// let mut rng = rnnlab_core::seeded_rng(0);
/// let mut layer = || LstmConfig::new(3, 8).init::<f32>(&mut rng);
/// let (f0, r0) = (layer()?, layer()?);
/// let mut rng = rnnlab_core::seeded_rng(1);
/// let mut layer = || LstmConfig::new(16, 8).init::<f32>(&mut rng); // 16 = 2·H
/// let (f1, r1) = (layer()?, layer()?);
/// let mut bi = Bidirectional::new(vec![(f0, r0), (f1, r1)])?;
/// let x = Array3::<f32>::ones((5, 2, 3)); // [time, batch, input_dim]
/// let fwd = bi.forward(x.view(), None)?;
/// assert_eq!(fwd.outputs.shape(), &[5, 2, 16]); // [time, batch, 2·H]
/// assert_eq!(fwd.final_states.len(), 4); // (layer, direction) in PyTorch's order
/// let g = Array3::<f32>::ones((5, 2, 16));
/// let bwd = bi.backward(&fwd.cache, OutputGrad::Every(g.view()), BackwardOptions::default())?;
/// // ∂L/∂h_t of the bottom layer's reverse direction, in the original time order.
/// let norms = bwd.step_grads_of(0, Direction::Reverse).map(|g| g.norms(0));
/// assert_eq!(norms.map(|n| n.len()), Some(5));
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Bidirectional<F, C> {
    layers: Vec<BiLayer<F, C>>,
    /// Buffers of the concatenated outputs and gradients.
    pool: Pool<F>,
}

/// One layer: each direction a one-layer `Recurrent` of one cell.
#[derive(Clone, Debug, PartialEq)]
struct BiLayer<F, C> {
    fwd: Recurrent<F, C>,
    rev: Recurrent<F, C>,
}

impl<F: Float, C: Cell<F>> BiLayer<F, C> {
    fn rec(&self, dir: Direction) -> &Recurrent<F, C> {
        match dir {
            Direction::Forward => &self.fwd,
            Direction::Reverse => &self.rev,
        }
    }

    fn cell(&self, dir: Direction) -> &C {
        // Cannot fail: each direction is a `Recurrent` built by `Bidirectional::new` from one
        // cell, and a `Recurrent` never changes its number of layers.
        &self.rec(dir).layers()[0]
    }

    fn cells_mut(&mut self) -> (&mut C, &mut C) {
        // Cannot fail: as in `cell`.
        (&mut self.fwd.layers_mut()[0], &mut self.rev.layers_mut()[0])
    }
}

/// What [`Bidirectional::forward`] keeps for [`Bidirectional::backward`]: per layer, each
/// direction's [`SeqCache`] (the reverse one in its own, reversed, processing order).
#[derive(Clone, Debug)]
pub struct BiCache<F> {
    time: usize,
    batch: usize,
    layers: Vec<BiLayerCache<F>>,
}

#[derive(Clone, Debug)]
struct BiLayerCache<F> {
    fwd: SeqCache<F>,
    rev: SeqCache<F>,
}

impl<F: Float> BiCache<F> {
    /// The number of time steps.
    pub fn time(&self) -> usize {
        self.time
    }

    /// The batch size.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The number of layers.
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// The cache of layer `l`'s direction `dir` as a one-layer [`SeqCache`] (its layer 0), in
    /// that direction's processing order: step τ of the reverse direction read x_{T−1−τ}.
    /// `None` if there is no such layer.
    pub fn direction(&self, l: usize, dir: Direction) -> Option<&SeqCache<F>> {
        let lc = self.layers.get(l)?;
        Some(match dir {
            Direction::Forward => &lc.fwd,
            Direction::Reverse => &lc.rev,
        })
    }

    /// The buffers of the step of layer `l`'s direction `dir` that read x_t (`t` in the original
    /// time order), for [`Cell::jvp_state`] / [`Cell::vjp_state`] with that direction's cell
    /// ([`Bidirectional::cell`]). For the reverse direction this is its processing step
    /// τ = T − 1 − t (which [`StepRefs::t`] holds): `next` is its state at time t and `prev` its
    /// state at time t + 1 (the initial state for t = T − 1), so the products are with
    /// ∂s_t/∂s_{t+1}. `None` if there is no such layer or step.
    pub fn step_refs(&self, l: usize, dir: Direction, t: usize) -> Option<StepRefs<'_, F>> {
        if t >= self.time {
            return None;
        }
        let cache = self.direction(l, dir)?;
        match dir {
            Direction::Forward => cache.step_refs(0, t),
            Direction::Reverse => cache.step_refs(0, self.time - 1 - t),
        }
    }

    /// The number of cached values, all layers and directions together.
    pub fn len_values(&self) -> usize {
        self.layers.iter().map(|l| l.fwd.len_values() + l.rev.len_values()).sum()
    }
}

/// The result of [`Bidirectional::forward`].
#[derive(Clone, Debug)]
pub struct BiForward<F> {
    /// The top layer's outputs `[time, batch, 2·H]`: forward h_t in columns `0..H`, reverse
    /// h_t in `H..2H`.
    pub outputs: Array3<F>,
    /// The final state of each layer and direction, in [`Direction::index`] order; the reverse
    /// direction's is its state after reading x_0.
    pub final_states: Vec<State<F>>,
    /// The cache for [`Bidirectional::backward`].
    pub cache: BiCache<F>,
}

/// The result of [`Bidirectional::backward`]. Parameter gradients were added to the cells.
#[derive(Clone, Debug)]
pub struct BiBackward<F> {
    /// ∂L/∂x, `[time, batch, input_dim]` (`None` when not asked for).
    pub dx: Option<Array3<F>>,
    /// ∂L/∂(initial state) of each layer and direction, in [`Direction::index`] order.
    pub d_init: Vec<State<F>>,
    /// ∂L/∂s_t of each layer and direction, in [`Direction::index`] order, every one indexed in
    /// the ORIGINAL time order: step t of the reverse direction is its state after reading
    /// x_t (having seen x_t..x_{T−1}), whatever order it was computed in.
    pub step_grads: Vec<StepGrads<F>>,
}

impl<F: Float> BiBackward<F> {
    /// The per-step state gradients of layer `l`'s direction `dir` (original time order).
    pub fn step_grads_of(&self, l: usize, dir: Direction) -> Option<&StepGrads<F>> {
        self.step_grads.get(dir.index(l))
    }

    /// ∂L/∂(initial state) of layer `l`'s direction `dir`.
    pub fn d_init_of(&self, l: usize, dir: Direction) -> Option<&State<F>> {
        self.d_init.get(dir.index(l))
    }
}

impl<F: Float, C: Cell<F>> Bidirectional<F, C> {
    /// A stack from its layers' `(forward, reverse)` cells, bottom first.
    ///
    /// # Errors
    /// [`Error::Config`] for no layers or two directions of different kinds (cell names or
    /// state parts); [`Error::Shape`] if the two directions of a layer differ in input or
    /// hidden width, or layer l + 1's input width is not 2 · layer l's hidden width.
    pub fn new(layers: Vec<(C, C)>) -> Result<Self> {
        let op = "Bidirectional::new";
        if layers.is_empty() {
            return Err(Error::config(op, "n_layers must be at least 1, got 0"));
        }
        let mut below_h: Option<usize> = None;
        for (l, (f, r)) in layers.iter().enumerate() {
            if f.name() != r.name() || f.state_names() != r.state_names() {
                return Err(Error::config(
                    op,
                    format!(
                        "layer {l}: both directions must be the same kind of cell, got a forward {} {:?} \
                         and a reverse {} {:?}",
                        f.name(),
                        f.state_names(),
                        r.name(),
                        r.state_names()
                    ),
                ));
            }
            if r.hidden_dim() != f.hidden_dim() {
                return Err(Error::shape(
                    op,
                    format!("layer {l} reverse hidden_dim = forward hidden_dim = {}", f.hidden_dim()),
                    format!("{}", r.hidden_dim()),
                ));
            }
            if r.input_dim() != f.input_dim() {
                return Err(Error::shape(
                    op,
                    format!("layer {l} reverse input_dim = forward input_dim = {}", f.input_dim()),
                    format!("{}", r.input_dim()),
                ));
            }
            if let Some(h) = below_h
                && f.input_dim() != 2 * h
            {
                return Err(Error::shape(
                    op,
                    format!("layer {l} input_dim = 2 · layer {} hidden_dim = {}", l - 1, 2 * h),
                    format!("{}", f.input_dim()),
                ));
            }
            below_h = Some(f.hidden_dim());
        }
        let layers = layers
            .into_iter()
            .map(|(f, r)| Ok(BiLayer { fwd: Recurrent::new(vec![f])?, rev: Recurrent::new(vec![r])? }))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers, pool: Pool::default() })
    }

    /// The `(forward, reverse)` cells of each layer, bottom first.
    pub fn layers(&self) -> impl ExactSizeIterator<Item = (&C, &C)> + '_ {
        self.layers.iter().map(|l| (l.cell(Direction::Forward), l.cell(Direction::Reverse)))
    }

    /// The `(forward, reverse)` cells of each layer, mutable (e.g. to set weights).
    pub fn layers_mut(&mut self) -> impl ExactSizeIterator<Item = (&mut C, &mut C)> + '_ {
        self.layers.iter_mut().map(BiLayer::cells_mut)
    }

    /// Layer `l`'s cell of direction `dir`; `None` if there is no such layer.
    pub fn cell(&self, l: usize, dir: Direction) -> Option<&C> {
        self.layers.get(l).map(|layer| layer.cell(dir))
    }

    /// Layer `l`'s direction `dir` as the one-layer [`Recurrent`] that runs it (the reverse
    /// one over the time-reversed input): with [`BiCache::direction`] and that direction's
    /// step gradients in its processing order, it is what a unidirectional tool (the
    /// diagnostics) reads. `None` if there is no such layer.
    pub fn direction(&self, l: usize, dir: Direction) -> Option<&Recurrent<F, C>> {
        self.layers.get(l).map(|layer| layer.rec(dir))
    }

    /// The number of layers (each with two directions).
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// The input width of layer 0.
    pub fn input_dim(&self) -> usize {
        self.layers.first().map_or(0, |l| l.cell(Direction::Forward).input_dim())
    }

    /// The hidden width H of the top layer (of each direction).
    pub fn hidden_dim(&self) -> usize {
        self.layers.last().map_or(0, |l| l.cell(Direction::Forward).hidden_dim())
    }

    /// The output width, 2·H.
    pub fn output_dim(&self) -> usize {
        2 * self.hidden_dim()
    }

    /// Switches every cell between training and evaluation behaviour.
    pub fn set_training(&mut self, training: bool) {
        for l in &mut self.layers {
            l.fwd.set_training(training);
            l.rev.set_training(training);
        }
    }

    /// Gives a finished pass's buffers back for reuse by later passes (see
    /// [`Recurrent::recycle`]).
    pub fn recycle(&mut self, cache: BiCache<F>) {
        for (layer, lc) in self.layers.iter_mut().zip(cache.layers) {
            layer.fwd.recycle(lc.fwd);
            layer.rev.recycle(lc.rev);
        }
    }

    /// Gives a backward pass's result buffers (input gradient and step gradients) back.
    pub fn recycle_grads(&mut self, grads: BiBackward<F>) {
        if let Some(dx) = grads.dx {
            self.pool.put(dx);
        }
        for (k, sg) in grads.step_grads.into_iter().enumerate() {
            if let Some(layer) = self.layers.get_mut(k / 2) {
                let rec = if k % 2 == 0 { &mut layer.fwd } else { &mut layer.rev };
                rec.recycle_grads(Backward { dx: None, d_init: Vec::new(), step_grads: vec![sg] });
            }
        }
    }

    /// Zero initial states for a batch, one per layer and direction ([`Direction::index`]
    /// order).
    pub fn zero_states(&self, batch: usize) -> Result<Vec<State<F>>> {
        let mut states = Vec::with_capacity(2 * self.layers.len());
        for layer in &self.layers {
            for dir in Direction::BOTH {
                let c = layer.cell(dir);
                states.push(State::zeros(c.state_names(), batch, c.hidden_dim())?);
            }
        }
        Ok(states)
    }

    /// Runs the stack over `x` `[time, batch, input_dim]` from `init` (one state per layer and
    /// direction in [`Direction::index`] order: layer 0 forward, layer 0 reverse, layer 1
    /// forward, …; zeros if `None`). The reverse direction starts from its initial state at
    /// t = T − 1.
    ///
    /// # Errors
    /// [`Error::Shape`] for an input of the wrong width, zero time steps or zero batch, or
    /// initial states of the wrong number, batch, width or cell type (part names);
    /// [`Error::NonFinite`] for a NaN or infinite input or initial state.
    pub fn forward(&mut self, x: ArrayView3<'_, F>, init: Option<&[State<F>]>) -> Result<BiForward<F>> {
        let op = "Bidirectional::forward";
        let (t_len, batch, i) = x.dim();
        if t_len == 0 || batch == 0 {
            return Err(Error::shape(op, "input [time >= 1, batch >= 1, input_dim]", format!("{:?}", x.shape())));
        }
        if i != self.input_dim() {
            return Err(Error::shape(
                op,
                format!(
                    "input [time, batch, {}] for a bidirectional {} with input_dim {}",
                    self.input_dim(),
                    self.layers.first().map_or("cell", |l| l.cell(Direction::Forward).name()),
                    self.input_dim()
                ),
                format!("{:?}", x.shape()),
            ));
        }
        rnnlab_core::validate::finite_array(op, "input x", &x)?;
        if let Some(init) = init {
            self.check_states(op, "initial state", init, batch)?;
        }
        let mut caches = Vec::with_capacity(self.layers.len());
        let mut final_states = Vec::with_capacity(2 * self.layers.len());
        // The concatenated outputs of the layer below (the input of the current layer).
        let mut below: Option<Array3<F>> = None;
        for (l, layer) in self.layers.iter_mut().enumerate() {
            let input = match &below {
                None => x.view(),
                Some(b) => b.view(),
            };
            let (init_f, init_r) = match init {
                Some(s) => (
                    Some(one_state(op, s, Direction::Forward.index(l))?),
                    Some(one_state(op, s, Direction::Reverse.index(l))?),
                ),
                None => (None, None),
            };
            let fwd = layer.fwd.forward(input, init_f)?;
            // The reverse direction reads the time-reversed view; `Recurrent` copies its input
            // into its cache in any case, so the reversal costs nothing more.
            let rev = layer.rev.forward(input.slice(s![..;-1, .., ..]), init_r)?;
            let out = concat_directions(&mut self.pool, op, fwd.outputs.view(), rev.outputs.view())?;
            if let Some(used) = below.replace(out) {
                self.pool.put(used);
            }
            final_states.extend(fwd.final_states);
            final_states.extend(rev.final_states);
            caches.push(BiLayerCache { fwd: fwd.cache, rev: rev.cache });
        }
        let outputs = below.ok_or_else(|| Error::config(op, "n_layers must be at least 1, got 0"))?;
        Ok(BiForward { outputs, final_states, cache: BiCache { time: t_len, batch, layers: caches } })
    }

    /// Back-propagates through time in both directions from gradients on the top layer's
    /// outputs and/or on each layer's and direction's final state (`options.d_final`, one per
    /// layer and direction in [`Direction::index`] order), adding ∂L/∂θ into every cell's
    /// parameter gradients, and returns ∂L/∂x, ∂L/∂(initial states) and the per-step ∂L/∂s_t of
    /// every layer and direction, in the original time order.
    ///
    /// `d_out`: [`OutputGrad::Every`] is ∂L/∂outputs `[time, batch, 2·H]`;
    /// [`OutputGrad::Last`] `[batch, 2·H]` is the gradient on `outputs[T − 1]`, all 2·H columns,
    /// as PyTorch's `output[-1]` — whose reverse half is the reverse direction after a single
    /// step (it has seen only x_{T−1}). A loss that wants the reverse direction's summary of the
    /// whole sequence reads its final state (PyTorch's `h_n`) through `d_final`, or
    /// `outputs[0]`'s reverse half through `Every`.
    ///
    /// # Errors
    /// [`Error::Config`] for truncated BPTT (`options.truncate = Some(_)`: a bidirectional pass
    /// needs the whole sequence); [`Error::Shape`] for gradients of the wrong shape or number or
    /// a cache from another stack; [`Error::NonFinite`] for NaN/infinite gradients.
    pub fn backward(
        &mut self,
        cache: &BiCache<F>,
        d_out: OutputGrad<'_, F>,
        options: BackwardOptions<'_, F>,
    ) -> Result<BiBackward<F>> {
        let op = "Bidirectional::backward";
        let BackwardOptions { d_final, truncate, input_grad } = options;
        if let Some(k) = truncate {
            return Err(Error::config(
                op,
                format!(
                    "truncated BPTT (k = {k}) is not defined for a bidirectional stack: the reverse \
                     direction's state at time t depends on every later input, so the whole sequence is \
                     needed; use full BPTT (truncate = None)"
                ),
            ));
        }
        if cache.layers.len() != self.layers.len() {
            return Err(Error::shape(
                op,
                format!("a cache of {} bidirectional layers", self.layers.len()),
                format!("{}", cache.layers.len()),
            ));
        }
        // Every direction's cache checked against its stack before any gradient is added.
        for (layer, lc) in self.layers.iter().zip(&cache.layers) {
            layer.fwd.check_stamp(op, &lc.fwd)?;
            layer.rev.check_stamp(op, &lc.rev)?;
        }
        let (t_len, batch) = (cache.time, cache.batch);
        let out_dim = self.output_dim();
        check_output_grad(op, d_out, t_len, batch, out_dim, "2·hidden_dim")?;
        if let Some(d_final) = d_final {
            self.check_states(op, "final-state gradient", d_final, batch)?;
        }
        let n = self.layers.len();
        let mut d_init: Vec<Option<State<F>>> = vec![None; 2 * n];
        let mut step_grads: Vec<Option<StepGrads<F>>> = vec![None; 2 * n];
        // ∂L/∂(the current layer's outputs), [T, B, 2H], from the layer above.
        let mut from_above: Option<Array3<F>> = None;
        let mut dx_bottom = None;
        for l in (0..n).rev() {
            let (layer, lc) = match (self.layers.get_mut(l), cache.layers.get(l)) {
                (Some(layer), Some(lc)) => (layer, lc),
                // Cannot happen: l < n and both lists have n entries (checked above).
                _ => return Err(Error::shape(op, format!("layer {l} in the stack and the cache"), "none")),
            };
            let h = layer.cell(Direction::Forward).hidden_dim();
            let need_dx = l > 0 || input_grad;
            let mut opts_f = BackwardOptions { d_final: None, truncate: None, input_grad: need_dx };
            let mut opts_r = opts_f;
            if let Some(d) = d_final {
                opts_f.d_final = Some(one_state(op, d, Direction::Forward.index(l))?);
                opts_r.d_final = Some(one_state(op, d, Direction::Reverse.index(l))?);
            }
            // Each direction's output gradient in its own processing order: the reverse half
            // through a time-reversed view (no copy).
            let (bf, br) = match (&from_above, d_out) {
                (Some(g), _) => {
                    rnnlab_core::validate::shape(
                        op,
                        &format!("gradient of layer {l}'s outputs"),
                        &[t_len, batch, 2 * h],
                        g.shape(),
                    )?;
                    let bf = layer.fwd.backward(&lc.fwd, OutputGrad::Every(g.slice(s![.., .., ..h])), opts_f)?;
                    let br = layer.rev.backward(&lc.rev, OutputGrad::Every(g.slice(s![..;-1, .., h..])), opts_r)?;
                    (bf, br)
                }
                (None, OutputGrad::Every(g)) => {
                    // Shape checked above: [T, B, 2H] with H this (top) layer's width.
                    let bf = layer.fwd.backward(&lc.fwd, OutputGrad::Every(g.slice(s![.., .., ..h])), opts_f)?;
                    let br = layer.rev.backward(&lc.rev, OutputGrad::Every(g.slice(s![..;-1, .., h..])), opts_r)?;
                    (bf, br)
                }
                (None, OutputGrad::Last(g)) => {
                    // outputs[T − 1]'s reverse half is the reverse direction's first step.
                    let mut gr = self.pool.take(t_len * batch, h)?;
                    gr.fill(F::zero());
                    gr.slice_mut(s![..batch, ..]).assign(&g.slice(s![.., h..]));
                    let gr = gr
                        .into_shape_with_order((t_len, batch, h))
                        .map_err(|e| Error::shape(op, "reverse output gradient", e.to_string()))?;
                    let bf = layer.fwd.backward(&lc.fwd, OutputGrad::Last(g.slice(s![.., ..h])), opts_f)?;
                    let br = layer.rev.backward(&lc.rev, OutputGrad::Every(gr.view()), opts_r)?;
                    self.pool.put(gr);
                    (bf, br)
                }
                (None, OutputGrad::None) => {
                    let bf = layer.fwd.backward(&lc.fwd, OutputGrad::None, opts_f)?;
                    let br = layer.rev.backward(&lc.rev, OutputGrad::None, opts_r)?;
                    (bf, br)
                }
            };
            if let Some(used) = from_above.take() {
                self.pool.put(used);
            }
            let Backward { dx: dx_f, d_init: di_f, step_grads: sg_f } = bf;
            let Backward { dx: dx_r, d_init: di_r, step_grads: mut sg_r } = br;
            for sg in &mut sg_r {
                sg.reverse_time();
            }
            // In range: both lists have 2n entries and l < n.
            d_init[Direction::Forward.index(l)] = di_f.into_iter().next();
            d_init[Direction::Reverse.index(l)] = di_r.into_iter().next();
            step_grads[Direction::Forward.index(l)] = sg_f.into_iter().next();
            step_grads[Direction::Reverse.index(l)] = sg_r.into_iter().next();
            // ∂L/∂(this layer's input): the forward direction's plus the reverse direction's
            // back in the original time order.
            let dx = match (dx_f, dx_r) {
                (Some(mut a), Some(b)) => {
                    rnnlab_core::validate::shape(op, "reverse input gradient", a.shape(), b.shape())?;
                    a += &b.slice(s![..;-1, .., ..]);
                    layer.rev.recycle_grads(Backward { dx: Some(b), d_init: Vec::new(), step_grads: Vec::new() });
                    Some(a)
                }
                (None, None) if !need_dx => None,
                // Cannot happen: `Recurrent::backward` returns ∂L/∂x exactly when asked, and both
                // directions were asked the same (`need_dx`). An error rather than a silent
                // `None`, which would hand the layer below the top layer's output gradient.
                _ => {
                    return Err(Error::shape(
                        op,
                        format!("input gradients of both directions of layer {l}"),
                        "one or none",
                    ));
                }
            };
            if l == 0 {
                dx_bottom = dx;
            } else {
                from_above = dx;
            }
        }
        Ok(BiBackward {
            dx: dx_bottom,
            d_init: d_init.into_iter().flatten().collect(),
            step_grads: step_grads.into_iter().flatten().collect(),
        })
    }

    /// Refuses: truncated BPTT is not defined for a bidirectional stack (the reverse
    /// direction's state at time t depends on every later input). Present so that code driving
    /// [`Recurrent::truncated`] gets a clear error rather than a missing method.
    ///
    /// # Errors
    /// Always [`Error::Config`].
    pub fn truncated(
        &mut self,
        _x: ArrayView3<'_, F>,
        _init: Option<&[State<F>]>,
        k: usize,
        _output_grad: impl FnMut(usize, ArrayView3<'_, F>) -> Result<Array3<F>>,
    ) -> Result<TruncatedRun<F>> {
        Err(Error::config(
            "Bidirectional::truncated",
            format!(
                "truncated BPTT (k = {k}) is not defined for a bidirectional stack: the reverse direction's \
                 state at time t depends on every later input, so the whole sequence is needed"
            ),
        ))
    }

    fn check_states(&self, op: &str, what: &str, states: &[State<F>], batch: usize) -> Result<()> {
        if states.len() != 2 * self.layers.len() {
            return Err(Error::shape(
                op,
                format!(
                    "{} {what}s (one per layer and direction: layer 0 forward, layer 0 reverse, …)",
                    2 * self.layers.len()
                ),
                format!("{}", states.len()),
            ));
        }
        for (l, layer) in self.layers.iter().enumerate() {
            for dir in Direction::BOTH {
                let c = layer.cell(dir);
                let st = one_state(op, states, dir.index(l))?.first().ok_or_else(|| Error::shape(op, what, "none"))?;
                check_state(op, &format!("layer {l} {dir:?}"), what, c, st, batch)?;
            }
        }
        Ok(())
    }
}

/// `states[k..k + 1]`, or a shape error naming `op`.
fn one_state<'a, F>(op: &str, states: &'a [State<F>], k: usize) -> Result<&'a [State<F>]> {
    states
        .get(k..k + 1)
        .ok_or_else(|| Error::shape(op, format!("at least {} states", k + 1), format!("{}", states.len())))
}

/// `[fwd, rev reversed in time]` along the last axis, `[T, B, 2H]`, in a pooled buffer.
fn concat_directions<F: Float>(
    pool: &mut Pool<F>,
    op: &str,
    fwd: ArrayView3<'_, F>,
    rev: ArrayView3<'_, F>,
) -> Result<Array3<F>> {
    let (t_len, batch, h) = fwd.dim();
    rnnlab_core::validate::shape(op, "reverse outputs", &[t_len, batch, h], rev.shape())?;
    let mut out = pool
        .take(t_len * batch, 2 * h)?
        .into_shape_with_order((t_len, batch, 2 * h))
        .map_err(|e| Error::shape(op, "outputs", e.to_string()))?;
    out.slice_mut(s![.., .., ..h]).assign(&fwd);
    out.slice_mut(s![.., .., h..]).assign(&rev.slice(s![..;-1, .., ..]));
    Ok(out)
}

impl<F: Float, C: Cell<F>> Parameterized<F> for Bidirectional<F, C> {
    fn visit_params(&self, visitor: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        for (l, layer) in self.layers.iter().enumerate() {
            visit_prefixed(&format!("layers.{l}"), layer.cell(Direction::Forward), visitor);
            visit_prefixed(&format!("layers.{l}.reverse"), layer.cell(Direction::Reverse), visitor);
        }
    }

    fn visit_params_mut(&mut self, visitor: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        for (l, layer) in self.layers.iter_mut().enumerate() {
            let (f, r) = layer.cells_mut();
            visit_prefixed_mut(&format!("layers.{l}"), f, visitor);
            visit_prefixed_mut(&format!("layers.{l}.reverse"), r, visitor);
        }
    }
}

/// The serialised form: `{"layers": [{"forward": cell, "reverse": cell}, …]}`.
#[derive(Serialize)]
struct LayerRef<'a, C> {
    forward: &'a C,
    reverse: &'a C,
}

#[derive(Deserialize)]
struct LayerOwned<C> {
    forward: C,
    reverse: C,
}

#[derive(Serialize)]
struct ReprRef<'a, C> {
    layers: Vec<LayerRef<'a, C>>,
}

#[derive(Deserialize)]
struct ReprOwned<C> {
    layers: Vec<LayerOwned<C>>,
}

impl<F: Float, C: Cell<F> + Serialize> Serialize for Bidirectional<F, C> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let layers = self
            .layers
            .iter()
            .map(|l| LayerRef { forward: l.cell(Direction::Forward), reverse: l.cell(Direction::Reverse) })
            .collect();
        ReprRef { layers }.serialize(serializer)
    }
}

/// Deserialising checks the shapes as [`Bidirectional::new`] does.
impl<'de, F: Float, C: Cell<F> + Deserialize<'de>> Deserialize<'de> for Bidirectional<F, C> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let repr = ReprOwned::<C>::deserialize(deserializer)?;
        Self::new(repr.layers.into_iter().map(|l| (l.forward, l.reverse)).collect()).map_err(serde::de::Error::custom)
    }
}
