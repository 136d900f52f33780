//! `report.md`: the verdict table, then per experiment its claim, its plots (links to the SVG
//! files in `plots/`) and its metrics table.

use std::fmt::Write;

use super::{METRIC_COLUMNS, ReportInfo, Section, metric_row};
use crate::Results;

/// Text safe in a table cell: no line break, `|` escaped, and the characters Markdown would
/// read as markup or HTML escaped.
fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '\n' | '\r' => out.push(' '),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '*' | '_' | '`' | '[' | ']' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// A table row of cells already escaped with [`cell`].
fn row(m: &mut String, cells: impl IntoIterator<Item = String>) {
    m.push('|');
    for c in cells {
        m.push(' ');
        m.push_str(&c);
        m.push_str(" |");
    }
    m.push('\n');
}

fn header(m: &mut String, names: &[&str]) {
    row(m, names.iter().map(|s| cell(s)));
    m.push('|');
    for _ in names {
        m.push_str(" --- |");
    }
    m.push('\n');
}

/// The document.
pub(crate) fn render(results: &Results, info: &ReportInfo, sections: &[Section<'_>]) -> String {
    let mut m = String::new();
    // `write!` to a String cannot fail: the results are ignored with `let _`.
    let _ = writeln!(m, "# rnnlab comparison suite: {}\n", cell(&results.grid));
    let _ = writeln!(
        m,
        "- Date: {}\n- Machine: {}\n- Wall time: {}\n- Results schema {}; {} experiments, {} runs\n",
        cell(&info.date),
        cell(&info.machine),
        cell(&info.wall_time),
        results.schema,
        results.experiments.len(),
        results.experiments.iter().map(|e| e.runs.len()).sum::<usize>(),
    );
    m.push_str("## Verdicts\n\n");
    header(&mut m, &["experiment", "claim", "verdict", "rule", "evidence"]);
    for s in sections {
        let e = s.exp;
        let v = &e.verdict;
        row(&mut m, [cell(&e.id), cell(&e.claim), format!("**{}**", v.status), cell(&v.rule), cell(&v.evidence)]);
    }
    for s in sections {
        let e = s.exp;
        let v = &e.verdict;
        let _ = writeln!(m, "\n## {}: {}\n", cell(&e.id), cell(&e.title));
        let _ = writeln!(m, "**Claim.** {}\n", cell(&e.claim));
        if !e.differs.is_empty() {
            let _ = writeln!(m, "**Differs from the papers.** {}\n", cell(&e.differs));
        }
        let _ = writeln!(m, "**Verdict: {}** — {}. Evidence: {}\n", v.status, cell(&v.rule), cell(&v.evidence));
        if !e.missing.is_empty() {
            let _ = writeln!(m, "**Missing runs ({}):** {}\n", e.missing.len(), cell(&e.missing.join(", ")));
        }
        if e.runs.is_empty() {
            m.push_str("No run of this experiment has a result: no data to plot.\n");
            continue;
        }
        for p in &s.plots {
            let _ = writeln!(m, "![{}]({})\n\n{}\n", cell(&p.title), p.file, cell(&p.caption));
        }
        header(&mut m, &METRIC_COLUMNS);
        for r in &e.runs {
            row(&mut m, metric_row(r).iter().map(|c| cell(c)));
        }
    }
    m
}
