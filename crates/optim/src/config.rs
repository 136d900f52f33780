//! `OptimizerConfig`: one serde enum naming any of the five optimizers, for experiment files.

use rnnlab_core::{Float, Result};
use serde::{Deserialize, Serialize};

use crate::{AdagradConfig, AdamConfig, AdamWConfig, Optimizer, RmsPropConfig, SgdConfig};

/// Any optimizer's configuration, tagged by `"kind"` in serialised form.
///
/// Omitted hyper-parameters take PyTorch's defaults; unknown fields are rejected.
///
/// # Examples
/// ```
/// use rnnlab_optim::{OptimizerConfig, AdamConfig};
/// let cfg: OptimizerConfig = serde_json::from_str(r#"{"kind": "adam", "lr": 0.001, "amsgrad": true}"#).unwrap();
/// assert_eq!(cfg, OptimizerConfig::Adam(AdamConfig::new(0.001).with_amsgrad(true)));
/// let opt = cfg.init::<f32>()?;
/// assert_eq!(opt.algorithm(), "adam");
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// [`crate::Sgd`].
    Sgd(SgdConfig),
    /// [`crate::Adam`].
    Adam(AdamConfig),
    /// [`crate::AdamW`].
    #[serde(rename = "adamw")]
    AdamW(AdamWConfig),
    /// [`crate::RmsProp`].
    #[serde(rename = "rmsprop")]
    RmsProp(RmsPropConfig),
    /// [`crate::Adagrad`].
    Adagrad(AdagradConfig),
}
rnnlab_core::serde_map_only!(OptimizerConfig);

impl OptimizerConfig {
    /// The initial learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            Self::Sgd(c) => c.lr,
            Self::Adam(c) => c.lr,
            Self::AdamW(c) => c.lr,
            Self::RmsProp(c) => c.lr,
            Self::Adagrad(c) => c.lr,
        }
    }

    /// Checks every hyper-parameter of the chosen optimizer.
    ///
    /// # Errors
    /// As the chosen config's `validate`.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::Sgd(c) => c.validate(),
            Self::Adam(c) => c.validate(),
            Self::AdamW(c) => c.validate(),
            Self::RmsProp(c) => c.validate(),
            Self::Adagrad(c) => c.validate(),
        }
    }

    /// Validates, then builds the optimizer behind a trait object.
    ///
    /// # Errors
    /// As [`OptimizerConfig::validate`].
    pub fn init<F: Float>(&self) -> Result<Box<dyn Optimizer<F>>> {
        Ok(match self {
            Self::Sgd(c) => Box::new(c.init::<F>()?),
            Self::Adam(c) => Box::new(c.init::<F>()?),
            Self::AdamW(c) => Box::new(c.init::<F>()?),
            Self::RmsProp(c) => Box::new(c.init::<F>()?),
            Self::Adagrad(c) => Box::new(c.init::<F>()?),
        })
    }
}

impl From<SgdConfig> for OptimizerConfig {
    fn from(c: SgdConfig) -> Self {
        Self::Sgd(c)
    }
}

impl From<AdamConfig> for OptimizerConfig {
    fn from(c: AdamConfig) -> Self {
        Self::Adam(c)
    }
}

impl From<AdamWConfig> for OptimizerConfig {
    fn from(c: AdamWConfig) -> Self {
        Self::AdamW(c)
    }
}

impl From<RmsPropConfig> for OptimizerConfig {
    fn from(c: RmsPropConfig) -> Self {
        Self::RmsProp(c)
    }
}

impl From<AdagradConfig> for OptimizerConfig {
    fn from(c: AdagradConfig) -> Self {
        Self::Adagrad(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OptimizerState;
    use crate::testing::Two;
    use rnnlab_core::Error;

    fn all_configs() -> Vec<OptimizerConfig> {
        vec![
            SgdConfig::new(0.05).with_momentum(0.9).with_nesterov(true).with_weight_decay(1e-3).into(),
            AdamConfig::new(0.01).with_amsgrad(true).with_weight_decay(1e-3).into(),
            AdamWConfig::new(0.01).into(),
            RmsPropConfig::new(0.01).with_momentum(0.5).with_centered(true).into(),
            AdagradConfig::new(0.05).with_lr_decay(0.01).with_initial_accumulator_value(0.1).into(),
        ]
    }

    #[test]
    fn json_names_each_optimizer_with_defaults() {
        let cases = [
            (r#"{"kind":"sgd","lr":0.1}"#, OptimizerConfig::from(SgdConfig::new(0.1))),
            (r#"{"kind":"adam","lr":0.1,"betas":[0.8,0.9]}"#, AdamConfig::new(0.1).with_betas(0.8, 0.9).into()),
            (r#"{"kind":"adamw","lr":0.1}"#, AdamWConfig::new(0.1).into()),
            (r#"{"kind":"rmsprop","lr":0.1,"centered":true}"#, RmsPropConfig::new(0.1).with_centered(true).into()),
            (r#"{"kind":"adagrad","lr":0.1}"#, AdagradConfig::new(0.1).into()),
        ];
        for (json, want) in cases {
            let got: OptimizerConfig = serde_json::from_str(json).unwrap();
            assert_eq!(got, want, "{json}");
            assert!(got.init::<f64>().is_ok());
        }
        for cfg in all_configs() {
            let back: OptimizerConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
            assert_eq!(back, cfg);
        }
    }

    #[test]
    fn unknown_fields_and_kinds_are_rejected() {
        assert!(serde_json::from_str::<OptimizerConfig>(r#"{"kind":"adam","lr":0.1,"beta1":0.9}"#).is_err());
        assert!(serde_json::from_str::<OptimizerConfig>(r#"{"kind":"lion","lr":0.1}"#).is_err());
        assert!(serde_json::from_str::<OptimizerConfig>(r#"{"kind":"sgd"}"#).is_err());
    }

    #[test]
    fn array_forms_and_unknown_fields_are_rejected_everywhere() {
        for cfg in all_configs() {
            let v = serde_json::to_value(&cfg).unwrap();
            let map = v.as_object().unwrap();
            // the tagged enum as an array, tag first (serde's positional form)
            let arr: Vec<serde_json::Value> = map.values().cloned().collect();
            assert!(serde_json::from_value::<OptimizerConfig>(serde_json::Value::Array(arr)).is_err(), "{cfg:?}");
            let mut extra = map.clone();
            extra.insert("extra".into(), 1.into());
            assert!(serde_json::from_value::<OptimizerConfig>(extra.into()).is_err(), "{cfg:?}");
        }
        assert!(serde_json::from_str::<AdamConfig>("[0.1]").is_err());
        assert!(serde_json::from_str::<SgdConfig>("[0.1, 0.0, 0.0, 0.0, false]").is_err());
        assert!(serde_json::from_str::<crate::LrSchedule>(r#"["step", 10, 0.5]"#).is_err());
        assert!(serde_json::from_str::<crate::ClipConfig>(r#"["global_norm", 1.0]"#).is_err());
    }

    #[test]
    fn values_are_checked_in_the_model_float() {
        // eps = 1e-50 is finite and > 0 in f64, but 0 in f32: 0/0 in the update
        let tiny_eps: [OptimizerConfig; 4] = [
            AdamConfig::new(0.01).with_eps(1e-50).into(),
            AdamWConfig::new(0.01).with_eps(1e-50).into(),
            RmsPropConfig::new(0.01).with_eps(1e-50).into(),
            AdagradConfig::new(0.01).with_eps(1e-50).into(),
        ];
        for cfg in &tiny_eps {
            assert!(cfg.init::<f64>().is_ok(), "{cfg:?}");
            let e = cfg.init::<f32>().unwrap_err().to_string();
            assert!(e.contains("eps must be > 0, got 1e-50, which is 0 in f32"), "{e}");
        }
        for cfg in [OptimizerConfig::from(SgdConfig::new(1e39)), AdamConfig::new(1e39).into()] {
            assert!(cfg.init::<f64>().is_ok());
            let e = cfg.init::<f32>().unwrap_err().to_string();
            assert!(e.contains("lr must be finite, got 1e39 (it overflows f32)"), "{e}");
        }
        let mut opt = SgdConfig::new(0.1).init::<f32>().unwrap();
        let e = opt.set_lr(1e39).unwrap_err().to_string();
        assert!(e.starts_with("Optimizer::set_lr") && e.contains("lr"), "{e}");
        assert!(opt.set_lr(1e30).is_ok());
    }

    #[test]
    fn step_counters_never_wrap() {
        let mut m = Two::<f64>::new();
        m.fake_backward(0);
        let mut opt = AdamConfig::new(0.01).init::<f64>().unwrap();
        opt.step(&mut m).unwrap();
        let before = m.bits();
        // a state file whose counter is at the end of u64: refused on load, like a config
        let mut st = opt.state();
        st.step = u64::MAX;
        let e = opt.load_state(st.clone()).unwrap_err().to_string();
        assert!(e.contains("step = 18446744073709551615"), "{e}");
        // a parameter that took more steps than the optimizer
        st.step = 1;
        st.params.get_mut("w").unwrap().step = 2;
        let e = opt.load_state(st).unwrap_err().to_string();
        assert!(e.contains("`w` has taken 2 steps"), "{e}");
        // at u64::MAX − 1 one more step is fine; the next one is an error, not a wrap
        let mut st = opt.state();
        st.step = u64::MAX - 1;
        opt.load_state(st).unwrap();
        assert_eq!(opt.step(&mut m).unwrap().step, u64::MAX);
        let after = m.bits();
        assert_ne!(after, before);
        let e = opt.step(&mut m).unwrap_err().to_string();
        assert!(e.contains("cannot be incremented"), "{e}");
        assert_eq!(m.bits(), after, "a refused step changes nothing");
    }

    #[test]
    fn deserialised_config_is_validated_at_init() {
        let cfg: OptimizerConfig = serde_json::from_str(r#"{"kind":"rmsprop","lr":-0.1}"#).unwrap();
        assert!(matches!(cfg.validate(), Err(Error::Config { .. })));
        assert!(matches!(cfg.init::<f32>(), Err(Error::Config { .. })));
    }

    fn resume_is_bit_identical<F: Float>() {
        for cfg in all_configs() {
            // Uninterrupted: 10 steps.
            let mut full = Two::<F>::new();
            let mut opt = cfg.init::<F>().unwrap();
            for t in 0..10 {
                full.fake_backward(t);
                opt.step(&mut full).unwrap();
                full.zero_grad_for_test();
            }
            // Interrupted after 4: state → JSON → a fresh optimizer, model values copied.
            let mut first = Two::<F>::new();
            let mut opt_a = cfg.init::<F>().unwrap();
            for t in 0..4 {
                first.fake_backward(t);
                opt_a.step(&mut first).unwrap();
                first.zero_grad_for_test();
            }
            let json = serde_json::to_string(&opt_a.state()).unwrap();
            let state: OptimizerState<F> = serde_json::from_str(&json).unwrap();
            assert_eq!(state, opt_a.state(), "{} state survives JSON exactly", F::NAME);
            let mut resumed = Two::<F>::new();
            resumed.w.value.assign(&first.w.value);
            resumed.b.value.assign(&first.b.value);
            let mut opt_b = cfg.init::<F>().unwrap();
            opt_b.load_state(state).unwrap();
            for t in 4..10 {
                resumed.fake_backward(t);
                opt_b.step(&mut resumed).unwrap();
                resumed.zero_grad_for_test();
            }
            assert_eq!(resumed.bits(), full.bits(), "{cfg:?} in {}", F::NAME);
            assert_eq!(opt_b.state(), opt.state());
            assert_ne!(full.bits(), Two::<F>::new().bits(), "the run moved the parameters");
        }
    }

    #[test]
    fn save_json_load_continue_is_bit_identical_f64() {
        resume_is_bit_identical::<f64>();
    }

    #[test]
    fn save_json_load_continue_is_bit_identical_f32() {
        resume_is_bit_identical::<f32>();
    }

    #[test]
    fn state_is_keyed_by_parameter_name() {
        let mut m = Two::<f64>::new();
        m.fake_backward(0);
        let mut opt = AdamConfig::new(0.01).init::<f64>().unwrap();
        opt.step(&mut m).unwrap();
        let st = opt.state();
        assert_eq!(st.params.keys().collect::<Vec<_>>(), ["b", "w"]);
        assert_eq!(st.params["w"].shape, [2, 2]);
        assert_eq!(st.params["w"].buffers.keys().collect::<Vec<_>>(), ["exp_avg", "exp_avg_sq"]);
        assert_eq!((st.step, st.params["b"].step), (1, 1));
    }
}
