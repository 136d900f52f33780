//! The safetensors file format, written and read (with full validation) by hand: an 8-byte
//! little-endian header length N, N bytes of JSON header, then the raw little-endian tensor data.

use std::collections::BTreeMap;

use rnnlab_core::{Error, Float, Result};
use serde::Deserialize;

const OP: &str = "safetensors";

/// The largest header accepted (the reference implementation's limit, 100 MB).
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
    pub(crate) fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F64 => 8,
        }
    }

    /// The dtype of a float type.
    pub(crate) fn of<F: Float>() -> Self {
        if F::NAME == "f32" { Self::F32 } else { Self::F64 }
    }
}

/// One tensor to write: its name, shape and values in row-major order.
pub(crate) struct TensorOut<'a, F> {
    pub(crate) name: String,
    pub(crate) shape: Vec<usize>,
    pub(crate) values: Box<dyn Iterator<Item = F> + 'a>,
}

/// Encodes tensors (in the given order) and string metadata into safetensors bytes. The header
/// is padded with spaces so that the data starts at a multiple of 8 bytes, as the reference
/// writer does.
pub(crate) fn encode<F: Float>(tensors: Vec<TensorOut<'_, F>>, metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let dtype = Dtype::of::<F>();
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(metadata).map_err(json_err)?);
    }
    let mut data: Vec<u8> = Vec::new();
    for t in tensors {
        if t.name == "__metadata__" || header.contains_key(&t.name) {
            return Err(Error::format(OP, format!("tensor name `{}` is reserved or repeated", t.name)));
        }
        let begin = data.len();
        let mut n = 0usize;
        for v in t.values {
            match dtype {
                Dtype::F32 => data.extend_from_slice(&(v.as_f64() as f32).to_le_bytes()),
                Dtype::F64 => data.extend_from_slice(&v.as_f64().to_le_bytes()),
            }
            n += 1;
        }
        if n != t.shape.iter().product::<usize>() {
            return Err(Error::shape(OP, format!("{:?} values for `{}`", t.shape, t.name), format!("{n} values")));
        }
        header.insert(
            t.name,
            serde_json::json!({"dtype": dtype.name(), "shape": t.shape, "data_offsets": [begin, data.len()]}),
        );
    }
    let mut head = serde_json::to_vec(&serde_json::Value::Object(header)).map_err(json_err)?;
    while (8 + head.len()) % 8 != 0 {
        head.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + head.len() + data.len());
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&data);
    Ok(out)
}

fn json_err(e: serde_json::Error) -> Error {
    Error::format(OP, format!("header json: {e}"))
}

/// One tensor of a decoded file.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TensorIn {
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub(crate) begin: usize,
    pub(crate) end: usize,
}

/// A validated safetensors file.
#[derive(Clone, Debug)]
pub(crate) struct Decoded<'a> {
    bytes: &'a [u8],
    pub(crate) tensors: BTreeMap<String, TensorIn>,
    pub(crate) metadata: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// Parses and validates safetensors bytes: the header length fits the file, the header is a
/// UTF-8 JSON object of entries `{dtype, shape, data_offsets}` (plus an optional
/// `__metadata__` of strings), dtypes are `F32`/`F64`, each entry's byte range is exactly its
/// shape's size, and the ranges tile the data section with no gap, overlap or trailing byte.
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded<'_>> {
    if bytes.len() < 8 {
        return Err(Error::format(
            OP,
            format!("file is {} bytes, shorter than the 8-byte header length (truncated)", bytes.len()),
        ));
    }
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&bytes[..8]);
    let n = u64::from_le_bytes(len8);
    let rest = (bytes.len() - 8) as u64;
    if n > MAX_HEADER_BYTES {
        return Err(Error::format(
            OP,
            format!("header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit (corrupted)"),
        ));
    }
    if n > rest {
        return Err(Error::format(OP, format!("header length {n} exceeds the {rest} bytes that follow (truncated)")));
    }
    // n <= rest < usize::MAX here.
    let n = n as usize;
    let head = std::str::from_utf8(&bytes[8..8 + n])
        .map_err(|e| Error::format(OP, format!("header is not valid UTF-8 ({e}): corrupted")))?;
    let raw: BTreeMap<String, serde_json::Value> = serde_json::from_str(head.trim_end_matches(' '))
        .map_err(|e| Error::format(OP, format!("header is not a JSON object ({e}): corrupted or truncated")))?;
    let data_start = 8 + n;
    let data_len = bytes.len() - data_start;
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (name, value) in raw {
        if name == "__metadata__" {
            metadata = serde_json::from_value(value)
                .map_err(|e| Error::format(OP, format!("__metadata__ is not a map of strings: {e}")))?;
            continue;
        }
        let e: Entry = serde_json::from_value(value)
            .map_err(|e| Error::format(OP, format!("header entry of tensor `{name}`: {e}")))?;
        let dtype = match e.dtype.as_str() {
            "F32" => Dtype::F32,
            "F64" => Dtype::F64,
            other => {
                return Err(Error::format(
                    OP,
                    format!("tensor `{name}` has dtype {other:?}; only \"F32\" and \"F64\" are supported"),
                ));
            }
        };
        let [b, en] = e.data_offsets;
        let size = e.shape.iter().try_fold(dtype.size(), |acc, &d| acc.checked_mul(d));
        if b > en || size != Some(en - b) {
            return Err(Error::format(
                OP,
                format!(
                    "tensor `{name}`: data_offsets [{b}, {en}] do not hold a {} tensor of shape {:?}",
                    dtype.name(),
                    e.shape
                ),
            ));
        }
        tensors.insert(name, TensorIn { dtype, shape: e.shape, begin: b, end: en });
    }
    let mut ranges: Vec<(usize, usize, &str)> = tensors.iter().map(|(k, t)| (t.begin, t.end, k.as_str())).collect();
    ranges.sort_unstable();
    let mut at = 0usize;
    for (b, en, name) in ranges {
        if b != at {
            return Err(Error::format(
                OP,
                format!("tensor `{name}` starts at byte {b} of the data, expected {at} (gap or overlap: corrupted)"),
            ));
        }
        at = en;
    }
    if at > data_len {
        return Err(Error::format(OP, format!("tensors need {at} data bytes, the file holds {data_len} (truncated)")));
    }
    if at < data_len {
        return Err(Error::format(OP, format!("{} bytes after the last tensor (corrupted)", data_len - at)));
    }
    for t in tensors.values_mut() {
        t.begin += data_start;
        t.end += data_start;
    }
    Ok(Decoded { bytes, tensors, metadata })
}

impl Decoded<'_> {
    /// The values of a tensor, converted to `F` (exact from F32 or into F64; rounded from F64 into F32).
    pub(crate) fn values<F: Float>(&self, t: &TensorIn) -> impl Iterator<Item = F> + '_ {
        let bytes = &self.bytes[t.begin..t.end];
        let dtype = t.dtype;
        bytes.chunks_exact(dtype.size()).map(move |c| match dtype {
            Dtype::F32 => F::of(f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            Dtype::F64 => F::of(f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<F: Float>() -> Vec<u8> {
        let a = [1.5, -2.0, 0.25, 3.0, 4.0, 5.0];
        let b = [7.0];
        let tensors = vec![
            TensorOut { name: "a".into(), shape: vec![2, 3], values: Box::new(a.iter().map(|&v| F::of(v))) },
            TensorOut { name: "b".into(), shape: vec![1], values: Box::new(b.iter().map(|&v| F::of(v))) },
        ];
        let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        encode::<F>(tensors, &meta).unwrap()
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
        let v: Vec<f64> = d.values::<f64>(a).collect();
        assert_eq!(v, [1.5, -2.0, 0.25, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn reference_implementation_reads_ours_and_we_read_theirs() {
        // Ours → reference.
        let bytes = sample::<f64>();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
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
        assert_eq!(d.values::<f32>(t).collect::<Vec<_>>(), [1.0, 2.0, 3.0]);
    }

    #[test]
    fn truncation_anywhere_is_an_error() {
        let bytes = sample::<f32>();
        for cut in [0, 4, 7, 8, 20, bytes.len() - 1] {
            let e = decode(&bytes[..cut]).unwrap_err();
            assert!(matches!(e, Error::Format { .. }), "cut {cut}: {e}");
        }
        let e = decode(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
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
            (r#"{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}"#, 2, "dtype"),
            (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, 4, "do not hold"),
            (r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, 8, "gap"),
            (r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, 6, "after the last"),
            (r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}"#, 4, "unknown field"),
            (r#"{"__metadata__":{"k":1}}"#, 0, "strings"),
            (r#"[1,2]"#, 0, "JSON object"),
        ];
        for (h, len, what) in cases {
            let e = decode(&make(h, len)).unwrap_err();
            assert!(e.to_string().contains(what), "{h}: {e}");
        }
        let mut huge = (MAX_HEADER_BYTES + 1).to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        assert!(decode(&huge).unwrap_err().to_string().contains("limit"));
    }

    #[test]
    fn encode_rejects_wrong_counts_and_reserved_names() {
        let t = TensorOut::<f32> { name: "a".into(), shape: vec![2], values: Box::new(std::iter::once(1.0)) };
        assert!(matches!(encode(vec![t], &BTreeMap::new()), Err(Error::Shape { .. })));
        let t = TensorOut::<f32> { name: "__metadata__".into(), shape: vec![], values: Box::new(std::iter::once(1.0)) };
        assert!(matches!(encode(vec![t], &BTreeMap::new()), Err(Error::Format { .. })));
    }
}
