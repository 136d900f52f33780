//! Bidirectional models: each direction's report against the unidirectional model that runs
//! the same cell on what it reads, the last-step loss that never reaches the reverse
//! recurrence, stacks, the schema and bad input.

use ndarray::{Array3, Axis, s};
use rand::Rng as _;
use rnnlab_cells::{Bidirectional, Direction, GruConfig, LstmConfig, OutputGrad, Recurrent};
use rnnlab_core::{Error, seeded_rng};
use serde_json::Value;

use crate::*;

fn random3(shape: (usize, usize, usize), seed: u64) -> Array3<f64> {
    let mut rng = seeded_rng(seed);
    Array3::from_shape_fn(shape, |_| rng.random::<f64>() * 2.0 - 1.0)
}

/// Every number of `a` within `tol` (relative plus absolute) of `b`'s, everything else equal.
fn assert_close(a: &Value, b: &Value, tol: f64, path: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{path}: {x} vs {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}: lengths");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert_close(x, y, tol, &format!("{path}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{path}: keys");
            for (k, v) in x {
                assert_close(v, &y[k], tol, &format!("{path}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

/// The bidirectional entry, relabelled as the unidirectional layer 0 it must equal.
fn as_unidirectional(lr: &LayerReport) -> Value {
    let mut lr = lr.clone();
    let who = match lr.direction {
        Some(Direction::Forward) => "layer 0 forward",
        Some(Direction::Reverse) => "layer 0 reverse",
        None => "layer 0",
    };
    lr.verdict.reason = lr.verdict.reason.replacen(who, "layer 0", 1);
    lr.direction = None;
    lr.verdict.direction = None;
    serde_json::to_value(lr).unwrap()
}

#[test]
fn each_direction_is_the_unidirectional_model_of_its_cell_on_what_it_reads() {
    // One bidirectional LSTM layer, a loss on every step. Its reverse direction reads
    // x_{T−1}, …, x_0 and receives the reverse half of ∂L/∂y_t: the same cell run as a
    // unidirectional model on the time-reversed input with the reversed gradient performs the
    // same arithmetic, so the whole layer report (curves, fit, horizon, Jacobian σ₁ per lag,
    // one-step singular values, Pascanu, saturation, verdict) must agree, step for step in the
    // reverse direction's processing order. The forward direction likewise against its cell on x.
    let (t_len, b, i, h) = (24, 3, 3, 5);
    let mut rng = seeded_rng(4);
    let mut cell = || LstmConfig::new(i, h).init::<f64>(&mut rng).unwrap();
    let (fwd_cell, rev_cell) = (cell(), cell());
    let mut bi = Bidirectional::new(vec![(fwd_cell.clone(), rev_cell.clone())]).unwrap();
    let x = random3((t_len, b, i), 1);
    let g = random3((t_len, b, 2 * h), 2);
    let config = DiagnoseConfig::new();
    let report = diagnose_bidirectional(&mut bi, x.view(), OutputGrad::Every(g.view()), &config).unwrap();
    assert!(report.bidirectional);
    assert_eq!(report.layers.len(), 2);

    let mut uni_fwd = Recurrent::new(vec![fwd_cell]).unwrap();
    let g_fwd = g.slice(s![.., .., ..h]).to_owned();
    let fwd = diagnose(&mut uni_fwd, x.view(), OutputGrad::Every(g_fwd.view()), &config).unwrap();

    let mut uni_rev = Recurrent::new(vec![rev_cell]).unwrap();
    let x_rev = x.slice(s![..;-1, .., ..]).to_owned();
    let g_rev = g.slice(s![..;-1, .., h..]).to_owned();
    let rev = diagnose(&mut uni_rev, x_rev.view(), OutputGrad::Every(g_rev.view()), &config).unwrap();

    for (bi_layer, uni, dir) in
        [(&report.layers[0], &fwd, Direction::Forward), (&report.layers[1], &rev, Direction::Reverse)]
    {
        assert_eq!(bi_layer.direction, Some(dir));
        let u = &uni.layers[0];
        // Not vacuous: every part of the report is there.
        assert!(u.flow.parts.len() == 2 && u.flow.parts.iter().all(|p| p.fit.is_some()), "{uni}");
        let jac = u.jacobian.as_ref().expect("a Jacobian analysis");
        assert!(jac.lags.len() >= 5 && jac.step_svd.is_some());
        assert!(u.saturation.as_ref().is_some_and(|s| s.len() == t_len));
        assert_close(&as_unidirectional(bi_layer), &serde_json::to_value(u).unwrap(), 1e-12, &format!("{dir:?}"));
    }
    // The parameters: both directions', PyTorch's order.
    let names: Vec<&str> = report.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), 8);
    assert!(names[4].starts_with("layers.0.reverse."), "{names:?}");

    // Lag k of the forward curve is t = T−1−k; of the reverse one t = k.
    assert_eq!(report.layers[0].time_of_lag(3, t_len), Some(t_len - 4));
    assert_eq!(report.layers[1].time_of_lag(3, t_len), Some(3));
    assert_eq!(report.layers[1].time_of_lag(t_len, t_len), None);
    assert_eq!(report.layers[1].time_of_step(0, t_len), Some(t_len - 1));
    let shown = report.to_string();
    assert!(shown.contains("0 fwd") && shown.contains("0 rev"), "{shown}");
    assert!(shown.contains("rev: lag k is step t = 0 + k"), "{shown}");
    assert!(shown.contains("fwd: lag k is step t = 23 − k"), "{shown}");
}

#[test]
fn a_last_step_loss_reaches_the_reverse_recurrence_nowhere_and_the_report_says_so() {
    // The read-out of [h_fwd, h_rev] at t = T−1: the reverse direction's h_{T−1} has read x_{T−1}
    // only, and nothing before it in its processing order depends on anything else.
    let (t_len, b, i, h) = (20, 2, 2, 4);
    let mut rng = seeded_rng(9);
    let mut cell = || GruConfig::new(i, h).init::<f64>(&mut rng).unwrap();
    let mut bi = Bidirectional::new(vec![(cell(), cell())]).unwrap();
    let x = random3((t_len, b, i), 3);
    let g = random3((1, b, 2 * h), 4).index_axis(Axis(0), 0).to_owned();
    let report = diagnose_bidirectional(&mut bi, x.view(), OutputGrad::Last(g.view()), &DiagnoseConfig::new()).unwrap();
    let (fwd, rev) = (&report.layers[0], &report.layers[1]);
    assert!(fwd.flow.parts[0].fit.is_some());
    assert_ne!(fwd.verdict.kind, VerdictKind::Undefined);
    assert_eq!(rev.flow.parts[0].geo_mean, vec![1.0]);
    assert_eq!(rev.time_of_lag(0, t_len), Some(t_len - 1));
    assert_eq!(rev.verdict.kind, VerdictKind::Undefined);
    assert!(rev.verdict.reason.contains("no gradient flows through its recurrence"), "{}", rev.verdict.reason);
    // The Jacobian analysis still describes the reverse dynamics over the whole sequence.
    assert_eq!(rev.jacobian.as_ref().map(|j| j.reference_step), Some(t_len - 1));
    // The model's verdict is the forward direction's.
    assert_eq!(report.verdict.direction, Some(Direction::Forward));
    assert_eq!(report.verdict.kind, fwd.verdict.kind);
}

#[test]
fn a_two_layer_stack_reads_back_and_schema_one_files_still_read() {
    let (t_len, b, i, h) = (16, 2, 3, 4);
    let mut rng = seeded_rng(5);
    let mut pair = |input: usize| {
        let mut c = || LstmConfig::new(input, h).init::<f32>(&mut rng).unwrap();
        (c(), c())
    };
    let layers = vec![pair(i), pair(2 * h)];
    let mut bi = Bidirectional::new(layers).unwrap();
    let x = random3((t_len, b, i), 6).mapv(|v| v as f32);
    let g = random3((t_len, b, 2 * h), 7).mapv(|v| v as f32);
    let report =
        diagnose_bidirectional(&mut bi, x.view(), OutputGrad::Every(g.view()), &DiagnoseConfig::new()).unwrap();
    let order: Vec<(usize, Option<Direction>)> = report.layers.iter().map(|l| (l.layer, l.direction)).collect();
    use Direction::{Forward, Reverse};
    assert_eq!(order, [(0, Some(Forward)), (0, Some(Reverse)), (1, Some(Forward)), (1, Some(Reverse))]);
    for l in &report.layers {
        assert_ne!(l.verdict.kind, VerdictKind::Undefined, "{report}");
        assert_eq!(l.flow.layer, l.layer);
        assert_eq!(l.jacobian.as_ref().map(|j| j.layer), Some(l.layer));
    }
    let json = report.to_json().unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    assert_eq!(back.schema, 2);

    // A version-1 file (no `bidirectional`, no `direction`) still reads, as unidirectional.
    let mut uni = Recurrent::new(vec![LstmConfig::new(i, h).init::<f32>(&mut rng).unwrap()]).unwrap();
    let g1 = g.slice(s![.., .., ..h]).to_owned();
    let r = diagnose(&mut uni, x.view(), OutputGrad::Every(g1.view()), &DiagnoseConfig::new()).unwrap();
    let mut v = serde_json::to_value(&r).unwrap();
    let obj = v.as_object_mut().unwrap();
    obj.remove("bidirectional");
    obj.insert("schema".into(), 1.into());
    obj["verdict"].as_object_mut().unwrap().remove("direction");
    for l in obj["layers"].as_array_mut().unwrap() {
        let l = l.as_object_mut().unwrap();
        l.remove("direction");
        l["verdict"].as_object_mut().unwrap().remove("direction");
    }
    let old: Report = serde_json::from_value(v).unwrap();
    assert!(!old.bidirectional && old.layers[0].direction.is_none());
    assert_eq!(old.layers, r.layers);
}

#[test]
fn step_gradients_of_another_model_are_an_error() {
    let (t_len, b, i, h) = (6, 2, 2, 3);
    let mut rng = seeded_rng(1);
    let mut cell = || LstmConfig::new(i, h).init::<f64>(&mut rng).unwrap();
    let mut bi = Bidirectional::new(vec![(cell(), cell())]).unwrap();
    let x = random3((t_len, b, i), 1);
    let g = random3((t_len, b, 2 * h), 2);
    let fwd = bi.forward(x.view(), None).unwrap();
    let bwd = bi.backward(&fwd.cache, OutputGrad::Every(g.view()), Default::default()).unwrap();
    let cfg = DiagnoseConfig::new();
    let one = &bwd.step_grads[..1];
    let e = report_from_bidirectional_pass(&bi, &fwd.cache, one, LossKind::Every, &cfg).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }) && e.to_string().contains("2 directions"), "{e}");
    let mut bad = cfg.clone();
    bad.flow.horizon_threshold = 0.0;
    let e = report_from_bidirectional_pass(&bi, &fwd.cache, &bwd.step_grads, LossKind::Every, &bad).unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e}");
    let ok = report_from_bidirectional_pass(&bi, &fwd.cache, &bwd.step_grads, LossKind::Every, &cfg).unwrap();
    assert_eq!(ok.layers.len(), 2);
}
