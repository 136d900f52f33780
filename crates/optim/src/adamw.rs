//! AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019).

use rnnlab_core::{Float, Parameterized, Result, validate};
use serde::{Deserialize, Serialize};

use crate::adam::{AdamStep, adam_buffer_names, adam_update, default_betas, default_eps, validate_adam};
use crate::optimizer::{OptimizerState, ParamState, check_loaded, check_set_lr, drive};
use crate::{Optimizer, StepReport};

const OP: &str = "AdamWConfig";

fn default_weight_decay() -> f64 {
    1e-2
}

/// Configuration of [`AdamW`]; defaults follow `torch.optim.AdamW` (betas (0.9, 0.999),
/// eps 1e-8, weight decay 1e-2, no AMSGrad).
///
/// # Examples
/// ```
/// use rnnlab_optim::AdamWConfig;
/// let opt = AdamWConfig::new(1e-3).with_weight_decay(0.1).init::<f32>()?;
/// assert_eq!(AdamWConfig::new(1e-3).weight_decay, 1e-2);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct AdamWConfig {
    /// Learning rate γ, finite and `> 0`.
    pub lr: f64,
    /// (β₁, β₂), each in `[0, 1)`.
    #[serde(default = "default_betas")]
    pub betas: (f64, f64),
    /// ε `> 0`, added to √v̂.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Decoupled weight decay λ `>= 0`: θ ← θ·(1 − γλ) before the Adam step.
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Use the running maximum of the second moment (AMSGrad).
    #[serde(default)]
    pub amsgrad: bool,
}
rnnlab_core::serde_map_only!(AdamWConfig);

impl AdamWConfig {
    /// AdamW with learning rate `lr` and PyTorch's defaults otherwise.
    pub fn new(lr: f64) -> Self {
        Self { lr, betas: default_betas(), eps: default_eps(), weight_decay: default_weight_decay(), amsgrad: false }
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

    /// Sets the decoupled weight decay λ.
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
    /// [`rnnlab_core::Error::Config`] unless `lr` and `eps` are finite and `> 0`, both betas
    /// in `[0, 1)` and `weight_decay` finite and `>= 0`.
    pub fn validate(&self) -> Result<()> {
        validate_adam(OP, self.lr, self.betas, self.eps, self.weight_decay)
    }

    /// Validates, then builds the optimizer with empty state.
    ///
    /// # Errors
    /// As [`AdamWConfig::validate`], and [`rnnlab_core::Error::Config`] for a value that is 0 or
    /// not finite once converted to `F` (an `eps` of 1e-50 is 0 in `f32`, an `lr` of 1e39 is ∞).
    pub fn init<F: Float>(&self) -> Result<AdamW<F>> {
        self.validate()?;
        validate::positive_in::<F>(OP, "lr", self.lr)?;
        validate::positive_in::<F>(OP, "eps", self.eps)?;
        validate::non_negative_in::<F>(OP, "weight_decay", self.weight_decay)?;
        Ok(AdamW { config: self.clone(), state: OptimizerState::new("adamw", self.lr) })
    }
}

/// AdamW, `torch.optim.AdamW`'s update (Loshchilov & Hutter 2019, "Decoupled Weight Decay
/// Regularization").
///
/// As [`crate::Adam`] without L2 decay in the gradient, preceded by the decoupled decay:
///
/// ```text
/// θ ← θ·(1 − γλ)
/// m ← β₁·m + (1 − β₁)·g ;  v ← β₂·v + (1 − β₂)·g² ;  (v^max ← max(v^max, v) with AMSGrad)
/// θ ← θ − (γ / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
/// ```
///
/// State: `exp_avg`, `exp_avg_sq` (and `max_exp_avg_sq` with AMSGrad) per parameter.
#[derive(Clone, Debug)]
pub struct AdamW<F: Float> {
    config: AdamWConfig,
    state: OptimizerState<F>,
}

impl<F: Float> AdamW<F> {
    /// The configuration it was built from.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }
}

impl<F: Float> Optimizer<F> for AdamW<F> {
    fn algorithm(&self) -> &'static str {
        "adamw"
    }

    fn step(&mut self, model: &mut dyn Parameterized<F>) -> Result<StepReport> {
        let c = &self.config;
        let h = AdamStep {
            lr: self.state.lr,
            betas: c.betas,
            eps: c.eps,
            amsgrad: c.amsgrad,
            l2: 0.0,
            decoupled: c.weight_decay,
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
    use crate::AdamConfig;
    use crate::testing::{Tiny, assert_close};
    use rnnlab_core::Error;

    #[test]
    fn adamw_two_steps() {
        // γ = 0.1, β = (0.5, 0.5), ε = 1e-12, λ = 0.5; θ0 = 2; g1 = 1, g2 = 0.5.
        // t=1: θ ← 2·(1 − 0.05) = 1.9; m = 0.5; v = 0.5
        //      θ1 = 1.9 − (0.1/0.5)·0.5/(√0.5/√0.5) = 1.9 − 0.1 = 1.8
        // t=2: θ ← 1.8·0.95 = 1.71; m = 0.25 + 0.25 = 0.5; v = 0.25 + 0.125 = 0.375
        //      θ2 = 1.71 − (0.1/0.75)·0.5/(√0.375/√0.75) = 1.71 − 0.0666667/0.7071068 = 1.6157191
        let mut m = Tiny::<f64>::new([2.0], [1.0]);
        let cfg = AdamWConfig::new(0.1).with_betas(0.5, 0.5).with_eps(1e-12).with_weight_decay(0.5);
        let mut opt = cfg.init::<f64>().unwrap();
        opt.step(&mut m).unwrap();
        assert_close(&m.value(), &[1.8], 1e-10);
        m.set_grad([0.5]);
        opt.step(&mut m).unwrap();
        assert_close(&m.value(), &[1.71 - (0.1 / 0.75) * 0.5 / 0.5f64.sqrt()], 1e-10);
        assert_close(&m.value(), &[1.615_719_1], 1e-7);
    }

    #[test]
    fn adamw_without_decay_equals_adam() {
        let run = |opt: &mut dyn Optimizer<f64>| {
            let mut m = Tiny::<f64>::new([1.0, -2.0], [0.5, -1.0]);
            opt.step(&mut m).unwrap();
            m.set_grad([0.25, 2.0]);
            opt.step(&mut m).unwrap();
            m.value()
        };
        let a = run(&mut AdamConfig::new(0.1).init::<f64>().unwrap());
        let w = run(&mut AdamWConfig::new(0.1).with_weight_decay(0.0).init::<f64>().unwrap());
        assert_close(&a, &w, 1e-15);
    }

    #[test]
    fn rejects_each_bad_hyper_parameter() {
        let bad = [
            AdamWConfig::new(-1.0),
            AdamWConfig::new(f64::INFINITY),
            AdamWConfig::new(1e-3).with_betas(1.0, 0.999),
            AdamWConfig::new(1e-3).with_betas(0.9, 1.5),
            AdamWConfig::new(1e-3).with_eps(0.0),
            AdamWConfig::new(1e-3).with_eps(f64::NAN),
            AdamWConfig::new(1e-3).with_weight_decay(-0.01),
        ];
        for cfg in bad {
            assert!(matches!(cfg.init::<f64>(), Err(Error::Config { .. })), "{cfg:?} was accepted");
        }
    }
}
