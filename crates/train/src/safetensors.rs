//! The safetensors format through the `safetensors` crate (which parses, validates and lays
//! out the file: an 8-byte little-endian header length N, N bytes of JSON header, then the raw
//! little-endian tensor data), with rnnlab's checks and messages on top: dtypes F32 and F64
//! only, every failure an [`Error::Format`] saying what is wrong (truncated, corrupted, which
//! tensor), a canonical header (the same tensors and metadata always give the same bytes),
//! and the public [`StateDict`] reader and writer.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use rnnlab_core::{Error, Float, Result, StateDict};
use safetensors::{SafeTensorError, SafeTensors, View};
use serde::{Deserialize, Serialize};

const OP: &str = "safetensors";

/// The largest header accepted (the `safetensors` crate's limit, 100 MB).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// A tensor element type this crate reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dtype {
    /// IEEE-754 binary32, `"F32"`.
    F32,
    /// IEEE-754 binary64, `"F64"`.
    F64,
}

impl Dtype {
    /// The header name, `"F32"` or `"F64"`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F64 => "F64",
        }
    }

    /// Bytes per element.
    fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F64 => 8,
        }
    }

    /// The dtype of a float type.
    pub(crate) fn of<F: Float>() -> Self {
        if F::NAME == "f32" { Self::F32 } else { Self::F64 }
    }

    fn to_crate(self) -> safetensors::Dtype {
        match self {
            Self::F32 => safetensors::Dtype::F32,
            Self::F64 => safetensors::Dtype::F64,
        }
    }

    fn from_crate(d: safetensors::Dtype) -> Option<Self> {
        match d {
            safetensors::Dtype::F32 => Some(Self::F32),
            safetensors::Dtype::F64 => Some(Self::F64),
            _ => None,
        }
    }
}

/// What a reader does with a tensor whose dtype is not the float type it reads into.
///
/// Serialised as `"exact"` / `"convert"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DtypePolicy {
    /// F32 into `f32` and F64 into `f64` only; any other pairing is an `Err`.
    #[default]
    Exact,
    /// Also F32 into `f64` (exact) and F64 into `f32` (rounded to nearest).
    Convert,
}

/// One tensor's bytes for the `safetensors` crate's writer.
struct Bytes {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Bytes {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Encodes tensors and string metadata into safetensors bytes, dtype `F32` or `F64` as `F`,
/// each tensor's values in row-major order whatever its memory layout. The crate lays the
/// file out (data sorted by name, header padded with spaces to a multiple of 8 bytes);
/// the header is then rewritten with its keys sorted, so the bytes do not depend on the
/// iteration order of the crate's metadata `HashMap`.
pub(crate) fn encode<'a, F: Float>(
    tensors: impl IntoIterator<Item = (&'a str, &'a ArrayD<F>)>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let dtype = Dtype::of::<F>();
    let mut out: Vec<(String, Bytes)> = Vec::new();
    for (name, a) in tensors {
        if name == "__metadata__" || out.iter().any(|(n, _)| n == name) {
            return Err(Error::format(OP, format!("tensor name `{name}` is reserved or repeated")));
        }
        let mut data = Vec::with_capacity(a.len() * dtype.size());
        for &v in a.iter() {
            match dtype {
                // F is f32 here: the conversion through f64 is exact.
                Dtype::F32 => data.extend_from_slice(&(v.as_f64() as f32).to_le_bytes()),
                Dtype::F64 => data.extend_from_slice(&v.as_f64().to_le_bytes()),
            }
        }
        out.push((name.to_string(), Bytes { dtype: dtype.to_crate(), shape: a.shape().to_vec(), data }));
    }
    let meta: Option<HashMap<String, String>> =
        (!metadata.is_empty()).then(|| metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    let bytes = safetensors::serialize(out.iter().map(|(n, b)| (n.as_str(), b)), meta)
        .map_err(|e| Error::format(OP, format!("writing: {e}")))?;
    canonical_header(bytes)
}

/// Rewrites the header of the crate's output with sorted keys (the data section and its
/// offsets, relative to the end of the header, are unchanged).
fn canonical_header(bytes: Vec<u8>) -> Result<Vec<u8>> {
    let n = header_len(&bytes).ok_or_else(|| Error::format(OP, "writing: the encoder returned no header"))?;
    let (head, data) = bytes
        .get(8..)
        .and_then(|rest| (n <= rest.len() as u64).then(|| rest.split_at(n as usize)))
        .ok_or_else(|| Error::format(OP, "writing: the encoder returned a truncated header"))?;
    let mut map: BTreeMap<String, serde_json::Value> = serde_json::from_slice(head)
        .map_err(|e| Error::format(OP, format!("writing: the encoder returned a bad header: {e}")))?;
    if let Some(m) = map.remove("__metadata__") {
        let sorted: BTreeMap<String, String> = serde_json::from_value(m)
            .map_err(|e| Error::format(OP, format!("writing: the encoder returned bad metadata: {e}")))?;
        map.insert("__metadata__".to_string(), serde_json::json!(sorted));
    }
    let mut head = serde_json::to_vec(&map).map_err(|e| Error::format(OP, format!("writing: header json: {e}")))?;
    while head.len() % 8 != 0 {
        head.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + head.len() + data.len());
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(data);
    Ok(out)
}

/// The header length N of the first 8 bytes, if there are 8.
fn header_len(bytes: &[u8]) -> Option<u64> {
    bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes)
}

/// One tensor of a decoded file.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TensorIn<'a> {
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<usize>,
    /// Its `shape.product() · dtype.size()` bytes (checked by the crate).
    data: &'a [u8],
}

/// A validated safetensors file.
#[derive(Clone, Debug)]
pub(crate) struct Decoded<'a> {
    pub(crate) tensors: BTreeMap<String, TensorIn<'a>>,
    pub(crate) metadata: BTreeMap<String, String>,
}

/// Parses and validates safetensors bytes with the `safetensors` crate (header length within
/// the file and the 100 MB limit, UTF-8 JSON header of entries `{dtype, shape, data_offsets}`
/// plus an optional `__metadata__` of strings, each entry's byte range exactly its shape's
/// size, the ranges tiling the data section with no gap, overlap or trailing byte), then
/// refuses any dtype but `F32`/`F64`.
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded<'_>> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| diagnose(bytes, e))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| diagnose(bytes, e))?;
    let metadata: BTreeMap<String, String> = meta.metadata().clone().unwrap_or_default().into_iter().collect();
    let views: BTreeMap<String, safetensors::tensor::TensorView<'_>> = st.tensors().into_iter().collect();
    let mut tensors = BTreeMap::new();
    for (name, view) in views {
        let dtype = Dtype::from_crate(view.dtype()).ok_or_else(|| {
            Error::format(OP, format!("tensor `{name}` has dtype {:?}; only F32 and F64 are supported", view.dtype()))
        })?;
        tensors.insert(name, TensorIn { dtype, shape: view.shape().to_vec(), data: view.data() });
    }
    Ok(Decoded { tensors, metadata })
}

/// The crate's error as an rnnlab [`Error::Format`] that says what happened to the file.
fn diagnose(bytes: &[u8], e: SafeTensorError) -> Error {
    let n = header_len(bytes).unwrap_or(0);
    let rest = bytes.len().saturating_sub(8);
    let msg = match e {
        SafeTensorError::HeaderTooSmall => {
            format!("file is {} bytes, shorter than the 8-byte header length (truncated)", bytes.len())
        }
        SafeTensorError::HeaderTooLarge => {
            format!("header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit (corrupted)")
        }
        SafeTensorError::InvalidHeaderLength => {
            format!("header length {n} exceeds the {rest} bytes that follow (truncated)")
        }
        SafeTensorError::InvalidHeader(e) => format!("header is not valid UTF-8 ({e}): corrupted"),
        SafeTensorError::InvalidHeaderDeserialization(e) => {
            format!("header is not a JSON object of tensor entries and string metadata ({e}): corrupted or truncated")
        }
        SafeTensorError::InvalidOffset(name) => {
            format!("tensor `{name}` does not start where the previous one ends (gap or overlap: corrupted)")
        }
        SafeTensorError::TensorInvalidInfo => {
            "a tensor's data_offsets do not hold a tensor of its dtype and shape (corrupted)".to_string()
        }
        SafeTensorError::ValidationOverflow => "a tensor's size overflows (corrupted)".to_string(),
        SafeTensorError::MetadataIncompleteBuffer => {
            // The header parsed; say which way the data section is off.
            let need = bytes
                .get(8..)
                .and_then(|r| r.get(..usize::try_from(n).ok()?))
                .and_then(|h| serde_json::from_slice::<safetensors::tensor::Metadata>(h).ok())
                .map(|m| m.data_len());
            let have = rest.saturating_sub(usize::try_from(n).unwrap_or(usize::MAX));
            match need {
                Some(need) if need > have => {
                    format!("tensors need {need} data bytes, the file holds {have} (truncated)")
                }
                Some(need) => format!("{} bytes after the last tensor (corrupted)", have - need),
                None => "the tensors do not cover the data section exactly (corrupted or truncated)".to_string(),
            }
        }
        other => format!("{other} (corrupted)"),
    };
    Error::format(OP, msg)
}

impl TensorIn<'_> {
    /// The values converted to `F` (exact from F32 or into F64; rounded from F64 into F32).
    pub(crate) fn values<F: Float>(&self) -> impl Iterator<Item = F> + '_ {
        let dtype = self.dtype;
        // `chunks_exact` yields slices of exactly `dtype.size()` bytes: the indexing is in bounds.
        self.data.chunks_exact(dtype.size()).map(move |c| match dtype {
            Dtype::F32 => F::of(f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            Dtype::F64 => F::of(f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])),
        })
    }

    /// The tensor as an array of `F`, its dtype checked against `policy`.
    fn array<F: Float>(&self, op: &str, name: &str, policy: DtypePolicy) -> Result<ArrayD<F>> {
        let want = Dtype::of::<F>();
        if self.dtype != want && policy == DtypePolicy::Exact {
            return Err(Error::format(
                op,
                format!(
                    "tensor `{name}` is {}, expected {} for an {} model (DtypePolicy::Convert converts)",
                    self.dtype.name(),
                    want.name(),
                    F::NAME
                ),
            ));
        }
        ArrayD::from_shape_vec(IxDyn(&self.shape), self.values().collect())
            .map_err(|e| Error::shape(op, format!("tensor `{name}` {:?}", self.shape), e.to_string()))
    }
}

impl Decoded<'_> {
    /// Every tensor as an array of `F`, by name (sorted), dtypes checked against `policy`.
    pub(crate) fn state_dict<F: Float>(&self, op: &str, policy: DtypePolicy) -> Result<StateDict<F>> {
        let mut d = StateDict::new();
        for (name, t) in &self.tensors {
            d.insert(name.clone(), t.array(op, name, policy)?);
        }
        Ok(d)
    }
}

/// Reads safetensors bytes into a [`StateDict`] under the file's own names (sorted), e.g. the
/// `weight_ih_l0`, `bias_hh_l1_reverse`, … of a PyTorch `nn.LSTM(…).state_dict()` saved with
/// `safetensors.torch.save_file`. Values are not checked for finiteness here
/// ([`rnnlab_core::Parameterized::load_state_dict`] does that).
///
/// # Errors
/// [`Error::Format`] for a truncated or corrupted file (header length, header JSON, offsets,
/// trailing bytes), a dtype other than `F32`/`F64`, or (with [`DtypePolicy::Exact`]) a dtype
/// other than `F`'s.
///
/// # Examples
/// ```
/// use std::collections::BTreeMap;
/// use ndarray::{ArrayD, IxDyn};
/// use rnnlab_core::StateDict;
/// use rnnlab_train::{DtypePolicy, read_state_dict, state_dict_to_safetensors};
/// let mut d = StateDict::<f32>::new();
/// d.insert("weight_hh_l0", ArrayD::from_elem(IxDyn(&[8, 2]), 0.5));
/// let bytes = state_dict_to_safetensors(&d, &BTreeMap::new())?;
/// assert_eq!(read_state_dict::<f32>(&bytes, DtypePolicy::Exact)?, d);
/// assert!(read_state_dict::<f64>(&bytes, DtypePolicy::Exact).is_err());
/// assert_eq!(read_state_dict::<f64>(&bytes, DtypePolicy::Convert)?.get("weight_hh_l0").map(|a| a[[0, 0]]), Some(0.5));
/// # Ok::<(), rnnlab_core::Error>(())
/// ```
pub fn read_state_dict<F: Float>(bytes: &[u8], policy: DtypePolicy) -> Result<StateDict<F>> {
    decode(bytes)?.state_dict("read_state_dict", policy)
}

/// [`read_state_dict`] of a file.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; otherwise as [`read_state_dict`].
pub fn read_state_dict_file<F: Float>(path: &Path, policy: DtypePolicy) -> Result<StateDict<F>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read_state_dict_file", path.display().to_string(), e))?;
    read_state_dict(&bytes, policy)
}

/// A [`StateDict`] as safetensors bytes under its own names, dtype `F32` or `F64` as `F`,
/// with the given string metadata (PyTorch's `safetensors.torch.load_file` wants
/// `format = "pt"`). Write it with [`crate::write_atomic`].
///
/// # Errors
/// [`Error::Format`] for the reserved name `__metadata__` or a header over the crate's limit.
pub fn state_dict_to_safetensors<F: Float>(
    dict: &StateDict<F>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    encode(dict.iter(), metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr<F: Float>(shape: &[usize], v: &[f64]) -> ArrayD<F> {
        ArrayD::from_shape_vec(IxDyn(shape), v.iter().map(|&x| F::of(x)).collect()).unwrap()
    }

    fn sample<F: Float>() -> Vec<u8> {
        let a = arr::<F>(&[2, 3], &[1.5, -2.0, 0.25, 3.0, 4.0, 5.0]);
        let b = arr::<F>(&[1], &[7.0]);
        let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        encode::<F>([("a", &a), ("b", &b)], &meta).unwrap()
    }

    #[test]
    fn round_trip_and_alignment() {
        let bytes = sample::<f32>();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!((8 + n) % 8, 0);
        let d = decode(&bytes).unwrap();
        assert_eq!(d.metadata["format"], "pt");
        let a = &d.tensors["a"];
        assert_eq!((a.dtype, a.shape.as_slice()), (Dtype::F32, &[2usize, 3][..]));
        let v: Vec<f64> = a.values::<f64>().collect();
        assert_eq!(v, [1.5, -2.0, 0.25, 3.0, 4.0, 5.0]);
        // a transposed array is written in logical (row-major) order
        let t = arr::<f64>(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).reversed_axes();
        let bytes = encode::<f64>([("t", &t)], &BTreeMap::new()).unwrap();
        let d = read_state_dict::<f64>(&bytes, DtypePolicy::Exact).unwrap();
        assert_eq!(d.get("t"), Some(&t));
    }

    #[test]
    fn the_same_tensors_and_metadata_give_the_same_bytes() {
        // The crate takes metadata as a HashMap, whose order differs between maps.
        let meta: BTreeMap<String, String> = (0..20).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
        let a = arr::<f32>(&[2], &[1.0, 2.0]);
        let first = encode::<f32>([("a", &a)], &meta).unwrap();
        for _ in 0..10 {
            assert_eq!(encode::<f32>([("a", &a)], &meta).unwrap(), first);
        }
        let (_, m) = SafeTensors::read_metadata(&first).unwrap();
        assert_eq!(m.metadata().as_ref().unwrap().len(), 20);
    }

    #[test]
    fn reference_implementation_reads_ours_and_we_read_theirs() {
        // Ours → reference.
        let bytes = sample::<f64>();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let a = st.tensor("a").unwrap();
        assert_eq!(a.dtype(), safetensors::Dtype::F64);
        assert_eq!(a.shape(), &[2, 3]);
        assert_eq!(&a.data()[..8], &1.5f64.to_le_bytes());
        // Reference → ours.
        let data: Vec<u8> = [1.0f32, 2.0, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3], &data).unwrap();
        let theirs = safetensors::serialize([("rnn.weight_ih_l0", view)], None).unwrap();
        let d = decode(&theirs).unwrap();
        let t = &d.tensors["rnn.weight_ih_l0"];
        assert_eq!(t.values::<f32>().collect::<Vec<_>>(), [1.0, 2.0, 3.0]);
    }

    #[test]
    fn truncation_anywhere_is_an_error() {
        let bytes = sample::<f32>();
        for cut in [0, 4, 7, 8, 20, bytes.len() - 1] {
            let e = decode(&bytes[..cut]).unwrap_err();
            assert!(matches!(e, Error::Format { .. }), "cut {cut}: {e}");
        }
        for cut in [0, 7, 20, bytes.len() - 1] {
            let e = decode(&bytes[..cut]).unwrap_err();
            assert!(e.to_string().contains("truncated"), "cut {cut}: {e}");
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; 4]);
        assert!(decode(&longer).unwrap_err().to_string().contains("4 bytes after the last tensor"));
    }

    #[test]
    fn every_flipped_header_byte_is_an_error_or_harmless() {
        let bytes = sample::<f32>();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        for i in 0..8 + n {
            let mut b = bytes.clone();
            b[i] ^= 0xFF;
            // A flipped byte must never panic; it may only succeed if it left the meaning intact.
            if let Ok(d) = decode(&b) {
                assert_eq!(d.tensors.len(), 2, "byte {i}");
            }
        }
    }

    #[test]
    fn inconsistent_headers_are_rejected() {
        let make = |header: &str, data_len: usize| {
            let mut v = (header.len() as u64).to_le_bytes().to_vec();
            v.extend_from_slice(header.as_bytes());
            v.extend(std::iter::repeat_n(0u8, data_len));
            v
        };
        let cases = [
            (r#"{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}"#, 2, "dtype F16"),
            (r#"{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#, 8, "only F32 and F64"),
            (r#"{"a":{"dtype":"F22","shape":[1],"data_offsets":[0,4]}}"#, 4, "JSON"),
            (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, 4, "do not hold"),
            (r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, 8, "gap"),
            (r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, 6, "after the last"),
            (r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, 2, "truncated"),
            (r#"{"__metadata__":{"k":1}}"#, 0, "string metadata"),
            (r#"[1,2]"#, 0, "JSON object"),
        ];
        for (h, len, what) in cases {
            let e = decode(&make(h, len)).unwrap_err();
            assert!(matches!(e, Error::Format { .. }) && e.to_string().contains(what), "{h}: {e}");
        }
        let mut huge = (MAX_HEADER_BYTES + 1).to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        assert!(decode(&huge).unwrap_err().to_string().contains("limit"));
        // An unknown field in an entry is ignored, as the reference reader ignores it.
        let extra = make(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}"#, 4);
        assert_eq!(decode(&extra).unwrap().tensors["a"].shape, [1]);
    }

    #[test]
    fn encode_rejects_reserved_and_repeated_names() {
        let a = arr::<f32>(&[1], &[1.0]);
        assert!(matches!(encode([("__metadata__", &a)], &BTreeMap::new()), Err(Error::Format { .. })));
        assert!(matches!(encode([("a", &a), ("a", &a)], &BTreeMap::new()), Err(Error::Format { .. })));
    }

    #[test]
    fn dtype_policy_exact_refuses_and_convert_converts() {
        let b64 = sample::<f64>();
        let e = read_state_dict::<f32>(&b64, DtypePolicy::Exact).unwrap_err();
        assert!(e.to_string().contains("tensor `a` is F64, expected F32"), "{e}");
        let d = read_state_dict::<f32>(&b64, DtypePolicy::Convert).unwrap();
        assert_eq!(d.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(d.get("a").unwrap()[[1, 2]], 5.0f32);
        let b32 = sample::<f32>();
        let d = read_state_dict::<f64>(&b32, DtypePolicy::Convert).unwrap();
        assert_eq!(d.get("a").unwrap()[[0, 2]], 0.25);
        assert_eq!(serde_json::to_string(&DtypePolicy::Convert).unwrap(), "\"convert\"");
    }
}
