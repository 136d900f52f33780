#![doc = include_str!("../README.md")]

mod function;
mod kind;
mod layer;
mod output_derivative;
mod slices;
#[cfg(test)]
mod tests;

pub use function::ActivationFn;
pub use kind::{ActivationKind, DEFAULT_ELU_ALPHA, DEFAULT_LEAKY_SLOPE, SELU_ALPHA, SELU_LAMBDA};
pub use layer::Activation;
pub use output_derivative::OutputDerivative;
