#![doc = include_str!("../README.md")]

mod adagrad;
mod adam;
mod adamw;
pub mod clip;
mod config;
mod finite;
mod norm;
mod optimizer;
mod rmsprop;
pub mod schedule;
mod sgd;
#[cfg(test)]
mod testing;

pub use adagrad::{Adagrad, AdagradConfig};
pub use adam::{Adam, AdamConfig};
pub use adamw::{AdamW, AdamWConfig};
pub use clip::{ClipConfig, ClipReport, ParamClip, clip};
pub use config::OptimizerConfig;
pub use finite::{FiniteOutcome, NonFiniteCounter, NonFiniteEntry, NonFinitePolicy, check_finite};
pub use optimizer::{Optimizer, OptimizerState, ParamState, StepReport};
pub use rmsprop::{RmsProp, RmsPropConfig};
pub use schedule::LrSchedule;
pub use sgd::{Sgd, SgdConfig};
