//! The diagnostics hook ([`Probe`]) of the plain cells, and the tallies the normalised cells
//! share: relative activation derivatives counted in one pass over a step's buffers.

use ndarray::{ArrayView2, ArrayViewMut2};
use rnnlab_activations::{ActivationKind, SELU_ALPHA, SELU_LAMBDA};
use rnnlab_core::{Cell, Error, Float, GateMean, Probe, Result, Saturation, StepRefs};

use crate::{Gru, GruVariant, Lstm, Rnn};

/// sup |φ′| of an activation: the scale of its relative derivative and Pascanu's γ.
pub(crate) fn sup_df(kind: ActivationKind) -> f64 {
    match kind {
        ActivationKind::Sigmoid => 0.25,
        ActivationKind::Tanh
        | ActivationKind::Relu
        | ActivationKind::Identity
        | ActivationKind::Softsign
        | ActivationKind::HardTanh => 1.0,
        ActivationKind::LeakyRelu { slope } => slope.max(1.0),
        ActivationKind::Elu { alpha } => alpha.max(1.0),
        ActivationKind::Selu => SELU_LAMBDA * SELU_ALPHA.max(1.0),
        // max over x of ½(1 + t) + ½x(1 − t²)c(1 + 3a x²), at x ≈ 1.4: 1.1289…, rounded up
        ActivationKind::Gelu => 1.129,
    }
}

/// Running counts of relative derivatives (φ′/sup φ′) against `eps`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tally {
    eps: f64,
    n: usize,
    saturated: usize,
    sum: f64,
}

impl Tally {
    pub(crate) fn new(eps: f64) -> Self {
        Self { eps, n: 0, saturated: 0, sum: 0.0 }
    }

    /// Counts one unit with relative derivative `rel`.
    #[inline]
    pub(crate) fn add(&mut self, rel: f64) {
        self.n += 1;
        self.sum += rel;
        if rel < self.eps {
            self.saturated += 1;
        }
    }

    /// Counts σ units from their outputs y (σ′ = y(1 − y), sup ¼).
    pub(crate) fn sigmoid<F: Float>(&mut self, y: &[F]) {
        for &v in y {
            let v = v.as_f64();
            self.add(4.0 * v * (1.0 - v));
        }
    }

    /// Counts tanh units from their outputs y (tanh′ = 1 − y², sup 1).
    pub(crate) fn tanh<F: Float>(&mut self, y: &[F]) {
        for &v in y {
            let v = v.as_f64();
            self.add(1.0 - v * v);
        }
    }

    /// Counts units of `kind` from their pre-activations a.
    pub(crate) fn by_input<F: Float>(&mut self, kind: ActivationKind, a: &[F]) {
        let sup = sup_df(kind);
        for &v in a {
            self.add(kind.df(v).as_f64() / sup);
        }
    }

    /// Counts units of `kind` from their outputs y.
    pub(crate) fn by_output<F: Float>(&mut self, kind: ActivationKind, y: &[F]) -> Result<()> {
        let d = kind.output_derivative()?;
        let sup = sup_df(kind);
        for &v in y {
            self.add(d.df(v).as_f64() / sup);
        }
        Ok(())
    }

    pub(crate) fn finish(self, gates: Vec<GateMean>) -> Saturation {
        let mean = if self.n == 0 { 0.0 } else { self.sum / self.n as f64 };
        Saturation { n_units: self.n, n_saturated: self.saturated, mean_derivative: mean, gates }
    }
}

/// Means of consecutive blocks of width `h` of each row of `rows` (`[batch, n·h]`, row-major),
/// one per name.
pub(crate) fn gate_means<F: Float>(rows: &[F], row_len: usize, h: usize, names: &[&'static str]) -> Vec<GateMean> {
    let n_rows = rows.len().checked_div(row_len).unwrap_or(0);
    names
        .iter()
        .enumerate()
        .map(|(g, &name)| {
            let mut sum = 0.0;
            for r in 0..n_rows {
                let at = r * row_len + g * h;
                sum += rows[at..at + h].iter().map(|v| v.as_f64()).sum::<f64>();
            }
            let n = (n_rows * h).max(1);
            GateMean { name, mean: sum / n as f64 }
        })
        .collect()
}

/// Checks a step's buffers against what a probe reads: `xp` `[b, proj]`, `next` `[b, sw]`,
/// a contiguous layout, and at least `cache` cached values.
pub(crate) fn check_probe<F: Float, C: Cell<F>>(
    cell: &C,
    op: &str,
    step: &StepRefs<'_, F>,
    cache: usize,
) -> Result<usize> {
    let b = step.next.nrows();
    let (p, sw) = (cell.proj_dim(), cell.state_width());
    if step.xp.shape() != [b, p] || step.next.ncols() != sw || step.prev.shape() != [b, sw] {
        return Err(Error::shape(
            op,
            format!("xp [{b}, {p}], prev and next [{b}, {sw}]"),
            format!("xp {:?}, prev {:?}, next {:?}", step.xp.shape(), step.prev.shape(), step.next.shape()),
        ));
    }
    if step.cache.len() < cache {
        return Err(Error::shape(op, format!("a cache of at least {cache} values"), format!("{}", step.cache.len())));
    }
    if !step.xp.is_standard_layout() || !step.next.is_standard_layout() {
        return Err(Error::shape(op, "contiguous step buffers", "strided"));
    }
    Ok(b)
}

/// Checks `d_state` and `out` of a total-gradient conversion: both `[b, sw]`, contiguous.
pub(crate) fn check_total<F: Float>(
    op: &str,
    b: usize,
    sw: usize,
    d: &ArrayView2<'_, F>,
    out: &ArrayViewMut2<'_, F>,
) -> Result<()> {
    if d.shape() != [b, sw] || out.shape() != [b, sw] {
        return Err(Error::shape(
            op,
            format!("state gradients [{b}, {sw}]"),
            format!("{:?} and {:?}", d.shape(), out.shape()),
        ));
    }
    if !d.is_standard_layout() || !out.is_standard_layout() {
        return Err(Error::shape(op, "contiguous state gradients", "strided"));
    }
    Ok(())
}

fn contiguous<'a, F>(op: &str, v: &'a ArrayView2<'_, F>) -> Result<&'a [F]> {
    v.as_slice().ok_or_else(|| Error::shape(op, "contiguous step buffers", "strided"))
}

impl<F: Float> Probe<F> for Rnn<F> {
    /// Every hidden unit's φ′ relative to sup φ′ (from the output, or the cached
    /// pre-activation for GELU); no gates.
    fn saturation(&self, step: StepRefs<'_, F>, eps: f64) -> Result<Option<Saturation>> {
        let op = "Rnn::saturation";
        let b = check_probe(self, op, &step, self.cache_len(step.next.nrows()))?;
        let mut tally = Tally::new(eps);
        let kind = self.activation();
        if kind.df_uses_output() {
            tally.by_output(kind, contiguous(op, &step.next)?)?;
        } else {
            tally.by_input(kind, &step.cache[..b * self.hidden_dim()]);
        }
        Ok(Some(tally.finish(Vec::new())))
    }

    /// sup |φ′| of the activation: the step Jacobian is diag(φ′(a_t))·W_hh.
    fn derivative_bound(&self) -> Option<f64> {
        Some(sup_df(self.activation()))
    }

    /// One state part: the total derivative is the recorded one.
    fn total_state_grad(
        &self,
        _step: StepRefs<'_, F>,
        d_state: ArrayView2<'_, F>,
        mut out: ArrayViewMut2<'_, F>,
    ) -> Result<bool> {
        check_total("Rnn::total_state_grad", d_state.nrows(), self.state_width(), &d_state, &out)?;
        out.assign(&d_state);
        Ok(true)
    }
}

const LSTM_GATES: [&str; 4] = ["i", "f", "g", "o"];
const GRU_GATES: [&str; 3] = ["r", "z", "n"];

impl<F: Float> Probe<F> for Lstm<F> {
    /// Five units per hidden unit: σ of i, f, o, tanh of g and of c_t (the activated gates
    /// are the step's row block of the projection, tanh c_t the cache); gate means i, f, g, o.
    fn saturation(&self, step: StepRefs<'_, F>, eps: f64) -> Result<Option<Saturation>> {
        let op = "Lstm::saturation";
        let h = self.hidden_dim();
        let b = check_probe(self, op, &step, step.next.nrows() * h)?;
        let gates = contiguous(op, &step.xp)?;
        let mut tally = Tally::new(eps);
        for r in 0..b {
            let g = &gates[r * 4 * h..(r + 1) * 4 * h];
            tally.sigmoid(&g[..2 * h]);
            tally.tanh(&g[2 * h..3 * h]);
            tally.sigmoid(&g[3 * h..]);
        }
        tally.tanh(&step.cache[..b * h]);
        Ok(Some(tally.finish(gate_means(gates, 4 * h, h, &LSTM_GATES))))
    }

    /// c_t's total derivative: ∂L/∂c_t + o_t ⊙ (1 − tanh²c_t) ⊙ ∂L/∂h_t.
    fn total_state_grad(
        &self,
        step: StepRefs<'_, F>,
        d_state: ArrayView2<'_, F>,
        mut out: ArrayViewMut2<'_, F>,
    ) -> Result<bool> {
        let op = "Lstm::total_state_grad";
        let h = self.hidden_dim();
        let b = check_probe(self, op, &step, step.next.nrows() * h)?;
        check_total(op, b, 2 * h, &d_state, &out)?;
        let (gates, tc) = (contiguous(op, &step.xp)?, step.cache);
        let d = contiguous(op, &d_state)?;
        let o = out.as_slice_mut().ok_or_else(|| Error::shape(op, "contiguous output", "strided"))?;
        let one = F::one();
        for r in 0..b {
            for k in 0..h {
                let (og, t) = (gates[r * 4 * h + 3 * h + k], tc[r * h + k]);
                let (ih, ic) = (r * 2 * h + k, r * 2 * h + h + k);
                o[ih] = d[ih];
                o[ic] = d[ic] + og * (one - t * t) * d[ih];
            }
        }
        Ok(true)
    }
}

impl<F: Float> Probe<F> for Gru<F> {
    /// Three units per hidden unit: σ of r, z and tanh of n (reset-after: the step's row block
    /// of the projection; reset-before: the cache); gate means r, z, n.
    fn saturation(&self, step: StepRefs<'_, F>, eps: f64) -> Result<Option<Saturation>> {
        let op = "Gru::saturation";
        let h = self.hidden_dim();
        let b = check_probe(self, op, &step, self.cache_len(step.next.nrows()))?;
        let rzn = match self.variant() {
            GruVariant::ResetAfter => contiguous(op, &step.xp)?,
            GruVariant::ResetBefore => &step.cache[..3 * b * h],
        };
        let mut tally = Tally::new(eps);
        for r in 0..b {
            let g = &rzn[r * 3 * h..(r + 1) * 3 * h];
            tally.sigmoid(&g[..2 * h]);
            tally.tanh(&g[2 * h..]);
        }
        Ok(Some(tally.finish(gate_means(rzn, 3 * h, h, &GRU_GATES))))
    }

    /// One state part: the total derivative is the recorded one.
    fn total_state_grad(
        &self,
        _step: StepRefs<'_, F>,
        d_state: ArrayView2<'_, F>,
        mut out: ArrayViewMut2<'_, F>,
    ) -> Result<bool> {
        check_total("Gru::total_state_grad", d_state.nrows(), self.state_width(), &d_state, &out)?;
        out.assign(&d_state);
        Ok(true)
    }
}
