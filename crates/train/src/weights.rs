//! A model's weights as a safetensors file under PyTorch's parameter names (through core's
//! [`rnnlab_core::to_torch`] / [`rnnlab_core::from_torch`]), PyTorch's own `nn.RNN/LSTM/GRU`
//! weights loaded into any stack, and the atomic file write every checkpoint file goes through.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use rnnlab_core::{
    Error, Float, Parameterized, Result, StateDict, from_torch, list_names, to_torch, torch_round_trips,
};

use crate::safetensors::{DtypePolicy, decode, encode};
use crate::{ModelConfig, SeqModel};

/// Metadata key holding the model's [`ModelConfig`] as JSON.
pub const META_MODEL: &str = "rnnlab.model";
/// Metadata key holding the float type that wrote the file (`"f32"` / `"f64"`).
pub const META_DTYPE: &str = "rnnlab.dtype";

/// The PyTorch name of an rnnlab parameter name: the same as [`rnnlab_core::to_torch`] (kept
/// for existing callers), which maps `…layers.{l}.w_ih` → `…weight_ih_l{l}` (and `w_hh`,
/// `b_ih`, `b_hh`; `…layers.{l}.reverse.{p}` → `…{torch}_l{l}_reverse`) under any prefix,
/// and leaves every other name unchanged. For a [`SeqModel`] these are the names in the
/// `state_dict` of a module holding `self.rnn = nn.LSTM/GRU/RNN(…, num_layers=L)` and
/// `self.head = nn.Linear(…)`.
///
/// # Examples
/// ```
/// assert_eq!(rnnlab_train::torch_name("rnn.layers.1.b_hh"), "rnn.bias_hh_l1");
/// assert_eq!(rnnlab_train::torch_name("head.weight"), "head.weight");
/// ```
pub fn torch_name(name: &str) -> String {
    to_torch(name)
}

/// Every parameter of `model` under its PyTorch name ([`to_torch`]), in visiting order.
///
/// # Errors
/// [`Error::Format`] for a parameter name that would not come back through
/// [`from_torch`] (its last segment already looks like PyTorch's, e.g. a user cell's
/// `weight_ih_l0`; see [`torch_round_trips`]), or two names that map to one.
pub fn torch_state_dict<F: Float, M: Parameterized<F> + ?Sized>(model: &M) -> Result<StateDict<F>> {
    const OP: &str = "torch_state_dict";
    let names = model.param_names();
    if let Some(bad) = names.iter().find(|n| !torch_round_trips(n)) {
        return Err(Error::format(
            OP,
            format!(
                "parameter `{bad}` already has PyTorch's form: saved as `{}` it would load back as `{}`; rename it",
                to_torch(bad),
                from_torch(&to_torch(bad))
            ),
        ));
    }
    model.state_dict().renamed(to_torch).map_err(|e| match e {
        Error::Format { msg, .. } => Error::format(OP, msg),
        other => other,
    })
}

/// The weights of any [`Parameterized`] as safetensors bytes under PyTorch's names (see
/// [`torch_state_dict`]), dtype `F32`/`F64` as `F`, metadata `format = "pt"`: for a
/// [`rnnlab_cells::Recurrent`] stack, `nn.LSTM/GRU/RNN(…, num_layers=L).load_state_dict(
/// safetensors.torch.load_file(path))` reads it.
///
/// # Errors
/// As [`torch_state_dict`].
pub fn torch_rnn_weights_bytes<F: Float, M: Parameterized<F> + ?Sized>(model: &M) -> Result<Vec<u8>> {
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    encode(torch_state_dict(model)?.iter(), &meta)
}

/// Loads safetensors bytes holding PyTorch's names for `model`'s parameters — e.g.
/// `safetensors.torch.save_file(nn.LSTM(I, H, num_layers=2).state_dict(), path)`, names
/// `weight_ih_l0`, …, `bias_hh_l1` (and `…_reverse`), no prefix, into a
/// `Recurrent<F, Lstm<F>>` of the same sizes. Names are matched through [`to_torch`] /
/// [`from_torch`], then [`Parameterized::load_state_dict`] writes, all or nothing.
///
/// # Errors
/// - [`Error::Format`] for a truncated or corrupted file, an unsupported dtype or one
///   `policy` does not allow, or names that differ from the model's: missing and unexpected
///   tensors listed, with every expected name and shape.
/// - [`Error::Shape`] listing every tensor whose shape differs (expected and got) — e.g. GRU
///   weights (`[3H, …]`) for an LSTM (`[4H, …]`).
/// - [`Error::NonFinite`] naming a tensor holding NaN or ±∞.
///
/// Nothing is written on `Err`.
pub fn load_torch_rnn_weights<F: Float, M: Parameterized<F> + ?Sized>(
    bytes: &[u8],
    model: &mut M,
    policy: DtypePolicy,
) -> Result<()> {
    const OP: &str = "load_torch_rnn_weights";
    let dict = decode(bytes)?.state_dict(OP, policy)?;
    check_tensors(OP, &expected_torch(model), &dict)?;
    model.load_state_dict(&dict.renamed(from_torch)?)
}

/// [`load_torch_rnn_weights`] from a file.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; otherwise as [`load_torch_rnn_weights`].
pub fn load_torch_rnn_weights_file<F: Float, M: Parameterized<F> + ?Sized>(
    path: &Path,
    model: &mut M,
    policy: DtypePolicy,
) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("load_torch_rnn_weights", path.display().to_string(), e))?;
    load_torch_rnn_weights(&bytes, model, policy)
}

/// The model's parameters as (PyTorch name, shape), in visiting order.
fn expected_torch<F: Float, M: Parameterized<F> + ?Sized>(model: &M) -> Vec<(String, Vec<usize>)> {
    let mut v = Vec::new();
    model.visit_params(&mut |name, p| v.push((to_torch(name), p.value.shape().to_vec())));
    v
}

/// `` `a` [2, 3], `b` [4] ``, at most [`rnnlab_core::MAX_LISTED_NAMES`] entries.
fn list_shapes<'a>(items: impl IntoIterator<Item = (&'a str, &'a [usize])>) -> String {
    let items: Vec<_> = items.into_iter().collect();
    let mut s: Vec<String> =
        items.iter().take(rnnlab_core::MAX_LISTED_NAMES).map(|(n, sh)| format!("`{n}` {sh:?}")).collect();
    if items.len() > rnnlab_core::MAX_LISTED_NAMES {
        s.push(format!("… ({} in all)", items.len()));
    }
    s.join(", ")
}

/// Checks a file's tensors against the expected (name, shape) list, in the file's names:
/// names (missing, unexpected), then shapes (all that differ), then finiteness.
fn check_tensors<F: Float>(op: &str, expected: &[(String, Vec<usize>)], file: &StateDict<F>) -> Result<()> {
    let missing: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).filter(|n| !file.contains(n)).collect();
    let unexpected: Vec<&str> = file.names().filter(|n| !expected.iter().any(|(e, _)| e == n)).collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("missing tensor {}", list_names(missing)));
        }
        if !unexpected.is_empty() {
            parts.push(format!("unexpected tensor {}", list_names(unexpected)));
        }
        parts.push(format!(
            "the model expects {} tensors: {}",
            expected.len(),
            list_shapes(expected.iter().map(|(n, s)| (n.as_str(), s.as_slice())))
        ));
        return Err(Error::format(op, parts.join("; ")));
    }
    let differ: Vec<(&str, &[usize], &[usize])> = expected
        .iter()
        .filter_map(|(n, s)| {
            file.get(n).filter(|a| a.shape() != s.as_slice()).map(|a| (n.as_str(), s.as_slice(), a.shape()))
        })
        .collect();
    if !differ.is_empty() {
        return Err(Error::shape(
            op,
            format!("tensor {}", list_shapes(differ.iter().map(|&(n, s, _)| (n, s)))),
            format!("tensor {}", list_shapes(differ.iter().map(|&(n, _, g)| (n, g)))),
        ));
    }
    for (n, a) in file.iter() {
        rnnlab_core::validate::finite_array(op, &format!("tensor `{n}`"), &a.view())?;
    }
    Ok(())
}

impl<F: Float, C: rnnlab_core::Cell<F>> SeqModel<F, C> {
    /// The weights as safetensors bytes under PyTorch's names ([`torch_name`]), dtype `F32` or
    /// `F64` as `F`, with metadata `format = "pt"`, [`META_MODEL`] (the config as JSON) and
    /// [`META_DTYPE`]. The same model always gives the same bytes.
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
        encode(torch_state_dict(self)?.iter(), &metadata)
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
    /// model is rounded ([`DtypePolicy::Convert`]).
    ///
    /// # Errors
    /// - [`Error::Format`] for a truncated or corrupted file (header length, JSON, dtypes,
    ///   offsets), for metadata naming another architecture (cell kind, activation, GRU
    ///   variant, sizes, layers: see [`ModelConfig::architecture`]), and for missing or
    ///   unexpected tensors, named, with the expected names and shapes.
    /// - [`Error::Shape`] naming every tensor whose shape differs.
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
        let dict = file.state_dict(OP, DtypePolicy::Convert)?;
        check_tensors(OP, &expected_torch(self), &dict)?;
        self.load_state_dict(&dict.renamed(from_torch)?)
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
    use rnnlab_core::{from_torch, to_torch, torch_round_trips};

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
            let tensors = arrays.iter().map(|(n, a)| match rename {
                Some((from, to)) if n == from => (to, a),
                _ => (n.as_str(), a),
            });
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

    /// Every built-in cell configuration: plain, reset-before GRU, and each normalisation.
    fn every_cell() -> Vec<CellConfig> {
        use crate::{GruSpec, LstmSpec};
        use rnnlab_cells::{GruVariant, NormConfig, NormPlacement};
        let mut v = vec![
            CellConfig::rnn(),
            CellConfig::lstm(),
            CellConfig::gru(),
            GruSpec::new().with_variant(GruVariant::ResetBefore).into(),
        ];
        for placement in [NormPlacement::Full, NormPlacement::InputOnly] {
            for norm in [NormConfig::layer(placement), NormConfig::batch(placement, 3)] {
                v.push(RnnSpec::new().with_norm(norm.clone()).into());
                v.push(LstmSpec::new().with_norm(norm.clone()).into());
                v.push(GruSpec::new().with_norm(norm).into());
            }
        }
        v
    }

    #[test]
    fn every_built_in_name_round_trips_through_pytorch_names() {
        let mut seen = 0;
        for cell in every_cell() {
            for n_layers in [1, 2, 3] {
                let m: SeqModel<f32> =
                    ModelConfig::new(2, 3, 1, cell.clone(), LossKind::MseLast).with_n_layers(n_layers).build().unwrap();
                let names = m.param_names();
                for n in &names {
                    assert_eq!(&from_torch(&to_torch(n)), n, "{}", cell.kind());
                    let t = to_torch(n);
                    assert_eq!(to_torch(&from_torch(&t)), t);
                    // the cells' own names (no `rnn.` prefix) too
                    let inner = n.strip_prefix("rnn.").unwrap_or(n);
                    assert!(torch_round_trips(inner), "{inner}");
                }
                let dict = torch_state_dict(&m).unwrap();
                assert_eq!(dict.len(), names.len(), "distinct PyTorch names");
                for l in 0..n_layers {
                    assert!(dict.contains(&format!("rnn.weight_hh_l{l}")), "{:?}", dict.names().collect::<Vec<_>>());
                }
                seen += names.len();
            }
        }
        assert!(seen > 500, "{seen} names checked");
    }

    #[test]
    fn a_name_that_already_looks_like_pytorch_is_refused_on_save() {
        struct Odd(rnnlab_core::Param<f32, ndarray::Ix1>);
        impl Parameterized<f32> for Odd {
            fn visit_params(&self, v: &mut dyn FnMut(&str, rnnlab_core::ParamView<'_, f32>)) {
                v("cell.weight_ih_l0", self.0.view());
            }
            fn visit_params_mut(&mut self, v: &mut dyn FnMut(&str, rnnlab_core::ParamViewMut<'_, f32>)) {
                v("cell.weight_ih_l0", self.0.view_mut());
            }
        }
        let e = torch_rnn_weights_bytes(&Odd(rnnlab_core::Param::new(ndarray::Array1::zeros(2)))).unwrap_err();
        assert!(e.to_string().contains("`cell.weight_ih_l0` already has PyTorch's form"), "{e}");
    }

    /// A file as `safetensors.torch.save_file(nn.LSTM(I, H, num_layers).state_dict())` writes
    /// it: bare names, F32 (or `dtype`), `[4H, I]`, `[4H, H]`, `[4H]`, `[4H]` per layer, the
    /// value of entry k of tensor j being `j + k/1000`.
    fn torch_lstm_file(
        input: usize,
        hidden: usize,
        num_layers: usize,
        gates: usize,
        dtype: safetensors::Dtype,
    ) -> Vec<u8> {
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for l in 0..num_layers {
            let inp = if l == 0 { input } else { hidden };
            for (stem, shape) in [
                ("weight_ih", vec![gates * hidden, inp]),
                ("weight_hh", vec![gates * hidden, hidden]),
                ("bias_ih", vec![gates * hidden]),
                ("bias_hh", vec![gates * hidden]),
            ] {
                let j = tensors.len() as f64;
                let n: usize = shape.iter().product();
                let data: Vec<u8> = (0..n)
                    .flat_map(|k| {
                        let v = j + k as f64 / 1000.0;
                        if dtype == safetensors::Dtype::F64 {
                            v.to_le_bytes().to_vec()
                        } else {
                            (v as f32).to_le_bytes().to_vec()
                        }
                    })
                    .collect();
                tensors.push((format!("{stem}_l{l}"), shape, data));
            }
        }
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|(n, s, d)| (n.clone(), safetensors::tensor::TensorView::new(dtype, s.clone(), d).unwrap()))
            .collect();
        let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize(views, Some(meta)).unwrap()
    }

    fn recurrent_lstm(
        input: usize,
        hidden: usize,
        n_layers: usize,
    ) -> rnnlab_cells::Recurrent<f32, rnnlab_cells::Lstm<f32>> {
        let mut rng = rnnlab_core::seeded_rng(3);
        let layers = (0..n_layers)
            .map(|l| rnnlab_cells::LstmConfig::new(if l == 0 { input } else { hidden }, hidden).init(&mut rng).unwrap())
            .collect();
        rnnlab_cells::Recurrent::new(layers).unwrap()
    }

    #[test]
    fn pytorch_lstm_weights_load_into_a_recurrent_stack() {
        let (i, h) = (3, 2);
        let bytes = torch_lstm_file(i, h, 2, 4, safetensors::Dtype::F32);
        let mut rnn = recurrent_lstm(i, h, 2);
        load_torch_rnn_weights(&bytes, &mut rnn, DtypePolicy::Exact).unwrap();
        // tensor j = (layer, stem) in PyTorch's order; entry k holds j + k/1000
        let order = ["w_ih", "w_hh", "b_ih", "b_hh"];
        for l in 0..2 {
            for (s, p) in order.iter().enumerate() {
                let j = (4 * l + s) as f64;
                let a = rnn.get_param(&format!("layers.{l}.{p}")).unwrap();
                for (k, v) in a.iter().enumerate() {
                    assert!((f64::from(*v) - (j + k as f64 / 1000.0)).abs() < 1e-6, "layers.{l}.{p}[{k}] = {v}");
                }
            }
        }
        assert_eq!(rnn.get_param("layers.1.w_ih").unwrap().shape(), &[8, 2]);
        // and back: our bytes under the same names, readable by the reference reader
        let ours = torch_rnn_weights_bytes(&rnn).unwrap();
        let st = safetensors::SafeTensors::deserialize(&ours).unwrap();
        let mut names = st.names();
        names.sort_unstable();
        assert_eq!(names.len(), 8);
        assert_eq!(names[0], "bias_hh_l0");
        assert_eq!(
            st.tensor("weight_ih_l1").unwrap().data(),
            safetensors::SafeTensors::deserialize(&bytes).unwrap().tensor("weight_ih_l1").unwrap().data()
        );
        // f64 weights into f32 convert only when asked
        let f64_file = torch_lstm_file(i, h, 2, 4, safetensors::Dtype::F64);
        let mut other = recurrent_lstm(i, h, 2);
        load_torch_rnn_weights(&f64_file, &mut other, DtypePolicy::Convert).unwrap();
        assert_eq!(other.state_dict(), rnn.state_dict());
        let dir = tmpdir("torch-file");
        std::fs::write(dir.join("lstm.safetensors"), &bytes).unwrap();
        let mut from_file = recurrent_lstm(i, h, 2);
        load_torch_rnn_weights_file(&dir.join("lstm.safetensors"), &mut from_file, DtypePolicy::Exact).unwrap();
        assert_eq!(from_file.state_dict(), rnn.state_dict());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pytorch_weights_of_another_architecture_are_refused_with_what_was_expected() {
        let (i, h) = (3, 2);
        let mut rnn = recurrent_lstm(i, h, 2);
        let before = rnn.state_dict();
        let refuse = |rnn: &mut rnnlab_cells::Recurrent<f32, rnnlab_cells::Lstm<f32>>, bytes: &[u8], what: &[&str]| {
            let e = load_torch_rnn_weights(bytes, rnn, DtypePolicy::Exact).unwrap_err().to_string();
            for w in what {
                assert!(e.contains(w), "`{w}` not in: {e}");
            }
        };
        // GRU weights (3 gates) into an LSTM (4): every shape listed, expected and got
        refuse(
            &mut rnn,
            &torch_lstm_file(i, h, 2, 3, safetensors::Dtype::F32),
            &[
                "shape mismatch",
                "`weight_ih_l0` [8, 3]",
                "`weight_ih_l0` [6, 3]",
                "`bias_hh_l1` [8]",
                "`bias_hh_l1` [6]",
            ],
        );
        // one layer into two: the missing ones, and every expected name with its shape
        refuse(
            &mut rnn,
            &torch_lstm_file(i, h, 1, 4, safetensors::Dtype::F32),
            &[
                "missing tensor `weight_ih_l1`, `weight_hh_l1`, `bias_ih_l1`, `bias_hh_l1`",
                "expects 8 tensors",
                "`weight_hh_l1` [8, 2]",
            ],
        );
        // three layers into two
        refuse(&mut rnn, &torch_lstm_file(i, h, 3, 4, safetensors::Dtype::F32), &["unexpected tensor `bias_hh_l2`"]);
        // f64 into f32 without DtypePolicy::Convert
        refuse(&mut rnn, &torch_lstm_file(i, h, 2, 4, safetensors::Dtype::F64), &["is F64, expected F32"]);
        // a prefixed file (a whole SeqModel) is not a bare nn.LSTM
        let seq = lstm(2, 0).to_safetensors().unwrap();
        refuse(&mut rnn, &seq, &["missing tensor `weight_ih_l0`", "unexpected tensor `head.bias`"]);
        assert_eq!(rnn.state_dict(), before, "nothing written");
    }

    #[test]
    fn the_same_model_gives_the_same_bytes() {
        let m = lstm(3, 5);
        assert_eq!(m.to_safetensors().unwrap(), m.clone().to_safetensors().unwrap());
    }
}
