//! The suite's progress on the terminal: with a terminal on stdout and stderr, indicatif bars on
//! stderr (one for the suite, one line per running run with its step and training loss, and a
//! line per finished run printed above them); otherwise plain lines on stderr, one per finished
//! run, for logs and array jobs.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rnnlab_suite::{Progress, RunResult};

/// How the suite's progress is shown.
pub(crate) enum Display {
    /// indicatif bars (a terminal).
    Bars(Bars),
    /// Plain lines (no terminal).
    Lines(Lines),
}

impl Display {
    /// Bars when both stdout and stderr are terminals, plain lines otherwise.
    pub(crate) fn new(start: Instant) -> Self {
        if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
            Self::Bars(Bars::new(start))
        } else {
            Self::Lines(Lines { todo: AtomicUsize::new(0), done: AtomicUsize::new(0), start, lock: Mutex::new(()) })
        }
    }

    /// Clears the bars (nothing for plain lines).
    pub(crate) fn finish(&self) {
        if let Self::Bars(b) = self {
            b.suite.finish_and_clear();
            // Cannot fail but for a poisoned lock, where there is nothing left to clear.
            let _ = b.multi.clear();
        }
    }
}

impl Progress for Display {
    fn start(&self, todo: usize, done: usize) {
        match self {
            Self::Bars(b) => b.start(todo, done),
            Self::Lines(l) => l.start(todo, done),
        }
    }

    fn started(&self, id: &str) {
        if let Self::Bars(b) = self {
            b.started(id);
        }
    }

    fn step(&self, id: &str, step: u64, n_steps: u64, loss: f64) {
        if let Self::Bars(b) = self {
            b.step(id, step, n_steps, loss);
        }
    }

    fn finished(&self, r: &RunResult) {
        match self {
            Self::Bars(b) => b.finished(r),
            Self::Lines(l) => l.finished(r),
        }
    }
}

/// What a finished run shows: its error, decay and horizon (diagnosed only), divergence, or
/// final loss against the baseline.
pub(crate) fn outcome(r: &RunResult) -> String {
    let m = &r.metrics;
    match (&r.error, m.trained) {
        (Some(e), _) => format!("FAILED: {e}"),
        (None, false) => {
            format!("decay {} horizon {}", opt(m.decay_factor), m.horizon.map_or("n/a".into(), |h| h.to_string()))
        }
        (None, true) if m.diverged => "diverged".to_string(),
        (None, true) => format!(
            "loss {} (baseline {:.3}){}",
            opt(m.final_loss),
            m.baseline_loss,
            if m.solved == Some(true) { " solved" } else { "" }
        ),
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.4}"))
}

/// One line per finished run (and the count), on stderr.
pub(crate) struct Lines {
    todo: AtomicUsize,
    done: AtomicUsize,
    start: Instant,
    lock: Mutex<()>,
}

impl Lines {
    fn start(&self, todo: usize, done: usize) {
        self.todo.store(todo, Ordering::Relaxed);
        if done > 0 {
            eprintln!("compare: {done} runs already done, {todo} to run");
        } else {
            eprintln!("compare: {todo} runs");
        }
    }

    fn finished(&self, r: &RunResult) {
        let k = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let what = outcome(r);
        let _guard = self.lock.lock();
        let total = self.todo.load(Ordering::Relaxed);
        let t = self.start.elapsed().as_secs_f64();
        eprintln!("compare: [{k}/{total}] {t:.1} s {} {what}", r.id);
    }
}

/// The suite's bar and one line per running run.
pub(crate) struct Bars {
    multi: MultiProgress,
    suite: ProgressBar,
    running: Mutex<HashMap<String, ProgressBar>>,
    start: Instant,
}

impl Bars {
    fn new(start: Instant) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        // Added to the display at `start`, when its length is known.
        let suite = ProgressBar::new(0);
        suite.set_style(
            ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {pos}/{len} runs  {elapsed_precise} (eta {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        suite.set_prefix("compare");
        Self { multi, suite, running: Mutex::new(HashMap::new()), start }
    }

    fn start(&self, todo: usize, done: usize) {
        self.suite.set_length(todo as u64);
        self.multi.insert(0, self.suite.clone());
        if done > 0 {
            let _ = self.multi.println(format!("compare: {done} runs already done, {todo} to run"));
        }
        self.suite.enable_steady_tick(Duration::from_millis(250));
    }

    fn started(&self, id: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("  {spinner} {prefix:<32} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(id.to_string());
        bar.set_message("diagnosing at initialisation");
        bar.enable_steady_tick(Duration::from_millis(200));
        if let Ok(mut running) = self.running.lock() {
            running.insert(id.to_string(), bar);
        }
    }

    fn step(&self, id: &str, step: u64, n_steps: u64, loss: f64) {
        let Ok(running) = self.running.lock() else { return };
        if let Some(bar) = running.get(id) {
            let width = n_steps.to_string().len();
            bar.set_message(format!("step {step:>width$}/{n_steps}  loss {loss:.4}"));
        }
    }

    fn finished(&self, r: &RunResult) {
        if let Some(bar) = self.running.lock().ok().and_then(|mut running| running.remove(&r.id)) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.suite.inc(1);
        let t = self.start.elapsed().as_secs_f64();
        let _ = self.multi.println(format!("{t:>7.1} s  {:<32} {}", r.id, outcome(r)));
    }
}
