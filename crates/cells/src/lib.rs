#![doc = include_str!("../README.md")]

#[cfg(test)]
mod bidir_tests;
mod bidirectional;
mod check;
mod gru;
mod kernels;
mod linear;
mod lstm;
mod norm_config;
mod norm_gru;
mod norm_lstm;
mod norm_proj;
mod norm_rnn;
#[cfg(test)]
mod norm_tests;
mod norm_unit;
mod packed;
mod params;
mod pool;
mod probe;
mod recurrent;
mod rnn;
mod simple_rnn;
mod step_worker;
#[cfg(test)]
mod tests;
mod threads;

pub use bidirectional::{BiBackward, BiCache, BiForward, Bidirectional, Direction};
pub use check::check_recurrent;
pub use gru::{Gru, GruConfig, GruVariant};
pub use linear::{Linear, LinearConfig};
pub use lstm::{Lstm, LstmConfig};
pub use norm_config::{NormConfig, NormKind, NormPlacement};
pub use norm_gru::{NormGru, NormGruConfig};
pub use norm_lstm::{NormLstm, NormLstmConfig};
pub use norm_rnn::{NormRnn, NormRnnConfig};
pub use recurrent::{Backward, BackwardOptions, Forward, OutputGrad, Recurrent, SeqCache, StepGrads, TruncatedRun};
pub use rnn::{Rnn, RnnConfig};
pub use simple_rnn::SimpleRnn;
pub use threads::{THREADS_ENV, set_threads, threads};
