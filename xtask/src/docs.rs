//! `cargo xtask docs`: regenerates the evidence sections of the guide (`docs/guide.md`,
//! `docs/guide.zh.md`) and its plots (`docs/img/`) from the committed suite results
//! (`docs/evidence/results.json` with `docs/evidence/run.json`), so that every number in the
//! guide comes from a real run; `--check` fails instead of writing when anything is stale.
//!
//! A generated section sits between `<!-- begin generated: NAME -->` and
//! `<!-- end generated: NAME -->`; everything between the two markers belongs to the
//! generator. Both guides must hold every section, and the numbers are the same in both (only
//! labels are translated: a claim or rule without a Chinese translation is an error, so a
//! changed grid cannot leave the Chinese guide behind silently).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use rnnlab_suite::{ExperimentResult, Grid, ReportInfo, Results, RunResult, Status};
use serde::{Deserialize, Serialize};

/// Options of `cargo xtask docs`.
#[derive(Args, Debug)]
pub(crate) struct DocsArgs {
    /// Only check: fail (listing what differs) if the guides or plots are not what the
    /// committed results give; write nothing.
    #[arg(long)]
    check: bool,
    /// First take a new suite run as the evidence: copy DIR/results.json (from `cargo xtask
    /// compare --out DIR`, default profile) to docs/evidence/ and its date, machine and wall
    /// time (from DIR/report.md) to docs/evidence/run.json.
    #[arg(long, value_name = "DIR")]
    import: Option<PathBuf>,
}

/// Where the committed evidence lives, relative to the workspace root.
pub(crate) const RESULTS: &str = "docs/evidence/results.json";
/// The run's date, machine, wall time and command.
pub(crate) const RUN_INFO: &str = "docs/evidence/run.json";
/// The guides: (path, language).
pub(crate) const GUIDES: [(&str, Lang); 2] = [("docs/guide.md", Lang::En), ("docs/guide.zh.md", Lang::Zh)];
/// The suite plots the guide (and the README) show, copied to `docs/img/`.
pub(crate) const PLOTS: [&str; 9] = [
    "e1-activation-stats",
    "e2-grad-norm-tanh",
    "e2-grad-norm-sigmoid",
    "e2-grad-norm-relu",
    "e3-grad-norm",
    "e4-held-out-loss",
    "e5-pre-clip-norm",
    "e6-grad-norm",
    "e7-grad-norm",
];
/// The folder of the guide's plots.
pub(crate) const IMG_DIR: &str = "docs/img";

/// What `docs/evidence/run.json` holds: the facts about the run that `results.json` does not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunInfo {
    /// When it ran (UTC).
    pub(crate) date: String,
    /// The machine, as `cargo xtask compare` described it.
    pub(crate) machine: String,
    /// The suite's wall time.
    pub(crate) wall_time: String,
    /// The command that ran it.
    pub(crate) command: String,
}

/// A guide's language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lang {
    /// English.
    En,
    /// Chinese (simplified).
    Zh,
}

impl Lang {
    fn t(self, en: &'static str, zh: &'static str) -> &'static str {
        match self {
            Lang::En => en,
            Lang::Zh => zh,
        }
    }
}

pub(crate) fn docs(args: &DocsArgs, root: &Path) -> Result<()> {
    if let Some(dir) = &args.import {
        ensure!(!args.check, "--import and --check together: import writes the evidence");
        import(dir, root)?;
    }
    let (results, info) = load(root)?;
    check_grid(&results, &rnnlab_suite::profile("default")?)?;
    let mut stale = Vec::new();
    for (path, lang) in GUIDES {
        let file = root.join(path);
        let old = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let new = regenerate(&old, &results, &info, lang).with_context(|| format!("regenerating {path}"))?;
        if new != old {
            if args.check {
                stale.push(path.to_string());
            } else {
                std::fs::write(&file, new).with_context(|| format!("writing {}", file.display()))?;
                println!("docs: rewrote {path}");
            }
        }
    }
    for (name, svg) in plots(&results, &info)? {
        let file = root.join(IMG_DIR).join(format!("{name}.svg"));
        if std::fs::read_to_string(&file).ok().as_deref() != Some(svg.as_str()) {
            if args.check {
                stale.push(format!("{IMG_DIR}/{name}.svg"));
            } else {
                std::fs::create_dir_all(root.join(IMG_DIR))?;
                std::fs::write(&file, svg).with_context(|| format!("writing {}", file.display()))?;
                println!("docs: rewrote {IMG_DIR}/{name}.svg");
            }
        }
    }
    if !stale.is_empty() {
        bail!("stale (run `cargo xtask docs`): {}", stale.join(", "));
    }
    println!("docs: the guides and plots match {RESULTS} ({}, {})", info.date, info.command);
    Ok(())
}

/// Reads the committed results and run information.
pub(crate) fn load(root: &Path) -> Result<(Results, RunInfo)> {
    let path = root.join(RESULTS);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let results: Results = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    ensure!(
        results.schema == rnnlab_suite::RESULTS_SCHEMA,
        "{RESULTS}: schema {}, this build reads {}",
        results.schema,
        rnnlab_suite::RESULTS_SCHEMA
    );
    let path = root.join(RUN_INFO);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let info: RunInfo = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok((results, info))
}

/// Copies a compare run's results into `docs/evidence/`.
fn import(dir: &Path, root: &Path) -> Result<()> {
    let text = std::fs::read_to_string(dir.join("results.json"))
        .with_context(|| format!("reading {}", dir.join("results.json").display()))?;
    let results: Results = serde_json::from_str(&text).context("parsing results.json")?;
    check_grid(&results, &rnnlab_suite::profile("default")?)?;
    let report = std::fs::read_to_string(dir.join("report.md"))
        .with_context(|| format!("reading {}", dir.join("report.md").display()))?;
    let field = |name: &str| -> Result<String> {
        let line = report
            .lines()
            .find_map(|l| l.strip_prefix(&format!("- {name}: ")))
            .with_context(|| format!("report.md has no `- {name}:` line"))?;
        Ok(unescape(line))
    };
    let info = RunInfo {
        date: field("Date")?,
        machine: field("Machine")?,
        wall_time: field("Wall time")?,
        command: "cargo xtask compare".to_string(),
    };
    std::fs::create_dir_all(root.join("docs/evidence"))?;
    std::fs::write(root.join(RESULTS), text)?;
    std::fs::write(root.join(RUN_INFO), serde_json::to_string_pretty(&info)? + "\n")?;
    println!("docs: imported {} ({}, {})", dir.display(), info.date, info.wall_time);
    Ok(())
}

/// Undoes the Markdown escaping of `report.md`'s cells.
fn unescape(s: &str) -> String {
    let s = s.replace("&lt;", "<").replace("&gt;", ">");
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Fails unless `results` ran exactly `grid` (same experiments and, per run, the same id,
/// label, config and whether it trained): evidence from another grid is stale.
pub(crate) fn check_grid(results: &Results, grid: &Grid) -> Result<()> {
    let got: Vec<&str> = results.experiments.iter().map(|e| e.id.as_str()).collect();
    let want: Vec<&str> = grid.experiments.iter().map(|e| e.id.as_str()).collect();
    ensure!(got == want, "the evidence has experiments {got:?}, the default grid {want:?}: rerun the suite");
    for (r, g) in results.experiments.iter().zip(&grid.experiments) {
        let id = &g.id;
        ensure!(
            r.title == g.title && r.claim == g.claim && r.differs == g.differs,
            "{id}: the evidence's title, claim or set-up differs from the default grid's: rerun the suite"
        );
        ensure!(r.missing.is_empty(), "{id}: the evidence misses runs {:?}", r.missing);
        ensure!(
            r.runs.len() == g.runs.len(),
            "{id}: the evidence has {} runs, the default grid {} (one seed each): rerun the suite",
            r.runs.len(),
            g.runs.len()
        );
        for (run, spec) in r.runs.iter().zip(&g.runs) {
            ensure!(
                run.id == spec.id
                    && run.label == spec.label
                    && run.config == spec.config
                    && run.replicate == 0
                    && (run.error.is_some() || run.metrics.trained == spec.train),
                "{id}: run {} of the evidence is not the default grid's run {}: rerun the suite",
                run.id,
                spec.id
            );
        }
    }
    Ok(())
}

/// The guide's plots, drawn by the suite's own report from the committed results.
pub(crate) fn plots(results: &Results, info: &RunInfo) -> Result<Vec<(&'static str, String)>> {
    // A fresh directory per call (tests may draw in parallel in one process).
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("rnnlab-docs-plots-{}-{k}", std::process::id()));
    let report = ReportInfo::new(info.date.clone(), info.machine.clone(), info.wall_time.clone());
    let files = rnnlab_suite::write_report(results, &dir, &report)?;
    let mut out = Vec::new();
    for name in PLOTS {
        let path = files
            .plots
            .iter()
            .find(|p| p.file_stem().is_some_and(|s| s == name))
            .with_context(|| format!("the report has no plot {name}.svg (the guide shows it)"))?;
        out.push((name, std::fs::read_to_string(path)?));
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(out)
}

/// `text` with every generated section replaced by what `results` give.
///
/// # Errors
/// A begin marker without its end, an unknown section, or a section missing from the text.
pub(crate) fn regenerate(text: &str, results: &Results, info: &RunInfo, lang: Lang) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut seen = Vec::new();
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let close = after.find("-->").context("a begin marker without `-->`")?;
        let name = after[..close].trim().to_string();
        let end_marker = format!("{END}{name} -->");
        let body_start = start + BEGIN.len() + close + 3;
        let end = rest[body_start..].find(&end_marker).with_context(|| format!("section {name}: no `{end_marker}`"))?
            + body_start;
        out.push_str(&rest[..body_start]);
        out.push('\n');
        out.push_str(&section(&name, results, info, lang)?);
        out.push('\n');
        out.push_str(&end_marker);
        rest = &rest[end + end_marker.len()..];
        seen.push(name);
    }
    out.push_str(rest);
    let missing: Vec<&str> = SECTIONS.iter().copied().filter(|s| !seen.iter().any(|n| n == s)).collect();
    ensure!(missing.is_empty(), "the guide lacks the generated sections {missing:?}");
    Ok(out)
}

const BEGIN: &str = "<!-- begin generated: ";
const END: &str = "<!-- end generated: ";

/// Every generated section, each in both guides.
pub(crate) const SECTIONS: [&str; 11] =
    ["run", "verdicts", "e1", "e2", "e2-pascanu", "e3", "e4", "e5", "e6", "e7", "e8"];

fn section(name: &str, results: &Results, info: &RunInfo, lang: Lang) -> Result<String> {
    let exp = |id: &str| -> Result<&ExperimentResult> {
        results.experiments.iter().find(|e| e.id == id).with_context(|| format!("the results have no {id}"))
    };
    Ok(match name {
        "run" => run_section(results, info, lang),
        "verdicts" => verdicts(results, lang)?,
        "e1" => e1(exp("E1")?, lang)?,
        "e2" => e2(exp("E2")?, lang)?,
        "e2-pascanu" => pascanu(exp("E2")?, lang)?,
        "e3" => e3(exp("E3")?, lang)?,
        "e4" => per_run(exp("E4")?, lang, &[Col::Decay, Col::Horizon, Col::FinalLoss, Col::Solved])?,
        "e5" => e5(exp("E5")?, lang)?,
        "e6" => per_run(exp("E6")?, lang, &[Col::Decay, Col::Horizon, Col::FinalLoss, Col::Solved])?,
        "e7" => per_run(exp("E7")?, lang, &[Col::ForgetGate, Col::Decay, Col::Horizon, Col::FinalLoss, Col::Solved])?,
        "e8" => e8(exp("E8")?, lang)?,
        other => bail!("unknown generated section {other:?} (known: {SECTIONS:?})"),
    })
}

fn run_section(results: &Results, info: &RunInfo, lang: Lang) -> String {
    let runs: usize = results.experiments.iter().map(|e| e.runs.len()).sum();
    match lang {
        Lang::En => format!(
            "The numbers and plots below come from one run of the suite's `{}` grid ({} runs in {} experiments, \
             one seed each): `{}` on {} ({}), wall time {}. They are regenerated from `{RESULTS}` by `cargo xtask \
             docs`.",
            results.grid,
            runs,
            results.experiments.len(),
            info.command,
            info.date,
            info.machine,
            info.wall_time
        ),
        Lang::Zh => format!(
            "下文的数字和图都来自套件 `{}` 网格的一次运行（{} 个实验共 {} 次运行，每次一个随机种子）：\
             `{}`，运行于 {}（{}），耗时 {}。它们由 `cargo xtask docs` 从 `{RESULTS}` 重新生成。",
            results.grid,
            results.experiments.len(),
            runs,
            info.command,
            info.date,
            info.machine,
            info.wall_time
        ),
    }
}

fn status(s: Status, lang: Lang) -> &'static str {
    match s {
        Status::Supported => lang.t("supported", "支持"),
        Status::NotSupported => lang.t("not supported", "不支持"),
        Status::Inconclusive => lang.t("inconclusive", "无定论"),
        Status::NotEvaluated => lang.t("not evaluated", "未评估"),
    }
}

/// The Chinese of an English text the grid or the verdict rules hold.
fn zh(en: &str) -> Result<&'static str> {
    ZH.iter().find(|(e, _)| *e == en).map(|(_, z)| *z).with_context(|| {
        format!("no Chinese translation of {en:?}: add it to ZH in xtask/src/docs.rs (the grid or a rule changed)")
    })
}

/// A claim, title or rule in the guide's language.
fn tr(en: &str, lang: Lang) -> Result<String> {
    Ok(match lang {
        Lang::En => en.to_string(),
        Lang::Zh => zh(en)?.to_string(),
    })
}

fn verdicts(results: &Results, lang: Lang) -> Result<String> {
    let mut s = String::new();
    header(&mut s, &[lang.t("experiment", "实验"), lang.t("claim", "论断"), lang.t("verdict", "判定")]);
    for e in &results.experiments {
        row(&mut s, [e.id.clone(), tr(&e.claim, lang)?, format!("**{}**", status(e.verdict.status, lang))]);
    }
    Ok(s)
}

/// The verdict line under an experiment's table: status, rule and (in English) the suite's
/// evidence string; the Chinese guide states the rule translated (the numbers are the table's).
fn verdict_line(e: &ExperimentResult, lang: Lang) -> Result<String> {
    Ok(match lang {
        Lang::En => format!(
            "\n**{}: {}.** Rule: {}. Evidence: {}.\n",
            e.id,
            status(e.verdict.status, lang),
            e.verdict.rule,
            e.verdict.evidence
        ),
        Lang::Zh => format!("\n**{}：{}。** 规则：{}。\n", e.id, status(e.verdict.status, lang), zh(&e.verdict.rule)?),
    })
}

fn header(s: &mut String, names: &[&str]) {
    row(s, names.iter().map(|n| n.to_string()));
    s.push('|');
    for _ in names {
        s.push_str("---|");
    }
    s.push('\n');
}

fn row(s: &mut String, cells: impl IntoIterator<Item = String>) {
    s.push('|');
    for c in cells {
        s.push(' ');
        s.push_str(&c.replace('|', "\\|"));
        s.push_str(" |");
    }
    s.push('\n');
}

/// A number with 3 significant digits (scientific below 1e-3 or from 1e5).
pub(crate) fn num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        return v.to_string();
    }
    if a == 0.0 {
        return "0".to_string();
    }
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.2e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
        let sup: String = exp
            .chars()
            .map(|c| match c {
                '-' => '⁻',
                d => "⁰¹²³⁴⁵⁶⁷⁸⁹".chars().nth(d.to_digit(10).unwrap_or(0) as usize).unwrap_or(d),
            })
            .collect();
        return format!("{mantissa}·10{sup}");
    }
    let digits = (2 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), num)
}

fn horizon(r: &RunResult) -> String {
    match r.metrics.horizon {
        Some(h) if r.metrics.horizon_capped => format!("≥ {h}"),
        Some(h) => h.to_string(),
        None => "–".to_string(),
    }
}

fn solved(r: &RunResult, lang: Lang) -> String {
    let m = &r.metrics;
    if let Some(e) = &r.error {
        return format!("{}: {e}", lang.t("failed", "失败"));
    }
    if m.diverged {
        return lang.t("diverged", "发散").to_string();
    }
    match (m.solved, m.steps_to_solve) {
        (Some(true), Some(step)) => format!("{} {step}", lang.t("✓ at step", "✓ 第")) + lang.t("", " 步"),
        (Some(true), None) => "✓".to_string(),
        (Some(false), _) => "✗".to_string(),
        (None, _) => "–".to_string(),
    }
}

/// The metrics a per-run table can show.
#[derive(Clone, Copy)]
enum Col {
    Decay,
    Horizon,
    FinalLoss,
    Solved,
    ForgetGate,
}

impl Col {
    fn name(self, lang: Lang) -> &'static str {
        match self {
            Col::Decay => lang.t("decay factor per step", "每步衰减因子"),
            Col::Horizon => lang.t("horizon (steps)", "记忆视野（步）"),
            Col::FinalLoss => lang.t("final held-out loss", "最终验证损失"),
            Col::Solved => lang.t("solved", "是否解决"),
            Col::ForgetGate => lang.t("mean forget gate", "遗忘门均值"),
        }
    }

    fn value(self, r: &RunResult, lang: Lang) -> String {
        let m = &r.metrics;
        match self {
            Col::Decay => opt(m.decay_factor),
            Col::Horizon => horizon(r),
            Col::FinalLoss => {
                if m.diverged {
                    lang.t("diverged", "发散").to_string()
                } else {
                    opt(m.final_loss)
                }
            }
            Col::Solved => solved(r, lang),
            Col::ForgetGate => opt(m.forget_gate),
        }
    }
}

/// One row per run: its label and the columns asked for, then the baseline and the verdict.
fn per_run(e: &ExperimentResult, lang: Lang, cols: &[Col]) -> Result<String> {
    let mut s = format!("**{} — {}**\n\n", e.id, tr(&e.title, lang)?);
    let mut names = vec![lang.t("run", "运行")];
    names.extend(cols.iter().map(|c| c.name(lang)));
    header(&mut s, &names);
    for r in &e.runs {
        let mut cells = vec![format!("`{}`", r.label)];
        cells.extend(cols.iter().map(|c| c.value(r, lang)));
        row(&mut s, cells);
    }
    s.push_str(&baseline_line(e, lang));
    s.push_str(&verdict_line(e, lang)?);
    Ok(s)
}

/// The task's baseline loss and the solved line, from the first trained run.
fn baseline_line(e: &ExperimentResult, lang: Lang) -> String {
    e.runs.iter().find(|r| r.metrics.trained).map_or_else(String::new, |r| {
        let (baseline, line) =
            (num(r.metrics.baseline_loss), num(rnnlab_suite::SOLVED_FRACTION * r.metrics.baseline_loss));
        match lang {
            Lang::En => format!(
                "\nBaseline loss (the best memoryless predictor): {baseline}; solved = final held-out loss below \
                 {line}.\n"
            ),
            Lang::Zh => format!("\n基线损失（最好的无记忆预测器）：{baseline}；“解决”指最终验证损失低于 {line}。\n"),
        }
    })
}

fn e1(e: &ExperimentResult, lang: Lang) -> Result<String> {
    let mut s = format!("**{} — {}**\n\n", e.id, tr(&e.title, lang)?);
    header(
        &mut s,
        &[
            lang.t("activation, gain of W_hh", "激活函数，W_hh 的增益"),
            lang.t("saturated fraction", "饱和比例"),
            lang.t("mean φ′ / max φ′", "平均 φ′ / 最大 φ′"),
            lang.t("decay factor per step", "每步衰减因子"),
            lang.t("horizon (steps)", "记忆视野（步）"),
        ],
    );
    for r in &e.runs {
        let m = &r.metrics;
        row(
            &mut s,
            [format!("`{}`", r.label), opt(m.saturation), opt(m.mean_derivative), opt(m.decay_factor), horizon(r)],
        );
    }
    s.push_str(&verdict_line(e, lang)?);
    Ok(s)
}

/// Runs laid out as a table: row names, column names, and the run at (row, column).
type Matrix<'a> = (Vec<&'a str>, Vec<&'a str>, BTreeMap<(&'a str, &'a str), &'a RunResult>);

/// Labels `a/b` as a matrix: rows `a`, columns `b`, in order of appearance.
fn matrix<'a>(runs: &'a [RunResult], split: &str) -> Matrix<'a> {
    let (mut rows, mut cols, mut at) = (Vec::new(), Vec::new(), BTreeMap::new());
    for r in runs {
        if let Some((a, b)) = r.label.split_once(split) {
            if !rows.contains(&a) {
                rows.push(a);
            }
            if !cols.contains(&b) {
                cols.push(b);
            }
            at.insert((a, b), r);
        }
    }
    (rows, cols, at)
}

fn e2(e: &ExperimentResult, lang: Lang) -> Result<String> {
    let (rows, cols, at) = matrix(&e.runs, "/");
    let mut s = format!("**{} — {}**\n\n", e.id, tr(&e.title, lang)?);
    let _ = writeln!(
        s,
        "{}\n",
        lang.t(
            "Decay factor per step, and in brackets the horizon in steps (T = 100, so 99 is the longest lag):",
            "每步衰减因子，括号里是记忆视野的步数（T = 100，最长滞后为 99）："
        )
    );
    let mut names = vec![lang.t("activation \\ W_hh init", "激活函数 \\ W_hh 初始化")];
    names.extend(cols.iter().copied());
    header(&mut s, &names);
    for a in &rows {
        let mut cells = vec![format!("`{a}`")];
        for b in &cols {
            cells.push(
                at.get(&(*a, *b))
                    .map_or("–".to_string(), |r| format!("{} ({})", opt(r.metrics.decay_factor), horizon(r))),
            );
        }
        row(&mut s, cells);
    }
    s.push_str(&verdict_line(e, lang)?);
    Ok(s)
}

fn pascanu(e: &ExperimentResult, lang: Lang) -> Result<String> {
    let (_, cols, at) = matrix(&e.runs, "/");
    let mut s = String::new();
    let mut names = vec![lang.t("activation: σ₁(W_hh) / 1/γ", "激活函数：σ₁(W_hh) / 1/γ")];
    names.extend(cols.iter().copied());
    header(&mut s, &names);
    for a in ["tanh", "sigmoid"] {
        let mut cells = vec![format!("`{a}`")];
        for b in &cols {
            cells.push(at.get(&(a, *b)).map_or("–".to_string(), |r| {
                let m = &r.metrics;
                let vanish = match (m.sigma1_whh, m.pascanu_bound) {
                    (Some(x), Some(y)) if x < y => lang.t(" ⇒ vanishes", " ⇒ 必然消失"),
                    _ => "",
                };
                format!("{} / {}{vanish}", opt(m.sigma1_whh), opt(m.pascanu_bound))
            }));
        }
        row(&mut s, cells);
    }
    Ok(s)
}

fn e3(e: &ExperimentResult, lang: Lang) -> Result<String> {
    let mut s = format!("**{} — {}**\n\n", e.id, tr(&e.title, lang)?);
    header(
        &mut s,
        &[
            lang.t("cell (at initialisation, T = 100)", "单元（初始化时，T = 100）"),
            lang.t("decay factor per step", "每步衰减因子"),
            lang.t("horizon (steps)", "记忆视野（步）"),
            lang.t("‖∂L/∂h₀‖ / ‖∂L/∂h₉₉‖", "‖∂L/∂h₀‖ / ‖∂L/∂h₉₉‖"),
        ],
    );
    for r in e.runs.iter().filter(|r| r.label.ends_with("/init")) {
        let m = &r.metrics;
        row(
            &mut s,
            [
                format!("`{}`", r.label.trim_end_matches("/init")),
                opt(m.decay_factor),
                horizon(r),
                opt(m.grad_norm_by_lag.last().copied()),
            ],
        );
    }
    s.push('\n');
    let trained: Vec<RunResult> = e
        .runs
        .iter()
        .filter_map(|r| {
            let (cell, t) = r.label.split_once("/adding/")?;
            let mut r = r.clone();
            r.label = format!("{cell}/{t}");
            Some(r)
        })
        .collect();
    let (rows, cols, at) = matrix(&trained, "/");
    let mut names = vec![lang.t("adding problem: cell \\ length", "加法问题：单元 \\ 长度")];
    names.extend(cols.iter().copied());
    header(&mut s, &names);
    for a in &rows {
        let mut cells = vec![format!("`{a}`")];
        for b in &cols {
            cells.push(at.get(&(*a, *b)).map_or("–".to_string(), |r| {
                let loss = r.metrics.final_loss.map_or(String::new(), |l| format!(" ({})", num(l)));
                format!("{}{loss}", solved(r, lang))
            }));
        }
        row(&mut s, cells);
    }
    let _ = write!(
        s,
        "\n{}\n",
        lang.t(
            "Each entry: solved or not (if solved, the first evaluation step under the solved line), with the final \
             held-out loss in brackets.",
            "每格：是否解决（若解决，给出首次低于“解决”线的评估步数），括号里是最终验证损失。"
        )
    );
    s.push_str(&baseline_line(e, lang));
    s.push_str(&verdict_line(e, lang)?);
    Ok(s)
}

fn e5(e: &ExperimentResult, lang: Lang) -> Result<String> {
    let mut s = format!("**{} — {}**\n\n", e.id, tr(&e.title, lang)?);
    header(
        &mut s,
        &[
            lang.t("clipping", "裁剪"),
            lang.t("diverged", "发散"),
            lang.t("median final loss (finished runs)", "最终损失中位数（未发散的运行）"),
            lang.t("median fraction of steps clipped", "被裁剪步数比例的中位数"),
        ],
    );
    let mut labels: Vec<&str> = Vec::new();
    for r in &e.runs {
        if !labels.contains(&r.label.as_str()) {
            labels.push(&r.label);
        }
    }
    for l in labels {
        let of: Vec<&RunResult> = e.runs.iter().filter(|r| r.label == l).collect();
        let diverged = of.iter().filter(|r| r.metrics.diverged).count();
        let loss = median(of.iter().filter(|r| !r.metrics.diverged).filter_map(|r| r.metrics.final_loss).collect());
        let clipped = median(of.iter().filter_map(|r| r.metrics.clip_fraction).collect());
        let clipped = if l == "no clipping" { "–".to_string() } else { opt(clipped) };
        row(&mut s, [format!("`{l}`"), format!("{diverged} / {}", of.len()), opt(loss), clipped]);
    }
    s.push_str(&baseline_line(e, lang));
    s.push_str(&verdict_line(e, lang)?);
    Ok(s)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) })
}

fn e8(e: &ExperimentResult, lang: Lang) -> Result<String> {
    let (rows, cols, at) = matrix(&e.runs, "/");
    let mut s = format!("**{} — {}**\n\n", e.id, tr(&e.title, lang)?);
    let mut names = vec![lang.t("test accuracy: pixel order \\ model", "测试准确率：像素顺序 \\ 模型")];
    names.extend(cols.iter().copied());
    header(&mut s, &names);
    for a in &rows {
        let mut cells = vec![format!("`{a}`")];
        for b in &cols {
            cells.push(at.get(&(*a, *b)).map_or("–".to_string(), |r| {
                if r.metrics.diverged { lang.t("diverged", "发散").to_string() } else { opt(r.metrics.test_accuracy) }
            }));
        }
        row(&mut s, cells);
    }
    let _ = write!(s, "\n{}\n", lang.t("Chance level: 0.1.", "随机猜测的准确率：0.1。"));
    s.push_str(&verdict_line(e, lang)?);
    Ok(s)
}

/// English text of the default grid (titles, claims) and of the verdict rules, with its Chinese.
const ZH: &[(&str, &str)] = &[
    ("Activation derivatives and saturation", "激活函数的导数与饱和"),
    (
        "sigmoid′ ≤ 1/4 and tanh′ ≤ 1 vanish when saturated: as the recurrent weights grow, more units saturate and \
         the mean derivative falls",
        "sigmoid′ ≤ 1/4、tanh′ ≤ 1，饱和时趋于零：循环权重越大，饱和的单元越多，平均导数越小",
    ),
    ("Gradient decay at initialisation (vanilla RNN)", "初始化时的梯度衰减（普通 RNN）"),
    (
        "a sigmoid RNN's gradient vanishes under every initialisation, while a ReLU-family RNN with identity or \
         orthogonal recurrent weights keeps it",
        "sigmoid RNN 的梯度在任何初始化下都会消失，而循环权重为单位矩阵或正交矩阵的 ReLU 族 RNN 能保持梯度",
    ),
    ("LSTM and GRU against the vanilla RNN", "LSTM、GRU 与普通 RNN 的对比"),
    (
        "LSTM and GRU keep the gradient over longer lags than a tanh RNN at initialisation and solve the adding \
         problem at least as far",
        "初始化时 LSTM 和 GRU 能在比 tanh RNN 更长的滞后上保持梯度，并且在加法问题上至少能解决同样长的序列",
    ),
    ("Initialisation in training (vanilla RNN)", "训练中的初始化（普通 RNN）"),
    (
        "orthogonal or identity (IRNN) recurrent weights train a plain RNN on the adding problem further than a naive \
         small Gaussian, whose gradient vanishes fastest at initialisation",
        "用正交或单位矩阵（IRNN）初始化循环权重的普通 RNN，在加法问题上比用朴素小高斯初始化的训练得更好；后者在初始化时梯度消失得最快",
    ),
    ("Gradient clipping", "梯度裁剪"),
    (
        "an exploding configuration diverges without clipping and trains with global-norm or value clipping",
        "梯度爆炸的配置不裁剪就会发散，按全局范数或按值裁剪后可以训练",
    ),
    ("Normalisation inside the recurrence (LSTM)", "循环内部的归一化（LSTM）"),
    (
        "per-step batch norm with γ₀ = 0.1 keeps the gradient flowing better at initialisation than γ₀ = 1 \
         (Cooijmans et al.), and a normalised LSTM trains at least as well as the plain one",
        "初始化时，γ₀ = 0.1 的逐步批归一化比 γ₀ = 1 更能保持梯度流动（Cooijmans 等人），并且归一化的 LSTM 训练得至少和普通 LSTM 一样好",
    ),
    ("Forget-gate bias", "遗忘门偏置"),
    (
        "initialising the LSTM's forget-gate bias to 1 instead of 0 lengthens its memory horizon at initialisation and \
         trains at least as well",
        "把 LSTM 的遗忘门偏置初始化为 1 而不是 0，能延长初始化时的记忆视野，并且训练得至少一样好",
    ),
    ("Real data: pixel-by-pixel handwritten digits", "真实数据：逐像素读入的手写数字"),
    (
        "on sequential and permuted optdigits (64 pixel steps), every model beats the 10% chance level and the LSTM \
         and GRU beat the tanh RNN",
        "在按顺序和按排列读入的 optdigits（64 个像素步）上，每个模型都超过 10% 的随机水平，并且 LSTM 和 GRU 胜过 tanh RNN",
    ),
    ("every run must finish", "每次运行都必须完成"),
    ("every run of the experiment must have a result", "实验的每次运行都必须有结果"),
    (
        "for tanh and for sigmoid: the saturated fraction at the largest recurrent scale exceeds the one at the \
         smallest, and the mean derivative is lower",
        "对 tanh 和 sigmoid 都要求：最大循环尺度下的饱和比例高于最小尺度下的，且平均导数更低",
    ),
    (
        "every sigmoid run has decay < 0.9 per step, and some relu-family run with identity or orthogonal W_hh has \
         decay in [0.9, 1.1]",
        "每个 sigmoid 运行的每步衰减因子 < 0.9，并且至少有一个 W_hh 为单位矩阵或正交矩阵的 ReLU 族运行的衰减因子在 [0.9, 1.1] 内",
    ),
    (
        "at initialisation the LSTM's and each GRU's horizon exceed the tanh RNN's, and the longest adding problem the \
         LSTM solves is at least as long as the tanh RNN's longest",
        "初始化时 LSTM 和每个 GRU 的视野都超过 tanh RNN 的，并且 LSTM 能解决的最长加法问题至少和 tanh RNN 能解决的最长的一样长",
    ),
    (
        "some run without clipping diverges, and no run with global-norm or value clipping does",
        "不裁剪的运行中至少有一个发散，而按全局范数或按值裁剪的运行都不发散",
    ),
    (
        "at initialisation the horizon with forget bias 1 exceeds the one with bias 0, and its final held-out loss is \
         at most 5% above bias 0's (a tie within noise counts as at least as well)",
        "初始化时遗忘门偏置为 1 的视野超过偏置为 0 的，并且其最终验证损失至多比偏置为 0 的高 5%（噪声范围内的持平算作至少一样好）",
    ),
    (
        "the naive N(0, 0.01²) initialisation has the smallest decay factor at initialisation, and the better of \
         orthogonal and IRNN ends with a lower held-out loss than it (inconclusive unless that loss is below half the \
         baseline)",
        "朴素的 N(0, 0.01²) 初始化在初始化时衰减因子最小，并且正交与 IRNN 中较好的那个最终验证损失比它低（除非该损失低于基线的一半，否则无定论）",
    ),
    (
        "at initialisation the decay factor with per-step batch norm γ₀ = 0.1 exceeds the one with γ₀ = 1, and the \
         best normalised LSTM's final held-out loss is at most 5% above the plain LSTM's",
        "初始化时 γ₀ = 0.1 的逐步批归一化的衰减因子大于 γ₀ = 1 的，并且最好的归一化 LSTM 的最终验证损失至多比普通 LSTM 的高 5%",
    ),
    (
        "on both pixel orders every model's test accuracy exceeds the 10% chance level, and the LSTM's and the GRU's \
         exceed the tanh RNN's",
        "在两种像素顺序上，每个模型的测试准确率都超过 10% 的随机水平，并且 LSTM 和 GRU 的都超过 tanh RNN 的",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        crate::root()
    }

    /// The committed guides are what `cargo xtask docs` makes of the committed results (as
    /// rust-analyzer's sourcegen tests: a stale guide fails here, `cargo xtask docs` fixes it).
    #[test]
    fn guides_are_fresh() {
        let (results, info) = load(&root()).expect("the committed evidence");
        for (path, lang) in GUIDES {
            let text = std::fs::read_to_string(root().join(path)).expect("the guide");
            let new = regenerate(&text, &results, &info, lang).expect("regenerating");
            assert!(new == text, "{path} is stale: run `cargo xtask docs`");
        }
    }

    /// The committed plots are the suite's drawing of the committed results.
    #[test]
    fn plots_are_fresh() {
        let (results, info) = load(&root()).expect("the committed evidence");
        for (name, svg) in plots(&results, &info).expect("drawing") {
            let file = root().join(IMG_DIR).join(format!("{name}.svg"));
            let old = std::fs::read_to_string(&file).unwrap_or_default();
            assert!(old == svg, "{} is stale: run `cargo xtask docs`", file.display());
        }
    }

    /// A change of the embedded default grid makes the evidence stale.
    #[test]
    fn evidence_ran_the_default_grid() {
        let (results, _) = load(&root()).expect("the committed evidence");
        let grid = rnnlab_suite::profile("default").expect("the default grid");
        check_grid(&results, &grid).expect("the evidence is a run of the current default grid");
        let mut changed = grid.clone();
        changed.experiments[0].runs[0].config.n_steps += 1;
        assert!(check_grid(&results, &changed).is_err());
        let mut fewer = grid;
        fewer.experiments[1].runs.pop();
        assert!(check_grid(&results, &fewer).is_err());
    }

    #[test]
    fn regenerate_replaces_only_between_markers_and_needs_every_section() {
        let (results, info) = load(&root()).expect("the committed evidence");
        let mut text = String::from("# title\n\nprose\n");
        for s in SECTIONS {
            let _ = write!(text, "\n{BEGIN}{s} -->\nold\n{END}{s} -->\n\nmore prose\n");
        }
        let new = regenerate(&text, &results, &info, Lang::En).expect("regenerating");
        assert!(!new.contains("\nold\n") && new.starts_with("# title\n\nprose\n") && new.ends_with("more prose\n"));
        assert_eq!(regenerate(&new, &results, &info, Lang::En).expect("again"), new);
        let without_e5 = text.replace(&format!("{BEGIN}e5 -->"), "").replace(&format!("{END}e5 -->"), "");
        assert!(regenerate(&without_e5, &results, &info, Lang::En).is_err());
        let unclosed = format!("{text}\n{BEGIN}e3 -->\n");
        assert!(regenerate(&unclosed, &results, &info, Lang::En).is_err());
        let unknown = format!("{text}\n{BEGIN}nope -->\n{END}nope -->\n");
        assert!(regenerate(&unknown, &results, &info, Lang::En).is_err());
    }

    /// Every claim, title and rule of the evidence has its Chinese.
    #[test]
    fn every_label_is_translated() {
        let (results, _) = load(&root()).expect("the committed evidence");
        for e in &results.experiments {
            for en in [&e.claim, &e.title, &e.verdict.rule] {
                zh(en).expect("a translation");
            }
        }
        assert!(zh("a rule nobody wrote").is_err());
    }

    #[test]
    fn numbers_have_three_significant_digits() {
        assert_eq!(num(0.627_49), "0.627");
        assert_eq!(num(17.0), "17");
        assert_eq!(num(1234.4), "1234");
        assert_eq!(num(2.5e-20), "2.50·10⁻²⁰");
        assert_eq!(num(-3.0e7), "-3.00·10⁷");
        assert_eq!(num(0.0), "0");
        assert_eq!(unescape(r"Intel\(R\) a\_b &lt;x&gt;"), "Intel(R) a_b <x>");
    }
}
