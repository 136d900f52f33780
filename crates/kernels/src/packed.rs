//! Matrix products with one operand packed into register-blocked column panels.
//!
//! Every step of a recurrent pass multiplies a small batch matrix `A` `[M, K]` (M = batch,
//! typically 32) by the same weight matrix `B` `[K, N]` (`h_{t−1} · W_hhᵀ` forward,
//! `δgates · W_hh` backward). A general GEMM (matrixmultiply) re-packs `B` and allocates its
//! packing buffer on every call; at M = 32 that overhead, and `B` streaming from L3 in
//! a layout not made for the micro-kernel, keep it well below the machine's big-product speed.
//! Here `B` is packed once ([`PackedB::pack`], reusing its buffer) and every step only runs
//! the register-blocked micro-kernel ([`gemm_packed`]). The same kernel computes the
//! all-step products: the input projection `X · W_ihᵀ` and `δ · W_ih` ([`gemm_packed`], `A`
//! read in place), and the weight gradients `δᵀ · X` ([`gemm_packed_tn`], `A` read transposed
//! in place, `X` packed).
//!
//! # Layout
//! `B` is cut into column panels of `NR` columns, the last ones narrower: `NR` is three
//! vectors of the build's vector unit with AVX (`f32`: 24 columns; the `4 × NR` accumulator
//! tile then fills 12 of the 16 registers), two with AVX-512 or only SSE2. The columns left
//! after the full panels form a last panel, rounded up to whole vectors and zero-padded; when
//! they fit in one vector (too few accumulators to hide the FMA latency) they and the last
//! full panel become two panels of two vectors instead (e.g. N = 128: 4 × 24 + 16 + 16). Each
//! panel is stored K-major: the values of row `p` are contiguous, rows one after another,
//! panels one after another, so a panel starting at column `j0` with width `w` holds
//!
//! ```text
//! data[K · j0 + p · w + j] = B[p, j0 + j]   (0 past column N)
//! ```
//!
//! The micro-kernel computes an `MR × w` tile of `C` (`MR` = 4 rows of `A`) in an array of
//! accumulators that LLVM keeps in vector registers: for each `p` it loads the panel's row
//! `p` once (contiguous) and broadcasts `A[i, p]` of each of the `MR` rows. `A` is read in
//! place (rows may be strided, columns must be contiguous for the fast path), so a step
//! allocates nothing. Panels are visited in chunks of about 256 KiB of packed `B` (fits L2),
//! each chunk against all row blocks of `A`, so `B` streams from memory/L3 once per product
//! and `A` stays in L1/L2.
//!
//! # Summation order (determinism)
//! In [`gemm_packed`] every output element is computed the same way, whatever tile position,
//! panel width, remainder or column split computes it: `s = 0; for p in 0..K { s = fma(A[i,p],
//! B[p,j], s) }`, then `C[i,j] = s` or `C[i,j] += s`. [`gemm_packed_tn`] does the same per
//! block of [`KC`] rows of `K`, adding each block's sum to `C` in ascending order. `fma` is a
//! fused multiply-add when the build enables the `fma` target feature (e.g.
//! `-C target-cpu=x86-64-v3`) and `a·b + s` otherwise, so results are bit-identical from run
//! to run and between threads that each own a range of rows of `C` or a column range of `B`,
//! but may differ in the last bits between builds with and without `fma`.
//!
//! # Speed
//! The kernel is plain safe Rust, so its vector width is the build's: with AVX2 + FMA compiled
//! in (`-C target-cpu=x86-64-v3`, the workspace default on x86-64) it beats matrixmultiply's
//! run-time-dispatched kernel at these shapes; with the baseline x86-64 target (SSE2, no FMA)
//! it would be slower, so the cells use it only when the `fma` feature is compiled in
//! (`packed_weight::USE_PACKED`). The effect on a whole training step is measured by
//! `cargo xtask bench`.

use std::mem::size_of;

use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use rnnlab_core::Float;

/// Rows of `A` (and `C`) per micro-tile.
const MR: usize = 4;
/// Bytes of one vector register of the build's widest vector unit.
const VEC_BYTES: usize = if cfg!(target_feature = "avx512f") {
    64
} else if cfg!(target_feature = "avx") {
    32
} else {
    16
};
/// Vectors per full panel row: with AVX's 16 registers a 4 × 3-vector tile (12 accumulators)
/// hides the FMA latency best; AVX-512 and SSE2 use 2.
const PANEL_VECS: usize = if cfg!(target_feature = "avx") && !cfg!(target_feature = "avx512f") { 3 } else { 2 };
/// Vector lanes for 4-byte floats.
const VW_F32: usize = VEC_BYTES / 4;
/// Vector lanes for 8-byte floats.
const VW_F64: usize = VEC_BYTES / 8;
/// Columns per full panel for 4-byte floats.
const NR_F32: usize = PANEL_VECS * VW_F32;
/// Columns per full panel for 8-byte floats.
const NR_F64: usize = PANEL_VECS * VW_F64;
/// Packed-`B` bytes visited against all row blocks of `A` before moving on (about L2 / 2).
const CHUNK_BYTES: usize = 256 * 1024;
/// Rows of `K` per block in [`gemm_packed_tn`] (the transposed `A` strip of a row block,
/// `KC` cache lines, stays in L1/L2 while the chunk's panels stream past it).
pub(crate) const KC: usize = 256;

/// The full panel width for `F`: [`NR_F32`] for `f32`, [`NR_F64`] for `f64`.
#[inline(always)]
const fn nr_of<F>() -> usize {
    if size_of::<F>() == 4 { NR_F32 } else { NR_F64 }
}

/// The vector width for `F`.
#[inline(always)]
const fn vw_of<F>() -> usize {
    if size_of::<F>() == 4 { VW_F32 } else { VW_F64 }
}

/// `B` `[K, N]` packed once into column panels, K-major, the last one zero-padded to whole
/// vectors (layout in the module docs). Reusable: [`PackedB::pack`] overwrites it in place.
#[derive(Clone, Debug, Default)]
pub(crate) struct PackedB<F> {
    data: Vec<F>,
    k: usize,
    n: usize,
}

impl<F: Float> PackedB<F> {
    /// The full panel width `NR` for `F`. To split a product between workers, give each a
    /// [`PackedB`] of its own column range of `B` (and the matching columns of `C`): each
    /// element's result is bit-identical to the one-worker product (same kernel, same order
    /// over `k`).
    #[cfg(test)]
    pub(crate) const NR: usize = nr_of::<F>();

    /// Packs `b` `[K, N]`, of any strides (e.g. `w_hh.t()`), reusing the buffer.
    ///
    /// Costs one pass over `b` (K·N copies); pack once per sequence and weights update.
    pub(crate) fn pack(&mut self, b: ArrayView2<'_, F>) {
        let (k, n) = b.dim();
        // Repacking the same shape overwrites every real value and leaves the padding (zeros
        // since the last resize) as it is: no zero-filling pass over the whole buffer.
        let same_shape = (k, n) == (self.k, self.n);
        self.k = k;
        self.n = n;
        if !same_shape {
            self.data.clear();
        }
        let n_panels = self.n_panels();
        let stored = if n_panels == 0 {
            0
        } else {
            let (col0, w) = self.panel(n_panels - 1);
            col0 + w
        };
        self.data.resize(k * stored, F::zero());
        if k == 0 || n == 0 {
            return;
        }
        if b.strides()[1] == 1 {
            // Rows of `b` contiguous (e.g. `X`): copy each row's slice of every panel; the
            // full panels in fixed-size pieces (inlined copies, no memmove calls).
            let (nr, main) = (nr_of::<F>(), self.main_panels());
            for (p, row) in b.rows().into_iter().enumerate() {
                // Unreachable `else`: a 1-D view with unit stride is contiguous.
                let Some(row) = row.to_slice() else { continue };
                for (q, src) in row[..main * nr].chunks_exact(nr).enumerate() {
                    let at = q * k * nr + p * nr;
                    self.data[at..at + nr].copy_from_slice(src);
                }
                for q in main..n_panels {
                    let (col0, w) = self.panel(q);
                    let src = &row[col0..n.min(col0 + w)];
                    let at = k * col0 + p * w;
                    copy_by_vectors(&mut self.data[at..at + src.len()], src);
                }
            }
        } else {
            // Column by column: a column of `w.t()` is a contiguous row of `w`.
            for q in 0..n_panels {
                let (col0, w) = self.panel(q);
                let dst = &mut self.data[k * col0..k * (col0 + w)];
                for (jj, col) in b.columns().into_iter().skip(col0).take(w).enumerate() {
                    for (row, &v) in dst.chunks_exact_mut(w).zip(col.iter()) {
                        row[jj] = v;
                    }
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

    /// The panels of full width `NR` at the start.
    fn main_panels(&self) -> usize {
        let (nr, vw) = (nr_of::<F>(), vw_of::<F>());
        let (full, rest) = (self.n / nr, self.n % nr);
        // A one-vector tail (half-speed: too few accumulators to hide the FMA latency) is
        // merged with the last full panel of three vectors into two panels of two vectors.
        if rest > 0 && rest <= vw && full >= 1 && nr == 3 * vw { full - 1 } else { full }
    }

    /// The number of column panels.
    fn n_panels(&self) -> usize {
        let nr = nr_of::<F>();
        let main = self.main_panels();
        let rest = self.n - main * nr;
        main + if rest == 0 {
            0
        } else if rest > nr {
            2
        } else {
            1
        }
    }

    /// The column after panel `q − 1`'s last real column: 0 for `q = 0`, N for
    /// `q = n_panels()`; panel `q`'s first column otherwise.
    fn col_end(&self, q: usize) -> usize {
        if q == 0 {
            return 0;
        }
        let (col0, w) = self.panel(q - 1);
        (col0 + w).min(self.n)
    }

    /// Panel `q`'s first column and stored width (its columns rounded up to whole vectors).
    /// It starts at `K · col0` in `data`: every panel before it is stored without padding.
    fn panel(&self, q: usize) -> (usize, usize) {
        let (nr, vw) = (nr_of::<F>(), vw_of::<F>());
        let main = self.main_panels();
        if q < main {
            return (q * nr, nr);
        }
        let col0 = main * nr;
        let rest = self.n - col0;
        if rest > nr {
            // The merged pair: two panels of two vectors.
            if q == main { (col0, 2 * vw) } else { (col0 + 2 * vw, (rest - 2 * vw).div_ceil(vw) * vw) }
        } else {
            (col0, rest.div_ceil(vw) * vw)
        }
    }
}

/// `dst.copy_from_slice(src)` (equal lengths) in pieces of one vector, inlined: a tail panel's
/// row is one to three vectors, too short for a `memmove` call to pay.
#[inline(always)]
fn copy_by_vectors<F: Float>(dst: &mut [F], src: &[F]) {
    if size_of::<F>() == 4 {
        copy_chunks::<F, VW_F32>(dst, src);
    } else {
        copy_chunks::<F, VW_F64>(dst, src);
    }
}

#[inline(always)]
fn copy_chunks<F: Float, const V: usize>(dst: &mut [F], src: &[F]) {
    let mut d = dst.chunks_exact_mut(V);
    let mut s = src.chunks_exact(V);
    for (d, s) in (&mut d).zip(&mut s) {
        if let (Ok(d), Ok(s)) = (<&mut [F; V]>::try_from(d), <&[F; V]>::try_from(s)) {
            *d = *s;
        }
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

/// `c = a · b` (`accumulate = false`) or `c += a · b` (`accumulate = true`) with `b` packed.
///
/// # Shapes
/// `a` `[M, K]`, `b` `[K, N]`, `c` `[M, N]`. The fast path wants unit column strides in `a`
/// and `c` (rows may be strided, e.g. column slices of wider arrays); other layouts take a
/// slower scalar path with the same results. Returns `false`, touching nothing, for
/// mismatched shapes — in every build, so that the public entry points
/// ([`crate::PackedWeight`]'s products, which check the shapes first) turn it into an error.
pub(crate) fn gemm_packed<F: Float>(
    a: ArrayView2<'_, F>,
    b: &PackedB<F>,
    accumulate: bool,
    c: ArrayViewMut2<'_, F>,
) -> bool {
    gemm_packed_mode(a, b, if accumulate { Mode::Add } else { Mode::Set }, c)
}

/// `c = d + a · b` with `b` packed, in one pass over `c` (the per-step `gates = xp + h·Wᵀ`
/// without first copying `xp` into `gates`). Same bits as copying `d` into `c` and calling
/// [`gemm_packed`] with `accumulate`.
///
/// # Shapes
/// As [`gemm_packed`]; `d` `[M, N]` like `c` (`false`, nothing touched, otherwise).
pub(crate) fn gemm_packed_from<F: Float>(
    a: ArrayView2<'_, F>,
    b: &PackedB<F>,
    d: ArrayView2<'_, F>,
    mut c: ArrayViewMut2<'_, F>,
) -> bool {
    let unit = |stride: isize, len: usize| stride == 1 || len <= 1;
    let fits = a.ncols() == b.k && c.nrows() == a.nrows() && c.ncols() == b.n && d.dim() == c.dim();
    if !fits {
        return false;
    }
    if !unit(d.strides()[1], d.ncols()) {
        c.assign(&d);
        return gemm_packed_mode(a, b, Mode::Add, c);
    }
    gemm_packed_mode(a, b, Mode::From(d), c)
}

/// `c = s`, `c += s` or `c = d + s` with `s = a · b`, all on this thread (the caller's part of
/// a product shared with a [`crate::step_worker::StepWorker`], which must not start more
/// threads). Any layout; shapes as [`gemm_packed`] (`false`, nothing touched, for a
/// mismatch).
pub(crate) fn gemm_packed_here<F: Float>(
    a: ArrayView2<'_, F>,
    b: &PackedB<F>,
    mode: Mode<'_, F>,
    c: ArrayViewMut2<'_, F>,
) -> bool {
    let unit = |stride: isize, len: usize| stride == 1 || len <= 1;
    let d_ok = match &mode {
        Mode::From(d) => d.dim() == c.dim(),
        _ => true,
    };
    let ok = a.ncols() == b.k && c.nrows() == a.nrows() && c.ncols() == b.n && d_ok;
    if !ok || c.is_empty() {
        return ok;
    }
    let d_unit = match &mode {
        Mode::From(d) => unit(d.strides()[1], d.ncols()),
        _ => true,
    };
    if b.k == 0 || !unit(a.strides()[1], a.ncols()) || !unit(c.strides()[1], c.ncols()) || !d_unit {
        scalar_panels(a, b, mode, c);
    } else {
        panel_range(a, b, 0..b.n_panels(), mode, c);
    }
    true
}

/// How a tile's sums `s` reach `c`.
#[derive(Clone, Copy)]
pub(crate) enum Mode<'a, F> {
    /// `c = s`.
    Set,
    /// `c += s`.
    Add,
    /// `c = d + s`, `d` shaped as `c` with unit column stride.
    From(ArrayView2<'a, F>),
}

/// `c ∘= a · b` as `mode` says; `false` (nothing touched) for mismatched shapes, in every build.
fn gemm_packed_mode<F: Float>(
    a: ArrayView2<'_, F>,
    b: &PackedB<F>,
    mode: Mode<'_, F>,
    c: ArrayViewMut2<'_, F>,
) -> bool {
    let d_ok = match &mode {
        Mode::From(d) => d.dim() == c.dim(),
        _ => true,
    };
    let ok = a.ncols() == b.k && c.nrows() == a.nrows() && c.ncols() == b.n && d_ok;
    if !ok || c.is_empty() {
        return ok;
    }
    let unit = |stride: isize, len: usize| stride == 1 || len <= 1;
    if b.k == 0 || !unit(a.strides()[1], a.ncols()) || !unit(c.strides()[1], c.ncols()) {
        scalar_panels(a, b, mode, c);
        return true;
    }
    let m = a.nrows();
    let parts = thread_parts(m, a.nrows() * b.k * b.n);
    if parts <= 1 {
        panel_range(a, b, 0..b.n_panels(), mode, c);
        return true;
    }
    // Row ranges (whole row blocks), one per thread: each thread writes its own rows, so no
    // cache line of `c` is shared; `d` (if any) cut like `c`.
    std::thread::scope(|scope| {
        let (mut a_rest, mut c_rest) = (a, c);
        let mut d_rest = if let Mode::From(d) = mode { Some(d) } else { None };
        for (i, rows) in split_rows(m, parts).enumerate() {
            let (a_part, a_next) = a_rest.split_at(Axis(0), rows.len());
            let (c_part, c_next) = c_rest.split_at(Axis(0), rows.len());
            (a_rest, c_rest) = (a_next, c_next);
            let part_mode = match (mode, d_rest) {
                (Mode::From(_), Some(d)) => {
                    let (d_part, d_next) = d.split_at(Axis(0), rows.len());
                    d_rest = Some(d_next);
                    Mode::From(d_part)
                }
                (m, _) => m,
            };
            if i + 1 == parts {
                panel_range(a_part, b, 0..b.n_panels(), part_mode, c_part);
            } else {
                scope.spawn(move || panel_range(a_part, b, 0..b.n_panels(), part_mode, c_part));
            }
        }
    });
    true
}

/// Below this many multiply-adds a product stays on one thread: starting and joining a scoped
/// thread costs tens of microseconds here, 16 M multiply-adds take about 0.3 ms on one core
/// (measured: at 4 M, the LSTM H = 32, T = 50 step got slower on two threads).
const MIN_PARALLEL_MACS: usize = 16 << 20;

/// How many row ranges to cut a product of `macs` multiply-adds over `rows` rows of the
/// output into.
#[inline]
fn thread_parts(rows: usize, macs: usize) -> usize {
    if macs < MIN_PARALLEL_MACS {
        return 1;
    }
    crate::threads::threads().min(rows.div_ceil(MR)).max(1)
}

/// `parts` consecutive, nearly equal ranges of `0..rows`, cut at multiples of [`MR`] (whole
/// row blocks, so every thread runs the same kernels on its rows as one thread would).
#[inline]
fn split_rows(rows: usize, parts: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let blocks = rows.div_ceil(MR);
    let cut = move |i: usize| (i * blocks / parts * MR).min(rows);
    (0..parts).map(move |i| cut(i)..cut(i + 1))
}

/// `c` (columns of panels `qs`) `(+)= a · b[:, those columns]`.
fn panel_range<F: Float>(
    a: ArrayView2<'_, F>,
    b: &PackedB<F>,
    qs: std::ops::Range<usize>,
    mode: Mode<'_, F>,
    mut c: ArrayViewMut2<'_, F>,
) {
    let c_col0 = b.col_end(qs.start);
    // Contiguous `a` and `c` (and `d` contiguous or one row broadcast): rows cut by
    // arithmetic, no views built per row block (that cost ~25% of a product with K = 32).
    let d_src = match &mode {
        Mode::From(d) if d.is_standard_layout() => d.as_slice().map(DRows::Rows),
        Mode::From(d) if d.strides()[0] == 0 && d.nrows() > 0 => d.row(0).to_slice().map(DRows::Same),
        Mode::From(_) => None,
        Mode::Set | Mode::Add => Some(DRows::None),
    };
    let n = c.ncols();
    if let (Some(a_flat), Some(d_src), true) = (a.as_slice(), d_src, c.is_standard_layout() && b.k > 0 && n > 0)
        && let Some(c_flat) = c.as_slice_mut()
    {
        let k = b.k;
        for (q0, q1) in panel_chunks::<F>(k, qs) {
            let cols = || Cols { panels: q0..q1, c_col0 };
            for (blk, (a_blk, c_blk)) in a_flat.chunks(MR * k).zip(c_flat.chunks_mut(MR * n)).enumerate() {
                let r = c_blk.len() / n;
                let rows = RowsAt { a: a_blk, k, c: c_blk, n, d: d_src, row0: blk * MR };
                match r {
                    4 => flat_block::<F, 4>(rows, b, cols(), mode),
                    3 => flat_block::<F, 3>(rows, b, cols(), mode),
                    2 => flat_block::<F, 2>(rows, b, cols(), mode),
                    _ => flat_block::<F, 1>(rows, b, cols(), mode),
                }
            }
        }
        return;
    }
    for (q0, q1) in panel_chunks::<F>(b.k, qs) {
        for (blk, (a_blk, c_blk)) in
            a.axis_chunks_iter(Axis(0), MR).zip(c.axis_chunks_iter_mut(Axis(0), MR)).enumerate()
        {
            let rows = ARows::InPlace(a_blk);
            let mode = match &mode {
                Mode::From(d) => Mode::From(d.slice(ndarray::s![blk * MR..blk * MR + a_blk.nrows(), ..])),
                Mode::Set => Mode::Set,
                Mode::Add => Mode::Add,
            };
            let cols = Cols { panels: q0..q1, c_col0 };
            match a_blk.nrows() {
                4 => row_block::<F, 4>(rows, b, 0, b.k, cols, mode, c_blk),
                3 => row_block::<F, 3>(rows, b, 0, b.k, cols, mode, c_blk),
                2 => row_block::<F, 2>(rows, b, 0, b.k, cols, mode, c_blk),
                _ => row_block::<F, 1>(rows, b, 0, b.k, cols, mode, c_blk),
            }
        }
    }
}

/// Where a [`Mode::From`]'s `d` rows come from on the contiguous path.
#[derive(Clone, Copy)]
enum DRows<'a, F> {
    /// No `d` (`Set`, `Add`).
    None,
    /// `d` row-major, rows of `c`'s width.
    Rows(&'a [F]),
    /// One row for every row of `c` (a broadcast bias).
    Same(&'a [F]),
}

/// One row block of the contiguous path: rows `row0..` of `a` (`k` wide) and `c` (`n` wide).
struct RowsAt<'a, 'c, F> {
    a: &'a [F],
    k: usize,
    c: &'c mut [F],
    n: usize,
    d: DRows<'a, F>,
    row0: usize,
}

/// [`row_block`] over rows cut from contiguous slices.
#[inline(always)]
fn flat_block<F: Float, const R: usize>(rows: RowsAt<'_, '_, F>, b: &PackedB<F>, cols: Cols, mode: Mode<'_, F>) {
    let RowsAt { a, k, c, n, d, row0 } = rows;
    let a_rows: [&[F]; R] = std::array::from_fn(|i| a.get(i * k..(i + 1) * k).unwrap_or(&[]));
    let mut c_it = c.chunks_exact_mut(n);
    let mut c_rows: [Option<&mut [F]>; R] = std::array::from_fn(|_| c_it.next());
    let store = match (mode, d) {
        (Mode::Add, _) => Store::Add,
        (Mode::From(_), DRows::Rows(d)) => {
            Store::From(std::array::from_fn(|i| d.get((row0 + i) * n..(row0 + i + 1) * n).unwrap_or(&[])))
        }
        (Mode::From(_), DRows::Same(row)) => Store::From([row; R]),
        _ => Store::Set,
    };
    // Unreachable: the caller cut whole rows of the widths `gemm_packed_mode` checked (the
    // same in every build: no debug-only assertion, so debug and release compute alike).
    if a_rows.iter().any(|r| r.len() != k) || c_rows.iter().any(Option::is_none) {
        return;
    }
    tiles(ARows::Slices, &a_rows, b, 0, k, cols, store, &mut c_rows);
}

/// Panels `panels` of `b`, whose columns start in `c` at `b`'s column `c_col0`.
struct Cols {
    panels: std::ops::Range<usize>,
    c_col0: usize,
}

/// `c += a_tᵀ · b` for each `(b, c)` of `targets`, with every `b` packed and `a_t` `[K, M]`
/// read transposed: the weight gradients `δᵀ · X` and `δᵀ · H_prev` over all time steps,
/// sharing one packing of `δ`. Each of `sums` (at most [`MAX_SUMS`], each `M` long) gets the
/// column sums of `a_t` added, row by row in ascending order — the bias gradients, summed
/// while `δ` is packed instead of in another pass over it (the same bits as
/// [`crate::loops::add_col_sums`]).
///
/// Per block of [`KC`] rows of `K`, the block of `a_t` is copied into `strips` (reused
/// buffer) as strips of `MR` of its columns, K-major, so that the micro-kernel reads it
/// contiguously; then every target's panels run against every strip.
///
/// # Shapes
/// `a_t` `[K, M]` with unit column stride (rows may be strided), each `b` `[K, N_b]`, each
/// `c` `[M, N_b]` with unit column stride. Returns `false` (and touches no `c` and no sum)
/// for other layouts, mismatched shapes or more than [`MAX_SUMS`] sums, so the caller can
/// fall back to a general GEMM.
pub(crate) fn gemm_packed_tn<F: Float>(
    a_t: ArrayView2<'_, F>,
    targets: &mut [(&PackedB<F>, ArrayViewMut2<'_, F>)],
    sums: &mut [&mut [F]],
    strips: &mut Vec<Vec<F>>,
) -> bool {
    let (k, m) = a_t.dim();
    let unit = |stride: isize, len: usize| stride == 1 || len <= 1;
    let fits = unit(a_t.strides()[1], m)
        && sums.len() <= MAX_SUMS
        && sums.iter().all(|s| s.len() == m)
        && targets
            .iter()
            .all(|(b, c)| b.k == k && c.nrows() == m && c.ncols() == b.n && unit(c.strides()[1], c.ncols()));
    if !fits {
        return false;
    }
    let macs = k * m * targets.iter().map(|(b, _)| b.n).sum::<usize>();
    let n_strips = m.div_ceil(MR);
    let parts = if macs < MIN_PARALLEL_MACS { 1 } else { crate::threads::threads().min(n_strips).max(1) };
    if strips.len() < parts {
        strips.resize_with(parts, Vec::new);
    }
    // Part i: strips (rows of every `c`) cut(i)..cut(i + 1), against every panel of every
    // target; each part packs only its own strips of `a_t`, and writes only its rows of `c`.
    let cut = |i: usize| i * n_strips / parts;
    let mut jobs: Vec<TnPart<'_, '_, '_, F>> = (0..parts)
        .map(|i| TnPart { ss: cut(i)..cut(i + 1), jobs: Vec::with_capacity(targets.len()), sums: Vec::new() })
        .collect();
    for (b, c) in targets.iter_mut() {
        let mut rest = c.view_mut();
        for part in jobs.iter_mut() {
            let rows = (part.ss.end * MR).min(m) - part.ss.start * MR;
            let (mine, next) = rest.split_at(Axis(0), rows);
            rest = next;
            part.jobs.push(TnJob { b, c: mine });
        }
    }
    // Each part's columns of every sum (the columns of its strips).
    for sum in sums.iter_mut() {
        let mut rest: &mut [F] = sum;
        for part in jobs.iter_mut() {
            let cols = (part.ss.end * MR).min(m) - part.ss.start * MR;
            let (mine, next) = std::mem::take(&mut rest).split_at_mut(cols);
            rest = next;
            part.sums.push(mine);
        }
    }
    if parts == 1 {
        if let (Some(part), Some(strip)) = (jobs.first_mut(), strips.first_mut()) {
            tn_part(a_t, part, strip);
        }
    } else {
        std::thread::scope(|scope| {
            let mut work = jobs.iter_mut().zip(strips.iter_mut());
            let last = work.next();
            for (part, strip) in work {
                scope.spawn(move || tn_part(a_t, part, strip));
            }
            if let Some((part, strip)) = last {
                tn_part(a_t, part, strip);
            }
        });
    }
    true
}

/// Column sums [`gemm_packed_tn`] adds while packing, at most.
pub(crate) const MAX_SUMS: usize = 2;

/// One thread's share of a [`gemm_packed_tn`]: strips `ss` of `a_t`, each target's rows of
/// `c` for them and each sum's columns for them.
struct TnPart<'b, 'c, 's, F> {
    ss: std::ops::Range<usize>,
    jobs: Vec<TnJob<'b, 'c, F>>,
    sums: Vec<&'s mut [F]>,
}

/// One target's share of a [`gemm_packed_tn`] part: `b`, and the part's rows of `c`.
struct TnJob<'b, 'c, F> {
    b: &'b PackedB<F>,
    c: ArrayViewMut2<'c, F>,
}

/// `c += a_tᵀ · b` for strips `ss` of `a_t` (rows `ss.start·MR..` of the full `c`, row 0 of
/// each job's `c`) against every panel of each job's `b`, packing `a_t` block by block into
/// `strips` and adding its column sums to the part's `sums` (column 0 of each is column
/// `ss.start·MR` of `a_t`).
fn tn_part<F: Float>(a_t: ArrayView2<'_, F>, part: &mut TnPart<'_, '_, '_, F>, strips: &mut Vec<F>) {
    let TnPart { ss, jobs, sums } = part;
    let ss = ss.clone();
    let (k, m) = a_t.dim();
    let n_strips = ss.len();
    let row0 = ss.start * MR;
    let mut k0 = 0;
    while k0 < k {
        let kc = KC.min(k - k0);
        let block = a_t.slice(ndarray::s![k0..k0 + kc, ..]);
        // strip s, row p, column i (< the strip's width r_s) at s·stride + p·r_s + i; every
        // value read below is written here first, so the buffer only grows, never zeroed.
        // The stride is padded by a cache line: at kc·MR·4 bytes = 4 KiB the writes of one
        // row would all map to the same L1 sets.
        let stride = kc * MR + 64 / size_of::<F>();
        // A standard-layout block is packed [`STRIP_GROUP`] strips at a time, each group used
        // while it is still in L1/L2; other layouts all at once, row by row.
        let flat = block.as_slice_memory_order().filter(|_| block.is_standard_layout());
        let group = if flat.is_some() { STRIP_GROUP.min(n_strips) } else { n_strips };
        if strips.len() < group * stride {
            strips.resize(group * stride, F::zero());
        }
        for g0 in ss.clone().step_by(group.max(1)) {
            let g1 = (g0 + group).min(ss.end);
            let sink = Sums { sums: &mut sums[..], col0: row0 };
            match flat {
                Some(flat) => match sink.sums.len() {
                    0 => pack_strips::<F, 0>(flat, m, kc, g0..g1, stride, strips, sink),
                    1 => pack_strips::<F, 1>(flat, m, kc, g0..g1, stride, strips, sink),
                    _ => pack_strips::<F, MAX_SUMS>(flat, m, kc, g0..g1, stride, strips, sink),
                },
                None => pack_strips_by_rows(block, g0..g1, stride, strips, sink),
            }
            for TnJob { b, c } in jobs.iter_mut() {
                for (q0, q1) in panel_chunks::<F>(kc, 0..b.n_panels()) {
                    for s in g0..g1 {
                        let (i0, r) = (s * MR, MR.min(m - s * MR));
                        let strip = &strips[(s - g0) * stride..(s - g0) * stride + kc * r];
                        let c_blk = c.slice_mut(ndarray::s![i0 - row0..i0 - row0 + r, ..]);
                        let rows = ARows::Transposed { a: strip, lda: r, i0: 0 };
                        let cols = Cols { panels: q0..q1, c_col0: 0 };
                        match r {
                            4 => row_block::<F, 4>(rows, b, k0, kc, cols, Mode::Add, c_blk),
                            3 => row_block::<F, 3>(rows, b, k0, kc, cols, Mode::Add, c_blk),
                            2 => row_block::<F, 2>(rows, b, k0, kc, cols, Mode::Add, c_blk),
                            _ => row_block::<F, 1>(rows, b, k0, kc, cols, Mode::Add, c_blk),
                        }
                    }
                }
            }
        }
        k0 += kc;
    }
}

/// Strips packed at a time in [`gemm_packed_tn`]: 16 strips of `KC` rows are 64 KiB of `f32`.
const STRIP_GROUP: usize = 16;

/// The column sums a packing adds to: `sums[j][c − col0]` gets every value of column `c`.
struct Sums<'a, 's, F> {
    sums: &'a mut [&'s mut [F]],
    col0: usize,
}

/// Copies strips `ss` of a row-major block `flat` `[kc, m]` into `strips` (strip `s` at
/// `(s − ss.start) · stride`, its row `p` at `p · r_s`): strip by strip, so the writes are
/// contiguous and the block's cache lines one strip reads are the next strips' too. Adds each
/// column's values, row by row, to the first `N` of `sink`'s sums.
#[allow(clippy::too_many_arguments)]
fn pack_strips<F: Float, const N: usize>(
    flat: &[F],
    m: usize,
    kc: usize,
    ss: std::ops::Range<usize>,
    stride: usize,
    strips: &mut [F],
    sink: Sums<'_, '_, F>,
) {
    for (s, dst_strip) in ss.zip(strips.chunks_mut(stride)) {
        let (i0, r) = (s * MR, MR.min(m - s * MR));
        let at = i0 - sink.col0;
        // The strip's sums, in registers while its rows are copied.
        let mut acc = [[F::zero(); MR]; N];
        for (a, sum) in acc.iter_mut().zip(sink.sums.iter()) {
            if let Some(v) = sum.get(at..at + r) {
                a[..r].copy_from_slice(v);
            }
        }
        for (p, dst) in dst_strip[..kc * r].chunks_exact_mut(r).enumerate() {
            let Some(src) = flat.get(p * m + i0..p * m + i0 + r) else { return };
            // Fixed-length copies inline; `copy_from_slice` of 4 values would call memmove.
            match (<&mut [F; MR]>::try_from(&mut *dst), <&[F; MR]>::try_from(src)) {
                (Ok(d), Ok(v)) => {
                    *d = *v;
                    for a in acc.iter_mut() {
                        for (a, &v) in a.iter_mut().zip(v) {
                            *a += v;
                        }
                    }
                }
                _ => {
                    dst.copy_from_slice(src);
                    for a in acc.iter_mut() {
                        for (a, &v) in a.iter_mut().zip(src) {
                            *a += v;
                        }
                    }
                }
            }
        }
        for (a, sum) in acc.iter().zip(sink.sums.iter_mut()) {
            if let Some(v) = sum.get_mut(at..at + r) {
                v.copy_from_slice(&a[..r]);
            }
        }
    }
}

/// Copies strips `ss` of `block` `[kc, M]` (unit column stride, rows possibly strided) into
/// `strips` (strip `s` at `(s − ss.start) · stride`), row by row, adding each row to `sink`'s
/// sums.
fn pack_strips_by_rows<F: Float>(
    block: ArrayView2<'_, F>,
    ss: std::ops::Range<usize>,
    stride: usize,
    strips: &mut [F],
    sink: Sums<'_, '_, F>,
) {
    let (c0, c1) = (ss.start * MR, (ss.end * MR).min(block.ncols()));
    for (p, row) in block.rows().into_iter().enumerate() {
        // Unreachable `else`: the caller checked the unit column stride.
        let Some(row) = row.to_slice() else { return };
        for (s, src) in row.chunks(MR).enumerate().skip(ss.start).take(ss.len()) {
            let at = (s - ss.start) * stride + p * src.len();
            strips[at..at + src.len()].copy_from_slice(src);
        }
        for sum in sink.sums.iter_mut() {
            if let (Some(sum), Some(src)) = (sum.get_mut(c0 - sink.col0..c1 - sink.col0), row.get(c0..c1)) {
                sum.iter_mut().zip(src).for_each(|(a, &v)| *a += v);
            }
        }
    }
}

/// Consecutive ranges of the panels `qs`, each about [`CHUNK_BYTES`] when `kc` rows of each
/// are read.
fn panel_chunks<F: Float>(kc: usize, qs: std::ops::Range<usize>) -> impl Iterator<Item = (usize, usize)> {
    let per = (CHUNK_BYTES / (kc.max(1) * nr_of::<F>() * size_of::<F>())).max(1);
    let end = qs.end;
    qs.step_by(per).map(move |q0| (q0, (q0 + per).min(end)))
}

/// Where a row block's `R` rows of `A` come from.
#[derive(Clone, Copy)]
enum ARows<'a, F> {
    /// Rows of an `[M, K]` view with unit column stride.
    InPlace(ArrayView2<'a, F>),
    /// Rows already cut into slices (the row block's `a_rows`).
    Slices,
    /// Columns `i0..i0 + R` of a row-major `[kc, M]` block with row stride `lda` (row `p`
    /// of the block is row `k0 + p` of `K`).
    Transposed { a: &'a [F], lda: usize, i0: usize },
}

/// One block of `R` rows of `C` against the panels `panels` of `b`, over rows `k0..k0 + kc`
/// of `K`.
#[inline(always)]
fn row_block<F: Float, const R: usize>(
    a: ARows<'_, F>,
    b: &PackedB<F>,
    k0: usize,
    kc: usize,
    cols: Cols,
    mode: Mode<'_, F>,
    mut c: ArrayViewMut2<'_, F>,
) {
    let mut c_it = c.axis_iter_mut(Axis(0)).map(|r| r.into_slice());
    let mut c_rows: [Option<&mut [F]>; R] = std::array::from_fn(|_| c_it.next().flatten());
    if c_rows.iter().any(Option::is_none) {
        // Unreachable: the callers checked unit column strides and `R` rows (in every build).
        return;
    }
    let d_view = match &mode {
        Mode::From(d) => Some(d),
        _ => None,
    };
    let mut d_it = d_view.into_iter().flat_map(|d| d.axis_iter(Axis(0))).map(|r| r.to_slice());
    let d_rows: [Option<&[F]>; R] = std::array::from_fn(|_| d_it.next().flatten());
    let store = match mode {
        Mode::Set => Store::Set,
        Mode::Add => Store::Add,
        Mode::From(_) => {
            if d_rows.iter().any(Option::is_none) {
                // Unreachable: `Mode::From`'s `d` was checked like `c` (in every build).
                return;
            }
            Store::From(d_rows.map(|r| r.unwrap_or(&[])))
        }
    };
    let a_rows: [&[F]; R] = match &a {
        ARows::InPlace(view) => {
            let mut a_it = view.axis_iter(Axis(0)).map(|r| r.to_slice());
            let rows: [Option<&[F]>; R] = std::array::from_fn(|_| a_it.next().flatten());
            if rows.iter().any(|r| r.is_none_or(|r| r.len() < k0 + kc)) {
                // Unreachable: the callers checked `a`'s unit column stride and width.
                return;
            }
            rows.map(|r| r.map_or(&[][..], |r| &r[k0..k0 + kc]))
        }
        &ARows::Transposed { a, lda, i0 } => {
            if i0 + R > lda || (kc - 1) * lda + i0 + R > a.len() {
                // Unreachable: `tn_part` packed `kc` rows of `lda` values.
                return;
            }
            [&[][..]; R]
        }
        // Unreachable: only `panel_range_flat` cuts rows itself.
        ARows::Slices => return,
    };
    tiles(a, &a_rows, b, k0, kc, cols, store, &mut c_rows);
}

/// The tiles of one row block: `c_rows` `∘=` `a_rows` (or the transposed `a`) times each
/// panel of `cols`, over rows `k0..k0 + kc` of `K`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tiles<F: Float, const R: usize>(
    a: ARows<'_, F>,
    a_rows: &[&[F]; R],
    b: &PackedB<F>,
    k0: usize,
    kc: usize,
    cols: Cols,
    store: Store<'_, F, R>,
    c_rows: &mut [Option<&mut [F]>; R],
) {
    let vw = vw_of::<F>();
    for q in cols.panels {
        let (j0, w) = b.panel(q);
        let off = b.k * j0;
        let panel = &b.data[off + k0 * w..off + (k0 + kc) * w];
        let f32 = size_of::<F>() == 4;
        let out = Out { rows: c_rows, j0: j0 - cols.c_col0, width: w.min(b.n - j0), store };
        match (f32, w / vw) {
            (true, 3) => panel_tile::<F, R, { 3 * VW_F32 }>(a, a_rows, panel, out),
            (true, 2) => panel_tile::<F, R, { 2 * VW_F32 }>(a, a_rows, panel, out),
            (true, _) => panel_tile::<F, R, VW_F32>(a, a_rows, panel, out),
            (false, 3) => panel_tile::<F, R, { 3 * VW_F64 }>(a, a_rows, panel, out),
            (false, 2) => panel_tile::<F, R, { 2 * VW_F64 }>(a, a_rows, panel, out),
            (false, _) => panel_tile::<F, R, VW_F64>(a, a_rows, panel, out),
        }
    }
}

/// How a tile's sums reach its rows of `C`.
#[derive(Clone, Copy)]
enum Store<'a, F, const R: usize> {
    Set,
    Add,
    /// `c = d + s` with the block's rows of `d`.
    From([&'a [F]; R]),
}

/// Where a tile's results go: columns `j0..j0 + width` of the block's rows of `C`.
struct Out<'a, 'c, 'd, F, const R: usize> {
    rows: &'a mut [Option<&'c mut [F]>; R],
    j0: usize,
    width: usize,
    store: Store<'d, F, R>,
}

/// One `R × W` tile: the micro-kernel over one panel (`W` its stored width), then the store.
#[inline(always)]
fn panel_tile<F: Float, const R: usize, const W: usize>(
    a: ARows<'_, F>,
    a_rows: &[&[F]; R],
    panel: &[F],
    out: Out<'_, '_, '_, F, R>,
) {
    let acc = match a {
        ARows::InPlace(_) | ARows::Slices => kernel::<F, R, W>(a_rows, panel),
        ARows::Transposed { a, lda, i0 } => kernel_t::<F, R, W>(a, lda, i0, panel),
    };
    let Out { rows, j0, width, store } = out;
    for (i, (row, acc)) in rows.iter_mut().zip(&acc).enumerate() {
        let Some(dst) = row.as_deref_mut().and_then(|r| r.get_mut(j0..j0 + width)) else { continue };
        // A full-width tile is stored through fixed-size arrays: plain vector stores (a
        // slice copy of run-time length would be a `memcpy` call per row).
        match store {
            Store::Set => match <&mut [F; W]>::try_from(&mut *dst) {
                Ok(d) => *d = *acc,
                Err(_) => dst.iter_mut().zip(acc).for_each(|(d, &s)| *d = s),
            },
            // The sums go through a local array: unrolled loops over two references that LLVM
            // cannot prove apart stay scalar.
            Store::Add => match <&mut [F; W]>::try_from(&mut *dst) {
                Ok(d) => *d = std::array::from_fn(|j| d[j] + acc[j]),
                Err(_) => dst.iter_mut().zip(acc).for_each(|(d, &s)| *d += s),
            },
            Store::From(d_rows) => {
                let Some(src) = d_rows[i].get(j0..j0 + width) else { continue };
                match (<&mut [F; W]>::try_from(&mut *dst), <&[F; W]>::try_from(src)) {
                    (Ok(d), Ok(x)) => *d = std::array::from_fn(|j| x[j] + acc[j]),
                    _ => dst.iter_mut().zip(acc).zip(src).for_each(|((d, &s), &x)| *d = x + s),
                }
            }
        }
    }
}

/// The `R × NR` micro-kernel: `acc[i][j] = Σ_p a_rows[i][p] · panel[p·NR + j]`, `p` ascending.
///
/// `panel` holds `K·NR` values and each row of `a_rows` at least `K`. Not inlined: on its own
/// LLVM keeps the row pointers and all accumulators in registers.
#[inline(never)]
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

/// The micro-kernel with `A` read transposed: `acc[i][j] = Σ_p a[p·lda + i0 + i] ·
/// panel[p·NR + j]`, `p` ascending over the panel's rows.
#[inline(never)]
fn kernel_t<F: Float, const R: usize, const NR: usize>(a: &[F], lda: usize, i0: usize, panel: &[F]) -> [[F; NR]; R] {
    let mut acc = [[F::zero(); NR]; R];
    for (p, b) in panel.chunks_exact(NR).enumerate() {
        let Ok(b) = <&[F; NR]>::try_from(b) else { continue };
        let at = p * lda + i0;
        // In range: `row_block` checked the last row's end.
        let Some(Ok(x)) = a.get(at..at + R).map(<&[F; R]>::try_from) else { break };
        for (acc_row, &x) in acc.iter_mut().zip(x) {
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
fn scalar_panels<F: Float>(a: ArrayView2<'_, F>, b: &PackedB<F>, mode: Mode<'_, F>, mut c: ArrayViewMut2<'_, F>) {
    let nr = nr_of::<F>();
    let main = b.main_panels();
    for ((i, j), out) in c.indexed_iter_mut() {
        let mut s = F::zero();
        if b.k > 0 {
            // the panel holding column j: a full one, or one of the (at most two) last ones
            let mut q = (j / nr).min(main);
            while q + 1 < b.n_panels() && b.panel(q + 1).0 <= j {
                q += 1;
            }
            let (col0, w) = b.panel(q);
            let base = b.k * col0 + (j - col0);
            for (p, &x) in a.row(i).iter().enumerate() {
                s = fmadd(x, b.data.get(base + p * w).copied().unwrap_or_else(F::zero), s);
            }
        }
        match mode {
            Mode::Set => *out = s,
            Mode::Add => *out += s,
            Mode::From(d) => *out = d[[i, j]] + s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2, s};

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
                    // c = d + a·b in one pass: the same bits as copying d and accumulating
                    if accumulate {
                        let d = c0.slice(s![.., 2..n + 2]);
                        let mut from = Array2::from_elem((m, n), F::nan());
                        gemm_packed_from(a, &packed, d, from.view_mut());
                        assert_eq!(from, c);
                        // d with strided rows and a column-major d (the copying path)
                        let d_f = d.t().as_standard_layout().reversed_axes().to_owned();
                        let mut from_f = Array2::from_elem((m, n), F::nan());
                        gemm_packed_from(a, &packed, d_f.view(), from_f.view_mut());
                        assert_eq!(from_f, c);
                    }
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
        // 40 columns: one or more full panels and a narrower last one (16 of 24 with AVX).
        let (k, n) = (10, 40);
        let b = mat::<f32>(k, n, 2);
        packed.pack(b.view());
        assert_eq!(packed.data.capacity(), cap);
        let last = packed.n_panels() - 1;
        let (col0, w) = packed.panel(last);
        let used = n - col0;
        assert!(w >= used && w <= NR_F32 && w % VW_F32 == 0, "last panel width {w} for {used} columns");
        assert_eq!(packed.data.len(), k * (col0 + w));
        // the padding columns of the last panel are zero again, its real columns are b's
        for (p, row) in packed.data[k * col0..].chunks_exact(w).enumerate() {
            assert_eq!(&row[..used], b.slice(s![p, n - used..]).to_vec().as_slice());
            assert!(row[used..].iter().all(|&x| x == 0.0));
        }
        // the same B given column-major (as `w.t()` in the cells) packs to the same values
        let b_cols = b.t().as_standard_layout().reversed_axes().to_owned();
        assert_eq!(b_cols.strides(), &[1, k as isize]);
        let mut again = PackedB::<f32>::default();
        again.pack(b_cols.view());
        assert_eq!(again.data, packed.data);
        let a = mat::<f32>(3, k, 5);
        let mut c = Array2::zeros((3, n));
        gemm_packed(a.view(), &packed, false, c.view_mut());
        let zero = Array2::zeros((3, n));
        let want = naive(a.view(), b.view(), zero.view(), false);
        assert_close(c.view(), &want, &abs_scale(a.view(), b.view(), zero.view()), 1e-5);
    }

    /// `c0 + a_tᵀ·b` by [`gemm_packed_tn`] against the naive product, over K spanning several
    /// [`KC`] blocks, M and N with remainders.
    fn check_tn<F: Float>(rtol: f64) {
        for (idx, &(m, k, n)) in
            [(1, 1, 1), (4, 3, 8), (7, 5, 17), (13, 300, 40), (32, 2 * KC + 17, 33), (64, 600, 130)].iter().enumerate()
        {
            let seed = 100 + idx as u64;
            let a_t = mat::<F>(k, m, seed);
            let b = mat::<F>(k, n, seed + 1);
            let mut packed = PackedB::default();
            packed.pack(b.view());
            let c0 = mat::<F>(m, n + 3, seed + 2);
            let want = naive(a_t.t(), b.view(), c0.slice(s![.., 1..n + 1]), true);
            let scale = abs_scale(a_t.t(), b.view(), c0.slice(s![.., 1..n + 1]));
            let mut strips: Vec<Vec<F>> = Vec::new();
            let mut c = c0.clone();
            assert!(gemm_packed_tn(a_t.view(), &mut [(&packed, c.slice_mut(s![.., 1..n + 1]))], &mut [], &mut strips));
            assert_close(c.slice(s![.., 1..n + 1]), &want, &scale, rtol);
            assert_eq!(c.column(0), c0.column(0));
            assert_eq!(c.column(n + 2), c0.column(n + 2));
            // run to run: the same bits
            let mut again = c0.clone();
            assert!(gemm_packed_tn(
                a_t.view(),
                &mut [(&packed, again.slice_mut(s![.., 1..n + 1]))],
                &mut [],
                &mut strips
            ));
            assert_eq!(again, c);
            // two targets sharing the packing of a_t: each as if alone; a_t with strided rows
            let b2 = mat::<F>(k, 5, seed + 3);
            let mut packed2 = PackedB::default();
            let b2_cols = b2.t().as_standard_layout().reversed_axes().to_owned();
            packed2.pack(b2_cols.view());
            let a_wide = ndarray::concatenate![Axis(1), a_t.view(), mat::<F>(k, 2, seed + 4).view()]
                .as_standard_layout()
                .to_owned();
            let (mut c1, mut c2) = (c0.clone(), Array2::<F>::zeros((m, 5)));
            let mut both = [(&packed, c1.slice_mut(s![.., 1..n + 1])), (&packed2, c2.view_mut())];
            assert!(gemm_packed_tn(a_wide.slice(s![.., ..m]), &mut both, &mut [], &mut strips));
            assert_eq!(c1, c);
            let zero = Array2::<F>::zeros((m, 5));
            let want2 = naive(a_t.t(), b2.view(), zero.view(), true);
            assert_close(c2.view(), &want2, &abs_scale(a_t.t(), b2.view(), zero.view()), rtol);
            // The column sums added while packing: the bits of `add_col_sums`, into sums that
            // start non-zero and zero, on the contiguous path and on strided rows; the
            // products unchanged by them.
            let s0 = mat::<F>(1, m, seed + 5).row(0).to_owned();
            let mut want_s = [s0.clone(), Array1::zeros(m)];
            {
                let [w0, w1] = &mut want_s;
                crate::loops::add_col_sums([w0, w1], &a_t.view()).expect("widths fit");
            }
            for a_view in [a_t.view(), a_wide.slice(s![.., ..m])] {
                let (mut g0, mut g1) = (s0.clone(), Array1::<F>::zeros(m));
                let mut c3 = c0.clone();
                let (Some(g0s), Some(g1s)) = (g0.as_slice_mut(), g1.as_slice_mut()) else { unreachable!() };
                let mut sums = [g0s, g1s];
                assert!(gemm_packed_tn(
                    a_view,
                    &mut [(&packed, c3.slice_mut(s![.., 1..n + 1]))],
                    &mut sums,
                    &mut strips
                ));
                assert_eq!(c3, c);
                assert_eq!([g0, g1], want_s);
            }
        }
    }

    #[test]
    fn a_broadcast_row_and_strided_views_give_the_same_bits_as_contiguous_arrays() {
        // c = bias + a·b with `bias` broadcast to every row (the input projection), against
        // the same with the bias rows materialised; and strided `a`/`c` (the slower path)
        // against contiguous ones.
        for (m, k, n) in [(1, 3, 5), (7, 32, 128), (33, 130, 300)] {
            let (a, w) = (mat::<f32>(m, k, 21), mat::<f32>(k, n, 22));
            let bias = mat::<f32>(1, n, 23).row(0).to_owned();
            let mut b = PackedB::default();
            b.pack(w.view());
            let rows = bias.broadcast((m, n)).map(|v| v.to_owned()).unwrap_or_default();
            let (mut want, mut got) = (Array2::zeros((m, n)), Array2::zeros((m, n)));
            gemm_packed_from(a.view(), &b, rows.view(), want.view_mut());
            gemm_packed_from(a.view(), &b, bias.broadcast((m, n)).unwrap_or(rows.view()), got.view_mut());
            assert_eq!(want, got, "{m}×{k}×{n}");
            // Strided: `a` and `c` as column slices of wider arrays.
            let wide_a = ndarray::concatenate![ndarray::Axis(1), a, a];
            let mut wide_c = Array2::zeros((m, 2 * n));
            gemm_packed_from(wide_a.slice(s![.., ..k]), &b, rows.view(), wide_c.slice_mut(s![.., ..n]));
            assert_eq!(wide_c.slice(s![.., ..n]), want, "{m}×{k}×{n} strided");
        }
    }

    #[test]
    fn thread_cuts_are_whole_row_blocks_covering_every_row() {
        for rows in [1, 3, 4, 5, 31, 32, 33, 1600, 6401] {
            for parts in 1..=8 {
                let ranges: Vec<_> = split_rows(rows, parts).collect();
                assert_eq!(ranges.len(), parts);
                assert_eq!((ranges[0].start, ranges[parts - 1].end), (0, rows), "rows {rows} parts {parts}");
                assert!(ranges.windows(2).all(|w| w[0].end == w[1].start && w[0].start <= w[0].end));
                assert!(ranges.iter().all(|r| r.start % MR == 0), "rows {rows} parts {parts}");
                // Nearly equal: at most one row block apart (when there are enough blocks).
                let (lo, hi) = (ranges.iter().map(|r| r.len()).min(), ranges.iter().map(|r| r.len()).max());
                if rows % MR == 0 {
                    assert!(hi.unwrap_or(0) - lo.unwrap_or(0) <= MR, "rows {rows} parts {parts}");
                }
            }
        }
    }

    #[test]
    fn results_are_bit_identical_for_every_thread_count() {
        // Products above MIN_PARALLEL_MACS, so that 2 and 3 threads really cut them (the only
        // test in this binary that sets the thread count; results never depend on it anyway).
        let (m, k, n) = (210, 300, 300);
        assert!(m * k * n >= MIN_PARALLEL_MACS && k * m * (n + 37) >= MIN_PARALLEL_MACS);
        let w = mat::<f32>(n, k, 11);
        let a = mat::<f32>(m, k, 12);
        let d = mat::<f32>(m, n, 13);
        let a_t = mat::<f32>(k, m, 14);
        let (x1, x2) = (mat::<f32>(k, n, 15), mat::<f32>(k, 37, 16));
        let mut packed = PackedB::default();
        packed.pack(w.t());
        let (mut p1, mut p2) = (PackedB::default(), PackedB::default());
        p1.pack(x1.view());
        p2.pack(x2.view());
        let run = |threads: usize| {
            crate::threads::set_threads(threads);
            let mut c = d.clone();
            gemm_packed(a.view(), &packed, true, c.view_mut());
            let mut from = Array2::zeros((m, n));
            gemm_packed_from(a.view(), &packed, d.view(), from.view_mut());
            let (mut g1, mut g2) = (d.clone(), Array2::zeros((m, 37)));
            let mut strips = Vec::new();
            let mut sum = vec![0.5f32; m];
            let targets = &mut [(&p1, g1.view_mut()), (&p2, g2.view_mut())];
            assert!(gemm_packed_tn(a_t.view(), targets, &mut [&mut sum], &mut strips));
            (c, from, g1, g2, sum)
        };
        let one = run(1);
        for threads in [2, 3, 64] {
            assert!(run(threads) == one, "{threads} threads");
        }
        crate::threads::set_threads(1);
        let scale = abs_scale(a.view(), w.t(), d.view());
        assert_close(one.0.view(), &naive(a.view(), w.t(), d.view(), true), &scale, 1e-5);
        assert_eq!(one.0, one.1);
        let mut want = ndarray::Array1::from_elem(m, 0.5f32);
        crate::loops::add_col_sums([&mut want], &a_t.view()).expect("widths fit");
        assert_eq!(one.4, want.to_vec());
    }

    #[test]
    fn transposed_a_matches_naive_f64() {
        check_tn::<f64>(1e-14);
    }

    #[test]
    fn transposed_a_matches_naive_f32() {
        check_tn::<f32>(1e-5);
    }

    #[test]
    fn transposed_a_refuses_layouts_it_cannot_read() {
        let b = mat::<f64>(6, 5, 1);
        let mut packed = PackedB::default();
        packed.pack(b.view());
        let a_t = mat::<f64>(6, 4, 2);
        let mut c = Array2::<f64>::zeros((4, 5));
        let mut strips: Vec<Vec<f64>> = Vec::new();
        // a_t column-strided, wrong K, c column-strided, one bad target of two: refused, c untouched
        let a_f = a_t.t().as_standard_layout().reversed_axes().to_owned();
        assert!(!gemm_packed_tn(a_f.view(), &mut [(&packed, c.view_mut())], &mut [], &mut strips));
        assert!(!gemm_packed_tn(mat::<f64>(7, 4, 3).view(), &mut [(&packed, c.view_mut())], &mut [], &mut strips));
        let mut c_f = Array2::<f64>::zeros((5, 4));
        assert!(!gemm_packed_tn(a_t.view(), &mut [(&packed, c_f.view_mut().reversed_axes())], &mut [], &mut strips));
        let mut c_bad = Array2::<f64>::zeros((4, 6));
        assert!(!gemm_packed_tn(
            a_t.view(),
            &mut [(&packed, c.view_mut()), (&packed, c_bad.view_mut())],
            &mut [],
            &mut strips
        ));
        // a sum of the wrong length, or more sums than it adds while packing
        let (mut short, mut s1, mut s2, mut s3) = (vec![1.0; 3], vec![1.0; 4], vec![1.0; 4], vec![1.0; 4]);
        assert!(!gemm_packed_tn(a_t.view(), &mut [(&packed, c.view_mut())], &mut [&mut short], &mut strips));
        let too_many: &mut [&mut [f64]] = &mut [&mut s1, &mut s2, &mut s3];
        assert!(!gemm_packed_tn(a_t.view(), &mut [(&packed, c.view_mut())], too_many, &mut strips));
        assert!(short == [1.0; 3] && s1 == [1.0; 4] && s2 == s1 && s3 == s1);
        assert!(c.iter().chain(c_f.iter()).chain(c_bad.iter()).all(|&x| x == 0.0));
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
            let first = run(&|c| assert!(gemm_packed(a.view(), &packed, accumulate, c)));
            let again = run(&|c| assert!(gemm_packed(a.view(), &packed, accumulate, c)));
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
            let scalar = run(&|c| assert!(gemm_packed(a_f.view(), &packed, accumulate, c)));
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

    #[test]
    fn misfit_operands_are_refused_alike_in_every_build_touching_nothing() {
        // b [K = 4, N = 6]: a with K = 3, c with N = 5 or M = 2 rows for 3, d of another shape.
        let mut packed = PackedB::<f64>::default();
        packed.pack(Array2::ones((4, 6)).view());
        let a = Array2::<f64>::ones((3, 4));
        let mut c = Array2::from_elem((3, 6), 7.0);
        assert!(!gemm_packed(Array2::ones((3, 3)).view(), &packed, false, c.view_mut()));
        assert!(!gemm_packed(a.view(), &packed, true, Array2::zeros((3, 5)).view_mut()));
        assert!(!gemm_packed(a.view(), &packed, true, Array2::zeros((2, 6)).view_mut()));
        assert!(!gemm_packed_from(a.view(), &packed, Array2::ones((3, 5)).view(), c.view_mut()));
        assert!(!gemm_packed_from(a.view(), &packed, Array2::ones((2, 6)).t(), c.view_mut()));
        assert!(!gemm_packed_here(a.view(), &packed, Mode::From(Array2::ones((2, 6)).view()), c.view_mut()));
        assert!(c.iter().all(|&x| x == 7.0));
        assert!(gemm_packed(a.view(), &packed, false, c.view_mut()));
        assert!(c.iter().all(|&x| x == 4.0));
    }
}
