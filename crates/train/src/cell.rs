//! [`AnyCell`], one enum over the workspace's cells, and [`CellConfig`], its serde description
//! without sizes.

use ndarray::{ArrayView2, ArrayViewMut2};
use rnnlab_activations::ActivationKind;
use rnnlab_cells::{
    Gru, GruConfig, GruVariant, Lstm, LstmConfig, NormConfig, NormGru, NormGruConfig, NormKind, NormLstm,
    NormLstmConfig, NormPlacement, NormRnn, NormRnnConfig, Rnn, RnnConfig,
};
use rnnlab_core::{Cell, Float, ParamView, ParamViewMut, Parameterized, Result, Rng, SeqRefs, StepRefs};
use rnnlab_init::Init;
use serde::{Deserialize, Serialize};

/// Any recurrent cell of `rnnlab-cells`, dispatching every [`Cell`] method by a `match`, so a
/// model of any cell kind is one type, `Recurrent<F, AnyCell<F>>`. The normalised cells are
/// boxed (they are large); the dispatch is one branch per call, outside the step kernels.
///
/// # Examples
/// ```
/// use rnnlab_core::Cell;
/// use rnnlab_train::{AnyCell, CellConfig};
/// let cell: AnyCell<f32> = CellConfig::lstm().init(3, 8, &mut rnnlab_core::seeded_rng(0))?;
/// assert_eq!((cell.name(), cell.proj_dim()), ("lstm", 32));
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "F: Float", tag = "kind", rename_all = "snake_case")]
pub enum AnyCell<F: Float> {
    /// An Elman RNN.
    Rnn(Rnn<F>),
    /// An LSTM.
    Lstm(Lstm<F>),
    /// A GRU.
    Gru(Gru<F>),
    /// An Elman RNN with layer or batch normalisation.
    NormRnn(Box<NormRnn<F>>),
    /// An LSTM with layer or batch normalisation.
    NormLstm(Box<NormLstm<F>>),
    /// A GRU with layer or batch normalisation.
    NormGru(Box<NormGru<F>>),
}

impl<F: Float> From<Rnn<F>> for AnyCell<F> {
    fn from(c: Rnn<F>) -> Self {
        Self::Rnn(c)
    }
}

impl<F: Float> From<Lstm<F>> for AnyCell<F> {
    fn from(c: Lstm<F>) -> Self {
        Self::Lstm(c)
    }
}

impl<F: Float> From<Gru<F>> for AnyCell<F> {
    fn from(c: Gru<F>) -> Self {
        Self::Gru(c)
    }
}

impl<F: Float> From<NormRnn<F>> for AnyCell<F> {
    fn from(c: NormRnn<F>) -> Self {
        Self::NormRnn(Box::new(c))
    }
}

impl<F: Float> From<NormLstm<F>> for AnyCell<F> {
    fn from(c: NormLstm<F>) -> Self {
        Self::NormLstm(Box::new(c))
    }
}

impl<F: Float> From<NormGru<F>> for AnyCell<F> {
    fn from(c: NormGru<F>) -> Self {
        Self::NormGru(Box::new(c))
    }
}

impl<F: Float> AnyCell<F> {
    /// Whether the cell keeps batch-norm running statistics (state outside its parameters,
    /// which checkpoints save separately).
    pub fn has_running_stats(&self) -> bool {
        let norm = match self {
            Self::NormRnn(c) => c.norm_config(),
            Self::NormLstm(c) => c.norm_config(),
            Self::NormGru(c) => c.norm_config(),
            _ => return false,
        };
        norm.kind == NormKind::Batch
    }
}

macro_rules! dispatch {
    ($self:expr, $c:ident => $e:expr) => {
        match $self {
            AnyCell::Rnn($c) => $e,
            AnyCell::Lstm($c) => $e,
            AnyCell::Gru($c) => $e,
            AnyCell::NormRnn($c) => $e,
            AnyCell::NormLstm($c) => $e,
            AnyCell::NormGru($c) => $e,
        }
    };
}

impl<F: Float> Parameterized<F> for AnyCell<F> {
    fn visit_params(&self, visitor: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        dispatch!(self, c => c.visit_params(visitor))
    }

    fn visit_params_mut(&mut self, visitor: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        dispatch!(self, c => c.visit_params_mut(visitor))
    }
}

impl<F: Float> Cell<F> for AnyCell<F> {
    fn name(&self) -> &'static str {
        dispatch!(self, c => c.name())
    }

    fn input_dim(&self) -> usize {
        dispatch!(self, c => c.input_dim())
    }

    fn hidden_dim(&self) -> usize {
        dispatch!(self, c => c.hidden_dim())
    }

    fn state_names(&self) -> &'static [&'static str] {
        dispatch!(self, c => c.state_names())
    }

    fn proj_dim(&self) -> usize {
        dispatch!(self, c => c.proj_dim())
    }

    fn rec_grad_dim(&self) -> usize {
        dispatch!(self, c => c.rec_grad_dim())
    }

    fn cache_len(&self, batch: usize) -> usize {
        dispatch!(self, c => c.cache_len(batch))
    }

    fn scratch_len(&self, batch: usize) -> usize {
        dispatch!(self, c => c.scratch_len(batch))
    }

    fn probe(&self) -> Option<&dyn rnnlab_core::Probe<F>> {
        dispatch!(self, c => c.probe())
    }

    fn state_width(&self) -> usize {
        dispatch!(self, c => c.state_width())
    }

    fn set_training(&mut self, training: bool) {
        dispatch!(self, c => c.set_training(training))
    }

    fn project_input(&mut self, x: ArrayView2<'_, F>, out: ArrayViewMut2<'_, F>) -> Result<()> {
        dispatch!(self, c => c.project_input(x, out))
    }

    fn step(
        &mut self,
        t: usize,
        xp: ArrayViewMut2<'_, F>,
        prev: ArrayView2<'_, F>,
        next: ArrayViewMut2<'_, F>,
        cache: &mut [F],
        scratch: &mut [F],
    ) -> Result<()> {
        dispatch!(self, c => c.step(t, xp, prev, next, cache, scratch))
    }

    fn step_backward(
        &self,
        step: StepRefs<'_, F>,
        dnext: ArrayView2<'_, F>,
        dprev: ArrayViewMut2<'_, F>,
        dxp: ArrayViewMut2<'_, F>,
        drec: ArrayViewMut2<'_, F>,
        scratch: &mut [F],
    ) -> Result<()> {
        dispatch!(self, c => c.step_backward(step, dnext, dprev, dxp, drec, scratch))
    }

    fn accumulate_grads(&mut self, seq: SeqRefs<'_, F>) -> Result<()> {
        dispatch!(self, c => c.accumulate_grads(seq))
    }

    fn input_grad(&self, dxp: ArrayView2<'_, F>, dx: ArrayViewMut2<'_, F>) -> Result<()> {
        dispatch!(self, c => c.input_grad(dxp, dx))
    }

    fn jvp_state(
        &self,
        step: StepRefs<'_, F>,
        v: ArrayView2<'_, F>,
        out: ArrayViewMut2<'_, F>,
        scratch: &mut [F],
    ) -> Result<()> {
        dispatch!(self, c => c.jvp_state(step, v, out, scratch))
    }

    fn vjp_state(&self, step: StepRefs<'_, F>, u: ArrayView2<'_, F>, out: ArrayViewMut2<'_, F>) -> Result<()> {
        dispatch!(self, c => c.vjp_state(step, u, out))
    }
}

/// An Elman RNN cell without sizes; fields and defaults are [`RnnConfig`]'s (tanh, `w_ih`
/// Xavier-uniform, `w_hh` orthogonal, zero biases). Omitted fields take the defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct RnnSpec {
    /// The nonlinearity φ.
    pub activation: ActivationKind,
    /// Initialiser of `w_ih`.
    pub w_ih_init: Init,
    /// Initialiser of `w_hh`.
    pub w_hh_init: Init,
    /// Initialiser of both biases.
    pub bias_init: Init,
    /// Layer or batch normalisation inside the recurrence (default none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub norm: Option<NormConfig>,
}
rnnlab_core::serde_map_only!(RnnSpec);

impl Default for RnnSpec {
    fn default() -> Self {
        let c = RnnConfig::new(1, 1);
        Self {
            activation: c.activation,
            w_ih_init: c.w_ih_init,
            w_hh_init: c.w_hh_init,
            bias_init: c.bias_init,
            norm: None,
        }
    }
}

impl RnnSpec {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the activation.
    pub fn with_activation(mut self, activation: ActivationKind) -> Self {
        self.activation = activation;
        self
    }

    /// Sets the initialiser of `w_ih`.
    pub fn with_w_ih_init(mut self, init: Init) -> Self {
        self.w_ih_init = init;
        self
    }

    /// Sets the initialiser of `w_hh`.
    pub fn with_w_hh_init(mut self, init: Init) -> Self {
        self.w_hh_init = init;
        self
    }

    /// Sets the initialiser of the biases.
    pub fn with_bias_init(mut self, init: Init) -> Self {
        self.bias_init = init;
        self
    }

    /// Sets the normalisation (layer or batch norm, `rnnlab-cells`' `NormConfig`).
    pub fn with_norm(mut self, norm: NormConfig) -> Self {
        self.norm = Some(norm);
        self
    }

    /// The cell config at the given sizes (without the normalisation).
    pub fn at(&self, input_dim: usize, hidden_dim: usize) -> RnnConfig {
        RnnConfig::new(input_dim, hidden_dim)
            .with_activation(self.activation)
            .with_w_ih_init(self.w_ih_init.clone())
            .with_w_hh_init(self.w_hh_init.clone())
            .with_bias_init(self.bias_init.clone())
    }
}

/// An LSTM cell without sizes; fields and defaults are [`LstmConfig`]'s (forget bias 1,
/// `w_ih` Xavier-uniform and `w_hh` orthogonal per gate block, zero biases).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct LstmSpec {
    /// The initial forget-gate bias (Jozefowicz et al. 2015).
    pub forget_bias: f64,
    /// Initialiser of `w_ih`, per gate block.
    pub w_ih_init: Init,
    /// Initialiser of `w_hh`, per gate block.
    pub w_hh_init: Init,
    /// Initialiser of both biases before the forget bias is set.
    pub bias_init: Init,
    /// Layer or batch normalisation inside the recurrence (default none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub norm: Option<NormConfig>,
}
rnnlab_core::serde_map_only!(LstmSpec);

impl Default for LstmSpec {
    fn default() -> Self {
        let c = LstmConfig::new(1, 1);
        Self {
            forget_bias: c.forget_bias,
            w_ih_init: c.w_ih_init,
            w_hh_init: c.w_hh_init,
            bias_init: c.bias_init,
            norm: None,
        }
    }
}

impl LstmSpec {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the initial forget-gate bias.
    pub fn with_forget_bias(mut self, forget_bias: f64) -> Self {
        self.forget_bias = forget_bias;
        self
    }

    /// Sets the initialiser of `w_ih`.
    pub fn with_w_ih_init(mut self, init: Init) -> Self {
        self.w_ih_init = init;
        self
    }

    /// Sets the initialiser of `w_hh`.
    pub fn with_w_hh_init(mut self, init: Init) -> Self {
        self.w_hh_init = init;
        self
    }

    /// Sets the initialiser of the biases.
    pub fn with_bias_init(mut self, init: Init) -> Self {
        self.bias_init = init;
        self
    }

    /// Sets the normalisation (layer or batch norm, `rnnlab-cells`' `NormConfig`).
    pub fn with_norm(mut self, norm: NormConfig) -> Self {
        self.norm = Some(norm);
        self
    }

    /// The cell config at the given sizes (without the normalisation).
    pub fn at(&self, input_dim: usize, hidden_dim: usize) -> LstmConfig {
        LstmConfig::new(input_dim, hidden_dim)
            .with_forget_bias(self.forget_bias)
            .with_w_ih_init(self.w_ih_init.clone())
            .with_w_hh_init(self.w_hh_init.clone())
            .with_bias_init(self.bias_init.clone())
    }
}

/// A GRU cell without sizes; fields and defaults are [`GruConfig`]'s (reset-after, `w_ih`
/// Xavier-uniform and `w_hh` orthogonal per gate block, zero biases).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct GruSpec {
    /// Where the reset gate acts.
    pub variant: GruVariant,
    /// Initialiser of `w_ih`, per gate block.
    pub w_ih_init: Init,
    /// Initialiser of `w_hh`, per gate block.
    pub w_hh_init: Init,
    /// Initialiser of both biases.
    pub bias_init: Init,
    /// Layer or batch normalisation inside the recurrence (default none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub norm: Option<NormConfig>,
}
rnnlab_core::serde_map_only!(GruSpec);

impl Default for GruSpec {
    fn default() -> Self {
        let c = GruConfig::new(1, 1);
        Self { variant: c.variant, w_ih_init: c.w_ih_init, w_hh_init: c.w_hh_init, bias_init: c.bias_init, norm: None }
    }
}

impl GruSpec {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the variant.
    pub fn with_variant(mut self, variant: GruVariant) -> Self {
        self.variant = variant;
        self
    }

    /// Sets the initialiser of `w_ih`.
    pub fn with_w_ih_init(mut self, init: Init) -> Self {
        self.w_ih_init = init;
        self
    }

    /// Sets the initialiser of `w_hh`.
    pub fn with_w_hh_init(mut self, init: Init) -> Self {
        self.w_hh_init = init;
        self
    }

    /// Sets the initialiser of the biases.
    pub fn with_bias_init(mut self, init: Init) -> Self {
        self.bias_init = init;
        self
    }

    /// Sets the normalisation (layer or batch norm, `rnnlab-cells`' `NormConfig`).
    pub fn with_norm(mut self, norm: NormConfig) -> Self {
        self.norm = Some(norm);
        self
    }

    /// The cell config at the given sizes (without the normalisation).
    pub fn at(&self, input_dim: usize, hidden_dim: usize) -> GruConfig {
        GruConfig::new(input_dim, hidden_dim)
            .with_variant(self.variant)
            .with_w_ih_init(self.w_ih_init.clone())
            .with_w_hh_init(self.w_hh_init.clone())
            .with_bias_init(self.bias_init.clone())
    }
}

/// The cell of a model without its sizes (those come from [`crate::ModelConfig`]), tagged by
/// `"kind"`; omitted fields take the cells' defaults.
///
/// ```json
/// {"kind": "lstm", "forget_bias": 1.0}
/// {"kind": "rnn", "activation": "relu", "w_hh_init": {"identity": {"scale": 1.0}}}
/// {"kind": "gru", "variant": "reset_before"}
/// {"kind": "lstm", "norm": {"kind": "batch", "placement": "full", "eps": 1e-5, "gamma_init": 0.1,
///                           "momentum": 0.1, "time_steps": 50}}
/// ```
///
/// # Examples
/// ```
/// use rnnlab_train::{CellConfig, LstmSpec};
/// let c: CellConfig = serde_json::from_str(r#"{"kind": "lstm", "forget_bias": 2.0}"#).unwrap();
/// assert_eq!(c, CellConfig::Lstm(LstmSpec::new().with_forget_bias(2.0)));
/// c.validate()?;
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CellConfig {
    /// [`Rnn`].
    Rnn(RnnSpec),
    /// [`Lstm`].
    Lstm(LstmSpec),
    /// [`Gru`].
    Gru(GruSpec),
    /// A cell the caller builds (a user's own [`Cell`], e.g. a `SimpleCell` through
    /// `rnnlab_core::Simple`): `{"kind": "custom", "name": "indrnn"}`. The config only names it;
    /// [`crate::ModelConfig::build_with`] takes the function that makes each layer's cell, and
    /// [`CellConfig::init`] refuses it.
    Custom(CustomCellSpec),
}
rnnlab_core::serde_map_only!(CellConfig);

/// The description of a caller-built cell in a [`CellConfig`]: its name, which must equal the
/// cell's [`Cell::name`] (checked when the model is built), so a checkpoint or a weights file
/// of one custom cell is not loaded into another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct CustomCellSpec {
    /// The cell's [`Cell::name`].
    pub name: String,
}
rnnlab_core::serde_map_only!(CustomCellSpec);

/// What a checkpoint keeps of a cell beyond its parameters (which go to the weights file by
/// name): batch norm's running statistics, for example. The defaults say "nothing", which is
/// right for any cell whose whole state is its parameters, so a cell of your own needs only
/// `impl CheckpointCell<f32> for MyCell {}` to be checkpointed (cells made with
/// `rnnlab_core::Simple` have it already).
pub trait CheckpointCell<F: Float>: Cell<F> {
    /// The state outside the parameters, as JSON; `Ok(None)` if there is none.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Format`] if it cannot be serialised.
    fn extra_state(&self) -> Result<Option<serde_json::Value>> {
        Ok(None)
    }

    /// Restores what [`CheckpointCell::extra_state`] gave.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Format`] if `state` does not fit this cell; by default always
    /// (the cell keeps no extra state).
    fn load_extra_state(&mut self, _state: serde_json::Value) -> Result<()> {
        Err(rnnlab_core::Error::format(
            "CheckpointCell::load_extra_state",
            format!("cell {} keeps no state beyond its parameters", self.name()),
        ))
    }
}

impl<F: Float, C: rnnlab_core::SimpleCell<F>> CheckpointCell<F> for rnnlab_core::Simple<C> {}

impl<F: Float> CheckpointCell<F> for AnyCell<F> {
    fn extra_state(&self) -> Result<Option<serde_json::Value>> {
        if !self.has_running_stats() {
            return Ok(None);
        }
        serde_json::to_value(self)
            .map(Some)
            .map_err(|e| rnnlab_core::Error::format("AnyCell::extra_state", format!("running statistics: {e}")))
    }

    fn load_extra_state(&mut self, state: serde_json::Value) -> Result<()> {
        const OP: &str = "AnyCell::load_extra_state";
        let cell: AnyCell<F> = serde_json::from_value(state)
            .map_err(|e| rnnlab_core::Error::format(OP, format!("running statistics: {e}")))?;
        let shapes = |c: &AnyCell<F>| {
            let mut v = Vec::new();
            c.visit_params(&mut |n, p| v.push((n.to_string(), p.value.shape().to_vec())));
            v
        };
        if cell.name() != self.name() || !cell.has_running_stats() || shapes(&cell) != shapes(self) {
            return Err(rnnlab_core::Error::format(
                OP,
                format!("running statistics of a {} cell do not fit this {} cell", cell.name(), self.name()),
            ));
        }
        *self = cell;
        Ok(())
    }
}

macro_rules! checkpoint_without_extra_state {
    ($($t:ident),*) => {
        $(impl<F: Float> CheckpointCell<F> for $t<F> {})*
    };
}
checkpoint_without_extra_state!(Rnn, Lstm, Gru);

/// The normalised cells keep their running statistics through [`AnyCell`]'s serde form.
macro_rules! checkpoint_through_any_cell {
    ($($t:ident),*) => {
        $(impl<F: Float> CheckpointCell<F> for $t<F> {
            fn extra_state(&self) -> Result<Option<serde_json::Value>> {
                AnyCell::from(self.clone()).extra_state()
            }
            fn load_extra_state(&mut self, state: serde_json::Value) -> Result<()> {
                let mut any = AnyCell::from(self.clone());
                any.load_extra_state(state)?;
                if let AnyCell::$t(c) = any {
                    *self = *c;
                }
                Ok(())
            }
        })*
    };
}
checkpoint_through_any_cell!(NormRnn, NormLstm, NormGru);

impl From<RnnSpec> for CellConfig {
    fn from(s: RnnSpec) -> Self {
        Self::Rnn(s)
    }
}

impl From<LstmSpec> for CellConfig {
    fn from(s: LstmSpec) -> Self {
        Self::Lstm(s)
    }
}

impl From<GruSpec> for CellConfig {
    fn from(s: GruSpec) -> Self {
        Self::Gru(s)
    }
}

impl CellConfig {
    /// A tanh RNN with the defaults.
    pub fn rnn() -> Self {
        Self::Rnn(RnnSpec::new())
    }

    /// An LSTM with the defaults (forget bias 1).
    pub fn lstm() -> Self {
        Self::Lstm(LstmSpec::new())
    }

    /// A reset-after GRU with the defaults.
    pub fn gru() -> Self {
        Self::Gru(GruSpec::new())
    }

    /// The normalisation, if any.
    pub fn norm(&self) -> Option<&NormConfig> {
        match self {
            Self::Rnn(s) => s.norm.as_ref(),
            Self::Lstm(s) => s.norm.as_ref(),
            Self::Gru(s) => s.norm.as_ref(),
            Self::Custom(_) => None,
        }
    }

    /// A short description of the normalisation: `""`, `"+ln"`, `"+bn"`, `"+ln(input_only)"`, …
    pub fn norm_tag(&self) -> String {
        match self.norm() {
            None => String::new(),
            Some(n) => {
                let kind = if n.kind == NormKind::Layer { "ln" } else { "bn" };
                let place = if n.placement == NormPlacement::Full { "" } else { "(input_only)" };
                format!("+{kind}{place}")
            }
        }
    }

    /// The base cell kind: `"rnn"`, `"lstm"` or `"gru"` (a normalised cell's [`Cell::name`]
    /// is longer, e.g. `"bn_lstm"`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rnn(_) => "rnn",
            Self::Lstm(_) => "lstm",
            Self::Gru(_) => "gru",
            Self::Custom(_) => "custom",
        }
    }

    /// A caller-built cell named `name` (its [`Cell::name`]).
    pub fn custom(name: &str) -> Self {
        Self::Custom(CustomCellSpec { name: name.to_string() })
    }

    /// Checks the activation, the forget bias, the normalisation and every initialiser.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Config`] for an invalid activation, a non-finite forget bias, an
    /// invalid normalisation or an invalid initialiser.
    pub fn validate(&self) -> Result<()> {
        self.check(&|init: &Init| init.validate(), &|n: &NormConfig| n.validate(), &|op, name, v| {
            rnnlab_core::validate::finite_param(op, name, v)
        })
    }

    /// [`CellConfig::validate`], then every value in the model's float `F`: the forget bias,
    /// the initialisers' parameters ([`Init::validate_in`]) and the normalisation's ε and γ
    /// ([`NormConfig::validate_in`]), which may be finite in `f64` but 0 or ∞ in `f32`.
    ///
    /// # Errors
    /// As [`CellConfig::validate`], and [`rnnlab_core::Error::Config`] naming the field whose
    /// value is not usable in `F`.
    pub fn validate_in<F: Float>(&self) -> Result<()> {
        self.validate()?;
        self.check(&|init: &Init| init.validate_in::<F>(), &|n: &NormConfig| n.validate_in::<F>(1), &|op, name, v| {
            rnnlab_core::validate::finite_in::<F>(op, name, v).map(drop)
        })
    }

    /// Runs the given checks on the initialisers, the normalisation and the forget bias, each
    /// error under the field's name.
    fn check(
        &self,
        init: &dyn Fn(&Init) -> Result<()>,
        norm: &dyn Fn(&NormConfig) -> Result<()>,
        value: &dyn Fn(&str, &str, f64) -> Result<()>,
    ) -> Result<()> {
        const OP: &str = "CellConfig";
        if let Some(n) = self.norm() {
            norm(n).map_err(|e| e.within(OP, "norm"))?;
        }
        let inits = match self {
            Self::Rnn(s) => {
                s.activation.validate().map_err(|e| e.within(OP, "activation"))?;
                [&s.w_ih_init, &s.w_hh_init, &s.bias_init]
            }
            Self::Lstm(s) => {
                value(OP, "forget_bias", s.forget_bias)?;
                [&s.w_ih_init, &s.w_hh_init, &s.bias_init]
            }
            Self::Gru(s) => [&s.w_ih_init, &s.w_hh_init, &s.bias_init],
            Self::Custom(c) => {
                if c.name.is_empty() {
                    return Err(rnnlab_core::Error::config(OP, "a custom cell needs a name, got \"\""));
                }
                return Ok(());
            }
        };
        let names = ["w_ih_init", "w_hh_init", "bias_init"];
        inits.into_iter().zip(names).try_for_each(|(i, name)| init(i).map_err(|e| e.within(OP, name)))
    }

    /// Gate blocks per cell: the rows of `w_hh` are `gates · hidden_dim` (1 for the Elman RNN,
    /// 4 for the LSTM, 3 for the GRU; 1 for a custom cell, whose maker checks its own sizes).
    pub fn gates(&self) -> usize {
        match self {
            Self::Rnn(_) | Self::Custom(_) => 1,
            Self::Lstm(_) => 4,
            Self::Gru(_) => 3,
        }
    }

    /// Draws a cell of the given sizes.
    ///
    /// # Errors
    /// As [`CellConfig::validate`], and [`rnnlab_core::Error::Config`] for a zero size.
    pub fn init<F: Float>(&self, input_dim: usize, hidden_dim: usize, rng: &mut Rng) -> Result<AnyCell<F>> {
        self.validate()?;
        let (i, h) = (input_dim, hidden_dim);
        Ok(match (self, self.norm()) {
            (Self::Rnn(s), None) => s.at(i, h).init::<F>(rng)?.into(),
            (Self::Lstm(s), None) => s.at(i, h).init::<F>(rng)?.into(),
            (Self::Gru(s), None) => s.at(i, h).init::<F>(rng)?.into(),
            (Self::Rnn(s), Some(n)) => NormRnnConfig::new(s.at(i, h), n.clone()).init::<F>(rng)?.into(),
            (Self::Lstm(s), Some(n)) => NormLstmConfig::new(s.at(i, h), n.clone()).init::<F>(rng)?.into(),
            (Self::Gru(s), Some(n)) => NormGruConfig::new(s.at(i, h), n.clone()).init::<F>(rng)?.into(),
            (Self::Custom(c), _) => {
                return Err(rnnlab_core::Error::config(
                    "CellConfig::init",
                    format!("custom cell {:?} is built by the caller: use ModelConfig::build_with", c.name),
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;
    use rnnlab_cells::{BackwardOptions, OutputGrad, Recurrent};
    use rnnlab_core::{Error, seeded_rng};

    /// A model of `NormLstm` itself (not `AnyCell`) checkpoints its running statistics too.
    #[test]
    fn normalised_cells_carry_their_running_statistics_alone() {
        let cfg = CellConfig::from(LstmSpec::new().with_norm(NormConfig::batch(NormPlacement::Full, 4)));
        let make = |seed| match cfg.init::<f64>(2, 3, &mut seeded_rng(seed)).unwrap() {
            AnyCell::NormLstm(c) => *c,
            other => unreachable!("a batch-normalised LSTM config made a {}", other.name()),
        };
        let mut trained = make(0);
        // Move the running statistics off their initial values with one training pass.
        let mut stack = Recurrent::new(vec![trained.clone()]).unwrap();
        let x = Array3::from_shape_fn((4, 5, 2), |(t, b, i)| (t * 3 + b * 2 + i) as f64 * 0.1);
        stack.forward(x.view(), None).unwrap();
        trained = stack.layers()[0].clone();
        let state = trained.extra_state().unwrap().expect("batch norm keeps running statistics");
        let mut fresh = make(1);
        assert_ne!(serde_json::to_value(&fresh).unwrap(), serde_json::to_value(&trained).unwrap());
        fresh.load_extra_state(state).unwrap();
        assert_eq!(serde_json::to_value(&fresh).unwrap(), serde_json::to_value(&trained).unwrap());
        // A plain LSTM has none, and refuses some.
        let lstm = LstmConfig::new(2, 3).init::<f64>(&mut seeded_rng(0)).unwrap();
        assert!(lstm.extra_state().unwrap().is_none());
        assert!(lstm.clone().load_extra_state(serde_json::Value::Null).is_err());
    }

    #[test]
    fn json_defaults_match_the_cells_configs() {
        let c: CellConfig = serde_json::from_str(r#"{"kind": "rnn"}"#).unwrap();
        assert_eq!(c, CellConfig::rnn());
        let CellConfig::Rnn(s) = &c else { unreachable!("parsed as rnn") };
        assert_eq!(s.at(2, 3), RnnConfig::new(2, 3));
        let c: CellConfig = serde_json::from_str(r#"{"kind": "lstm"}"#).unwrap();
        let CellConfig::Lstm(s) = &c else { unreachable!("parsed as lstm") };
        assert_eq!(s.at(2, 3), LstmConfig::new(2, 3));
        let c: CellConfig = serde_json::from_str(r#"{"kind": "gru", "variant": "reset_before"}"#).unwrap();
        assert_eq!(c, CellConfig::Gru(GruSpec::new().with_variant(GruVariant::ResetBefore)));
        let c: CellConfig =
            serde_json::from_str(r#"{"kind": "rnn", "activation": "relu", "w_hh_init": {"identity": {"scale": 1.0}}}"#)
                .unwrap();
        assert_eq!(
            c,
            RnnSpec::new().with_activation(ActivationKind::Relu).with_w_hh_init(Init::Identity { scale: 1.0 }).into()
        );
        for c in [CellConfig::rnn(), CellConfig::lstm(), CellConfig::gru()] {
            let back: CellConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
            assert_eq!(back, c);
        }
    }

    #[test]
    fn unknown_fields_and_kinds_are_rejected() {
        assert!(serde_json::from_str::<CellConfig>(r#"{"kind": "lstm", "forget": 1.0}"#).is_err());
        assert!(serde_json::from_str::<CellConfig>(r#"{"kind": "transformer"}"#).is_err());
        assert!(serde_json::from_str::<CellConfig>(r#"{"kind": "rnn", "activation": "nope"}"#).is_err());
    }

    #[test]
    fn validate_rejects_a_non_finite_forget_bias() {
        let e = CellConfig::from(LstmSpec::new().with_forget_bias(f64::NAN)).validate().unwrap_err();
        assert!(matches!(e, Error::Config { .. }) && e.to_string().contains("forget_bias"), "{e}");
    }

    #[test]
    fn validate_rejects_a_bad_initialiser() {
        let c = CellConfig::from(GruSpec::new().with_w_hh_init(Init::Normal { mean: 0.0, std: -1.0 }));
        assert!(matches!(c.validate(), Err(Error::Config { .. })));
        assert!(c.init::<f64>(2, 3, &mut seeded_rng(0)).is_err());
    }

    #[test]
    fn validate_rejects_a_bad_activation() {
        let c = CellConfig::from(RnnSpec::new().with_activation(ActivationKind::LeakyRelu { slope: -1.0 }));
        assert!(matches!(c.validate(), Err(Error::Config { .. })));
    }

    #[test]
    fn init_rejects_zero_sizes() {
        for c in [CellConfig::rnn(), CellConfig::lstm(), CellConfig::gru()] {
            assert!(c.init::<f32>(0, 3, &mut seeded_rng(0)).is_err(), "{}", c.kind());
            assert!(c.init::<f32>(3, 0, &mut seeded_rng(0)).is_err(), "{}", c.kind());
        }
    }

    #[test]
    fn normalised_cells_are_built_from_the_norm_field() {
        let json = r#"{"kind": "lstm", "norm": {"kind": "batch", "placement": "full", "eps": 1e-5,
            "gamma_init": 0.1, "momentum": 0.1, "time_steps": 4}}"#;
        let c: CellConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.norm_tag(), "+bn");
        let cell: AnyCell<f32> = c.init(2, 3, &mut seeded_rng(0)).unwrap();
        assert_eq!(cell.name(), "bn_lstm");
        assert!(cell.has_running_stats());
        let ln = CellConfig::from(GruSpec::new().with_norm(NormConfig::layer(NormPlacement::InputOnly)));
        let cell: AnyCell<f32> = ln.init(2, 3, &mut seeded_rng(0)).unwrap();
        assert_eq!(
            (cell.name(), cell.has_running_stats(), ln.norm_tag().as_str()),
            ("ln_gru_input", false, "+ln(input_only)")
        );
        let rnn = CellConfig::from(RnnSpec::new().with_norm(NormConfig::layer(NormPlacement::Full)));
        assert_eq!(rnn.init::<f64>(2, 3, &mut seeded_rng(0)).unwrap().name(), "ln_rnn");
        assert!(!CellConfig::lstm().init::<f32>(2, 3, &mut seeded_rng(0)).unwrap().has_running_stats());
        // The plain spec serialises without a norm field.
        assert!(!serde_json::to_string(&CellConfig::lstm()).unwrap().contains("norm"));
    }

    #[test]
    fn validate_rejects_a_bad_norm() {
        let c = CellConfig::from(LstmSpec::new().with_norm(NormConfig::layer(NormPlacement::Full).with_eps(0.0)));
        let e = c.validate().unwrap_err();
        assert!(matches!(e, Error::Config { .. }) && e.to_string().contains("eps"), "{e}");
    }

    #[test]
    fn any_cell_delegates_to_the_concrete_cell_bit_for_bit() {
        let x = Array3::from_shape_fn((4, 2, 3), |(t, b, i)| ((t * 7 + b * 3 + i) as f64 * 0.37).sin());
        for c in [CellConfig::rnn(), CellConfig::lstm(), CellConfig::gru()] {
            let any: AnyCell<f64> = c.init(3, 5, &mut seeded_rng(9)).unwrap();
            assert_eq!(any.name(), c.kind());
            let mut a = Recurrent::new(vec![any.clone()]).unwrap();
            let fa = a.forward(x.view(), None).unwrap();
            let g = fa.outputs.index_axis(ndarray::Axis(0), 3).to_owned();
            let ba = a.backward(&fa.cache, OutputGrad::Last(g.view()), BackwardOptions::default()).unwrap();
            let (fb, bb) = match any {
                AnyCell::Rnn(cell) => {
                    let mut b = Recurrent::new(vec![cell]).unwrap();
                    let f = b.forward(x.view(), None).unwrap();
                    let bw = b.backward(&f.cache, OutputGrad::Last(g.view()), BackwardOptions::default()).unwrap();
                    (f.outputs, bw.dx)
                }
                AnyCell::Lstm(cell) => {
                    let mut b = Recurrent::new(vec![cell]).unwrap();
                    let f = b.forward(x.view(), None).unwrap();
                    let bw = b.backward(&f.cache, OutputGrad::Last(g.view()), BackwardOptions::default()).unwrap();
                    (f.outputs, bw.dx)
                }
                AnyCell::Gru(cell) => {
                    let mut b = Recurrent::new(vec![cell]).unwrap();
                    let f = b.forward(x.view(), None).unwrap();
                    let bw = b.backward(&f.cache, OutputGrad::Last(g.view()), BackwardOptions::default()).unwrap();
                    (f.outputs, bw.dx)
                }
                _ => unreachable!("plain configs build plain cells"),
            };
            assert_eq!(fa.outputs, fb, "{}", c.kind());
            assert_eq!(ba.dx, bb, "{}", c.kind());
        }
    }
}
