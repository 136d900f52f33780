//! A weight matrix packed once for the products a cell takes with it at every step.

use std::mem::size_of;

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, Axis, Zip};
use rnnlab_core::{Error, Float, Result};

use crate::packed::{Mode, PackedB};
use crate::step_worker::{MIN_SPLIT_MACS, Side, Split, StepWorker};

/// Whether the packed micro-kernel is used for the per-step recurrent products: only when the
/// build has FMA (e.g. `-C target-cpu=x86-64-v3`, set in `.cargo/config.toml`); without it the
/// safe-Rust kernel is slower than matrixmultiply's run-time-dispatched one.
pub(crate) const USE_PACKED: bool = cfg!(target_feature = "fma");

/// A weight matrix W `[N, K]` packed for both products a cell takes with it: `a · Wᵀ`
/// (forward, Jacobian–vector) and `d · W` (backward). The built-in cells pack `W_hh` at the
/// first step of every forward pass ([`PackedWeight::pack_per_step`]) and `W_ih` in
/// `Cell::project_input` ([`PackedWeight::pack`]), so the backward pass of a forward uses that
/// forward's weights. A derived cache: a cell holding one skips it in serde
/// (`#[serde(skip)]`), it is ignored by equality, and a clone starts without a worker.
///
/// With [`crate::threads`] ≥ 2, a weight packed for the per-step products gets a worker
/// thread: products of at least 2²⁰ multiply-adds are cut in two column ranges, one computed
/// by the worker (same bits as on one thread).
///
/// The products take `w` again: it must be the matrix last packed (the packing is used when
/// its shape matches `w`'s; a weight changed since is a wrong result, not an error). Without
/// the `fma` target feature (see the crate docs), or for operands whose columns are strided,
/// the products fall back to a general GEMM: the same results up to rounding.
///
/// # Shapes
/// `w` `[N, K]`; [`mul_t`](Self::mul_t): `a` `[M, K]`, `c` `[M, N]`;
/// [`mul`](Self::mul): `d` `[M, N]`, `c` `[M, K]`.
///
/// # Examples
/// ```
/// use ndarray::{Array2, array};
/// use rnnlab_kernels::PackedWeight;
///
/// let w = array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]]; // [N = 3, K = 2]
/// let mut packed = PackedWeight::default();
/// packed.pack_per_step(w.view());
/// let h = array![[1.0f32, 1.0]]; // [M = 1, K = 2]
/// let mut c = Array2::zeros((1, 3));
/// packed.mul_t(w.view(), h.view(), false, &mut c.view_mut())?; // c = h · wᵀ
/// assert_eq!(c, array![[3.0, 7.0, 11.0]]);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct PackedWeight<F: Float> {
    fwd: PackedB<F>,
    bwd: PackedB<F>,
    /// Boxed: most cells never have one, and the cells stay small (e.g. in an enum of cells).
    worker: Option<Box<WorkerPart<F>>>,
}

/// A [`StepWorker`] and the caller's columns `..col` of each operand, by [`Side`].
#[derive(Debug)]
struct WorkerPart<F: Float> {
    worker: StepWorker<F>,
    left: [PackedB<F>; 2],
    /// Whether the worker's and the caller's parts hold the weight last packed: a plain
    /// [`PackedWeight::pack`] leaves them stale, and then the products do not use them.
    fresh: bool,
}

impl<F: Float> Clone for PackedWeight<F> {
    fn clone(&self) -> Self {
        Self { fwd: self.fwd.clone(), bwd: self.bwd.clone(), worker: None }
    }
}

impl<F: Float> PartialEq for PackedWeight<F> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A weight whose per-step products can reach [`MIN_SPLIT_MACS`] with a batch of this size
/// gets a worker.
const MIN_WORKER_BATCH: usize = 32;

/// Where a product of `n` columns is cut between the caller and the worker: the middle,
/// rounded to a 64-byte line of the output rows (two threads writing one line would pass it
/// back and forth on every row); 0 (no cut) when `n` is narrower than two lines.
fn half_cut<F>(n: usize) -> usize {
    let line = (64 / size_of::<F>()).max(1);
    let col = (n / 2 + line / 2) / line * line;
    if col == 0 || col >= n { 0 } else { col }
}

impl<F: Float> PackedWeight<F> {
    /// Packs `w` `[N, K]` for products over all steps at once, e.g. the input projection
    /// (a no-op when the packed kernel is not used). Costs one pass over `w`.
    pub fn pack(&mut self, w: ArrayView2<'_, F>) {
        if USE_PACKED {
            self.fwd.pack(w.t());
            self.bwd.pack(w);
        }
        if let Some(part) = self.worker.as_deref_mut() {
            part.fresh = false;
        }
    }

    /// Packs `w` `[N, K]` for the per-step products, with a worker thread when
    /// [`crate::threads`] ≥ 2 and the products are large enough to share.
    ///
    /// Call it once per sequence (and after every weight update), not per step.
    pub fn pack_per_step(&mut self, w: ArrayView2<'_, F>) {
        self.pack_per_step_with(w, crate::threads::threads());
    }

    /// [`Self::pack_per_step`] for a given thread count.
    pub(crate) fn pack_per_step_with(&mut self, w: ArrayView2<'_, F>, threads: usize) {
        self.pack(w);
        let worth = USE_PACKED && threads >= 2 && w.len() * MIN_WORKER_BATCH >= MIN_SPLIT_MACS;
        if !worth {
            self.worker = None;
            return;
        }
        self.worker = self.worker.take().or_else(|| {
            let worker = StepWorker::start()?;
            Some(Box::new(WorkerPart { worker, left: Default::default(), fresh: false }))
        });
        if let Some(part) = self.worker.as_deref_mut() {
            for (side, b) in [(Side::Fwd, w.t()), (Side::Bwd, w)] {
                let col = half_cut::<F>(b.ncols());
                part.left[side as usize].pack(b.slice(ndarray::s![.., ..col]));
                part.worker.pack(side, b, col);
            }
            part.fresh = true;
        }
    }

    /// The cut for a product on the worker, if there is one and the product is worth it.
    fn split(&self, side: Side, a: &ArrayView2<'_, F>, c: &ArrayViewMut2<'_, F>) -> Option<(&WorkerPart<F>, Split)> {
        let part = self.worker.as_deref().filter(|p| p.fresh)?;
        let (m, k, n) = (a.nrows(), a.ncols(), c.ncols());
        if m * k * n < MIN_SPLIT_MACS || !unit_columns(a) || c.strides()[1] != 1 {
            return None;
        }
        Some((part, part.worker.split(side, k, n)?))
    }

    /// `c ∘= a · b` for the packed `b` of `side` on two threads: `Mode::From(d)` is
    /// `c = d + a·b`, `Add` `c += a·b`, `Set` `c = a·b`. `false` if it did not run.
    fn mul_split(&self, side: Side, a: ArrayView2<'_, F>, mode: Mode<'_, F>, c: &mut ArrayViewMut2<'_, F>) -> bool {
        let Some((part, sp)) = self.split(side, &a, c) else { return false };
        let b = &part.left[side as usize];
        let (left_mode, d_right) = match mode {
            Mode::From(d) => {
                if d.dim() != c.dim() || !unit_columns(&d) {
                    return false;
                }
                let (l, r) = d.split_at(Axis(1), sp.col);
                (Mode::From(l), Some(r))
            }
            m => (m, None),
        };
        let add = matches!(mode, Mode::Add);
        part.worker.run(
            side,
            a,
            c.view_mut(),
            |c_left| {
                // The caller's columns: shapes cut from the checked ones, so it always runs.
                crate::packed::gemm_packed_here(a, b, left_mode, c_left);
            },
            |mut c_right, s| match d_right {
                // The same additions as the kernel's stores: `d + s`, `c + s`.
                Some(d) => Zip::from(&mut c_right).and(&d).and(&s).for_each(|c, &d, &s| *c = d + s),
                None if add => Zip::from(&mut c_right).and(&s).for_each(|c, &s| *c += s),
                None => c_right.assign(&s),
            },
        )
    }

    /// `c ← a·wᵀ` (`accumulate`: `c += a·wᵀ`); `a` `[M, K]`, `c` `[M, N]`.
    ///
    /// # Errors
    /// `Error::Shape` if `a`, `w` and `c` do not fit.
    pub fn mul_t(
        &self,
        w: ArrayView2<'_, F>,
        a: ArrayView2<'_, F>,
        accumulate: bool,
        c: &mut ArrayViewMut2<'_, F>,
    ) -> Result<()> {
        check_product("PackedWeight::mul_t", a.dim(), (w.ncols(), w.nrows()), c.dim())?;
        let fits = self.fwd.k() == w.ncols() && self.fwd.n() == w.nrows();
        if USE_PACKED && fits && unit_columns(&a) && c.strides()[1] == 1 {
            let mode = if accumulate { Mode::Add } else { Mode::Set };
            if !self.mul_split(Side::Fwd, a, mode, c)
                && !crate::packed::gemm_packed(a, &self.fwd, accumulate, c.view_mut())
            {
                return Err(unfit("PackedWeight::mul_t"));
            }
        } else {
            gemm(F::one(), &a, &w.t(), if accumulate { F::one() } else { F::zero() }, c);
        }
        Ok(())
    }

    /// `c ← d + a·wᵀ` in one pass over `c` (e.g. `d` the input projection of this step, or a
    /// bias broadcast to every row); `a` `[M, K]`, `d` and `c` `[M, N]`.
    ///
    /// # Errors
    /// `Error::Shape` if `a`, `w`, `d` and `c` do not fit.
    pub fn mul_t_from(
        &self,
        w: ArrayView2<'_, F>,
        a: ArrayView2<'_, F>,
        d: ArrayView2<'_, F>,
        c: &mut ArrayViewMut2<'_, F>,
    ) -> Result<()> {
        let op = "PackedWeight::mul_t_from";
        check_product(op, a.dim(), (w.ncols(), w.nrows()), c.dim())?;
        if d.dim() != c.dim() {
            return Err(Error::shape(op, format!("d of shape {:?}", c.shape()), format!("{:?}", d.shape())));
        }
        let fits = self.fwd.k() == w.ncols() && self.fwd.n() == w.nrows();
        if USE_PACKED && fits && unit_columns(&a) && c.strides()[1] == 1 {
            if !self.mul_split(Side::Fwd, a, Mode::From(d), c)
                && !crate::packed::gemm_packed_from(a, &self.fwd, d, c.view_mut())
            {
                return Err(unfit(op));
            }
        } else {
            c.assign(&d);
            gemm(F::one(), &a, &w.t(), F::one(), c);
        }
        Ok(())
    }

    /// `c ← d·w` (`accumulate`: `c += d·w`); `d` `[M, N]`, `c` `[M, K]`.
    ///
    /// # Errors
    /// `Error::Shape` if `d`, `w` and `c` do not fit.
    pub fn mul(
        &self,
        w: ArrayView2<'_, F>,
        d: ArrayView2<'_, F>,
        accumulate: bool,
        c: &mut ArrayViewMut2<'_, F>,
    ) -> Result<()> {
        check_product("PackedWeight::mul", d.dim(), w.dim(), c.dim())?;
        let fits = self.bwd.k() == w.nrows() && self.bwd.n() == w.ncols();
        if USE_PACKED && fits && unit_columns(&d) && c.strides()[1] == 1 {
            let mode = if accumulate { Mode::Add } else { Mode::Set };
            if !self.mul_split(Side::Bwd, d, mode, c)
                && !crate::packed::gemm_packed(d, &self.bwd, accumulate, c.view_mut())
            {
                return Err(unfit("PackedWeight::mul"));
            }
        } else {
            gemm(F::one(), &d, &w, if accumulate { F::one() } else { F::zero() }, c);
        }
        Ok(())
    }
}

/// `c ← α·a·b + β·c` (matrixmultiply through ndarray). Shapes are the caller's invariant.
#[inline]
pub(crate) fn gemm<F: Float>(
    alpha: F,
    a: &ArrayView2<'_, F>,
    b: &ArrayView2<'_, F>,
    beta: F,
    c: &mut ArrayViewMut2<'_, F>,
) {
    general_mat_mul(alpha, a, b, beta, c);
}

/// `Err(Shape)` naming `op` unless `a` `[M, K]` · `b` `[K, N]` → `c` `[M, N]` fit.
#[inline]
pub(crate) fn check_product(op: &str, a: (usize, usize), b: (usize, usize), c: (usize, usize)) -> Result<()> {
    if a.1 != b.0 || c != (a.0, b.1) {
        return Err(Error::shape(
            op,
            format!("a [M, K] · b [K, N] into c [M, N], with b [{}, {}]", b.0, b.1),
            format!("a [{}, {}], c [{}, {}]", a.0, a.1, c.0, c.1),
        ));
    }
    Ok(())
}

/// The error of a packed product that refused its operands after [`check_product`] accepted
/// them: unreachable (the same checks), reported rather than assumed.
fn unfit(op: &str) -> Error {
    Error::shape(op, "operands that fit the packed weight", "operands the packed kernel refused")
}

pub(crate) fn unit_columns<F>(a: &ArrayView2<'_, F>) -> bool {
    a.ncols() <= 1 || a.strides()[1] == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn mat<F: Float>(rows: usize, cols: usize, seed: usize) -> Array2<F> {
        Array2::from_shape_fn((rows, cols), |(i, j)| F::of((((i * 31 + j * 17 + seed * 7) % 23) as f64 - 11.0) / 7.0))
    }

    /// Every per-step product of a weight packed with a worker (two threads) against the same
    /// weight packed without: the same bits, for each of `c = a·wᵀ`, `c += a·wᵀ`,
    /// `c = d + a·wᵀ`, `c = d·w`, `c += d·w`.
    fn worker_products_match<F: Float>(m: usize, n: usize, k: usize) {
        let w = mat::<F>(n, k, 1);
        let (a, d, g) = (mat::<F>(m, k, 2), mat::<F>(m, n, 3), mat::<F>(m, n, 4));
        let (mut one, mut two) = (PackedWeight::default(), PackedWeight::default());
        one.pack_per_step_with(w.view(), 1);
        two.pack_per_step_with(w.view(), 2);
        assert!(one.worker.is_none());
        assert!(two.worker.is_some(), "no worker for {m}×{k}×{n}");
        let run = |pw: &PackedWeight<F>| {
            let mut out = vec![mat::<F>(m, n, 5); 3];
            pw.mul_t(w.view(), a.view(), false, &mut out[0].view_mut()).expect("shapes fit");
            pw.mul_t(w.view(), a.view(), true, &mut out[1].view_mut()).expect("shapes fit");
            pw.mul_t_from(w.view(), a.view(), d.view(), &mut out[2].view_mut()).expect("shapes fit");
            let mut back = vec![mat::<F>(m, k, 6); 2];
            pw.mul(w.view(), g.view(), false, &mut back[0].view_mut()).expect("shapes fit");
            pw.mul(w.view(), g.view(), true, &mut back[1].view_mut()).expect("shapes fit");
            (out, back)
        };
        let mut c = Array2::zeros((m, n));
        assert!(two.mul_split(Side::Fwd, a.view(), Mode::Set, &mut c.view_mut()), "not split: {m}×{k}×{n}");
        let mut c = Array2::zeros((m, k));
        assert!(two.mul_split(Side::Bwd, g.view(), Mode::Add, &mut c.view_mut()), "not split: {m}×{n}×{k}");
        let (want, got) = (run(&one), run(&two));
        assert_eq!(want, got, "{m}×{k}×{n}");
        // And the products are right: c = a·wᵀ against ndarray's.
        let naive = a.dot(&w.t());
        let err = (&got.0[0] - &naive).iter().fold(0.0f64, |e, v| e.max(v.as_f64().abs()));
        assert!(err < 1e-3, "{err}");
        // A clone computes on its own thread.
        assert!(two.clone().worker.is_none());
    }

    #[test]
    fn a_step_worker_gives_the_same_bits_as_one_thread() {
        // LSTM H = 128 (N = 4H), an odd width whose panels end in a merged tail, and f64.
        worker_products_match::<f32>(32, 512, 128);
        worker_products_match::<f32>(33, 300, 130);
        worker_products_match::<f64>(32, 384, 128);
    }

    #[test]
    fn callers_sharing_a_worker_from_several_threads_get_the_same_bits() {
        // Jacobian–vector products may be taken through `&self` from several threads at once:
        // one caller gets the worker, the others compute alone; every result is the same.
        let (m, n, k) = (32, 512, 128);
        let w = mat::<f32>(n, k, 1);
        let mut pw = PackedWeight::default();
        pw.pack_per_step_with(w.view(), 2);
        let a = mat::<f32>(m, k, 2);
        let (mut one, mut want) = (PackedWeight::default(), Array2::zeros((m, n)));
        one.pack_per_step_with(w.view(), 1);
        one.mul_t(w.view(), a.view(), false, &mut want.view_mut()).expect("shapes fit");
        std::thread::scope(|scope| {
            for _ in 0..3 {
                scope.spawn(|| {
                    for _ in 0..50 {
                        let mut c = Array2::zeros((m, n));
                        pw.mul_t(w.view(), a.view(), false, &mut c.view_mut()).expect("shapes fit");
                        assert_eq!(c, want);
                    }
                });
            }
        });
    }

    #[test]
    fn the_worker_cut_is_the_middle_rounded_to_a_cache_line() {
        // f32: 16 values a line; f64: 8.
        let f32_cuts: Vec<usize> = [16, 40, 128, 130, 300, 384, 512].iter().map(|&n| half_cut::<f32>(n)).collect();
        assert_eq!(f32_cuts, [0, 16, 64, 64, 144, 192, 256]);
        assert_eq!(half_cut::<f64>(384), 192);
        assert_eq!(half_cut::<f64>(12), 8);
    }

    #[test]
    fn small_weights_get_no_worker_and_small_products_stay_on_one_thread() {
        let mut pw = PackedWeight::<f32>::default();
        pw.pack_per_step_with(mat::<f32>(128, 32, 1).view(), 2);
        assert!(pw.worker.is_none());
        let w = mat::<f32>(512, 128, 1);
        pw.pack_per_step_with(w.view(), 2);
        let a = mat::<f32>(4, 128, 2);
        let mut c = Array2::zeros((4, 512));
        assert!(!pw.mul_split(Side::Fwd, a.view(), Mode::Set, &mut c.view_mut()));
        // A plain repack (another weight) leaves the worker's copy stale: it is not used.
        pw.pack(mat::<f32>(512, 128, 9).view());
        let a = mat::<f32>(32, 128, 2);
        let mut c = Array2::zeros((32, 512));
        assert!(!pw.mul_split(Side::Fwd, a.view(), Mode::Set, &mut c.view_mut()));
        pw.pack_per_step_with(w.view(), 2);
        assert!(pw.mul_split(Side::Fwd, a.view(), Mode::Set, &mut c.view_mut()));
        // Back to one thread: the worker is stopped.
        pw.pack_per_step_with(w.view(), 1);
        assert!(pw.worker.is_none());
    }

    #[test]
    fn products_of_misfit_shapes_are_errors() {
        let w = mat::<f32>(6, 4, 1); // [N = 6, K = 4]
        let mut pw = PackedWeight::default();
        pw.pack_per_step(w.view());
        let shape_err = |r: Result<()>| matches!(r, Err(Error::Shape { .. }));
        // a: K = 3 instead of 4; c: N = 5 instead of 6; d of another shape
        assert!(shape_err(pw.mul_t(
            w.view(),
            mat::<f32>(2, 3, 2).view(),
            false,
            &mut Array2::zeros((2, 6)).view_mut()
        )));
        assert!(shape_err(pw.mul_t(w.view(), mat::<f32>(2, 4, 2).view(), true, &mut Array2::zeros((2, 5)).view_mut())));
        let d = mat::<f32>(3, 6, 3);
        assert!(shape_err(pw.mul_t_from(
            w.view(),
            mat::<f32>(2, 4, 2).view(),
            d.view(),
            &mut Array2::zeros((2, 6)).view_mut()
        )));
        // mul: d [M, N = 6] · w → c [M, K = 4]
        assert!(shape_err(pw.mul(w.view(), mat::<f32>(2, 4, 2).view(), false, &mut Array2::zeros((2, 4)).view_mut())));
        assert!(shape_err(pw.mul(w.view(), mat::<f32>(2, 6, 2).view(), false, &mut Array2::zeros((3, 4)).view_mut())));
        let mut c = Array2::zeros((2, 4));
        assert!(pw.mul(w.view(), mat::<f32>(2, 6, 2).view(), false, &mut c.view_mut()).is_ok());
    }
}
