//! [`Grid`]: the suite as data — experiments, each a claim and a list of runs, each run a
//! [`TrainConfig`] — and its validation, which refuses a bad grid before any run starts.

use rnnlab_core::{Error, Result};
use rnnlab_tasks::{DataSource, TaskConfig};
use rnnlab_train::{CellConfig, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::CustomCells;

/// The version of the grid format this crate reads.
pub const GRID_SCHEMA: u32 = 1;

/// The suite's own budget, tighter than the library's [`rnnlab_core::limits`] (a suite run
/// must finish in minutes): a run over any of these is refused before it starts, naming the
/// entry. Every size is first checked by the config's own validation against the shared
/// limits, with overflow-checked arithmetic, so a typo never reaches an allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest `hidden_dim`.
    pub hidden_dim: usize,
    /// Largest `n_layers`.
    pub n_layers: usize,
    /// Largest sequence length.
    pub seq_len: usize,
    /// Largest `batch_size`, `eval_batch` and probe batch.
    pub batch: usize,
    /// Largest `n_steps`.
    pub n_steps: u64,
    /// Largest estimate of one forward pass's cache, in values (f32: 4 bytes each).
    pub cache_values: u128,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            hidden_dim: 4096,
            n_layers: 16,
            seq_len: 100_000,
            batch: 100_000,
            n_steps: 10_000_000,
            cache_values: 1 << 28,
        }
    }
}

/// A whole suite: `{"schema": 1, "experiments": [...]}`.
///
/// # Examples
/// ```
/// use rnnlab_suite::Grid;
/// let quick = rnnlab_suite::profile("quick")?;
/// assert!(quick.runs().count() > 0);
/// // Rejected before any run starts, naming the file and the reason:
/// let err = Grid::parse("my-grid.json", r#"{"schema": 1, "experiments": [{"id": 3}]}"#).unwrap_err();
/// assert!(err.to_string().contains("my-grid.json"));
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Grid {
    /// [`GRID_SCHEMA`].
    pub schema: u32,
    /// The experiments, in report order.
    pub experiments: Vec<ExperimentSpec>,
}
rnnlab_core::serde_map_only!(Grid);

/// One experiment: the claim it tests and its runs. The verdict's rule belongs to the
/// experiment's `id` ([`crate::judge`]); an id without a rule is reported "not evaluated".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct ExperimentSpec {
    /// A short id (`"E2"`), unique in the grid.
    pub id: String,
    /// A title for the report.
    pub title: String,
    /// The claim the runs test, in one sentence.
    pub claim: String,
    /// Where the set-up differs from the papers' (budget, sizes), for the report.
    #[serde(default)]
    pub differs: String,
    /// The runs.
    pub runs: Vec<RunSpec>,
}
rnnlab_core::serde_map_only!(ExperimentSpec);

/// One run: a training config, whether to train it (or only diagnose it at initialisation),
/// and the group it is plotted and judged in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct RunSpec {
    /// A unique id in the grid, e.g. `"E2/tanh/xavier"`.
    pub id: String,
    /// The label in plots and tables (e.g. `"tanh, Xavier"`); the rules select runs by it.
    pub label: String,
    /// Train for `config.n_steps` steps; `false`: only the diagnosis at initialisation.
    #[serde(default)]
    pub train: bool,
    /// Sequences in the batch diagnosed at initialisation (default 32).
    #[serde(default = "default_probe_batch")]
    pub probe_batch: usize,
    /// The run.
    pub config: TrainConfig,
}
rnnlab_core::serde_map_only!(RunSpec);

fn default_probe_batch() -> usize {
    32
}

impl Grid {
    /// Parses and validates a grid; `source` names the file in messages.
    ///
    /// # Errors
    /// [`Error::Format`] naming `source` for JSON that is not a grid (with serde's line and
    /// column: unknown fields, wrong types, a missing field); [`Error::Config`] naming `source`,
    /// the experiment and the run for another schema, duplicate ids, a custom cell or data
    /// (a grid holds built-in cells and tasks only), a config that does not validate, or a size
    /// over [`Limits`].
    pub fn parse(source: &str, json: &str) -> Result<Self> {
        Self::parse_with(source, json, &CustomCells::new())
    }

    /// [`Grid::parse`] for a grid that may name the custom cells of `cells` (each entry's
    /// `{"kind": "custom", "name": …}` must be one of them).
    ///
    /// # Errors
    /// As [`Grid::parse`], with the custom cells of `cells` allowed.
    pub fn parse_with(source: &str, json: &str, cells: &CustomCells) -> Result<Self> {
        let grid: Grid = serde_json::from_str(json)
            .map_err(|e| Error::format("Grid::parse", format!("{source}: not a grid: {e}")))?;
        grid.validate_with(source, &Limits::default(), cells)?;
        Ok(grid)
    }

    /// Checks every entry (see [`Grid::parse`]).
    ///
    /// # Errors
    /// As [`Grid::parse`].
    pub fn validate(&self, source: &str, limits: &Limits) -> Result<()> {
        self.validate_with(source, limits, &CustomCells::new())
    }

    /// Checks every entry, allowing the custom cells of `cells` (see [`Grid::parse_with`]).
    ///
    /// # Errors
    /// As [`Grid::parse_with`].
    pub fn validate_with(&self, source: &str, limits: &Limits, cells: &CustomCells) -> Result<()> {
        let op = "Grid";
        if self.schema != GRID_SCHEMA {
            return Err(Error::config(op, format!("{source}: schema {}, this build reads {GRID_SCHEMA}", self.schema)));
        }
        if self.experiments.is_empty() {
            return Err(Error::config(op, format!("{source}: no experiments")));
        }
        let mut seen_experiments = std::collections::BTreeSet::new();
        let mut seen_runs = std::collections::BTreeSet::new();
        for e in &self.experiments {
            if e.id.is_empty() || !seen_experiments.insert(e.id.as_str()) {
                return Err(Error::config(op, format!("{source}: experiment id {:?} is empty or repeated", e.id)));
            }
            if e.runs.is_empty() {
                return Err(Error::config(op, format!("{source}: experiment {} has no runs", e.id)));
            }
            for r in &e.runs {
                let at = format!("{source}: experiment {}, run {:?}", e.id, r.id);
                if r.id.is_empty() || !seen_runs.insert(r.id.as_str()) {
                    return Err(Error::config(op, format!("{at}: the run id is empty or repeated")));
                }
                r.check(limits, cells).map_err(|e| Error::config(op, format!("{at}: {}", reason(&e))))?;
            }
        }
        Ok(())
    }

    /// Every run with its experiment, in grid order.
    pub fn runs(&self) -> impl Iterator<Item = (&ExperimentSpec, &RunSpec)> {
        self.experiments.iter().flat_map(|e| e.runs.iter().map(move |r| (e, r)))
    }

    /// Keeps only the experiments whose id is in `ids`.
    ///
    /// # Errors
    /// [`Error::Config`] naming an id the grid does not have.
    pub fn only(mut self, ids: &[String]) -> Result<Self> {
        if let Some(missing) = ids.iter().find(|id| !self.experiments.iter().any(|e| &e.id == *id)) {
            let have: Vec<&str> = self.experiments.iter().map(|e| e.id.as_str()).collect();
            return Err(Error::config("Grid::only", format!("no experiment {missing:?} (the grid has {have:?})")));
        }
        self.experiments.retain(|e| ids.contains(&e.id));
        Ok(self)
    }
}

/// An error's message without its operation prefix, to put after the entry's name.
fn reason(e: &Error) -> String {
    match e {
        Error::Config { msg, .. } | Error::Format { msg, .. } => msg.clone(),
        other => other.to_string(),
    }
}

impl RunSpec {
    /// Checks the run: a built-in cell or one of `cells`, a built-in task, a valid config,
    /// sizes within `limits`.
    fn check(&self, limits: &Limits, cells: &CustomCells) -> Result<()> {
        let op = "RunSpec";
        let c = &self.config;
        if let CellConfig::Custom(custom) = &c.model.cell
            && !cells.contains(&custom.name)
        {
            return Err(if cells.names().next().is_none() {
                Error::config(op, "a custom cell cannot run from a grid without its maker (run_grid_with)")
            } else {
                cells.unknown(op, &custom.name)
            });
        }
        if matches!(c.task, TaskConfig::Data(_)) {
            return Err(Error::config(op, "data supplied by the caller cannot run from a grid"));
        }
        // The shared limits first: the config's own validation checks every size against
        // `rnnlab_core::limits` with overflow-checked arithmetic (and builds the task, which
        // allocates nothing), naming the field.
        let task = c.validate()?;
        rnnlab_core::limits::size(op, "probe_batch", self.probe_batch, rnnlab_core::limits::MAX_BATCH)?;
        // Then the suite's tighter budget, in u128 (every factor is at most a usize).
        let m = &c.model;
        let over = |what: &str, v: u128, max: u128| -> Result<()> {
            if v > max {
                return Err(Error::config(op, format!("{what} = {v} is over the limit {max}")));
            }
            Ok(())
        };
        over("model.hidden_dim", m.hidden_dim as u128, limits.hidden_dim as u128)?;
        over("model.input_dim", m.input_dim as u128, limits.hidden_dim as u128)?;
        over("model.n_layers", m.n_layers as u128, limits.n_layers as u128)?;
        over("batch_size", c.batch_size as u128, limits.batch as u128)?;
        over("eval_batch", c.eval_batch as u128, limits.batch as u128)?;
        over("probe_batch", self.probe_batch as u128, limits.batch as u128)?;
        over("n_steps", u128::from(c.n_steps), u128::from(limits.n_steps))?;
        let t = DataSource::<f32>::seq_len(&task) as u128;
        over("the task's sequence length", t, limits.seq_len as u128)?;
        let rows = t * (c.batch_size.max(c.eval_batch.min(256)).max(self.probe_batch) as u128);
        let width = 6 * (m.hidden_dim as u128) * (m.n_layers as u128) * if m.bidirectional { 2 } else { 1 };
        over("the estimated cache of one pass (values)", rows * width, limits.cache_values)
    }
}
