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

/// `Err(Config)` unless `input_dim` and `hidden_dim` are in `1..=`[`limits::MAX_DIM`] and the
/// weights `[gates·hidden_dim, max(input_dim, hidden_dim)]` fit [`limits::MAX_ELEMENTS`]:
/// checked before anything is drawn, naming the size to change.
pub(crate) fn check_dims(op: &str, gates: usize, input_dim: usize, hidden_dim: usize) -> rnnlab_core::Result<()> {
    use rnnlab_core::limits;
    limits::size(op, "input_dim", input_dim, limits::MAX_DIM)?;
    limits::size(op, "hidden_dim", hidden_dim, limits::MAX_DIM)?;
    let field = if input_dim > hidden_dim { "input_dim" } else { "hidden_dim" };
    limits::checked_elements(op, field, &[gates, hidden_dim, input_dim.max(hidden_dim)]).map(drop)
}
