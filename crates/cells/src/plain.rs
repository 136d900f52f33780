//! The plain cells — Elman RNN, LSTM, GRU — hand-split for speed on `rnnlab-kernels`, their
//! shared PyTorch-layout parameters, and the same RNN written through the simple one-step trait.

mod gru;
mod lstm;
pub(crate) mod params;
mod rnn;
mod simple_rnn;

pub use gru::{Gru, GruConfig, GruVariant};
pub use lstm::{Lstm, LstmConfig};
pub use rnn::{Rnn, RnnConfig};
pub use simple_rnn::SimpleRnn;
