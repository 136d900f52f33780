//! `use rnnlab::prelude::*;`: the types a program needs to build, train and diagnose a
//! recurrent model, and the traits to write a cell or an activation of its own.
//!
//! What it leaves out is one path away: `rnnlab::cells::NormLstmConfig`,
//! `rnnlab::optim::schedule::LrSchedule`, `rnnlab::diagnostics::jacobian_analysis`, … Names
//! that two crates share are left out too (the diagnostics' `LossKind`, the suite's `Verdict`
//! and `Progress`, the optimizer's `StepReport`); the prelude's `LossKind` is the trainer's.
//!
//! # Examples
//! ```
//! use rnnlab::prelude::*;
//!
//! let task = AddingConfig::new(10);
//! let model = ModelConfig::for_task(&task.build()?, 8, CellConfig::gru());
//! let config = TrainConfig::new(task.into(), model, AdamConfig::new(1e-2).into()).with_n_steps(5);
//! let summary = Trainer::<f32>::new(config)?.run(&mut Silent)?;
//! assert_eq!(summary.steps, 5);
//! # Ok::<(), rnnlab::prelude::Error>(())
//! ```

// Numbers, errors, randomness and the traits a new cell is written against.
pub use rnnlab_core::{
    Cell, Error, Float, GradCheck, GradCheckReport, Param, ParamView, ParamViewMut, Parameterized, Result, Rng, Simple,
    SimpleCell, SimpleStep, State, seeded_rng,
};

// Activations and initialisers.
pub use rnnlab_activations::{ActivationFn, ActivationKind};
pub use rnnlab_init::Init;

// Cells and the unroller.
pub use rnnlab_cells::{
    BackwardOptions, Gru, GruConfig, GruVariant, Linear, LinearConfig, Lstm, LstmConfig, NormConfig, OutputGrad,
    Recurrent, Rnn, RnnConfig, SimpleRnn, check_recurrent,
};

// Optimizers and clipping.
pub use rnnlab_optim::{
    AdagradConfig, AdamConfig, AdamWConfig, ClipConfig, NonFinitePolicy, OptimizerConfig, RmsPropConfig, SgdConfig,
};

// Tasks.
pub use rnnlab_tasks::{
    AddingConfig, ArrayData, Batch, CopyMemoryConfig, DigitsConfig, Task, TaskConfig, TemporalOrderConfig,
};

// Models, training, checkpoints and PyTorch's weights.
pub use rnnlab_train::{
    CellConfig, DiagnosticsRecorder, DtypePolicy, LossKind, ModelConfig, Observer, Progress, Recorder, RunSummary,
    SeqModel, Silent, TrainConfig, Trainer, load_torch_rnn_weights, load_torch_rnn_weights_file,
    torch_rnn_weights_bytes,
};

// Diagnostics.
pub use rnnlab_diagnostics::{DiagnoseConfig, Report, Verdict, VerdictKind, diagnose};
