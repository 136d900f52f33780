//! A free list of buffers, so that repeated training steps reuse their big arrays instead of
//! asking the allocator (and the kernel, whose page faults cost 15% of a step) for new ones.

use ndarray::Array2;
use rnnlab_core::{Error, Float, Result};

/// Buffers given back after a pass (e.g. by `Recurrent::recycle` in `rnnlab-cells`), reused
/// by later passes. Cloning gives an empty pool (with the same NaN filling); pools never
/// affect equality.
///
/// # Examples
/// ```
/// use rnnlab_kernels::Pool;
///
/// let mut pool = Pool::<f32>::default();
/// let mut buf = pool.take(32, 128)?; // contents unspecified: overwrite before reading
/// buf.fill(0.0);
/// let ptr = buf.as_ptr();
/// pool.put(buf);
/// assert_eq!(pool.take(16, 64)?.as_ptr(), ptr); // the same memory, reused
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Default)]
pub struct Pool<F> {
    free: Vec<Vec<F>>,
    /// Whether [`Pool::take`] fills its buffers with NaN.
    nan_fill: bool,
}

/// At most this many buffers are kept (a pass uses about 8 per layer).
const MAX_FREE: usize = 64;

impl<F: Float> Pool<F> {
    /// An empty pool whose [`Pool::take`] fills every buffer with NaN: for tests, so that a read
    /// of a value nobody wrote shows up in every gradient check.
    pub fn nan_filled() -> Self {
        Self { free: Vec::new(), nan_fill: true }
    }

    /// A `[rows, cols]` array whose contents are unspecified (left from an earlier use): for
    /// buffers the caller overwrites completely before reading them, so no time goes into
    /// zeroing (NaN for a [`Pool::nan_filled`] pool).
    ///
    /// # Errors
    /// `Error::Config` if `rows · cols` overflows `usize`.
    pub fn take(&mut self, rows: usize, cols: usize) -> Result<Array2<F>> {
        let Some(len) = rows.checked_mul(cols) else {
            return Err(Error::config(
                "Pool::take",
                format!("a [{rows}, {cols}] buffer has more elements than usize holds"),
            ));
        };
        if len == 0 {
            // An empty array needs no buffer; taking one would strand it (e.g. a cell with no
            // recurrent-path gradient would take a big buffer for its empty `drec` every pass).
            return Ok(Array2::zeros((rows, cols)));
        }
        let best = self.free.iter().enumerate().filter(|(_, v)| v.capacity() >= len).min_by_key(|(_, v)| v.capacity());
        let mut v = match best {
            Some((i, _)) => self.free.swap_remove(i),
            None => Vec::with_capacity(len),
        };
        if v.len() >= len {
            v.truncate(len);
        } else {
            v.resize(len, F::zero());
        }
        if self.nan_fill {
            v.fill(F::nan());
        }
        Ok(Self::shaped(v, rows, cols))
    }

    /// `v` (exactly `rows · cols` long) as an array.
    fn shaped(v: Vec<F>, rows: usize, cols: usize) -> Array2<F> {
        // Cannot fail: the length is `rows · cols` by construction.
        Array2::from_shape_vec((rows, cols), v).unwrap_or_else(|_| Array2::zeros((rows, cols)))
    }

    /// Gives `a`'s buffer back for later [`Pool::take`]s (at most 64 are kept; empty arrays
    /// are dropped).
    pub fn put<D: ndarray::Dimension>(&mut self, a: ndarray::Array<F, D>) {
        if self.free.len() < MAX_FREE && !a.is_empty() {
            self.free.push(a.into_raw_vec_and_offset().0);
        }
    }
}

impl<F> Clone for Pool<F> {
    fn clone(&self) -> Self {
        Self { free: Vec::new(), nan_fill: self.nan_fill }
    }
}

impl<F> PartialEq for Pool<F> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<F> std::fmt::Debug for Pool<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} free buffers)", self.free.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_takes_leave_the_free_buffers_alone() {
        let mut pool = Pool::<f32>::default();
        let buf = Array2::<f32>::zeros((4, 5));
        let ptr = buf.as_ptr();
        pool.put(buf);
        // e.g. the `drec` of a cell without a recurrent-path gradient, or an empty cache
        let empty = pool.take(7, 0).expect("small");
        assert_eq!(empty.dim(), (7, 0));
        assert_eq!(pool.free.len(), 1);
        // the next real request gets the recycled buffer, not a new one
        let again = pool.take(2, 10).expect("small");
        assert_eq!(again.as_ptr(), ptr);
        assert!(pool.free.is_empty());
        // empty arrays are not kept
        pool.put(empty);
        assert!(pool.free.is_empty());
    }

    #[test]
    fn nan_filling_survives_a_clone_and_overflow_is_an_error() {
        let mut pool = Pool::<f64>::nan_filled().clone();
        let mut buf = pool.take(2, 3).expect("small");
        assert!(buf.iter().all(|v| v.is_nan()));
        buf.fill(1.0);
        pool.put(buf);
        assert!(pool.take(3, 2).expect("small").iter().all(|v| v.is_nan()));
        assert!(matches!(pool.take(usize::MAX, 2), Err(Error::Config { .. })));
    }
}
