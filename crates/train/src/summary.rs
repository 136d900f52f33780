//! [`RunSummary`], what a run reached, and [`Divergence`], the evidence of a run that blew up.

use std::fmt;

use rnnlab_optim::NonFiniteCounter;
use serde::{Deserialize, Serialize};

use crate::EvalMetrics;

/// Why a run was declared diverged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DivergenceReason {
    /// The training loss was NaN or ±∞.
    NonFiniteLoss,
    /// The training loss exceeded `factor` times the first step's loss.
    LossAboveFactor {
        /// The configured `divergence_factor`.
        factor: f64,
    },
    /// A gradient held NaN or ±∞ under `NonFinitePolicy::Error`.
    NonFiniteGradient {
        /// Which parameter and entry, from `check_finite`.
        detail: String,
    },
}

/// The evidence of a diverged run. The step that diverged made no update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    /// The 0-based index of the step that diverged (= the steps taken before it).
    pub step: u64,
    /// Its training loss.
    pub loss: f64,
    /// The first step's training loss.
    pub initial_loss: f64,
    /// Why.
    pub reason: DivergenceReason,
    /// The training losses of up to the last [`RECENT_LOSSES`] steps, the diverged one last.
    pub recent_losses: Vec<f64>,
}

/// How many recent losses a [`Divergence`] keeps.
pub const RECENT_LOSSES: usize = 16;

/// What a call of `Trainer::run` reached.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Steps taken in total (over resumes).
    pub steps: u64,
    /// The first step's training loss.
    pub initial_loss: Option<f64>,
    /// The last training loss.
    pub final_train_loss: Option<f64>,
    /// The last evaluation (made at the end of the run unless it diverged).
    pub final_eval: Option<EvalMetrics>,
    /// The evaluation with the lowest loss.
    pub best_eval: Option<EvalMetrics>,
    /// The task's memoryless baseline loss.
    pub baseline_loss: f64,
    /// `Some` if the run diverged.
    pub diverged: Option<Divergence>,
    /// Whether an observer stopped the run before `n_steps`.
    pub stopped_early: bool,
    /// Non-finite gradient checks over the run.
    pub non_finite: NonFiniteCounter,
    /// Wall time of this call, in seconds.
    pub wall_time_s: f64,
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} steps in {:.1} s", self.steps, self.wall_time_s)?;
        if let Some(l) = self.final_train_loss {
            write!(f, ", train loss {l:.5}")?;
        }
        if let Some(e) = &self.final_eval {
            write!(f, ", eval loss {:.5} (baseline {:.4}), accuracy {:.3}", e.loss, self.baseline_loss, e.accuracy)?;
        }
        if let Some(e) = &self.best_eval {
            write!(f, ", best eval loss {:.5} at step {}", e.loss, e.step)?;
        }
        if let Some(d) = &self.diverged {
            write!(
                f,
                ", DIVERGED at step {} (loss {:.4e}, initial {:.4e}, {:?})",
                d.step, d.loss, d.initial_loss, d.reason
            )?;
        }
        if self.stopped_early {
            write!(f, ", stopped early")?;
        }
        Ok(())
    }
}
