#![doc = include_str!("../README.md")]

mod gru;
mod kernels;
mod linear;
mod lstm;
mod params;
mod pool;
mod recurrent;
mod rnn;
#[cfg(test)]
mod tests;

pub use gru::{Gru, GruConfig, GruVariant};
pub use linear::{Linear, LinearConfig};
pub use lstm::{Lstm, LstmConfig};
pub use recurrent::{Backward, BackwardOptions, Forward, OutputGrad, Recurrent, SeqCache, StepGrads, TruncatedRun};
pub use rnn::{Rnn, RnnConfig};
