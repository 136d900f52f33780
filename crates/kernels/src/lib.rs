#![doc = include_str!("../README.md")]

mod grad_pack;
mod loops;
mod packed;
mod packed_weight;
mod pool;
mod step_worker;
mod threads;

pub use grad_pack::GradPack;
pub use loops::{add_col_sums, sigmoid_inplace, tanh_inplace};
pub use packed_weight::PackedWeight;
pub use pool::Pool;
pub use threads::{THREADS_ENV, set_threads, threads};
