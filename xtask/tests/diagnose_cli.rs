//! `cargo xtask diagnose` end to end: the real binary on files written here (a PyTorch-layout
//! LSTM state dict, a model config), its stdout, its JSON and its exit codes.

use std::path::PathBuf;
use std::process::Command;

use safetensors::Dtype;
use safetensors::tensor::TensorView;

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("rnnlab-xtask-diagnose-cli-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `nn.LSTM(2, 4, num_layers=2).state_dict()` as `safetensors.torch.save_file` writes it.
fn lstm_file(path: &std::path::Path) {
    let (h, i) = (4, 2);
    let mut tensors: Vec<(String, Vec<usize>)> = Vec::new();
    for l in 0..2 {
        let input = if l == 0 { i } else { h };
        tensors.push((format!("weight_ih_l{l}"), vec![4 * h, input]));
        tensors.push((format!("weight_hh_l{l}"), vec![4 * h, h]));
        tensors.push((format!("bias_ih_l{l}"), vec![4 * h]));
        tensors.push((format!("bias_hh_l{l}"), vec![4 * h]));
    }
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, s)| {
            let n: usize = s.iter().product();
            (0..n).flat_map(|k| ((k % 7) as f32 * 0.1 - 0.3).to_le_bytes()).collect()
        })
        .collect();
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .zip(&data)
        .map(|((n, s), d)| (n.as_str(), TensorView::new(Dtype::F32, s.clone(), d).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn the_binary_diagnoses_a_pytorch_lstm_and_fails_cleanly_on_bad_input() {
    let d = dir();
    let (cfg, w, out) = (d.join("model.json"), d.join("lstm.safetensors"), d.join("out/report.json"));
    std::fs::write(
        &cfg,
        r#"{"input_dim": 2, "output_dim": 1, "hidden_dim": 4, "n_layers": 2, "cell": {"kind": "lstm"}, "loss": "mse_last"}"#,
    )
    .unwrap();
    lstm_file(&w);
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("diagnose")
            .arg("--config")
            .arg(&cfg)
            .arg("--weights")
            .arg(&w)
            .args(extra)
            .output()
            .unwrap()
    };
    let ok = run(&["--task", "adding", "--seq-len", "20", "--batch", "3", "--out", out.to_str().unwrap()]);
    let (stdout, stderr) = (String::from_utf8_lossy(&ok.stdout), String::from_utf8_lossy(&ok.stderr));
    assert!(ok.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("verdict:") && stdout.contains("T = 20, B = 3"), "{stdout}");
    assert!(stdout.contains("loss:    probe L"), "{stdout}");
    assert!(stderr.contains(&out.display().to_string()), "{stderr}");
    let report: rnnlab_diagnostics::Report = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!((report.layers.len(), report.time, report.batch), (2, 20, 3));

    let bad = run(&["--task", "sorting", "--seq-len", "20"]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: unknown task \"sorting\""), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");

    let missing = run(&["--input", d.join("absent.npy").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("absent.npy"));

    // clap's own usage errors exit with 2.
    let none = run(&[]);
    assert_eq!(none.status.code(), Some(2));
    std::fs::remove_dir_all(&d).ok();
}
