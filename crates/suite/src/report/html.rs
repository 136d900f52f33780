//! `report.html`: one self-contained page — inline CSS, the plots as inline SVG, no script,
//! no web font, no URL; the only links are to `#anchors` in the page and to the plot files
//! beside it.

use std::fmt::Write;

use super::{METRIC_COLUMNS, ReportInfo, Section, metric_row, status_class};
use crate::Results;

/// The namespace attribute plotters writes: needed by a standalone SVG file, not inside HTML
/// (the HTML parser puts `<svg>` in the SVG namespace itself), and the page holds no URL.
const SVG_NS: &str = r#" xmlns="http://www.w3.org/2000/svg""#;

const CSS: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; max-width: 1100px;
  margin: 0 auto; padding: 1em 1.5em 4em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { margin-top: 2.2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.55em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { font-weight: 600; white-space: nowrap; padding: 0.1em 0.5em; border-radius: 3px; }
.supported { background: #d7f0d7; color: #17601a; }
.not-supported { background: #f8d4d4; color: #8a1414; }
.inconclusive { background: #fbeec2; color: #6d5200; }
.not-evaluated { background: #e6e6e6; color: #444; }
figure { margin: 1.2em 0; }
figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.88em; color: #444; max-width: 780px; }
.claim, .differs, .verdict { max-width: 60em; }
";

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The page.
pub(crate) fn render(results: &Results, info: &ReportInfo, sections: &[Section<'_>]) -> String {
    let mut h = String::new();
    let grid = esc(&results.grid);
    // `write!` to a String cannot fail: the results are ignored below with `let _`.
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>rnnlab comparison suite: {grid}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
    );
    let _ = write!(
        h,
        "<header>\n<h1>rnnlab comparison suite: {grid}</h1>\n<p class=\"meta\">Date: {}<br>Machine: {}<br>Wall time: {}<br>\
         Results schema {}; {} experiments, {} runs.</p>\n</header>\n",
        esc(&info.date),
        esc(&info.machine),
        esc(&info.wall_time),
        results.schema,
        results.experiments.len(),
        results.experiments.iter().map(|e| e.runs.len()).sum::<usize>(),
    );
    h.push_str("<section id=\"verdicts\">\n<h2>Verdicts</h2>\n<table>\n<thead><tr><th>experiment</th><th>claim</th><th>verdict</th><th>rule</th><th>evidence</th></tr></thead>\n<tbody>\n");
    for s in sections {
        let v = &s.exp.verdict;
        let _ = writeln!(
            h,
            "<tr><td><a href=\"#{}\">{}</a></td><td>{}</td><td><span class=\"status {}\">{}</span></td><td>{}</td><td>{}</td></tr>",
            s.anchor,
            esc(&s.exp.id),
            esc(&s.exp.claim),
            status_class(v.status),
            esc(&v.status.to_string()),
            esc(&v.rule),
            esc(&v.evidence),
        );
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
    for s in sections {
        section(&mut h, s);
    }
    h.push_str("</body>\n</html>\n");
    h
}

fn section(h: &mut String, s: &Section<'_>) {
    let e = s.exp;
    let v = &e.verdict;
    let _ = write!(
        h,
        "<section id=\"{}\">\n<h2>{}: {}</h2>\n<p class=\"claim\"><b>Claim.</b> {}</p>\n",
        s.anchor,
        esc(&e.id),
        esc(&e.title),
        esc(&e.claim)
    );
    if !e.differs.is_empty() {
        let _ = writeln!(h, "<p class=\"differs\"><b>Differs from the papers.</b> {}</p>", esc(&e.differs));
    }
    let _ = writeln!(
        h,
        "<p class=\"verdict\"><b>Verdict.</b> <span class=\"status {}\">{}</span> — {}. Evidence: {}</p>",
        status_class(v.status),
        esc(&v.status.to_string()),
        esc(&v.rule),
        esc(&v.evidence)
    );
    if !e.missing.is_empty() {
        let _ = writeln!(h, "<p><b>Missing runs ({}):</b> {}</p>", e.missing.len(), esc(&e.missing.join(", ")));
    }
    if e.runs.is_empty() {
        h.push_str("<p>No run of this experiment has a result: no data to plot.</p>\n");
    }
    for p in &s.plots {
        let inline = p.svg.replacen(SVG_NS, "", 1).replacen(
            "<svg ",
            &format!("<svg role=\"img\" aria-label=\"{}\" ", esc(&p.title)),
            1,
        );
        let _ = write!(
            h,
            "<figure>\n{}\n<figcaption>{} <a href=\"{}\">{}</a></figcaption>\n</figure>\n",
            inline.trim_end(),
            esc(&p.caption),
            esc(&p.file),
            esc(&p.file)
        );
    }
    if !e.runs.is_empty() {
        h.push_str("<table class=\"metrics\">\n<thead><tr>");
        for c in METRIC_COLUMNS {
            let _ = write!(h, "<th>{}</th>", esc(c));
        }
        h.push_str("</tr></thead>\n<tbody>\n");
        for r in &e.runs {
            h.push_str("<tr>");
            for (i, cell) in metric_row(r).iter().enumerate() {
                let class = if (2..7).contains(&i) { " class=\"num\"" } else { "" };
                let _ = write!(h, "<td{class}>{}</td>", esc(cell));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</tbody>\n</table>\n");
    }
    h.push_str("</section>\n");
}
