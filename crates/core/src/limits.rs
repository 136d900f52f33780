//! The stated limits on every size rnnlab allocates from a number the user wrote, and the
//! overflow-checked arithmetic that enforces them before anything is allocated.
//!
//! A size from Rust, a JSON config or a saved `state.json` is checked twice: on its own
//! against the limit of its kind ([`MAX_DIM`], [`MAX_LAYERS`], [`MAX_SEQ_LEN`], [`MAX_BATCH`]),
//! and as a factor of every array it shapes with [`checked_elements`], whose product (computed
//! with overflow-checked multiplication) must stay within [`MAX_ELEMENTS`]. Each check runs in
//! the config's `validate` (or the constructor's first lines), so a typo such as
//! `"hidden_dim": 1000000000` returns an [`Error::Config`] naming the field instead of
//! asking the allocator for terabytes.
//!
//! # Examples
//! ```
//! use rnnlab_core::limits;
//! assert_eq!(limits::checked_elements("ModelConfig", "hidden_dim", &[4 * 64, 64])?, 16_384);
//! let e = limits::checked_elements("ModelConfig", "hidden_dim", &[4 << 20, 1 << 20]).unwrap_err();
//! assert!(e.to_string().contains("hidden_dim"), "{e}");
//! let e = limits::checked_elements("AddingConfig", "seq_len", &[usize::MAX, 2]).unwrap_err();
//! assert!(e.to_string().contains("overflows"), "{e}");
//! # Ok::<(), rnnlab_core::Error>(())
//! ```

use crate::{Error, Result};

/// The largest number of elements of any one array allocated from user-given sizes:
/// 2³⁰ = 1,073,741,824 (4 GiB of `f32`, 8 GiB of `f64`).
pub const MAX_ELEMENTS: usize = 1 << 30;

/// The largest width: `input_dim`, `hidden_dim`, `output_dim` (2²⁰ = 1,048,576). The weight
/// matrices it shapes are bounded by [`MAX_ELEMENTS`] besides.
pub const MAX_DIM: usize = 1 << 20;

/// The largest number of stacked recurrent layers: 1,024.
pub const MAX_LAYERS: usize = 1024;

/// The largest sequence length: a task's steps (the copy task's `delay + 2·n_copy`) and batch
/// normalisation's `time_steps` (2²⁸ = 268,435,456).
pub const MAX_SEQ_LEN: usize = 1 << 28;

/// The largest batch: `batch_size`, `eval_batch`, a probe batch (2²⁴ = 16,777,216).
pub const MAX_BATCH: usize = 1 << 24;

/// `Ok(value)` if `1 <= value <= max`.
///
/// # Errors
/// [`Error::Config`] naming `op` and `field`: "`field` must be at least 1, got 0" or
/// "`field` = v is over the limit of `max`".
pub fn size(op: &str, field: &str, value: usize, max: usize) -> Result<usize> {
    if value == 0 {
        return Err(Error::config(op, format!("{field} must be at least 1, got 0")));
    }
    if value > max {
        return Err(Error::config(op, format!("{field} = {value} is over the limit of {max}")));
    }
    Ok(value)
}

/// The number of elements of an array of shape `dims`, computed with overflow-checked
/// multiplication, if it is at most [`MAX_ELEMENTS`]. `field` is the size the user wrote
/// that shapes the array (the one to change).
///
/// # Errors
/// [`Error::Config`] naming `op` and `field` if the product overflows `usize` or exceeds
/// [`MAX_ELEMENTS`].
pub fn checked_elements(op: &str, field: &str, dims: &[usize]) -> Result<usize> {
    let n = checked_product(dims)
        .ok_or_else(|| Error::config(op, format!("{field}: an array of shape {dims:?} overflows the address space")))?;
    if n > MAX_ELEMENTS {
        return Err(Error::config(
            op,
            format!("{field}: an array of shape {dims:?} has {n} elements, over the limit of {MAX_ELEMENTS}"),
        ));
    }
    Ok(n)
}

/// `a + b` for sizes, as a `Result` naming `field` on overflow.
///
/// # Errors
/// [`Error::Config`] if the sum overflows `usize`.
pub fn checked_add(op: &str, field: &str, a: usize, b: usize) -> Result<usize> {
    a.checked_add(b).ok_or_else(|| Error::config(op, format!("{field}: {a} + {b} overflows")))
}

/// `a · b` for sizes, as a `Result` naming `field` on overflow.
///
/// # Errors
/// [`Error::Config`] if the product overflows `usize`.
pub fn checked_mul(op: &str, field: &str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| Error::config(op, format!("{field}: {a} · {b} overflows")))
}

fn checked_product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_names_the_field() {
        assert_eq!(size("op", "hidden_dim", 64, MAX_DIM).unwrap(), 64);
        let e = size("op", "hidden_dim", 0, MAX_DIM).unwrap_err().to_string();
        assert!(e.contains("hidden_dim must be at least 1"), "{e}");
        let e = size("op", "hidden_dim", MAX_DIM + 1, MAX_DIM).unwrap_err().to_string();
        assert!(e.contains("hidden_dim = 1048577 is over the limit of 1048576"), "{e}");
    }

    #[test]
    fn checked_elements_refuses_overflow_and_the_budget() {
        assert_eq!(checked_elements("op", "f", &[]).unwrap(), 1);
        assert_eq!(checked_elements("op", "f", &[MAX_ELEMENTS]).unwrap(), MAX_ELEMENTS);
        assert!(checked_elements("op", "f", &[MAX_ELEMENTS, 2]).is_err());
        let e = checked_elements("op", "seq_len", &[usize::MAX, 3]).unwrap_err().to_string();
        assert!(e.contains("seq_len") && e.contains("overflows"), "{e}");
        // a zero dimension makes an empty array, whatever the other factors
        assert_eq!(checked_elements("op", "f", &[0, usize::MAX]).unwrap(), 0);
        assert!(checked_add("op", "f", usize::MAX, 1).is_err());
        assert!(checked_mul("op", "f", usize::MAX, 2).is_err());
        assert_eq!(checked_mul("op", "f", 3, 4).unwrap(), 12);
    }
}
