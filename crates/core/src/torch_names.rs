//! The two-way mapping between rnnlab's parameter names (`layers.0.w_ih`) and PyTorch's
//! (`weight_ih_l0`), for any stack under any prefix (the table is on [`to_torch`]).

/// rnnlab's four recurrent parameter names and PyTorch's stems for them, in visiting order.
pub const TORCH_RNN_PARAMS: [(&str, &str); 4] =
    [("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"), ("b_hh", "bias_hh")];

/// PyTorch's name for an rnnlab parameter name.
///
/// rnnlab visits parameters by its own stable names: a recurrent stack names layer `l`'s
/// parameters `layers.{l}.{p}` with `p` one of `w_ih`, `w_hh`, `b_ih`, `b_hh` (the reverse
/// direction of a bidirectional layer `layers.{l}.reverse.{p}`), and a container prefixes its
/// children (`rnn.`, `head.`). PyTorch's `nn.RNN`/`nn.LSTM`/`nn.GRU` name the same tensors
/// `weight_ih_l{l}`, `weight_hh_l{l}`, `bias_ih_l{l}`, `bias_hh_l{l}`, with a `_reverse` suffix
/// for the reverse direction. Layouts are identical (`[gates·H, in]`, gate order i, f, g, o for
/// the LSTM and r, z, n for the GRU), so a tensor crosses over by its name alone.
///
/// | rnnlab | PyTorch |
/// |---|---|
/// | `{prefix}layers.{l}.w_ih` | `{prefix}weight_ih_l{l}` |
/// | `{prefix}layers.{l}.w_hh` | `{prefix}weight_hh_l{l}` |
/// | `{prefix}layers.{l}.b_ih` | `{prefix}bias_ih_l{l}` |
/// | `{prefix}layers.{l}.b_hh` | `{prefix}bias_hh_l{l}` |
/// | `{prefix}layers.{l}.reverse.{p}` | `{prefix}{torch(p)}_l{l}_reverse` |
/// | anything else (`head.weight`, `layers.0.norm_x.gamma`) | unchanged |
///
/// Here `{prefix}` is empty or any dot-terminated string (`rnn.`, `encoder.rnn.`) and `{l}` is
/// a non-empty run of ASCII digits, copied verbatim.
///
/// # Round trips
/// Both functions are total (every string maps to a string) and they invert each other on
/// the names that can occur:
/// - `from_torch(&to_torch(n)) == n` for every name `n` whose last dot-separated segment is
///   not itself of PyTorch's form `{weight|bias}_{ih|hh}_l{digits}[_reverse]` — every name a
///   built-in layer, cell or model produces (tested over all of them in `rnnlab-train`);
/// - `to_torch(&from_torch(t)) == t` for every name `t` that does not end in
///   `layers.{l}.{p}` or `layers.{l}.reverse.{p}` — every name of a PyTorch `state_dict`.
///
/// A name outside its domain (a user's cell that calls a parameter `weight_ih_l0`) would not
/// survive the round trip; [`torch_round_trips`] says whether one does, and rnnlab's
/// safetensors writer refuses such a name instead of writing a file that does not load back.
///
/// # Examples
/// ```
/// use rnnlab_core::to_torch;
/// assert_eq!(to_torch("rnn.layers.1.b_hh"), "rnn.bias_hh_l1");
/// assert_eq!(to_torch("layers.0.reverse.w_ih"), "weight_ih_l0_reverse");
/// assert_eq!(to_torch("head.weight"), "head.weight");
/// assert_eq!(to_torch("layers.0.norm_x.gamma"), "layers.0.norm_x.gamma");
/// ```
pub fn to_torch(name: &str) -> String {
    let segs: Vec<&str> = name.split('.').collect();
    let n = segs.len();
    // [..prefix, "layers", l, p] or [..prefix, "layers", l, "reverse", p]
    let (stem_at, reverse) = match segs.as_slice() {
        [.., "layers", l, _] if is_digits(l) => (n - 3, false),
        [.., "layers", l, "reverse", _] if is_digits(l) => (n - 4, true),
        _ => return name.to_string(),
    };
    let (Some(layer), Some(param)) = (segs.get(stem_at + 1), segs.last()) else {
        return name.to_string();
    };
    let Some(torch) = TORCH_RNN_PARAMS.iter().find(|(ours, _)| ours == param).map(|(_, t)| *t) else {
        return name.to_string();
    };
    let prefix: String = segs.iter().take(stem_at).map(|s| format!("{s}.")).collect();
    let suffix = if reverse { "_reverse" } else { "" };
    format!("{prefix}{torch}_l{layer}{suffix}")
}

/// The rnnlab name for a PyTorch parameter name: the inverse of [`to_torch`] (see there for
/// the table and the domains on which the two invert each other).
///
/// # Examples
/// ```
/// use rnnlab_core::from_torch;
/// assert_eq!(from_torch("rnn.weight_hh_l2"), "rnn.layers.2.w_hh");
/// assert_eq!(from_torch("bias_ih_l1_reverse"), "layers.1.reverse.b_ih");
/// assert_eq!(from_torch("head.bias"), "head.bias");
/// assert_eq!(from_torch("weight_ih_lx"), "weight_ih_lx");
/// ```
pub fn from_torch(name: &str) -> String {
    let (prefix, last) = match name.rsplit_once('.') {
        Some((p, l)) => (format!("{p}."), l),
        None => (String::new(), name),
    };
    match parse_torch_segment(last) {
        Some((ours, layer, true)) => format!("{prefix}layers.{layer}.reverse.{ours}"),
        Some((ours, layer, false)) => format!("{prefix}layers.{layer}.{ours}"),
        None => name.to_string(),
    }
}

/// Whether `name` survives `from_torch(&to_torch(name))`, i.e. can be written under PyTorch's
/// names and read back: false exactly when its last segment already has PyTorch's form.
///
/// # Examples
/// ```
/// use rnnlab_core::torch_round_trips;
/// assert!(torch_round_trips("rnn.layers.0.w_ih"));
/// assert!(!torch_round_trips("my_cell.weight_ih_l0"));
/// ```
pub fn torch_round_trips(name: &str) -> bool {
    from_torch(&to_torch(name)) == name
}

/// `Some((rnnlab param, layer digits, reverse))` for a segment `{weight|bias}_{ih|hh}_l{digits}[_reverse]`.
fn parse_torch_segment(seg: &str) -> Option<(&'static str, &str, bool)> {
    TORCH_RNN_PARAMS.iter().find_map(|&(ours, torch)| {
        let rest = seg.strip_prefix(torch)?.strip_prefix("_l")?;
        let (layer, reverse) = match rest.strip_suffix("_reverse") {
            Some(l) => (l, true),
            None => (rest, false),
        };
        is_digits(layer).then_some((ours, layer, reverse))
    })
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name of PyTorch's `nn.{RNN,LSTM,GRU}(…, num_layers, bidirectional)` `state_dict`,
    /// optionally under a prefix: `weight_ih_l{l}{suffix}`, `weight_hh_l…`, `bias_ih_l…`, `bias_hh_l…`.
    fn torch_names(prefix: &str, num_layers: usize, bidirectional: bool) -> Vec<String> {
        let mut v = Vec::new();
        for l in 0..num_layers {
            for suffix in if bidirectional { &["", "_reverse"][..] } else { &[""][..] } {
                for (_, t) in TORCH_RNN_PARAMS {
                    v.push(format!("{prefix}{t}_l{l}{suffix}"));
                }
            }
        }
        v
    }

    #[test]
    fn every_pytorch_rnn_name_round_trips() {
        for prefix in ["", "rnn.", "encoder.rnn.", "layers.3.", "weight_ih_l0."] {
            for num_layers in [1, 2, 3, 7, 12, 101] {
                for bidirectional in [false, true] {
                    let names = torch_names(prefix, num_layers, bidirectional);
                    let ours: Vec<String> = names.iter().map(|t| from_torch(t)).collect();
                    for (t, o) in names.iter().zip(&ours) {
                        assert_eq!(&to_torch(o), t, "{o}");
                        assert_ne!(o, t, "{t} was mapped");
                        assert!(o.starts_with(&format!("{prefix}layers.")), "{o}");
                    }
                    // injective: as many distinct rnnlab names as PyTorch names
                    let set: std::collections::BTreeSet<&String> = ours.iter().collect();
                    assert_eq!(set.len(), names.len());
                }
            }
        }
        assert_eq!(from_torch("weight_hh_l10_reverse"), "layers.10.reverse.w_hh");
        assert_eq!(from_torch("rnn.bias_hh_l0"), "rnn.layers.0.b_hh");
    }

    #[test]
    fn rnnlab_stack_names_round_trip() {
        let extras = ["norm_x.gamma", "norm_x.beta", "norm_h.gamma", "norm_h.beta", "norm_c.gamma", "norm_c.beta"];
        for prefix in ["", "rnn.", "a.b.c."] {
            for l in [0usize, 1, 9, 10, 250] {
                for dir in ["", "reverse."] {
                    for (ours, torch) in TORCH_RNN_PARAMS {
                        let n = format!("{prefix}layers.{l}.{dir}{ours}");
                        let suffix = if dir.is_empty() { "" } else { "_reverse" };
                        assert_eq!(to_torch(&n), format!("{prefix}{torch}_l{l}{suffix}"));
                        assert_eq!(from_torch(&to_torch(&n)), n);
                        assert!(torch_round_trips(&n));
                    }
                    for e in extras {
                        let n = format!("{prefix}layers.{l}.{dir}{e}");
                        assert_eq!(to_torch(&n), n, "not a PyTorch parameter: unchanged");
                        assert_eq!(from_torch(&n), n);
                    }
                }
            }
        }
    }

    #[test]
    fn other_names_are_unchanged_both_ways() {
        let cases = [
            "",
            ".",
            "w_ih",
            "head.weight",
            "head.bias",
            "layers",
            "layers.0",
            "layers.x.w_ih",
            "layers.-1.w_ih",
            "layers.+1.w_ih",
            "layers..w_ih",
            "layers.0.w_ih.extra",
            "layers.0.reverse",
            "layers.0.forward.w_ih",
            "xlayers.0.w_ih",
            "layers.0.weight",
            "weight_ih_l",
            "weight_ih_lx",
            "weight_ih_l0_reversed",
            "weight_ih_l_reverse",
            "weight_ih_0",
            "bias_l0",
            "weight_ih_l0.gamma",
            "gamma",
        ];
        for n in cases {
            assert_eq!(to_torch(n), n, "to_torch({n:?})");
            assert_eq!(from_torch(n), n, "from_torch({n:?})");
        }
    }

    #[test]
    fn names_outside_the_domain_are_detected() {
        // Both map to "weight_ih_l0": the one that already looks like PyTorch's cannot come back.
        assert_eq!(to_torch("weight_ih_l0"), to_torch("layers.0.w_ih"));
        assert!(!torch_round_trips("weight_ih_l0"));
        assert!(!torch_round_trips("cell.bias_hh_l3_reverse"));
        assert!(torch_round_trips("layers.0.w_ih"));
        assert!(torch_round_trips("head.weight"));
    }

    #[test]
    fn digit_runs_are_copied_verbatim() {
        assert_eq!(to_torch("layers.007.w_ih"), "weight_ih_l007");
        assert_eq!(from_torch("weight_ih_l007"), "layers.007.w_ih");
        // longer than any usize: still a name, still a round trip
        let big = "9".repeat(40);
        assert_eq!(from_torch(&to_torch(&format!("layers.{big}.b_ih"))), format!("layers.{big}.b_ih"));
    }
}
