#![doc = include_str!("../README.md")]

mod batch_norm;
mod batch_norm_kernels;
mod checks;
mod layer_norm;
mod layer_norm_kernels;

pub use batch_norm::{BatchNorm, BatchNormCache, BatchNormConfig};
pub use batch_norm_kernels::{
    batch_norm_backward_eval, batch_norm_backward_eval_add, batch_norm_backward_input, batch_norm_backward_input_add,
    batch_norm_forward_eval, batch_norm_forward_train, batch_norm_param_grads, batch_norm_update_running,
};
pub use layer_norm::{LayerNorm, LayerNormCache, LayerNormConfig};
pub use layer_norm_kernels::{
    layer_norm_backward_input, layer_norm_backward_input_add, layer_norm_forward, layer_norm_forward_inplace,
    layer_norm_param_grads,
};
