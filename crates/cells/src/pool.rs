//! A free list of buffers, so that repeated training steps reuse their big arrays instead of
//! asking the allocator (and the kernel, whose page faults cost 15% of a step) for new ones.

use ndarray::Array2;
use rnnlab_core::Float;

/// Buffers given back by [`crate::Recurrent::recycle`], reused by later passes.
/// Cloning gives an empty pool; pools never affect equality.
#[derive(Default)]
pub(crate) struct Pool<F> {
    free: Vec<Vec<F>>,
}

/// At most this many buffers are kept (a pass uses about 8 per layer).
const MAX_FREE: usize = 64;

impl<F: Float> Pool<F> {
    /// A `[rows, cols]` array whose contents are unspecified (left from an earlier use): for
    /// buffers the caller overwrites completely before reading them, so no time goes into
    /// zeroing. In this crate's unit tests the contents are NaN, so that a read of a value
    /// nobody wrote shows up in every gradient check.
    pub(crate) fn take(&mut self, rows: usize, cols: usize) -> Array2<F> {
        let len = rows * cols;
        if len == 0 {
            // An empty array needs no buffer; taking one would strand it (e.g. a cell with no
            // recurrent-path gradient would take a big buffer for its empty `drec` every pass).
            return Array2::zeros((rows, cols));
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
        if cfg!(test) {
            v.fill(F::nan());
        }
        Self::shaped(v, rows, cols)
    }

    /// `v` (exactly `rows · cols` long) as an array.
    fn shaped(v: Vec<F>, rows: usize, cols: usize) -> Array2<F> {
        // Cannot fail: the length is `rows · cols` by construction.
        Array2::from_shape_vec((rows, cols), v).unwrap_or_else(|_| Array2::zeros((rows, cols)))
    }

    pub(crate) fn put<D: ndarray::Dimension>(&mut self, a: ndarray::Array<F, D>) {
        if self.free.len() < MAX_FREE && !a.is_empty() {
            self.free.push(a.into_raw_vec_and_offset().0);
        }
    }
}

impl<F> Clone for Pool<F> {
    fn clone(&self) -> Self {
        Self { free: Vec::new() }
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
        let empty = pool.take(7, 0);
        assert_eq!(empty.dim(), (7, 0));
        assert_eq!(pool.free.len(), 1);
        // the next real request gets the recycled buffer, not a new one
        let again = pool.take(2, 10);
        assert_eq!(again.as_ptr(), ptr);
        assert!(pool.free.is_empty());
        // empty arrays are not kept
        pool.put(empty);
        assert!(pool.free.is_empty());
    }
}
