//! Shape checks shared by the cells' `from_params` constructors.

use ndarray::{Array1, Array2};
use rnnlab_core::{Error, Result};

/// Checks PyTorch-layout parameters of a cell with `gates` gate blocks:
/// `w_ih` `[gates·H, I]`, `w_hh` `[gates·H, H]`, `b_ih`, `b_hh` `[gates·H]`, with H, I ≥ 1.
pub(crate) fn check_param_shapes<F>(
    op: &str,
    gates: usize,
    w_ih: &Array2<F>,
    w_hh: &Array2<F>,
    b_ih: &Array1<F>,
    b_hh: &Array1<F>,
) -> Result<()> {
    let h = w_hh.ncols();
    let i = w_ih.ncols();
    if h == 0 || i == 0 {
        return Err(Error::config(op, format!("hidden_dim and input_dim must be at least 1, got {h} and {i}")));
    }
    let g = gates * h;
    let ok = w_ih.nrows() == g && w_hh.nrows() == g && b_ih.len() == g && b_hh.len() == g;
    if !ok {
        return Err(Error::shape(
            op,
            format!("w_ih [{g}, I], w_hh [{g}, {h}], b_ih [{g}], b_hh [{g}] ({gates} gate blocks of H = {h})"),
            format!(
                "w_ih {:?}, w_hh {:?}, b_ih {:?}, b_hh {:?}",
                w_ih.shape(),
                w_hh.shape(),
                b_ih.shape(),
                b_hh.shape()
            ),
        ));
    }
    Ok(())
}

/// An ndarray shape error inside a cell, as an rnnlab error.
pub(crate) fn shape_err(op: &str, e: ndarray::ShapeError) -> Error {
    Error::shape(op, "buffers of the cell's declared sizes", e.to_string())
}
