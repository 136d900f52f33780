//! Adam (Kingma & Ba 2015) with L2 weight decay and the AMSGrad variant (Reddi et al. 2018).

use ndarray::Zip;
use rnnlab_core::{Error, Float, ParamViewMut, Parameterized, Result, validate};
use serde::{Deserialize, Serialize};

use crate::optimizer::{OptimizerState, ParamState, SqSum, check_loaded, check_set_lr, drive};
use crate::{Optimizer, StepReport};

const OP: &str = "AdamConfig";
pub(crate) const EXP_AVG: &str = "exp_avg";
pub(crate) const EXP_AVG_SQ: &str = "exp_avg_sq";
pub(crate) const MAX_EXP_AVG_SQ: &str = "max_exp_avg_sq";

pub(crate) fn default_betas() -> (f64, f64) {
    (0.9, 0.999)
}

pub(crate) fn default_eps() -> f64 {
    1e-8
}

/// `Err(Config)` unless `value` is finite and in `[0, 1)`.
pub(crate) fn unit_interval(op: &str, name: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && (0.0..1.0).contains(&value)) {
        return Err(Error::config(op, format!("{name} must be in [0, 1), got {value}")));
    }
    Ok(())
}

/// Configuration of [`Adam`]; defaults follow `torch.optim.Adam` (betas (0.9, 0.999),
/// eps 1e-8, no weight decay, no AMSGrad).
///
/// # Examples
/// ```
/// use rnnlab_optim::AdamConfig;
/// let opt = AdamConfig::new(1e-3).with_betas(0.9, 0.98).with_amsgrad(true).init::<f32>()?;
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct AdamConfig {
    /// Learning rate γ, finite and `> 0`.
    pub lr: f64,
    /// (β₁, β₂), each in `[0, 1)`.
    #[serde(default = "default_betas")]
    pub betas: (f64, f64),
    /// ε `> 0`, added to √v̂.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// L2 weight decay λ `>= 0`, added to the gradient (for decoupled decay use [`crate::AdamW`]).
    #[serde(default)]
    pub weight_decay: f64,
    /// Use the running maximum of the second moment (AMSGrad).
    #[serde(default)]
    pub amsgrad: bool,
}
rnnlab_core::serde_map_only!(AdamConfig);

impl AdamConfig {
    /// Adam with learning rate `lr` and PyTorch's defaults otherwise.
    pub fn new(lr: f64) -> Self {
        Self { lr, betas: default_betas(), eps: default_eps(), weight_decay: 0.0, amsgrad: false }
    }

    /// Sets (β₁, β₂).
    pub fn with_betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.betas = (beta1, beta2);
        self
    }

    /// Sets ε.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Sets the L2 weight decay λ.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Turns AMSGrad on or off.
    pub fn with_amsgrad(mut self, amsgrad: bool) -> Self {
        self.amsgrad = amsgrad;
        self
    }

    /// Checks every hyper-parameter.
    ///
    /// # Errors
    /// [`Error::Config`] unless `lr` and `eps` are finite and `> 0`, both betas in `[0, 1)`
    /// and `weight_decay` finite and `>= 0`.
    pub fn validate(&self) -> Result<()> {
        validate_adam(OP, self.lr, self.betas, self.eps, self.weight_decay)
    }

    /// Validates, then builds the optimizer with empty state.
    ///
    /// # Errors
    /// As [`AdamConfig::validate`], and [`rnnlab_core::Error::Config`] for a value that is 0 or
    /// not finite once converted to `F` (an `eps` of 1e-50 is 0 in `f32`, an `lr` of 1e39 is ∞).
    pub fn init<F: Float>(&self) -> Result<Adam<F>> {
        self.validate()?;
        validate::positive_in::<F>(OP, "lr", self.lr)?;
        validate::positive_in::<F>(OP, "eps", self.eps)?;
        validate::non_negative_in::<F>(OP, "weight_decay", self.weight_decay)?;
        Ok(Adam { config: self.clone(), state: OptimizerState::new("adam", self.lr) })
    }
}

pub(crate) fn validate_adam(op: &str, lr: f64, betas: (f64, f64), eps: f64, weight_decay: f64) -> Result<()> {
    validate::positive_param(op, "lr", lr)?;
    unit_interval(op, "beta1", betas.0)?;
    unit_interval(op, "beta2", betas.1)?;
    validate::positive_param(op, "eps", eps)?;
    validate::non_negative_param(op, "weight_decay", weight_decay)
}

/// Adam, `torch.optim.Adam`'s update (Kingma & Ba 2015, "Adam: A Method for Stochastic
/// Optimization"; AMSGrad: Reddi et al. 2018, "On the Convergence of Adam and Beyond").
///
/// For each parameter θ with gradient g, at its step t (1-based), m₀ = v₀ = v₀^max = 0:
///
/// ```text
/// g ← g + λ·θ                                   (L2 weight decay, if λ ≠ 0)
/// m ← β₁·m + (1 − β₁)·g                         (computed as m + (1 − β₁)(g − m), PyTorch's lerp)
/// v ← β₂·v + (1 − β₂)·g²
/// v^max ← max(v^max, v)                         (AMSGrad only; then v^max replaces v below)
/// θ ← θ − (γ / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
/// ```
///
/// The last line is PyTorch's implementation form of θ ← θ − γ·m̂/(√v̂ + ε) with
/// m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ); bias corrections are computed in f64.
///
/// State: `exp_avg`, `exp_avg_sq` (and `max_exp_avg_sq` with AMSGrad) per parameter.
#[derive(Clone, Debug)]
pub struct Adam<F: Float> {
    config: AdamConfig,
    state: OptimizerState<F>,
}

impl<F: Float> Adam<F> {
    /// The configuration it was built from.
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }
}

pub(crate) fn adam_buffer_names(amsgrad: bool) -> &'static [&'static str] {
    if amsgrad { &[EXP_AVG, EXP_AVG_SQ, MAX_EXP_AVG_SQ] } else { &[EXP_AVG, EXP_AVG_SQ] }
}

/// The hyper-parameters of one Adam/AdamW step.
#[derive(Clone, Copy)]
pub(crate) struct AdamStep {
    pub(crate) lr: f64,
    pub(crate) betas: (f64, f64),
    pub(crate) eps: f64,
    pub(crate) amsgrad: bool,
    /// λ for L2 decay added to the gradient (Adam).
    pub(crate) l2: f64,
    /// λ for decoupled decay θ ← θ(1 − γλ) (AdamW).
    pub(crate) decoupled: f64,
}

/// One Adam/AdamW update of one parameter; returns Σ(Δθ)².
pub(crate) fn adam_update<F: Float>(h: AdamStep, mut p: ParamViewMut<'_, F>, ps: &mut ParamState<F>) -> Result<f64> {
    let t = ps.step as f64;
    let one_minus_b1 = F::of(1.0 - h.betas.0);
    let b2 = F::of(h.betas.1);
    let one_minus_b2 = F::of(1.0 - h.betas.1);
    let step_size = F::of(h.lr / (1.0 - h.betas.0.powf(t)));
    let bc2_sqrt = F::of((1.0 - h.betas.1.powf(t)).sqrt());
    let eps = F::of(h.eps);
    let l2 = F::of(h.l2);
    let use_l2 = h.l2 != 0.0;
    let shrink = F::of(1.0 - h.lr * h.decoupled);
    let use_decoupled = h.decoupled != 0.0;
    let mut sq = SqSum::new();
    let moments = |x: &mut F, g: F, m: &mut F, v: &mut F| {
        let old = *x;
        if use_decoupled {
            *x *= shrink;
        }
        let g = if use_l2 { g + l2 * *x } else { g };
        *m = *m + one_minus_b1 * (g - *m);
        *v = *v * b2 + one_minus_b2 * g * g;
        old
    };
    // Zip cannot panic: `drive` checked grad, value and state shapes are equal.
    if h.amsgrad {
        let [m, v, vmax] = ps.buffers_mut([EXP_AVG, EXP_AVG_SQ, MAX_EXP_AVG_SQ])?;
        Zip::from(&mut p.value).and(&p.grad).and(m).and(v).and(vmax).for_each(|x, &g, m, v, vmax| {
            let old = moments(x, g, m, v);
            if *v > *vmax {
                *vmax = *v;
            }
            let denom = vmax.sqrt() / bc2_sqrt + eps;
            *x -= step_size * (*m / denom);
            sq.add(*x, old);
        });
    } else {
        let [m, v] = ps.buffers_mut([EXP_AVG, EXP_AVG_SQ])?;
        Zip::from(&mut p.value).and(&p.grad).and(m).and(v).for_each(|x, &g, m, v| {
            let old = moments(x, g, m, v);
            let denom = v.sqrt() / bc2_sqrt + eps;
            *x -= step_size * (*m / denom);
            sq.add(*x, old);
        });
    }
    Ok(sq.total())
}

impl<F: Float> Optimizer<F> for Adam<F> {
    fn algorithm(&self) -> &'static str {
        "adam"
    }

    fn step(&mut self, model: &mut dyn Parameterized<F>) -> Result<StepReport> {
        let c = &self.config;
        let h = AdamStep {
            lr: self.state.lr,
            betas: c.betas,
            eps: c.eps,
            amsgrad: c.amsgrad,
            l2: c.weight_decay,
            decoupled: 0.0,
        };
        let names = adam_buffer_names(c.amsgrad);
        drive(&mut self.state, model, &|shape| ParamState::filled(shape, names, F::zero()), &mut |p, ps| {
            adam_update(h, p, ps)
        })
    }

    fn lr(&self) -> f64 {
        self.state.lr
    }

    fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_set_lr::<F>(lr)?;
        self.state.lr = lr;
        Ok(())
    }

    fn state(&self) -> OptimizerState<F> {
        self.state.clone()
    }

    fn load_state(&mut self, state: OptimizerState<F>) -> Result<()> {
        self.state = check_loaded(self.algorithm(), adam_buffer_names(self.config.amsgrad), state)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Tiny, assert_close};

    #[test]
    fn adam_two_steps() {
        // γ = 0.1, β = (0.9, 0.999), ε = 1e-8; θ0 = [1, −2]; g1 = [0.5, −1], g2 = [0.25, 2].
        // t=1: m = 0.1·g = [0.05, −0.1]; v = 0.001·g² = [2.5e-4, 1e-3]
        //      m̂ = m/0.1 = g; v̂ = v/0.001 = g²; Δ = γ·g/(|g| + ε) ≈ 0.1·sign(g)
        //      θ1 = [1 − 0.1·0.5/(0.5 + 1e-8), −2 + 0.1·1/(1 + 1e-8)] = [0.90000000200, −1.90000000100]
        // t=2: m = 0.9·[0.05, −0.1] + 0.1·[0.25, 2] = [0.07, 0.11]; 1 − β₁² = 0.19
        //      v = 0.999·[2.5e-4, 1e-3] + 0.001·[0.0625, 4] = [3.12250e-4, 4.999e-3]; 1 − β₂² = 0.001999
        //      m̂ = [0.368421052631, 0.578947368421]; √v̂ = [√0.156203101551, √2.500750375188]
        //        = [0.395225380, 1.581376104]
        //      θ2 = θ1 − 0.1·m̂/(√v̂ + ε) = [0.80678204, −1.93661035]
        let mut m = Tiny::<f64>::new([1.0, -2.0], [0.5, -1.0]);
        let mut opt = AdamConfig::new(0.1).init::<f64>().unwrap();
        opt.step(&mut m).unwrap();
        assert_close(&m.value(), &[0.900_000_002, -1.900_000_001], 1e-10);
        m.set_grad([0.25, 2.0]);
        opt.step(&mut m).unwrap();
        let want = [
            0.900_000_002 - 0.1 * 0.368_421_052_631_578_9 / (0.156_203_101_550_775_4f64.sqrt() + 1e-8),
            -1.900_000_001 - 0.1 * 0.578_947_368_421_052_6 / (2.500_750_375_187_594_f64.sqrt() + 1e-8),
        ];
        assert_close(&m.value(), &want, 1e-9);
        assert_close(&m.value(), &[0.806_782_04, -1.936_610_35], 1e-6);
    }

    #[test]
    fn adam_with_l2_weight_decay_and_amsgrad_two_steps() {
        // γ = 0.1, β = (0.5, 0.5), ε = 1e-12 (negligible), λ = 0.5; one parameter θ0 = 2.
        // t=1: g = 1 + 0.5·2 = 2; m = 0.5·2 = 1; v = 0.5·4 = 2; v^max = 2
        //      θ1 = 2 − (0.1/0.5)·1/(√2/√0.5 + ε) = 2 − 0.2·1/2 = 1.9
        // t=2: g = 0 + 0.5·1.9 = 0.95; m = 0.5 + 0.475 = 0.975; v = 1 + 0.45125 = 1.45125
        //      v^max = max(2, 1.45125) = 2 (AMSGrad keeps the larger one)
        //      θ2 = 1.9 − (0.1/0.75)·0.975/(√2/√0.75) = 1.9 − 0.13 / 1.632993 = 1.820392
        //      (plain Adam would use √1.45125/√0.75 = 1.391043 and give 1.806545)
        let run = |ams: bool| {
            let mut m = Tiny::<f64>::new([2.0], [1.0]);
            let cfg = AdamConfig::new(0.1).with_betas(0.5, 0.5).with_eps(1e-12).with_weight_decay(0.5);
            let mut opt = cfg.with_amsgrad(ams).init::<f64>().unwrap();
            opt.step(&mut m).unwrap();
            assert_close(&m.value(), &[1.9], 1e-10);
            m.set_grad([0.0]);
            opt.step(&mut m).unwrap();
            m.value()[0]
        };
        let ams = run(true);
        let plain = run(false);
        assert_close(&[ams], &[1.9 - 0.13 / (2.0f64 / 0.75).sqrt()], 1e-10);
        assert_close(&[plain], &[1.9 - 0.13 / (1.45125f64 / 0.75).sqrt()], 1e-10);
        assert_close(&[ams, plain], &[1.820_392, 1.806_545], 1e-6);
    }

    #[test]
    fn rejects_each_bad_hyper_parameter() {
        let bad = [
            AdamConfig::new(0.0),
            AdamConfig::new(f64::NAN),
            AdamConfig::new(1e-3).with_betas(1.0, 0.999),
            AdamConfig::new(1e-3).with_betas(-0.1, 0.999),
            AdamConfig::new(1e-3).with_betas(0.9, 1.0),
            AdamConfig::new(1e-3).with_betas(0.9, f64::NAN),
            AdamConfig::new(1e-3).with_eps(0.0),
            AdamConfig::new(1e-3).with_eps(-1e-8),
            AdamConfig::new(1e-3).with_weight_decay(-0.01),
            AdamConfig::new(1e-3).with_weight_decay(f64::NAN),
        ];
        for cfg in bad {
            assert!(matches!(cfg.init::<f64>(), Err(Error::Config { .. })), "{cfg:?} was accepted");
        }
        assert!(AdamConfig::new(1e-3).with_betas(0.0, 0.0).init::<f32>().is_ok());
    }
}
