#![doc = include_str!("../README.md")]

mod cell;
mod checkpoint;
mod config;
mod diagnostics;
mod inspector;
mod loss;
mod model;
mod observer;
mod safetensors;
mod stack;
mod summary;
mod trainer;
mod weights;

pub use cell::{AnyCell, CellConfig, CheckpointCell, CustomCellSpec, GruSpec, LstmSpec, RnnSpec};
pub use checkpoint::{CHECKPOINT_DIR_PREFIX, CHECKPOINT_FORMAT_VERSION, MODEL_FILE, STATE_FILE, latest_checkpoint};
pub use config::{DEFAULT_EVAL_SEED, TrainConfig};
pub use diagnostics::{DiagnosticsRecorder, StepReport};
pub use inspector::{Inspector, NoInspector, StepView};
pub use loss::{LossKind, LossValue, mse, softmax_cross_entropy};
pub use model::{EVAL_CHUNK, GradOptions, LossAndGrad, ModelConfig, ModelGrads, ReadoutConfig, SeqModel};
pub use observer::{Control, EvalMetrics, Observer, Progress, Recorder, Silent, StepMetrics};
pub use safetensors::{
    DtypePolicy, MAX_HEADER_BYTES, read_state_dict, read_state_dict_file, state_dict_to_safetensors,
};
pub use stack::{Stack, StackCache, StackForward};
pub use summary::{Divergence, DivergenceReason, RECENT_LOSSES, RunSummary};
pub use trainer::Trainer;
pub use weights::{
    META_DTYPE, META_MODEL, load_torch_rnn_weights, load_torch_rnn_weights_file, torch_name, torch_rnn_weights_bytes,
    torch_state_dict, write_atomic,
};
