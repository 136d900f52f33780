//! The unrollers' buffer pool: the engine's [`rnnlab_kernels::Pool`], filled with NaN on every
//! take in this crate's unit tests so that a read of a value nobody wrote shows up in every
//! gradient check.

use ndarray::Array2;
use rnnlab_core::{Float, Result};

/// [`rnnlab_kernels::Pool`], NaN-filled under `cfg(test)`. Cloning gives an empty pool; pools
/// never affect equality.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Pool<F>(rnnlab_kernels::Pool<F>);

impl<F: Float> Default for Pool<F> {
    fn default() -> Self {
        Self(if cfg!(test) { rnnlab_kernels::Pool::nan_filled() } else { rnnlab_kernels::Pool::default() })
    }
}

impl<F: Float> Pool<F> {
    /// A `[rows, cols]` array whose contents are unspecified ([`rnnlab_kernels::Pool::take`]).
    pub(crate) fn take(&mut self, rows: usize, cols: usize) -> Result<Array2<F>> {
        self.0.take(rows, cols)
    }

    /// Gives `a`'s buffer back for later takes.
    pub(crate) fn put<D: ndarray::Dimension>(&mut self, a: ndarray::Array<F, D>) {
        self.0.put(a);
    }
}
