//! The per-time-step recurrent GEMM with the weight matrix packed once per sequence.
//!
//! Every step of a recurrent pass multiplies a small batch matrix `A` `[M, K]` (M = batch,
//! typically 32) by the same weight matrix `B` `[K, N]` (`h_{t−1} · W_hhᵀ` forward,
//! `δgates · W_hh` backward). A general GEMM (matrixmultiply) re-packs `B` and allocates its
//! packing buffer on every call; at M = 32 that overhead, and `B` streaming from L3 in
//! a layout not made for the micro-kernel, keep it well below the machine's big-product speed.
//! Here `B` is packed once ([`PackedB::pack`], reusing its buffer) and every step only runs
//! the register-blocked micro-kernel ([`gemm_packed`]).
//!
//! # Layout
//! `B` is cut into column panels of `NR` columns (two vectors of the build's widest vector
//! unit per row: with AVX `NR` = 16 for `f32`, 8 for `f64`; half that with only SSE2, double
//! with AVX-512), the last panel zero-padded to `NR`. Each panel is stored
//! K-major: the `NR` values of row `p` are contiguous, rows one after another, panels one
//! after another:
//!
//! ```text
//! data[(panel · K + p) · NR + j] = B[p, panel · NR + j]   (0 past column N)
//! ```
//!
//! The micro-kernel computes an `MR × NR` tile of `C` (`MR` = 4 rows of `A`) in an array of
//! accumulators that LLVM keeps in vector registers: for each `p` it loads the panel's row
//! `p` once (contiguous, aligned to the panel) and broadcasts `A[i, p]` of each of the `MR`
//! rows. `A` is read in place (rows may be strided, columns must be contiguous for the fast
//! path), so a step allocates nothing. Panels are visited in chunks of about 256 KiB of
//! packed `B` (fits L2), each chunk against all row blocks of `A`, so `B` streams from
//! memory/L3 once per step and `A` (`M × K`, small) stays in L1/L2.
//!
//! # Summation order (determinism)
//! Every output element is computed the same way, whatever path, tile position, remainder or
//! column split computes it: `s = 0; for p in 0..K { s = fma(A[i,p], B[p,j], s) }`, then
//! `C[i,j] = s` or `C[i,j] += s`. `fma` is a fused multiply-add when the build enables the
//! `fma` target feature (e.g. `-C target-cpu=x86-64-v3`) and `a·b + s` otherwise, so results
//! are bit-identical from run to run and between workers that each own a column range of `B`
//! (panel boundaries at multiples of `NR`), but may differ in the last bits between builds with and without
//! `fma`.
//!
//! # Speed
//! The kernel is plain safe Rust, so its vector width is the build's: with AVX2 + FMA compiled
//! in (`-C target-cpu=x86-64-v3`, the workspace default on x86-64) it beats matrixmultiply's
//! run-time-dispatched kernel at these shapes, because nothing is re-packed per step; with the
//! baseline x86-64 target (SSE2, no FMA) it would be slower, so the cells use it only when the
//! `fma` feature is compiled in (`kernels::USE_PACKED`). The effect on a whole training step is
//! measured by `cargo xtask bench`. `NR` follows the build: 256-bit panels with AVX, 512-bit
//! with AVX-512, 128-bit otherwise.

use std::mem::size_of;

use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use rnnlab_core::Float;

/// Rows of `A` (and `C`) per micro-tile.
const MR: usize = 4;
/// Bytes of one panel row: two vectors of the widest vector unit the build targets (AVX-512:
/// 512-bit, AVX: 256-bit, otherwise SSE2's 128-bit), so the `MR × NR` accumulators fill 8
/// vector registers.
const PANEL_ROW_BYTES: usize = if cfg!(target_feature = "avx512f") {
    128
} else if cfg!(target_feature = "avx") {
    64
} else {
    32
};
/// Columns per panel for 4-byte floats.
const NR_F32: usize = PANEL_ROW_BYTES / 4;
/// Columns per panel for 8-byte floats.
const NR_F64: usize = PANEL_ROW_BYTES / 8;
/// Packed-`B` bytes visited against all row blocks of `A` before moving on (about L2 / 2).
const CHUNK_BYTES: usize = 256 * 1024;

/// The panel width for `F`: [`NR_F32`] for `f32`, [`NR_F64`] for `f64`.
#[inline(always)]
const fn nr_of<F>() -> usize {
    if size_of::<F>() == 4 { NR_F32 } else { NR_F64 }
}

/// `B` `[K, N]` packed once into column panels of `NR` columns, K-major, zero-padded
/// (layout in the module docs). Reusable: [`PackedB::pack`] overwrites it in place.
#[derive(Clone, Debug, Default)]
pub(crate) struct PackedB<F> {
    data: Vec<F>,
    k: usize,
    n: usize,
}

impl<F: Float> PackedB<F> {
    /// The panel width `NR` for `F`. To split a product between workers, give each a
    /// [`PackedB`] of its own column range of `B` (and the matching columns of `C`): with the
    /// boundaries at multiples of `NR` every panel stays full, and each element's result is
    /// bit-identical to the one-worker product (same kernel, same order over `k`).
    #[cfg(test)]
    pub(crate) const NR: usize = nr_of::<F>();

    /// Packs `b` `[K, N]`, of any strides (e.g. `w_hh.t()`), reusing the buffer.
    ///
    /// Costs one pass over `b` (K·N copies); pack once per sequence and weights update.
    pub(crate) fn pack(&mut self, b: ArrayView2<'_, F>) {
        let nr = nr_of::<F>();
        let (k, n) = b.dim();
        let n_panels = n.div_ceil(nr);
        self.k = k;
        self.n = n;
        self.data.clear();
        self.data.resize(n_panels * k * nr, F::zero());
        if k == 0 {
            return;
        }
        for (panel, dst) in self.data.chunks_exact_mut(k * nr).enumerate() {
            let j0 = panel * nr;
            // Column by column: a column of `w.t()` is a contiguous row of `w`.
            for (jj, col) in b.columns().into_iter().skip(j0).take(nr).enumerate() {
                for (row, &v) in dst.chunks_exact_mut(nr).zip(col.iter()) {
                    row[jj] = v;
                }
            }
        }
    }

    /// K, the rows of the packed `B` (the inner dimension of the product).
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// N, the columns of the packed `B` (the columns of the product).
    pub(crate) fn n(&self) -> usize {
        self.n
    }

    /// The number of column panels, `⌈N / NR⌉`.
    fn n_panels(&self) -> usize {
        self.n.div_ceil(nr_of::<F>())
    }
}

/// `c = a · b` (`accumulate = false`) or `c += a · b` (`accumulate = true`) with `b` packed.
///
/// # Shapes
/// `a` `[M, K]`, `b` `[K, N]`, `c` `[M, N]`. The fast path wants unit column strides in `a`
/// and `c` (rows may be strided, e.g. column slices of wider arrays); other layouts take a
/// slower scalar path with the same results. Matching shapes are the caller's invariant: a
/// mismatch fails a `debug_assert` and, in release builds, returns without touching `c`.
pub(crate) fn gemm_packed<F: Float>(a: ArrayView2<'_, F>, b: &PackedB<F>, accumulate: bool, c: ArrayViewMut2<'_, F>) {
    if !shapes_fit(&a, b, &c) {
        return;
    }
    gemm_panels(a, b, 0, b.n_panels(), accumulate, c);
}

/// Whether `a · b → c` is well-formed; fails a `debug_assert` if not.
fn shapes_fit<F: Float>(a: &ArrayView2<'_, F>, b: &PackedB<F>, c: &ArrayViewMut2<'_, F>) -> bool {
    let ok = a.ncols() == b.k && c.nrows() == a.nrows() && c.ncols() == b.n;
    debug_assert!(ok, "gemm_packed: a {:?} · b [{}, {}] → c {:?}", a.dim(), b.k, b.n, c.dim());
    ok
}

/// `c[:, p0·NR ..] (+)= a · b[:, panels p0..p1]`, where `c` holds exactly those columns.
fn gemm_panels<F: Float>(
    a: ArrayView2<'_, F>,
    b: &PackedB<F>,
    p0: usize,
    p1: usize,
    accumulate: bool,
    mut c: ArrayViewMut2<'_, F>,
) {
    let k = b.k;
    if c.is_empty() {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(F::zero());
        }
        return;
    }
    let unit = |stride: isize, len: usize| stride == 1 || len <= 1;
    if !unit(a.strides()[1], a.ncols()) || !unit(c.strides()[1], c.ncols()) {
        scalar_panels(a, b, p0, accumulate, c);
        return;
    }
    let nr = nr_of::<F>();
    let panel_len = k * nr;
    let chunk = (CHUNK_BYTES / (panel_len * size_of::<F>())).max(1);
    let mut q0 = p0;
    while q0 < p1 {
        let q1 = (q0 + chunk).min(p1);
        // The panels q0..q1 of `b`, and their first column relative to `c`'s first column.
        let panels = &b.data[q0 * panel_len..q1 * panel_len];
        let col0 = (q0 - p0) * nr;
        for (a_blk, c_blk) in a.axis_chunks_iter(Axis(0), MR).zip(c.axis_chunks_iter_mut(Axis(0), MR)) {
            match a_blk.nrows() {
                4 => row_block::<F, 4>(a_blk, panels, col0, accumulate, c_blk),
                3 => row_block::<F, 3>(a_blk, panels, col0, accumulate, c_blk),
                2 => row_block::<F, 2>(a_blk, panels, col0, accumulate, c_blk),
                _ => row_block::<F, 1>(a_blk, panels, col0, accumulate, c_blk),
            }
        }
        q0 = q1;
    }
}

/// One block of `R` rows of `a` and `c` against consecutive packed panels starting at column
/// `col0` of `c`.
#[inline(always)]
fn row_block<F: Float, const R: usize>(
    a: ArrayView2<'_, F>,
    panels: &[F],
    col0: usize,
    accumulate: bool,
    mut c: ArrayViewMut2<'_, F>,
) {
    let k = a.ncols();
    let mut a_it = a.axis_iter(Axis(0)).map(|r| r.to_slice());
    let a_rows: [Option<&[F]>; R] = std::array::from_fn(|_| a_it.next().flatten());
    let mut c_it = c.axis_iter_mut(Axis(0)).map(|r| r.into_slice());
    let mut c_rows: [Option<&mut [F]>; R] = std::array::from_fn(|_| c_it.next().flatten());
    if a_rows.iter().any(|r| r.is_none_or(|r| r.len() < k)) || c_rows.iter().any(Option::is_none) {
        // Unreachable: the caller checked unit column strides and `R` rows.
        debug_assert!(false, "gemm_packed: row block not contiguous");
        return;
    }
    let a_rows: [&[F]; R] = a_rows.map(|r| r.map_or(&[][..], |r| &r[..k]));
    let n = c_rows[0].as_ref().map_or(0, |r| r.len());
    if size_of::<F>() == 4 {
        panel_loop::<F, R, NR_F32>(&a_rows, panels, col0, n, accumulate, &mut c_rows);
    } else {
        panel_loop::<F, R, NR_F64>(&a_rows, panels, col0, n, accumulate, &mut c_rows);
    }
}

/// Runs the micro-kernel over each panel of `panels` and stores its tile into `c_rows`.
#[inline(always)]
fn panel_loop<F: Float, const R: usize, const NR: usize>(
    a_rows: &[&[F]; R],
    panels: &[F],
    col0: usize,
    n: usize,
    accumulate: bool,
    c_rows: &mut [Option<&mut [F]>; R],
) {
    let k = a_rows[0].len();
    for (q, panel) in panels.chunks_exact(k * NR).enumerate() {
        let j0 = col0 + q * NR;
        let width = NR.min(n.saturating_sub(j0));
        let acc = kernel::<F, R, NR>(a_rows, panel);
        for (row, acc) in c_rows.iter_mut().zip(&acc) {
            if let Some(dst) = row.as_deref_mut().and_then(|r| r.get_mut(j0..j0 + width)) {
                if accumulate {
                    for (d, &s) in dst.iter_mut().zip(acc) {
                        *d += s;
                    }
                } else {
                    for (d, &s) in dst.iter_mut().zip(acc) {
                        *d = s;
                    }
                }
            }
        }
    }
}

/// The `R × NR` micro-kernel: `acc[i][j] = Σ_p a_rows[i][p] · panel[p·NR + j]`, `p` ascending.
///
/// `panel` holds `K·NR` values and each row of `a_rows` at least `K`.
#[inline(always)]
fn kernel<F: Float, const R: usize, const NR: usize>(a_rows: &[&[F]; R], panel: &[F]) -> [[F; NR]; R] {
    let mut acc = [[F::zero(); NR]; R];
    let k = panel.len() / NR;
    if a_rows.iter().any(|r| r.len() < k) {
        // Unreachable: `row_block` checked every row's length.
        return acc;
    }
    // Exactly `k` long, so LLVM drops the bounds checks of `rows[i][p]` below.
    let rows: [&[F]; R] = a_rows.map(|r| &r[..k]);
    for (p, b) in panel.chunks_exact(NR).enumerate().take(k) {
        let Ok(b) = <&[F; NR]>::try_from(b) else { continue };
        for (acc_row, row) in acc.iter_mut().zip(&rows) {
            let x = row[p];
            for (s, &y) in acc_row.iter_mut().zip(b) {
                *s = fmadd(x, y, *s);
            }
        }
    }
    acc
}

/// `x·y + s`, fused when the build has the `fma` target feature (never a slow library call).
#[inline(always)]
fn fmadd<F: Float>(x: F, y: F, s: F) -> F {
    if cfg!(target_feature = "fma") { x.mul_add(y, s) } else { x * y + s }
}

/// The any-stride path: the same per-element order as the kernel, read through indexing.
fn scalar_panels<F: Float>(
    a: ArrayView2<'_, F>,
    b: &PackedB<F>,
    p0: usize,
    accumulate: bool,
    mut c: ArrayViewMut2<'_, F>,
) {
    let (nr, k) = (nr_of::<F>(), b.k);
    for ((i, jc), out) in c.indexed_iter_mut() {
        let j = p0 * nr + jc;
        let base = (j / nr) * k * nr + j % nr;
        let mut s = F::zero();
        for (p, &x) in a.row(i).iter().enumerate() {
            s = fmadd(x, b.data.get(base + p * nr).copied().unwrap_or_else(F::zero), s);
        }
        if accumulate {
            *out += s;
        } else {
            *out = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, s};

    /// A deterministic pseudo-random matrix in [−1, 1).
    fn mat<F: Float>(rows: usize, cols: usize, seed: u64) -> Array2<F> {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        Array2::from_shape_fn((rows, cols), |_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            F::of(((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0)
        })
    }

    /// `c0 (+)= a·b` with a naive triple loop in f64.
    fn naive<F: Float>(
        a: ArrayView2<'_, F>,
        b: ArrayView2<'_, F>,
        c0: ArrayView2<'_, F>,
        accumulate: bool,
    ) -> Array2<f64> {
        let (m, k) = a.dim();
        let n = b.ncols();
        Array2::from_shape_fn((m, n), |(i, j)| {
            let s: f64 = (0..k).map(|p| a[[i, p]].as_f64() * b[[p, j]].as_f64()).sum();
            if accumulate { c0[[i, j]].as_f64() + s } else { s }
        })
    }

    /// Asserts `got ≈ want` within `rtol·(Σ|a||b| + |c0|) + atol` per element.
    fn assert_close<F: Float>(got: ArrayView2<'_, F>, want: &Array2<f64>, scale: &Array2<f64>, rtol: f64) {
        assert_eq!(got.dim(), want.dim());
        for ((ij, &g), &w) in got.indexed_iter().zip(want.iter()) {
            let tol = rtol * (scale[ij] + 1.0);
            assert!((g.as_f64() - w).abs() <= tol, "at {ij:?}: got {g}, want {w}, tol {tol}");
        }
    }

    /// Σ_p |a[i,p]|·|b[p,j]| + |c0[i,j]|: the error scale of each element.
    fn abs_scale<F: Float>(a: ArrayView2<'_, F>, b: ArrayView2<'_, F>, c0: ArrayView2<'_, F>) -> Array2<f64> {
        let a = a.mapv(|x| x.as_f64().abs());
        let b = b.mapv(|x| x.as_f64().abs());
        a.dot(&b) + c0.mapv(|x| x.as_f64().abs())
    }

    const SHAPES: &[(usize, usize, usize)] = &[
        (1, 1, 1),
        (3, 5, 7),
        (1, 7, 16),
        (2, 3, 17),
        (4, 16, 15),
        (5, 9, 33),
        (7, 1, 9),
        (17, 33, 130),
        (32, 32, 128),
        (32, 128, 512),
        (33, 64, 48),
        (64, 17, 100),
        // Enough packed B to span several 256 KiB chunks.
        (6, 600, 300),
    ];

    /// Checks every shape, contiguous and strided, with and without accumulation.
    fn check_shapes<F: Float>(rtol: f64) {
        for (idx, &(m, k, n)) in SHAPES.iter().enumerate() {
            let seed = idx as u64 * 10;
            // B given as a transposed view of a [N, K] array, as in the cells.
            let w = mat::<F>(n, k, seed);
            let b = w.t();
            let mut packed = PackedB::default();
            packed.pack(b);
            assert_eq!((packed.k(), packed.n()), (k, n));
            // A contiguous and as a column slice of a wider array (strided rows).
            let a_wide = mat::<F>(m, k + 3, seed + 1);
            let a_cont = a_wide.slice(s![.., 1..k + 1]).to_owned();
            for a in [a_cont.view(), a_wide.slice(s![.., 1..k + 1])] {
                for accumulate in [false, true] {
                    let c0 = mat::<F>(m, n + 5, seed + 2);
                    let want = naive(a, b, c0.slice(s![.., 2..n + 2]), accumulate);
                    let scale = abs_scale(a, b, c0.slice(s![.., 2..n + 2]));
                    // c contiguous
                    let mut c = c0.slice(s![.., 2..n + 2]).to_owned();
                    gemm_packed(a, &packed, accumulate, c.view_mut());
                    assert_close(c.view(), &want, &scale, rtol);
                    // c a column slice of a wider array: the columns outside stay untouched
                    let mut cw = c0.clone();
                    gemm_packed(a, &packed, accumulate, cw.slice_mut(s![.., 2..n + 2]));
                    assert_close(cw.slice(s![.., 2..n + 2]), &want, &scale, rtol);
                    assert_eq!(cw.slice(s![.., ..2]), c0.slice(s![.., ..2]));
                    assert_eq!(cw.slice(s![.., n + 2..]), c0.slice(s![.., n + 2..]));
                    // same bits as the contiguous run
                    assert_eq!(cw.slice(s![.., 2..n + 2]), c);
                }
            }
        }
    }

    #[test]
    fn f64_matches_naive_on_all_shapes() {
        check_shapes::<f64>(1e-14);
    }

    #[test]
    fn f32_matches_naive_on_all_shapes() {
        check_shapes::<f32>(1e-5);
    }

    #[test]
    fn b_given_untransposed_matches_naive() {
        // The backward orientation: δh = δgates · W_hh with W_hh [N·… = K, N] contiguous.
        let (m, k, n) = (9, 48, 12);
        let b = mat::<f64>(k, n, 3);
        let a = mat::<f64>(m, k, 4);
        let mut packed = PackedB::default();
        packed.pack(b.view());
        let mut c = Array2::zeros((m, n));
        gemm_packed(a.view(), &packed, false, c.view_mut());
        let zero = Array2::zeros((m, n));
        let want = naive(a.view(), b.view(), zero.view(), false);
        assert_close(c.view(), &want, &abs_scale(a.view(), b.view(), zero.view()), 1e-14);
    }

    #[test]
    fn repacking_reuses_the_buffer_and_resets_padding() {
        let mut packed = PackedB::<f32>::default();
        assert_eq!((packed.k(), packed.n()), (0, 0));
        packed.pack(mat::<f32>(20, 40, 1).view());
        let cap = packed.data.capacity();
        let b = mat::<f32>(10, 17, 2);
        packed.pack(b.view());
        assert_eq!(packed.data.capacity(), cap);
        let panels = 17usize.div_ceil(NR_F32);
        assert_eq!(packed.data.len(), panels * 10 * NR_F32);
        // the padding columns of the last panel are zero again, its real columns are b's
        let used = 17 - (panels - 1) * NR_F32;
        for (p, row) in packed.data[(panels - 1) * 10 * NR_F32..].chunks_exact(NR_F32).enumerate() {
            assert_eq!(&row[..used], b.slice(s![p, 17 - used..]).to_vec().as_slice());
            assert!(row[used..].iter().all(|&x| x == 0.0));
        }
        let a = mat::<f32>(3, 10, 5);
        let mut c = Array2::zeros((3, 17));
        gemm_packed(a.view(), &packed, false, c.view_mut());
        let zero = Array2::zeros((3, 17));
        let want = naive(a.view(), b.view(), zero.view(), false);
        assert_close(c.view(), &want, &abs_scale(a.view(), b.view(), zero.view()), 1e-5);
    }

    #[test]
    fn results_are_bit_identical_across_runs_paths_and_column_splits() {
        let (m, k, n) = (19, 70, 200);
        let w = mat::<f32>(n, k, 7);
        let a = mat::<f32>(m, k, 8);
        let c0 = mat::<f32>(m, n, 9);
        let mut packed = PackedB::default();
        packed.pack(w.t());
        for accumulate in [false, true] {
            let run = |f: &dyn Fn(ArrayViewMut2<'_, f32>)| {
                let mut c = c0.clone();
                f(c.view_mut());
                c
            };
            let first = run(&|c| gemm_packed(a.view(), &packed, accumulate, c));
            let again = run(&|c| gemm_packed(a.view(), &packed, accumulate, c));
            assert_eq!(first, again);
            // Column halves packed separately (the two-worker split) give the same bits.
            for split in [PackedB::<f32>::NR, 7, n - 1] {
                let mut c = c0.clone();
                let (c_lo, c_hi) = c.view_mut().split_at(Axis(1), split);
                for (cols, part) in [(0..split, c_lo), (split..n, c_hi)] {
                    let mut half = PackedB::default();
                    half.pack(w.t().slice(s![.., cols]));
                    gemm_packed(a.view(), &half, accumulate, part);
                }
                assert_eq!(first, c, "split at {split}");
            }
            // The any-stride path (a column-major copy of a) gives the same bits.
            let a_f = a.t().as_standard_layout().reversed_axes().to_owned();
            assert_eq!(a_f.strides()[1], m as isize);
            let scalar = run(&|c| gemm_packed(a_f.view(), &packed, accumulate, c));
            assert_eq!(first, scalar);
            // ... and so does a c with a non-unit column stride.
            let mut c_f = c0.t().as_standard_layout().reversed_axes().to_owned();
            gemm_packed(a.view(), &packed, accumulate, c_f.view_mut());
            assert_eq!(first, c_f);
        }
    }

    #[test]
    fn empty_dimensions_are_handled() {
        // K = 0: c = 0 (or unchanged when accumulating); M = 0 and N = 0: nothing to do.
        let mut packed = PackedB::<f64>::default();
        packed.pack(Array2::zeros((0, 5)).view());
        let a = Array2::<f64>::zeros((3, 0));
        let mut c = Array2::from_elem((3, 5), 2.0);
        gemm_packed(a.view(), &packed, true, c.view_mut());
        assert!(c.iter().all(|&x| x == 2.0));
        gemm_packed(a.view(), &packed, false, c.view_mut());
        assert!(c.iter().all(|&x| x == 0.0));
        packed.pack(Array2::zeros((4, 0)).view());
        let mut c = Array2::<f64>::zeros((3, 0));
        gemm_packed(Array2::zeros((3, 4)).view(), &packed, false, c.view_mut());
        packed.pack(Array2::ones((4, 6)).view());
        let mut c = Array2::<f64>::zeros((0, 6));
        gemm_packed(Array2::zeros((0, 4)).view(), &packed, false, c.view_mut());
        assert_eq!(c.dim(), (0, 6));
    }
}
