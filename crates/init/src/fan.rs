//! Fan-in and fan-out: which side of a weight matrix a variance-preserving initialiser counts.

use serde::{Deserialize, Serialize};

/// Which fan a Kaiming initialiser preserves the variance of.
///
/// Fans always come from the shape: a weight `[rows, cols] = [out, in]` (PyTorch's layout,
/// `y = W x`) has `fan_in = cols` and `fan_out = rows`. `FanIn` keeps the forward activations'
/// variance, `FanOut` the backward gradients' (He et al. 2015, §2.2).
///
/// # Examples
/// ```
/// use rnnlab_init::FanMode;
/// assert_eq!(serde_json::to_string(&FanMode::FanIn)?, r#""fan_in""#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FanMode {
    /// The number of inputs to a unit: `cols`.
    FanIn,
    /// The number of outputs of a unit: `rows`.
    FanOut,
}

impl FanMode {
    /// The chosen fan of a `[rows, cols]` weight.
    pub(crate) fn fan(self, rows: usize, cols: usize) -> usize {
        match self {
            FanMode::FanIn => cols,
            FanMode::FanOut => rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fans_come_from_out_in_layout() {
        assert_eq!(FanMode::FanIn.fan(3, 5), 5);
        assert_eq!(FanMode::FanOut.fan(3, 5), 3);
    }
}
