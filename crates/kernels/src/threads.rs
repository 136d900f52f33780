//! How many threads the matrix products of a pass may use.
//!
//! The input projection `X · W_ihᵀ`, `∂x = δ · W_ih` and the weight gradients are cut into
//! ranges of output rows (whole blocks of 4), one per thread (scoped threads, started per
//! product: these products take milliseconds, a start tens of microseconds); for the weight
//! gradients each thread also packs only its own strips of δ. With 2 or more threads, the
//! large per-step products are cut in two column ranges at a 64-byte line, one on a
//! persistent worker thread per cell (`step_worker`). Each output element is computed by the same fused
//! multiply-add chain whichever thread computes it, so **results are bit-identical for every
//! thread count**.

use std::sync::atomic::{AtomicUsize, Ordering};

/// 0 until set or first read.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// The environment variable read when [`set_threads`] was not called: a thread count ≥ 1.
pub const THREADS_ENV: &str = "RNNLAB_THREADS";

/// Sets the number of threads the products of every later pass may use (process-wide; `0` is
/// taken as 1; the per-step products use at most 2). Changes speed only, never results.
///
/// # Examples
/// ```
/// rnnlab_kernels::set_threads(2);
/// assert_eq!(rnnlab_kernels::threads(), 2);
/// rnnlab_kernels::set_threads(1);
/// ```
pub fn set_threads(n: usize) {
    THREADS.store(n.max(1), Ordering::Relaxed);
}

/// The number of threads the products may use: the last [`set_threads`], else the
/// environment variable [`THREADS_ENV`] (`RNNLAB_THREADS`), else 1.
#[inline]
pub fn threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => {
            let n = std::env::var(THREADS_ENV).ok().and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(1).max(1);
            // Another thread may have called `set_threads` meanwhile: keep its value.
            match THREADS.compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => n,
                Err(set) => set,
            }
        }
        n => n,
    }
}
