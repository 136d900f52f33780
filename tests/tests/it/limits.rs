//! Hostile sizes and config forms: every size over the stated limits (`rnnlab_core::limits`),
//! from Rust, from JSON and from a `state.json`, is refused with an `Err` naming the field the
//! user wrote — checked in a child process under an address-space limit, so that a size that
//! reached the allocator aborts the child and fails the test rather than the machine — and
//! every config refuses unknown fields and the array form of a struct at every depth.

use std::process::Command;

use rnnlab_cells::{LstmConfig, NormConfig, NormPlacement};
use rnnlab_core::{Error, seeded_rng};
use rnnlab_init::Init;
use rnnlab_norm::BatchNormConfig;
use rnnlab_optim::{AdamConfig, ClipConfig, LrSchedule, RmsPropConfig, SgdConfig};
use rnnlab_tasks::{AddingConfig, CopyMemoryConfig, Task, TaskConfig, TemporalOrderConfig};
use rnnlab_train::{CellConfig, GruSpec, LstmSpec, ModelConfig, ReadoutConfig, RnnSpec, TrainConfig, Trainer};
use serde_json::{Value, json};

const CHILD_ENV: &str = "RNNLAB_LIMITS_CHILD";
/// The child's address-space limit: 2 GiB (in KiB, for `ulimit -v`).
const LIMIT_KIB: u64 = 2 * 1024 * 1024;

/// A valid small run; the cases below change one field of its JSON.
fn base() -> Value {
    json!({
        "task": {"task": "adding", "seq_len": 20},
        "model": {"input_dim": 2, "output_dim": 1, "hidden_dim": 8, "cell": {"kind": "lstm"}, "loss": "mse_last"},
        "optimizer": {"kind": "adam", "lr": 0.01},
        "batch_size": 4, "n_steps": 2, "eval_batch": 8
    })
}

fn with(path: &[&str], value: Value) -> Value {
    let mut v = base();
    let mut at = &mut v;
    for k in &path[..path.len() - 1] {
        at = &mut at[*k];
    }
    at[path[path.len() - 1]] = value;
    v
}

/// `Trainer::<f32>::new` on the JSON must be an `Err` whose message contains `field`.
fn refused(json: Value, field: &str) -> Error {
    let cfg: TrainConfig = serde_json::from_value(json.clone()).expect("the case is well-formed JSON of a config");
    match Trainer::<f32>::new(cfg) {
        Ok(_) => panic!("accepted {json}"),
        Err(e) => {
            assert!(e.to_string().contains(field), "{field}: {e}");
            e
        }
    }
}

/// Every case; returns how many were refused.
fn hostile_sizes() -> usize {
    let mut n = 0;
    let mut count = |_: Error| n += 1;
    // from JSON, through the trainer (sizes alone, and sizes whose products are too large)
    count(refused(with(&["model", "hidden_dim"], json!(1_000_000_000u64)), "model.hidden_dim"));
    count(refused(with(&["model", "hidden_dim"], json!(100_000)), "model.hidden_dim"));
    count(refused(with(&["model", "n_layers"], json!(10_000_000)), "model.n_layers"));
    let mut deep = with(&["model", "n_layers"], json!(1000));
    deep["model"]["hidden_dim"] = json!(1024);
    count(refused(deep, "model.n_layers"));
    count(refused(with(&["model", "output_dim"], json!(usize::MAX)), "model.output_dim"));
    count(refused(with(&["task", "seq_len"], json!(1_000_000_000_000u64)), "task.seq_len"));
    count(refused(with(&["task"], json!({"task": "copy_memory", "delay": usize::MAX})), "task: delay + 2·n_copy"));
    count(refused(
        with(&["task"], json!({"task": "copy_memory", "delay": 5, "n_copy": usize::MAX / 2 + 1})),
        "task: delay + 2·n_copy",
    ));
    count(refused(with(&["task"], json!({"task": "temporal_order", "seq_len": usize::MAX})), "task.seq_len"));
    count(refused(with(&["batch_size"], json!(1_000_000_000u64)), "batch_size"));
    count(refused(with(&["batch_size"], json!(10_000_000)), "batch_size"));
    count(refused(with(&["eval_batch"], json!(1_000_000_000u64)), "eval_batch"));
    count(refused(with(&["eval_batch"], json!(10_000_000)), "eval_batch"));
    let mut long = with(&["task", "seq_len"], json!(100_000_000));
    long["batch_size"] = json!(64);
    count(refused(long, "task.seq_len"));
    let bn = json!({"kind": "lstm", "norm": {"kind": "batch", "placement": "full", "eps": 1e-5, "gamma_init": 0.1,
                                              "momentum": 0.1, "time_steps": 1_000_000_000_000u64}});
    count(refused(with(&["model", "cell"], bn), "model.cell.norm.time_steps"));
    let bn = json!({"kind": "gru", "norm": {"kind": "batch", "placement": "full", "eps": 1e-5, "gamma_init": 0.1,
                                             "momentum": 0.1, "time_steps": 100_000_000}});
    count(refused(with(&["model", "cell"], bn), "model.cell.norm.time_steps"));
    // from Rust, each constructor before it allocates
    let mut rng = seeded_rng(0);
    let e = LstmConfig::new(1 << 20, 1 << 20).init::<f32>(&mut rng).unwrap_err();
    assert!(e.to_string().contains("hidden_dim"), "{e}");
    count(e);
    count(LstmConfig::new(3, usize::MAX).init::<f32>(&mut rng).unwrap_err());
    let e = BatchNormConfig::new(1 << 16).with_time_steps(1 << 20).init::<f32>().unwrap_err();
    assert!(e.to_string().contains("time_steps"), "{e}");
    count(e);
    let e = NormConfig::batch(NormPlacement::Full, usize::MAX).validate().unwrap_err();
    assert!(e.to_string().contains("time_steps"), "{e}");
    count(e);
    count(Init::Zeros.array2::<f32>(1 << 20, 1 << 20, &mut rng).unwrap_err());
    let task = AddingConfig::new(1 << 20).build().expect("a long task is fine until sampled");
    let e = task.sample::<f32>(1 << 16, &mut rng).unwrap_err();
    assert!(e.to_string().contains("batch"), "{e}");
    count(e);
    count(TemporalOrderConfig::new(usize::MAX).build().unwrap_err());
    count(CopyMemoryConfig::new(usize::MAX - 5).with_n_copy(3).build().unwrap_err());
    let model = ModelConfig::new(1 << 30, 8, 1, CellConfig::rnn(), rnnlab_train::LossKind::MseLast);
    let e = model.build::<f32>().unwrap_err();
    assert!(e.to_string().contains("input_dim"), "{e}");
    count(e);
    // from a state.json: a checkpoint whose config asks for too much is refused on resume
    let dir = std::env::temp_dir().join(format!("rnnlab-limits-{}", std::process::id()));
    let cfg: TrainConfig = serde_json::from_value(base()).expect("valid");
    Trainer::<f32>::new(cfg).and_then(|t| t.save_checkpoint(&dir)).expect("a small checkpoint saves");
    // The newest checkpoint's state, edited and sealed again (a writer that knows the format,
    // so the checksum passes and the config's limits are what refuses it).
    let latest = rnnlab_train::latest_checkpoint(&dir).expect("listed").expect("saved");
    let state_path = latest.join(rnnlab_train::STATE_FILE);
    let mut state: Value = serde_json::from_slice(&std::fs::read(&state_path).expect("written")).expect("json");
    state["state"]["config"]["model"]["hidden_dim"] = json!(1_000_000_000u64);
    let body = serde_json::to_vec(&state["state"]).expect("json");
    std::fs::write(&state_path, crate::hostile_inputs::seal(&body)).expect("writable");
    match Trainer::<f32>::resume(&dir) {
        Ok(_) => panic!("an edited state.json asking for 10⁹ units was resumed"),
        Err(e) => {
            assert!(e.to_string().contains("hidden_dim"), "refused by the limit, not the checksum: {e}");
            count(e)
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    n
}

#[test]
fn hostile_sizes_are_refused_under_a_memory_limit() {
    if std::env::var_os(CHILD_ENV).is_some() {
        println!("hostile sizes: {} refused", hostile_sizes());
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let name = "limits::hostile_sizes_are_refused_under_a_memory_limit";
    // `ulimit -v` is the shell's setrlimit(RLIMIT_AS): no unsafe code here, and a failed
    // allocation in the child is an abort there, seen here as a failed exit.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {LIMIT_KIB} && exec \"$0\" \"$@\""))
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .expect("sh runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the child failed ({:?}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("hostile sizes: 26 refused"), "the child did not run every case:\n{stdout}\n{stderr}");
}

/// Every JSON object under `v` (the root included), by path.
fn objects(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => {
            out.push(path.clone());
            for (k, child) in m {
                path.push(k.clone());
                objects(child, path, out);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                path.push(i.to_string());
                objects(child, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn at<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match v {
        Value::Array(a) => &mut a[k.parse::<usize>().expect("an index")],
        other => &mut other[k.as_str()],
    })
}

/// Configs that between them hold every config type: each task, optimizer, clip, schedule,
/// cell kind, normalisation and read-out, and initialisers with struct variants.
fn every_config() -> Vec<TrainConfig> {
    let task = AddingConfig::new(20);
    let rescaled = Init::rescaled(Init::Uniform { low: -0.1, high: 0.1 }, rnnlab_init::Rescale::SpectralRadius(0.9));
    let cells = [
        CellConfig::Rnn(RnnSpec::new().with_w_hh_init(rescaled).with_norm(NormConfig::layer(NormPlacement::Full))),
        CellConfig::Lstm(LstmSpec::new().with_norm(NormConfig::batch(NormPlacement::InputOnly, 5))),
        CellConfig::Gru(GruSpec::new()),
    ];
    let tasks: [TaskConfig; 4] = [
        task.clone().into(),
        CopyMemoryConfig::new(5).into(),
        TemporalOrderConfig::new(20).into(),
        rnnlab_tasks::DigitsConfig::new().into(),
    ];
    let mut out = Vec::new();
    for (k, cell) in cells.into_iter().enumerate() {
        let model = ModelConfig::for_task(&task.build().expect("valid"), 8, cell).with_readout(ReadoutConfig {
            weight_init: Init::Normal { mean: 0.0, std: 0.1 },
            bias_init: Init::Constant { value: 0.0 },
        });
        let optimizer: [rnnlab_optim::OptimizerConfig; 3] =
            [AdamConfig::new(0.01).into(), SgdConfig::new(0.1).into(), RmsPropConfig::new(0.01).into()];
        out.push(
            TrainConfig::new(tasks[k].clone(), model, optimizer[k].clone())
                .with_clip(ClipConfig::global_norm(1.0))
                .with_schedule(LrSchedule::LinearWarmup {
                    warmup_steps: 3,
                    then: Box::new(LrSchedule::Step { step_size: 5, gamma: 0.5 }),
                }),
        );
    }
    out
}

#[test]
fn every_config_refuses_unknown_fields_and_array_forms_at_every_depth() {
    let mut checked = 0;
    for cfg in every_config() {
        let good = serde_json::to_value(&cfg).expect("serialisable");
        let back: TrainConfig = serde_json::from_value(good.clone()).expect("round trip");
        assert_eq!(back, cfg);
        let mut paths = Vec::new();
        objects(&good, &mut Vec::new(), &mut paths);
        for path in paths {
            let mut unknown = good.clone();
            if let Value::Object(m) = at(&mut unknown, &path) {
                m.insert("zz_unknown".into(), json!(1));
            }
            assert!(serde_json::from_value::<TrainConfig>(unknown).is_err(), "unknown field at {path:?} accepted");
            let mut array = good.clone();
            let node = at(&mut array, &path);
            let values: Vec<Value> = node.as_object().map(|m| m.values().cloned().collect()).unwrap_or_default();
            *node = Value::Array(values);
            assert!(serde_json::from_value::<TrainConfig>(array.clone()).is_err(), "array form at {path:?} accepted");
            // from text too (serde_json's reader and its Value take different paths)
            let text = serde_json::to_string(&array).expect("json");
            assert!(serde_json::from_str::<TrainConfig>(&text).is_err(), "array form at {path:?} accepted from text");
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} objects walked");
}
