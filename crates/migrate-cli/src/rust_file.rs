//! The text of a `.rs` migration file, `pub(crate) fn define(m: Migration) -> Migration`, in
//! the one shape `revision`, `revision --baseline`, `revision --autogenerate` and
//! `import-alembic-sql` write: laid out as `cargo fmt` leaves it, so a written file is
//! format-clean as it stands. `pub(crate)` because the file is a private module of the crate
//! that registers it: `pub` would add nothing there but an `unreachable_pub` warning.

use std::fmt::Write as _;

/// rustfmt's default `fn_call_width` and `chain_width`.
pub(crate) const RUSTFMT_WIDTH: usize = 60;

/// A `.rs` migration file, part by part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RustMigration {
    /// The file's `//!` lines (an empty one is a bare `//!`).
    pub(crate) about: Vec<String>,
    /// `use` lines before `use notify_db_migrate::Migration;`, each with its `;`.
    pub(crate) uses: Vec<String>,
    /// The `///` line of `define`.
    pub(crate) doc: String,
    /// `//` lines between the doc and `define` (`lint-allow:` exceptions), without the `//`.
    pub(crate) comments: Vec<String>,
    /// Statements in `define` before `m` (barrel builders), each line indented and ended.
    pub(crate) body: String,
    /// The calls on `m`, in order (`.parent("0013_foo")`, `.up(r#"..."#)`).
    pub(crate) calls: Vec<String>,
}

impl RustMigration {
    /// The file's text.
    pub(crate) fn text(&self) -> String {
        let mut text = String::new();
        for line in &self.about {
            text.push_str(format!("//! {line}").trim_end());
            text.push('\n');
        }
        text.push('\n');
        for u in &self.uses {
            let _ = writeln!(text, "{u}");
        }
        text.push_str("use notify_db_migrate::Migration;\n\n");
        let _ = writeln!(text, "/// {}", self.doc);
        for c in &self.comments {
            let _ = writeln!(text, "// {}", c.trim_end());
        }
        text.push_str("pub(crate) fn define(m: Migration) -> Migration {\n");
        text.push_str(&self.body);
        // rustfmt's chain shape: on `m`'s line when the calls fit its width, else the first
        // call on `m`'s line and one call per line after it.
        let separator = if self.calls.iter().map(String::len).sum::<usize>() < RUSTFMT_WIDTH {
            ""
        } else {
            "\n        "
        };
        let _ = writeln!(text, "    m{}\n}}", self.calls.join(separator));
        text
    }
}

/// A Rust raw string literal for `sql`, with enough `#`s.
pub(crate) fn raw_literal(sql: &str) -> String {
    let mut hashes = String::from("#");
    while sql.contains(&format!("\"{hashes}")) {
        hashes.push('#');
    }
    format!("r{hashes}\"{sql}\"{hashes}")
}

/// A Rust string literal for `text`: a plain one when it needs no escape, an escaped one when
/// it holds a carriage return (a raw string cannot), a raw one otherwise.
pub(crate) fn literal(text: &str) -> String {
    if text.contains('\r') {
        format!("{text:?}")
    } else if text
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control())
    {
        raw_literal(text)
    } else {
        format!("\"{text}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::{RustMigration, literal, raw_literal};

    #[test]
    fn raw_strings_hold_quotes_and_hashes() {
        assert_eq!(raw_literal("SELECT 1"), "r#\"SELECT 1\"#");
        assert_eq!(raw_literal("a \"# b"), "r##\"a \"# b\"##");
        assert_eq!(literal("SELECT 1"), "\"SELECT 1\"");
        assert_eq!(literal("SELECT\n1"), "r#\"SELECT\n1\"#");
        assert_eq!(literal("a\r\nb"), "\"a\\r\\nb\"");
    }

    #[test]
    fn a_chain_that_fits_stays_on_one_line() {
        let file = |calls: &[&str]| RustMigration {
            about: vec!["About.".into(), String::new(), "More.".into()],
            doc: "Doc.".into(),
            calls: calls.iter().map(|c| (*c).to_owned()).collect(),
            ..RustMigration::default()
        };
        assert_eq!(
            file(&[".up(\"SELECT 1\")"]).text(),
            "//! About.\n//!\n//! More.\n\nuse notify_db_migrate::Migration;\n\n/// Doc.\n\
             pub(crate) fn define(m: Migration) -> Migration {\n    m.up(\"SELECT 1\")\n}\n"
        );
        assert!(
            file(&[
                ".no_transaction()",
                ".parent(\"0013_foo\")",
                ".up(\"SELECT 1 FROM a_table\")"
            ])
            .text()
            .contains("    m.no_transaction()\n        .parent(\"0013_foo\")\n        .up(")
        );
        assert!(file(&[]).text().ends_with("{\n    m\n}\n"));
    }
}
