//! A model's weights as a safetensors file under PyTorch's parameter names, and the atomic
//! file write every checkpoint file goes through.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use ndarray::ArrayD;
use rnnlab_core::{Error, Float, Parameterized, Result};

use crate::safetensors::{Decoded, TensorOut, decode, encode};
use crate::{ModelConfig, SeqModel};

/// Metadata key holding the model's [`ModelConfig`] as JSON.
pub const META_MODEL: &str = "rnnlab.model";
/// Metadata key holding the float type that wrote the file (`"f32"` / `"f64"`).
pub const META_DTYPE: &str = "rnnlab.dtype";

/// The PyTorch name of a [`SeqModel`] parameter: `rnn.layers.{l}.w_ih` → `rnn.weight_ih_l{l}`,
/// `w_hh` → `weight_hh_l{l}`, `b_ih` → `bias_ih_l{l}`, `b_hh` → `bias_hh_l{l}` (the names in
/// the `state_dict` of a module holding `self.rnn = nn.LSTM/GRU/RNN(…, num_layers=L)` and
/// `self.head = nn.Linear(…)`); `head.weight` and `head.bias` and any other name are unchanged.
///
/// # Examples
/// ```
/// assert_eq!(rnnlab_train::torch_name("rnn.layers.1.b_hh"), "rnn.bias_hh_l1");
/// assert_eq!(rnnlab_train::torch_name("head.weight"), "head.weight");
/// ```
pub fn torch_name(name: &str) -> String {
    if let Some((layer, param)) = name.strip_prefix("rnn.layers.").and_then(|rest| rest.split_once('.')) {
        let torch = match param {
            "w_ih" => Some("weight_ih"),
            "w_hh" => Some("weight_hh"),
            "b_ih" => Some("bias_ih"),
            "b_hh" => Some("bias_hh"),
            _ => None,
        };
        if let Some(t) = torch
            && layer.parse::<usize>().is_ok()
        {
            return format!("rnn.{t}_l{layer}");
        }
    }
    name.to_string()
}

impl<F: Float, C: rnnlab_core::Cell<F>> SeqModel<F, C> {
    /// The weights as safetensors bytes under [`torch_name`]s, dtype `F32` or `F64` as `F`,
    /// with metadata `format = "pt"`, [`META_MODEL`] (the config as JSON) and [`META_DTYPE`].
    ///
    /// # Errors
    /// [`Error::Format`] if the config cannot be serialised (it always can).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let model_json = serde_json::to_string(self.config())
            .map_err(|e| Error::format("SeqModel::to_safetensors", format!("config json: {e}")))?;
        let metadata = BTreeMap::from([
            ("format".to_string(), "pt".to_string()),
            (META_MODEL.to_string(), model_json),
            (META_DTYPE.to_string(), F::NAME.to_string()),
        ]);
        let mut arrays: Vec<(String, ArrayD<F>)> = Vec::new();
        self.visit_params(&mut |name, p| arrays.push((torch_name(name), p.value.to_owned())));
        let tensors = arrays
            .iter()
            .map(|(name, a)| TensorOut {
                name: name.clone(),
                shape: a.shape().to_vec(),
                values: Box::new(a.iter().copied()),
            })
            .collect();
        encode(tensors, &metadata)
    }

    /// Writes [`SeqModel::to_safetensors`] to `path` atomically (see [`write_atomic`]).
    /// `safetensors.torch.load_file(path)` reads it as a PyTorch `state_dict`.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be written.
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_safetensors()?)
    }

    /// Loads weights from a safetensors file (written here or by PyTorch) into this model.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read; otherwise as [`SeqModel::load_safetensors_bytes`].
    pub fn load_safetensors(&mut self, path: &Path) -> Result<()> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::io("SeqModel::load_safetensors", path.display().to_string(), e))?;
        self.load_safetensors_bytes(&bytes)
    }

    /// Loads weights from safetensors bytes, all or nothing: every check runs before any
    /// parameter is written. F32 data loads into an f64 model exactly; F64 data into an f32
    /// model is rounded.
    ///
    /// # Errors
    /// - [`Error::Format`] for a truncated or corrupted file (header length, JSON, dtypes,
    ///   offsets), for metadata naming another architecture (cell kind, activation, GRU
    ///   variant, sizes, layers: see [`ModelConfig::architecture`]), and for a missing or
    ///   unexpected tensor, named.
    /// - [`Error::Shape`] naming the tensor whose shape differs.
    /// - [`Error::NonFinite`] naming a tensor holding NaN or ±∞.
    pub fn load_safetensors_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        const OP: &str = "SeqModel::load_safetensors";
        let file = decode(bytes)?;
        if let Some(json) = file.metadata.get(META_MODEL) {
            let theirs: ModelConfig = serde_json::from_str(json)
                .map_err(|e| Error::format(OP, format!("metadata {META_MODEL} is not a model config: {e}")))?;
            let (a, b) = (theirs.architecture(), self.config().architecture());
            if a != b {
                return Err(Error::format(OP, format!("the weights are for a {a}, this model is a {b}")));
            }
        }
        let arrays = self.checked_arrays(OP, &file)?;
        let mut values = arrays.into_iter();
        self.visit_params_mut(&mut |_, mut p| {
            // `checked_arrays` returned one array of the right shape per parameter, in visiting order.
            if let Some(v) = values.next() {
                p.value.assign(&v);
            }
        });
        Ok(())
    }

    /// One array per parameter, in visiting order, after checking names, shapes and values.
    fn checked_arrays(&self, op: &str, file: &Decoded<'_>) -> Result<Vec<ArrayD<F>>> {
        let mut expected: Vec<(String, Vec<usize>)> = Vec::new();
        self.visit_params(&mut |name, p| expected.push((torch_name(name), p.value.shape().to_vec())));
        let want: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        if let Some(extra) = file.tensors.keys().find(|k| !want.contains(k.as_str())) {
            return Err(Error::format(op, format!("unexpected tensor `{extra}` (this model has {want:?})")));
        }
        let mut out = Vec::with_capacity(expected.len());
        for (name, shape) in &expected {
            let t = file.tensors.get(name).ok_or_else(|| Error::format(op, format!("missing tensor `{name}`")))?;
            rnnlab_core::validate::shape(op, &format!("tensor `{name}`"), shape, &t.shape)?;
            let values: Vec<F> = file.values(t).collect();
            rnnlab_core::validate::finite_values(op, &format!("tensor `{name}`"), values.iter().copied())?;
            let a = ArrayD::from_shape_vec(shape.clone(), values)
                .map_err(|e| Error::shape(op, format!("tensor `{name}` {shape:?}"), e.to_string()))?;
            out.push(a);
        }
        Ok(out)
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one, never
/// a mixture: write `.{name}.tmp` in the same directory, fsync it, rename it over `path`,
/// fsync the directory (on Unix).
///
/// # Errors
/// [`Error::Io`] naming the file; the old file at `path` is then untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = stage(path, bytes)?;
    commit(&tmp, path)?;
    sync_dir(path)
}

/// Writes and fsyncs the temporary twin of `path`, returning its path.
pub(crate) fn stage(path: &Path, bytes: &[u8]) -> Result<std::path::PathBuf> {
    const OP: &str = "write_atomic";
    let name = path
        .file_name()
        .ok_or_else(|| Error::config(OP, format!("{} has no file name", path.display())))?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let io = |e| Error::io(OP, tmp.display().to_string(), e);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(tmp)
}

/// Renames a staged file over its destination.
pub(crate) fn commit(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(tmp, path).map_err(|e| Error::io("write_atomic", path.display().to_string(), e))
}

/// Fsyncs the directory holding `path`, so the renames are durable (Unix only).
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("write_atomic", dir.display().to_string(), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CellConfig, LossKind, RnnSpec};
    use rnnlab_activations::ActivationKind;

    fn tmpdir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rnnlab-train-weights-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Every parameter value as f64 bits, in visiting order.
    fn values<F: Float>(m: &SeqModel<F>) -> Vec<u64> {
        let mut v = Vec::new();
        m.visit_params(&mut |_, p| v.extend(p.value.iter().map(|x| x.as_f64().to_bits())));
        v
    }

    fn lstm(hidden: usize, seed: u64) -> SeqModel<f32> {
        ModelConfig::new(2, hidden, 1, CellConfig::lstm(), LossKind::MseLast)
            .with_n_layers(2)
            .with_seed(seed)
            .build()
            .unwrap()
    }

    #[test]
    fn torch_names_cover_every_parameter() {
        let names: Vec<String> = lstm(3, 0).param_names().iter().map(|n| torch_name(n)).collect();
        assert_eq!(
            names,
            [
                "rnn.weight_ih_l0",
                "rnn.weight_hh_l0",
                "rnn.bias_ih_l0",
                "rnn.bias_hh_l0",
                "rnn.weight_ih_l1",
                "rnn.weight_hh_l1",
                "rnn.bias_ih_l1",
                "rnn.bias_hh_l1",
                "head.weight",
                "head.bias"
            ]
        );
        assert_eq!(torch_name("rnn.layers.0.ln.gamma"), "rnn.layers.0.ln.gamma");
        assert_eq!(torch_name("rnn.layers.x.w_ih"), "rnn.layers.x.w_ih");
    }

    #[test]
    fn save_load_round_trip_is_bit_exact_and_readable_by_the_reference() {
        let dir = tmpdir("roundtrip");
        let path = dir.join("model.safetensors");
        let a = lstm(4, 1);
        a.save_safetensors(&path).unwrap();
        let mut b = lstm(4, 2);
        assert_ne!(values(&a), values(&b));
        b.load_safetensors(&path).unwrap();
        assert_eq!(values(&a), values(&b), "bit for bit");
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("rnn.weight_hh_l1").unwrap().shape(), &[16, 4]);
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
        // f32 weights load exactly into an f64 model of the same architecture.
        let mut c: SeqModel<f64> = a.config().build().unwrap();
        c.load_safetensors(&path).unwrap();
        assert_eq!(values(&a), values(&c));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn wrong_cell_kind_is_rejected_and_nothing_changes() {
        let bytes = lstm(4, 1).to_safetensors().unwrap();
        let mut gru: SeqModel<f32> =
            ModelConfig::new(2, 4, 1, CellConfig::gru(), LossKind::MseLast).with_n_layers(2).build().unwrap();
        let before = gru.clone();
        let e = gru.load_safetensors_bytes(&bytes).unwrap_err();
        assert!(e.to_string().contains("lstm") && e.to_string().contains("gru"), "{e}");
        assert_eq!(gru, before);
        // A tanh RNN's weights do not fit a ReLU RNN although every shape does.
        let tanh = ModelConfig::new(2, 4, 1, CellConfig::rnn(), LossKind::MseLast).build::<f32>().unwrap();
        let relu_cfg =
            ModelConfig::new(2, 4, 1, RnnSpec::new().with_activation(ActivationKind::Relu).into(), LossKind::MseLast);
        let e = relu_cfg.build::<f32>().unwrap().load_safetensors_bytes(&tanh.to_safetensors().unwrap()).unwrap_err();
        assert!(e.to_string().contains("relu"), "{e}");
    }

    #[test]
    fn wrong_shapes_missing_and_extra_tensors_are_rejected_by_name() {
        // Without rnnlab metadata (as PyTorch writes it) only names and shapes are checked.
        let strip = |m: &SeqModel<f32>, rename: Option<(&str, &str)>| {
            let mut arrays = Vec::new();
            m.visit_params(&mut |n, p| arrays.push((torch_name(n), p.value.to_owned())));
            let tensors = arrays
                .iter()
                .map(|(n, a)| {
                    let name = match rename {
                        Some((from, to)) if n == from => to.to_string(),
                        _ => n.clone(),
                    };
                    TensorOut { name, shape: a.shape().to_vec(), values: Box::new(a.iter().copied()) }
                })
                .collect();
            encode(tensors, &BTreeMap::new()).unwrap()
        };
        let mut small = lstm(4, 0);
        let before = small.clone();
        let e = small.load_safetensors_bytes(&strip(&lstm(5, 0), None)).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }) && e.to_string().contains("rnn.weight_ih_l0"), "{e}");
        let e = small.load_safetensors_bytes(&strip(&lstm(4, 0), Some(("head.bias", "head.b")))).unwrap_err();
        assert!(e.to_string().contains("unexpected tensor `head.b`"), "{e}");
        let one_layer: SeqModel<f32> =
            ModelConfig::new(2, 4, 1, CellConfig::lstm(), LossKind::MseLast).build().unwrap();
        let e = small.load_safetensors_bytes(&strip(&one_layer, None)).unwrap_err();
        assert!(e.to_string().contains("missing tensor `rnn.weight_ih_l1`"), "{e}");
        assert_eq!(small, before);
        assert!(small.load_safetensors_bytes(&strip(&lstm(4, 3), None)).is_ok());
    }

    #[test]
    fn non_finite_weights_are_rejected() {
        let mut m = lstm(3, 0);
        let mut bad = m.clone();
        bad.visit_params_mut(&mut |n, mut p| {
            if n == "head.bias" {
                p.value.fill(f32::NAN);
            }
        });
        let e = m.load_safetensors_bytes(&bad.to_safetensors().unwrap()).unwrap_err();
        assert!(matches!(e, Error::NonFinite { .. }) && e.to_string().contains("head.bias"), "{e}");
    }

    #[test]
    fn atomic_write_failure_leaves_the_old_file() {
        let dir = tmpdir("atomic");
        let path = dir.join("f.bin");
        write_atomic(&path, b"old").unwrap();
        // A directory squatting on the temporary name makes the write fail.
        std::fs::create_dir_all(dir.join(".f.bin.tmp")).unwrap();
        assert!(matches!(write_atomic(&path, b"new"), Err(Error::Io { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(matches!(write_atomic(Path::new("/"), b"x"), Err(Error::Config { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
