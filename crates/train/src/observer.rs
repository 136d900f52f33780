//! The [`Observer`] the trainer reports to after every step and evaluation, and three
//! ready-made ones: [`Silent`], [`Progress`] (a line every k steps) and [`Recorder`].

use rnnlab_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::RunSummary;

/// Whether the run goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// Keep training.
    Continue,
    /// End the run after this step (the summary says `stopped_early`); `run` can be called
    /// again to continue.
    Stop,
}

/// What one training step did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Steps taken so far, this one included (1 after the first step).
    pub step: u64,
    /// The training loss of this step's batch.
    pub loss: f64,
    /// The global L2 norm of the gradient before clipping (NaN for a skipped step).
    pub pre_clip_norm: f64,
    /// Whether clipping changed the gradient.
    pub clip_fired: bool,
    /// The learning rate used.
    pub lr: f64,
    /// Whether the update was skipped for a non-finite gradient (`NonFinitePolicy::SkipStep`).
    pub skipped: bool,
    /// Every `telemetry_every` steps (from the first): per layer, per time step t,
    /// ‖∂L/∂h_t‖₂ over the batch; `None` otherwise.
    pub step_grad_norms: Option<Vec<Vec<f64>>>,
}

/// One evaluation on the held-out set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Steps taken when it was made.
    pub step: u64,
    /// The loss on the held-out set.
    pub loss: f64,
    /// The accuracy on it (`rnnlab_tasks::Targets::accuracy`).
    pub accuracy: f64,
    /// The task's memoryless baseline loss, for reference.
    pub baseline_loss: f64,
}

/// Receives the trainer's metrics; every method has a do-nothing default.
///
/// # Examples
/// ```
/// use rnnlab_train::{Control, Observer, StepMetrics};
/// /// Stops once the training loss is below 0.01.
/// struct StopBelow(f64);
/// impl Observer for StopBelow {
///     fn on_step(&mut self, m: &StepMetrics) -> Control {
///         if m.loss < self.0 { Control::Stop } else { Control::Continue }
///     }
/// }
/// let _observer = StopBelow(0.01);
/// ```
pub trait Observer {
    /// After every step.
    fn on_step(&mut self, _metrics: &StepMetrics) -> Control {
        Control::Continue
    }

    /// After every evaluation.
    fn on_eval(&mut self, _metrics: &EvalMetrics) -> Control {
        Control::Continue
    }

    /// Once, when `run` returns its summary.
    fn on_end(&mut self, _summary: &RunSummary) {}
}

/// Observes nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Observer for Silent {}

/// Prints a line to stdout every `every` steps, after each evaluation and at the end.
#[derive(Clone, Debug)]
pub struct Progress {
    every: u64,
    label: String,
}

impl Progress {
    /// A progress printer with a label in front of each line.
    ///
    /// # Errors
    /// [`Error::Config`] for `every = 0`.
    pub fn new(label: &str, every: u64) -> Result<Self> {
        if every == 0 {
            return Err(Error::config("Progress::new", "every must be at least 1, got 0"));
        }
        Ok(Self { every, label: label.to_string() })
    }
}

impl Observer for Progress {
    fn on_step(&mut self, m: &StepMetrics) -> Control {
        if m.step % self.every == 0 {
            println!(
                "[{}] step {:>6}  loss {:.5}  |g| {:.3e}{}  lr {:.2e}",
                self.label,
                m.step,
                m.loss,
                m.pre_clip_norm,
                if m.clip_fired { " (clipped)" } else { "" },
                m.lr
            );
        }
        Control::Continue
    }

    fn on_eval(&mut self, m: &EvalMetrics) -> Control {
        println!(
            "[{}] eval at {:>6}  loss {:.5} (baseline {:.4})  accuracy {:.3}",
            self.label, m.step, m.loss, m.baseline_loss, m.accuracy
        );
        Control::Continue
    }

    fn on_end(&mut self, s: &RunSummary) {
        println!("[{}] {}", self.label, s);
    }
}

/// Keeps every step's and evaluation's metrics (for plots and tests).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recorder {
    /// All step metrics, in order.
    pub steps: Vec<StepMetrics>,
    /// All evaluations, in order.
    pub evals: Vec<EvalMetrics>,
    /// Stop after this many steps have been recorded (`None`: never).
    pub stop_after: Option<usize>,
}

impl Observer for Recorder {
    fn on_step(&mut self, m: &StepMetrics) -> Control {
        self.steps.push(m.clone());
        match self.stop_after {
            Some(n) if self.steps.len() >= n => Control::Stop,
            _ => Control::Continue,
        }
    }

    fn on_eval(&mut self, m: &EvalMetrics) -> Control {
        self.evals.push(m.clone());
        Control::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_rejects_zero_period() {
        assert!(matches!(Progress::new("x", 0), Err(Error::Config { .. })));
        assert!(Progress::new("x", 1).is_ok());
    }

    #[test]
    fn recorder_stops_after_n() {
        let m = StepMetrics {
            step: 1,
            loss: 1.0,
            pre_clip_norm: 1.0,
            clip_fired: false,
            lr: 0.1,
            skipped: false,
            step_grad_norms: None,
        };
        let mut r = Recorder { stop_after: Some(2), ..Recorder::default() };
        assert_eq!(r.on_step(&m), Control::Continue);
        assert_eq!(r.on_step(&m), Control::Stop);
        assert_eq!(Silent.on_step(&m), Control::Continue);
    }
}
