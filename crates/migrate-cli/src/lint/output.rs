//! The findings as text (file:line rule message, then help) or JSON.

use std::fmt::Write as _;
use std::path::Path;

use super::finding::{Finding, Report};

/// How findings are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `file:line: rule: message`, then an indented help line; a summary line when clean.
    Text,
    /// A JSON array of {file, line, rule, message, help, migration, direction}.
    Json,
}

impl Report {
    /// The findings in `format`, as the lint commands print them.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => format!("{}\n", render_json(&self.findings)),
            Format::Text if self.findings.is_empty() => format!(
                "{} migration{} linted (up and down): no findings\n",
                self.linted,
                if self.linted == 1 { "" } else { "s" }
            ),
            Format::Text => render_text(&self.findings),
        }
    }
}

/// `p` relative to `base` when under it.
pub(super) fn display_path(p: &Path, base: &Path) -> String {
    p.strip_prefix(base)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

fn render_text(findings: &[Finding]) -> String {
    let mut s = String::new();
    for f in findings {
        let _ = writeln!(s, "{}:{}: {}: {}", f.file, f.line, f.rule, f.message);
        let _ = writeln!(s, "  = help: {}", f.help);
    }
    s
}

pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn render_json(findings: &[Finding]) -> String {
    let rows: Vec<String> = findings
        .iter()
        .map(|f| {
            format!(
                "  {{\"file\": {}, \"line\": {}, \"rule\": {}, \"message\": {}, \"help\": {}, \"migration\": {}, \"direction\": {}}}",
                json_str(&f.file),
                f.line,
                json_str(&f.rule),
                json_str(&f.message),
                json_str(&f.help),
                json_str(&f.migration),
                json_str(f.direction)
            )
        })
        .collect();
    if rows.is_empty() {
        "[]".into()
    } else {
        format!("[\n{}\n]", rows.join(",\n"))
    }
}
