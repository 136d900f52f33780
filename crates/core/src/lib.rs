#![doc = include_str!("../README.md")]

mod cell;
mod error;
mod float;
mod gradcheck;
mod layer;
mod param;
mod probe;
mod rng;
pub mod validate;

pub use cell::{Cell, SeqRefs, State, StepRefs};
pub use error::{Error, Result};
pub use float::Float;
pub use gradcheck::{GradCheck, GradCheckReport, Mismatch, NamedInput, check_fn, check_layer};
pub use layer::Layer;
pub use param::{Param, ParamView, ParamViewMut, Parameterized, visit_prefixed, visit_prefixed_mut};
pub use probe::{GateMean, Probe, Saturation};
pub use rng::{Rng, seeded_rng};
