//! The four PyTorch-layout parameters shared by the plain cells, and their shape checks.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut2, Ix1, Ix2};
use rnnlab_core::{Error, Float, Param, ParamView, ParamViewMut, Result};
use rnnlab_kernels::{GradPack, PackedWeight};
use serde::{Deserialize, Serialize};

/// `w_ih` `[gates·H, I]`, `w_hh` `[gates·H, H]`, `b_ih`, `b_hh` `[gates·H]` — PyTorch's layout,
/// visited in this order under these names. Cells embed it with `#[serde(flatten)]`, so their
/// serialised form lists the four directly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "F: Float")]
pub(crate) struct GateParams<F: Float> {
    pub(crate) w_ih: Param<F, Ix2>,
    pub(crate) w_hh: Param<F, Ix2>,
    pub(crate) b_ih: Param<F, Ix1>,
    pub(crate) b_hh: Param<F, Ix1>,
    /// `w_ih` packed by [`GateParams::project`] for the input products of the same pass.
    #[serde(skip)]
    packed_ih: PackedWeight<F>,
    /// The packing buffer of the weight-gradient products.
    #[serde(skip)]
    grads: GradPack<F>,
}

impl<F: Float> GateParams<F> {
    /// Checks the shapes for `gates` gate blocks (see [`check_param_shapes`]) and wraps them.
    pub(crate) fn new(
        op: &str,
        gates: usize,
        w_ih: Array2<F>,
        w_hh: Array2<F>,
        b_ih: Array1<F>,
        b_hh: Array1<F>,
    ) -> Result<Self> {
        check_param_shapes(op, gates, &w_ih, &w_hh, &b_ih, &b_hh)?;
        Ok(Self {
            w_ih: Param::new(w_ih),
            w_hh: Param::new(w_hh),
            b_ih: Param::new(b_ih),
            b_hh: Param::new(b_hh),
            packed_ih: PackedWeight::default(),
            grads: GradPack::default(),
        })
    }

    /// `out ← x · w_ihᵀ` for all rows, packing `w_ih` for this pass's input products (the
    /// same packing serves [`GateParams::input_grad`] of the pass's backward).
    /// `out = bias + x · W_ihᵀ` (`bias` added to every row) in one pass over `out`.
    pub(crate) fn project(
        &mut self,
        x: ArrayView2<'_, F>,
        bias: ArrayView1<'_, F>,
        out: &mut ArrayViewMut2<'_, F>,
    ) -> Result<()> {
        self.packed_ih.pack(self.w_ih.value.view());
        match bias.broadcast(out.dim()) {
            Some(rows) => self.packed_ih.mul_t_from(self.w_ih.value.view(), x, rows, out),
            // Unreachable: the cells pass a bias of `out`'s width.
            None => self.packed_ih.mul_t(self.w_ih.value.view(), x, false, out),
        }
    }

    /// `dx ← dxp · w_ih`.
    pub(crate) fn input_grad(&self, dxp: ArrayView2<'_, F>, dx: &mut ArrayViewMut2<'_, F>) -> Result<()> {
        self.packed_ih.mul(self.w_ih.value.view(), dxp, false, dx)
    }

    /// `w_ih.grad += d_ihᵀ · x` and `w_hh.grad[..rows] += d_hhᵀ · h` over all rows (`x`
    /// `[n, I]`, `h` `[n, H]`, `d_ih` `[n, gates·H]`, `d_hh` `[n, rows]`): one shared
    /// packing of `d` when `d_hh` is `d_ih`. The bias gradients get the column sums of `d_ih`
    /// (and `d_hh`, as `bias` says), summed while `d` is packed.
    pub(crate) fn acc_weight_grads(
        &mut self,
        d_ih: ArrayView2<'_, F>,
        x: ArrayView2<'_, F>,
        d_hh: ArrayView2<'_, F>,
        h: ArrayView2<'_, F>,
        rows: usize,
        bias: BiasGrads,
    ) -> Result<()> {
        let w_hh = self.w_hh.grad.slice_mut(ndarray::s![..rows, ..]);
        let (b_ih, b_hh) = (&mut self.b_ih.grad, &mut self.b_hh.grad);
        // the same view (not a comparison of values)
        let same = d_ih.as_ptr() == d_hh.as_ptr() && d_ih.dim() == d_hh.dim() && d_ih.strides() == d_hh.strides();
        match bias {
            BiasGrads::BothFromIh if same => {
                self.grads.acc_tn(d_ih, &mut [(x, self.w_ih.grad.view_mut()), (h, w_hh)], &mut [b_ih, b_hh])
            }
            BiasGrads::BothFromIh => {
                self.grads.acc_tn(d_ih, &mut [(x, self.w_ih.grad.view_mut())], &mut [b_ih, b_hh])?;
                self.grads.acc_tn(d_hh, &mut [(h, w_hh)], &mut [])
            }
            BiasGrads::Each => {
                self.grads.acc_tn(d_ih, &mut [(x, self.w_ih.grad.view_mut())], &mut [b_ih])?;
                self.grads.acc_tn(d_hh, &mut [(h, w_hh)], &mut [b_hh])
            }
        }
    }

    /// The input width I.
    pub(crate) fn input_dim(&self) -> usize {
        self.w_ih.value.ncols()
    }

    /// The hidden width H.
    pub(crate) fn hidden_dim(&self) -> usize {
        self.w_hh.value.ncols()
    }

    /// Visits `w_ih`, `w_hh`, `b_ih`, `b_hh`.
    pub(crate) fn visit(&self, v: &mut dyn FnMut(&str, ParamView<'_, F>)) {
        v("w_ih", self.w_ih.view());
        v("w_hh", self.w_hh.view());
        v("b_ih", self.b_ih.view());
        v("b_hh", self.b_hh.view());
    }

    /// Visits them mutably, in the same order.
    pub(crate) fn visit_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, F>)) {
        v("w_ih", self.w_ih.view_mut());
        v("w_hh", self.w_hh.view_mut());
        v("b_ih", self.b_ih.view_mut());
        v("b_hh", self.b_hh.view_mut());
    }
}

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

/// Where [`GateParams::acc_weight_grads`] takes the bias gradients from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BiasGrads {
    /// `b_ih` and `b_hh` both get the column sums of `d_ih` (both biases add to the same
    /// pre-activations: LSTM, RNN, the reset-before GRU).
    BothFromIh,
    /// `b_ih` gets those of `d_ih`, `b_hh` those of `d_hh` (`d_hh` then `[n, gates·H]`: the
    /// reset-after GRU, whose `b_hn` sits inside `r ⊙ (·)`).
    Each,
}
