//! The unrollers: [`Recurrent`] runs any `Cell` over time (stacked, full or truncated BPTT, with
//! per-step telemetry), [`Bidirectional`] runs a forward and a reverse one per layer, and
//! [`check_recurrent`] checks a cell's gradients through them.

#[cfg(test)]
mod bidir_tests;
mod bidirectional;
mod check;
mod pool;
mod recurrent;

pub use bidirectional::{BiBackward, BiCache, BiForward, Bidirectional, Direction};
pub use check::check_recurrent;
pub use recurrent::{Backward, BackwardOptions, Forward, OutputGrad, Recurrent, SeqCache, StepGrads, TruncatedRun};
