//! The [`Report`] of a bidirectional model: each direction of each layer diagnosed as the
//! one-layer unidirectional stack that runs it, in that direction's own time order.

use ndarray::ArrayView3;
use rnnlab_cells::{Backward, BackwardOptions, BiCache, Bidirectional, Direction, OutputGrad, StepGrads};
use rnnlab_core::{Cell, Error, Float, Result};

use crate::report::{layer_reports, loss_kind, restore_grads, take_grads};
use crate::{DiagnoseConfig, LossKind, Report, SCHEMA_VERSION, Verdict, model_verdict, param_stats};

/// Runs the bidirectional `model` forward on `x` `[time, batch, input_dim]` (from zero states)
/// and backward from `loss` (on the outputs `[…, 2·hidden_dim]`), then builds the whole
/// [`Report`] from that pass, as [`crate::diagnose`] does for one direction: parameter gradients
/// are restored afterwards.
///
/// # Errors
/// As [`Bidirectional::forward`] / [`Bidirectional::backward`] and
/// [`report_from_bidirectional_pass`].
///
/// # Examples
/// ```
/// use ndarray::Array3;
/// use rnnlab_cells::{Bidirectional, Direction, LstmConfig, OutputGrad};
/// use rnnlab_diagnostics::{DiagnoseConfig, diagnose_bidirectional};
/// let mut rng = rnnlab_core::seeded_rng(0);
/// let mut cell = || LstmConfig::new(2, 8).init::<f64>(&mut rng);
/// let mut bi = Bidirectional::new(vec![(cell()?, cell()?)])?;
/// let x = Array3::from_elem((30, 4, 2), 0.5);
/// let g = Array3::ones((30, 4, 16)); // a loss on every step, both directions
/// let report = diagnose_bidirectional(&mut bi, x.view(), OutputGrad::Every(g.view()), &DiagnoseConfig::new())?;
/// println!("{report}");
/// let rev = &report.layers[1];
/// assert_eq!(rev.direction, Some(Direction::Reverse));
/// // Its curve starts at t = 0, the last step it reads, and runs forward in time.
/// assert_eq!(rev.time_of_lag(0, 30), Some(0));
/// assert_eq!(rev.time_of_lag(5, 30), Some(5));
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn diagnose_bidirectional<F: Float, C: Cell<F>>(
    model: &mut Bidirectional<F, C>,
    x: ArrayView3<'_, F>,
    loss: OutputGrad<'_, F>,
    config: &DiagnoseConfig,
) -> Result<Report> {
    config.validate()?;
    let saved = take_grads(model);
    let fwd = model.forward(x, None)?;
    let kind = loss_kind(&loss);
    let bwd = model.backward(&fwd.cache, loss, BackwardOptions::default().without_input_grad());
    let report = bwd.and_then(|bwd| {
        let r = report_from_bidirectional_pass(model, &fwd.cache, &bwd.step_grads, kind, config);
        model.recycle_grads(bwd);
        r
    });
    restore_grads(model, &saved);
    model.recycle(fwd.cache);
    report
}

/// The [`Report`] of a finished pass of a bidirectional stack: `cache` from `model`'s latest
/// forward, `step_grads` its backward's per-direction step gradients (`BiBackward::step_grads`,
/// in [`Direction::index`] order and original time order). `params` reports the gradients the
/// model holds now.
///
/// `layers` holds layer 0 forward, layer 0 reverse, layer 1 forward, … Each entry is the
/// report of the one-layer unidirectional stack that runs that direction
/// ([`Bidirectional::direction`]) on what it read — for the reverse direction, the
/// time-reversed input — with the gradient that reached it from the loss and the layers above:
///
/// - **Forward direction**: as a unidirectional layer. Lag k is step t = t_r − k, with t_r the
///   reference step (default T − 1, where a last-step loss enters).
/// - **Reverse direction**: its state at time t has read x_{T−1}..x_t, and its gradient flows
///   from ∂L/∂s_t to ∂L/∂s_{t+1}: forward in time. Its curves are indexed in its processing
///   order τ = T − 1 − t, so lag k is step t = t_r + k, with t_r the last step it processes
///   where the loss enters: t_r = 0 for a loss on every step or on the final states (PyTorch's
///   `h_n` holds the reverse state at t = 0). A configured `reference_step` counts in that
///   processing order too. A loss on the last step only (`LossKind::Last`, the read-out of
///   `[h_fwd, h_rev]` at t = T − 1) reaches the reverse direction at t = T − 1 alone — the first
///   step it processes — so nothing flows through its recurrence: its curve is lag 0 alone
///   (t_r = T − 1) and its verdict is undefined, saying so. The Jacobian analysis of a reverse
///   direction (a property of its dynamics, not of the loss) always ends at the configured
///   reference step, by default its last processed step, t = 0.
///
/// Every step index in a reverse entry (`reference_step`s, the one-step Jacobian's step, the
/// saturation list) is in its processing order; `LayerReport::time_of_step` and
/// `LayerReport::time_of_lag` convert to t.
///
/// # Errors
/// [`Error::Config`] for an invalid config; [`Error::Shape`] for a cache or step gradients of
/// another model (number of layers or directions); as [`crate::gradient_flow`],
/// [`crate::jacobian_analysis`] and [`crate::saturation_trace`] otherwise, for each direction.
pub fn report_from_bidirectional_pass<F: Float, C: Cell<F>>(
    model: &Bidirectional<F, C>,
    cache: &BiCache<F>,
    step_grads: &[StepGrads<F>],
    loss: LossKind,
    config: &DiagnoseConfig,
) -> Result<Report> {
    let op = "report_from_bidirectional_pass";
    config.validate()?;
    let n = model.n_layers();
    if cache.n_layers() != n {
        return Err(Error::shape(op, format!("a cache of {n} bidirectional layers"), format!("{}", cache.n_layers())));
    }
    if step_grads.len() != 2 * n {
        return Err(Error::shape(
            op,
            format!("step gradients of {} directions ({n} layers × 2)", 2 * n),
            format!("{}", step_grads.len()),
        ));
    }
    let mut layers = Vec::with_capacity(2 * n);
    for l in 0..n {
        for dir in Direction::BOTH {
            let missing = || Error::shape(op, format!("layer {l} {dir:?} in the model and the cache"), "none");
            let rec = model.direction(l, dir).ok_or_else(missing)?;
            let dir_cache = cache.direction(l, dir).ok_or_else(missing)?;
            let mut sg = step_grads.get(dir.index(l)).ok_or_else(missing)?.clone();
            let mut flow = config.flow.clone();
            let first_step_only = dir == Direction::Reverse && loss == LossKind::Last && flow.reference_step.is_none();
            if dir == Direction::Reverse {
                sg.reverse_time(); // to its processing order
                if first_step_only {
                    flow.reference_step = Some(0);
                }
            }
            let grads = Backward { dx: None, d_init: Vec::new(), step_grads: vec![sg] };
            let mut report = layer_reports(rec, dir_cache, &grads, &flow, config, Some((l, dir)))?;
            let mut lr = report.pop().ok_or_else(missing)?;
            if first_step_only {
                lr.verdict = Verdict::undefined_in(
                    Some(l),
                    Some(dir),
                    format!(
                        "layer {l} reverse: a loss on the last step reaches it only at t = T−1 = {}, the first step \
                         it processes: no gradient flows through its recurrence (lag 0 only)",
                        cache.time().saturating_sub(1)
                    ),
                );
            }
            layers.push(lr);
        }
    }
    let verdicts: Vec<Verdict> = layers.iter().map(|l| l.verdict.clone()).collect();
    let cell = model.cell(0, Direction::Forward).map(|c| c.name()).unwrap_or("none");
    Ok(Report {
        schema: SCHEMA_VERSION,
        cell: cell.to_string(),
        precision: F::NAME.to_string(),
        time: cache.time(),
        batch: cache.batch(),
        loss,
        verdict: model_verdict(&verdicts),
        layers,
        params: param_stats(model),
        bidirectional: true,
    })
}
