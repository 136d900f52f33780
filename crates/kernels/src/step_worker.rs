//! A second thread for the per-step products `h·W_hhᵀ` and `δ·W_hh`.
//!
//! Starting a thread per product costs tens of microseconds, about what one per-step product
//! takes at H = 128, so these products need a thread that lives as long as the cell: a
//! [`StepWorker`] owns its own packed copy of the right-hand columns of the operand. Per
//! product the caller copies the left operand in, wakes the worker, computes the left columns
//! itself while the worker computes the right ones, then copies the worker's columns out
//! (`O(B·(K + N))` copies against `O(B·K·N)` work). Every element is the same fused
//! multiply-add chain as on one thread, so results are bit-identical for every thread count.
//!
//! No `unsafe`: the data is exchanged through a mutex, and the hand-over is two counters. The
//! worker spins for a short while after each product (the next step's product follows within
//! microseconds), then parks; dropping the [`StepWorker`] stops and joins it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ndarray::{ArrayView2, ArrayViewMut2, Axis, s};
use rnnlab_core::Float;

use crate::packed::{PackedB, gemm_packed};

/// Below this many multiply-adds a per-step product stays on the calling thread (about 18 µs
/// on one core here; the hand-over costs a few microseconds).
pub(crate) const MIN_SPLIT_MACS: usize = 1 << 20;

/// How long the worker waits for the next product, spinning then yielding, before it parks.
const IDLE_SPIN: Duration = Duration::from_micros(300);

/// Which packed operand a product uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// `a · Wᵀ` (forward, Jacobian–vector products).
    Fwd = 0,
    /// `d · W` (backward).
    Bwd = 1,
}

/// What the worker computes: `out = a · right[side]`.
struct Job<F> {
    /// The right-hand columns of each packed operand, by [`Side`].
    right: [PackedB<F>; 2],
    side: Side,
    /// The left operand `[m, K]`, row-major.
    a: Vec<F>,
    m: usize,
    /// The result `[m, N_right]`, row-major.
    out: Vec<F>,
}

struct Shared<F> {
    job: Mutex<Job<F>>,
    /// Products posted by the caller, and finished by the worker (tickets).
    posted: AtomicU64,
    done: AtomicU64,
    parked: AtomicBool,
    quit: AtomicBool,
}

/// A persistent worker thread for one cell's per-step products (see the module docs).
pub(crate) struct StepWorker<F: Float> {
    shared: Arc<Shared<F>>,
    handle: Option<JoinHandle<()>>,
    /// Held by the caller for a whole product: a second caller computes on its own thread.
    caller: Mutex<()>,
    /// By [`Side`]: the worker's first column and the full operand's `[K, N]`.
    split: [Split; 2],
}

/// Where a product is cut between the caller and the worker.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Split {
    /// The caller computes columns `..col`, the worker columns `col..n`.
    pub(crate) col: usize,
    k: usize,
    n: usize,
}

impl<F: Float> StepWorker<F> {
    /// Starts a worker; `None` if the thread cannot be started.
    pub(crate) fn start() -> Option<Self> {
        let shared = Arc::new(Shared {
            job: Mutex::new(Job {
                right: [PackedB::default(), PackedB::default()],
                side: Side::Fwd,
                a: Vec::new(),
                m: 0,
                out: Vec::new(),
            }),
            posted: AtomicU64::new(0),
            done: AtomicU64::new(0),
            parked: AtomicBool::new(false),
            quit: AtomicBool::new(false),
        });
        let theirs = Arc::clone(&shared);
        let handle = std::thread::Builder::new().name("rnnlab-step".into()).spawn(move || work(&theirs)).ok()?;
        Some(Self { shared, handle: Some(handle), caller: Mutex::new(()), split: [Split::default(); 2] })
    }

    /// Packs the worker's columns `col..N` of `b` `[K, N]` for `side` (the caller keeps its own
    /// packing of columns `..col`).
    pub(crate) fn pack(&mut self, side: Side, b: ArrayView2<'_, F>, col: usize) {
        let mut job = self.shared.job.lock().unwrap_or_else(PoisonError::into_inner);
        job.right[side as usize].pack(b.slice(s![.., col..]));
        let (k, n) = b.dim();
        self.split[side as usize] = Split { col, k, n };
    }

    /// The cut of a product `[·, k] × [k, n]` for `side`, if the worker's packing fits it
    /// and both parts are non-empty.
    pub(crate) fn split(&self, side: Side, k: usize, n: usize) -> Option<Split> {
        let sp = self.split[side as usize];
        (sp.k == k && sp.n == n && sp.col > 0 && sp.col < n).then_some(sp)
    }

    /// Computes `c[:, col..] ∘= a · W[:, col..]` on the worker while `left` computes
    /// `c[:, ..col]` on this thread, where `∘=` is `finish(c_right, worker_result)`.
    /// Returns `false` (nothing computed) if the worker is busy with another caller or gone;
    /// the caller then computes the whole product itself.
    pub(crate) fn run(
        &self,
        side: Side,
        a: ArrayView2<'_, F>,
        c: ArrayViewMut2<'_, F>,
        left: impl FnOnce(ArrayViewMut2<'_, F>),
        finish: impl FnOnce(ArrayViewMut2<'_, F>, ArrayView2<'_, F>),
    ) -> bool {
        let Ok(_guard) = self.caller.try_lock() else { return false };
        let Some(handle) = self.handle.as_ref().filter(|h| !h.is_finished()) else { return false };
        let col = self.split[side as usize].col;
        let m = a.nrows();
        {
            let mut job = self.shared.job.lock().unwrap_or_else(PoisonError::into_inner);
            job.side = side;
            job.m = m;
            job.a.clear();
            for row in a.rows() {
                match row.as_slice() {
                    Some(row) => job.a.extend_from_slice(row),
                    None => job.a.extend(row.iter().copied()),
                }
            }
        }
        let ticket = self.shared.posted.fetch_add(1, Ordering::SeqCst) + 1;
        if self.shared.parked.load(Ordering::SeqCst) {
            handle.thread().unpark();
        }
        let (c_left, c_right) = c.split_at(Axis(1), col);
        left(c_left);
        let mut spins = 0u32;
        let mut alive = true;
        while self.shared.done.load(Ordering::Acquire) != ticket {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins % 4096 == 0 {
                if handle.is_finished() {
                    alive = false;
                    break;
                }
                std::thread::yield_now();
            }
        }
        let job = self.shared.job.lock().unwrap_or_else(PoisonError::into_inner);
        let right = &job.right[side as usize];
        let n_right = right.n();
        match job.out.get(..m * n_right).map(|out| ArrayView2::from_shape((m, n_right), out)) {
            Some(Ok(out)) if alive => finish(c_right, out),
            // Unreachable unless the worker panicked: its part is computed here, so that the
            // product is still done exactly once.
            _ => {
                let mut out = ndarray::Array2::zeros((m, n_right));
                gemm_packed(a, right, false, out.view_mut());
                finish(c_right, out.view());
            }
        }
        true
    }
}

/// The worker's loop: wait for a ticket, compute, publish.
fn work<F: Float>(shared: &Shared<F>) {
    let mut seen = 0u64;
    while let Some(ticket) = wait(shared, seen) {
        seen = ticket;
        {
            let mut guard = shared.job.lock().unwrap_or_else(PoisonError::into_inner);
            let job = &mut *guard;
            let right = &job.right[job.side as usize];
            let (m, n) = (job.m, right.n());
            job.out.resize(m * n, F::zero());
            if let (Ok(a), Ok(out)) = (
                ArrayView2::from_shape((m, right.k()), &job.a[..]),
                ArrayViewMut2::from_shape((m, n), &mut job.out[..m * n]),
            ) {
                gemm_packed(a, right, false, out);
            }
        }
        shared.done.store(seen, Ordering::Release);
    }
}

/// The next ticket after `seen`, or `None` when asked to quit.
fn wait<F>(shared: &Shared<F>, seen: u64) -> Option<u64> {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        if shared.quit.load(Ordering::Acquire) {
            return None;
        }
        let posted = shared.posted.load(Ordering::Acquire);
        if posted != seen {
            return Some(posted);
        }
        spins = spins.wrapping_add(1);
        if spins < 1 << 12 {
            std::hint::spin_loop();
        } else if start.elapsed() < IDLE_SPIN {
            std::thread::yield_now();
        } else {
            // The caller reads `parked` after posting: either it sees `true` and unparks, or
            // this re-check sees its ticket.
            shared.parked.store(true, Ordering::SeqCst);
            if shared.posted.load(Ordering::SeqCst) == seen && !shared.quit.load(Ordering::SeqCst) {
                std::thread::park_timeout(Duration::from_millis(50));
            }
            shared.parked.store(false, Ordering::SeqCst);
        }
    }
}

impl<F: Float> Drop for StepWorker<F> {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            handle.thread().unpark();
            // A worker that panicked has nothing left to clean up.
            let _ = handle.join();
        }
    }
}

impl<F: Float> std::fmt::Debug for StepWorker<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepWorker").field("split", &self.split).finish_non_exhaustive()
    }
}
