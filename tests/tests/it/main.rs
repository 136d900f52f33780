//! Cross-crate flows: a model built from several crates, checked end to end.

mod alloc_counter;
mod bidirectional_weights;
mod checkpoint_crash;
mod custom_cells;
mod determinism;
mod hostile_inputs;
mod limits;
mod memory;
mod model_gradients;
mod training_step;
