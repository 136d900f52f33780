//! Small building blocks of the step loops: contiguous-slice access, GEMM, bias rows and the
//! elementwise gate loops (each its own function over plain slices so LLVM vectorises it).

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2, Axis, Zip};
use rnnlab_core::{Error, Float, Result};

use crate::packed::Mode;
use crate::step_worker::{MIN_SPLIT_MACS, Side, Split, StepWorker};

/// The elements of a standard-layout view, or `Err(Shape)` naming `op`.
pub(crate) fn slice<'a, F>(op: &str, a: ArrayView2<'a, F>) -> Result<&'a [F]> {
    let shape = a.shape().to_vec();
    a.to_slice().ok_or_else(|| {
        Error::shape(op, "a standard-layout (row-major, contiguous) view", format!("strides for {shape:?}"))
    })
}

/// Mutable twin of [`slice`].
pub(crate) fn slice_mut<'a, F>(op: &str, a: ArrayViewMut2<'a, F>) -> Result<&'a mut [F]> {
    let shape = a.shape().to_vec();
    a.into_slice().ok_or_else(|| {
        Error::shape(op, "a standard-layout (row-major, contiguous) view", format!("strides for {shape:?}"))
    })
}

/// `Err(Shape)` unless `shape` is `[rows, cols]`.
pub(crate) fn check_view(op: &str, what: &str, rows: usize, cols: usize, shape: &[usize]) -> Result<()> {
    rnnlab_core::validate::shape(op, what, &[rows, cols], shape)
}

/// `Err(Shape)` unless `got ≥ need`.
pub(crate) fn check_at_least(op: &str, what: &str, need: usize, got: usize) -> Result<()> {
    if got < need {
        return Err(Error::shape(op, format!("{what} of at least {need} values"), format!("{got}")));
    }
    Ok(())
}

/// Checks what a step of `cell` is handed — each view `(name, shape, columns)` must be
/// `[batch, columns]` with `batch` the first view's rows, and the cache and scratch slices
/// long enough — so that a direct caller of the `Cell` methods gets an `Err`, never a panic.
/// Returns the batch size.
pub(crate) fn check_step<F: Float, C: rnnlab_core::Cell<F> + ?Sized>(
    cell: &C,
    op: &str,
    views: &[(&str, &[usize], usize)],
    cache: usize,
    scratch: usize,
) -> Result<usize> {
    let batch = views.first().map_or(0, |(_, shape, _)| shape.first().copied().unwrap_or(0));
    for (what, shape, cols) in views {
        check_view(op, what, batch, *cols, shape)?;
    }
    check_at_least(op, "cache", cell.cache_len(batch), cache)?;
    check_at_least(op, "scratch", cell.scratch_len(batch), scratch)?;
    Ok(batch)
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

/// Adds the column sums of `g` to each of `accs` (bias gradients; LSTM and RNN add the same
/// sums to `b_ih` and `b_hh`) in one pass over `g`, row by row in order: the same bits as
/// `acc += row` for every row. Shapes are the caller's invariant.
pub(crate) fn add_col_sums<F: Float, const N: usize>(mut accs: [&mut ndarray::Array1<F>; N], g: &ArrayView2<'_, F>) {
    let n = g.ncols();
    if let (Some(flat), true) = (g.as_slice(), n > 0) {
        for row in flat.chunks_exact(n) {
            for acc in accs.iter_mut() {
                match acc.as_slice_mut() {
                    Some(a) if a.len() == n => a.iter_mut().zip(row).for_each(|(a, &r)| *a += r),
                    _ => **acc += &ArrayView1::from(row),
                }
            }
        }
        return;
    }
    for row in g.rows() {
        for acc in accs.iter_mut() {
            match (acc.as_slice_mut(), row.as_slice()) {
                (Some(a), Some(r)) => a.iter_mut().zip(r).for_each(|(a, &r)| *a += r),
                _ => **acc += &row,
            }
        }
    }
}

/// `x ← σ(x)`.
#[inline]
pub(crate) fn sigmoid_inplace<F: Float>(x: &mut [F]) {
    for v in x {
        *v = F::sigmoid_fast(*v);
    }
}

/// `x ← tanh(x)`.
#[inline]
pub(crate) fn tanh_inplace<F: Float>(x: &mut [F]) {
    for v in x {
        *v = F::tanh_fast(*v);
    }
}

/// Whether the packed micro-kernel is used for the per-step recurrent products: only when the
/// build has FMA (e.g. `-C target-cpu=x86-64-v3`, set in `.cargo/config.toml`); without it the
/// safe-Rust kernel is slower than matrixmultiply's run-time-dispatched one.
pub(crate) const USE_PACKED: bool = cfg!(target_feature = "fma");

/// A weight matrix W `[N, K]` packed for both products a cell takes with it: `a · Wᵀ`
/// (forward, Jacobian–vector) and `d · W` (backward). The cells pack `W_hh` at the first step
/// of every forward pass ([`PackedWeight::pack_per_step`]) and `W_ih` in
/// [`Cell::project_input`](rnnlab_core::Cell) ([`PackedWeight::pack`]), so the backward pass
/// of a forward uses that forward's weights. A derived cache, so it is skipped by serde,
/// ignored by equality, and a clone starts without a worker.
///
/// With [`crate::threads`] ≥ 2, a weight packed for the per-step products gets a
/// [`StepWorker`]: products of at least [`MIN_SPLIT_MACS`] multiply-adds are cut in two
/// column ranges, one computed by the worker (same bits as on one thread).
#[derive(Debug, Default)]
pub(crate) struct PackedWeight<F: Float> {
    fwd: crate::packed::PackedB<F>,
    bwd: crate::packed::PackedB<F>,
    /// Boxed: most cells never have one, and the cells stay small (e.g. in an enum of cells).
    worker: Option<Box<WorkerPart<F>>>,
}

/// A [`StepWorker`] and the caller's columns `..col` of each operand, by [`Side`].
#[derive(Debug)]
struct WorkerPart<F: Float> {
    worker: StepWorker<F>,
    left: [crate::packed::PackedB<F>; 2],
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
    /// Packs `w` `[N, K]` for all-step products (a no-op when the packed kernel is not used).
    pub(crate) fn pack(&mut self, w: ArrayView2<'_, F>) {
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
    pub(crate) fn pack_per_step(&mut self, w: ArrayView2<'_, F>) {
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
            |c_left| crate::packed::gemm_packed_here(a, b, left_mode, c_left),
            |mut c_right, s| match d_right {
                // The same additions as the kernel's stores: `d + s`, `c + s`.
                Some(d) => Zip::from(&mut c_right).and(&d).and(&s).for_each(|c, &d, &s| *c = d + s),
                None if add => Zip::from(&mut c_right).and(&s).for_each(|c, &s| *c += s),
                None => c_right.assign(&s),
            },
        )
    }

    /// `c ← a·wᵀ` (`accumulate`: `c += a·wᵀ`); `a` `[M, K]`, `c` `[M, N]`.
    pub(crate) fn mul_t(
        &self,
        w: ArrayView2<'_, F>,
        a: ArrayView2<'_, F>,
        accumulate: bool,
        c: &mut ArrayViewMut2<'_, F>,
    ) {
        let fits = self.fwd.k() == w.ncols() && self.fwd.n() == w.nrows();
        if USE_PACKED && fits && unit_columns(&a) && c.strides()[1] == 1 {
            let mode = if accumulate { Mode::Add } else { Mode::Set };
            if !self.mul_split(Side::Fwd, a, mode, c) {
                crate::packed::gemm_packed(a, &self.fwd, accumulate, c.view_mut());
            }
        } else {
            gemm(F::one(), &a, &w.t(), if accumulate { F::one() } else { F::zero() }, c);
        }
    }

    /// `c ← d + a·wᵀ` in one pass over `c`; `a` `[M, K]`, `d` and `c` `[M, N]`.
    pub(crate) fn mul_t_from(
        &self,
        w: ArrayView2<'_, F>,
        a: ArrayView2<'_, F>,
        d: ArrayView2<'_, F>,
        c: &mut ArrayViewMut2<'_, F>,
    ) {
        let fits = self.fwd.k() == w.ncols() && self.fwd.n() == w.nrows();
        if USE_PACKED && fits && unit_columns(&a) && c.strides()[1] == 1 {
            if !self.mul_split(Side::Fwd, a, Mode::From(d), c) {
                crate::packed::gemm_packed_from(a, &self.fwd, d, c.view_mut());
            }
        } else {
            c.assign(&d);
            gemm(F::one(), &a, &w.t(), F::one(), c);
        }
    }

    /// `c ← d·w` (`accumulate`: `c += d·w`); `d` `[M, N]`, `c` `[M, K]`.
    pub(crate) fn mul(
        &self,
        w: ArrayView2<'_, F>,
        d: ArrayView2<'_, F>,
        accumulate: bool,
        c: &mut ArrayViewMut2<'_, F>,
    ) {
        let fits = self.bwd.k() == w.nrows() && self.bwd.n() == w.ncols();
        if USE_PACKED && fits && unit_columns(&d) && c.strides()[1] == 1 {
            let mode = if accumulate { Mode::Add } else { Mode::Set };
            if !self.mul_split(Side::Bwd, d, mode, c) {
                crate::packed::gemm_packed(d, &self.bwd, accumulate, c.view_mut());
            }
        } else {
            gemm(F::one(), &d, &w, if accumulate { F::one() } else { F::zero() }, c);
        }
    }
}

/// The buffers of the weight-gradient products `∂W += δᵀ · X` over all time steps: each `X`
/// (or `H_prev`) is packed into a [`PackedB`](crate::packed::PackedB) and `δ`, shared by the
/// products, into strips. Reused across backward passes; derived buffers, skipped by serde and
/// ignored by equality.
#[derive(Clone, Debug, Default)]
pub(crate) struct GradPack<F> {
    packed: [crate::packed::PackedB<F>; 2],
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
    /// `c_j` `[M, N_j]`, `s` `[M]` (shapes are the caller's invariant). The packed kernel sums
    /// `d`'s columns while it packs `d`; layouts it does not read take a general GEMM and
    /// [`add_col_sums`] (the same bits).
    pub(crate) fn acc_tn(
        &mut self,
        d: ArrayView2<'_, F>,
        pairs: &mut [(ArrayView2<'_, F>, ArrayViewMut2<'_, F>)],
        sums: &mut [&mut ndarray::Array1<F>],
    ) {
        if USE_PACKED && pairs.len() <= self.packed.len() && sums.len() <= crate::packed::MAX_SUMS {
            for (buf, (x, _)) in self.packed.iter_mut().zip(pairs.iter()) {
                buf.pack(*x);
            }
            let mut targets: Vec<_> =
                self.packed.iter().zip(pairs.iter_mut()).map(|(b, (_, c))| (b, c.view_mut())).collect();
            let n_sums = sums.len();
            let mut flat: Vec<&mut [F]> = sums.iter_mut().filter_map(|s| s.as_slice_mut()).collect();
            if flat.len() == n_sums && crate::packed::gemm_packed_tn(d, &mut targets, &mut flat, &mut self.strips) {
                return;
            }
        }
        for (x, c) in pairs.iter_mut() {
            gemm(F::one(), &d.t(), x, F::one(), c);
        }
        for s in sums.iter_mut() {
            add_col_sums([&mut **s], &d);
        }
    }
}

fn unit_columns<F>(a: &ArrayView2<'_, F>) -> bool {
    a.ncols() <= 1 || a.strides()[1] == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2};

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
            pw.mul_t(w.view(), a.view(), false, &mut out[0].view_mut());
            pw.mul_t(w.view(), a.view(), true, &mut out[1].view_mut());
            pw.mul_t_from(w.view(), a.view(), d.view(), &mut out[2].view_mut());
            let mut back = vec![mat::<F>(m, k, 6); 2];
            pw.mul(w.view(), g.view(), false, &mut back[0].view_mut());
            pw.mul(w.view(), g.view(), true, &mut back[1].view_mut());
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
        one.mul_t(w.view(), a.view(), false, &mut want.view_mut());
        std::thread::scope(|scope| {
            for _ in 0..3 {
                scope.spawn(|| {
                    for _ in 0..50 {
                        let mut c = Array2::zeros((m, n));
                        pw.mul_t(w.view(), a.view(), false, &mut c.view_mut());
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
    fn col_sums_add_every_row_to_every_accumulator_in_any_layout() {
        let g = Array2::from_shape_fn((5, 3), |(i, j)| (i * 3 + j) as f64 + 0.25);
        let want = Array1::from(vec![30.0 + 1.25, 35.0 + 1.25, 40.0 + 1.25]);
        // Row-major, and a transposed copy read through `.t()` (strided rows).
        let gt = g.t().to_owned();
        for view in [g.view(), gt.t()] {
            let (mut a, mut b) = (Array1::from(vec![1.0, 1.0, 1.0]), Array1::zeros(3));
            add_col_sums([&mut a, &mut b], &view);
            assert_eq!(a, &want + 1.0);
            assert_eq!(b, want);
        }
    }
}
