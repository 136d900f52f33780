//! Tests of `cargo xtask diagnose`'s logic on files written here in PyTorch's layout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{Array, Array2, Array3, IxDyn};
use ndarray_npy::WriteNpyExt;
use rnnlab_core::{Parameterized, to_torch};
use rnnlab_diagnostics::LossKind as ReportLoss;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::*;

/// A fresh directory for one test.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rnnlab-xtask-diagnose-{}-{name}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The values of tensor `k` of a file: distinct, in (−0.4, 0.4), a fixed function of the index.
fn values(k: usize, n: usize) -> Vec<f64> {
    (0..n).map(|i| (((i * 7919 + k * 104_729) % 1000) as f64 / 1000.0 - 0.5) * 0.8).collect()
}

/// What `safetensors.torch.save_file(nn.LSTM/GRU(input, hidden, num_layers).state_dict(), …)`
/// writes: names `weight_ih_l{l}`, `weight_hh_l{l}`, `bias_ih_l{l}`, `bias_hh_l{l}`, shapes
/// `[G·H, I or H]`, `[G·H, H]`, `[G·H]`, metadata `format = pt`. Returns the tensors too.
fn torch_file(path: &Path, gates: usize, input: usize, hidden: usize, layers: usize, dtype: Dtype) -> Tensors {
    let mut tensors = Tensors::new();
    for l in 0..layers {
        let i = if l == 0 { input } else { hidden };
        for (name, shape) in [
            (format!("weight_ih_l{l}"), vec![gates * hidden, i]),
            (format!("weight_hh_l{l}"), vec![gates * hidden, hidden]),
            (format!("bias_ih_l{l}"), vec![gates * hidden]),
            (format!("bias_hh_l{l}"), vec![gates * hidden]),
        ] {
            let n = shape.iter().product();
            tensors.insert(name, (shape, values(tensors.len(), n)));
        }
    }
    let bytes: BTreeMap<&String, Vec<u8>> = tensors
        .iter()
        .map(|(n, (_, v))| {
            let b = match dtype {
                Dtype::F64 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                _ => v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect(),
            };
            (n, b)
        })
        .collect();
    let views: Vec<(&String, TensorView<'_>)> =
        tensors.iter().map(|(n, (shape, _))| (n, TensorView::new(dtype, shape.clone(), &bytes[n]).unwrap())).collect();
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
    tensors
}

/// A model config file: `cell` of `kind`, 2 → `hidden` → 1, `layers` layers, MSE on the last step.
fn config_file(path: &Path, kind: &str, hidden: usize, layers: usize) {
    let json = format!(
        r#"{{"input_dim": 2, "output_dim": 1, "hidden_dim": {hidden}, "n_layers": {layers},
            "cell": {{"kind": "{kind}"}}, "loss": "mse_last"}}"#
    );
    std::fs::write(path, json).unwrap();
}

fn args(config: &Path) -> DiagnoseArgs {
    DiagnoseArgs { config: config.to_path_buf(), ..DiagnoseArgs::default() }
}

fn adding(mut a: DiagnoseArgs, t: usize, b: usize) -> DiagnoseArgs {
    a.task = Some("adding".into());
    a.seq_len = Some(t);
    a.batch = Some(b);
    a
}

/// The whole error chain, as the binary prints it.
fn err_text<T>(r: Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

/// A file's tensors by name: shape and values.
type Tensors = BTreeMap<String, (Vec<usize>, Vec<f64>)>;

/// A directory with a 2-layer LSTM config (2 → 5 → 1) and a matching PyTorch-layout F32 file.
fn lstm_setup(name: &str) -> (PathBuf, PathBuf, PathBuf, Tensors) {
    let d = dir(name);
    let (cfg, w) = (d.join("model.json"), d.join("lstm.safetensors"));
    config_file(&cfg, "lstm", 5, 2);
    let tensors = torch_file(&w, 4, 2, 5, 2, Dtype::F32);
    (d, cfg, w, tensors)
}

#[test]
fn torch_lstm_weights_on_the_adding_task() -> Result<()> {
    let (_d, cfg, w, tensors) = lstm_setup("torch-adding");
    let a = adding(DiagnoseArgs { weights: Some(w.clone()), ..args(&cfg) }, 12, 4);
    let (model, d) = run::<f32>(&a)?;
    let r = &d.report;
    assert_eq!((r.layers.len(), r.time, r.batch, r.precision.as_str()), (2, 12, 4, "f32"));
    for l in &r.layers {
        assert_eq!(l.flow.parts.len(), 2, "h and c");
        assert_eq!(l.flow.parts[0].geo_mean.len(), 12, "lags 0..=11");
        assert!(l.jacobian.is_some() && l.saturation.is_some());
    }
    // The loaded weights are the file's, value for value (F32 into f32: exact).
    let mut seen = 0;
    model.rnn().visit_params(&mut |name, p| {
        let (shape, v) = &tensors[&to_torch(name)];
        assert_eq!(p.value.shape(), shape.as_slice(), "{name}");
        for (a, b) in p.value.iter().zip(v) {
            assert_eq!(*a, *b as f32, "{name}");
        }
        seen += 1;
    });
    assert_eq!(seen, 8);
    // … and the report's parameter norms are the file's.
    assert_eq!(r.params.len(), 8);
    for p in &r.params {
        let v = &tensors[&to_torch(&p.name)].1;
        let norm = v.iter().map(|&x| (x as f32 as f64).powi(2)).sum::<f64>().sqrt();
        assert!((p.value_norm - norm).abs() <= 1e-5 * norm, "{}: {} vs {norm}", p.name, p.value_norm);
    }
    // PyTorch weights have no head: the probe loss, and the report says so.
    assert_eq!(d.source.loss, LossSource::Probe { seed: 0 });
    assert_eq!(r.loss, ReportLoss::Last);
    assert_eq!(d.source.weights, WeightsSource::Torch { file: w.display().to_string(), dtype: "F32".into() });
    assert!(d.source.notes.is_empty(), "{:?}", d.source.notes);
    let header = d.header();
    assert!(header.contains("probe L = Σ_b ⟨g_b, h_(T−1),b⟩") && header.contains("no head"), "{header}");
    Ok(())
}

#[test]
fn torch_lstm_weights_on_an_npy_input() -> Result<()> {
    let (d, cfg, w, _) = lstm_setup("torch-npy");
    let x = Array3::from_shape_fn((7, 3, 2), |(t, b, i)| ((t + 2 * b + 3 * i) % 5) as f64 * 0.2 - 0.4);
    let npy = d.join("x.npy");
    x.write_npy(std::fs::File::create(&npy)?)?;
    let a = DiagnoseArgs { weights: Some(w), input: Some(npy.clone()), ..args(&cfg) };
    let (_, d64) = run::<f64>(&a)?;
    assert_eq!((d64.report.layers.len(), d64.report.time, d64.report.batch), (2, 7, 3));
    assert_eq!(d64.report.precision, "f64");
    assert!(d64.source.input.contains("T = 7, B = 3, I = 2"), "{}", d64.source.input);
    assert!(d64.source.notes.iter().any(|n| n.contains("F32, converted to f64 (exact)")), "{:?}", d64.source.notes);
    assert_eq!(d64.source.loss, LossSource::Probe { seed: 0 });
    // The f64 input read into f32 agrees with the f64 run to f32 precision.
    let (_, d32) = run::<f32>(&a)?;
    let (g32, g64) = (&d32.report.layers[0].flow.parts[0].geo_mean, &d64.report.layers[0].flow.parts[0].geo_mean);
    for (a, b) in g32.iter().zip(g64) {
        assert!((a - b).abs() <= 1e-4 * b.abs() + 1e-9, "{a} vs {b}");
    }
    Ok(())
}

#[test]
fn f64_weights_into_an_f32_model_are_converted_with_a_note() -> Result<()> {
    let d = dir("f64-weights");
    let (cfg, w) = (d.join("model.json"), d.join("gru.safetensors"));
    config_file(&cfg, "gru", 4, 1);
    torch_file(&w, 3, 2, 4, 1, Dtype::F64);
    let (_, out) = run::<f32>(&adding(DiagnoseArgs { weights: Some(w.clone()), ..args(&cfg) }, 6, 2))?;
    assert!(out.source.notes.iter().any(|n| n.contains("F64, converted to f32 (rounded")), "{:?}", out.source.notes);
    assert_eq!(out.source.notes.len(), 1, "{:?}", out.source.notes);
    // PyTorch's GRU into a reset-before config loads (same shapes), with a note.
    std::fs::write(
        &cfg,
        r#"{"input_dim": 2, "output_dim": 1, "hidden_dim": 4, "cell": {"kind": "gru", "variant": "reset_before"}, "loss": "mse_last"}"#,
    )?;
    let (_, out) = run::<f64>(&adding(DiagnoseArgs { weights: Some(w), ..args(&cfg) }, 6, 2))?;
    assert!(out.source.notes.iter().any(|n| n.contains("reset-after")), "{:?}", out.source.notes);
    Ok(())
}

#[test]
fn gru_weights_for_an_lstm_config_name_the_file_and_the_expected_shapes() {
    let d = dir("gru-into-lstm");
    let (cfg, w) = (d.join("model.json"), d.join("gru.safetensors"));
    config_file(&cfg, "lstm", 5, 2);
    torch_file(&w, 3, 2, 5, 2, Dtype::F32);
    let e = err_text(run::<f32>(&adding(DiagnoseArgs { weights: Some(w.clone()), ..args(&cfg) }, 6, 2)));
    assert!(e.contains(&w.display().to_string()), "{e}");
    assert!(e.contains("PyTorch") && e.contains("lstm, 2 layers"), "{e}");
    assert!(e.contains("the file holds a GRU (3 gates), 2 layers, 2 → 5"), "{e}");
    // LSTM: 4H = 20 rows; the GRU file has 3H = 15.
    assert!(e.contains("`weight_ih_l0` [20, 2]") && e.contains("`weight_ih_l0` [15, 2]"), "{e}");
}

#[test]
fn one_layer_file_for_a_two_layer_config_lists_the_missing_tensors() {
    let d = dir("layers");
    let (cfg, w) = (d.join("model.json"), d.join("lstm1.safetensors"));
    config_file(&cfg, "lstm", 5, 2);
    torch_file(&w, 4, 2, 5, 1, Dtype::F32);
    let e = err_text(run::<f32>(&adding(DiagnoseArgs { weights: Some(w), ..args(&cfg) }, 6, 2)));
    assert!(e.contains("missing tensor") && e.contains("weight_ih_l1") && e.contains("expects 8 tensors"), "{e}");
}

#[test]
fn prefixed_torch_names_get_a_hint() {
    let d = dir("prefix");
    let (cfg, w) = (d.join("model.json"), d.join("net.safetensors"));
    config_file(&cfg, "rnn", 3, 1);
    let v = Array2::<f32>::zeros((3, 3));
    let b = v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let views = vec![("lstm.weight_hh_l0", TensorView::new(Dtype::F32, vec![3, 3], &b).unwrap())];
    std::fs::write(&w, safetensors::serialize(views, None).unwrap()).unwrap();
    let e = err_text(run::<f32>(&adding(DiagnoseArgs { weights: Some(w), ..args(&cfg) }, 6, 2)));
    assert!(e.contains("module prefix") && e.contains("unexpected tensor"), "{e}");
}

#[test]
fn rnnlab_model_file_uses_the_models_own_loss() -> Result<()> {
    let d = dir("rnnlab-file");
    let (cfg, w) = (d.join("model.json"), d.join("model.safetensors"));
    config_file(&cfg, "lstm", 4, 1);
    let mc: ModelConfig = read_json(&cfg, "model config")?;
    // Weights drawn from another seed: what is loaded must be these, not the config's own.
    let trained = mc.clone().with_seed(7).build::<f32>()?;
    trained.save_safetensors(&w)?;
    let a = adding(DiagnoseArgs { weights: Some(w.clone()), ..args(&cfg) }, 10, 3);
    let (model, out) = run::<f32>(&a)?;
    assert_eq!(model.state_dict(), trained.state_dict());
    assert!(matches!(out.source.loss, LossSource::Model { loss: LossKind::MseLast, value } if value.is_finite()));
    assert_eq!(out.source.weights, WeightsSource::Rnnlab { file: w.display().to_string(), dtype: "F32".into() });
    assert_eq!((out.report.layers.len(), out.report.time), (1, 10));
    // Without weights: the config's initialisation, also through the head.
    let (init, out) = run::<f32>(&adding(args(&cfg), 10, 3))?;
    assert_eq!(init.state_dict(), mc.build::<f32>()?.state_dict());
    assert_eq!(out.source.weights, WeightsSource::Initialisation { seed: 0 });
    assert!(out.header().contains("the model's own initialisation"));
    assert!(out.header().contains("the model's own loss mse_last through its head"), "{}", out.header());
    Ok(())
}

#[test]
fn a_per_step_loss_from_a_task_json_reports_every_step() -> Result<()> {
    let d = dir("task-json");
    let (cfg, task) = (d.join("model.json"), d.join("task.json"));
    std::fs::write(
        &cfg,
        r#"{"input_dim": 10, "output_dim": 9, "hidden_dim": 6, "cell": {"kind": "gru"}, "loss": "cross_entropy_every"}"#,
    )?;
    std::fs::write(&task, r#"{"task": "copy_memory", "delay": 5, "n_copy": 2}"#)?;
    let a = DiagnoseArgs { task_json: Some(task), batch: Some(3), no_jacobian: true, ..args(&cfg) };
    let (_, out) = run::<f32>(&a)?;
    assert_eq!((out.report.time, out.report.loss), (9, ReportLoss::Every));
    assert!(matches!(out.source.loss, LossSource::Model { loss: LossKind::CrossEntropyEvery, .. }));
    assert!(out.report.layers[0].jacobian.is_none());
    Ok(())
}

#[test]
fn a_task_whose_targets_do_not_fit_the_head_falls_back_to_the_probe() -> Result<()> {
    let d = dir("misfit");
    let cfg = d.join("model.json");
    // Temporal order has 6 inputs and 4 classes; this model reads 6 inputs into 1 output.
    std::fs::write(
        &cfg,
        r#"{"input_dim": 6, "output_dim": 1, "hidden_dim": 4, "cell": {"kind": "rnn"}, "loss": "mse_last"}"#,
    )?;
    let a = DiagnoseArgs { task: Some("temporal_order".into()), seq_len: Some(10), batch: Some(2), ..args(&cfg) };
    let (_, out) = run::<f64>(&a)?;
    assert_eq!(out.source.loss, LossSource::Probe { seed: 0 });
    assert!(out.source.notes.iter().any(|n| n.contains("do not fit")), "{:?}", out.source.notes);
    Ok(())
}

#[test]
fn bad_npy_files_are_errors_that_name_the_problem() -> Result<()> {
    let (d, cfg, w, _) = lstm_setup("bad-npy");
    let base = DiagnoseArgs { weights: Some(w), ..args(&cfg) };
    let write = |name: &str, a: &dyn Fn(&mut Vec<u8>)| -> PathBuf {
        let p = d.join(name);
        let mut bytes = Vec::new();
        a(&mut bytes);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let x = Array3::<f32>::from_elem((4, 2, 2), 0.5);
    let cases: Vec<(PathBuf, Vec<&str>)> = vec![
        (
            write("truncated.npy", &|b| {
                x.write_npy(&mut *b).unwrap();
                b.truncate(b.len() - 5);
            }),
            vec!["truncated"],
        ),
        (
            write("width.npy", &|b| Array3::<f32>::zeros((4, 2, 3)).write_npy(b).unwrap()),
            vec!["input width 3", "input_dim is 2"],
        ),
        (write("rank.npy", &|b| Array2::<f64>::zeros((4, 2)).write_npy(b).unwrap()), vec!["rank 2", "rank 3"]),
        (
            write("int.npy", &|b| Array::<i32, _>::zeros(IxDyn(&[4, 2, 2])).write_npy(b).unwrap()),
            vec!["not supported", "float32"],
        ),
        (write("empty.npy", &|b| Array3::<f32>::zeros((0, 2, 2)).write_npy(b).unwrap()), vec!["empty"]),
        (write("garbage.npy", &|b| b.extend_from_slice(b"not an npy file at all")), vec!["not a valid .npy"]),
        (
            write("nan.npy", &|b| Array3::<f32>::from_elem((2, 1, 2), f32::NAN).write_npy(b).unwrap()),
            vec!["not finite"],
        ),
        (d.join("missing.npy"), vec!["reading input"]),
    ];
    for (path, want) in cases {
        let e = err_text(run::<f32>(&DiagnoseArgs { input: Some(path.clone()), ..base.clone() }));
        assert!(e.contains(&path.display().to_string()), "{e}");
        for w in want {
            assert!(e.contains(w), "{}: {e} lacks {w:?}", path.display());
        }
    }
    Ok(())
}

#[test]
fn bad_arguments_and_files_are_errors() {
    let d = dir("bad-args");
    let cfg = d.join("model.json");
    config_file(&cfg, "lstm", 3, 1);
    let cases: Vec<(DiagnoseArgs, Vec<&str>)> = vec![
        (args(&cfg), vec!["no input"]),
        (
            DiagnoseArgs { task: Some("sorting".into()), seq_len: Some(5), ..args(&cfg) },
            vec!["unknown task \"sorting\""],
        ),
        (adding(args(&cfg), 0, 2), vec!["--seq-len must be at least 1"]),
        (adding(args(&cfg), 1, 2), vec!["seq_len must be at least 2"]),
        (adding(args(&cfg), 5, 0), vec!["--batch must be at least 1"]),
        (DiagnoseArgs { task: Some("adding".into()), ..args(&cfg) }, vec!["needs --seq-len"]),
        (DiagnoseArgs { task: Some("digits".into()), seq_len: Some(10), ..args(&cfg) }, vec!["64 steps"]),
        (
            DiagnoseArgs { task: Some("copy".into()), seq_len: Some(5), ..args(&cfg) },
            vec!["input_dim 10", "model's input_dim is 2"],
        ),
        (DiagnoseArgs { task_json: Some(d.join("nope.json")), ..args(&cfg) }, vec!["reading task config", "nope.json"]),
        (DiagnoseArgs { input: Some(d.join("x.npy")), task_json: Some(cfg.clone()), ..args(&cfg) }, vec!["only one"]),
        (adding(args(&d.join("absent.json")), 5, 2), vec!["reading model config", "absent.json"]),
        (adding(DiagnoseArgs { weights: Some(d.join("w.safetensors")), ..args(&cfg) }, 5, 2), vec!["w.safetensors"]),
    ];
    for (a, want) in cases {
        let e = err_text(run::<f32>(&a));
        for w in want {
            assert!(e.contains(w), "{e} lacks {w:?}");
        }
    }
    // Malformed JSON: the file and serde's message with its position.
    let bad = d.join("bad.json");
    std::fs::write(&bad, r#"{"input_dim": 2, "hidden_dim": 3, "cell": {"kind": "lstm"}, "loss": "mse_last"}"#).unwrap();
    let e = err_text(run::<f32>(&adding(args(&bad), 5, 2)));
    assert!(e.contains("bad.json: not a valid model config") && e.contains("output_dim") && e.contains("line"), "{e}");
    std::fs::write(&bad, "{").unwrap();
    assert!(err_text(run::<f32>(&adding(args(&bad), 5, 2))).contains("EOF"));
    // A custom cell cannot be built from a config.
    let custom = d.join("custom.json");
    std::fs::write(
        &custom,
        r#"{"input_dim": 2, "output_dim": 1, "hidden_dim": 3, "cell": {"kind": "custom", "name": "mgu"}, "loss": "mse_last"}"#,
    )
    .unwrap();
    let e = err_text(run::<f32>(&adding(args(&custom), 5, 2)));
    assert!(e.contains("custom cell \"mgu\"") && e.contains("custom.json"), "{e}");
    // A truncated weights file.
    let w = d.join("cut.safetensors");
    torch_file(&w, 4, 2, 3, 1, Dtype::F32);
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() - 3]).unwrap();
    let e = err_text(run::<f32>(&adding(DiagnoseArgs { weights: Some(w), ..args(&cfg) }, 5, 2)));
    assert!(e.contains("cut.safetensors"), "{e}");
}

#[test]
fn the_json_reads_back_as_a_report() -> Result<()> {
    let (d, cfg, w, _) = lstm_setup("json");
    let out = d.join("sub/dir/report.json");
    let a = adding(DiagnoseArgs { weights: Some(w), out: Some(out.clone()), ..args(&cfg) }, 8, 2);
    diagnose(&a, &d)?;
    let text = std::fs::read_to_string(&out)?;
    let back: Report = serde_json::from_str(&text)?;
    let (_, again) = run::<f32>(&a)?;
    assert_eq!(back, again.report, "deterministic, and the extra field does not disturb the report");
    let v: serde_json::Value = serde_json::from_str(&text)?;
    assert_eq!(v["diagnosed"]["loss"]["kind"], "probe");
    assert_eq!(v["diagnosed"]["weights"]["kind"], "torch");
    Ok(())
}

#[test]
fn probe_directions_are_unit_rows_fixed_by_the_seed() {
    let g = probe_directions::<f64>(5, 7, 3);
    for row in g.rows() {
        assert!((row.dot(&row) - 1.0).abs() < 1e-12);
    }
    assert_eq!(g, probe_directions::<f64>(5, 7, 3));
    assert_ne!(g, probe_directions::<f64>(5, 7, 4));
    let g32 = probe_directions::<f32>(5, 7, 3);
    assert!(g32.iter().zip(&g).all(|(a, b)| (f64::from(*a) - b).abs() < 1e-7));
}

/// What PyTorch saves for `nn.LSTM(input, hidden, num_layers = layers, bidirectional = True)`:
/// each layer's tensors, then the same with a `_reverse` suffix; layer l > 0 reads 2H.
fn torch_bidirectional_file(path: &Path, input: usize, hidden: usize, layers: usize) -> Tensors {
    let mut tensors = Tensors::new();
    for l in 0..layers {
        let i = if l == 0 { input } else { 2 * hidden };
        for sfx in ["", "_reverse"] {
            for (name, shape) in [
                (format!("weight_ih_l{l}{sfx}"), vec![4 * hidden, i]),
                (format!("weight_hh_l{l}{sfx}"), vec![4 * hidden, hidden]),
                (format!("bias_ih_l{l}{sfx}"), vec![4 * hidden]),
                (format!("bias_hh_l{l}{sfx}"), vec![4 * hidden]),
            ] {
                let n = shape.iter().product();
                tensors.insert(name, (shape, values(tensors.len(), n)));
            }
        }
    }
    let bytes: BTreeMap<&String, Vec<u8>> =
        tensors.iter().map(|(n, (_, v))| (n, v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect())).collect();
    let views: Vec<(&String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, (shape, _))| (n, TensorView::new(Dtype::F32, shape.clone(), &bytes[n]).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
    tensors
}

#[test]
fn a_bidirectional_config_with_torch_reverse_weights_reports_both_directions() -> Result<()> {
    let d = dir("bidirectional");
    let (cfg, w) = (d.join("bi.json"), d.join("bi.safetensors"));
    std::fs::write(
        &cfg,
        r#"{"input_dim": 2, "output_dim": 1, "hidden_dim": 4, "n_layers": 2, "bidirectional": true,
            "cell": {"kind": "lstm"}, "loss": "mse_last"}"#,
    )?;
    let tensors = torch_bidirectional_file(&w, 2, 4, 2);
    let a = adding(DiagnoseArgs { weights: Some(w.clone()), ..args(&cfg) }, 10, 3);
    let (model, dg) = run::<f32>(&a)?;
    let r = &dg.report;
    assert!(r.bidirectional);
    let order: Vec<_> = r.layers.iter().map(|l| (l.layer, l.direction)).collect();
    use rnnlab_cells::Direction::{Forward, Reverse};
    assert_eq!(order, [(0, Some(Forward)), (0, Some(Reverse)), (1, Some(Forward)), (1, Some(Reverse))]);
    // Every tensor of the file went to the parameter of its name, `_reverse` to the reverse cell.
    let mut seen = 0;
    model.rnn().visit_params(&mut |name, p| {
        let (shape, v) = &tensors[&to_torch(name)];
        assert_eq!(p.value.shape(), shape.as_slice(), "{name}");
        assert!(p.value.iter().zip(v).all(|(a, b)| *a == *b as f32), "{name}");
        seen += 1;
    });
    assert_eq!(seen, 16);
    assert!(r.params.iter().any(|p| p.name == "layers.1.reverse.w_hh"));
    // The probe on h_n: each direction's curve starts at its last step (reverse: t = 0) and
    // every direction has a verdict.
    assert_eq!(dg.source.loss, LossSource::ProbeFinalStates { seed: 0 });
    assert_eq!(r.loss, ReportLoss::FinalState);
    for l in &r.layers {
        assert_eq!(l.flow.parts[0].geo_mean.len(), 10);
        assert_ne!(l.verdict.kind, rnnlab_diagnostics::VerdictKind::Undefined, "{r}");
        let t0 = if l.direction == Some(Reverse) { 0 } else { 9 };
        assert_eq!(l.time_of_lag(0, 10), Some(t0));
    }
    assert!(dg.header().contains("h_n[-2:]"), "{}", dg.header());

    // The model's own head and loss (no weights file): the read-out at t = T−1 reaches the
    // reverse directions only there, and their verdicts say so.
    let (_, own) = run::<f32>(&adding(args(&cfg), 10, 3))?;
    assert!(matches!(own.source.loss, LossSource::Model { .. }));
    for l in &own.report.layers {
        let undefined = l.verdict.kind == rnnlab_diagnostics::VerdictKind::Undefined;
        assert_eq!(undefined, l.direction == Some(Reverse), "{}", own.report);
    }

    // A unidirectional file for the bidirectional config names the missing reverse tensors.
    let uni = d.join("uni.safetensors");
    torch_file(&uni, 4, 2, 4, 2, Dtype::F32);
    let e = err_text(run::<f32>(&adding(DiagnoseArgs { weights: Some(uni), ..args(&cfg) }, 5, 2)));
    assert!(e.contains("weight_ih_l0_reverse"), "{e}");
    Ok(())
}

#[test]
fn the_svg_beside_the_json_has_its_axes_legend_and_one_curve_per_direction() -> Result<()> {
    let d = dir("svg");
    let cfg = d.join("bi.json");
    std::fs::write(
        &cfg,
        r#"{"input_dim": 2, "output_dim": 1, "hidden_dim": 4, "bidirectional": true,
            "cell": {"kind": "gru"}, "loss": "mse_last"}"#,
    )?;
    let out = d.join("report.json");
    diagnose(&adding(DiagnoseArgs { out: Some(out.clone()), ..args(&cfg) }, 12, 2), &d)?;
    let svg = std::fs::read_to_string(d.join("report.svg"))?;
    let doc = roxmltree::Document::parse(&svg).map_err(|e| anyhow!("not XML: {e}"))?;
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "text")
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect();
    for want in [
        "lag k (forward: t = t_r − k; reverse: t = t_r + k)",
        "geo. mean of ‖∂L/∂h_t‖ / ‖∂L/∂h_(t_r)‖",
        "layer 0 fwd h (band 10–90 %)",
        // The reverse direction's curve under a last-step loss is lag 0 alone.
        "layer 0 rev h (band 10–90 %)",
        "horizon threshold 1e-3",
    ] {
        assert!(texts.iter().any(|t| t == want), "{want:?} not in {texts:?}");
    }
    assert!(texts.iter().any(|t| t.starts_with("gradient flow: gru f32, T = 12, B = 2")), "{texts:?}");
    // A log axis: decade ticks.
    assert!(texts.iter().any(|t| t == "1e-1" || t == "1e0" || t == "1"), "{texts:?}");
    assert!(!svg.replace("http://www.w3.org/2000/svg", "").contains("http"), "no external URL");
    // A unidirectional report gets the plain lag axis.
    let uni = d.join("uni.json");
    config_file(&uni, "lstm", 4, 2);
    let (_, dg) = run::<f32>(&adding(args(&uni), 12, 2))?;
    let svg = plot::gradient_svg(&dg.report)?;
    assert!(svg.contains("lag k = t_r − t") && svg.contains("layer 1 h (band 10–90 %)"), "{svg}");
    Ok(())
}
