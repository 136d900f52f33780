//! [`ModelConfig`] and [`SeqModel`]: a stack of recurrent layers of one cell kind and a linear
//! read-out, trained with one of the [`LossKind`]s.

use ndarray::{Array1, Array3, ArrayD, ArrayView3, Axis, s};
use rnnlab_cells::{Backward, BackwardOptions, Bidirectional, GruVariant, Linear, LinearConfig, OutputGrad, Recurrent};
use rnnlab_core::{
    Cell, Error, Float, Layer, ParamView, ParamViewMut, Parameterized, Result, Rng, State, limits, seeded_rng,
    validate, visit_prefixed, visit_prefixed_mut,
};
use rnnlab_init::Init;
use rnnlab_tasks::{Batch, Targets, Task};
use serde::{Deserialize, Serialize};

use crate::{AnyCell, CellConfig, LossKind, LossValue, Stack, StackForward, mse, softmax_cross_entropy};

/// How the linear read-out `head` is initialised; defaults are [`LinearConfig`]'s
/// (Xavier-uniform weight, zero bias).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct ReadoutConfig {
    /// Initialiser of `head.weight` `[output_dim, hidden_dim]`.
    pub weight_init: Init,
    /// Initialiser of `head.bias` `[output_dim]`.
    pub bias_init: Init,
}
rnnlab_core::serde_map_only!(ReadoutConfig);

impl Default for ReadoutConfig {
    fn default() -> Self {
        let c = LinearConfig::new(1, 1);
        Self { weight_init: c.weight_init, bias_init: c.bias_init }
    }
}

fn one() -> usize {
    1
}

/// A whole sequence model as data: one JSON file per model, and a grid is a list of them.
///
/// ```json
/// {"input_dim": 2, "output_dim": 1, "hidden_dim": 64, "n_layers": 1,
///  "cell": {"kind": "lstm", "forget_bias": 1.0},
///  "readout": {"weight_init": {"xavier_uniform": {"gain": 1.0}}, "bias_init": "zeros"},
///  "loss": "mse_last", "seed": 0}
/// ```
///
/// `n_layers` (default 1), `readout` (default [`ReadoutConfig::default`]) and `seed` (default
/// 0, the seed of the parameter draws) may be omitted; unknown fields are rejected.
/// Normalisation is the cell's optional `norm` field (`rnnlab-cells`' `NormConfig`).
///
/// # Examples
/// ```
/// use rnnlab_train::{CellConfig, LossKind, ModelConfig};
/// let cfg = ModelConfig::new(2, 16, 1, CellConfig::lstm(), LossKind::MseLast).with_n_layers(2);
/// let model = cfg.build::<f32>()?;
/// assert_eq!(model.param_names()[0], "rnn.layers.0.w_ih");
/// # use rnnlab_core::Parameterized;
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct ModelConfig {
    /// Features per input step.
    pub input_dim: usize,
    /// Regression outputs or number of classes.
    pub output_dim: usize,
    /// Width of every recurrent layer.
    pub hidden_dim: usize,
    /// Number of stacked recurrent layers.
    #[serde(default = "one")]
    pub n_layers: usize,
    /// Both directions per layer, as PyTorch's `bidirectional=True` (default false): each layer
    /// has a forward and a reverse cell, layer l > 0 reads both directions' outputs (width 2H),
    /// and the read-out reads `[h_fwd, h_rev]` (width 2H) at the last step (PyTorch's
    /// `output[-1]`) or at every step.
    #[serde(default)]
    pub bidirectional: bool,
    /// The cell kind and its initialisation.
    pub cell: CellConfig,
    /// The read-out's initialisation.
    #[serde(default)]
    pub readout: ReadoutConfig,
    /// The loss, which also says where the read-out is applied.
    pub loss: LossKind,
    /// Seed of the parameter draws.
    #[serde(default)]
    pub seed: u64,
}
rnnlab_core::serde_map_only!(ModelConfig);

impl ModelConfig {
    /// A one-layer model with the default read-out and seed 0.
    pub fn new(input_dim: usize, hidden_dim: usize, output_dim: usize, cell: CellConfig, loss: LossKind) -> Self {
        Self {
            input_dim,
            output_dim,
            hidden_dim,
            n_layers: 1,
            bidirectional: false,
            cell,
            readout: ReadoutConfig::default(),
            loss,
            seed: 0,
        }
    }

    /// A one-layer model fitted to a task: its input and output widths and the loss of its
    /// targets ([`LossKind::for_targets`]).
    pub fn for_task(task: &impl Task, hidden_dim: usize, cell: CellConfig) -> Self {
        Self::new(task.input_dim(), hidden_dim, task.output_dim(), cell, LossKind::for_targets(task.target_kind()))
    }

    /// Sets the number of layers.
    pub fn with_n_layers(mut self, n_layers: usize) -> Self {
        self.n_layers = n_layers;
        self
    }

    /// Makes every layer bidirectional.
    pub fn with_bidirectional(mut self, bidirectional: bool) -> Self {
        self.bidirectional = bidirectional;
        self
    }

    /// Sets the read-out's initialisation.
    pub fn with_readout(mut self, readout: ReadoutConfig) -> Self {
        self.readout = readout;
        self
    }

    /// Sets the seed of the parameter draws.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// What the weights of this model mean, without initialisation, seed or loss: the cell kind
    /// (with the RNN's activation or the GRU's variant), the layers and the widths, e.g.
    /// `"lstm, 2 layers, 2 → 64 → 1"`. Weights load only into a model of the same architecture.
    pub fn architecture(&self) -> String {
        let cell = match &self.cell {
            CellConfig::Rnn(s) => format!("rnn({})", s.activation),
            CellConfig::Lstm(_) => "lstm".to_string(),
            CellConfig::Gru(s) => {
                format!("gru({})", if s.variant == GruVariant::ResetAfter { "reset_after" } else { "reset_before" })
            }
            CellConfig::Custom(c) => format!("custom({})", c.name),
        };
        let cell = format!("{cell}{}", self.cell.norm_tag());
        let bi = if self.bidirectional { "bidirectional " } else { "" };
        format!("{cell}, {} {bi}layers, {} → {} → {}", self.n_layers, self.input_dim, self.hidden_dim, self.output_dim)
    }

    /// Checks sizes, the cell and the read-out.
    ///
    /// Sizes against [`limits`], before anything is allocated: `input_dim`, `hidden_dim` and
    /// `output_dim` in `1..=MAX_DIM`, `n_layers` in `1..=MAX_LAYERS`, each layer's `w_ih` and
    /// `w_hh` (`[gates·hidden_dim, width]`), all layers' weights together, the read-out
    /// `[output_dim, width]` and batch norm's running statistics `[time_steps,
    /// gates·hidden_dim]` within `MAX_ELEMENTS`, each error naming the field to change.
    ///
    /// # Errors
    /// [`Error::Config`] for a size that is 0 or over its limit, as [`CellConfig::validate`]
    /// (under `cell.`), or for an invalid read-out initialiser (under `readout.`).
    pub fn validate(&self) -> Result<()> {
        const OP: &str = "ModelConfig";
        limits::size(OP, "input_dim", self.input_dim, limits::MAX_DIM)?;
        limits::size(OP, "output_dim", self.output_dim, limits::MAX_DIM)?;
        limits::size(OP, "hidden_dim", self.hidden_dim, limits::MAX_DIM)?;
        limits::size(OP, "n_layers", self.n_layers, limits::MAX_LAYERS)?;
        let gates = self.cell.gates();
        let width = self.input_dim.max(self.output_width());
        let field = if self.input_dim > self.output_width() { "input_dim" } else { "hidden_dim" };
        let per_layer = limits::checked_elements(OP, field, &[gates, self.hidden_dim, width])?;
        let directions = if self.bidirectional { 2 } else { 1 };
        limits::checked_elements(OP, "n_layers", &[self.n_layers, directions, 2, per_layer])?;
        limits::checked_elements(OP, "output_dim", &[self.output_dim, self.output_width()])?;
        if let Some(norm) = self.cell.norm() {
            limits::checked_elements(OP, "cell.norm.time_steps", &[norm.time_steps, gates, self.hidden_dim])?;
        }
        self.cell.validate().map_err(|e| e.within(OP, "cell"))?;
        self.readout.weight_init.validate().map_err(|e| e.within(OP, "readout.weight_init"))?;
        self.readout.bias_init.validate().map_err(|e| e.within(OP, "readout.bias_init"))
    }

    /// [`ModelConfig::validate`], then every value in the model's float `F`
    /// ([`CellConfig::validate_in`], [`Init::validate_in`]): an ε of 1e-50 or a forget bias of
    /// 1e39 passes in `f64` and is 0 or ∞ in `f32`.
    ///
    /// # Errors
    /// As [`ModelConfig::validate`], and [`Error::Config`] naming the field whose value is not
    /// usable in `F`.
    pub fn validate_in<F: Float>(&self) -> Result<()> {
        const OP: &str = "ModelConfig";
        self.validate()?;
        self.cell.validate_in::<F>().map_err(|e| e.within(OP, "cell"))?;
        self.readout.weight_init.validate_in::<F>().map_err(|e| e.within(OP, "readout.weight_init"))?;
        self.readout.bias_init.validate_in::<F>().map_err(|e| e.within(OP, "readout.bias_init"))
    }

    /// Validates, then draws the parameters from `seeded_rng(seed)`: layer 0, 1, … (each layer's
    /// forward cell, then its reverse cell when bidirectional), then the head.
    ///
    /// # Errors
    /// As [`ModelConfig::validate_in`].
    pub fn build<F: Float>(&self) -> Result<SeqModel<F>> {
        self.validate_in::<F>()?;
        let mut rng = seeded_rng(self.seed);
        let cells = (self.cell_inputs().into_iter())
            .map(|(_, input)| self.cell.init::<F>(input, self.hidden_dim, &mut rng))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| e.within("ModelConfig::build", "cell"))?;
        self.finish(cells, &mut rng)
    }

    /// Builds a model of a caller-made cell — your own [`Cell`], or a `SimpleCell` wrapped in
    /// [`rnnlab_core::Simple`] — for a config whose cell is [`CellConfig::Custom`]:
    /// `make_cell(input_dim, hidden_dim, rng)` makes layer 0, 1, … in turn from
    /// `seeded_rng(seed)`, then the head is drawn, as [`ModelConfig::build`] does.
    ///
    /// # Errors
    /// As [`ModelConfig::validate`]; [`Error::Config`] if the config's cell is not
    /// [`CellConfig::Custom`] or a made cell's [`Cell::name`] is not the config's name;
    /// [`Error::Shape`] if a made cell's widths are not the ones asked for; and whatever
    /// `make_cell` returns.
    ///
    /// # Examples
    /// ```
    /// use rnnlab_activations::ActivationKind;
    /// use rnnlab_cells::{RnnConfig, SimpleRnn};
    /// use rnnlab_core::Simple;
    /// use rnnlab_train::{CellConfig, LossKind, ModelConfig};
    /// let cfg = ModelConfig::new(2, 16, 1, CellConfig::custom("simple_rnn"), LossKind::MseLast);
    /// let model = cfg.build_with::<f32, _>(|i, h, rng| {
    ///     Ok(Simple::new(SimpleRnn::init(&RnnConfig::new(i, h), ActivationKind::Tanh, rng)?))
    /// })?;
    /// assert_eq!(model.rnn().cells()[0].inner().hidden_dim(), 16);
    /// # use rnnlab_core::SimpleCell;
    /// # Ok::<(), rnnlab_core::Error>(())
    /// ```
    pub fn build_with<F: Float, C: Cell<F>>(
        &self,
        mut make_cell: impl FnMut(usize, usize, &mut Rng) -> Result<C>,
    ) -> Result<SeqModel<F, C>> {
        const OP: &str = "ModelConfig::build_with";
        self.validate_in::<F>()?;
        let CellConfig::Custom(spec) = &self.cell else {
            return Err(Error::config(
                OP,
                format!(
                    "the cell is a built-in {} (use ModelConfig::build), not {{\"kind\": \"custom\"}}",
                    self.cell.kind()
                ),
            ));
        };
        let mut rng = seeded_rng(self.seed);
        let mut layers = Vec::with_capacity(self.n_layers);
        for (l, input) in self.cell_inputs() {
            let cell = make_cell(input, self.hidden_dim, &mut rng)?;
            if cell.name() != spec.name {
                return Err(Error::config(
                    OP,
                    format!(
                        "layer {l}: the config names custom cell {:?}, make_cell made a {:?}",
                        spec.name,
                        cell.name()
                    ),
                ));
            }
            if (cell.input_dim(), cell.hidden_dim()) != (input, self.hidden_dim) {
                return Err(Error::shape(
                    OP,
                    format!("layer {l}: a cell {input} → {}", self.hidden_dim),
                    format!("{} → {}", cell.input_dim(), cell.hidden_dim()),
                ));
            }
            layers.push(cell);
        }
        self.finish(layers, &mut rng)
    }

    /// The width of the read-out's input: H, or 2H when bidirectional.
    pub fn output_width(&self) -> usize {
        if self.bidirectional { 2 * self.hidden_dim } else { self.hidden_dim }
    }

    /// (layer, input width) of every cell in drawing order: per layer the forward cell, then
    /// the reverse one when bidirectional.
    fn cell_inputs(&self) -> Vec<(usize, usize)> {
        let directions = if self.bidirectional { 2 } else { 1 };
        (0..self.n_layers)
            .flat_map(|l| {
                let input = if l == 0 { self.input_dim } else { self.output_width() };
                std::iter::repeat_n((l, input), directions)
            })
            .collect()
    }

    fn finish<F: Float, C: Cell<F>>(&self, cells: Vec<C>, rng: &mut Rng) -> Result<SeqModel<F, C>> {
        let head = LinearConfig::new(self.output_width(), self.output_dim)
            .with_weight_init(self.readout.weight_init.clone())
            .with_bias_init(self.readout.bias_init.clone())
            .init::<F>(rng)
            .map_err(|e| e.within("ModelConfig::build", "readout"))?;
        let rnn = if self.bidirectional {
            let mut cells = cells.into_iter();
            let mut pairs = Vec::with_capacity(self.n_layers);
            while let (Some(f), Some(r)) = (cells.next(), cells.next()) {
                pairs.push((f, r));
            }
            Stack::Bidirectional(Bidirectional::new(pairs)?)
        } else {
            Stack::Unidirectional(Recurrent::new(cells)?)
        };
        Ok(SeqModel { config: self.clone(), rnn, head })
    }
}

/// What one [`SeqModel::loss_and_grad`] produced.
#[derive(Clone, Debug, PartialEq)]
pub struct LossAndGrad {
    /// The loss of the batch (f64).
    pub loss: f64,
    /// Whether the backward pass through the recurrent stack ran: it is skipped when the loss,
    /// its gradient with respect to the predictions or with respect to the top layer's h is
    /// not finite (an overflow that no clipping can repair; gradients are then partial).
    pub backward: bool,
    /// Per layer, per step t: ‖∂L/∂h_t‖₂ over the batch (when asked for and the backward ran).
    pub step_grad_norms: Option<Vec<Vec<f64>>>,
}

/// What [`SeqModel::loss_and_grads`] computes besides the parameter gradients.
#[derive(Clone, Copy, Debug)]
pub struct GradOptions<'a, F> {
    /// Initial states, one per layer (zeros if `None`).
    pub init: Option<&'a [State<F>]>,
    /// Compute ∂L/∂x (default false: a training step does not need it).
    pub input_grad: bool,
}

impl<F> Default for GradOptions<'_, F> {
    fn default() -> Self {
        Self { init: None, input_grad: false }
    }
}

/// Everything one [`SeqModel::loss_and_grads`] pass produced (parameter gradients were added
/// to the model).
#[derive(Clone, Debug)]
pub struct ModelGrads<F> {
    /// The loss of the batch (f64).
    pub loss: f64,
    /// The predictions, `[batch, output_dim]` or `[time, batch, output_dim]`.
    pub predictions: ArrayD<F>,
    /// The backward pass through the stack, `None` when it was skipped (a non-finite loss or
    /// loss gradient, as in [`LossAndGrad::backward`]): ∂L/∂x when asked for, ∂L/∂(initial
    /// state) of each layer, and the full per-step state gradients ∂L/∂s_t of each layer.
    pub backward: Option<Backward<F>>,
}

/// Rows per forward pass in [`SeqModel::evaluate`] and [`SeqModel::predict`].
pub const EVAL_CHUNK: usize = 256;

/// A sequence model: `rnn`, a stack of `n_layers` recurrent layers of one cell type `C`, and
/// `head`, a linear read-out applied to the top layer's h at the last step or at every step.
///
/// `C` is [`AnyCell`] for models built from a config ([`ModelConfig::build`]); a model of
/// your own cell comes from [`ModelConfig::build_with`].
///
/// Parameters: `rnn.layers.{l}.w_ih`, `rnn.layers.{l}.w_hh`, `rnn.layers.{l}.b_ih`,
/// `rnn.layers.{l}.b_hh` (PyTorch layout and gate order), `head.weight` `[output_dim,
/// hidden_dim]`, `head.bias` `[output_dim]`.
///
/// # Shapes
/// inputs `[time, batch, input_dim]`; predictions `[batch, output_dim]` (last-step losses) or
/// `[time, batch, output_dim]` ([`LossKind::CrossEntropyEvery`]).
///
/// # Examples
/// ```
/// use ndarray::Array3;
/// use rnnlab_tasks::{AddingConfig, Task};
/// use rnnlab_train::{CellConfig, LossKind, ModelConfig};
/// let mut model = ModelConfig::new(2, 8, 1, CellConfig::gru(), LossKind::MseLast).build::<f32>()?;
/// let y = model.predict(Array3::zeros((10, 4, 2)).view())?;
/// assert_eq!(y.shape(), &[4, 1]); // [batch, output_dim]
/// let batch = AddingConfig::new(10).build()?.sample::<f32>(4, &mut rnnlab_core::seeded_rng(0))?;
/// let step = model.loss_and_grad(&batch, true)?; // loss, gradients, ‖∂L/∂h_t‖ per step
/// assert!(step.loss.is_finite() && step.step_grad_norms.is_some());
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SeqModel<F: Float, C = AnyCell<F>> {
    config: ModelConfig,
    rnn: Stack<F, C>,
    head: Linear<F>,
}

/// One forward pass, the loss, and the backward pass when the loss allows it.
pub(crate) struct Pass<F> {
    pub(crate) fwd: StackForward<F>,
    pub(crate) loss: f64,
    pub(crate) predictions: ArrayD<F>,
    pub(crate) bwd: Option<Backward<F>>,
}

impl<F: Float, C: Cell<F>> SeqModel<F, C> {
    /// The configuration it was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The recurrent stack (unidirectional or bidirectional).
    pub fn rnn(&self) -> &Stack<F, C> {
        &self.rnn
    }

    /// The recurrent stack, mutable.
    pub fn rnn_mut(&mut self) -> &mut Stack<F, C> {
        &mut self.rnn
    }

    /// The read-out.
    pub fn head(&self) -> &Linear<F> {
        &self.head
    }

    /// The read-out, mutable (e.g. to set its weights).
    pub fn head_mut(&mut self) -> &mut Linear<F> {
        &mut self.head
    }

    /// Switches training/evaluation behaviour (normalised cells; a no-op for the others).
    pub fn set_training(&mut self, training: bool) {
        self.rnn.set_training(training);
    }

    /// The predictions (regression outputs or logits) for inputs `[time, batch, input_dim]`:
    /// `[batch, output_dim]`, or `[time, batch, output_dim]` for a loss on every step.
    /// Runs in chunks of [`EVAL_CHUNK`] sequences.
    ///
    /// # Errors
    /// As [`Recurrent::forward`]: wrong input width, empty input, non-finite input.
    pub fn predict(&mut self, x: ArrayView3<'_, F>) -> Result<ArrayD<F>> {
        self.predict_from(x, None)
    }

    /// [`SeqModel::predict`] from given initial states, one per layer `[batch, state_width]`
    /// (zeros if `None`); build them with [`State::from_parts`] or take a previous run's
    /// final states.
    ///
    /// # Errors
    /// As [`SeqModel::predict`], and [`Error::Shape`] for initial states of the wrong number,
    /// batch, width or parts.
    pub fn predict_from(&mut self, x: ArrayView3<'_, F>, init: Option<&[State<F>]>) -> Result<ArrayD<F>> {
        let (t, b, _) = x.dim();
        let o = self.config.output_dim;
        let every = self.config.loss.every_step();
        let mut out = if every { ArrayD::zeros(vec![t, b, o]) } else { ArrayD::zeros(vec![b, o]) };
        for start in (0..b.max(1)).step_by(EVAL_CHUNK) {
            let end = (start + EVAL_CHUNK).min(b);
            let chunk_init: Option<Vec<State<F>>> = init
                .map(|states| states.iter().map(|st| st.rows(start..end)).collect::<Result<Vec<_>>>())
                .transpose()?;
            let fwd = self.rnn.forward(x.slice(s![.., start..end, ..]), chunk_init.as_deref())?;
            let (ft, fb, h) = fwd.outputs.dim();
            if every {
                let flat = fwd.outputs.view().into_shape_with_order((ft * fb, h)).map_err(shape_err)?;
                let y = self.head.apply(flat)?;
                let y = y.into_shape_with_order((ft, fb, o)).map_err(shape_err)?;
                out.slice_mut(s![.., start..end, ..]).assign(&y);
            } else {
                let y = self.head.apply(fwd.outputs.index_axis(Axis(0), ft - 1))?;
                out.slice_mut(s![start..end, ..]).assign(&y);
            }
            self.rnn.recycle(fwd.cache);
        }
        Ok(out)
    }

    /// The loss and the accuracy ([`Targets::accuracy`]) of the model on `batch`, without
    /// touching any gradient. Runs in chunks of [`EVAL_CHUNK`] sequences.
    ///
    /// # Errors
    /// As [`SeqModel::predict`], and [`Error::Config`] / [`Error::Shape`] for targets that do
    /// not fit the loss or the batch.
    pub fn evaluate(&mut self, batch: &Batch<F>) -> Result<(f64, f64)> {
        let pred = self.predict(batch.inputs.view())?;
        let loss = self.loss_of(&pred, &batch.targets)?.loss;
        let accuracy = batch.targets.accuracy(pred.view())?;
        Ok((loss, accuracy))
    }

    /// One training pass: forward, loss, and — if the loss is finite — backward, *adding*
    /// ∂L/∂θ into every gradient (zero them first). ∂L/∂x is not computed; the unroller's
    /// buffers are recycled. With `telemetry` the per-step ‖∂L/∂h_t‖ of each layer is returned.
    ///
    /// # Errors
    /// As [`Recurrent::forward`] / [`Recurrent::backward`], and [`Error::Config`] /
    /// [`Error::Shape`] for targets that do not fit the loss or the batch.
    pub fn loss_and_grad(&mut self, batch: &Batch<F>, telemetry: bool) -> Result<LossAndGrad> {
        let pass = self.pass("SeqModel::loss_and_grad", batch, GradOptions::default())?;
        let Pass { fwd, loss, bwd, .. } = pass;
        self.rnn.recycle(fwd.cache);
        let Some(bwd) = bwd else {
            return Ok(LossAndGrad { loss, backward: false, step_grad_norms: None });
        };
        let step_grad_norms = telemetry.then(|| bwd.step_grads.iter().map(|g| g.norms(0)).collect());
        self.rnn.recycle_grads(bwd);
        Ok(LossAndGrad { loss, backward: true, step_grad_norms })
    }

    /// One training pass that keeps everything: the loss, the predictions, and (if the loss is
    /// finite) the backward pass — ∂L/∂x if asked for, ∂L/∂(initial state) of each layer and
    /// the full per-step state gradients ∂L/∂s_t ([`rnnlab_cells::StepGrads`]) — while *adding* ∂L/∂θ into
    /// every gradient, like [`SeqModel::loss_and_grad`].
    ///
    /// # Errors
    /// As [`SeqModel::loss_and_grad`], and [`Error::Shape`] for initial states that do not fit.
    pub fn loss_and_grads(&mut self, batch: &Batch<F>, options: GradOptions<'_, F>) -> Result<ModelGrads<F>> {
        let Pass { fwd, loss, predictions, bwd } = self.pass("SeqModel::loss_and_grads", batch, options)?;
        self.rnn.recycle(fwd.cache);
        Ok(ModelGrads { loss, predictions, backward: bwd })
    }

    /// [`SeqModel::loss_and_grads`] without giving the buffers back: the caller gets the
    /// forward pass (with its cache, for Jacobian products) and must recycle what it keeps.
    pub(crate) fn pass(&mut self, op: &str, batch: &Batch<F>, options: GradOptions<'_, F>) -> Result<Pass<F>> {
        self.check_targets(op, batch)?;
        let fwd = self.rnn.forward(batch.inputs.view(), options.init)?;
        let (t, b, h) = fwd.outputs.dim();
        let every = self.config.loss.every_step();
        let head_in = if every {
            fwd.outputs.view().into_shape_with_order((t * b, h)).map_err(shape_err)?.to_owned()
        } else {
            fwd.outputs.index_axis(Axis(0), t - 1).to_owned()
        };
        let (pred, head_cache) = self.head.forward(head_in.view())?;
        let predictions = if every {
            pred.into_shape_with_order((t, b, self.config.output_dim)).map_err(shape_err)?.into_dyn()
        } else {
            pred.into_dyn()
        };
        let LossValue { loss, grad } = self.loss_of(&predictions, &batch.targets)?;
        if !loss.is_finite() || grad.iter().any(|g| !g.is_finite()) {
            return Ok(Pass { fwd, loss, predictions, bwd: None });
        }
        let dh = self.head.backward(&head_cache, grad.view())?;
        if dh.iter().any(|g| !g.is_finite()) {
            return Ok(Pass { fwd, loss, predictions, bwd: None });
        }
        let backward_options = BackwardOptions { input_grad: options.input_grad, ..BackwardOptions::default() };
        let bwd = if every {
            let dh: Array3<F> = dh.into_shape_with_order((t, b, h)).map_err(shape_err)?;
            self.rnn.backward(&fwd.cache, OutputGrad::Every(dh.view()), backward_options)?
        } else {
            self.rnn.backward(&fwd.cache, OutputGrad::Last(dh.view()), backward_options)?
        };
        Ok(Pass { fwd, loss, predictions, bwd: Some(bwd) })
    }

    /// The loss of predictions (`[batch, out]` or `[time, batch, out]`) against targets, with
    /// the gradient as `[rows, out]` (rows = batch or time · batch).
    fn loss_of(&self, pred: &ArrayD<F>, targets: &Targets<F>) -> Result<LossValue<F>> {
        const OP: &str = "SeqModel::loss";
        let o = self.config.output_dim;
        let rows = pred.len() / o.max(1);
        let flat = pred.view().into_shape_with_order((rows, o)).map_err(shape_err)?;
        match (self.config.loss, targets) {
            (LossKind::MseLast, Targets::Regression(y)) => mse(flat, y.view()),
            (LossKind::CrossEntropyLast, Targets::ClassLast(labels)) => softmax_cross_entropy(flat, labels.view()),
            (LossKind::CrossEntropyEvery, Targets::ClassEveryStep(labels)) => {
                validate::shape(OP, "labels [time, batch]", &pred.shape()[..2], labels.shape())?;
                let labels: Array1<usize> = labels.iter().copied().collect();
                softmax_cross_entropy(flat, labels.view())
            }
            (loss, t) => Err(Error::config(
                OP,
                format!("loss {loss:?} needs {:?} targets, got {:?}", loss.target_kind(), t.kind()),
            )),
        }
    }

    fn check_targets(&self, op: &str, batch: &Batch<F>) -> Result<()> {
        let (t, b) = (batch.n_steps(), batch.batch_size());
        match &batch.targets {
            Targets::Regression(y) => {
                validate::shape(op, "regression targets", &[b, self.config.output_dim], y.shape())
            }
            Targets::ClassLast(l) => validate::shape(op, "class labels", &[b], l.shape()),
            Targets::ClassEveryStep(l) => validate::shape(op, "per-step class labels", &[t, b], l.shape()),
        }
    }
}

fn shape_err(e: ndarray::ShapeError) -> Error {
    Error::shape("SeqModel", "a standard-layout array", e.to_string())
}

impl<F: Float, C: Cell<F>> Parameterized<F> for SeqModel<F, C> {
    fn visit_params(&self, visitor: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        visit_prefixed("rnn", &self.rnn, visitor);
        visit_prefixed("head", &self.head, visitor);
    }

    fn visit_params_mut(&mut self, visitor: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        visit_prefixed_mut("rnn", &mut self.rnn, visitor);
        visit_prefixed_mut("head", &mut self.head, visitor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Array3};
    use rand::Rng as _;
    use rnnlab_cells::{NormConfig, NormPlacement};
    use rnnlab_core::{GradCheck, NamedInput, check_fn};
    use rnnlab_tasks::{AddingConfig, CopyMemoryConfig, TemporalOrderConfig};

    use crate::GruSpec;

    fn randomise(model: &mut SeqModel<f64>, seed: u64) {
        let mut rng = seeded_rng(seed);
        model.visit_params_mut(&mut |_, mut p| p.value.mapv_inplace(|v| v + rng.random_range(-0.3..0.3)));
    }

    /// f64 central differences over every parameter of the whole model and loss.
    fn grad_check(cfg: ModelConfig, batch: Batch<f64>) {
        let mut model = cfg.build::<f64>().unwrap();
        randomise(&mut model, 5);
        let mut inputs: Vec<NamedInput> = Vec::new();
        let report = check_fn(&GradCheck::new(), &mut model, &mut inputs, |m, _| {
            let out = m.loss_and_grad(&batch, false)?;
            Ok((out.loss, vec![]))
        })
        .unwrap();
        // Batch statistics over 2–3 sequences make batch norm's differences noisier.
        let tol = if cfg.cell.norm().is_some() { 1e-5 } else { 1e-6 };
        assert!(report.max_rel_error() < tol, "{:?}{}/{:?}: {report}", cfg.cell.kind(), cfg.cell.norm_tag(), cfg.loss);
        assert_eq!(report.n_checked, model.n_params());
    }

    #[test]
    fn gradients_are_exact_for_every_loss_and_cell() {
        let adding = AddingConfig::new(6).build().unwrap();
        let copy = CopyMemoryConfig::new(2).with_n_copy(2).build().unwrap();
        let order = TemporalOrderConfig::new(10).build().unwrap();
        let cells = [
            CellConfig::rnn(),
            CellConfig::lstm(),
            CellConfig::from(GruSpec::new().with_variant(GruVariant::ResetBefore)),
        ];
        let ln = CellConfig::from(crate::LstmSpec::new().with_norm(NormConfig::layer(NormPlacement::Full)));
        let bn = CellConfig::from(crate::RnnSpec::new().with_norm(NormConfig::batch(NormPlacement::Full, 4)));
        let cells = [cells[0].clone(), cells[1].clone(), cells[2].clone(), ln, bn];
        for (i, cell) in cells.into_iter().enumerate() {
            let mut rng = seeded_rng(i as u64);
            grad_check(
                ModelConfig::for_task(&adding, 4, cell.clone()).with_n_layers(2),
                adding.sample(3, &mut rng).unwrap(),
            );
            grad_check(ModelConfig::for_task(&copy, 3, cell.clone()), copy.sample(2, &mut rng).unwrap());
            grad_check(ModelConfig::for_task(&order, 3, cell), order.sample(3, &mut rng).unwrap());
        }
    }

    #[test]
    fn bidirectional_models_have_exact_gradients() {
        let adding = AddingConfig::new(5).build().unwrap();
        let order = TemporalOrderConfig::new(10).build().unwrap();
        for (i, cell) in [CellConfig::lstm(), CellConfig::gru(), CellConfig::rnn()].into_iter().enumerate() {
            let mut rng = seeded_rng(40 + i as u64);
            let bi = |m: ModelConfig| m.with_n_layers(2).with_bidirectional(true);
            grad_check(bi(ModelConfig::for_task(&adding, 3, cell.clone())), adding.sample(2, &mut rng).unwrap());
            grad_check(bi(ModelConfig::for_task(&order, 3, cell)), order.sample(2, &mut rng).unwrap());
        }
    }

    #[test]
    fn bidirectional_names_shapes_and_weights_files() {
        let cfg = ModelConfig::new(2, 5, 3, CellConfig::lstm(), LossKind::CrossEntropyLast)
            .with_n_layers(2)
            .with_bidirectional(true);
        let m = cfg.build::<f32>().unwrap();
        let mut got = Vec::new();
        m.visit_params(&mut |n, p| got.push((n.to_string(), p.value.shape().to_vec())));
        assert_eq!(got[0], ("rnn.layers.0.w_ih".to_string(), vec![20, 2]));
        assert_eq!(got[4], ("rnn.layers.0.reverse.w_ih".to_string(), vec![20, 2]));
        assert_eq!(got[8], ("rnn.layers.1.w_ih".to_string(), vec![20, 10]), "layer 1 reads both directions");
        assert_eq!(got[16], ("head.weight".to_string(), vec![3, 10]));
        assert!(m.config().architecture().contains("bidirectional"));
        // The weights file under PyTorch's names, and back, bit for bit.
        let bytes = m.to_safetensors().unwrap();
        let file = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert!(file.names().contains(&"rnn.weight_hh_l1_reverse"));
        let mut other = cfg.clone().with_seed(9).build::<f32>().unwrap();
        assert_ne!(other, m);
        other.load_safetensors_bytes(&bytes).unwrap();
        assert_eq!(other.state_dict(), m.state_dict());
        // A unidirectional model's weights do not load into it, nor its into a unidirectional one.
        let uni = cfg.clone().with_bidirectional(false).build::<f32>().unwrap();
        let e = other.load_safetensors_bytes(&uni.to_safetensors().unwrap()).unwrap_err();
        assert!(matches!(e, Error::Format { .. }) && e.to_string().contains("bidirectional"), "{e}");
        let mut uni = uni;
        assert!(uni.load_safetensors_bytes(&bytes).is_err());
        // Predictions: the head reads [h_fwd, h_rev] at the last step.
        let x = ndarray::Array3::from_shape_fn((4, 2, 2), |(t, b, i)| (t + b + i) as f32 * 0.1);
        assert_eq!(other.clone().predict(x.view()).unwrap().shape(), &[2, 3]);
    }

    #[test]
    fn names_and_shapes_follow_pytorch_layout() {
        let m = ModelConfig::new(2, 5, 3, CellConfig::gru(), LossKind::CrossEntropyLast)
            .with_n_layers(2)
            .build::<f32>()
            .unwrap();
        let mut got = Vec::new();
        m.visit_params(&mut |n, p| got.push((n.to_string(), p.value.shape().to_vec())));
        let want: Vec<(String, Vec<usize>)> = [
            ("rnn.layers.0.w_ih", vec![15, 2]),
            ("rnn.layers.0.w_hh", vec![15, 5]),
            ("rnn.layers.0.b_ih", vec![15]),
            ("rnn.layers.0.b_hh", vec![15]),
            ("rnn.layers.1.w_ih", vec![15, 5]),
            ("rnn.layers.1.w_hh", vec![15, 5]),
            ("rnn.layers.1.b_ih", vec![15]),
            ("rnn.layers.1.b_hh", vec![15]),
            ("head.weight", vec![3, 5]),
            ("head.bias", vec![3]),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn build_is_deterministic_per_seed() {
        let cfg = ModelConfig::new(2, 4, 1, CellConfig::lstm(), LossKind::MseLast);
        assert_eq!(cfg.build::<f32>().unwrap(), cfg.build::<f32>().unwrap());
        assert_ne!(cfg.build::<f32>().unwrap(), cfg.clone().with_seed(1).build::<f32>().unwrap());
    }

    #[test]
    fn json_round_trip_with_defaults() {
        let json =
            r#"{"input_dim": 2, "output_dim": 1, "hidden_dim": 8, "cell": {"kind": "lstm"}, "loss": "mse_last"}"#;
        let cfg: ModelConfig = serde_json::from_str(json).unwrap();
        assert_eq!(cfg, ModelConfig::new(2, 8, 1, CellConfig::lstm(), LossKind::MseLast));
        let back: ModelConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
        assert!(serde_json::from_str::<ModelConfig>(&json.replace("\"loss\"", "\"layers\": 2, \"loss\"")).is_err());
    }

    #[test]
    fn validate_rejects_zero_sizes() {
        let ok = ModelConfig::new(2, 8, 1, CellConfig::rnn(), LossKind::MseLast);
        assert!(ok.validate().is_ok());
        let bad = [
            ModelConfig { input_dim: 0, ..ok.clone() },
            ModelConfig { output_dim: 0, ..ok.clone() },
            ModelConfig { hidden_dim: 0, ..ok.clone() },
            ModelConfig { n_layers: 0, ..ok.clone() },
        ];
        for (cfg, what) in bad.iter().zip(["input_dim", "output_dim", "hidden_dim", "n_layers"]) {
            let e = cfg.build::<f32>().unwrap_err();
            assert!(matches!(e, Error::Config { .. }) && e.to_string().contains(what), "{e}");
        }
    }

    #[test]
    fn validate_rejects_a_bad_readout_init() {
        let cfg = ModelConfig::new(2, 8, 1, CellConfig::rnn(), LossKind::MseLast)
            .with_readout(ReadoutConfig { weight_init: Init::Uniform { low: 1.0, high: 0.0 }, bias_init: Init::Zeros });
        assert!(matches!(cfg.validate(), Err(Error::Config { .. })));
    }

    #[test]
    fn validate_rejects_a_bad_cell() {
        let cfg =
            ModelConfig::new(2, 8, 1, crate::LstmSpec::new().with_forget_bias(f64::INFINITY).into(), LossKind::MseLast);
        assert!(matches!(cfg.validate(), Err(Error::Config { .. })));
    }

    #[test]
    fn mismatched_targets_are_errors() {
        let mut m = ModelConfig::new(2, 4, 1, CellConfig::rnn(), LossKind::MseLast).build::<f64>().unwrap();
        let x = Array3::zeros((3, 2, 2));
        let classes = Batch { inputs: x.clone(), targets: Targets::ClassLast(Array1::zeros(2)) };
        let e = m.loss_and_grad(&classes, false).unwrap_err();
        assert!(matches!(e, Error::Config { .. }) && e.to_string().contains("Regression"), "{e}");
        let wrong_rows = Batch { inputs: x.clone(), targets: Targets::Regression(Array2::zeros((3, 1))) };
        assert!(matches!(m.loss_and_grad(&wrong_rows, false), Err(Error::Shape { .. })));
        let wrong_width =
            Batch { inputs: Array3::zeros((3, 2, 5)), targets: Targets::Regression(Array2::zeros((2, 1))) };
        assert!(matches!(m.loss_and_grad(&wrong_width, false), Err(Error::Shape { .. })));
        assert!(matches!(m.evaluate(&classes), Err(Error::Config { .. })));
    }

    #[test]
    fn evaluate_in_chunks_equals_one_pass_and_touches_no_gradient() {
        let task = AddingConfig::new(5).build().unwrap();
        let batch: Batch<f64> = task.sample(EVAL_CHUNK + 7, &mut seeded_rng(3)).unwrap();
        let mut m = ModelConfig::for_task(&task, 4, CellConfig::lstm()).build::<f64>().unwrap();
        let (loss, acc) = m.evaluate(&batch).unwrap();
        let one = m.loss_and_grad(&batch, true).unwrap();
        assert!((loss - one.loss).abs() < 1e-12 * (1.0 + loss.abs()), "{loss} vs {}", one.loss);
        assert!((0.0..=1.0).contains(&acc));
        let norms = one.step_grad_norms.unwrap();
        assert_eq!((norms.len(), norms[0].len()), (1, 5));
        m.zero_grad();
        m.evaluate(&batch).unwrap();
        m.visit_params(&mut |_, p| assert!(p.grad.iter().all(|&g| g == 0.0)));
    }

    #[test]
    fn predict_shapes_for_last_and_every_step() {
        let mut last = ModelConfig::new(3, 4, 5, CellConfig::gru(), LossKind::CrossEntropyLast).build::<f32>().unwrap();
        assert_eq!(last.predict(Array3::zeros((6, 2, 3)).view()).unwrap().shape(), [2, 5]);
        let mut every =
            ModelConfig::new(3, 4, 5, CellConfig::gru(), LossKind::CrossEntropyEvery).build::<f32>().unwrap();
        assert_eq!(every.predict(Array3::zeros((6, 1, 3)).view()).unwrap().shape(), [6, 1, 5]);
        assert!(every.predict(Array3::zeros((6, 1, 2)).view()).is_err());
    }
}
