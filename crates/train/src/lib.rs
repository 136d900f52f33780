#![doc = include_str!("../README.md")]

mod cell;
mod checkpoint;
mod config;
mod loss;
mod model;
mod observer;
mod safetensors;
mod summary;
mod trainer;
mod weights;

pub use cell::{AnyCell, CellConfig, CheckpointCell, CustomCellSpec, GruSpec, LstmSpec, RnnSpec};
pub use checkpoint::{CHECKPOINT_FORMAT_VERSION, MODEL_FILE, STATE_FILE};
pub use config::{DEFAULT_EVAL_SEED, TrainConfig};
pub use loss::{LossKind, LossValue, mse, softmax_cross_entropy};
pub use model::{EVAL_CHUNK, GradOptions, LossAndGrad, ModelConfig, ModelGrads, ReadoutConfig, SeqModel};
pub use observer::{Control, EvalMetrics, Observer, Progress, Recorder, Silent, StepMetrics};
pub use safetensors::MAX_HEADER_BYTES;
pub use summary::{Divergence, DivergenceReason, RECENT_LOSSES, RunSummary};
pub use trainer::Trainer;
pub use weights::{META_DTYPE, META_MODEL, torch_name, write_atomic};
