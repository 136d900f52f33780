//! [`CustomCells`]: the makers of a user's own cells, by name, so that a grid whose entries
//! say `{"kind": "custom", "name": "indrnn"}` runs them like the built-in cells (diagnosed at
//! initialisation, trained, judged, plotted).

use std::collections::BTreeMap;
use std::sync::Arc;

use rnnlab_core::{Cell, Error, Result, Rng};
use rnnlab_train::Trainer;

use crate::{Metrics, RunSpec, run::measure};

/// Measures one run of a custom cell: the spec, the metrics to fill, the step watcher.
type Measure = dyn Fn(&RunSpec, &mut Metrics, &mut dyn FnMut(u64, f64)) -> Result<()> + Send + Sync;

/// The custom cells a grid may name, each with the function that makes one layer of it:
/// `make(input_dim, hidden_dim, rng)`, as [`rnnlab_train::ModelConfig::build_with`] takes it
/// (layer 0, 1, … drawn in turn from the model's seed, so a run is deterministic).
///
/// # Examples
/// ```
/// use rnnlab_activations::ActivationKind;
/// use rnnlab_cells::{RnnConfig, SimpleRnn};
/// use rnnlab_core::Simple;
/// use rnnlab_suite::CustomCells;
/// // A cell made by the caller (here a stock one, wrapped as any user cell would be).
/// let cells = CustomCells::new().with("simple_rnn", |i, h, rng| {
///     Ok(Simple::new(SimpleRnn::init(&RnnConfig::new(i, h), ActivationKind::Tanh, rng)?))
/// });
/// assert_eq!(cells.names().collect::<Vec<_>>(), ["simple_rnn"]);
/// ```
#[derive(Clone, Default)]
pub struct CustomCells {
    makers: BTreeMap<String, Arc<Measure>>,
}

impl std::fmt::Debug for CustomCells {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomCells").field("names", &self.makers.keys().collect::<Vec<_>>()).finish()
    }
}

impl CustomCells {
    /// No custom cell.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the cell `name`, made by `make(input_dim, hidden_dim, rng)`. The made
    /// cell's [`Cell::name`] must be `name` (checked when a run builds its model).
    pub fn with<C, M>(mut self, name: &str, make: M) -> Self
    where
        C: Cell<f32> + 'static,
        M: Fn(usize, usize, &mut Rng) -> Result<C> + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        let run: Arc<Measure> = Arc::new(move |spec, metrics, on_step| {
            measure(spec, metrics, on_step, |cfg| {
                let model = cfg.model.build_with(|i, h, rng| make(i, h, rng))?;
                let data = Box::new(cfg.task.build()?);
                Trainer::with_parts(cfg, model, data)
            })
        });
        self.makers.insert(name.to_string(), run);
        self
    }

    /// The names of the cells, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.makers.keys().map(String::as_str)
    }

    /// Whether there is a maker for `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.makers.contains_key(name)
    }

    /// Measures `spec`, whose cell is the custom cell `name`.
    pub(crate) fn measure(
        &self,
        name: &str,
        spec: &RunSpec,
        metrics: &mut Metrics,
        on_step: &mut dyn FnMut(u64, f64),
    ) -> Result<()> {
        let run = self.makers.get(name).ok_or_else(|| self.unknown("run", name))?;
        run(spec, metrics, on_step)
    }

    /// The error for a custom cell without a maker.
    pub(crate) fn unknown(&self, op: &str, name: &str) -> Error {
        let names: Vec<&str> = self.names().collect();
        Error::config(op, format!("custom cell {name:?} has no maker (the runner knows {names:?})"))
    }
}
