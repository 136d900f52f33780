//! Peer figures: the JSON lines written by `bench/peers/torch_bench.py` and `jax_bench.py`.
//!
//! Only records with `"kind": "result"`, `"dtype": "float32"`, `B = 32` and `I = H` are kept, for
//! the three peers the bench table shows (torch `fused`, torch `cell_loop`, JAX `scan_jit`). A
//! configuration measured several times (repeated passes, several files) is reported as the
//! median of its `median_ms` values.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde_json::Value;

/// One peer implementation shown in the bench table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Peer {
    /// PyTorch `nn.RNN` / `nn.LSTM` / `nn.GRU` over the whole sequence (`"impl": "fused"`).
    TorchFused,
    /// PyTorch loop over the `*Cell` modules keeping every dL/dh_t (`"impl": "cell_loop"`).
    TorchCellLoop,
    /// JAX `lax.scan` + `jit` (`"impl": "scan_jit"`).
    Jax,
}

impl Peer {
    /// The peer a record's `framework` and `impl` fields name, if the table shows it.
    fn from_names(framework: &str, imp: &str) -> Option<Self> {
        match (framework, imp) {
            ("torch", "fused") => Some(Self::TorchFused),
            ("torch", "cell_loop") => Some(Self::TorchCellLoop),
            ("jax", "scan_jit") => Some(Self::Jax),
            _ => None,
        }
    }
}

/// A measured configuration: cell, hidden size `H`, sequence length `T`, thread count.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) cell: String,
    pub(crate) h: usize,
    pub(crate) t: usize,
    pub(crate) threads: usize,
}

/// Peer timings collected from any number of JSON-lines files.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    samples: BTreeMap<(Peer, Key), Vec<f64>>,
}

impl Peers {
    /// Adds the records of one JSON-lines text; `source` names it in error messages.
    ///
    /// Blank lines and lines that are JSON but not a kept result record (the `meta` line,
    /// `I = 2`, float64, other implementations, missing fields) are skipped.
    ///
    /// # Errors
    /// A line that is not valid JSON, naming `source`, the 1-based line number and the column.
    pub(crate) fn add_jsonl(&mut self, source: &str, text: &str) -> Result<()> {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            // Python's json writes NaN / Infinity (e.g. the scripts' load fields when they
            // cannot read /proc/stat), which is not JSON: read those values as null.
            let parsed = serde_json::from_str(line).or_else(|e| {
                let fixed = line.replace("-Infinity", "null").replace("Infinity", "null").replace("NaN", "null");
                if fixed == line { Err(e) } else { serde_json::from_str(&fixed).map_err(|_| e) }
            });
            let v: Value = match parsed {
                Ok(v) => v,
                Err(e) => {
                    // serde_json's message ends in " at line 1 column N" (of this one line).
                    let msg = e.to_string();
                    let what = msg.split(" at line ").next().unwrap_or(&msg);
                    bail!("{source}:{}:{}: not valid JSON: {what}", i + 1, e.column());
                }
            };
            if let Some((peer, key, ms)) = record(&v) {
                self.samples.entry((peer, key)).or_default().push(ms);
            }
        }
        Ok(())
    }

    /// The median of the `median_ms` values recorded for `peer` at `key`, if any.
    pub(crate) fn median_ms(&self, peer: Peer, key: &Key) -> Option<f64> {
        self.samples.get(&(peer, key.clone())).and_then(|v| median(v))
    }

    /// Whether no record was kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// The peer, configuration and `median_ms` of a kept result record; `None` for anything else.
fn record(v: &Value) -> Option<(Peer, Key, f64)> {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    let n = |k: &str| v.get(k).and_then(Value::as_u64).and_then(|x| usize::try_from(x).ok());
    if s("kind")? != "result" || s("dtype")? != "float32" || n("B")? != 32 || n("I")? != n("H")? {
        return None;
    }
    let peer = Peer::from_names(s("framework")?, s("impl")?)?;
    let ms = v.get("median_ms").and_then(Value::as_f64).filter(|m| m.is_finite() && *m > 0.0)?;
    Some((peer, Key { cell: s("cell")?.to_owned(), h: n("H")?, t: n("T")?, threads: n("threads")? }, ms))
}

/// Median (mean of the middle two for an even count), `None` when empty.
fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(cell: &str, h: usize, t: usize, threads: usize) -> Key {
        Key { cell: cell.into(), h, t, threads }
    }

    /// `got` is `Some(x)` with x within 1e-12 (absolute plus relative) of `want`.
    fn close(got: Option<f64>, want: f64) -> bool {
        got.is_some_and(|x| (x - want).abs() <= 1e-12 * (1.0 + want.abs()))
    }

    const TORCH: &str = r#"{"kind": "meta", "framework": "torch", "version": "2.15.0"}
{"kind": "result", "framework": "torch", "cell": "lstm", "impl": "fused", "dtype": "float32", "B": 32, "I": 128, "H": 128, "T": 50, "threads": 1, "median_ms": 20.0}
{"kind": "result", "framework": "torch", "cell": "lstm", "impl": "fused", "dtype": "float32", "B": 32, "I": 2, "H": 128, "T": 50, "threads": 1, "median_ms": 1.0}

{"kind": "result", "framework": "torch", "cell": "lstm", "impl": "fused", "dtype": "float64", "B": 32, "I": 128, "H": 128, "T": 50, "threads": 1, "median_ms": 2.0}
{"kind": "result", "framework": "torch", "cell": "lstm", "impl": "fused_nomkldnn", "dtype": "float32", "B": 32, "I": 128, "H": 128, "T": 50, "threads": 1, "median_ms": 3.0}
{"kind": "result", "framework": "torch", "cell": "lstm", "impl": "fused", "dtype": "float32", "B": 32, "I": 128, "H": 128, "T": 50, "threads": 1, "median_ms": 26.0}
{"kind": "result", "framework": "torch", "cell": "lstm", "impl": "cell_loop", "dtype": "float32", "B": 32, "I": 128, "H": 128, "T": 50, "threads": 2, "median_ms": 35.0}
[1, 2, 3]
"#;

    #[test]
    fn keeps_float32_i_eq_h_results_and_takes_the_median_of_repeats() -> Result<()> {
        let mut peers = Peers::default();
        peers.add_jsonl("torch.jsonl", TORCH)?;
        // Two passes at the same key: 20 and 26 → (20 + 26) / 2 = 23; the I = 2, float64 and
        // fused_nomkldnn lines are skipped rather than mixed in.
        assert!(close(peers.median_ms(Peer::TorchFused, &key("lstm", 128, 50, 1)), 23.0));
        assert!(close(peers.median_ms(Peer::TorchCellLoop, &key("lstm", 128, 50, 2)), 35.0));
        assert!(peers.median_ms(Peer::TorchCellLoop, &key("lstm", 128, 50, 1)).is_none());
        assert!(peers.median_ms(Peer::Jax, &key("lstm", 128, 50, 1)).is_none());

        // A third pass from another file: median of 20, 26, 21 = 21.
        let jax = r#"{"kind": "result", "framework": "torch", "cell": "lstm", "impl": "fused", "dtype": "float32", "B": 32, "I": 128, "H": 128, "T": 50, "threads": 1, "median_ms": 21.0}
{"kind": "result", "framework": "jax", "cell": "gru", "impl": "scan_jit", "dtype": "float32", "B": 32, "I": 32, "H": 32, "T": 200, "threads": 1, "median_ms": 4.5}"#;
        peers.add_jsonl("jax.jsonl", jax)?;
        assert!(close(peers.median_ms(Peer::TorchFused, &key("lstm", 128, 50, 1)), 21.0));
        assert!(close(peers.median_ms(Peer::Jax, &key("gru", 32, 200, 1)), 4.5));
        Ok(())
    }

    #[test]
    fn invalid_json_names_the_file_and_line() {
        let text = "{\"kind\": \"meta\"}\n\n{\"kind\": \"result\", \"median_ms\": 1.0,}\n";
        let msg = Peers::default().add_jsonl("runs/torch.jsonl", text).err().map(|e| e.to_string()).unwrap_or_default();
        // Line 3 (the blank line 2 still counts), column 37 (the `}` after the trailing comma).
        assert!(msg.starts_with("runs/torch.jsonl:3:37: not valid JSON: trailing comma"), "{msg}");
    }

    #[test]
    fn python_nan_and_infinity_are_read_as_null() -> Result<()> {
        // torch_bench.py writes `"other_load_before": NaN` when it does not wait for an idle
        // machine; the record is still a result.
        let line = r#"{"kind": "result", "framework": "torch", "cell": "rnn_tanh", "impl": "fused", "dtype": "float32", "B": 32, "I": 64, "H": 64, "T": 50, "threads": 1, "median_ms": 5.0, "other_load_before": NaN, "x": -Infinity}"#;
        let mut peers = Peers::default();
        peers.add_jsonl("torch.jsonl", line)?;
        assert!(close(peers.median_ms(Peer::TorchFused, &key("rnn_tanh", 64, 50, 1)), 5.0));
        // a NaN where the figure belongs: the record is skipped, not an error
        let bad = line.replace("\"median_ms\": 5.0", "\"median_ms\": NaN");
        let mut peers = Peers::default();
        peers.add_jsonl("torch.jsonl", &bad)?;
        assert!(peers.median_ms(Peer::TorchFused, &key("rnn_tanh", 64, 50, 1)).is_none());
        Ok(())
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert!(close(median(&[3.0, 1.0, 2.0]), 2.0));
        assert!(close(median(&[4.0, 1.0]), 2.5));
        assert!(median(&[]).is_none());
    }
}
