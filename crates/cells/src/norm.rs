//! The normalised cells (layer norm, per-time-step batch norm) on the plain cells' parameters.
//!
//! Imports go one way: `config` (the settings) ← `unit` (one normalisation with its
//! parameters and running statistics) ← `proj` (the normalised projections and their packed
//! products, shared by the three cells) ← `rnn`, `lstm`, `gru`.

mod config;
mod gru;
mod lstm;
mod proj;
mod rnn;
#[cfg(test)]
mod tests;
mod unit;

pub use config::{NormConfig, NormKind, NormPlacement};
pub use gru::{NormGru, NormGruConfig};
pub use lstm::{NormLstm, NormLstmConfig};
pub use rnn::{NormRnn, NormRnnConfig};
