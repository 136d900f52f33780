//! Checkpoints: `model.safetensors` (weights, PyTorch names) and `state.json` (config,
//! optimizer state, generator state, step counter, run progress), written atomically and
//! validated in full when read back.

use std::collections::BTreeMap;
use std::path::Path;

use rnnlab_core::{Error, Float, Result, Rng};
use rnnlab_optim::OptimizerState;
use serde::{Deserialize, Serialize};

use crate::trainer::RunState;
use crate::weights::{commit, stage, sync_dir};
use crate::{CheckpointCell, SeqModel, TrainConfig, Trainer};
use rnnlab_tasks::DataSource;

/// The weights file of a checkpoint directory.
pub const MODEL_FILE: &str = "model.safetensors";
/// The state file of a checkpoint directory.
pub const STATE_FILE: &str = "state.json";
/// The version of `state.json` this crate writes and reads.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;

/// The contents of `state.json`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound = "F: Float")]
struct StateFile<F: Float> {
    format_version: u32,
    dtype: String,
    /// FNV-1a 64 of `model.safetensors`, so a weights file from another save is detected.
    model_checksum: String,
    model_bytes: u64,
    config: TrainConfig,
    optimizer: OptimizerState<F>,
    rng: Rng,
    run: RunState,
    /// Each layer's state beyond its parameters ([`CheckpointCell::extra_state`]: batch-norm
    /// running statistics), by layer index; layers without any are absent.
    #[serde(default)]
    running_stats: BTreeMap<usize, serde_json::Value>,
}

/// FNV-1a, 64 bits, as 16 hex digits.
fn fnv1a64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl<F: Float> Trainer<F> {
    /// Rebuilds a trainer of a built-in model from a checkpoint directory, ready to continue:
    /// calling [`Trainer::run`] then gives bit-identical parameters to a run that was never
    /// interrupted. Nothing in `dir` is modified. (A model of a custom cell or a run on your
    /// own data resumes with [`Trainer::resume_with`].)
    ///
    /// # Errors
    /// - [`Error::Io`] if a file cannot be read.
    /// - [`Error::Format`] for a `state.json` that is not valid JSON of the expected fields
    ///   (truncated, corrupted), of another format version or float type; for a weights file
    ///   that is truncated or corrupted (header length, JSON, offsets), that describes another
    ///   architecture (cell kind, sizes), or whose checksum differs from the one in `state.json`.
    /// - [`Error::Shape`] for a weight tensor of the wrong shape, [`Error::NonFinite`] for a
    ///   non-finite weight, and as [`Trainer::new`] for an invalid config.
    pub fn resume(dir: &Path) -> Result<Self> {
        Self::resume_with(dir, |config| {
            let task = config.validate()?;
            Ok((config.model.build::<F>()?, Box::new(task)))
        })
    }
}

impl<F: Float, C: CheckpointCell<F>> Trainer<F, C> {
    /// Saves a checkpoint into `dir` (created if needed): [`MODEL_FILE`] and [`STATE_FILE`].
    ///
    /// Both files are first written to temporary names in `dir` and fsynced; only then is each
    /// renamed over its old version and the directory fsynced. A failure before the renames
    /// leaves the previous checkpoint untouched. A crash *between* the two renames (a window
    /// of one rename) leaves a new weights file beside the old state; [`Trainer::resume`]
    /// detects that by the weights checksum recorded in `state.json` and refuses it.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file that could not be written.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<()> {
        const OP: &str = "Trainer::save_checkpoint";
        std::fs::create_dir_all(dir).map_err(|e| Error::io(OP, dir.display().to_string(), e))?;
        let model = self.model.to_safetensors()?;
        let state = StateFile {
            format_version: CHECKPOINT_FORMAT_VERSION,
            dtype: F::NAME.to_string(),
            model_checksum: fnv1a64(&model),
            model_bytes: model.len() as u64,
            config: self.config.clone(),
            optimizer: self.optimizer.state(),
            rng: self.rng.clone(),
            run: self.state.clone(),
            running_stats: (self.model.rnn().cells().into_iter().enumerate())
                .filter_map(|(l, c)| c.extra_state().map(|s| s.map(|s| (l, s))).transpose())
                .collect::<Result<_>>()?,
        };
        let json = serde_json::to_vec_pretty(&state).map_err(|e| Error::format(OP, format!("state json: {e}")))?;
        let (model_path, state_path) = (dir.join(MODEL_FILE), dir.join(STATE_FILE));
        let model_tmp = stage(&model_path, &model)?;
        let state_tmp = match stage(&state_path, &json) {
            Ok(t) => t,
            Err(e) => {
                let _ = std::fs::remove_file(&model_tmp);
                return Err(e);
            }
        };
        commit(&model_tmp, &model_path)?;
        commit(&state_tmp, &state_path)?;
        sync_dir(&state_path)
    }

    /// Rebuilds a trainer from a checkpoint directory, ready to continue bit-exactly, for any
    /// cell: `build(config)` makes a fresh model and the data from the saved config (as they
    /// were made for [`Trainer::with_parts`]: e.g. `config.model.build_with(make_cell)` and
    /// your data set), then the weights, the cells' extra state, the optimizer, the generator
    /// and the run's progress are loaded into it. Nothing in `dir` is modified.
    ///
    /// # Errors
    /// As [`Trainer::resume`], as [`Trainer::with_parts`] for what `build` returns, and
    /// whatever `build` returns.
    pub fn resume_with(
        dir: &Path,
        build: impl FnOnce(&TrainConfig) -> Result<(SeqModel<F, C>, Box<dyn DataSource<F>>)>,
    ) -> Result<Self> {
        const OP: &str = "Trainer::resume";
        let (model_path, state_path) = (dir.join(MODEL_FILE), dir.join(STATE_FILE));
        let json = std::fs::read(&state_path).map_err(|e| Error::io(OP, state_path.display().to_string(), e))?;
        let state: StateFile<F> = serde_json::from_slice(&json)
            .map_err(|e| Error::format(OP, format!("{STATE_FILE} is not a valid checkpoint state: {e}")))?;
        if state.format_version != CHECKPOINT_FORMAT_VERSION {
            return Err(Error::format(
                OP,
                format!(
                    "{STATE_FILE} has format version {}, this build reads {CHECKPOINT_FORMAT_VERSION}",
                    state.format_version
                ),
            ));
        }
        if state.dtype != F::NAME {
            return Err(Error::format(
                OP,
                format!("the checkpoint was written by an {} trainer, not {}", state.dtype, F::NAME),
            ));
        }
        let bytes = std::fs::read(&model_path).map_err(|e| Error::io(OP, model_path.display().to_string(), e))?;
        let (model, data) = build(&state.config)?;
        let mut trainer = Trainer::with_parts(state.config, model, data)?;
        for (l, extra) in state.running_stats {
            let mut layers = trainer.model.rnn_mut().cells_mut();
            let n_layers = layers.len();
            let cell = layers.get_mut(l).ok_or_else(|| {
                Error::format(OP, format!("{STATE_FILE}: state of layer {l}, the model has {n_layers} layers"))
            })?;
            cell.load_extra_state(extra).map_err(|e| match e {
                Error::Format { msg, .. } => Error::format(OP, format!("{STATE_FILE}: layer {l}: {msg}")),
                other => other,
            })?;
        }
        trainer.model.load_safetensors_bytes(&bytes).map_err(|e| match e {
            Error::Format { msg, .. } => Error::format(OP, format!("{MODEL_FILE}: {msg}")),
            other => other,
        })?;
        let sum = fnv1a64(&bytes);
        if sum != state.model_checksum || bytes.len() as u64 != state.model_bytes {
            return Err(Error::format(
                OP,
                format!(
                    "{MODEL_FILE} ({} bytes, checksum {sum}) is not the one {STATE_FILE} was saved with ({} bytes, \
                     checksum {}): corrupted, or from another save",
                    bytes.len(),
                    state.model_bytes,
                    state.model_checksum
                ),
            ));
        }
        trainer.optimizer.load_state(state.optimizer).map_err(|e| match e {
            Error::Format { msg, .. } => Error::format(OP, format!("{STATE_FILE} optimizer state: {msg}")),
            other => other,
        })?;
        trainer.rng = state.rng;
        trainer.state = state.run;
        Ok(trainer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trainer::tests::small;
    use crate::{CellConfig, Recorder, Silent};
    use rnnlab_core::Parameterized;
    use std::path::PathBuf;

    /// A fresh directory, unique per call: tests run in parallel, and two of them may use the
    /// same `name` (e.g. a plain and a batch-normalised LSTM are both `resume-lstm-f32`).
    fn tmpdir(name: &str) -> PathBuf {
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("rnnlab-train-ckpt-{name}-{}-{call}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn bits<F: Float>(t: &Trainer<F>) -> Vec<u64> {
        let mut v = Vec::new();
        t.model().visit_params(&mut |_, p| v.extend(p.value.iter().map(|x| x.as_f64().to_bits())));
        v
    }

    fn resume_is_bit_identical<F: Float>(cell: CellConfig) {
        resume_config_is_bit_identical::<F>(small(cell));
    }

    fn resume_config_is_bit_identical<F: Float>(config: TrainConfig) {
        let dir = tmpdir(&format!("resume-{}-{}", config.model.cell.kind(), F::NAME));
        let mut full = Trainer::<F>::new(config.clone()).unwrap();
        let mut full_rec = Recorder::default();
        let full_summary = full.run(&mut full_rec).unwrap();

        let mut first = Trainer::<F>::new(config).unwrap();
        let mut rec = Recorder { stop_after: Some(5), ..Recorder::default() };
        first.run(&mut rec).unwrap();
        first.save_checkpoint(&dir).unwrap();
        drop(first);
        let mut resumed = Trainer::<F>::resume(&dir).unwrap();
        assert_eq!(resumed.step(), 5);
        let mut rest = Recorder::default();
        let summary = resumed.run(&mut rest).unwrap();
        assert_eq!(bits(&resumed), bits(&full), "parameters");
        assert_eq!(resumed.optimizer().state(), full.optimizer().state());
        assert_eq!(resumed.rng, full.rng);
        rec.steps.extend(rest.steps);
        assert_eq!(rec.steps, full_rec.steps, "every step's metrics");
        assert_eq!(summary.final_eval, full_summary.final_eval);
        assert_eq!(summary.steps, full_summary.steps);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn resume_gives_bit_identical_parameters_f32_every_cell() {
        for cell in [CellConfig::rnn(), CellConfig::lstm(), CellConfig::gru()] {
            resume_is_bit_identical::<f32>(cell);
        }
    }

    #[test]
    fn resume_gives_bit_identical_parameters_bidirectional() {
        use rnnlab_cells::{NormConfig, NormPlacement};
        let bn = CellConfig::from(crate::LstmSpec::new().with_norm(NormConfig::batch(NormPlacement::Full, 8)));
        for cell in [CellConfig::gru(), bn] {
            let mut cfg = small(cell);
            cfg.model = cfg.model.with_bidirectional(true);
            resume_config_is_bit_identical::<f32>(cfg);
        }
    }

    #[test]
    fn resume_gives_bit_identical_parameters_f64() {
        resume_is_bit_identical::<f64>(CellConfig::lstm());
    }

    #[test]
    fn resume_with_batch_norm_restores_running_statistics() {
        use rnnlab_cells::{NormConfig, NormPlacement};
        let bn = CellConfig::from(crate::LstmSpec::new().with_norm(NormConfig::batch(NormPlacement::Full, 8)));
        resume_is_bit_identical::<f32>(bn.clone());
        let ln = CellConfig::from(crate::GruSpec::new().with_norm(NormConfig::layer(NormPlacement::Full)));
        resume_is_bit_identical::<f32>(ln);
        // The running statistics are in state.json, and a foreign entry is refused.
        let dir = tmpdir("bn-stats");
        let mut t = Trainer::<f32>::new(small(bn)).unwrap();
        t.run(&mut Recorder { stop_after: Some(2), ..Recorder::default() }).unwrap();
        t.save_checkpoint(&dir).unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(STATE_FILE)).unwrap()).unwrap();
        assert_eq!(v["running_stats"].as_object().map(|m| m.len()), Some(2), "both layers");
        v["running_stats"]["7"] = v["running_stats"]["0"].clone();
        std::fs::write(dir.join(STATE_FILE), serde_json::to_vec(&v).unwrap()).unwrap();
        let e = Trainer::<f32>::resume(&dir).unwrap_err();
        assert!(e.to_string().contains("layer 7"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A saved checkpoint after 4 steps, with its files' bytes.
    fn saved(name: &str) -> (PathBuf, Vec<u8>, Vec<u8>) {
        let dir = tmpdir(name);
        let mut t = Trainer::<f32>::new(small(CellConfig::lstm())).unwrap();
        t.run(&mut Recorder { stop_after: Some(4), ..Recorder::default() }).unwrap();
        t.save_checkpoint(&dir).unwrap();
        let m = std::fs::read(dir.join(MODEL_FILE)).unwrap();
        let s = std::fs::read(dir.join(STATE_FILE)).unwrap();
        (dir, m, s)
    }

    /// A copy of the checkpoint with one file replaced; resuming it must fail naming `what`,
    /// and the original must stay byte-identical and loadable.
    fn rejected(name: &str, file: &str, edit: impl Fn(Vec<u8>) -> Vec<u8>, what: &[&str]) {
        let (dir, m, s) = saved(name);
        let bad = dir.join("bad");
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(bad.join(MODEL_FILE), &m).unwrap();
        std::fs::write(bad.join(STATE_FILE), &s).unwrap();
        let original = std::fs::read(bad.join(file)).unwrap();
        std::fs::write(bad.join(file), edit(original)).unwrap();
        let e = Trainer::<f32>::resume(&bad).unwrap_err().to_string();
        for w in what {
            assert!(e.contains(w), "{name}: `{w}` not in: {e}");
        }
        assert_eq!(std::fs::read(dir.join(MODEL_FILE)).unwrap(), m);
        assert_eq!(std::fs::read(dir.join(STATE_FILE)).unwrap(), s);
        assert_eq!(Trainer::<f32>::resume(&dir).unwrap().step(), 4);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn edit_state(f: impl Fn(&mut serde_json::Value)) -> impl Fn(Vec<u8>) -> Vec<u8> {
        move |bytes| {
            let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            f(&mut v);
            serde_json::to_vec(&v).unwrap()
        }
    }

    #[test]
    fn truncated_weights_are_rejected() {
        rejected("trunc-model", MODEL_FILE, |b| b[..b.len() - 10].to_vec(), &[MODEL_FILE, "truncated"]);
        rejected("trunc-model-head", MODEL_FILE, |b| b[..5].to_vec(), &[MODEL_FILE, "truncated"]);
    }

    #[test]
    fn truncated_state_is_rejected() {
        rejected("trunc-state", STATE_FILE, |b| b[..b.len() / 2].to_vec(), &[STATE_FILE]);
    }

    #[test]
    fn a_flipped_header_byte_is_rejected() {
        // Byte 8 is the header's opening brace.
        rejected(
            "flip-brace",
            MODEL_FILE,
            |mut b| {
                b[8] ^= 0xFF;
                b
            },
            &[MODEL_FILE, "corrupted"],
        );
        // A dtype letter: "F32" becomes "F\x__2".
        rejected(
            "flip-dtype",
            MODEL_FILE,
            |mut b| {
                let i = b.windows(5).position(|w| w == b"\"F32\"").unwrap() + 2;
                b[i] ^= 0x01;
                b
            },
            &[MODEL_FILE],
        );
        // A digit of a data offset.
        rejected(
            "flip-offset",
            MODEL_FILE,
            |mut b| {
                let i = b.windows(14).position(|w| w == b"data_offsets\":").unwrap() + 16;
                b[i] = if b[i] == b'9' { b'1' } else { b[i] + 1 };
                b
            },
            &[MODEL_FILE],
        );
    }

    #[test]
    fn a_flipped_data_byte_fails_the_checksum() {
        rejected(
            "flip-data",
            MODEL_FILE,
            |mut b| {
                let n = b.len();
                b[n - 3] ^= 0x10;
                b
            },
            &["checksum"],
        );
    }

    #[test]
    fn a_wrong_cell_kind_is_rejected() {
        rejected(
            "wrong-cell",
            STATE_FILE,
            edit_state(|v| v["config"]["model"]["cell"] = serde_json::json!({"kind": "gru"})),
            &["lstm", "gru"],
        );
    }

    #[test]
    fn wrong_shapes_are_rejected() {
        rejected(
            "wrong-shape",
            STATE_FILE,
            edit_state(|v| v["config"]["model"]["hidden_dim"] = serde_json::json!(7)),
            &["2 → 6 → 1", "2 → 7 → 1"],
        );
    }

    #[test]
    fn another_format_version_or_float_type_is_rejected() {
        rejected("version", STATE_FILE, edit_state(|v| v["format_version"] = serde_json::json!(99)), &["version 99"]);
        rejected("dtype", STATE_FILE, edit_state(|v| v["dtype"] = serde_json::json!("f64")), &["f64 trainer"]);
    }

    #[test]
    fn a_mismatched_optimizer_state_is_rejected() {
        rejected(
            "optim",
            STATE_FILE,
            edit_state(|v| v["config"]["optimizer"] = serde_json::json!({"kind": "sgd", "lr": 0.1})),
            &["optimizer state"],
        );
    }

    #[test]
    fn weights_from_another_save_are_rejected() {
        let (dir, _, _) = saved("mixed");
        let mut t = Trainer::<f32>::resume(&dir).unwrap();
        t.run(&mut Recorder { stop_after: Some(1), ..Recorder::default() }).unwrap();
        let newer = t.model().to_safetensors().unwrap();
        // As if a crash fell between the two renames: new weights, old state.
        std::fs::write(dir.join(MODEL_FILE), newer).unwrap();
        let e = Trainer::<f32>::resume(&dir).unwrap_err();
        assert!(e.to_string().contains("from another save"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_save_leaves_the_previous_checkpoint_intact() {
        let (dir, m, s) = saved("failed-save");
        let mut t = Trainer::<f32>::resume(&dir).unwrap();
        t.run(&mut Silent).unwrap();
        // A directory squatting on the state's temporary name makes the save fail midway,
        // after the weights were staged.
        std::fs::create_dir_all(dir.join(format!(".{STATE_FILE}.tmp"))).unwrap();
        assert!(matches!(t.save_checkpoint(&dir), Err(Error::Io { .. })));
        assert_eq!(std::fs::read(dir.join(MODEL_FILE)).unwrap(), m);
        assert_eq!(std::fs::read(dir.join(STATE_FILE)).unwrap(), s);
        assert!(!dir.join(format!(".{MODEL_FILE}.tmp")).exists(), "the staged weights were removed");
        assert_eq!(Trainer::<f32>::resume(&dir).unwrap().step(), 4);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_files_are_io_errors() {
        let dir = tmpdir("missing");
        assert!(matches!(Trainer::<f32>::resume(&dir), Err(Error::Io { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn state_json_is_readable() {
        let (dir, _, s) = saved("readable");
        let v: serde_json::Value = serde_json::from_slice(&s).unwrap();
        assert_eq!(v["format_version"], 1);
        assert_eq!(v["run"]["step"], 4);
        assert_eq!(v["optimizer"]["algorithm"], "adam");
        assert!(v["optimizer"]["params"]["rnn.layers.0.w_ih"].is_object());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
