#![doc = include_str!("../README.md")]

mod cell;
mod error;
mod float;
mod gradcheck;
mod layer;
pub mod limits;
mod param;
mod probe;
mod rng;
pub mod serde_strict;
mod simple;
mod state_dict;
mod torch_names;
pub mod validate;

pub use cell::{Cell, SeqRefs, State, StepRefs};
pub use error::{Error, Result};
pub use float::Float;
pub use gradcheck::{GradCheck, GradCheckReport, Mismatch, NamedInput, check_fn, check_layer};
pub use layer::Layer;
pub use param::{Param, ParamView, ParamViewMut, Parameterized, visit_prefixed, visit_prefixed_mut};
pub use probe::{GateMean, Probe, Saturation};
pub use rng::{Rng, seeded_rng};
pub use simple::{Simple, SimpleCell, SimpleStep};
pub use state_dict::{MAX_LISTED_NAMES, StateDict, list_names};
pub use torch_names::{TORCH_RNN_PARAMS, from_torch, to_torch, torch_round_trips};
