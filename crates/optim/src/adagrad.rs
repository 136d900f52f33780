//! Adagrad (Duchi, Hazan & Singer 2011) with learning-rate decay and an initial accumulator.

use ndarray::Zip;
use rnnlab_core::{Float, Parameterized, Result, validate};
use serde::{Deserialize, Serialize};

use crate::optimizer::{OptimizerState, ParamState, SqSum, check_loaded, check_set_lr, drive};
use crate::{Optimizer, StepReport};

const OP: &str = "AdagradConfig";
const SUM: &str = "sum";

fn default_eps() -> f64 {
    1e-10
}

/// Configuration of [`Adagrad`]; defaults follow `torch.optim.Adagrad` (lr_decay 0, no
/// weight decay, initial accumulator 0, eps 1e-10).
///
/// # Examples
/// ```
/// use rnnlab_optim::AdagradConfig;
/// let opt = AdagradConfig::new(1e-2).with_initial_accumulator_value(0.1).init::<f32>()?;
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct AdagradConfig {
    /// Learning rate γ, finite and `> 0`.
    pub lr: f64,
    /// Learning-rate decay η `>= 0`: step t uses γ/(1 + (t − 1)η).
    #[serde(default)]
    pub lr_decay: f64,
    /// L2 weight decay λ `>= 0` (added to the gradient).
    #[serde(default)]
    pub weight_decay: f64,
    /// Starting value of the squared-gradient sum, `>= 0`.
    #[serde(default)]
    pub initial_accumulator_value: f64,
    /// ε `> 0`, added to √sum.
    #[serde(default = "default_eps")]
    pub eps: f64,
}
rnnlab_core::serde_map_only!(AdagradConfig);

impl AdagradConfig {
    /// Adagrad with learning rate `lr` and PyTorch's defaults otherwise.
    pub fn new(lr: f64) -> Self {
        Self { lr, lr_decay: 0.0, weight_decay: 0.0, initial_accumulator_value: 0.0, eps: default_eps() }
    }

    /// Sets the learning-rate decay η.
    pub fn with_lr_decay(mut self, lr_decay: f64) -> Self {
        self.lr_decay = lr_decay;
        self
    }

    /// Sets the L2 weight decay λ.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Sets the initial accumulator value.
    pub fn with_initial_accumulator_value(mut self, value: f64) -> Self {
        self.initial_accumulator_value = value;
        self
    }

    /// Sets ε.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Checks every hyper-parameter.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Config`] unless `lr` and `eps` are finite and `> 0` and
    /// `lr_decay`, `weight_decay` and `initial_accumulator_value` finite and `>= 0`.
    pub fn validate(&self) -> Result<()> {
        validate::positive_param(OP, "lr", self.lr)?;
        validate::non_negative_param(OP, "lr_decay", self.lr_decay)?;
        validate::non_negative_param(OP, "weight_decay", self.weight_decay)?;
        validate::non_negative_param(OP, "initial_accumulator_value", self.initial_accumulator_value)?;
        validate::positive_param(OP, "eps", self.eps)
    }

    /// Validates, then builds the optimizer with empty state.
    ///
    /// # Errors
    /// As [`AdagradConfig::validate`], and [`rnnlab_core::Error::Config`] for a value that is 0 or
    /// not finite once converted to `F` (an `eps` of 1e-50 is 0 in `f32`, an `lr` of 1e39 is ∞).
    pub fn init<F: Float>(&self) -> Result<Adagrad<F>> {
        self.validate()?;
        validate::positive_in::<F>(OP, "lr", self.lr)?;
        validate::non_negative_in::<F>(OP, "lr_decay", self.lr_decay)?;
        validate::non_negative_in::<F>(OP, "weight_decay", self.weight_decay)?;
        validate::non_negative_in::<F>(OP, "initial_accumulator_value", self.initial_accumulator_value)?;
        validate::positive_in::<F>(OP, "eps", self.eps)?;
        Ok(Adagrad { config: self.clone(), state: OptimizerState::new("adagrad", self.lr) })
    }
}

/// Adagrad, `torch.optim.Adagrad`'s update (Duchi, Hazan & Singer 2011, "Adaptive Subgradient
/// Methods for Online Learning and Stochastic Optimization").
///
/// For each parameter θ with gradient g, at its step t (1-based), s₀ = initial_accumulator_value:
///
/// ```text
/// γ̃ ← γ / (1 + (t − 1)·η)
/// g ← g + λ·θ                 (if λ ≠ 0)
/// s ← s + g²
/// θ ← θ − γ̃·g/(√s + ε)
/// ```
///
/// State: `sum` per parameter.
#[derive(Clone, Debug)]
pub struct Adagrad<F: Float> {
    config: AdagradConfig,
    state: OptimizerState<F>,
}

impl<F: Float> Adagrad<F> {
    /// The configuration it was built from.
    pub fn config(&self) -> &AdagradConfig {
        &self.config
    }
}

impl<F: Float> Optimizer<F> for Adagrad<F> {
    fn algorithm(&self) -> &'static str {
        "adagrad"
    }

    fn step(&mut self, model: &mut dyn Parameterized<F>) -> Result<StepReport> {
        let c = &self.config;
        let lr = self.state.lr;
        let lr_decay = c.lr_decay;
        let eps = F::of(c.eps);
        let wd = F::of(c.weight_decay);
        let decay = c.weight_decay != 0.0;
        let init = F::of(c.initial_accumulator_value);
        drive(&mut self.state, model, &|shape| ParamState::filled(shape, &[SUM], init), &mut |mut p, ps| {
            let clr = F::of(lr / (1.0 + (ps.step - 1) as f64 * lr_decay));
            let [s] = ps.buffers_mut([SUM])?;
            let mut sq = SqSum::new();
            // Zip cannot panic: `drive` checked grad, value and state shapes are equal.
            Zip::from(&mut p.value).and(&p.grad).and(s).for_each(|x, &g, s| {
                let g = if decay { g + wd * *x } else { g };
                *s += g * g;
                let new = *x - clr * (g / (s.sqrt() + eps));
                sq.add(new, *x);
                *x = new;
            });
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
        self.state = check_loaded(self.algorithm(), &[SUM], state)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Tiny, assert_close};
    use rnnlab_core::Error;

    #[test]
    fn adagrad_two_steps() {
        // γ = 0.1, η = 0.5, λ = 0.5, s₀ = 1, ε = 1e-12 (negligible); θ0 = 1, g1 = 1, g2 = 0.
        // t=1: γ̃ = 0.1; g = 1 + 0.5 = 1.5; s = 1 + 2.25 = 3.25; θ1 = 1 − 0.1·1.5/√3.25 = 0.91679497
        // t=2: γ̃ = 0.1/1.5 = 0.0666667; g = 0 + 0.5·θ1 = 0.45839749; s = 3.25 + 0.21012826 = 3.46012826
        //      θ2 = θ1 − 0.0666667·0.45839749/1.86014200 = 0.91679497 − 0.01642876 = 0.90036621
        let mut m = Tiny::<f64>::new([1.0], [1.0]);
        let cfg = AdagradConfig::new(0.1).with_lr_decay(0.5).with_weight_decay(0.5);
        let mut opt = cfg.with_initial_accumulator_value(1.0).with_eps(1e-12).init::<f64>().unwrap();
        opt.step(&mut m).unwrap();
        let t1 = 1.0 - 0.15 / 3.25f64.sqrt();
        assert_close(&m.value(), &[t1], 1e-10);
        m.set_grad([0.0]);
        opt.step(&mut m).unwrap();
        let g2 = 0.5 * t1;
        let t2 = t1 - (0.1 / 1.5) * g2 / (3.25 + g2 * g2).sqrt();
        assert_close(&m.value(), &[t2], 1e-10);
        assert_close(&[t1, t2], &[0.916_794_97, 0.900_366_21], 1e-8);
    }

    #[test]
    fn rejects_each_bad_hyper_parameter() {
        let bad = [
            AdagradConfig::new(0.0),
            AdagradConfig::new(f64::NAN),
            AdagradConfig::new(0.1).with_lr_decay(-0.1),
            AdagradConfig::new(0.1).with_weight_decay(-0.1),
            AdagradConfig::new(0.1).with_initial_accumulator_value(-1.0),
            AdagradConfig::new(0.1).with_initial_accumulator_value(f64::INFINITY),
            AdagradConfig::new(0.1).with_eps(0.0),
        ];
        for cfg in bad {
            assert!(matches!(cfg.init::<f64>(), Err(Error::Config { .. })), "{cfg:?} was accepted");
        }
    }
}
