//! Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay.

use ndarray::Zip;
use rnnlab_core::{Error, Float, Parameterized, Result, validate};
use serde::{Deserialize, Serialize};

use crate::optimizer::{OptimizerState, ParamState, SqSum, check_loaded, check_set_lr, drive};
use crate::{Optimizer, StepReport};

const OP: &str = "SgdConfig";
const MOMENTUM_BUFFER: &str = "momentum_buffer";

/// Configuration of [`Sgd`]; defaults follow `torch.optim.SGD` (momentum, dampening and
/// weight decay 0, no Nesterov).
///
/// # Examples
/// ```
/// use rnnlab_optim::SgdConfig;
/// let opt = SgdConfig::new(0.1).with_momentum(0.9).with_nesterov(true).init::<f32>()?;
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct SgdConfig {
    /// Learning rate γ, finite and `> 0`.
    pub lr: f64,
    /// Momentum μ in `[0, 1)`.
    #[serde(default)]
    pub momentum: f64,
    /// Dampening τ in `[0, 1]`.
    #[serde(default)]
    pub dampening: f64,
    /// L2 weight decay λ `>= 0` (added to the gradient).
    #[serde(default)]
    pub weight_decay: f64,
    /// Nesterov momentum (needs μ > 0 and τ = 0).
    #[serde(default)]
    pub nesterov: bool,
}
rnnlab_core::serde_map_only!(SgdConfig);

impl SgdConfig {
    /// Plain SGD with learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        Self { lr, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false }
    }

    /// Sets the momentum μ.
    pub fn with_momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// Sets the dampening τ.
    pub fn with_dampening(mut self, dampening: f64) -> Self {
        self.dampening = dampening;
        self
    }

    /// Sets the L2 weight decay λ.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Turns Nesterov momentum on or off.
    pub fn with_nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    /// Checks every hyper-parameter.
    ///
    /// # Errors
    /// [`Error::Config`] unless `lr` is finite and `> 0`, `momentum` in `[0, 1)`, `dampening`
    /// in `[0, 1]`, `weight_decay` finite and `>= 0`, and (with Nesterov) `momentum > 0`
    /// and `dampening == 0`.
    pub fn validate(&self) -> Result<()> {
        validate::positive_param(OP, "lr", self.lr)?;
        crate::adam::unit_interval(OP, "momentum", self.momentum)?;
        validate::non_negative_param(OP, "dampening", self.dampening)?;
        if self.dampening > 1.0 {
            return Err(Error::config(OP, format!("dampening must be <= 1, got {}", self.dampening)));
        }
        validate::non_negative_param(OP, "weight_decay", self.weight_decay)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::config(
                OP,
                format!(
                    "nesterov momentum requires momentum > 0 and dampening = 0, got momentum {} and dampening {}",
                    self.momentum, self.dampening
                ),
            ));
        }
        Ok(())
    }

    /// Validates, then builds the optimizer with empty state.
    ///
    /// # Errors
    /// As [`SgdConfig::validate`], and [`rnnlab_core::Error::Config`] for a value that is 0 or
    /// not finite once converted to `F` (an `eps` of 1e-50 is 0 in `f32`, an `lr` of 1e39 is ∞).
    pub fn init<F: Float>(&self) -> Result<Sgd<F>> {
        self.validate()?;
        validate::positive_in::<F>(OP, "lr", self.lr)?;
        validate::non_negative_in::<F>(OP, "momentum", self.momentum)?;
        validate::non_negative_in::<F>(OP, "dampening", self.dampening)?;
        validate::non_negative_in::<F>(OP, "weight_decay", self.weight_decay)?;
        Ok(Sgd { config: self.clone(), state: OptimizerState::new("sgd", self.lr) })
    }
}

/// Stochastic gradient descent, `torch.optim.SGD`'s update (Sutskever et al. 2013 for momentum).
///
/// For each parameter θ with gradient g, at its step t (1-based):
///
/// ```text
/// g ← g + λ·θ                              (if λ ≠ 0)
/// b ← g                      at t = 1      (if μ ≠ 0)
/// b ← μ·b + (1 − τ)·g        at t > 1
/// g ← g + μ·b  (Nesterov)   or   g ← b
/// θ ← θ − γ·g
/// ```
///
/// State: `momentum_buffer` per parameter when μ ≠ 0, none otherwise.
#[derive(Clone, Debug)]
pub struct Sgd<F: Float> {
    config: SgdConfig,
    state: OptimizerState<F>,
}

impl<F: Float> Sgd<F> {
    /// The configuration it was built from.
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }

    fn buffer_names(&self) -> &'static [&'static str] {
        if self.config.momentum != 0.0 { &[MOMENTUM_BUFFER] } else { &[] }
    }
}

impl<F: Float> Optimizer<F> for Sgd<F> {
    fn algorithm(&self) -> &'static str {
        "sgd"
    }

    fn step(&mut self, model: &mut dyn Parameterized<F>) -> Result<StepReport> {
        let lr = F::of(self.state.lr);
        let wd = F::of(self.config.weight_decay);
        let decay = self.config.weight_decay != 0.0;
        let mu = F::of(self.config.momentum);
        let one_minus_damp = F::of(1.0 - self.config.dampening);
        let nesterov = self.config.nesterov;
        let names = self.buffer_names();
        drive(&mut self.state, model, &|shape| ParamState::filled(shape, names, F::zero()), &mut |mut p, ps| {
            let mut sq = SqSum::new();
            // Zip cannot panic: `drive` checked grad, value and state shapes are equal.
            if names.is_empty() {
                let step = |x: F, g: F| x - lr * if decay { g + wd * x } else { g };
                match (p.value.as_slice_mut(), p.grad.as_slice()) {
                    (Some(xs), Some(gs)) if xs.len() == gs.len() => sq.update_run(xs, gs, step),
                    _ => Zip::from(&mut p.value).and(&p.grad).for_each(|x, &g| {
                        let new = step(*x, g);
                        sq.add(new, *x);
                        *x = new;
                    }),
                }
            } else {
                let first = ps.step == 1;
                let [buf] = ps.buffers_mut([MOMENTUM_BUFFER])?;
                Zip::from(&mut p.value).and(&p.grad).and(buf).for_each(|x, &g, b| {
                    let d = if decay { g + wd * *x } else { g };
                    *b = if first { d } else { *b * mu + one_minus_damp * d };
                    let dir = if nesterov { d + mu * *b } else { *b };
                    let new = *x - lr * dir;
                    sq.add(new, *x);
                    *x = new;
                });
            }
            Ok(sq.total())
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
        self.state = check_loaded(self.algorithm(), self.buffer_names(), state)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Tiny, assert_close};

    fn two_steps(cfg: SgdConfig) -> (Vec<f64>, Vec<f64>) {
        // θ0 = [1, −2]; g1 = [0.5, −1], g2 = [0.25, 2].
        let mut m = Tiny::<f64>::new([1.0, -2.0], [0.5, -1.0]);
        let mut opt = cfg.init::<f64>().unwrap();
        opt.step(&mut m).unwrap();
        let after1 = m.value();
        m.set_grad([0.25, 2.0]);
        opt.step(&mut m).unwrap();
        (after1, m.value())
    }

    #[test]
    fn plain_sgd_two_steps() {
        // θ1 = [1 − 0.1·0.5, −2 − 0.1·(−1)] = [0.95, −1.9]
        // θ2 = [0.95 − 0.1·0.25, −1.9 − 0.1·2] = [0.925, −2.1]
        let (a, b) = two_steps(SgdConfig::new(0.1));
        assert_close(&a, &[0.95, -1.9], 1e-12);
        assert_close(&b, &[0.925, -2.1], 1e-12);
    }

    #[test]
    fn momentum_with_dampening_and_weight_decay_two_steps() {
        // γ = 0.1, μ = 0.9, τ = 0.5, λ = 0.1.
        // t=1: d = g + λθ = [0.5 + 0.1, −1 − 0.2] = [0.6, −1.2]; b = d
        //      θ1 = [1 − 0.06, −2 + 0.12] = [0.94, −1.88]
        // t=2: d = [0.25 + 0.094, 2 − 0.188] = [0.344, 1.812]
        //      b = 0.9·b + 0.5·d = [0.54 + 0.172, −1.08 + 0.906] = [0.712, −0.174]
        //      θ2 = [0.94 − 0.0712, −1.88 + 0.0174] = [0.8688, −1.8626]
        let (a, b) = two_steps(SgdConfig::new(0.1).with_momentum(0.9).with_dampening(0.5).with_weight_decay(0.1));
        assert_close(&a, &[0.94, -1.88], 1e-12);
        assert_close(&b, &[0.8688, -1.8626], 1e-12);
    }

    #[test]
    fn nesterov_two_steps() {
        // γ = 0.1, μ = 0.9.
        // t=1: b = g = [0.5, −1]; dir = g + μb = [0.95, −1.9]; θ1 = [0.905, −1.81]
        // t=2: b = 0.9·[0.5, −1] + [0.25, 2] = [0.7, 1.1]; dir = [0.25 + 0.63, 2 + 0.99] = [0.88, 2.99]
        //      θ2 = [0.905 − 0.088, −1.81 − 0.299] = [0.817, −2.109]
        let (a, b) = two_steps(SgdConfig::new(0.1).with_momentum(0.9).with_nesterov(true));
        assert_close(&a, &[0.905, -1.81], 1e-12);
        assert_close(&b, &[0.817, -2.109], 1e-12);
    }

    #[test]
    fn rejects_each_bad_hyper_parameter() {
        let bad = [
            SgdConfig::new(0.0),
            SgdConfig::new(-0.1),
            SgdConfig::new(f64::NAN),
            SgdConfig::new(f64::INFINITY),
            SgdConfig::new(0.1).with_momentum(-0.1),
            SgdConfig::new(0.1).with_momentum(1.0),
            SgdConfig::new(0.1).with_momentum(f64::NAN),
            SgdConfig::new(0.1).with_dampening(-0.1),
            SgdConfig::new(0.1).with_dampening(1.5),
            SgdConfig::new(0.1).with_weight_decay(-1e-4),
            SgdConfig::new(0.1).with_weight_decay(f64::INFINITY),
            SgdConfig::new(0.1).with_nesterov(true),
            SgdConfig::new(0.1).with_momentum(0.9).with_dampening(0.1).with_nesterov(true),
        ];
        for cfg in bad {
            assert!(matches!(cfg.init::<f64>(), Err(Error::Config { .. })), "{cfg:?} was accepted");
        }
        assert!(SgdConfig::new(0.1).with_momentum(0.9).with_dampening(1.0).init::<f32>().is_ok());
    }
}
