//! [`check_recurrent`]: the gradient check of a whole stack of any cell — every parameter, the
//! input and the initial states against central differences — so a cell of your own is checked
//! the way the built-in ones are.

use ndarray::{Array2, Array3, ArrayD};
use rand::Rng as _;
use rnnlab_core::{Cell, Error, GradCheck, GradCheckReport, NamedInput, Result, State, check_fn, seeded_rng};

use crate::{BackwardOptions, OutputGrad, Recurrent};

/// Checks `stack`'s backward pass in f64 against central differences ([`GradCheck`]'s
/// defaults: ε = 1e-5, relative error with a 1e-3 floor) on `time` steps of a batch of
/// `batch` random sequences, for the loss L = Σ_t Σ R_t ⊙ h_t + Σ_l Σ Q_l ⊙ s_l,final with
/// fixed random R and Q drawn from `seed` (every output and every final state part is read,
/// with distinct weights). Checks every parameter, the input x and each layer's initial state;
/// inputs and initial states are uniform in (−1, 1).
///
/// # Errors
/// [`Error::Config`] for `time` or `batch` of 0, and whatever the stack's forward or backward
/// returns.
///
/// # Examples
/// ```
/// use rnnlab_cells::{LstmConfig, Recurrent, check_recurrent};
/// let cell = LstmConfig::new(3, 4).init::<f64>(&mut rnnlab_core::seeded_rng(0))?;
/// let mut stack = Recurrent::new(vec![cell])?;
/// let report = check_recurrent(&mut stack, 5, 2, 7)?;
/// assert!(report.max_rel_error() < 1e-6, "{report}");
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn check_recurrent<C: Cell<f64>>(
    stack: &mut Recurrent<f64, C>,
    time: usize,
    batch: usize,
    seed: u64,
) -> Result<GradCheckReport> {
    const OP: &str = "check_recurrent";
    rnnlab_core::validate::positive_size(OP, "time", time)?;
    rnnlab_core::validate::positive_size(OP, "batch", batch)?;
    let mut rng = seeded_rng(seed);
    let mut uniform = |shape: &[usize]| ArrayD::from_shape_fn(shape, |_| rng.random_range(-1.0..1.0));
    let h = stack.hidden_dim();
    let r: Array3<f64> = into3(uniform(&[time, batch, h]))?;
    let parts: Vec<(&'static [&'static str], usize)> =
        stack.layers().iter().map(|c| (c.state_names(), c.hidden_dim())).collect();
    let q: Vec<Array2<f64>> =
        parts.iter().map(|(names, hd)| into2(uniform(&[batch, names.len() * hd]))).collect::<Result<_>>()?;
    let mut inputs: Vec<NamedInput> = vec![("x".into(), uniform(&[time, batch, stack.input_dim()]))];
    for (l, (names, hd)) in parts.iter().enumerate() {
        inputs.push((format!("s0.{l}"), uniform(&[batch, names.len() * hd])));
    }
    check_fn(&GradCheck::new(), stack, &mut inputs, |stack, inputs| {
        let x = into3(inputs[0].1.clone())?;
        let init: Vec<State<f64>> = inputs[1..]
            .iter()
            .zip(&parts)
            .map(|((_, a), (names, hd))| State::new(names, *hd, into2(a.clone())?))
            .collect::<Result<_>>()?;
        let fwd = stack.forward(x.view(), Some(&init))?;
        let mut value = (&fwd.outputs * &r).sum();
        value += fwd.final_states.iter().zip(&q).map(|(s, q)| (&s.data() * q).sum()).sum::<f64>();
        let d_final: Vec<State<f64>> =
            q.iter().zip(&parts).map(|(q, (names, hd))| State::new(names, *hd, q.clone())).collect::<Result<_>>()?;
        let bwd = stack.backward(
            &fwd.cache,
            OutputGrad::Every(r.view()),
            BackwardOptions::default().with_d_final(&d_final),
        )?;
        let dx = bwd.dx.ok_or_else(|| Error::shape(OP, "an input gradient", "none"))?;
        let mut grads = vec![dx.into_dyn()];
        grads.extend(bwd.d_init.into_iter().map(|s| s.into_data().into_dyn()));
        stack.recycle(fwd.cache);
        Ok((value, grads))
    })
}

fn into3(a: ArrayD<f64>) -> Result<Array3<f64>> {
    a.into_dimensionality().map_err(|e| Error::shape(OP_SHAPE, "a 3-D array", e.to_string()))
}

fn into2(a: ArrayD<f64>) -> Result<Array2<f64>> {
    a.into_dimensionality().map_err(|e| Error::shape(OP_SHAPE, "a 2-D array", e.to_string()))
}

const OP_SHAPE: &str = "check_recurrent";
