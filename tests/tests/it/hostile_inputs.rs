//! Property-based hostile inputs (proptest): the parsers — `TrainConfig` JSON, the suite's
//! grid JSON, a checkpoint's `state.json` and `model.safetensors`, `read_state_dict` and
//! `load_torch_rnn_weights` — given arbitrary bytes and mutated valid documents, and the
//! model API given generated shapes, sizes and values: an `Err` or a finite `Ok`, never a
//! panic. Case counts are fixed and small so the whole file runs in seconds; a failure is
//! shrunk and printed (nothing is written to the source tree).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ndarray::{Array1, Array2, Array3};
use proptest::prelude::*;
use proptest::sample::Index;
use rnnlab_cells::{LstmConfig, Recurrent};
use rnnlab_core::{Float, Parameterized, seeded_rng};
use rnnlab_optim::{AdamConfig, ClipConfig, LrSchedule, SgdConfig};
use rnnlab_suite::Grid;
use rnnlab_tasks::{AddingConfig, Batch, CopyMemoryConfig, Targets};
use rnnlab_train::{
    CellConfig, DtypePolicy, GradOptions, LossKind, MODEL_FILE, ModelConfig, Recorder, STATE_FILE, SeqModel,
    TrainConfig, Trainer, latest_checkpoint, load_torch_rnn_weights, read_state_dict, torch_rnn_weights_bytes,
};
use serde_json::{Value, json};

/// `cases` cases from a fixed seed (the same cases on every run), nothing persisted.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(2013),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- mutations

/// One edit of a document's bytes.
#[derive(Clone, Debug)]
enum ByteEdit {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| ByteEdit::Flip(i, b)),
        (any::<Index>(), prop::sample::select(b"{}[]\":,-+.0123456789eE ntfa\\\x00\xff".to_vec()))
            .prop_map(|(i, b)| ByteEdit::Set(i, b)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, v)| ByteEdit::Insert(i, v)),
        (any::<Index>(), 1usize..16).prop_map(|(i, n)| ByteEdit::Delete(i, n)),
        any::<Index>().prop_map(ByteEdit::Truncate),
    ]
}

fn apply_bytes(mut b: Vec<u8>, edits: &[ByteEdit]) -> Vec<u8> {
    for e in edits {
        let n = b.len();
        match e {
            ByteEdit::Flip(i, bit) if n > 0 => b[i.index(n)] ^= 1 << bit,
            ByteEdit::Set(i, v) if n > 0 => b[i.index(n)] = *v,
            ByteEdit::Insert(i, v) => {
                let at = i.index(n + 1);
                b.splice(at..at, v.iter().copied());
            }
            ByteEdit::Delete(i, k) if n > 0 => {
                let at = i.index(n);
                b.drain(at..(at + k).min(n));
            }
            ByteEdit::Truncate(i) => b.truncate(i.index(n + 1)),
            _ => {}
        }
    }
    b
}

/// A hostile JSON value: extreme numbers, wrong types, known words in the wrong place.
fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop::sample::select(vec![0u64, 1, 2, 3, 7, 255, 1 << 16, 1 << 31, 1 << 32, 1 << 40, 1 << 62, u64::MAX])
            .prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![
            0.0f64,
            -0.0,
            1.0,
            -1.0,
            0.5,
            1e-8,
            1e-30,
            1e-50,
            5e-324,
            1e30,
            1e39,
            1e300,
            -1e300,
            f64::MAX,
            f64::MIN_POSITIVE
        ])
        .prop_map(|v| json!(v)),
        any::<f64>().prop_filter("JSON numbers are finite", |v| v.is_finite()).prop_map(|v| json!(v)),
        prop::sample::select(vec![
            "",
            "lstm",
            "gru",
            "rnn",
            "custom",
            "adam",
            "sgd",
            "rmsprop",
            "adding",
            "copy_memory",
            "digits",
            "data",
            "batch",
            "layer",
            "full",
            "input_only",
            "global_norm",
            "mse_last",
            "zeros",
            "NaN",
            "inf",
            "f64",
            "F16",
        ])
        .prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
        Just(json!([1, 2, 3])),
        Just(json!({"kind": "lstm"})),
    ]
}

/// One edit of a JSON document's structure.
#[derive(Clone, Debug)]
enum JsonEdit {
    /// Replace the value at a (randomly chosen) path.
    Replace(Index, Value),
    /// Remove an object's field.
    Remove(Index),
    /// Add an unknown field to an object.
    AddField(Index, Value),
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        4 => (any::<Index>(), hostile_value()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        1 => any::<Index>().prop_map(JsonEdit::Remove),
        1 => (any::<Index>(), hostile_value()).prop_map(|(i, v)| JsonEdit::AddField(i, v)),
    ]
}

/// Every path (as JSON pointers) in `v` below `prefix`, skipping subtrees `skip` rejects.
fn paths(v: &Value, at: String, out: &mut Vec<String>, skip: &dyn Fn(&str) -> bool) {
    if skip(&at) {
        return;
    }
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| paths(c, format!("{at}/{k}"), out, skip)),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| paths(c, format!("{at}/{i}"), out, skip)),
        _ => {}
    }
    out.push(at);
}

fn apply_json(mut v: Value, edits: &[JsonEdit], skip: &dyn Fn(&str) -> bool) -> Value {
    for e in edits {
        let mut all = Vec::new();
        paths(&v, String::new(), &mut all, skip);
        match e {
            JsonEdit::Replace(i, new) if !all.is_empty() => {
                let p = &all[i.index(all.len())];
                if let Some(slot) = v.pointer_mut(p) {
                    *slot = new.clone();
                }
            }
            JsonEdit::Remove(i) | JsonEdit::AddField(i, _) if !all.is_empty() => {
                let p = &all[i.index(all.len())];
                let (parent, key) = p.rsplit_once('/').unwrap_or(("", p));
                match (e, v.pointer_mut(parent)) {
                    (JsonEdit::Remove(_), Some(Value::Object(m))) => {
                        m.remove(key);
                    }
                    (JsonEdit::AddField(_, new), Some(Value::Object(m))) => {
                        m.insert("unexpected_field".into(), new.clone());
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    v
}

/// A document's bytes: arbitrary, byte-edited or structurally edited.
fn document(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let value: Value = serde_json::from_slice(&base).expect("the base document is JSON");
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256),
        3 => prop::collection::vec(byte_edit(), 1..4).prop_map(move |e| apply_bytes(base.clone(), &e)),
        4 => prop::collection::vec(json_edit(), 1..4)
            .prop_map(move |e| serde_json::to_vec(&apply_json(value.clone(), &e, &|_| false)).expect("json")),
    ]
}

// ---------------------------------------------------------------- TrainConfig and grids

fn base_configs() -> Vec<TrainConfig> {
    use rnnlab_cells::{NormConfig, NormPlacement};
    let adding = AddingConfig::new(6);
    let copy = CopyMemoryConfig::new(3).with_n_copy(2);
    vec![
        TrainConfig::new(
            adding.clone().into(),
            ModelConfig::for_task(&adding.build().expect("task"), 4, CellConfig::lstm()),
            AdamConfig::new(1e-2).into(),
        )
        .with_clip(ClipConfig::global_norm(1.0))
        .with_n_steps(3),
        TrainConfig::new(
            copy.clone().into(),
            ModelConfig::for_task(
                &copy.build().expect("task"),
                4,
                CellConfig::from(rnnlab_train::GruSpec::new().with_norm(NormConfig::batch(NormPlacement::Full, 8))),
            ),
            SgdConfig::new(0.1).into(),
        )
        .with_schedule(LrSchedule::default())
        .with_batch_size(3),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    /// Any bytes given as a `TrainConfig`: parsing and validation return, and a config they
    /// accept survives a JSON round trip (so it holds no NaN or ∞, which JSON cannot hold).
    #[test]
    fn train_config_json_is_err_or_a_config_that_round_trips(
        bytes in (0usize..2).prop_flat_map(|i| document(serde_json::to_vec_pretty(&base_configs()[i]).expect("json")))
    ) {
        if let Ok(c) = serde_json::from_slice::<TrainConfig>(&bytes)
            && c.validate().is_ok()
        {
            let text = serde_json::to_string(&c).expect("a config serialises");
            let back: TrainConfig = serde_json::from_str(&text).expect("an accepted config parses again");
            prop_assert_eq!(back, c);
        }
    }
}

/// A valid grid: the quick grid with each experiment's first run only.
fn base_grid() -> Vec<u8> {
    let mut v: Value =
        serde_json::from_str(include_str!("../../../crates/suite/grids/quick.json")).expect("the quick grid is JSON");
    for e in v["experiments"].as_array_mut().expect("experiments") {
        e["runs"].as_array_mut().expect("runs").truncate(1);
    }
    let bytes = serde_json::to_vec(&v).expect("json");
    Grid::parse("quick", std::str::from_utf8(&bytes).expect("utf-8")).expect("the trimmed grid is valid");
    bytes
}

proptest! {
    #![proptest_config(config(256))]

    /// Any text given as a grid: `Grid::parse` returns, and every run of a grid it accepts
    /// validates.
    #[test]
    fn grid_json_is_err_or_a_valid_grid(bytes in document(base_grid())) {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(g) = Grid::parse("prop", &text) {
            for (_, r) in g.runs() {
                prop_assert!(r.config.validate().is_ok(), "{}", r.id);
            }
        }
    }
}

// ---------------------------------------------------------------- checkpoints

/// CRC-64/XZ, written here from its definition (an independent reader of the documented
/// format): reflected ECMA-182 polynomial, initial and final value all ones.
fn crc64_xz(bytes: &[u8]) -> u64 {
    let mut crc = !0u64;
    for &b in bytes {
        crc ^= u64::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xC96C_5795_D787_0F42 } else { crc >> 1 };
        }
    }
    !crc
}

/// A `state.json` of format 2 around `body`, as the train README documents it.
pub(crate) fn seal(body: &[u8]) -> Vec<u8> {
    let mut out =
        format!("{{\n\"format_version\": 2,\n\"checksum\": \"crc64-xz:{:016x}\",\n\"state\": ", crc64_xz(body))
            .into_bytes();
    out.extend_from_slice(body);
    out.extend_from_slice(b"\n}\n");
    out
}

/// A checkpoint after 3 steps of a 2-layer batch-normalised LSTM: (model bytes, state bytes).
fn checkpoint() -> &'static (Vec<u8>, Vec<u8>) {
    static FILES: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    FILES.get_or_init(|| {
        use rnnlab_cells::{NormConfig, NormPlacement};
        let task = AddingConfig::new(5);
        let cell = CellConfig::from(rnnlab_train::LstmSpec::new().with_norm(NormConfig::batch(NormPlacement::Full, 5)));
        let model = ModelConfig::for_task(&task.build().expect("task"), 4, cell).with_n_layers(2);
        let cfg = TrainConfig::new(task.into(), model, AdamConfig::new(1e-2).into())
            .with_batch_size(4)
            .with_eval_batch(4)
            .with_n_steps(10);
        let mut t = Trainer::<f32>::new(cfg).expect("config");
        t.run(&mut Recorder { stop_after: Some(3), ..Recorder::default() }).expect("run");
        let dir = scratch("checkpoint-base");
        t.save_checkpoint(&dir).expect("save");
        let c = latest_checkpoint(&dir).expect("list").expect("saved");
        let files =
            (std::fs::read(c.join(MODEL_FILE)).expect("model"), std::fs::read(c.join(STATE_FILE)).expect("state"));
        let _ = std::fs::remove_dir_all(&dir);
        files
    })
}

/// A fresh directory for one property (cases of one property run one after another).
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rnnlab-prop-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Resumes the checkpoint of `model` and `state` in `dir`; on `Ok`, every weight is finite
/// and one more training step returns `Err` or a finite loss.
fn resume_is_err_or_finite(dir: &Path, model: &[u8], state: &[u8]) -> Result<bool, TestCaseError> {
    std::fs::write(dir.join(MODEL_FILE), model).expect("write");
    std::fs::write(dir.join(STATE_FILE), state).expect("write");
    let Ok(mut t) = Trainer::<f32>::resume(dir) else { return Ok(false) };
    let mut finite = true;
    t.model().visit_params(&mut |_, p| finite &= p.value.iter().all(|v| v.is_finite()));
    prop_assert!(finite, "a resumed model holds a non-finite weight");
    let mut rec = Recorder { stop_after: Some(1), ..Recorder::default() };
    if t.run(&mut rec).is_ok() && t.diverged().is_none() {
        prop_assert!(rec.steps.iter().all(|m| m.loss.is_finite()));
    }
    Ok(true)
}

proptest! {
    #![proptest_config(config(256))]

    /// `state.json` with its bytes edited, or replaced by arbitrary bytes: always refused
    /// (the checksum), unless the edit changed nothing.
    #[test]
    fn an_edited_state_json_is_always_refused(edits in prop::collection::vec(byte_edit(), 1..4), junk in prop::collection::vec(any::<u8>(), 0..64), use_junk in any::<bool>()) {
        let (model, state) = checkpoint();
        let bad = if use_junk { junk } else { apply_bytes(state.clone(), &edits) };
        let dir = scratch("state-bytes");
        let loaded = resume_is_err_or_finite(&dir, model, &bad)?;
        prop_assert_eq!(loaded, &bad == state);
    }

    /// `state.json` edited by a writer that knows the format (the body's structure edited,
    /// then sealed again, so the checksum passes): `Err` or a finite `Ok`, the optimizer's
    /// step counters included (a counter at `u64::MAX` is refused on load). Left alone here:
    /// the saved config (its parser has its own property above, and `limits.rs` resumes a
    /// sealed state whose config asks for too much under a memory limit).
    #[test]
    fn a_resealed_edited_state_is_err_or_finite(edits in prop::collection::vec(json_edit(), 1..3)) {
        let (model, state) = checkpoint();
        let v: Value = serde_json::from_slice(state).expect("json");
        let skip = |p: &str| p.starts_with("/config");
        let body = apply_json(v["state"].clone(), &edits, &skip);
        let dir = scratch("state-sealed");
        resume_is_err_or_finite(&dir, model, &seal(&serde_json::to_vec_pretty(&body).expect("json")))?;
    }

    /// `model.safetensors` with its bytes edited: always refused (its checksum and size are in
    /// `state.json`), unless the edit changed nothing.
    #[test]
    fn an_edited_weights_file_is_always_refused(edits in prop::collection::vec(byte_edit(), 1..4)) {
        let (model, state) = checkpoint();
        let bad = apply_bytes(model.clone(), &edits);
        let dir = scratch("model-bytes");
        let loaded = resume_is_err_or_finite(&dir, &bad, state)?;
        prop_assert_eq!(loaded, &bad == model);
    }
}

// ---------------------------------------------------------------- safetensors readers

/// A safetensors file with its header (JSON) edited structurally; the length prefix fixed.
fn edit_header(bytes: &[u8], edits: &[JsonEdit]) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header json");
    let header = serde_json::to_vec(&apply_json(header, edits, &|_| false)).expect("json");
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

fn lstm_stack() -> Recurrent<f32, rnnlab_cells::Lstm<f32>> {
    let layers = (0..2)
        .map(|l| LstmConfig::new(if l == 0 { 3 } else { 4 }, 4).init(&mut seeded_rng(l as u64)).expect("sizes"))
        .collect();
    Recurrent::new(layers).expect("stack")
}

fn param_bits<F: Float, M: Parameterized<F>>(m: &M) -> Vec<u64> {
    let mut v = Vec::new();
    m.visit_params(&mut |_, p| v.extend(p.value.iter().map(|x| x.as_f64().to_bits())));
    v
}

/// A safetensors document: arbitrary bytes, bytes edited, or the header edited.
fn safetensors_doc(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..128),
        2 => prop::collection::vec(byte_edit(), 1..4).prop_map({
            let b = base.clone();
            move |e| apply_bytes(b.clone(), &e)
        }),
        3 => prop::collection::vec(json_edit(), 1..3).prop_map(move |e| edit_header(&base, &e)),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    /// `read_state_dict` (both policies, both float types), `load_torch_rnn_weights` into an
    /// LSTM stack and `SeqModel::load_safetensors_bytes` on hostile files: `Err` leaving the
    /// model as it was, or `Ok` with every weight finite.
    #[test]
    fn safetensors_readers_are_err_or_finite(
        (which, bytes) in (0usize..2).prop_flat_map(|w| {
            let base = if w == 0 {
                torch_rnn_weights_bytes(&lstm_stack()).expect("bytes")
            } else {
                checkpoint().0.clone()
            };
            (Just(w), safetensors_doc(base))
        })
    ) {
        for policy in [DtypePolicy::Exact, DtypePolicy::Convert] {
            if let Ok(d) = read_state_dict::<f32>(&bytes, policy) {
                prop_assert!(d.iter().all(|(_, a)| a.len() == a.shape().iter().product::<usize>()));
            }
            let _ = read_state_dict::<f64>(&bytes, policy);
        }
        if which == 0 {
            let mut stack = lstm_stack();
            let before = param_bits(&stack);
            match load_torch_rnn_weights(&bytes, &mut stack, DtypePolicy::Convert) {
                Ok(()) => {
                    let mut finite = true;
                    stack.visit_params(&mut |_, p| finite &= p.value.iter().all(|v| v.is_finite()));
                    prop_assert!(finite);
                }
                Err(_) => prop_assert_eq!(param_bits(&stack), before, "an Err wrote into the model"),
            }
        } else {
            let cfg: Value = serde_json::from_slice(&checkpoint().1).expect("state");
            let mc: ModelConfig = serde_json::from_value(cfg["state"]["config"]["model"].clone()).expect("model config");
            let mut model: SeqModel<f32> = mc.build().expect("model");
            let before = param_bits(&model);
            match model.load_safetensors_bytes(&bytes) {
                Ok(()) => {
                    let mut finite = true;
                    model.visit_params(&mut |_, p| finite &= p.value.iter().all(|v| v.is_finite()));
                    prop_assert!(finite);
                }
                Err(_) => prop_assert_eq!(param_bits(&model), before, "an Err wrote into the model"),
            }
        }
    }
}

// ---------------------------------------------------------------- the model API

/// Inputs: finite and moderate, or with a NaN/∞ planted somewhere.
#[derive(Clone, Debug)]
enum Values {
    Moderate(u64),
    NonFinite(u64, Index, u8),
}

#[derive(Clone, Debug)]
struct ModelCase {
    cell: u8,
    input_dim: usize,
    hidden: usize,
    layers: usize,
    output: usize,
    loss: u8,
    bidirectional: bool,
    t: usize,
    b: usize,
    /// Added to `input_dim` for the inputs' width (0: fits).
    width_delta: i8,
    /// 0: targets that fit; 1: another kind; 2: another batch size; 3: a class out of range;
    /// 4: another time length.
    targets: u8,
    values: Values,
    input_grad: bool,
}

fn model_case() -> impl Strategy<Value = ModelCase> {
    (
        (0u8..3, 1usize..4, 1usize..6, 1usize..3, 1usize..4, 0u8..3, any::<bool>()),
        (0usize..5, 0usize..4, prop_oneof![4 => Just(0i8), 1 => -1i8..=1]),
        (prop_oneof![4 => Just(0u8), 1 => 1u8..5], any::<bool>()),
        prop_oneof![
            4 => any::<u64>().prop_map(Values::Moderate),
            1 => (any::<u64>(), any::<Index>(), 0u8..3).prop_map(|(s, i, k)| Values::NonFinite(s, i, k)),
        ],
    )
        .prop_map(
            |(
                (cell, input_dim, hidden, layers, output, loss, bidirectional),
                (t, b, width_delta),
                (targets, input_grad),
                values,
            )| {
                ModelCase {
                    cell,
                    input_dim,
                    hidden,
                    layers,
                    output,
                    loss,
                    bidirectional,
                    t,
                    b,
                    width_delta,
                    targets,
                    values,
                    input_grad,
                }
            },
        )
}

fn batch(c: &ModelCase, loss: LossKind) -> (Batch<f32>, bool) {
    let width = (c.input_dim as i64 + i64::from(c.width_delta)).max(0) as usize;
    let (seed, planted) = match &c.values {
        Values::Moderate(s) => (*s, None),
        Values::NonFinite(s, i, k) => (*s, Some((i, [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][usize::from(*k)]))),
    };
    let mut rng = seeded_rng(seed);
    use rand::Rng as _;
    let mut inputs = Array3::from_shape_simple_fn((c.t, c.b, width), || rng.random_range(-3.0f32..3.0));
    let mut finite = true;
    if let Some((i, v)) = planted
        && !inputs.is_empty()
    {
        let n = inputs.len();
        if let Some(x) = inputs.iter_mut().nth(i.index(n)) {
            *x = v;
            finite = false;
        }
    }
    let (t, b, o) = (c.t, c.b, c.output);
    let kind = if c.targets == 1 { (loss as u8 + 1) % 3 } else { loss as u8 };
    let b_t = if c.targets == 2 { b + 1 } else { b };
    let t_t = if c.targets == 4 { t + 1 } else { t };
    let class = if c.targets == 3 { o } else { o - 1 };
    let targets = match kind {
        0 => Targets::Regression(Array2::from_shape_simple_fn((b_t, o), || rng.random_range(-1.0f32..1.0))),
        1 => Targets::ClassLast(Array1::from_elem(b_t, class)),
        _ => Targets::ClassEveryStep(Array2::from_elem((t_t, b_t), class)),
    };
    (Batch { inputs, targets }, finite)
}

proptest! {
    #![proptest_config(config(512))]

    /// A model from generated sizes given a batch of generated shapes (some not fitting) and
    /// values (some NaN/∞): `predict`, `loss_and_grads` and `evaluate` return `Err`, or — for
    /// finite inputs that fit — `Ok` with a finite loss, finite predictions and finite
    /// gradients. Non-finite inputs are refused.
    #[test]
    fn the_model_api_is_err_or_finite(c in model_case()) {
        let cell = [CellConfig::rnn(), CellConfig::lstm(), CellConfig::gru()][usize::from(c.cell)].clone();
        let loss = [LossKind::MseLast, LossKind::CrossEntropyLast, LossKind::CrossEntropyEvery][usize::from(c.loss)];
        let mut model: SeqModel<f32> = ModelConfig::new(c.input_dim, c.hidden, c.output, cell, loss)
            .with_n_layers(c.layers)
            .with_bidirectional(c.bidirectional)
            .build()
            .expect("sizes within limits build");
        let (batch, finite) = batch(&c, loss);
        if let Ok(p) = model.predict(batch.inputs.view()) {
            prop_assert!(finite, "predict accepted a non-finite input");
            prop_assert!(p.iter().all(|v| v.is_finite()));
        }
        if let Ok((l, a)) = model.evaluate(&batch) {
            prop_assert!(finite, "evaluate accepted a non-finite input");
            prop_assert!(l.is_finite() && (0.0..=1.0).contains(&a), "loss {l}, accuracy {a}");
        }
        model.zero_grad();
        if let Ok(g) = model.loss_and_grads(&batch, GradOptions { init: None, input_grad: c.input_grad }) {
            prop_assert!(finite, "loss_and_grads accepted a non-finite input");
            prop_assert!(g.loss.is_finite(), "loss {}", g.loss);
            prop_assert!(g.predictions.iter().all(|v| v.is_finite()));
            prop_assert!(g.backward.is_some(), "a finite loss of moderate values has a backward pass");
            let mut grads_finite = true;
            model.visit_params(&mut |_, p| grads_finite &= p.grad.iter().all(|v| v.is_finite()));
            prop_assert!(grads_finite);
            if let Some(bwd) = &g.backward
                && let Some(dx) = &bwd.dx
            {
                prop_assert_eq!(dx.shape(), batch.inputs.shape());
                prop_assert!(dx.iter().all(|v| v.is_finite()));
            }
        }
    }
}
