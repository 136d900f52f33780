//! Gradient clipping between backward and step: global norm, per-parameter norm, value, AGC.

use ndarray::{ArrayViewD, ArrayViewMutD, Axis};
use rnnlab_core::{Error, Float, Parameterized, Result, validate};
use serde::{Deserialize, Serialize};

use crate::norm::{first_non_finite, l2, l2_array};

const OP: &str = "clip";

/// The constant PyTorch's `clip_grad_norm_` adds to the global norm: coef = max_norm/(‖g‖ + 1e-6).
pub const GLOBAL_NORM_EPS: f64 = 1e-6;

/// The floor AGC puts under ‖Gᵢ‖ before dividing (the NFNets reference's `max(grad_norm, 1e-6)`).
pub const AGC_GRAD_NORM_FLOOR: f64 = 1e-6;

fn default_agc_eps() -> f64 {
    1e-3
}

/// How to clip gradients; serialised tagged by `"kind"` (`"none"`, `"global_norm"`, …).
///
/// | mode | "norm" is | rule | same as |
/// |---|---|---|---|
/// | `None` | — | g unchanged | — |
/// | `GlobalNorm` | ‖g‖₂ over **all** parameters together | g ← g·min(1, c/(‖g‖ + 10⁻⁶)) | PyTorch `clip_grad_norm_`, Pascanu et al. 2013 |
/// | `PerParamNorm` | ‖gₚ‖₂ of each parameter tensor alone | gₚ ← gₚ·c/‖gₚ‖ if ‖gₚ‖ > c | Keras `clipnorm`, burn `GradientClipping::Norm` |
/// | `Value` | none: elementwise | gᵢ ← clamp(gᵢ, −c, c) | PyTorch `clip_grad_value_`, Keras `clipvalue` |
/// | `Agc` | unit-wise ratio ‖Gᵢ‖/max(‖Wᵢ‖, ε) | Gᵢ ← Gᵢ·λmax(‖Wᵢ‖, ε)/max(‖Gᵢ‖, 10⁻⁶) if ‖Gᵢ‖ > λmax(‖Wᵢ‖, ε) | NFNets (Brock et al. 2021), timm `adaptive_clip_grad` |
///
/// AGC units: for a parameter with ≥ 2 axes, unit i is the slice at index i of the first
/// axis (one output row of a `[out, in]` matrix); a 0-D or 1-D parameter (bias, gain) is one
/// unit, as the reference `unitwise_norm` treats vectors. The paper does not clip the final
/// classifier layer; exclude it by not visiting it if you follow that.
///
/// # Examples
/// ```
/// use rnnlab_optim::ClipConfig;
/// let c: ClipConfig = serde_json::from_str(r#"{"kind": "agc", "clipping": 0.01}"#).unwrap();
/// assert_eq!(c, ClipConfig::agc(0.01));
/// c.validate()?;
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClipConfig {
    /// No clipping (the report still measures the norm).
    #[default]
    None,
    /// Rescale all gradients together so the global L2 norm is at most `max_norm`.
    GlobalNorm {
        /// c, finite and `> 0`.
        max_norm: f64,
    },
    /// Rescale each parameter's gradient so its own L2 norm is at most `max_norm`.
    PerParamNorm {
        /// c, finite and `> 0`.
        max_norm: f64,
    },
    /// Clamp every gradient entry to `[-clip_value, clip_value]`.
    Value {
        /// c, finite and `> 0`.
        clip_value: f64,
    },
    /// Adaptive gradient clipping: unit-wise gradient norm relative to the weight norm.
    Agc {
        /// λ, finite and `> 0` (the paper uses 0.01–0.16).
        clipping: f64,
        /// ε, finite and `> 0`, floor on the weight norm (default 1e-3).
        #[serde(default = "default_agc_eps")]
        eps: f64,
    },
}
rnnlab_core::serde_map_only!(ClipConfig);

impl ClipConfig {
    /// `GlobalNorm { max_norm }`.
    pub fn global_norm(max_norm: f64) -> Self {
        Self::GlobalNorm { max_norm }
    }

    /// `PerParamNorm { max_norm }`.
    pub fn per_param_norm(max_norm: f64) -> Self {
        Self::PerParamNorm { max_norm }
    }

    /// `Value { clip_value }`.
    pub fn value(clip_value: f64) -> Self {
        Self::Value { clip_value }
    }

    /// `Agc { clipping, eps: 1e-3 }`.
    pub fn agc(clipping: f64) -> Self {
        Self::Agc { clipping, eps: default_agc_eps() }
    }

    /// Checks the thresholds.
    ///
    /// # Errors
    /// [`Error::Config`] unless every threshold (`max_norm`, `clip_value`, `clipping`, `eps`)
    /// is finite and `> 0`.
    pub fn validate(&self) -> Result<()> {
        let op = "ClipConfig";
        match *self {
            Self::None => Ok(()),
            Self::GlobalNorm { max_norm } | Self::PerParamNorm { max_norm } => {
                validate::positive_param(op, "max_norm", max_norm)
            }
            Self::Value { clip_value } => validate::positive_param(op, "clip_value", clip_value),
            Self::Agc { clipping, eps } => {
                validate::positive_param(op, "clipping", clipping)?;
                validate::positive_param(op, "eps", eps)
            }
        }
    }
}

/// What [`clip`] did.
///
/// `scale` is measured (`post_norm / pre_norm`); `coefficient` is the factor applied. They
/// agree up to rounding when one factor scaled everything (`GlobalNorm`), and differ in
/// meaning otherwise: for `PerParamNorm`, `Value` and `Agc` no single factor was applied, so
/// `coefficient` is `None` and the per-parameter [`ParamClip::coefficient`] (norm modes) or
/// counts tell what happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipReport {
    /// Global L2 norm of all gradients before clipping, in f64.
    pub pre_norm: f64,
    /// Global L2 norm after clipping, in f64.
    pub post_norm: f64,
    /// `post_norm / pre_norm` when clipping fired (and `pre_norm > 0`), otherwise 1.
    pub scale: f64,
    /// The one factor every gradient entry was multiplied by, computed in f64 and applied
    /// rounded to the model's float `F` (`g ← g · F::of(coefficient)`):
    /// - `None` mode: `Some(1.0)` (nothing applied);
    /// - `GlobalNorm { max_norm }`: `Some(c)` with c = max_norm/(pre_norm + ε), ε =
    ///   [`GLOBAL_NORM_EPS`] = 10⁻⁶ added to the norm in the denominator (PyTorch's
    ///   `clip_grad_norm_`), when c < 1; `Some(1.0)` when c ≥ 1 (no entry changed, bits
    ///   identical). So a norm of exactly `max_norm` fires with c = max_norm/(max_norm + 10⁻⁶).
    /// - `PerParamNorm`, `Value`, `Agc`: `None` (no single factor; see [`ParamClip`]).
    #[serde(default)]
    pub coefficient: Option<f64>,
    /// Whether any gradient entry was changed.
    pub fired: bool,
    /// Per-parameter details, in visiting order.
    pub params: Vec<ParamClip>,
}

/// One parameter's part of a [`ClipReport`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamClip {
    /// The parameter's name.
    pub name: String,
    /// ‖gₚ‖₂ before.
    pub pre_norm: f64,
    /// ‖gₚ‖₂ after.
    pub post_norm: f64,
    /// How much was clipped: 1/0 for the norm modes, entries clamped for `Value`,
    /// units rescaled for `Agc`.
    pub n_clipped: usize,
    /// The factor this parameter's gradient was multiplied by (in f64; applied rounded to
    /// `F`): the global coefficient for `None`/`GlobalNorm`; for `PerParamNorm { max_norm }`
    /// max_norm/‖gₚ‖ when ‖gₚ‖ > max_norm (no ε), else 1; `None` for `Value` and `Agc`
    /// (elementwise or per unit).
    #[serde(default)]
    pub coefficient: Option<f64>,
}

/// Clips the model's gradients in place according to `config`; see [`ClipConfig`] for each mode.
///
/// Order in a training step: [`crate::check_finite`] → `clip` → [`crate::Optimizer::step`].
/// All norms are computed in f64 with overflow-safe scaling. Gradients are changed only where
/// clipping fires: when it does not, they stay bit-identical.
///
/// # Errors
/// - [`Error::Config`] for an invalid `config`.
/// - [`Error::NonFinite`] naming the parameter and index if any gradient entry is NaN or ±∞
///   (for `Agc`, any weight entry too), or if the global norm overflows f64: a non-finite
///   gradient is never turned into a clipped finite one. Handle it first with
///   [`crate::check_finite`].
/// - [`Error::Shape`] (`Agc` only) if a gradient's shape differs from its value's.
///
/// On `Err` no gradient has been changed.
///
/// # Examples
/// ```
/// use ndarray::Array1;
/// use rnnlab_core::{Param, ParamView, ParamViewMut, Parameterized};
/// use rnnlab_optim::{ClipConfig, clip};
///
/// struct Model { w: Param<f64, ndarray::Ix1> }
/// impl Parameterized<f64> for Model {
///     fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, f64>)) { v("w", self.w.view()) }
///     fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, f64>)) { v("w", self.w.view_mut()) }
/// }
/// let mut m = Model { w: Param::new(Array1::zeros(2)) };
/// m.w.grad.assign(&Array1::from(vec![3.0, 4.0]));
/// let r = clip(&mut m, &ClipConfig::global_norm(1.0))?;
/// assert!(r.fired && (r.pre_norm - 5.0).abs() < 1e-12 && (r.post_norm - 1.0).abs() < 1e-6);
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn clip<F: Float, M: Parameterized<F> + ?Sized>(model: &mut M, config: &ClipConfig) -> Result<ClipReport> {
    config.validate()?;
    let is_agc = matches!(config, ClipConfig::Agc { .. });
    // Pass 1, read-only: refuse what cannot be clipped honestly; measure the global norm.
    let mut err: Option<Error> = None;
    let mut norms = Vec::new();
    model.visit_params(&mut |name, p| {
        if err.is_some() {
            return;
        }
        if let Some((flat, idx, v)) = first_non_finite(&p.grad) {
            err = Some(Error::non_finite(
                OP,
                format!("gradient of `{name}` at index {idx:?} (flat {flat}: {v}); run check_finite before clip"),
            ));
        } else if is_agc && p.grad.shape() != p.value.shape() {
            err = Some(Error::shape(
                OP,
                format!("gradient of `{name}` {:?}", p.value.shape()),
                format!("{:?}", p.grad.shape()),
            ));
        } else if let Some((flat, idx, v)) = first_non_finite(&p.value).filter(|_| is_agc) {
            err = Some(Error::non_finite(OP, format!("value of `{name}` at index {idx:?} (flat {flat}: {v})")));
        } else {
            norms.push(l2_array(&p.grad));
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    let pre_norm = l2(norms.iter().copied());
    if !pre_norm.is_finite() {
        return Err(Error::non_finite(OP, format!("global gradient norm ({pre_norm}): it overflows f64")));
    }
    let global_coef = match *config {
        ClipConfig::GlobalNorm { max_norm } => max_norm / (pre_norm + GLOBAL_NORM_EPS),
        _ => 1.0,
    };
    // What is applied: the coefficient only below 1 (see `scale_if`).
    let coefficient = match config {
        ClipConfig::None | ClipConfig::GlobalNorm { .. } => Some(global_coef.min(1.0)),
        _ => None,
    };
    // Pass 2: clip.
    let mut params = Vec::new();
    model.visit_params_mut(&mut |name, mut p| {
        let pre = l2_array(&p.grad.view());
        let param_coef = match *config {
            ClipConfig::PerParamNorm { max_norm } => Some(if pre > max_norm { max_norm / pre } else { 1.0 }),
            _ => coefficient,
        };
        let n_clipped = match *config {
            ClipConfig::None => 0,
            ClipConfig::GlobalNorm { .. } => scale_if(global_coef < 1.0, &mut p.grad, global_coef),
            ClipConfig::PerParamNorm { max_norm } => scale_if(pre > max_norm, &mut p.grad, max_norm / pre),
            ClipConfig::Value { clip_value } => clamp(&mut p.grad, F::of(clip_value)),
            ClipConfig::Agc { clipping, eps } => agc(p.value.view(), p.grad.view_mut(), clipping, eps),
        };
        let post = if n_clipped > 0 { l2_array(&p.grad.view()) } else { pre };
        params.push(ParamClip {
            name: name.to_string(),
            pre_norm: pre,
            post_norm: post,
            n_clipped,
            coefficient: param_coef,
        });
    });
    let fired = params.iter().any(|p| p.n_clipped > 0);
    let post_norm = if fired { l2(params.iter().map(|p| p.post_norm)) } else { pre_norm };
    let scale = if fired && pre_norm > 0.0 { post_norm / pre_norm } else { 1.0 };
    Ok(ClipReport { pre_norm, post_norm, scale, coefficient, fired, params })
}

/// g ← g·coef if `fire`; returns 1 if it fired.
fn scale_if<F: Float>(fire: bool, grad: &mut ArrayViewMutD<'_, F>, coef: f64) -> usize {
    if !fire {
        return 0;
    }
    let c = F::of(coef);
    grad.mapv_inplace(|g| g * c);
    1
}

/// Clamps every entry to [−c, c]; returns how many changed.
fn clamp<F: Float>(grad: &mut ArrayViewMutD<'_, F>, c: F) -> usize {
    let mut n = 0;
    grad.map_inplace(|g| {
        if *g > c {
            *g = c;
            n += 1;
        } else if *g < -c {
            *g = -c;
            n += 1;
        }
    });
    n
}

/// AGC over the units of one parameter; returns how many units were rescaled.
/// The caller has checked that `value` and `grad` have the same shape.
fn agc<F: Float>(value: ArrayViewD<'_, F>, mut grad: ArrayViewMutD<'_, F>, clipping: f64, eps: f64) -> usize {
    if value.ndim() <= 1 {
        return usize::from(agc_unit(&value, &mut grad, clipping, eps));
    }
    let mut n = 0;
    for (w, mut g) in value.axis_iter(Axis(0)).zip(grad.axis_iter_mut(Axis(0))) {
        n += usize::from(agc_unit(&w, &mut g, clipping, eps));
    }
    n
}

/// One unit: if ‖G‖ > λ·max(‖W‖, ε), G ← G·λ·max(‖W‖, ε)/max(‖G‖, 1e-6).
fn agc_unit<F: Float>(w: &ArrayViewD<'_, F>, g: &mut ArrayViewMutD<'_, F>, clipping: f64, eps: f64) -> bool {
    let max_norm = clipping * l2_array(w).max(eps);
    let g_norm = l2_array(&g.view());
    if g_norm > max_norm {
        let c = F::of(max_norm / g_norm.max(AGC_GRAD_NORM_FLOOR));
        g.mapv_inplace(|x| x * c);
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Tiny, Two, assert_close};
    use ndarray::{Array1, Array2, array};

    /// w = [[1, 2], [3, 4]], b = [0.5, −0.5]; grads gw = [[3, 0], [0, 4]], gb = [0, 12]:
    /// ‖gw‖ = 5, ‖gb‖ = 12, global ‖g‖ = 13.
    fn model() -> Two<f64> {
        let mut m = Two::new();
        m.w.grad = array![[3.0, 0.0], [0.0, 4.0]];
        m.b.grad = array![0.0, 12.0];
        m
    }

    fn grads(m: &Two<f64>) -> Vec<f64> {
        m.w.grad.iter().chain(m.b.grad.iter()).copied().collect()
    }

    #[test]
    fn global_norm_scales_everything_by_one_factor() {
        // coef = 6.5/(13 + 1e-6) = 0.49999996…; every entry ×coef, post norm = 13·coef ≈ 6.5.
        let mut m = model();
        let r = clip(&mut m, &ClipConfig::global_norm(6.5)).unwrap();
        let c = 6.5 / (13.0 + 1e-6);
        assert_close(&grads(&m), &[3.0 * c, 0.0, 0.0, 4.0 * c, 0.0, 12.0 * c], 1e-14);
        assert!(r.fired);
        assert_close(&[r.pre_norm, r.post_norm, r.scale], &[13.0, 13.0 * c, c], 1e-14);
        assert_eq!(r.params.iter().map(|p| p.n_clipped).collect::<Vec<_>>(), [1, 1]);
    }

    /// The reported coefficient, applied to the pre-clip gradients as `clip` applies it
    /// (rounded to F), gives the post-clip gradients exactly.
    fn coefficient_times_pre_is_post<F: Float>(max_norm: f64, grads: [f64; 2]) {
        let mut m = Tiny::<F>::new([0.5, -0.5], grads);
        let pre: Vec<F> = m.p.grad.to_vec();
        let r = clip(&mut m, &ClipConfig::global_norm(max_norm)).unwrap();
        let c = r.coefficient.unwrap();
        let want: Vec<F> = pre.iter().map(|&g| g * F::of(c)).collect();
        assert_eq!(m.p.grad.to_vec(), want, "{} max_norm {max_norm}", F::NAME);
        assert_eq!(r.params[0].coefficient, Some(c));
        assert!(c <= 1.0 && (c < 1.0) == r.fired);
        if r.fired {
            // c = max_norm/(‖g‖ + 1e-6) and scale = post/pre agree up to rounding
            assert!((c - max_norm / (r.pre_norm + GLOBAL_NORM_EPS)).abs() <= 1e-15 * c);
            assert!((c - r.scale).abs() < if F::NAME == "f32" { 1e-6 } else { 1e-12 }, "{c} vs {}", r.scale);
        }
    }

    #[test]
    fn global_norm_coefficient_is_what_was_applied() {
        for max_norm in [0.1, 1.0, 4.9999, 5.0, 5.1, 1e3] {
            coefficient_times_pre_is_post::<f64>(max_norm, [3.0, 4.0]);
            coefficient_times_pre_is_post::<f32>(max_norm, [3.0, 4.0]);
        }
        coefficient_times_pre_is_post::<f64>(1.0, [0.0, 0.0]);
        // exactly at the threshold the 1e-6 makes it fire: c = 5/(5 + 1e-6)
        let mut m = Tiny::<f64>::new([0.0, 0.0], [3.0, 4.0]);
        let r = clip(&mut m, &ClipConfig::global_norm(5.0)).unwrap();
        assert_eq!(r.coefficient, Some(5.0 / (5.0 + 1e-6)));
        // the other modes report per parameter, or not at all
        let mut m = model();
        let r = clip(&mut m, &ClipConfig::per_param_norm(6.0)).unwrap();
        assert_eq!(r.coefficient, None);
        assert_eq!((r.params[0].coefficient, r.params[1].coefficient), (Some(1.0), Some(0.5)));
        let r = clip(&mut model(), &ClipConfig::value(1.0)).unwrap();
        assert_eq!((r.coefficient, r.params[0].coefficient), (None, None));
        let r = clip(&mut model(), &ClipConfig::None).unwrap();
        assert_eq!(r.coefficient, Some(1.0));
        // a report serialised before the field existed still reads
        let old = r#"{"pre_norm":1.0,"post_norm":1.0,"scale":1.0,"fired":false,"params":[{"name":"w","pre_norm":1.0,"post_norm":1.0,"n_clipped":0}]}"#;
        let back: ClipReport = serde_json::from_str(old).unwrap();
        assert_eq!((back.coefficient, back.params[0].coefficient), (None, None));
    }

    #[test]
    fn per_param_norm_clips_each_tensor_alone() {
        // c = 6: ‖gw‖ = 5 ≤ 6 stays; ‖gb‖ = 12 > 6 → gb·6/12 = [0, 6].
        // post = √(25 + 36) = √61; scale = √61/13.
        let mut m = model();
        let r = clip(&mut m, &ClipConfig::per_param_norm(6.0)).unwrap();
        assert_close(&grads(&m), &[3.0, 0.0, 0.0, 4.0, 0.0, 6.0], 1e-14);
        assert_close(&[r.pre_norm, r.post_norm, r.scale], &[13.0, 61f64.sqrt(), 61f64.sqrt() / 13.0], 1e-14);
        assert_eq!((r.params[0].n_clipped, r.params[1].n_clipped), (0, 1));
        assert_close(&[r.params[1].pre_norm, r.params[1].post_norm], &[12.0, 6.0], 1e-14);
    }

    #[test]
    fn global_and_per_param_differ_on_the_same_gradients() {
        // Same threshold 6.5: global halves gw too ([1.5, 0, 0, 2]); per-param leaves gw (norm 5) alone.
        let (mut a, mut b) = (model(), model());
        clip(&mut a, &ClipConfig::global_norm(6.5)).unwrap();
        clip(&mut b, &ClipConfig::per_param_norm(6.5)).unwrap();
        assert_close(&a.w.grad.iter().copied().collect::<Vec<_>>(), &[1.5, 0.0, 0.0, 2.0], 1e-6);
        assert_close(&b.w.grad.iter().copied().collect::<Vec<_>>(), &[3.0, 0.0, 0.0, 4.0], 0.0);
        assert_close(&[a.b.grad[1], b.b.grad[1]], &[6.0, 6.5], 1e-6);
    }

    #[test]
    fn value_clamps_entries() {
        // c = 3.5: 4 → 3.5, −7 → −3.5, 12 → 3.5, 3 stays; 3 entries clamped in total.
        // post = √(9 + 3·12.25) = √45.75
        let mut m = model();
        m.b.grad[0] = -7.0; // ‖gb‖ = √193, pre = √218
        let r = clip(&mut m, &ClipConfig::value(3.5)).unwrap();
        assert_close(&grads(&m), &[3.0, 0.0, 0.0, 3.5, -3.5, 3.5], 0.0);
        assert_close(&[r.pre_norm, r.post_norm], &[218f64.sqrt(), 45.75f64.sqrt()], 1e-14);
        assert_eq!((r.params[0].n_clipped, r.params[1].n_clipped), (1, 2));
    }

    #[test]
    fn agc_clips_matrix_rows_and_vectors_as_one_unit() {
        // λ = 1, ε = 1e-3. w rows: ‖[1,2]‖ = √5 = 2.2360680, ‖[3,4]‖ = 5.
        // gw rows: ‖[3,0]‖ = 3 > 1·√5 → [3,0]·√5/3 = [√5, 0]; ‖[0,4]‖ = 4 ≤ 5 stays.
        // b = [0.5, −0.5] is one unit: ‖b‖ = √0.5 = 0.70710678; ‖gb‖ = 12 > 0.7071 →
        //   gb·√0.5/12 = [0, √0.5].
        let mut m = model();
        let r = clip(&mut m, &ClipConfig::Agc { clipping: 1.0, eps: 1e-3 }).unwrap();
        assert_close(&grads(&m), &[5f64.sqrt(), 0.0, 0.0, 4.0, 0.0, 0.5f64.sqrt()], 1e-14);
        assert_eq!((r.params[0].n_clipped, r.params[1].n_clipped), (1, 1));
        assert_close(&[r.post_norm], &[(5.0f64 + 16.0 + 0.5).sqrt()], 1e-14);
    }

    #[test]
    fn agc_eps_floors_zero_weights() {
        // w = 0: max(‖W‖, ε) = ε = 0.01; λ = 0.5 → max norm 0.005; g = [0.03, 0.04] (norm 0.05)
        // → g·0.005/0.05 = [0.003, 0.004].
        let mut m = Tiny::<f64>::new([0.0, 0.0], [0.03, 0.04]);
        let r = clip(&mut m, &ClipConfig::Agc { clipping: 0.5, eps: 0.01 }).unwrap();
        assert_close(&m.p.grad.to_vec(), &[0.003, 0.004], 1e-14);
        assert!(r.fired);
    }

    #[test]
    fn no_fire_leaves_gradients_bit_identical() {
        let configs = [
            ClipConfig::None,
            ClipConfig::global_norm(13.1),
            ClipConfig::per_param_norm(12.0),
            ClipConfig::value(12.0),
            ClipConfig::agc(100.0),
        ];
        for cfg in configs {
            let mut m = model();
            m.w.grad[[0, 1]] = 0.1 + 0.2; // a value with a long binary expansion
            let before: Vec<u64> = grads(&m).iter().map(|g| g.to_bits()).collect();
            let r = clip(&mut m, &cfg).unwrap();
            let after: Vec<u64> = grads(&m).iter().map(|g| g.to_bits()).collect();
            assert_eq!(before, after, "{cfg:?}");
            assert!(!r.fired, "{cfg:?}");
            assert_eq!(r.scale, 1.0);
            assert_eq!(r.pre_norm.to_bits(), r.post_norm.to_bits());
        }
    }

    #[test]
    fn global_norm_just_below_threshold_fires_because_of_the_1e6() {
        // ‖g‖ = 13 exactly, max_norm = 13: coef = 13/(13 + 1e-6) < 1 → fires, as in PyTorch.
        let mut m = model();
        let r = clip(&mut m, &ClipConfig::global_norm(13.0)).unwrap();
        assert!(r.fired);
        assert_close(&[r.scale], &[13.0 / (13.0 + 1e-6)], 1e-15);
    }

    #[test]
    fn non_finite_gradients_are_refused_untouched() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            for cfg in [ClipConfig::None, ClipConfig::global_norm(1.0), ClipConfig::value(1.0), ClipConfig::agc(0.1)] {
                let mut m = model();
                m.b.grad[1] = bad;
                let e = clip(&mut m, &cfg).unwrap_err();
                assert!(matches!(e, Error::NonFinite { .. }), "{e}");
                let msg = e.to_string();
                assert!(msg.contains("`b`") && msg.contains("[1]"), "{msg}");
                assert_eq!(m.w.grad, array![[3.0, 0.0], [0.0, 4.0]], "nothing clipped");
            }
        }
    }

    #[test]
    fn agc_refuses_non_finite_weights_and_mismatched_grads() {
        let mut m = model();
        m.w.value[[1, 0]] = f64::NAN;
        assert!(matches!(clip(&mut m, &ClipConfig::agc(0.1)), Err(Error::NonFinite { .. })));
        assert!(clip(&mut m, &ClipConfig::global_norm(1.0)).is_ok(), "weights only matter to AGC");
        let mut m = model();
        m.b.grad = Array1::zeros(3);
        assert!(matches!(clip(&mut m, &ClipConfig::agc(0.1)), Err(Error::Shape { .. })));
    }

    #[test]
    fn huge_finite_gradients_do_not_overflow_the_norm() {
        // f64 entries 3e200, 4e200: Σg² overflows, the scaled norm is 5e200.
        let mut m = Two::<f64>::new();
        m.w.grad = Array2::zeros((2, 2));
        m.b.grad = array![3e200, 4e200];
        let r = clip(&mut m, &ClipConfig::global_norm(1.0)).unwrap();
        assert_close(&[r.pre_norm, r.post_norm], &[5e200, 1.0], 1e-9);
        assert_close(&m.b.grad.to_vec(), &[0.6, 0.8], 1e-9);
    }

    #[test]
    fn f32_gradients_norm_in_f64() {
        let mut m = Tiny::<f32>::new([0.0, 0.0], [3.0, 4.0]);
        let r = clip(&mut m, &ClipConfig::global_norm(2.5)).unwrap();
        assert_close(&[r.pre_norm], &[5.0], 0.0);
        assert_close(&m.p.grad.iter().map(|&g| f64::from(g)).collect::<Vec<_>>(), &[1.5, 2.0], 1e-6);
    }

    #[test]
    fn rejects_each_bad_threshold() {
        let bad = [
            ClipConfig::global_norm(0.0),
            ClipConfig::global_norm(f64::NAN),
            ClipConfig::per_param_norm(-1.0),
            ClipConfig::per_param_norm(f64::INFINITY),
            ClipConfig::value(0.0),
            ClipConfig::value(f64::NAN),
            ClipConfig::agc(0.0),
            ClipConfig::Agc { clipping: 0.01, eps: 0.0 },
            ClipConfig::Agc { clipping: 0.01, eps: f64::NAN },
        ];
        for cfg in bad {
            let mut m = model();
            assert!(matches!(clip(&mut m, &cfg), Err(Error::Config { .. })), "{cfg:?}");
            assert_eq!(grads(&m), grads(&model()));
        }
    }

    #[test]
    fn serde_forms() {
        let cases = [
            (r#"{"kind":"none"}"#, ClipConfig::None),
            (r#"{"kind":"global_norm","max_norm":1.0}"#, ClipConfig::global_norm(1.0)),
            (r#"{"kind":"per_param_norm","max_norm":2.0}"#, ClipConfig::per_param_norm(2.0)),
            (r#"{"kind":"value","clip_value":0.5}"#, ClipConfig::value(0.5)),
            (r#"{"kind":"agc","clipping":0.01,"eps":0.001}"#, ClipConfig::agc(0.01)),
        ];
        for (json, want) in cases {
            assert_eq!(serde_json::from_str::<ClipConfig>(json).unwrap(), want);
            assert_eq!(serde_json::to_string(&want).unwrap(), json);
        }
        assert!(serde_json::from_str::<ClipConfig>(r#"{"kind":"global_norm","max_norm":1.0,"x":1}"#).is_err());
    }
}
