#![doc = include_str!("../README.md")]

pub use rnnlab_activations as activations;
pub use rnnlab_cells as cells;
pub use rnnlab_core as core;
pub use rnnlab_diagnostics as diagnostics;
pub use rnnlab_init as init;
pub use rnnlab_kernels as kernels;
pub use rnnlab_norm as norm;
pub use rnnlab_optim as optim;
pub use rnnlab_suite as suite;
pub use rnnlab_tasks as tasks;
pub use rnnlab_train as train;

/// The `ndarray` version rnnlab's APIs take and return (`Array3` inputs `[time, batch,
/// input_dim]`, parameter arrays), so that a user needs no second, mismatched copy.
pub use ndarray;

pub mod prelude;
