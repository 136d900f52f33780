#![doc = include_str!("../README.md")]

mod adding;
mod batch;
mod config;
mod copy_memory;
mod data;
mod digits;
mod optdigits;
mod shuffle;
mod task;
mod temporal_order;

pub use adding::{Adding, AddingConfig};
pub use batch::{Batch, REGRESSION_TOLERANCE, TargetKind, Targets};
pub use config::{AnyTask, TaskConfig};
pub use copy_memory::{COPY_BLANK, COPY_DELIMITER, COPY_SYMBOLS, CopyMemory, CopyMemoryConfig};
pub use data::{ArrayData, DataSource, DataSpec};
pub use digits::{
    DIGITS_N_TEST, DIGITS_N_TRAIN, DIGITS_PERMUTATION_SEED, DIGITS_SPLIT_SEED, DigitsConfig, DigitsLayout,
    SequentialDigits, Split,
};
pub use task::Task;
pub use temporal_order::{ORDER_A, ORDER_B, TemporalOrder, TemporalOrderConfig};
