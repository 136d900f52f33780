//! The packing buffers of the weight-gradient products summed over all time steps.

use ndarray::{Array1, ArrayView2, ArrayViewMut2};
use rnnlab_core::{Error, Float, Result};

use crate::loops::add_col_sums;
use crate::packed::{MAX_SUMS, PackedB, gemm_packed_tn};
use crate::packed_weight::{USE_PACKED, check_product, gemm};

/// The buffers of the weight-gradient products `∂W += δᵀ · X` over all time steps: each `X`
/// (or `H_prev`) is packed into column panels and `δ`, shared by the products, into strips.
/// Reused across backward passes; derived buffers, so a cell holding one skips it in serde,
/// and it is ignored by equality.
///
/// # Examples
/// ```
/// use ndarray::{Array1, Array2, array};
/// use rnnlab_kernels::GradPack;
///
/// // δ [n = 2 rows (time × batch), M = 2], x [n, N = 1]
/// let d = array![[1.0f64, 2.0], [3.0, 4.0]];
/// let x = array![[10.0f64], [100.0]];
/// let (mut dw, mut db) = (Array2::zeros((2, 1)), Array1::zeros(2));
/// GradPack::default().acc_tn(d.view(), &mut [(x.view(), dw.view_mut())], &mut [&mut db])?;
/// assert_eq!(dw, array![[310.0], [420.0]]); // dW += δᵀ · x
/// assert_eq!(db, array![4.0, 6.0]); // db += Σ_rows δ
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct GradPack<F> {
    packed: [PackedB<F>; 2],
    /// One strips buffer per thread.
    strips: Vec<Vec<F>>,
}

impl<F> PartialEq for GradPack<F> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<F: Float> GradPack<F> {
    /// `c_j += dᵀ · x_j` for each pair `(x_j, c_j)` (at most two), and `s += Σ_rows d` for
    /// each `s` of `sums` (the bias gradients; at most two): `d` `[n, M]`, `x_j` `[n, N_j]`,
    /// `c_j` `[M, N_j]`, `s` `[M]`. More than two pairs or sums take the general path. The packed kernel sums
    /// `d`'s columns while it packs `d`; layouts it does not read take a general GEMM and
    /// [`add_col_sums`] (the same bits).
    ///
    /// # Errors
    /// `Error::Shape` if a pair or a sum does not fit `d`.
    pub fn acc_tn(
        &mut self,
        d: ArrayView2<'_, F>,
        pairs: &mut [(ArrayView2<'_, F>, ArrayViewMut2<'_, F>)],
        sums: &mut [&mut Array1<F>],
    ) -> Result<()> {
        let op = "GradPack::acc_tn";
        for (x, c) in pairs.iter() {
            check_product(op, (d.ncols(), d.nrows()), x.dim(), c.dim())?;
        }
        if let Some(s) = sums.iter().find(|s| s.len() != d.ncols()) {
            return Err(Error::shape(op, format!("sums of length {}", d.ncols()), format!("{}", s.len())));
        }
        if USE_PACKED && pairs.len() <= self.packed.len() && sums.len() <= MAX_SUMS {
            for (buf, (x, _)) in self.packed.iter_mut().zip(pairs.iter()) {
                buf.pack(*x);
            }
            let mut targets: Vec<_> =
                self.packed.iter().zip(pairs.iter_mut()).map(|(b, (_, c))| (b, c.view_mut())).collect();
            let n_sums = sums.len();
            let mut flat: Vec<&mut [F]> = sums.iter_mut().filter_map(|s| s.as_slice_mut()).collect();
            if flat.len() == n_sums && gemm_packed_tn(d, &mut targets, &mut flat, &mut self.strips) {
                return Ok(());
            }
        }
        for (x, c) in pairs.iter_mut() {
            gemm(F::one(), &d.t(), x, F::one(), c);
        }
        for s in sums.iter_mut() {
            add_col_sums([&mut **s], &d)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn misfit_pairs_and_sums_are_errors() {
        let d = Array2::<f64>::ones((5, 3)); // [n = 5, M = 3]
        let x = Array2::<f64>::ones((5, 2));
        let mut pack = GradPack::default();
        let mut c = Array2::zeros((2, 2)); // should be [3, 2]
        let r = pack.acc_tn(d.view(), &mut [(x.view(), c.view_mut())], &mut []);
        assert!(matches!(r, Err(Error::Shape { .. })));
        let mut c = Array2::zeros((3, 2));
        let mut s = Array1::zeros(2); // should be [3]
        let r = pack.acc_tn(d.view(), &mut [(x.view(), c.view_mut())], &mut [&mut s]);
        assert!(matches!(r, Err(Error::Shape { .. })));
        let mut s = Array1::zeros(3);
        pack.acc_tn(d.view(), &mut [(x.view(), c.view_mut())], &mut [&mut s]).expect("shapes fit");
        assert_eq!(c, Array2::from_elem((3, 2), 5.0));
        assert_eq!(s, Array1::from_elem(3, 5.0));
    }
}
