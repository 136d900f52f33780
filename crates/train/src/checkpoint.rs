//! Checkpoints that survive `kill -9`: each one a directory `checkpoint-{generation}` holding
//! `model.safetensors` (weights, PyTorch names) and `state.json` (config, optimizer state,
//! generator state, step counter, run progress), staged apart and committed by one atomic
//! rename; `state.json` sealed by a CRC-64 of its content, which also records the weights
//! file's CRC-64 and size; everything validated in full when read back.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rnnlab_core::{Error, Float, Result, Rng};
use rnnlab_optim::OptimizerState;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::trainer::RunState;
use crate::{CheckpointCell, SeqModel, TrainConfig, Trainer};
use rnnlab_tasks::DataSource;

/// The weights file of a checkpoint directory.
pub const MODEL_FILE: &str = "model.safetensors";
/// The state file of a checkpoint directory.
pub const STATE_FILE: &str = "state.json";
/// The version of `state.json` this crate writes. It also reads version 1 (the two files
/// directly in the directory, no checksum over `state.json`).
pub const CHECKPOINT_FORMAT_VERSION: u32 = 2;
/// The name of a committed checkpoint directory is this prefix and its generation (decimal).
pub const CHECKPOINT_DIR_PREFIX: &str = "checkpoint-";
/// A checkpoint being written (not yet committed) or one being removed: never read.
const STAGING_PREFIX: &str = ".staging-";
const TRASH_PREFIX: &str = ".trash-";
/// The checksum algorithm's tag in `state.json`.
const CRC_TAG: &str = "crc64-xz:";

/// What `state.json` holds beyond its version and checksum (format 2: the `state` object).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound = "F: Float")]
struct StateBody<F: Float> {
    dtype: String,
    /// `crc64-xz:` and the CRC-64 of `model.safetensors` (format 1: its FNV-1a 64, bare), so
    /// a weights file from another save, or corrupted, is detected.
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

/// Format 2's `state.json`: `checksum` is the CRC-64 of the exact bytes of `state`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[expect(dead_code, reason = "a field of the file, read (through `VersionOnly`) before the envelope is")]
    format_version: u32,
    checksum: String,
    #[serde(borrow)]
    state: &'a RawValue,
}

/// Only the version, whatever else the file holds.
#[derive(Deserialize)]
struct VersionOnly {
    format_version: u32,
}

/// Format 1's `state.json` (read only): the body's fields at the top level, no checksum of
/// its own.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound = "F: Float")]
struct StateV1<F: Float> {
    format_version: u32,
    dtype: String,
    model_checksum: String,
    model_bytes: u64,
    config: TrainConfig,
    optimizer: OptimizerState<F>,
    rng: Rng,
    run: RunState,
    #[serde(default)]
    running_stats: BTreeMap<usize, serde_json::Value>,
}

/// FNV-1a, 64 bits, as 16 hex digits (format 1's weights checksum).
fn fnv1a64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// CRC-64/XZ (ECMA-182 polynomial, reflected, as `xz` uses): detects every error burst of up
/// to 64 bits, so every single flipped bit, with certainty.
fn crc64(bytes: &[u8]) -> u64 {
    const fn table() -> [u64; 256] {
        let mut t = [0u64; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u64;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 == 1 { (c >> 1) ^ 0xC96C_5795_D787_0F42 } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    }
    static TABLE: [u64; 256] = table();
    let mut crc = !0u64;
    for &b in bytes {
        // The index is masked to 0..=255: in bounds.
        crc = TABLE[((crc ^ u64::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// `crc64-xz:` and 16 lower-case hex digits.
fn crc_tag(bytes: &[u8]) -> String {
    format!("{CRC_TAG}{:016x}", crc64(bytes))
}

/// The generation of a committed checkpoint directory's name.
fn generation(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(CHECKPOINT_DIR_PREFIX)?;
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The newest committed checkpoint in `dir` (the `checkpoint-{generation}` directory of the
/// highest generation), or `None` if there is none. Directories being written (`.staging-*`)
/// or removed (`.trash-*`) are never returned: a committed directory is always complete.
///
/// # Errors
/// [`Error::Io`] if `dir` cannot be listed.
///
/// # Examples
/// ```
/// # use rnnlab_train::latest_checkpoint;
/// let dir = std::env::temp_dir().join(format!("rnnlab-latest-doc-{}", std::process::id()));
/// std::fs::create_dir_all(dir.join("checkpoint-0000000002"))?;
/// std::fs::create_dir_all(dir.join("checkpoint-0000000010"))?;
/// std::fs::create_dir_all(dir.join(".staging-0000000011-1"))?;
/// assert_eq!(latest_checkpoint(&dir)?, Some(dir.join("checkpoint-0000000010")));
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn latest_checkpoint(dir: &Path) -> Result<Option<PathBuf>> {
    Ok(committed(dir, "latest_checkpoint")?.into_iter().max_by_key(|(g, _)| *g).map(|(_, p)| p))
}

/// Every committed checkpoint directory in `dir` with its generation.
fn committed(dir: &Path, op: &str) -> Result<Vec<(u64, PathBuf)>> {
    let io = |e| Error::io(op, dir.display().to_string(), e);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let Some(g) = entry.file_name().to_str().and_then(generation) else { continue };
        if entry.file_type().map_err(io)?.is_dir() {
            out.push((g, entry.path()));
        }
    }
    Ok(out)
}

/// Writes `bytes` to a new file and fsyncs it.
fn write_synced(op: &str, path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e| Error::io(op, path.display().to_string(), e);
    let mut f = std::fs::File::create(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Fsyncs a directory, so the entries created or renamed in it are durable (Unix only: other
/// systems cannot open a directory as a file).
fn sync_directory(op: &str, dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(op, dir.display().to_string(), e))?;
    #[cfg(not(unix))]
    let _ = (op, dir);
    Ok(())
}

/// Removes what a killed save left behind (`.staging-*`, `.trash-*`), best effort: a leftover
/// is never read, so one that cannot be removed now is harmless.
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(STAGING_PREFIX) || name.starts_with(TRASH_PREFIX) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// `state.json` of format 2: the version, the checksum, then the body as it was hashed.
fn seal(body: &[u8]) -> Vec<u8> {
    let mut json = format!(
        "{{\n\"format_version\": {CHECKPOINT_FORMAT_VERSION},\n\"checksum\": \"{}\",\n\"state\": ",
        crc_tag(body)
    )
    .into_bytes();
    json.extend_from_slice(body);
    json.extend_from_slice(b"\n}\n");
    json
}

/// Parses a `state.json` of format 1 or 2, the checksum of format 2 verified before the body
/// is read. Returns the body and the format version.
fn read_state<F: Float>(json: &[u8]) -> std::result::Result<(StateBody<F>, u32), String> {
    let version = serde_json::from_slice::<VersionOnly>(json)
        .map_err(|e| format!("{STATE_FILE} is not a valid checkpoint state: {e}"))?
        .format_version;
    match version {
        CHECKPOINT_FORMAT_VERSION => {
            let env: Envelope<'_> = serde_json::from_slice(json)
                .map_err(|e| format!("{STATE_FILE} is not a valid checkpoint state: {e}"))?;
            let body = env.state.get().as_bytes();
            let sum = crc_tag(body);
            if env.checksum != sum {
                return Err(format!(
                    "{STATE_FILE} fails its checksum (recorded {}, content {sum}): corrupted",
                    env.checksum
                ));
            }
            let body = serde_json::from_slice(body)
                .map_err(|e| format!("{STATE_FILE} is not a valid checkpoint state: {e}"))?;
            Ok((body, version))
        }
        1 => {
            let v: StateV1<F> = serde_json::from_slice(json)
                .map_err(|e| format!("{STATE_FILE} is not a valid checkpoint state of format version 1: {e}"))?;
            let body = StateBody {
                dtype: v.dtype,
                model_checksum: v.model_checksum,
                model_bytes: v.model_bytes,
                config: v.config,
                optimizer: v.optimizer,
                rng: v.rng,
                run: v.run,
                running_stats: v.running_stats,
            };
            Ok((body, version))
        }
        other => {
            Err(format!("{STATE_FILE} has format version {other}, this build reads {CHECKPOINT_FORMAT_VERSION} and 1"))
        }
    }
}

impl<F: Float> Trainer<F> {
    /// Rebuilds a trainer of a built-in model from the newest checkpoint in `dir` (see
    /// [`Trainer::save_checkpoint`]), ready to continue: calling [`Trainer::run`] then gives
    /// bit-identical parameters to a run that was never interrupted. Nothing in `dir` is
    /// modified. (A model of a custom cell or a run on your own data resumes with
    /// [`Trainer::resume_with`].)
    ///
    /// `dir` may be a directory [`Trainer::save_checkpoint`] wrote into (its newest
    /// `checkpoint-*` is read; staged and half-removed leftovers of a killed save are
    /// ignored), one `checkpoint-*` directory itself, or a directory holding a checkpoint of
    /// format version 1 (`model.safetensors` and `state.json` directly in it).
    ///
    /// # Errors
    /// - [`Error::Io`] if there is no checkpoint in `dir` or a file cannot be read.
    /// - [`Error::Format`] for a `state.json` that fails its checksum, is not valid JSON of the
    ///   expected fields (truncated, corrupted), of another format version or float type; for a
    ///   weights file whose size or checksum differs from the one in `state.json` (truncated,
    ///   corrupted, or from another save), that is corrupted (header length, JSON, offsets) or
    ///   describes another architecture (cell kind, sizes).
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
    /// Saves a checkpoint into `dir` (created if needed) as a new directory
    /// `checkpoint-{generation}` holding [`MODEL_FILE`] and [`STATE_FILE`], committed as a
    /// whole: the two files are written into a staging directory `.staging-*` in `dir` and
    /// fsynced, the staging directory is fsynced, renamed to `checkpoint-{g}` (one atomic
    /// rename, `g` one more than the newest generation present) and `dir` fsynced. Only then
    /// are older `checkpoint-*` directories removed (each renamed to `.trash-*` first, so a
    /// half-removed one is never taken for a checkpoint), and leftovers of an earlier killed
    /// save. A kill at any moment leaves the previous checkpoint or the new one complete,
    /// and [`Trainer::resume`] reads the newest. One process saves into a directory at a
    /// time.
    ///
    /// `state.json` records the CRC-64 and size of `model.safetensors` and is sealed by a
    /// CRC-64 of its own content, so a flipped bit in either file is refused at resume.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file or directory that could not be written; the previous
    /// checkpoint is then untouched and the staging directory removed.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<()> {
        const OP: &str = "Trainer::save_checkpoint";
        std::fs::create_dir_all(dir).map_err(|e| Error::io(OP, dir.display().to_string(), e))?;
        let model = self.model.to_safetensors()?;
        let body = StateBody {
            dtype: F::NAME.to_string(),
            model_checksum: crc_tag(&model),
            model_bytes: model.len() as u64,
            config: self.config.clone(),
            optimizer: self.optimizer.state(),
            rng: self.rng.clone(),
            run: self.state.clone(),
            running_stats: (self.model.rnn().cells().into_iter().enumerate())
                .filter_map(|(l, c)| c.extra_state().map(|s| s.map(|s| (l, s))).transpose())
                .collect::<Result<_>>()?,
        };
        let body = serde_json::to_vec_pretty(&body).map_err(|e| Error::format(OP, format!("state json: {e}")))?;
        let json = seal(&body);

        remove_leftovers(dir);
        let older = committed(dir, OP)?;
        let g = older.iter().map(|(g, _)| *g).max().map_or(Some(1), |g| g.checked_add(1)).ok_or_else(|| {
            Error::config(OP, format!("{}: the checkpoint generation counter is exhausted", dir.display()))
        })?;
        let staging = dir.join(format!("{STAGING_PREFIX}{g:010}-{}", std::process::id()));
        let target = dir.join(format!("{CHECKPOINT_DIR_PREFIX}{g:010}"));
        let written = (|| {
            std::fs::create_dir(&staging).map_err(|e| Error::io(OP, staging.display().to_string(), e))?;
            write_synced(OP, &staging.join(MODEL_FILE), &model)?;
            write_synced(OP, &staging.join(STATE_FILE), &json)?;
            sync_directory(OP, &staging)?;
            std::fs::rename(&staging, &target).map_err(|e| Error::io(OP, target.display().to_string(), e))
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        sync_directory(OP, dir)?;
        // Committed. Removing the older ones is best effort: resume reads the newest anyway.
        for (old, path) in older {
            let trash = dir.join(format!("{TRASH_PREFIX}{old:010}-{}", std::process::id()));
            if std::fs::rename(&path, &trash).is_ok() {
                let _ = std::fs::remove_dir_all(&trash);
            }
        }
        Ok(())
    }

    /// Rebuilds a trainer from the newest checkpoint in `dir` (as [`Trainer::resume`] finds
    /// it), ready to continue bit-exactly, for any cell: `build(config)` makes a fresh model
    /// and the data from the saved config (as they were made for [`Trainer::with_parts`]: e.g.
    /// `config.model.build_with(make_cell)` and your data set), then the weights, the cells'
    /// extra state, the optimizer, the generator and the run's progress are loaded into it.
    /// Both files are verified against their checksums before anything in them is used.
    /// Nothing in `dir` is modified.
    ///
    /// # Errors
    /// As [`Trainer::resume`], as [`Trainer::with_parts`] for what `build` returns, and
    /// whatever `build` returns.
    pub fn resume_with(
        dir: &Path,
        build: impl FnOnce(&TrainConfig) -> Result<(SeqModel<F, C>, Box<dyn DataSource<F>>)>,
    ) -> Result<Self> {
        const OP: &str = "Trainer::resume";
        let ckpt = match latest_checkpoint(dir).map_err(|e| match e {
            Error::Io { path, source, .. } => Error::io(OP, path, source),
            other => other,
        })? {
            Some(c) => c,
            None if dir.join(STATE_FILE).is_file() => dir.to_path_buf(),
            None => {
                return Err(Error::io(
                    OP,
                    dir.display().to_string(),
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("no {CHECKPOINT_DIR_PREFIX}* directory and no {STATE_FILE} in it"),
                    ),
                ));
            }
        };
        let at = |msg: String| Error::format(OP, format!("{}: {msg}", ckpt.display()));
        let (model_path, state_path) = (ckpt.join(MODEL_FILE), ckpt.join(STATE_FILE));
        let json = std::fs::read(&state_path).map_err(|e| Error::io(OP, state_path.display().to_string(), e))?;
        let (state, version) = read_state::<F>(&json).map_err(at)?;
        if state.dtype != F::NAME {
            return Err(at(format!("the checkpoint was written by an {} trainer, not {}", state.dtype, F::NAME)));
        }
        let bytes = std::fs::read(&model_path).map_err(|e| Error::io(OP, model_path.display().to_string(), e))?;
        let sum = if version == 1 { fnv1a64(&bytes) } else { crc_tag(&bytes) };
        if bytes.len() as u64 != state.model_bytes {
            return Err(at(format!(
                "{MODEL_FILE} is {} bytes, {STATE_FILE} was saved with one of {} bytes: truncated, corrupted, or \
                 from another save",
                bytes.len(),
                state.model_bytes
            )));
        }
        if sum != state.model_checksum {
            return Err(at(format!(
                "{MODEL_FILE} (checksum {sum}) is not the one {STATE_FILE} was saved with (checksum {}): \
                 corrupted, or from another save",
                state.model_checksum
            )));
        }
        let (model, data) = build(&state.config)?;
        let mut trainer = Trainer::with_parts(state.config, model, data)?;
        for (l, extra) in state.running_stats {
            let mut layers = trainer.model.rnn_mut().cells_mut();
            let n_layers = layers.len();
            let cell = layers
                .get_mut(l)
                .ok_or_else(|| at(format!("{STATE_FILE}: state of layer {l}, the model has {n_layers} layers")))?;
            cell.load_extra_state(extra).map_err(|e| match e {
                Error::Format { msg, .. } => at(format!("{STATE_FILE}: layer {l}: {msg}")),
                other => other,
            })?;
        }
        trainer.model.load_safetensors_bytes(&bytes).map_err(|e| match e {
            Error::Format { msg, .. } => at(format!("{MODEL_FILE}: {msg}")),
            other => other,
        })?;
        trainer.optimizer.load_state(state.optimizer).map_err(|e| match e {
            Error::Format { msg, .. } => at(format!("{STATE_FILE} optimizer state: {msg}")),
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
    use rand::Rng as _;
    use rnnlab_core::Parameterized;

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

    /// The body of a sealed `state.json` as JSON, edited by `f` and sealed again (a writer
    /// that knows the format: the checks behind the checksum still hold).
    fn reseal(bytes: &[u8], f: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        f(&mut v["state"]);
        seal(&serde_json::to_vec_pretty(&v["state"]).unwrap())
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
        let state = latest_checkpoint(&dir).unwrap().unwrap().join(STATE_FILE);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
        assert_eq!(v["state"]["running_stats"].as_object().map(|m| m.len()), Some(2), "both layers");
        let edited =
            reseal(&std::fs::read(&state).unwrap(), |s| s["running_stats"]["7"] = s["running_stats"]["0"].clone());
        std::fs::write(&state, edited).unwrap();
        let e = Trainer::<f32>::resume(&dir).unwrap_err();
        assert!(e.to_string().contains("layer 7"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A saved checkpoint after 4 steps: the directory saved into, and its files' bytes.
    fn saved(name: &str) -> (PathBuf, Vec<u8>, Vec<u8>) {
        let dir = tmpdir(name);
        let mut t = Trainer::<f32>::new(small(CellConfig::lstm())).unwrap();
        t.run(&mut Recorder { stop_after: Some(4), ..Recorder::default() }).unwrap();
        t.save_checkpoint(&dir).unwrap();
        let ckpt = latest_checkpoint(&dir).unwrap().unwrap();
        let m = std::fs::read(ckpt.join(MODEL_FILE)).unwrap();
        let s = std::fs::read(ckpt.join(STATE_FILE)).unwrap();
        (dir, m, s)
    }

    /// The files of `dir`'s newest checkpoint.
    fn files(dir: &Path) -> (Vec<u8>, Vec<u8>) {
        let ckpt = latest_checkpoint(dir).unwrap().unwrap();
        (std::fs::read(ckpt.join(MODEL_FILE)).unwrap(), std::fs::read(ckpt.join(STATE_FILE)).unwrap())
    }

    /// A copy of the checkpoint with one file replaced; resuming it must fail naming `what`,
    /// and the original must stay byte-identical and loadable.
    fn rejected(name: &str, file: &str, edit: impl Fn(Vec<u8>) -> Vec<u8>, what: &[&str]) {
        let (dir, m, s) = saved(name);
        let bad = tmpdir(&format!("{name}-bad"));
        std::fs::write(bad.join(MODEL_FILE), &m).unwrap();
        std::fs::write(bad.join(STATE_FILE), &s).unwrap();
        let original = std::fs::read(bad.join(file)).unwrap();
        std::fs::write(bad.join(file), edit(original)).unwrap();
        let e = Trainer::<f32>::resume(&bad).unwrap_err().to_string();
        for w in what {
            assert!(e.contains(w), "{name}: `{w}` not in: {e}");
        }
        assert_eq!(files(&dir), (m, s));
        assert_eq!(Trainer::<f32>::resume(&dir).unwrap().step(), 4);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&bad);
    }

    fn edit_state(f: impl Fn(&mut serde_json::Value)) -> impl Fn(Vec<u8>) -> Vec<u8> {
        move |bytes| reseal(&bytes, &f)
    }

    #[test]
    fn crc64_is_crc64_xz() {
        // The check value of CRC-64/XZ (the CRC catalogue's "123456789").
        assert_eq!(crc64(b"123456789"), 0x995D_C9BB_DF19_39FA);
        assert_eq!(crc64(b""), 0);
        assert_eq!(crc_tag(b"123456789"), "crc64-xz:995dc9bbdf1939fa");
    }

    #[test]
    fn truncated_weights_are_rejected() {
        rejected("trunc-model", MODEL_FILE, |b| b[..b.len() - 10].to_vec(), &[MODEL_FILE, "truncated"]);
        rejected("trunc-model-head", MODEL_FILE, |b| b[..5].to_vec(), &[MODEL_FILE, "truncated"]);
    }

    #[test]
    fn truncated_state_is_rejected() {
        rejected("trunc-state", STATE_FILE, |b| b[..b.len() / 2].to_vec(), &[STATE_FILE]);
        rejected("trunc-state-end", STATE_FILE, |b| b[..b.len() - 3].to_vec(), &[STATE_FILE]);
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
    fn an_edited_state_fails_its_checksum() {
        // A number of the optimizer state changed, the file otherwise intact: format 1 loaded
        // this with the changed number.
        rejected(
            "edit-state",
            STATE_FILE,
            |b| {
                let s = String::from_utf8(b).unwrap();
                s.replacen("\"step\": 4", "\"step\": 5", 1).into_bytes()
            },
            &[STATE_FILE, "fails its checksum", "corrupted"],
        );
    }

    /// Flips one random bit of `file` in a copy of the checkpoint, `n` times; every copy must
    /// be refused. Returns how many were.
    fn flips_rejected(file: &str, n: usize, seed: u64) -> usize {
        let (dir, m, s) = saved(&format!("flips-{file}"));
        let bad = tmpdir(&format!("flips-{file}-bad"));
        let mut rng = rnnlab_core::seeded_rng(seed);
        let original = if file == MODEL_FILE { &m } else { &s };
        std::fs::write(bad.join(MODEL_FILE), &m).unwrap();
        std::fs::write(bad.join(STATE_FILE), &s).unwrap();
        let mut refused = 0;
        for i in 0..n {
            let mut b = original.clone();
            let bit = rng.random_range(0..b.len() * 8);
            b[bit / 8] ^= 1 << (bit % 8);
            std::fs::write(bad.join(file), &b).unwrap();
            match Trainer::<f32>::resume(&bad) {
                Err(Error::Format { .. }) => refused += 1,
                other => panic!("flip {i} (bit {bit} of {file}): {:?}", other.map(|t| t.step())),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&bad);
        refused
    }

    #[test]
    fn random_bit_flips_of_either_file_are_all_rejected() {
        assert_eq!(flips_rejected(STATE_FILE, 400, 1), 400);
        assert_eq!(flips_rejected(MODEL_FILE, 400, 2), 400);
    }

    #[test]
    fn every_bit_flip_outside_the_sealed_body_is_rejected() {
        // The envelope around the sealed body (version, checksum, the closing brace), bit by
        // bit, in memory.
        let (dir, _, s) = saved("envelope");
        let start = s.windows(9).position(|w| w == b"\"state\": ").unwrap() + 9;
        let positions = (0..start).chain(s.len() - 3..s.len());
        for i in positions {
            for bit in 0..8 {
                let mut b = s.clone();
                b[i] ^= 1 << bit;
                assert!(read_state::<f32>(&b).is_err(), "byte {i} bit {bit}: {}", String::from_utf8_lossy(&b[..start]));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
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
        rejected(
            "version",
            STATE_FILE,
            |b| {
                String::from_utf8(b)
                    .unwrap()
                    .replacen("\"format_version\": 2", "\"format_version\": 99", 1)
                    .into_bytes()
            },
            &["version 99", "reads 2 and 1"],
        );
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
        // As if the weights of a later save had been copied over these.
        std::fs::write(latest_checkpoint(&dir).unwrap().unwrap().join(MODEL_FILE), newer).unwrap();
        let e = Trainer::<f32>::resume(&dir).unwrap_err();
        assert!(e.to_string().contains("from another save"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_save_leaves_the_previous_checkpoint_intact() {
        let (dir, m, s) = saved("failed-save");
        let mut t = Trainer::<f32>::resume(&dir).unwrap();
        t.run(&mut Silent).unwrap();
        // A file squatting on the next generation's name makes the commit (the rename of the
        // staged directory) fail after both files were staged.
        std::fs::write(dir.join(format!("{CHECKPOINT_DIR_PREFIX}{:010}", 2)), b"squat").unwrap();
        assert!(matches!(t.save_checkpoint(&dir), Err(Error::Io { .. })));
        assert_eq!(files(&dir), (m, s));
        let left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(STAGING_PREFIX))
            .collect();
        assert!(left.is_empty(), "the staged checkpoint was removed: {left:?}");
        assert_eq!(Trainer::<f32>::resume(&dir).unwrap().step(), 4);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn resume_takes_the_newest_and_ignores_what_a_kill_left() {
        let (dir, _, _) = saved("newest");
        let mut t = Trainer::<f32>::resume(&dir).unwrap();
        t.run(&mut Recorder { stop_after: Some(2), ..Recorder::default() }).unwrap();
        t.save_checkpoint(&dir).unwrap();
        let names = |d: &Path| {
            let mut v: Vec<String> =
                std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            v.sort();
            v
        };
        assert_eq!(names(&dir), ["checkpoint-0000000002"], "the older one was removed");
        // What a kill can leave: a half-written staging directory of the next save, a
        // half-removed older checkpoint, and (killed before the removal) a complete older one.
        let newest = dir.join("checkpoint-0000000002");
        std::fs::create_dir_all(dir.join(".staging-0000000003-1")).unwrap();
        std::fs::write(dir.join(".staging-0000000003-1").join(MODEL_FILE), b"half").unwrap();
        std::fs::create_dir_all(dir.join(".trash-0000000001-1")).unwrap();
        std::fs::write(dir.join(".trash-0000000001-1").join(STATE_FILE), b"{").unwrap();
        std::fs::create_dir_all(dir.join("checkpoint-0000000001")).unwrap();
        for f in [MODEL_FILE, STATE_FILE] {
            std::fs::copy(newest.join(f), dir.join("checkpoint-0000000001").join(f)).unwrap();
        }
        assert_eq!(latest_checkpoint(&dir).unwrap(), Some(newest.clone()));
        assert_eq!(Trainer::<f32>::resume(&dir).unwrap().step(), 6);
        // A checkpoint directory can be given itself.
        assert_eq!(Trainer::<f32>::resume(&newest).unwrap().step(), 6);
        // The next save commits generation 3 and clears the rest.
        t.run(&mut Recorder { stop_after: Some(1), ..Recorder::default() }).unwrap();
        t.save_checkpoint(&dir).unwrap();
        assert_eq!(names(&dir), ["checkpoint-0000000003"]);
        assert_eq!(Trainer::<f32>::resume(&dir).unwrap().step(), 7);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn format_1_checkpoints_still_load() {
        // Format 1: both files directly in the directory, the weights' FNV-1a in state.json,
        // no checksum of its own.
        let (dir, m, s) = saved("format-1");
        let v1 = tmpdir("format-1-flat");
        let body: serde_json::Value = serde_json::from_slice(&s).unwrap();
        let mut flat = body["state"].clone();
        flat["format_version"] = serde_json::json!(1);
        flat["model_checksum"] = serde_json::json!(fnv1a64(&m));
        let flat = serde_json::to_vec_pretty(&flat).unwrap();
        assert!(serde_json::from_slice::<StateV1<f32>>(&flat).is_ok(), "format 1's fields");
        std::fs::write(v1.join(MODEL_FILE), &m).unwrap();
        std::fs::write(v1.join(STATE_FILE), &flat).unwrap();
        let old = Trainer::<f32>::resume(&v1).unwrap();
        let new = Trainer::<f32>::resume(&dir).unwrap();
        assert_eq!((old.step(), bits(&old)), (new.step(), bits(&new)));
        assert_eq!((old.optimizer().state(), &old.rng), (new.optimizer().state(), &new.rng));
        // Saving it again writes format 2 beside the old files, and resume then reads that.
        old.save_checkpoint(&v1).unwrap();
        assert_eq!(files(&v1), (m.clone(), s));
        // Format 1's weights check still holds.
        let mut flipped = m;
        let n = flipped.len();
        flipped[n - 1] ^= 1;
        std::fs::write(v1.join(MODEL_FILE), &flipped).unwrap();
        std::fs::remove_dir_all(latest_checkpoint(&v1).unwrap().unwrap()).unwrap();
        assert!(Trainer::<f32>::resume(&v1).unwrap_err().to_string().contains("checksum"));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&v1);
    }

    #[test]
    fn missing_files_are_io_errors() {
        let dir = tmpdir("missing");
        let e = Trainer::<f32>::resume(&dir).unwrap_err();
        assert!(matches!(e, Error::Io { .. }) && e.to_string().contains("no checkpoint-*"), "{e}");
        assert!(matches!(Trainer::<f32>::resume(&dir.join("absent")), Err(Error::Io { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn state_json_is_readable() {
        let (dir, _, s) = saved("readable");
        let v: serde_json::Value = serde_json::from_slice(&s).unwrap();
        assert_eq!(v["format_version"], 2);
        assert!(v["checksum"].as_str().is_some_and(|c| c.starts_with(CRC_TAG)));
        assert_eq!(v["state"]["run"]["step"], 4);
        assert_eq!(v["state"]["optimizer"]["algorithm"], "adam");
        assert!(v["state"]["optimizer"]["params"]["rnn.layers.0.w_ih"].is_object());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
