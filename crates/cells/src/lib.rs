#![doc = include_str!("../README.md")]

mod linear;
#[cfg(test)]
mod misuse_tests;
mod norm;
mod plain;
mod probe;
#[cfg(test)]
mod tests;
mod unroll;
mod views;

pub use linear::{Linear, LinearConfig};
pub use norm::{
    NormConfig, NormGru, NormGruConfig, NormKind, NormLstm, NormLstmConfig, NormPlacement, NormRnn, NormRnnConfig,
};
pub use plain::{Gru, GruConfig, GruVariant, Lstm, LstmConfig, Rnn, RnnConfig, SimpleRnn};
pub use rnnlab_kernels::{THREADS_ENV, set_threads, threads};
pub use unroll::{
    Backward, BackwardOptions, BiBackward, BiCache, BiForward, Bidirectional, Direction, Forward, OutputGrad,
    Recurrent, SeqCache, StepGrads, TruncatedRun, check_recurrent,
};
