//! The gradient checker: central finite differences in f64 over every parameter and input.

use std::fmt;

use ndarray::{Array2, ArrayD, ArrayView2, IxDyn};
use rand::Rng as _;

use crate::{Error, Layer, Parameterized, Result, seeded_rng};

/// Settings of a gradient check.
///
/// Each entry θ_i is perturbed by ±`eps`, numeric = (L(θ+eps) − L(θ−eps)) / 2eps, and the
/// relative error is |analytic − numeric| / max(|analytic|, |numeric|, `floor`). The floor keeps
/// entries whose true gradient is ~0 from dividing rounding noise (~1e-11 here) by ~0; an
/// entry below it is effectively checked to an absolute error of `floor · tolerance`.
#[derive(Clone, Debug, PartialEq)]
pub struct GradCheck {
    /// The finite-difference step (default 1e-5).
    pub eps: f64,
    /// The denominator floor of the relative error (default 1e-3).
    pub floor: f64,
    /// The seed of the random output weights of [`check_layer`]'s loss (default 0).
    pub seed: u64,
}

impl Default for GradCheck {
    fn default() -> Self {
        Self { eps: 1e-5, floor: 1e-3, seed: 0 }
    }
}

impl GradCheck {
    /// The default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the finite-difference step.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Sets the relative-error floor.
    pub fn with_floor(mut self, floor: f64) -> Self {
        self.floor = floor;
        self
    }

    /// Sets the seed of the random loss weights.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    fn validate(&self) -> Result<()> {
        crate::validate::positive_param("GradCheck", "eps", self.eps)?;
        crate::validate::positive_param("GradCheck", "floor", self.floor)
    }

    fn rel_error(&self, analytic: f64, numeric: f64) -> f64 {
        (analytic - numeric).abs() / analytic.abs().max(numeric.abs()).max(self.floor)
    }
}

/// One compared entry: where it is and the two derivatives.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// The parameter name, or `input:NAME` for an input.
    pub target: String,
    /// The multi-index of the entry.
    pub index: Vec<usize>,
    /// The derivative from the backward pass.
    pub analytic: f64,
    /// The central finite difference.
    pub numeric: f64,
    /// |analytic − numeric| / max(|analytic|, |numeric|, floor).
    pub rel_error: f64,
}

/// The outcome of a gradient check: how many entries were compared and the worst one.
#[derive(Clone, Debug, PartialEq)]
pub struct GradCheckReport {
    /// Entries compared (all parameters and all inputs).
    pub n_checked: usize,
    /// The entry with the largest relative error (`None` if nothing was compared).
    pub worst: Option<Mismatch>,
}

impl GradCheckReport {
    /// The largest relative error (0 if nothing was compared).
    pub fn max_rel_error(&self) -> f64 {
        self.worst.as_ref().map_or(0.0, |w| w.rel_error)
    }
}

impl fmt::Display for GradCheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.worst {
            None => write!(f, "nothing checked"),
            Some(w) => write!(
                f,
                "{} entries checked; worst relative error {:.3e} at {}{:?}: analytic {:.12e}, numeric {:.12e}",
                self.n_checked, w.rel_error, w.target, w.index, w.analytic, w.numeric
            ),
        }
    }
}

/// A named input of a checked function.
pub type NamedInput = (String, ArrayD<f64>);

/// Checks a whole differentiable computation over a model's parameters and named inputs.
///
/// `f(model, inputs)` must compute the loss L and add ∂L/∂θ into the model's gradients, and
/// return `(L, [∂L/∂input for each input, same shapes])`. The checker zeroes the gradients,
/// calls `f` once for the analytic derivatives, then twice per entry for the numeric ones,
/// restoring every perturbed value exactly.
///
/// # Errors
/// [`Error::Config`] for bad settings, [`Error::Shape`] if `f` returns input gradients of the
/// wrong number or shape, and whatever `f` returns.
pub fn check_fn<M, Fun>(
    cfg: &GradCheck,
    model: &mut M,
    inputs: &mut [NamedInput],
    mut f: Fun,
) -> Result<GradCheckReport>
where
    M: Parameterized<f64> + ?Sized,
    Fun: FnMut(&mut M, &[NamedInput]) -> Result<(f64, Vec<ArrayD<f64>>)>,
{
    cfg.validate()?;
    model.zero_grad();
    let (_, input_grads) = f(model, inputs)?;
    if input_grads.len() != inputs.len() {
        return Err(Error::shape(
            "check_fn",
            format!("{} input gradients", inputs.len()),
            format!("{}", input_grads.len()),
        ));
    }
    for ((name, x), g) in inputs.iter().zip(&input_grads) {
        crate::validate::shape("check_fn", &format!("gradient of input {name}"), x.shape(), g.shape())?;
    }
    let mut analytic: Vec<(String, ArrayD<f64>)> = Vec::new();
    model.visit_params(&mut |name, p| analytic.push((name.to_string(), p.grad.to_owned())));

    let mut report = GradCheckReport { n_checked: 0, worst: None };
    let record = |report: &mut GradCheckReport, target: &str, shape: &[usize], i: usize, a: f64, n: f64| {
        let rel = cfg.rel_error(a, n);
        report.n_checked += 1;
        // NaN compares false: treat a NaN relative error as the worst possible.
        if report.worst.as_ref().is_none_or(|w| rel > w.rel_error || rel.is_nan()) {
            report.worst = Some(Mismatch {
                target: target.to_string(),
                index: unravel(i, shape),
                analytic: a,
                numeric: n,
                rel_error: if rel.is_nan() { f64::INFINITY } else { rel },
            });
        }
    };

    for (name, grad) in &analytic {
        for (i, &a) in grad.iter().enumerate() {
            let mut eval = |delta: f64, model: &mut M| -> Result<f64> {
                let mut original = 0.0;
                set_param(model, name, i, |v| {
                    original = *v;
                    *v += delta;
                });
                let loss = f(model, inputs).map(|(l, _)| l);
                set_param(model, name, i, |v| *v = original);
                loss
            };
            let plus = eval(cfg.eps, model)?;
            let minus = eval(-cfg.eps, model)?;
            record(&mut report, name, grad.shape(), i, a, (plus - minus) / (2.0 * cfg.eps));
        }
    }
    for k in 0..inputs.len() {
        let target = format!("input:{}", inputs[k].0);
        let shape = inputs[k].1.shape().to_vec();
        for (i, &a) in input_grads[k].iter().enumerate() {
            let original = *flat_mut(&mut inputs[k].1, i);
            *flat_mut(&mut inputs[k].1, i) = original + cfg.eps;
            let plus = f(model, inputs).map(|(l, _)| l);
            *flat_mut(&mut inputs[k].1, i) = original - cfg.eps;
            let minus = f(model, inputs).map(|(l, _)| l);
            *flat_mut(&mut inputs[k].1, i) = original;
            record(&mut report, &target, &shape, i, a, (plus? - minus?) / (2.0 * cfg.eps));
        }
    }
    // Leave the analytic gradients in the model, as after one ordinary backward pass.
    model.zero_grad();
    let _ = f(model, inputs)?;
    Ok(report)
}

/// Checks a [`Layer`] on `input` `[rows, features]` with the loss L = Σ output ⊙ R, where R is
/// a fixed random matrix drawn from `cfg.seed` (a random linear functional exercises every
/// output entry with a distinct weight).
///
/// # Examples
/// ```
/// # use rnnlab_core::*;
/// # use ndarray::{Array2, ArrayView2};
/// // y = 3x, a layer without parameters.
/// struct Triple;
/// impl Parameterized<f64> for Triple {
///     fn visit_params(&self, _: &mut dyn FnMut(&str, ParamView<'_, f64>)) {}
///     fn visit_params_mut(&mut self, _: &mut dyn FnMut(&str, ParamViewMut<'_, f64>)) {}
/// }
/// impl Layer<f64> for Triple {
///     type Cache = ();
///     fn forward(&mut self, x: ArrayView2<'_, f64>) -> Result<(Array2<f64>, ())> { Ok((&x * 3.0, ())) }
///     fn backward(&mut self, _: &(), g: ArrayView2<'_, f64>) -> Result<Array2<f64>> { Ok(&g * 3.0) }
/// }
/// let report = check_layer(&GradCheck::new(), &mut Triple, Array2::ones((2, 3)).view())?;
/// assert!(report.max_rel_error() < 1e-8, "{report}");
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
///
/// # Errors
/// As [`check_fn`], plus the layer's own errors.
pub fn check_layer<L: Layer<f64>>(
    cfg: &GradCheck,
    layer: &mut L,
    input: ArrayView2<'_, f64>,
) -> Result<GradCheckReport> {
    let mut weights: Option<Array2<f64>> = None;
    let mut rng = seeded_rng(cfg.seed);
    let mut inputs = vec![("x".to_string(), input.to_owned().into_dyn())];
    check_fn(cfg, layer, &mut inputs, |layer, inputs| {
        let x: ArrayView2<'_, f64> = inputs[0]
            .1
            .view()
            .into_dimensionality()
            .map_err(|e| Error::shape("check_layer", "a 2-D input", e.to_string()))?;
        let (y, cache) = layer.forward(x)?;
        let r = weights.get_or_insert_with(|| y.map(|_| rng.random_range(-1.0..1.0)));
        crate::validate::shape("check_layer", "layer output", r.shape(), y.shape())?;
        let loss = (&y * &*r).sum();
        let dx = layer.backward(&cache, r.view())?;
        Ok((loss, vec![dx.into_dyn()]))
    })
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (k, &n) in shape.iter().enumerate().rev() {
        if n > 0 {
            index[k] = i % n;
            i /= n;
        }
    }
    index
}

fn flat_mut(a: &mut ArrayD<f64>, i: usize) -> &mut f64 {
    let index = unravel(i, a.shape());
    &mut a[IxDyn(&index)]
}

fn set_param<M: Parameterized<f64> + ?Sized>(model: &mut M, name: &str, i: usize, mut op: impl FnMut(&mut f64)) {
    model.visit_params_mut(&mut |n, mut p| {
        if n == name {
            let index = unravel(i, p.value.shape());
            op(&mut p.value[IxDyn(&index)]);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Param, ParamView, ParamViewMut};
    use ndarray::{Array1, Axis, Ix1, Ix2};

    /// y = tanh(x Wᵀ + b), with an optional deliberate bug in backward.
    struct Dense {
        w: Param<f64, Ix2>,
        b: Param<f64, Ix1>,
        bug: Option<&'static str>,
    }

    impl Parameterized<f64> for Dense {
        fn visit_params(&self, v: &mut dyn FnMut(&str, ParamView<'_, f64>)) {
            v("w", self.w.view());
            v("b", self.b.view());
        }
        fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, ParamViewMut<'_, f64>)) {
            v("w", self.w.view_mut());
            v("b", self.b.view_mut());
        }
    }

    impl Layer<f64> for Dense {
        type Cache = (Array2<f64>, Array2<f64>);
        fn forward(&mut self, x: ArrayView2<'_, f64>) -> Result<(Array2<f64>, Self::Cache)> {
            let y = (x.dot(&self.w.value.t()) + &self.b.value).mapv(f64::tanh);
            Ok((y.clone(), (x.to_owned(), y)))
        }
        fn backward(&mut self, cache: &Self::Cache, g: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
            let (x, y) = cache;
            let mut da = &g * &y.mapv(|v| 1.0 - v * v);
            if self.bug == Some("derivative") {
                da = g.to_owned(); // forgets tanh'
            }
            self.w.grad += &da.t().dot(x);
            if self.bug != Some("bias") {
                self.b.grad += &da.sum_axis(Axis(0));
            }
            Ok(da.dot(&self.w.value))
        }
    }

    fn dense(bug: Option<&'static str>) -> Dense {
        let w = Array2::from_shape_fn((3, 4), |(i, j)| 0.3 * (i as f64) - 0.2 * (j as f64) + 0.1);
        Dense { w: Param::new(w), b: Param::new(Array1::from(vec![0.1, -0.2, 0.05])), bug }
    }

    fn input() -> Array2<f64> {
        Array2::from_shape_fn((2, 4), |(i, j)| ((i * 4 + j) as f64 * 0.37).sin())
    }

    #[test]
    fn correct_layer_passes() {
        let r = check_layer(&GradCheck::new(), &mut dense(None), input().view()).unwrap();
        assert_eq!(r.n_checked, 12 + 3 + 8);
        assert!(r.max_rel_error() < 1e-7, "{r}");
    }

    #[test]
    fn wrong_derivative_is_caught_and_located() {
        let r = check_layer(&GradCheck::new(), &mut dense(Some("derivative")), input().view()).unwrap();
        assert!(r.max_rel_error() > 1e-2, "{r}");
    }

    #[test]
    fn missing_bias_gradient_is_caught_and_named() {
        let r = check_layer(&GradCheck::new(), &mut dense(Some("bias")), input().view()).unwrap();
        let worst = r.worst.unwrap();
        assert_eq!(worst.target, "b");
        assert_eq!(worst.analytic, 0.0);
        assert!(worst.rel_error > 0.9);
    }

    #[test]
    fn perturbations_are_restored_and_grads_left_analytic() {
        let mut layer = dense(None);
        let before = layer.w.value.clone();
        check_layer(&GradCheck::new(), &mut layer, input().view()).unwrap();
        assert_eq!(layer.w.value, before);
        assert!(layer.w.grad.iter().any(|&g| g != 0.0));
    }

    #[test]
    fn bad_settings_and_bad_gradient_shapes_are_errors() {
        let mut layer = dense(None);
        assert!(check_layer(&GradCheck::new().with_eps(0.0), &mut layer, input().view()).is_err());
        assert!(check_layer(&GradCheck::new().with_floor(f64::NAN), &mut layer, input().view()).is_err());
        let mut inputs = vec![("x".to_string(), input().into_dyn())];
        let e = check_fn(&GradCheck::new(), &mut layer, &mut inputs, |_, _| Ok((0.0, vec![]))).unwrap_err();
        assert!(e.to_string().contains("input gradients"), "{e}");
        let e = check_fn(&GradCheck::new(), &mut layer, &mut inputs, |_, _| {
            Ok((0.0, vec![Array2::<f64>::zeros((1, 1)).into_dyn()]))
        })
        .unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
    }

    #[test]
    fn unravel_is_row_major() {
        assert_eq!(unravel(5, &[2, 3]), vec![1, 2]);
        assert_eq!(unravel(0, &[]), Vec::<usize>::new());
    }
}
