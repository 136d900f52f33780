//! RMSprop (Hinton's lecture 6e, 2012) with momentum and the centered variant (Graves 2013).

use ndarray::Zip;
use rnnlab_core::{Float, Parameterized, Result, validate};
use serde::{Deserialize, Serialize};

use crate::adam::unit_interval;
use crate::optimizer::{OptimizerState, ParamState, SqSum, check_loaded, check_set_lr, drive};
use crate::{Optimizer, StepReport};

const OP: &str = "RmsPropConfig";
const SQUARE_AVG: &str = "square_avg";
const GRAD_AVG: &str = "grad_avg";
const MOMENTUM_BUFFER: &str = "momentum_buffer";

fn default_alpha() -> f64 {
    0.99
}

fn default_eps() -> f64 {
    1e-8
}

/// Configuration of [`RmsProp`]; defaults follow `torch.optim.RMSprop` (alpha 0.99, eps 1e-8,
/// no weight decay, no momentum, not centered).
///
/// # Examples
/// ```
/// use rnnlab_optim::RmsPropConfig;
/// let opt = RmsPropConfig::new(1e-2).with_momentum(0.9).with_centered(true).init::<f32>()?;
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct RmsPropConfig {
    /// Learning rate γ, finite and `> 0`.
    pub lr: f64,
    /// Smoothing constant α in `[0, 1)`.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// ε `> 0`, added to the root mean square.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// L2 weight decay λ `>= 0` (added to the gradient).
    #[serde(default)]
    pub weight_decay: f64,
    /// Momentum μ in `[0, 1)`.
    #[serde(default)]
    pub momentum: f64,
    /// Normalise by the estimated variance (E(g²) − E(g)²) instead of E(g²).
    #[serde(default)]
    pub centered: bool,
}
rnnlab_core::serde_map_only!(RmsPropConfig);

impl RmsPropConfig {
    /// RMSprop with learning rate `lr` and PyTorch's defaults otherwise.
    pub fn new(lr: f64) -> Self {
        Self { lr, alpha: default_alpha(), eps: default_eps(), weight_decay: 0.0, momentum: 0.0, centered: false }
    }

    /// Sets α.
    pub fn with_alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
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

    /// Sets the momentum μ.
    pub fn with_momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// Turns the centered variant on or off.
    pub fn with_centered(mut self, centered: bool) -> Self {
        self.centered = centered;
        self
    }

    /// Checks every hyper-parameter.
    ///
    /// # Errors
    /// [`rnnlab_core::Error::Config`] unless `lr` and `eps` are finite and `> 0`, `alpha` and
    /// `momentum` in `[0, 1)` and `weight_decay` finite and `>= 0`.
    pub fn validate(&self) -> Result<()> {
        validate::positive_param(OP, "lr", self.lr)?;
        unit_interval(OP, "alpha", self.alpha)?;
        validate::positive_param(OP, "eps", self.eps)?;
        validate::non_negative_param(OP, "weight_decay", self.weight_decay)?;
        unit_interval(OP, "momentum", self.momentum)
    }

    /// Validates, then builds the optimizer with empty state.
    ///
    /// # Errors
    /// As [`RmsPropConfig::validate`], and [`rnnlab_core::Error::Config`] for a value that is 0 or
    /// not finite once converted to `F` (an `eps` of 1e-50 is 0 in `f32`, an `lr` of 1e39 is ∞).
    pub fn init<F: Float>(&self) -> Result<RmsProp<F>> {
        self.validate()?;
        validate::positive_in::<F>(OP, "lr", self.lr)?;
        validate::non_negative_in::<F>(OP, "alpha", self.alpha)?;
        validate::positive_in::<F>(OP, "eps", self.eps)?;
        validate::non_negative_in::<F>(OP, "weight_decay", self.weight_decay)?;
        validate::non_negative_in::<F>(OP, "momentum", self.momentum)?;
        Ok(RmsProp { config: self.clone(), state: OptimizerState::new("rmsprop", self.lr) })
    }
}

/// RMSprop, `torch.optim.RMSprop`'s update (Tieleman & Hinton 2012, lecture 6e; centered:
/// Graves 2013, "Generating Sequences With Recurrent Neural Networks").
///
/// For each parameter θ with gradient g, v₀ = ḡ₀ = b₀ = 0:
///
/// ```text
/// g ← g + λ·θ                          (if λ ≠ 0)
/// v ← α·v + (1 − α)·g²
/// ṽ ← v                                 or, centered:  ḡ ← α·ḡ + (1 − α)·g ;  ṽ ← v − ḡ²
/// b ← μ·b + g/(√ṽ + ε) ;  θ ← θ − γ·b   (if μ > 0)
/// θ ← θ − γ·g/(√ṽ + ε)                  (otherwise)
/// ```
///
/// Centered: ṽ ≥ 0 in exact arithmetic; a rounding-negative ṽ is clamped to 0 here where
/// PyTorch would take √ of a negative number and produce NaN.
///
/// State: `square_avg`, plus `momentum_buffer` (μ > 0) and `grad_avg` (centered).
#[derive(Clone, Debug)]
pub struct RmsProp<F: Float> {
    config: RmsPropConfig,
    state: OptimizerState<F>,
}

impl<F: Float> RmsProp<F> {
    /// The configuration it was built from.
    pub fn config(&self) -> &RmsPropConfig {
        &self.config
    }

    fn buffer_names(&self) -> &'static [&'static str] {
        match (self.config.momentum > 0.0, self.config.centered) {
            (false, false) => &[SQUARE_AVG],
            (true, false) => &[SQUARE_AVG, MOMENTUM_BUFFER],
            (false, true) => &[SQUARE_AVG, GRAD_AVG],
            (true, true) => &[SQUARE_AVG, MOMENTUM_BUFFER, GRAD_AVG],
        }
    }
}

impl<F: Float> Optimizer<F> for RmsProp<F> {
    fn algorithm(&self) -> &'static str {
        "rmsprop"
    }

    fn step(&mut self, model: &mut dyn Parameterized<F>) -> Result<StepReport> {
        let c = &self.config;
        let lr = F::of(self.state.lr);
        let alpha = F::of(c.alpha);
        let one_minus_alpha = F::of(1.0 - c.alpha);
        let eps = F::of(c.eps);
        let wd = F::of(c.weight_decay);
        let decay = c.weight_decay != 0.0;
        let mu = F::of(c.momentum);
        let use_momentum = c.momentum > 0.0;
        let centered = c.centered;
        let names = self.buffer_names();
        drive(&mut self.state, model, &|shape| ParamState::filled(shape, names, F::zero()), &mut |mut p, ps| {
            let mut sq = SqSum::new();
            // The buffers a configuration does not use are stood in for by a scratch array of
            // the same shape, so one Zip serves all four variants.
            let mut scratch_b = None;
            let mut scratch_c = None;
            let shape = p.value.raw_dim();
            let (v, b, gbar) = match (use_momentum, centered) {
                (false, false) => {
                    let [v] = ps.buffers_mut([SQUARE_AVG])?;
                    (
                        v,
                        scratch_b.insert(ndarray::ArrayD::zeros(shape.clone())),
                        scratch_c.insert(ndarray::ArrayD::zeros(shape)),
                    )
                }
                (true, false) => {
                    let [v, b] = ps.buffers_mut([SQUARE_AVG, MOMENTUM_BUFFER])?;
                    (v, b, scratch_c.insert(ndarray::ArrayD::zeros(shape)))
                }
                (false, true) => {
                    let [v, gbar] = ps.buffers_mut([SQUARE_AVG, GRAD_AVG])?;
                    (v, scratch_b.insert(ndarray::ArrayD::zeros(shape)), gbar)
                }
                (true, true) => {
                    let [v, b, gbar] = ps.buffers_mut([SQUARE_AVG, MOMENTUM_BUFFER, GRAD_AVG])?;
                    (v, b, gbar)
                }
            };
            // Zip cannot panic: `drive` checked grad, value and state shapes are equal.
            Zip::from(&mut p.value).and(&p.grad).and(v).and(b).and(gbar).for_each(|x, &g, v, b, gbar| {
                let g = if decay { g + wd * *x } else { g };
                *v = *v * alpha + one_minus_alpha * g * g;
                let var = if centered {
                    *gbar = *gbar + one_minus_alpha * (g - *gbar);
                    let d = *v - *gbar * *gbar;
                    if d > F::zero() { d } else { F::zero() }
                } else {
                    *v
                };
                let avg = var.sqrt() + eps;
                let new = if use_momentum {
                    *b = *b * mu + g / avg;
                    *x - lr * *b
                } else {
                    *x - lr * (g / avg)
                };
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
        self.state = check_loaded(self.algorithm(), self.buffer_names(), state)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Tiny, assert_close};
    use rnnlab_core::Error;

    fn two_steps(cfg: RmsPropConfig) -> (f64, f64) {
        // θ0 = 1; g1 = 1, g2 = 0.5 (one element).
        let mut m = Tiny::<f64>::new([1.0], [1.0]);
        let mut opt = cfg.init::<f64>().unwrap();
        opt.step(&mut m).unwrap();
        let a = m.value()[0];
        m.set_grad([0.5]);
        opt.step(&mut m).unwrap();
        (a, m.value()[0])
    }

    #[test]
    fn plain_two_steps() {
        // γ = 0.1, α = 0.5, ε = 1e-12 (negligible).
        // t=1: v = 0.5; θ1 = 1 − 0.1·1/√0.5 = 1 − 0.14142136 = 0.85857864
        // t=2: v = 0.25 + 0.125 = 0.375; θ2 = θ1 − 0.1·0.5/√0.375 = θ1 − 0.08164966 = 0.77692898
        let (a, b) = two_steps(RmsPropConfig::new(0.1).with_alpha(0.5).with_eps(1e-12));
        assert_close(&[a, b], &[1.0 - 0.1 / 0.5f64.sqrt(), 1.0 - 0.1 / 0.5f64.sqrt() - 0.05 / 0.375f64.sqrt()], 1e-10);
        assert_close(&[a, b], &[0.858_578_64, 0.776_928_98], 1e-8);
    }

    #[test]
    fn centered_with_momentum_and_weight_decay_two_steps() {
        // γ = 0.1, α = 0.5, ε = 1e-12, μ = 0.5, λ = 0.5, centered.
        // t=1: g = 1 + 0.5·1 = 1.5; v = 0.5·2.25 = 1.125; ḡ = 0.75; ṽ = 1.125 − 0.5625 = 0.5625
        //      b = 1.5/0.75 = 2; θ1 = 1 − 0.2 = 0.8
        // t=2: g = 0.5 + 0.4 = 0.9; v = 0.5625 + 0.405 = 0.9675; ḡ = 0.375 + 0.45 = 0.825
        //      ṽ = 0.9675 − 0.680625 = 0.286875; √ṽ = 0.53560713
        //      b = 0.5·2 + 0.9/0.53560713 = 2.68033610; θ2 = 0.8 − 0.268033610 = 0.53196639
        let cfg = RmsPropConfig::new(0.1).with_alpha(0.5).with_eps(1e-12).with_momentum(0.5);
        let (a, b) = two_steps(cfg.with_weight_decay(0.5).with_centered(true));
        assert_close(&[a], &[0.8], 1e-10);
        assert_close(&[b], &[0.8 - 0.1 * (1.0 + 0.9 / 0.286_875f64.sqrt())], 1e-10);
        assert_close(&[b], &[0.531_966_39], 1e-8);
    }

    #[test]
    fn momentum_two_steps() {
        // γ = 0.1, α = 0.5, ε = 1e-12, μ = 0.9.
        // t=1: v = 0.5; b = 1/√0.5 = 1.41421356; θ1 = 0.85857864
        // t=2: v = 0.375; b = 0.9·1.41421356 + 0.5/√0.375 = 1.27279221 + 0.81649658 = 2.08928879
        //      θ2 = 0.85857864 − 0.208928879 = 0.64964976
        let (a, b) = two_steps(RmsPropConfig::new(0.1).with_alpha(0.5).with_eps(1e-12).with_momentum(0.9));
        assert_close(&[a, b], &[0.858_578_64, 0.649_649_76], 1e-8);
    }

    #[test]
    fn rejects_each_bad_hyper_parameter() {
        let bad = [
            RmsPropConfig::new(0.0),
            RmsPropConfig::new(f64::NAN),
            RmsPropConfig::new(0.1).with_alpha(1.0),
            RmsPropConfig::new(0.1).with_alpha(-0.5),
            RmsPropConfig::new(0.1).with_eps(0.0),
            RmsPropConfig::new(0.1).with_weight_decay(-1.0),
            RmsPropConfig::new(0.1).with_momentum(1.0),
            RmsPropConfig::new(0.1).with_momentum(-0.1),
        ];
        for cfg in bad {
            assert!(matches!(cfg.init::<f64>(), Err(Error::Config { .. })), "{cfg:?} was accepted");
        }
    }
}
