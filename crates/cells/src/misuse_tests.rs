//! Misuse of every `Cell` method of every built-in cell, as a direct caller can misuse it:
//! each view one row or column off, each slice one value short or long, each view in
//! column-major layout, a batch that does not divide the rows. A wrong shape must be an
//! `Err(Shape)` — in release builds as in debug builds — never a panic and never an `Ok`
//! that wrote nothing; any other variant must not panic, and an `Ok` must equal the result
//! of the well-formed call.

use std::panic::{AssertUnwindSafe, catch_unwind};

use ndarray::{Array2, Array3};
use rnnlab_activations::ActivationKind;
use rnnlab_core::{Cell, Error, Parameterized, Result, SeqRefs, Simple, StepRefs, seeded_rng};

use crate::*;

const B: usize = 3;
const T: usize = 2;

/// The buffers of one call: named 2-D arrays, named slices and a batch size.
#[derive(Clone)]
struct Case {
    arrays: Vec<(&'static str, Array2<f64>)>,
    slices: Vec<(&'static str, Vec<f64>)>,
    batch: usize,
}

type Call<C> = fn(&mut C, &mut Case) -> Result<()>;

fn filled(rows: usize, cols: usize, seed: usize) -> Array2<f64> {
    Array2::from_shape_fn((rows, cols), |(i, j)| (((i * 7 + j * 3 + seed * 11) % 17) as f64 * 0.37).sin() * 0.9)
}

/// Everything a call can write: the arrays in logical order, the slices (their first `lens`
/// values) and the cell's parameter gradients.
fn snapshot<C: Parameterized<f64>>(cell: &C, case: &Case, lens: &[usize]) -> Vec<f64> {
    let mut out: Vec<f64> = case.arrays.iter().flat_map(|(_, a)| a.iter().copied()).collect();
    for ((_, s), &n) in case.slices.iter().zip(lens) {
        out.extend(s.iter().take(n));
    }
    cell.visit_params(&mut |_, p| out.extend(p.grad.iter()));
    out
}

fn same(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-12 * (1.0 + x.abs()) || x == y)
}

/// Runs `call` on `case` and on every misuse of it; returns what went wrong.
fn misuse<C: Cell<f64> + Clone>(label: &str, cell: &C, base: &Case, call: Call<C>, batch_matters: bool) -> Vec<String> {
    let mut fails = Vec::new();
    let run = |case: &mut Case| {
        let mut c = cell.clone();
        let r = catch_unwind(AssertUnwindSafe(|| call(&mut c, case)));
        (c, r)
    };
    let lens: Vec<usize> = base.slices.iter().map(|(_, s)| s.len()).collect();
    let mut valid = base.clone();
    let (c, r) = run(&mut valid);
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            fails.push(format!("{label}: the well-formed call failed: {e}"));
            return fails;
        }
        Err(_) => {
            fails.push(format!("{label}: the well-formed call panicked"));
            return fails;
        }
    }
    let want = snapshot(&c, &valid, &lens);
    // A variant that must be refused.
    let mut must_err = |what: String, case: &mut Case| match run(case).1 {
        Ok(Err(Error::Shape { .. })) => {}
        Ok(Err(e)) => fails.push(format!("{label}: {what}: not a shape error: {e}")),
        Ok(Ok(())) => fails.push(format!("{label}: {what}: Ok")),
        Err(_) => fails.push(format!("{label}: {what}: panic")),
    };
    for k in 0..base.arrays.len() {
        let (name, a) = &base.arrays[k];
        let (r, c) = a.dim();
        let mut shapes = vec![(r + 1, c), (r, c + 1)];
        if r > 0 {
            shapes.push((r - 1, c));
        }
        if c > 0 {
            shapes.push((r, c - 1));
        }
        for (r2, c2) in shapes {
            let mut case = base.clone();
            case.arrays[k].1 = filled(r2, c2, k);
            must_err(format!("{name} {:?} instead of {:?}", [r2, c2], [r, c]), &mut case);
        }
    }
    for k in 0..base.slices.len() {
        let (name, s) = &base.slices[k];
        if !s.is_empty() {
            let mut case = base.clone();
            case.slices[k].1.pop();
            must_err(format!("{name} of {} values instead of {}", s.len() - 1, s.len()), &mut case);
        }
    }
    // Variants that may be refused, or computed right.
    let mut variants: Vec<(String, Case)> = Vec::new();
    for k in 0..base.arrays.len() {
        let (name, a) = &base.arrays[k];
        if a.nrows() > 1 && a.ncols() > 1 {
            let mut case = base.clone();
            case.arrays[k].1 = a.t().to_owned().reversed_axes();
            variants.push((format!("{name} column-major"), case));
        }
    }
    for k in 0..base.slices.len() {
        let mut case = base.clone();
        case.slices[k].1.push(0.5);
        variants.push((format!("{} one value longer", base.slices[k].0), case));
    }
    if batch_matters {
        for batch in [0, base.batch + 1, usize::MAX] {
            let mut case = base.clone();
            case.batch = batch;
            variants.push((format!("batch {batch}"), case));
        }
    }
    for (what, mut case) in variants {
        match run(&mut case) {
            (_, Ok(Err(_))) => {}
            (c, Ok(Ok(()))) => {
                if !same(&snapshot(&c, &case, &lens), &want) {
                    fails.push(format!("{label}: {what}: Ok with another result"));
                }
            }
            (_, Err(_)) => fails.push(format!("{label}: {what}: panic")),
        }
    }
    fails
}

/// The well-formed buffers of every method for `cell`, from a real forward pass.
fn cases<C: Cell<f64> + Clone>(cell: &C) -> (C, [Case; 7]) {
    let (i, p, sw, rg) = (cell.input_dim(), cell.proj_dim(), cell.state_width(), cell.rec_grad_dim());
    let n = T * B;
    let x3 = Array3::from_shape_fn((T, B, i), |(t, b, k)| ((t * 5 + b * 3 + k) as f64 * 0.31).sin());
    let mut stack = Recurrent::new(vec![cell.clone()]).expect("one layer");
    let fwd = stack.forward(x3.view(), None).expect("a valid forward");
    let cell = stack.layers()[0].clone();
    let x = x3.view().into_shape_with_order((n, i)).expect("contiguous").to_owned();
    let mut proj = Array2::zeros((n, p));
    cell.clone().project_input(x.view(), proj.view_mut()).expect("a valid projection");
    let states = fwd.cache.states(0).expect("layer 0");
    let states = states.into_shape_with_order(((T + 1) * B, sw)).expect("contiguous").to_owned();
    let step = fwd.cache.step_refs(0, 1).expect("step 1");
    let cl = cell.cache_len(B);
    let cache2 = Array2::from_shape_fn((T, cl), |(t, k)| fwd.cache.step_refs(0, t).expect("step").cache[k]);
    let scratch = vec![0.0; cell.scratch_len(B)];
    let slices = |with_scratch: bool| {
        let mut v = vec![("cache", step.cache.to_vec())];
        if with_scratch {
            v.push(("scratch", scratch.clone()));
        }
        v
    };
    let project = Case { arrays: vec![("x", x.clone()), ("out", Array2::zeros((n, p)))], slices: vec![], batch: B };
    let stepc = Case {
        arrays: vec![
            ("xp", proj.slice(ndarray::s![..B, ..]).to_owned()),
            ("prev", filled(B, sw, 1)),
            ("next", Array2::zeros((B, sw))),
        ],
        slices: vec![("cache", vec![0.0; cl]), ("scratch", scratch.clone())],
        batch: B,
    };
    let refs = |extra: Vec<(&'static str, Array2<f64>)>| {
        let mut v = vec![("xp", step.xp.to_owned()), ("prev", step.prev.to_owned()), ("next", step.next.to_owned())];
        v.extend(extra);
        v
    };
    let backward = Case {
        arrays: refs(vec![
            ("dnext", filled(B, sw, 2)),
            ("dprev", Array2::zeros((B, sw))),
            ("dxp", Array2::zeros((B, p))),
            ("drec", Array2::zeros((B, rg))),
        ]),
        slices: slices(true),
        batch: B,
    };
    let jvp = Case {
        arrays: refs(vec![("v", filled(B, sw, 3)), ("out", Array2::zeros((B, sw)))]),
        slices: slices(true),
        batch: B,
    };
    let vjp = Case {
        arrays: refs(vec![("u", filled(B, sw, 4)), ("out", Array2::zeros((B, sw)))]),
        slices: slices(false),
        batch: B,
    };
    let acc = Case {
        arrays: vec![
            ("x", x.clone()),
            ("prev", states.slice(ndarray::s![..n, ..]).to_owned()),
            ("next", states.slice(ndarray::s![B.., ..]).to_owned()),
            ("cache", cache2),
            ("dxp", filled(n, p, 5)),
            ("drec", filled(n, rg, 6)),
        ],
        slices: vec![],
        batch: B,
    };
    let input_grad =
        Case { arrays: vec![("dxp", filled(n, p, 7)), ("dx", Array2::zeros((n, i)))], slices: vec![], batch: B };
    (cell, [project, stepc, backward, jvp, vjp, acc, input_grad])
}

fn step_refs<'a>(a: &'a [(&'static str, Array2<f64>)], cache: &'a [f64]) -> StepRefs<'a, f64> {
    StepRefs { t: 1, xp: a[0].1.view(), prev: a[1].1.view(), next: a[2].1.view(), cache }
}

fn check_cell<C: Cell<f64> + Clone>(label: &str, cell: C) -> Vec<String> {
    let (cell, [project, stepc, backward, jvp, vjp, acc, input_grad]) = cases(&cell);
    let mut fails = Vec::new();
    fails.extend(misuse(
        &format!("{label}::project_input"),
        &cell,
        &project,
        |c, k| {
            let [(_, x), (_, out)] = &mut k.arrays[..] else { unreachable!("two arrays") };
            c.project_input(x.view(), out.view_mut())
        },
        false,
    ));
    fails.extend(misuse(
        &format!("{label}::step"),
        &cell,
        &stepc,
        |c, k| {
            let [(_, xp), (_, prev), (_, next)] = &mut k.arrays[..] else { unreachable!("three arrays") };
            let [(_, cache), (_, scratch)] = &mut k.slices[..] else { unreachable!("two slices") };
            c.step(0, xp.view_mut(), prev.view(), next.view_mut(), cache, scratch)
        },
        false,
    ));
    fails.extend(misuse(
        &format!("{label}::step_backward"),
        &cell,
        &backward,
        |c, k| {
            let (refs, outs) = k.arrays.split_at_mut(3);
            let [(_, cache), (_, scratch)] = &mut k.slices[..] else { unreachable!("two slices") };
            let [(_, dnext), (_, dprev), (_, dxp), (_, drec)] = outs else { unreachable!("four arrays") };
            c.step_backward(
                step_refs(refs, cache),
                dnext.view(),
                dprev.view_mut(),
                dxp.view_mut(),
                drec.view_mut(),
                scratch,
            )
        },
        false,
    ));
    fails.extend(misuse(
        &format!("{label}::jvp_state"),
        &cell,
        &jvp,
        |c, k| {
            let (refs, outs) = k.arrays.split_at_mut(3);
            let [(_, cache), (_, scratch)] = &mut k.slices[..] else { unreachable!("two slices") };
            let [(_, v), (_, out)] = outs else { unreachable!("two arrays") };
            c.jvp_state(step_refs(refs, cache), v.view(), out.view_mut(), scratch)
        },
        false,
    ));
    fails.extend(misuse(
        &format!("{label}::vjp_state"),
        &cell,
        &vjp,
        |c, k| {
            let (refs, outs) = k.arrays.split_at_mut(3);
            let [(_, cache)] = &mut k.slices[..] else { unreachable!("one slice") };
            let [(_, u), (_, out)] = outs else { unreachable!("two arrays") };
            c.vjp_state(step_refs(refs, cache), u.view(), out.view_mut())
        },
        false,
    ));
    fails.extend(misuse(
        &format!("{label}::accumulate_grads"),
        &cell,
        &acc,
        |c, k| {
            let [(_, x), (_, prev), (_, next), (_, cache), (_, dxp), (_, drec)] = &k.arrays[..] else {
                unreachable!("six arrays")
            };
            c.accumulate_grads(SeqRefs {
                batch: k.batch,
                x: x.view(),
                prev: prev.view(),
                next: next.view(),
                cache: cache.view(),
                dxp: dxp.view(),
                drec: drec.view(),
            })
        },
        true,
    ));
    fails.extend(misuse(
        &format!("{label}::input_grad"),
        &cell,
        &input_grad,
        |c, k| {
            let [(_, dxp), (_, dx)] = &mut k.arrays[..] else { unreachable!("two arrays") };
            c.input_grad(dxp.view(), dx.view_mut())
        },
        false,
    ));
    fails
}

fn report(fails: Vec<String>) {
    assert!(fails.is_empty(), "{} misuses not refused:\n{}", fails.len(), fails.join("\n"));
}

#[test]
fn plain_cells_refuse_every_misshapen_call() {
    let mut rng = seeded_rng(3);
    let mut fails = Vec::new();
    fails.extend(check_cell("lstm", LstmConfig::new(2, 3).init::<f64>(&mut rng).expect("valid")));
    for v in [GruVariant::ResetAfter, GruVariant::ResetBefore] {
        fails.extend(check_cell(
            &format!("gru {v:?}"),
            GruConfig::new(2, 3).with_variant(v).init::<f64>(&mut rng).expect("valid"),
        ));
    }
    for a in [ActivationKind::Tanh, ActivationKind::Relu, ActivationKind::Softsign] {
        let cell = RnnConfig::new(2, 3).with_activation(a).init::<f64>(&mut rng).expect("valid");
        fails.extend(check_cell(&format!("rnn {a:?}"), cell));
    }
    let simple = SimpleRnn::init(&RnnConfig::new(2, 3), ActivationKind::Tanh, &mut rng).expect("valid");
    fails.extend(check_cell("simple rnn", Simple::new(simple)));
    report(fails);
}

#[test]
fn normalised_cells_refuse_every_misshapen_call() {
    let mut rng = seeded_rng(4);
    let mut fails = Vec::new();
    for placement in [NormPlacement::Full, NormPlacement::InputOnly] {
        for norm in [NormConfig::layer(placement), NormConfig::batch(placement, 3)] {
            let label = format!("{:?} {placement:?}", norm.kind);
            let c = NormRnnConfig::new(RnnConfig::new(2, 3), norm.clone()).init::<f64>(&mut rng).expect("valid");
            fails.extend(check_cell(&format!("norm rnn {label}"), c));
            let c = NormLstmConfig::new(LstmConfig::new(2, 3), norm.clone()).init::<f64>(&mut rng).expect("valid");
            fails.extend(check_cell(&format!("norm lstm {label}"), c));
            let c = NormGruConfig::new(GruConfig::new(2, 3), norm).init::<f64>(&mut rng).expect("valid");
            fails.extend(check_cell(&format!("norm gru {label}"), c));
        }
    }
    report(fails);
}

fn x3(t: usize, b: usize, i: usize) -> Array3<f64> {
    Array3::from_shape_fn((t, b, i), |(t, b, k)| ((t * 5 + b * 3 + k) as f64 * 0.31).sin())
}

/// `stack.backward` of `cache` with the last step's outputs' gradient: `Err(Shape)` expected,
/// and no parameter gradient touched.
fn refused<C: Cell<f64>>(stack: &mut Recurrent<f64, C>, cache: &SeqCache<f64>, b: usize) -> String {
    let g = Array2::ones((b, stack.hidden_dim()));
    let r = catch_unwind(AssertUnwindSafe(|| {
        stack.backward(cache, OutputGrad::Last(g.view()), BackwardOptions::default())
    }));
    let mut grads = 0.0;
    stack.visit_params(&mut |_, p| grads += p.grad.iter().map(|v| v.abs()).sum::<f64>());
    match r {
        Ok(Err(e @ Error::Shape { .. })) if grads == 0.0 => e.to_string(),
        Ok(Err(e)) => panic!("{e} (gradients touched: {grads})"),
        Ok(Ok(_)) => panic!("a foreign cache was accepted"),
        Err(_) => panic!("a foreign cache panicked"),
    }
}

#[test]
fn backward_refuses_a_cache_of_another_input_width() {
    let mut rng = seeded_rng(5);
    let mut a = Recurrent::new(vec![LstmConfig::new(2, 3).init::<f64>(&mut rng).unwrap()]).unwrap();
    let mut b = Recurrent::new(vec![LstmConfig::new(4, 3).init::<f64>(&mut rng).unwrap()]).unwrap();
    let fa = a.forward(x3(3, 2, 2).view(), None).unwrap();
    let e = refused(&mut b, &fa.cache, 2);
    assert!(e.contains("lstm 4→3") && e.contains("lstm 2→3"), "{e}");
    // Two layers against one, and a wider upper layer (the panics).
    let cells = vec![LstmConfig::new(2, 3).init(&mut rng).unwrap(), LstmConfig::new(3, 5).init(&mut rng).unwrap()];
    let mut deep = Recurrent::new(cells).unwrap();
    let fd = deep.forward(x3(3, 2, 2).view(), None).unwrap();
    refused(&mut a, &fd.cache, 2);
    refused(&mut deep, &fa.cache, 2);
}

#[test]
fn backward_refuses_a_cache_of_another_cell_kind_with_the_same_widths() {
    let mut rng = seeded_rng(6);
    // Two GRU variants: the same type and widths, other caches.
    let after = GruConfig::new(2, 3).init::<f64>(&mut rng).unwrap();
    let before = GruConfig::new(2, 3).with_variant(GruVariant::ResetBefore).init::<f64>(&mut rng).unwrap();
    let (mut a, mut b) = (Recurrent::new(vec![after]).unwrap(), Recurrent::new(vec![before]).unwrap());
    let fa = a.forward(x3(3, 2, 2).view(), None).unwrap();
    let e = refused(&mut b, &fa.cache, 2);
    assert!(e.contains("gru_reset_before"), "{e}");
    // A tanh and a ReLU RNN: the same name, sizes and cache layout — another stack.
    let tanh = RnnConfig::new(2, 3).init::<f64>(&mut rng).unwrap();
    let relu = RnnConfig::new(2, 3).with_activation(ActivationKind::Relu).init::<f64>(&mut rng).unwrap();
    let (mut t, mut r) = (Recurrent::new(vec![tanh]).unwrap(), Recurrent::new(vec![relu]).unwrap());
    let ft = t.forward(x3(3, 2, 2).view(), None).unwrap();
    let e = refused(&mut r, &ft.cache, 2);
    assert!(e.contains("another stack"), "{e}");
    // Layer norm against batch norm.
    let ln = NormLstmConfig::new(LstmConfig::new(2, 3), NormConfig::layer(NormPlacement::Full)).init::<f64>(&mut rng);
    let bn =
        NormLstmConfig::new(LstmConfig::new(2, 3), NormConfig::batch(NormPlacement::Full, 3)).init::<f64>(&mut rng);
    let (mut l, mut n) = (Recurrent::new(vec![ln.unwrap()]).unwrap(), Recurrent::new(vec![bn.unwrap()]).unwrap());
    let fl = l.forward(x3(3, 2, 2).view(), None).unwrap();
    refused(&mut n, &fl.cache, 2);
    // A clone is another stack too; its own caches work.
    let mut c = t.clone();
    refused(&mut c, &ft.cache, 2);
    let fc = c.forward(x3(3, 2, 2).view(), None).unwrap();
    let g = Array2::ones((2, 3));
    assert!(c.backward(&fc.cache, OutputGrad::Last(g.view()), BackwardOptions::default()).is_ok());
}

#[test]
fn backward_refuses_a_cache_made_before_the_parameters_changed() {
    let mut rng = seeded_rng(7);
    let mut s = Recurrent::new(vec![LstmConfig::new(2, 3).init::<f64>(&mut rng).unwrap()]).unwrap();
    let f = s.forward(x3(3, 2, 2).view(), None).unwrap();
    // Zeroing the gradients in between is fine (only values count).
    s.zero_grad();
    let g = Array2::ones((2, 3));
    let ok = s.backward(&f.cache, OutputGrad::Last(g.view()), BackwardOptions::default());
    assert!(ok.is_ok());
    s.zero_grad();
    s.visit_params_mut(&mut |name, mut p| {
        if name.ends_with("w_hh") {
            p.value[[0, 0]] += 0.5;
        }
    });
    let e = refused(&mut s, &f.cache, 2);
    assert!(e.contains("parameters changed"), "{e}");
}

#[test]
fn bidirectional_backward_refuses_a_foreign_cache_before_touching_a_gradient() {
    let mut rng = seeded_rng(8);
    let mut pair =
        || (RnnConfig::new(2, 3).init::<f64>(&mut rng).unwrap(), RnnConfig::new(2, 3).init::<f64>(&mut rng).unwrap());
    let (mut a, mut b) = (Bidirectional::new(vec![pair()]).unwrap(), Bidirectional::new(vec![pair()]).unwrap());
    let fa = a.forward(x3(3, 2, 2).view(), None).unwrap();
    let g = Array2::ones((2, 6));
    let r = b.backward(&fa.cache, OutputGrad::Last(g.view()), BackwardOptions::default());
    assert!(matches!(r, Err(Error::Shape { .. })), "{r:?}");
    let mut grads = 0.0;
    b.visit_params(&mut |_, p| grads += p.grad.iter().map(|v| v.abs()).sum::<f64>());
    assert_eq!(grads, 0.0);
    assert!(a.backward(&fa.cache, OutputGrad::Last(g.view()), BackwardOptions::default()).is_ok());
}

#[test]
fn forward_refuses_non_finite_weights_naming_the_parameter() {
    let mut rng = seeded_rng(9);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut s = Recurrent::new(vec![GruConfig::new(2, 3).init::<f64>(&mut rng).unwrap()]).unwrap();
        s.visit_params_mut(&mut |name, mut p| {
            if name == "layers.0.b_hh" {
                p.value[[4]] = bad;
            }
        });
        let e = s.forward(x3(3, 2, 2).view(), None).unwrap_err();
        assert!(matches!(e, Error::NonFinite { .. }) && e.to_string().contains("layers.0.b_hh"), "{e}");
    }
}

#[test]
fn linear_refuses_non_finite_inputs_weights_and_gradients() {
    use rnnlab_core::Layer;
    let mut lin = LinearConfig::new(2, 3).init::<f64>(&mut seeded_rng(10)).unwrap();
    let x = Array2::from_shape_vec((2, 2), vec![0.5, -1.0, f64::NAN, 2.0]).unwrap();
    let e = lin.apply(x.view()).unwrap_err();
    assert!(matches!(e, Error::NonFinite { .. }) && e.to_string().contains("input"), "{e}");
    assert!(lin.forward(x.view()).is_err());
    let ok = Array2::from_elem((2, 2), 0.5);
    let (y, cache) = lin.forward(ok.view()).unwrap();
    assert!(y.iter().all(|v| v.is_finite()));
    let g = Array2::from_elem((2, 3), f64::INFINITY);
    assert!(matches!(lin.backward(&cache, g.view()), Err(Error::NonFinite { .. })));
    lin.visit_params_mut(&mut |name, mut p| {
        if name == "weight" {
            p.value[[1, 1]] = f64::NEG_INFINITY;
        }
    });
    let e = lin.apply(ok.view()).unwrap_err();
    assert!(e.to_string().contains("weight"), "{e}");
}
