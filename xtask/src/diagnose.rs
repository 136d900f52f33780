//! `cargo xtask diagnose`: the gradient-flow report (`rnnlab_diagnostics::Report`) of a model
//! described by a `ModelConfig` file (unidirectional or bidirectional), with rnnlab's or
//! PyTorch's weights, on a task or an `.npy` input; the JSON and an SVG of the curves.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use ndarray::{Array2, Array3, ArrayView3, Axis, s};
use ndarray_npy::{ReadNpyError, ReadNpyExt};
use rand_distr::{Distribution, StandardNormal};
use rnnlab_cells::{BackwardOptions, Bidirectional, Direction, GruVariant, OutputGrad};
use rnnlab_core::{Float, Layer, seeded_rng};
use rnnlab_diagnostics::{DiagnoseConfig, LossKind as ReportLoss, Report};
use rnnlab_tasks::{
    AddingConfig, Batch, CopyMemoryConfig, DigitsConfig, Targets, Task, TaskConfig, TemporalOrderConfig,
};
use rnnlab_train::{
    AnyCell, CellConfig, DtypePolicy, LossKind, ModelConfig, SeqModel, Stack, load_torch_rnn_weights, read_state_dict,
};
use serde::Serialize;

/// Options of `cargo xtask diagnose`.
///
/// One input is required: `--task NAME --seq-len T`, `--task-json FILE` or `--input FILE.npy`.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["task", "task_json", "input"])))]
pub(crate) struct DiagnoseArgs {
    /// The model: an `rnnlab_train::ModelConfig` JSON file (`input_dim`, `output_dim`,
    /// `hidden_dim`, `n_layers`, `cell` of kind rnn / lstm / gru, `loss`, `seed`, and
    /// `"bidirectional": true` for PyTorch's `bidirectional=True`: then each layer's forward
    /// and reverse directions are reported apart).
    #[arg(long, value_name = "MODEL.json")]
    pub(crate) config: PathBuf,
    /// Weights to load: rnnlab's own model file (names `rnn.weight_ih_l0`, …, `head.weight`,
    /// e.g. a checkpoint's model.safetensors) or the bare `state_dict()` of a PyTorch
    /// `nn.RNN` / `nn.LSTM` / `nn.GRU` saved by `safetensors.torch.save_file` (names
    /// `weight_ih_l0`, …, `bias_hh_l{L−1}`, and `weight_ih_l0_reverse`, … when bidirectional),
    /// F32 or F64; told apart by the names. Without it
    /// the model's own initialisation (from the config's seed) is diagnosed.
    #[arg(long, value_name = "FILE.safetensors")]
    pub(crate) weights: Option<PathBuf>,
    /// A built-in task to sample the input from: adding, copy (--seq-len is the delay T,
    /// sequences have T + 20 steps), temporal_order, sequential_digits, permuted_digits
    /// (64 steps; no --seq-len).
    #[arg(long, value_name = "NAME")]
    pub(crate) task: Option<String>,
    /// The task's sequence length (the adding problem's T, …).
    #[arg(long, value_name = "T", requires = "task")]
    pub(crate) seq_len: Option<usize>,
    /// A task as a `rnnlab_tasks::TaskConfig` JSON file, e.g.
    /// `{"task": "copy_memory", "delay": 100, "n_copy": 10}`.
    #[arg(long, value_name = "TASK.json")]
    pub(crate) task_json: Option<PathBuf>,
    /// The input as a NumPy `.npy` file, shape [time, batch, input_dim], float32 or float64
    /// (`np.save("x.npy", x.astype(np.float32))`).
    #[arg(long, value_name = "FILE.npy")]
    pub(crate) input: Option<PathBuf>,
    /// Sequences sampled from the task [default: 32].
    #[arg(long, value_name = "N", conflicts_with = "input")]
    pub(crate) batch: Option<usize>,
    /// Seed of the task's batch and of the probe loss's directions.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub(crate) seed: u64,
    /// Build and run the model in f64 instead of f32.
    #[arg(long = "f64")]
    pub(crate) double: bool,
    /// Skip the Jacobian analysis (σ₁ of step-Jacobian products, one-step singular values,
    /// Pascanu's condition); the gradient flow, saturation and parameters remain.
    #[arg(long)]
    pub(crate) no_jacobian: bool,
    /// Where the JSON report goes [default: $CARGO_TARGET_DIR/diagnose/report.json, else
    /// target/diagnose/report.json in the workspace]; directories are created. Beside it, with the
    /// extension .svg, a plot of the relative ‖∂L/∂h_t‖ against the lag (log axis), one curve
    /// per layer and direction: the geometric mean over the batch, the 10–90 % band shaded.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
}

/// Sequences sampled from a task when `--batch` is not given.
pub(crate) const DEFAULT_BATCH: usize = 32;

/// ChaCha8 stream of the probe loss's directions (the task's batch uses stream 0 of the same
/// seed, so the two never share numbers).
const PROBE_STREAM: u64 = 1;

/// What was diagnosed, beside the report: written into the JSON as `"diagnosed"`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Source {
    /// The model config file.
    pub(crate) config: String,
    /// `ModelConfig::architecture`, e.g. `"lstm, 2 layers, 3 → 8 → 1"`.
    pub(crate) architecture: String,
    /// Where the weights came from.
    pub(crate) weights: WeightsSource,
    /// The input, e.g. `"adding(T=200), 32 sequences from seed 0"`.
    pub(crate) input: String,
    /// What was differentiated.
    pub(crate) loss: LossSource,
    /// Conversions and choices the reader should know about.
    pub(crate) notes: Vec<String>,
}

/// Where the weights came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub(crate) enum WeightsSource {
    /// No file: the config's initialisation.
    Initialisation {
        /// The config's seed.
        seed: u64,
    },
    /// rnnlab's model file (`rnn.*` and `head.*`).
    Rnnlab {
        /// The file.
        file: String,
        /// Its dtype, `"F32"` / `"F64"`.
        dtype: String,
    },
    /// A bare PyTorch `nn.RNN/LSTM/GRU` state dict (no head).
    Torch {
        /// The file.
        file: String,
        /// Its dtype, `"F32"` / `"F64"`.
        dtype: String,
    },
}

impl WeightsSource {
    /// Whether the head's weights are known (its own initialisation or rnnlab's file).
    fn has_head(&self) -> bool {
        !matches!(self, WeightsSource::Torch { .. })
    }
}

/// What was differentiated.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub(crate) enum LossSource {
    /// The model's own loss through its head against the task's targets.
    Model {
        /// The config's loss (`mse_last`, …).
        loss: LossKind,
        /// Its value on the batch.
        value: f64,
    },
    /// L = Σ_b ⟨g_b, h_{T−1,b}⟩ with fixed random unit vectors g_b.
    Probe {
        /// Seed of the directions (ChaCha8 stream 1).
        seed: u64,
    },
    /// A bidirectional model's L = Σ_b ⟨g_b, h_n,b⟩ on the top layer's final states of both
    /// directions (PyTorch's `h_n[-2:]`: forward h at t = T−1, reverse h at t = 0), g_b fixed
    /// random unit vectors of width 2H.
    ProbeFinalStates {
        /// Seed of the directions (ChaCha8 stream 1).
        seed: u64,
    },
}

impl LossSource {
    fn describe(&self) -> String {
        match self {
            LossSource::Model { loss, value } => format!(
                "the model's own loss {} through its head against the task's targets (L = {value:.6})",
                serde_json::to_value(loss).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
            ),
            LossSource::Probe { seed } => format!(
                "probe L = Σ_b ⟨g_b, h_(T−1),b⟩ on the top layer's last step, g_b a fixed random unit vector per \
                 example (seed {seed}, stream {PROBE_STREAM}): only the gradient's flow matters, and relative norms \
                 do not depend on g's scale"
            ),
            LossSource::ProbeFinalStates { seed } => format!(
                "probe L = Σ_b ⟨g_b, h_n,b⟩ on the top layer's final states of both directions (PyTorch's \
                 h_n[-2:]: forward h at t = T−1, reverse h at t = 0), g_b a fixed random unit vector of width 2H \
                 per example (seed {seed}, stream {PROBE_STREAM}): each direction's curve starts where it ends, \
                 and relative norms do not depend on g's scale"
            ),
        }
    }
}

/// A finished diagnosis.
#[derive(Clone, Debug)]
pub(crate) struct Diagnosis {
    /// The report.
    pub(crate) report: Report,
    /// What was diagnosed.
    pub(crate) source: Source,
}

impl Diagnosis {
    /// The lines printed before the report.
    pub(crate) fn header(&self) -> String {
        let s = &self.source;
        let weights = match &s.weights {
            WeightsSource::Initialisation { seed } => {
                format!("none given: the model's own initialisation (config seed {seed})")
            }
            WeightsSource::Rnnlab { file, dtype } => format!("{file} (rnnlab model file with head, {dtype})"),
            WeightsSource::Torch { file, dtype } => {
                format!("{file} (PyTorch nn.RNN/LSTM/GRU state_dict, no head, {dtype})")
            }
        };
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(out, "model:   {} ({}, {})", s.architecture, s.config, self.report.precision);
        let _ = writeln!(out, "weights: {weights}");
        let _ = writeln!(out, "input:   {}", s.input);
        let _ = writeln!(out, "loss:    {}", s.loss.describe());
        for n in &s.notes {
            let _ = writeln!(out, "note:    {n}");
        }
        out
    }

    /// The JSON written to `--out`: the report's own fields (so the file reads back as a
    /// `rnnlab_diagnostics::Report`) plus `"diagnosed"`: [`Source`].
    pub(crate) fn to_json(&self) -> Result<String> {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            report: &'a Report,
            diagnosed: &'a Source,
        }
        serde_json::to_string_pretty(&Out { report: &self.report, diagnosed: &self.source })
            .context("serialising the report")
    }
}

/// Runs `cargo xtask diagnose`: the diagnosis, the report on stdout, the JSON to `--out`.
pub(crate) fn diagnose(args: &DiagnoseArgs, root: &Path) -> Result<()> {
    let d = if args.double { run::<f64>(args)?.1 } else { run::<f32>(args)?.1 };
    print!("{}\n{}", d.header(), d.report);
    let out = match &args.out {
        Some(p) => p.clone(),
        None => crate::target_dir(root, std::env::var_os("CARGO_TARGET_DIR")).join("diagnose").join("report.json"),
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&out, d.to_json()?).with_context(|| format!("writing {}", out.display()))?;
    let svg_path = out.with_extension("svg");
    std::fs::write(&svg_path, plot::gradient_svg(&d.report)?)
        .with_context(|| format!("writing {}", svg_path.display()))?;
    eprintln!("xtask diagnose: report written to {} and {}", out.display(), svg_path.display());
    Ok(())
}

/// The diagnosis in float type `F`, and the model it ran on (with the weights loaded).
///
/// # Errors
/// Every bad input, naming the file or the option: unreadable or malformed files, weights
/// of another architecture, an unknown task, zero sizes, an input of the wrong shape.
pub(crate) fn run<F: Float>(args: &DiagnoseArgs) -> Result<(SeqModel<F>, Diagnosis)> {
    let sources = [args.task.is_some(), args.task_json.is_some(), args.input.is_some()];
    match sources.iter().filter(|&&s| s).count() {
        1 => {}
        0 => bail!("no input: give --task NAME --seq-len T, --task-json TASK.json or --input FILE.npy"),
        _ => bail!("give only one of --task, --task-json and --input"),
    }
    if args.seq_len.is_some() && args.task.is_none() {
        bail!("--seq-len applies to --task only");
    }
    if args.batch.is_some() && args.input.is_some() {
        bail!("--batch applies to a task; the .npy file's shape [time, batch, input_dim] sets the batch");
    }
    let batch = args.batch.unwrap_or(DEFAULT_BATCH);
    if batch == 0 {
        bail!("--batch must be at least 1, got 0");
    }

    let cfg: ModelConfig = read_json(&args.config, "model config")?;
    if let CellConfig::Custom(spec) = &cfg.cell {
        bail!(
            "{}: custom cell {:?} cannot be built from a config; diagnose it from Rust with \
             rnnlab_diagnostics::diagnose on your Recurrent stack",
            args.config.display(),
            spec.name
        );
    }
    let mut model = cfg.build::<F>().with_context(|| format!("{}: building the model", args.config.display()))?;
    let mut notes = Vec::new();
    let weights = match &args.weights {
        None => WeightsSource::Initialisation { seed: cfg.seed },
        Some(path) => load_weights(path, &mut model, &mut notes)?,
    };

    let (x, targets, input) = match (&args.task, &args.task_json, &args.input) {
        (Some(name), _, _) => sample(&task_config(name, args.seq_len)?, &cfg, batch, args.seed, &mut notes)?,
        (_, Some(path), _) => {
            let tc: TaskConfig = read_json(path, "task config")?;
            sample(&tc, &cfg, batch, args.seed, &mut notes).with_context(|| format!("task of {}", path.display()))?
        }
        (_, _, Some(path)) => {
            let x = read_npy::<F>(path, cfg.input_dim)?;
            let (t, b, i) = x.dim();
            (x, None, format!("{} [T = {t}, B = {b}, I = {i}]", path.display()))
        }
        // Excluded by the count above; kept as an error rather than a panic.
        (None, None, None) => bail!("no input"),
    };

    let mut dcfg = DiagnoseConfig::new();
    if args.no_jacobian {
        dcfg = dcfg.without_jacobian();
    }
    let (report, loss) = match targets.filter(|_| weights.has_head()) {
        Some(targets) => {
            let batch = Batch { inputs: x, targets };
            let (dh, value) = head_grad(&mut model, &batch)?;
            let grad = match &dh {
                HeadGrad::Last(g) => OutputGrad::Last(g.view()),
                HeadGrad::Every(g) => OutputGrad::Every(g.view()),
            };
            let report = match model.rnn_mut() {
                Stack::Unidirectional(r) => rnnlab_diagnostics::diagnose(r, batch.inputs.view(), grad, &dcfg),
                Stack::Bidirectional(b) => {
                    rnnlab_diagnostics::diagnose_bidirectional(b, batch.inputs.view(), grad, &dcfg)
                }
            }
            .context("diagnosing")?;
            (report, LossSource::Model { loss: cfg.loss, value })
        }
        None => match model.rnn_mut() {
            Stack::Unidirectional(r) => {
                let (_, b, _) = x.dim();
                let g = probe_directions::<F>(b, cfg.hidden_dim, args.seed);
                let report = rnnlab_diagnostics::diagnose(r, x.view(), OutputGrad::Last(g.view()), &dcfg)
                    .context("diagnosing")?;
                (report, LossSource::Probe { seed: args.seed })
            }
            Stack::Bidirectional(bi) => {
                let report = final_state_probe(bi, x.view(), args.seed, &dcfg).context("diagnosing")?;
                (report, LossSource::ProbeFinalStates { seed: args.seed })
            }
        },
    };
    let source = Source {
        config: args.config.display().to_string(),
        architecture: cfg.architecture(),
        weights,
        input,
        loss,
        notes,
    };
    Ok((model, Diagnosis { report, source }))
}

/// Reads and parses a JSON file, naming the file and `what` in every error.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow!("{}: not a valid {what}: {e}", path.display()))
}

/// Loads `path` into `model`, telling rnnlab's file (names under `rnn.` / `head.`) from a
/// bare PyTorch state dict by the names.
fn load_weights<F: Float>(path: &Path, model: &mut SeqModel<F>, notes: &mut Vec<String>) -> Result<WeightsSource> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("reading weights {file}"))?;
    let dict = read_state_dict::<F>(&bytes, DtypePolicy::Convert).with_context(|| format!("reading weights {file}"))?;
    let names: Vec<&str> = dict.names().collect();
    let dtype = file_dtype(&bytes).with_context(|| format!("reading weights {file}"))?;
    let arch = model.config().architecture();
    let rnnlab = names.iter().any(|n| n.starts_with("rnn.") || n.starts_with("head."));
    if rnnlab {
        model.load_safetensors_bytes(&bytes).with_context(|| {
            format!("loading {file} as rnnlab's model file (names rnn.*, head.*) into the model ({arch})")
        })?;
    } else {
        load_torch_rnn_weights(&bytes, model.rnn_mut(), DtypePolicy::Convert).with_context(|| {
            let mut msg = format!(
                "loading {file} as a PyTorch nn.RNN/LSTM/GRU state_dict (names weight_ih_l0, …) into the model ({arch})"
            );
            if let Some(what) = describe_torch(&dict) {
                msg.push_str(&format!("; the file holds {what}"));
            }
            if let Some(n) = names.iter().find(|n| n.contains('.')) {
                msg.push_str(&format!(
                    " (`{n}` has a module prefix: save the recurrent module's own state_dict, e.g. \
                     save_file(net.lstm.state_dict(), path))"
                ));
            }
            msg
        })?;
    }
    if let (false, CellConfig::Gru(g)) = (rnnlab, &model.config().cell)
        && g.variant == GruVariant::ResetBefore
    {
        notes.push(
            "PyTorch's nn.GRU is the reset-after GRU; this config's reset_before cell reads the same weights \
             under the other equation"
                .to_string(),
        );
    }
    let ours = if F::NAME == "f32" { "F32" } else { "F64" };
    if dtype != ours {
        notes.push(format!(
            "the weights are {dtype}, converted to {} ({})",
            F::NAME,
            if ours == "F64" { "exact" } else { "rounded to nearest" }
        ));
    }
    Ok(if rnnlab { WeightsSource::Rnnlab { file, dtype } } else { WeightsSource::Torch { file, dtype } })
}

/// What a bare PyTorch state dict holds, from `weight_hh_l0` `[G·H, H]` (G = 1 RNN, 3 GRU,
/// 4 LSTM), `weight_ih_l0` `[G·H, I]` and the highest layer index: e.g. `"a GRU (3 gates),
/// 2 layers, 2 → 16"`. `None` when the file does not look like one.
fn describe_torch<F: Float>(dict: &rnnlab_core::StateDict<F>) -> Option<String> {
    let hh = dict.get("weight_hh_l0")?.shape().to_vec();
    let (&[rows, h], Some(ih)) = (hh.as_slice(), dict.get("weight_ih_l0")) else { return None };
    let gates = if h > 0 && rows % h == 0 { rows / h } else { return None };
    let cell = match gates {
        1 => "an RNN (1 gate block)",
        3 => "a GRU (3 gates)",
        4 => "an LSTM (4 gates)",
        _ => return None,
    };
    let input = ih.shape().get(1).copied()?;
    let layers = (0..).take_while(|l| dict.contains(&format!("weight_hh_l{l}"))).count();
    Some(format!("{cell}, {layers} layer{}, {input} → {h}", if layers == 1 { "" } else { "s" }))
}

/// The dtype of a safetensors file's tensors (`"F32"`, `"F64"`, or `"F32+F64"` when mixed).
fn file_dtype(bytes: &[u8]) -> Result<String> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| anyhow!("{e}"))?;
    let mut dtypes: Vec<String> = meta.tensors().values().map(|t| format!("{:?}", t.dtype)).collect();
    dtypes.sort();
    dtypes.dedup();
    Ok(dtypes.join("+"))
}

/// The task config of `--task NAME --seq-len T`.
pub(crate) fn task_config(name: &str, seq_len: Option<usize>) -> Result<TaskConfig> {
    if seq_len == Some(0) {
        bail!("--seq-len must be at least 1, got 0");
    }
    let need = |t: Option<usize>| t.ok_or_else(|| anyhow!("--task {name} needs --seq-len T"));
    let digits = |permuted: bool| -> Result<TaskConfig> {
        if let Some(t) = seq_len {
            bail!("--task {name} has 64 steps (8×8 pixels); drop --seq-len {t} (or use --task-json for rows)");
        }
        Ok(DigitsConfig::new().with_permuted(permuted).into())
    };
    Ok(match name {
        "adding" => AddingConfig::new(need(seq_len)?).into(),
        "copy" | "copy_memory" => CopyMemoryConfig::new(need(seq_len)?).into(),
        "temporal_order" | "order" => TemporalOrderConfig::new(need(seq_len)?).into(),
        "sequential_digits" | "digits" => digits(false)?,
        "permuted_digits" => digits(true)?,
        other => bail!(
            "unknown task {other:?}: expected adding, copy, temporal_order, sequential_digits or permuted_digits \
             (or --task-json TASK.json)"
        ),
    })
}

type Sampled<F> = (Array3<F>, Option<Targets<F>>, String);

/// Draws `batch` sequences of the task from `seed`; the targets are kept only when they fit
/// the model's head and loss.
fn sample<F: Float>(
    tc: &TaskConfig,
    cfg: &ModelConfig,
    batch: usize,
    seed: u64,
    notes: &mut Vec<String>,
) -> Result<Sampled<F>> {
    let task = tc.build().context("building the task")?;
    if task.input_dim() != cfg.input_dim {
        bail!("task {} has input_dim {}, the model's input_dim is {}", task.name(), task.input_dim(), cfg.input_dim);
    }
    let b = task.sample::<F>(batch, &mut seeded_rng(seed)).context("sampling the task")?;
    let desc = format!("{}, {batch} sequences from seed {seed}", task.name());
    let fits = task.output_dim() == cfg.output_dim && task.target_kind() == cfg.loss.target_kind();
    if !fits {
        notes.push(format!(
            "the task's targets ({:?}, {} outputs) do not fit the model's loss ({:?}, output_dim {}): the probe \
             loss is used",
            task.target_kind(),
            task.output_dim(),
            cfg.loss,
            cfg.output_dim
        ));
    }
    Ok((b.inputs, fits.then_some(b.targets), desc))
}

/// ∂L/∂(top layer's outputs) of the model's loss through its head.
enum HeadGrad<F> {
    Last(Array2<F>),
    Every(Array3<F>),
}

/// The model's loss on `batch` and its gradient with respect to the top layer's h (at the
/// last step, or at every step for a per-step loss), through the head. Head gradients are
/// accumulated into the head, which the report does not read.
fn head_grad<F: Float>(model: &mut SeqModel<F>, batch: &Batch<F>) -> Result<(HeadGrad<F>, f64)> {
    let cfg = model.config().clone();
    let fwd = model.rnn_mut().forward(batch.inputs.view(), None).context("forward pass")?;
    let (t, b, h) = fwd.outputs.dim();
    model.rnn_mut().recycle(fwd.cache);
    let every = cfg.loss.every_step();
    let head_in = if every {
        fwd.outputs.into_shape_with_order((t * b, h)).context("flattening the outputs")?
    } else {
        // t ≥ 1: the forward pass refuses an empty sequence.
        fwd.outputs.index_axis(Axis(0), t.saturating_sub(1)).to_owned()
    };
    let (pred, cache) = model.head_mut().forward(head_in.view()).context("head forward")?;
    let lv = match (&batch.targets, cfg.loss) {
        (Targets::Regression(y), LossKind::MseLast) => rnnlab_train::mse(pred.view(), y.view())?,
        (Targets::ClassLast(l), LossKind::CrossEntropyLast) => {
            rnnlab_train::softmax_cross_entropy(pred.view(), l.view())?
        }
        (Targets::ClassEveryStep(l), LossKind::CrossEntropyEvery) => {
            // `l` is [time, batch]; row-major flattening matches the outputs' (t, b) rows.
            let flat: ndarray::Array1<usize> = l.iter().copied().collect();
            rnnlab_train::softmax_cross_entropy(pred.view(), flat.view())?
        }
        (targets, loss) => bail!("the model's loss {loss:?} does not fit {:?} targets", targets.kind()),
    };
    if !lv.loss.is_finite() {
        bail!("the model's loss is not finite ({}) on this input", lv.loss);
    }
    let dh = model.head_mut().backward(&cache, lv.grad.view()).context("head backward")?;
    let grad = if every {
        HeadGrad::Every(dh.into_shape_with_order((t, b, h)).context("reshaping ∂L/∂h")?)
    } else {
        HeadGrad::Last(dh)
    };
    Ok((grad, lv.loss))
}

/// `[batch, hidden]` rows of independent standard normals, each scaled to unit norm, from
/// `seeded_rng(seed)` on stream [`PROBE_STREAM`].
pub(crate) fn probe_directions<F: Float>(batch: usize, hidden: usize, seed: u64) -> Array2<F> {
    let mut rng = seeded_rng(seed);
    rng.set_stream(PROBE_STREAM);
    let mut g = Array2::<f64>::zeros((batch, hidden));
    for mut row in g.rows_mut() {
        row.mapv_inplace(|_| StandardNormal.sample(&mut rng));
        let n = row.dot(&row).sqrt();
        if n > 0.0 {
            row.mapv_inplace(|v| v / n);
        } else if let Some(v) = row.first_mut() {
            *v = 1.0; // probability zero, but a zero direction would leave no gradient
        }
    }
    g.mapv(F::of)
}

/// Reads an `.npy` file of shape `[time, batch, input_dim]`, float32 or float64 (either byte
/// order; C or Fortran order), into a standard-layout array of `F`.
pub(crate) fn read_npy<F: Float>(path: &Path, input_dim: usize) -> Result<Array3<F>> {
    let file = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("reading input {file}"))?;
    let npy_err = |e: ReadNpyError| -> anyhow::Error {
        match e {
            ReadNpyError::WrongNdim(_, got) => {
                anyhow!("{file}: the array has rank {got}, expected rank 3 [time, batch, input_dim]")
            }
            ReadNpyError::WrongDescriptor(d) => {
                anyhow!("{file}: dtype {d} is not supported: save the array as float32 ('<f4') or float64 ('<f8')")
            }
            ReadNpyError::MissingData => {
                anyhow!("{file}: truncated: the file ends before all values of the header's shape")
            }
            ReadNpyError::ExtraBytes(n) => {
                anyhow!("{file}: {n} bytes after the data the header describes (corrupted or not one array)")
            }
            ReadNpyError::ParseHeader(e) => anyhow!("{file}: not a valid .npy file: {e}"),
            other => anyhow!("{file}: cannot read the .npy file: {other}"),
        }
    };
    let x: Array3<f64> = match Array3::<f32>::read_npy(bytes.as_slice()) {
        Ok(a) => a.mapv(f64::from),
        Err(ReadNpyError::WrongDescriptor(_)) => Array3::<f64>::read_npy(bytes.as_slice()).map_err(npy_err)?,
        Err(e) => return Err(npy_err(e)),
    };
    let (t, b, i) = x.dim();
    if t == 0 || b == 0 {
        bail!(
            "{file}: shape [{t}, {b}, {i}] is empty: need at least one step and one sequence [time, batch, input_dim]"
        );
    }
    if i != input_dim {
        bail!(
            "{file}: shape [{t}, {b}, {i}] has input width {i}, the model's input_dim is {input_dim} (the array must be [time, batch, input_dim])"
        );
    }
    if let Some(k) = x.iter().position(|v| !v.is_finite()) {
        bail!("{file}: value {k} (row-major) is not finite");
    }
    // `iter` runs in logical (row-major) order whatever the memory layout.
    Array3::from_shape_vec((t, b, i), x.iter().map(|&v| F::of(v)).collect()).context("converting the input")
}

#[cfg(test)]
mod tests;

/// The report of a bidirectional stack under the probe L = Σ_b ⟨g_b, h_n,b⟩ on its top layer's
/// final states (forward at t = T−1, reverse at t = 0), g_b = [`probe_directions`] of width 2H.
fn final_state_probe<F: Float>(
    bi: &mut Bidirectional<F, AnyCell<F>>,
    x: ArrayView3<'_, F>,
    seed: u64,
    dcfg: &DiagnoseConfig,
) -> rnnlab_core::Result<Report> {
    let (_, b, _) = x.dim();
    let h = bi.hidden_dim();
    let g = probe_directions::<F>(b, 2 * h, seed);
    let mut d_final = bi.zero_states(b)?;
    // `Bidirectional::new` refuses an empty stack: there is a top layer.
    let top = bi.n_layers().saturating_sub(1);
    for (dir, from) in [(Direction::Forward, 0), (Direction::Reverse, h)] {
        if let Some(state) = d_final.get_mut(dir.index(top)) {
            state.data_mut().slice_mut(s![.., ..h]).assign(&g.slice(s![.., from..from + h]));
        }
    }
    let fwd = bi.forward(x, None)?;
    let options = BackwardOptions::default().with_d_final(&d_final).without_input_grad();
    let report = bi.backward(&fwd.cache, OutputGrad::None, options).and_then(|bwd| {
        let r = rnnlab_diagnostics::report_from_bidirectional_pass(
            bi,
            &fwd.cache,
            &bwd.step_grads,
            ReportLoss::FinalState,
            dcfg,
        );
        bi.recycle_grads(bwd);
        r
    });
    bi.recycle(fwd.cache);
    report
}

mod plot;
