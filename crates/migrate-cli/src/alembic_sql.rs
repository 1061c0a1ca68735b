//! Alembic's offline SQL (`alembic upgrade --sql A:B`, which is what `flask db upgrade --sql`
//! writes) read back into one migration per revision, for `import-alembic-sql`.
//!
//! The format, from Alembic's `MigrationContext.run_migrations` and `DefaultImpl.static_output`
//! (every piece of output is followed by a blank line, every statement ends with `;`):
//! - `BEGIN;` once at the start (`env.py`'s default), or before each revision with
//!   `transaction_per_migration=True` (the reference's `env.py`), which then closes each with
//!   `COMMIT;`;
//! - from base only, `CREATE TABLE alembic_version (...)` before the first revision;
//! - per revision a `-- Running upgrade A -> B` comment (`A` empty from base), its statements,
//!   then the version move: `INSERT INTO alembic_version (version_num) VALUES ('B')` from base,
//!   else `UPDATE alembic_version SET version_num='B' WHERE alembic_version.version_num = 'A'`;
//! - an `autocommit_block()` is rendered as `COMMIT;`, its statements, `BEGIN;`; a revision's
//!   own `op.execute("COMMIT")` is a bare `COMMIT;`;
//! - `COMMIT;` at the end.
//!
//! Alembic's bookkeeping (the version table, its INSERT and UPDATE, the run's BEGIN and COMMIT)
//! is not copied. A revision that commits (its own `COMMIT` or an autocommit block) becomes a
//! no-transaction migration, its `COMMIT`/`BEGIN` dropped: outside a transaction every statement
//! commits by itself.

use std::fmt::Write as _;

use notify_db_migrate::Migration;
use notify_db_migrate::lexer::{Kind, code_tokens, leading_words, split_statements};
use notify_db_migrate::transaction_control;

use crate::rust_file::{RustMigration, literal};

/// Alembic's version table, as its offline output names it.
const VERSION_TABLE: &str = "ALEMBIC_VERSION";

/// The comment Alembic writes before each revision's statements.
const UPGRADE_MARKER: &str = "-- Running upgrade ";

/// The comment of a downgrade script.
const DOWNGRADE_MARKER: &str = "-- Running downgrade ";

/// One revision read from the offline SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// Its id (`B` of `-- Running upgrade A -> B`).
    pub id: String,
    /// The revision it follows (`A`), `None` from base.
    pub parent: Option<String>,
    /// Its statements, without Alembic's bookkeeping and without terminators.
    pub statements: Vec<String>,
    /// False when it committed under Alembic (its own `COMMIT` or an autocommit block).
    pub transactional: bool,
    /// The line of its `-- Running upgrade` marker.
    pub line: usize,
}

impl Revision {
    /// The migration this revision becomes.
    pub fn migration(&self) -> Migration {
        let mut m = Migration::new(&self.id);
        if let Some(p) = &self.parent {
            m = m.parent(p);
        }
        if !self.transactional {
            m = m.no_transaction();
        }
        for s in &self.statements {
            m = m.up(s);
        }
        m
    }

    /// What its file says about it: where it came from, and why it runs outside a transaction
    /// or does nothing (comment lines, without the comment marker).
    fn about(&self, source: &str) -> Vec<String> {
        let mut lines = vec![format!(
            "Alembic revision {}, imported from {source} (line {}).",
            self.id, self.line
        )];
        if !self.transactional {
            lines.push(
                "It committed under Alembic (an autocommit block or a COMMIT of its own): it runs"
                    .into(),
            );
            lines.push("outside a transaction, statement by statement.".into());
        }
        if self.statements.is_empty() {
            lines.push("An empty revision: applying it only moves alembic_version.".into());
        }
        lines
    }

    /// The text of its `ID.up.sql`: the header options (parent, no-transaction), where it came
    /// from, and its statements.
    pub fn sql_file(&self, source: &str) -> String {
        let mut text = String::new();
        if let Some(p) = &self.parent {
            let _ = writeln!(text, "-- notify-db: parent={p}");
        }
        if !self.transactional {
            text.push_str("-- notify-db: no-transaction\n");
        }
        for line in self.about(source) {
            let _ = writeln!(text, "-- {line}");
        }
        for s in &self.statements {
            text.push('\n');
            text.push_str(s);
            text.push_str(";\n");
        }
        text
    }

    /// The text of its `ID.rs`, for a compiled set: the same comment, and `define` declaring
    /// what the header options declare (`.no_transaction()`, `.parent(A)`) before its statements.
    pub fn rust_file(&self, source: &str) -> String {
        RustMigration {
            about: self.about(source),
            doc: format!("Alembic revision {}.", self.id),
            calls: (!self.transactional)
                .then(|| ".no_transaction()".to_owned())
                .into_iter()
                .chain(
                    self.parent
                        .iter()
                        .map(|p| format!(".parent({})", literal(p))),
                )
                .chain(
                    self.statements
                        .iter()
                        .map(|s| format!(".up({})", literal(s))),
                )
                .collect(),
            ..RustMigration::default()
        }
        .text()
    }
}

/// Why the offline SQL cannot be imported; each names the file and line.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// No `-- Running upgrade` marker at all.
    #[error(
        "{file}: no `-- Running upgrade A -> B` line: not the output of `alembic upgrade --sql` \
         (or `flask db upgrade --sql`)"
    )]
    NoRevisions {
        /// The file.
        file: String,
    },
    /// A downgrade script.
    #[error(
        "{file}:{line}: `-- Running downgrade`: this is a downgrade script; import the output of \
         `alembic upgrade --sql A:B`"
    )]
    Downgrade {
        /// The file.
        file: String,
        /// The marker's line.
        line: usize,
    },
    /// A marker this importer does not read: a merge, a branch point, a bad id.
    #[error("{file}:{line}: `{marker}`: {reason}")]
    BadMarker {
        /// The file.
        file: String,
        /// The marker's line.
        line: usize,
        /// The marker.
        marker: String,
        /// What is wrong.
        reason: String,
    },
    /// A statement where only Alembic's bookkeeping may be.
    #[error("{file}:{line}: `{statement}` {place}; only Alembic's own statements may be there")]
    Stray {
        /// The file.
        file: String,
        /// The statement's line.
        line: usize,
        /// The statement (its first line).
        statement: String,
        /// Where it is.
        place: String,
    },
    /// The version statement does not move `alembic_version` as the marker says.
    #[error("{file}:{line}: revision {id} (`-- Running upgrade` at line {marker_line}): {reason}")]
    Version {
        /// The file.
        file: String,
        /// The line of the statement at fault (or of the marker).
        line: usize,
        /// The revision.
        id: String,
        /// Its marker's line.
        marker_line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Where a statement of a revision's part of the file stands.
enum Role {
    /// `CREATE TABLE alembic_version`.
    CreateVersionTable,
    /// The INSERT or UPDATE moving `alembic_version` to `to` (from `from`).
    VersionMove { from: Option<String>, to: String },
    /// Any other statement on `alembic_version` (a DELETE: a downgrade).
    OtherVersion,
    /// `BEGIN`, `COMMIT`, ... (the command).
    Transaction(&'static str),
    /// The revision's own SQL.
    Migration,
}

fn role(statement: &str) -> Role {
    if let Some(command) = transaction_control(statement) {
        return Role::Transaction(command);
    }
    let words = leading_words(statement, 3);
    let word = |i: usize| words.get(i).map_or("", String::as_str);
    let literals = || -> Vec<String> {
        code_tokens(statement)
            .filter(|t| t.kind == Kind::String)
            .map(|t| t.text.trim_matches('\'').replace("''", "'"))
            .collect()
    };
    match (word(0), word(1), word(2)) {
        ("CREATE", "TABLE", VERSION_TABLE) => Role::CreateVersionTable,
        ("INSERT", "INTO", VERSION_TABLE) => match literals().as_slice() {
            [to] => Role::VersionMove {
                from: None,
                to: to.clone(),
            },
            _ => Role::OtherVersion,
        },
        ("UPDATE", VERSION_TABLE, _) => match literals().as_slice() {
            [to, from] => Role::VersionMove {
                from: Some(from.clone()),
                to: to.clone(),
            },
            _ => Role::OtherVersion,
        },
        (_, VERSION_TABLE, _) | (_, _, VERSION_TABLE) => Role::OtherVersion,
        _ => Role::Migration,
    }
}

/// A part of the file: the lines before the first marker, or one revision's.
struct Part<'a> {
    /// The marker's line (1-based); 0 for the lines before the first marker.
    marker_line: usize,
    /// The marker (`A -> B`), parsed.
    revision: Option<(Option<String>, String, &'a str)>,
    /// The text after the marker, up to the next one.
    text: String,
    /// The line its text starts on.
    first_line: usize,
}

/// The statements of `part`, each with its line.
fn statements_of(part: &Part<'_>) -> Vec<(usize, String)> {
    let mut cursor = 0;
    split_statements(&part.text)
        .into_iter()
        .map(|s| {
            let at = part.text[cursor..].find(&s).map_or(cursor, |i| cursor + i);
            let line = part.first_line + part.text[..at].matches('\n').count();
            cursor = at + s.len();
            (line, s)
        })
        .collect()
}

/// The first line of a statement, for messages.
fn first_line(statement: &str) -> String {
    let line = statement.lines().next().unwrap_or_default();
    if line.len() < statement.len() {
        format!("{line} ...")
    } else {
        line.to_owned()
    }
}

/// Splits the file at its markers.
fn parts<'a>(text: &'a str, file: &str) -> Result<Vec<Part<'a>>, ImportError> {
    let mut parts = vec![Part {
        marker_line: 0,
        revision: None,
        text: String::new(),
        first_line: 1,
    }];
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim();
        if trimmed.starts_with(DOWNGRADE_MARKER) {
            return Err(ImportError::Downgrade {
                file: file.to_owned(),
                line: n,
            });
        }
        let Some(rest) = trimmed.strip_prefix(UPGRADE_MARKER) else {
            if let Some(part) = parts.last_mut() {
                part.text.push_str(line);
                part.text.push('\n');
            }
            continue;
        };
        let bad = |reason: &str| ImportError::BadMarker {
            file: file.to_owned(),
            line: n,
            marker: trimmed.to_owned(),
            reason: reason.to_owned(),
        };
        let (from, to) = rest
            .split_once("->")
            .ok_or_else(|| bad("expected `-- Running upgrade A -> B`"))?;
        let (from, to) = (from.trim(), to.trim());
        if from.contains(',') || to.contains(',') {
            return Err(bad(
                "a merge or branch point (several revisions): only a linear range can be \
                 imported; render the branches one range at a time",
            ));
        }
        if to.is_empty() || to.contains(char::is_whitespace) {
            return Err(bad("expected one revision id after `->`"));
        }
        parts.push(Part {
            marker_line: n,
            revision: Some((
                (!from.is_empty()).then(|| from.to_owned()),
                to.to_owned(),
                trimmed,
            )),
            text: String::new(),
            first_line: n + 1,
        });
    }
    Ok(parts)
}

/// Reads Alembic's offline upgrade SQL: one [`Revision`] per `-- Running upgrade` marker, in
/// order, each following the one before. `file` names the input in errors.
pub fn parse(text: &str, file: &str) -> Result<Vec<Revision>, ImportError> {
    let parts = parts(text, file)?;
    if parts.len() == 1 {
        return Err(ImportError::NoRevisions {
            file: file.to_owned(),
        });
    }
    let stray = |line: usize, statement: &str, place: String| ImportError::Stray {
        file: file.to_owned(),
        line,
        statement: first_line(statement),
        place,
    };
    let mut revisions: Vec<Revision> = Vec::with_capacity(parts.len() - 1);
    for part in &parts {
        let Some((from, to, marker)) = &part.revision else {
            // Before the first revision: the run's BEGIN and, from base, the version table.
            for (line, s) in statements_of(part) {
                match role(&s) {
                    Role::Transaction("BEGIN") | Role::CreateVersionTable => {}
                    _ => return Err(stray(line, &s, "before the first revision".into())),
                }
            }
            continue;
        };
        let version_err = |line: usize, reason: String| ImportError::Version {
            file: file.to_owned(),
            line,
            id: to.clone(),
            marker_line: part.marker_line,
            reason,
        };
        if let Some(previous) = revisions.last()
            && from.as_deref() != Some(previous.id.as_str())
        {
            return Err(ImportError::BadMarker {
                file: file.to_owned(),
                line: part.marker_line,
                marker: (*marker).to_owned(),
                reason: format!(
                    "the revision before it is {} (line {}): not one linear range",
                    previous.id, previous.line
                ),
            });
        }
        let mut statements = Vec::new();
        let mut transactional = true;
        let mut moved = false;
        for (line, s) in statements_of(part) {
            match (role(&s), moved) {
                (Role::VersionMove { from: f, to: t }, false) => {
                    if &t != to || &f != from {
                        return Err(version_err(
                            line,
                            format!(
                                "`{}` moves alembic_version from {} to {t}, not from {} as the \
                                 marker says",
                                first_line(&s),
                                f.as_deref().unwrap_or("base"),
                                from.as_deref().unwrap_or("base")
                            ),
                        ));
                    }
                    moved = true;
                }
                // After the version move: the per-revision COMMIT and the next BEGIN.
                (Role::Transaction("COMMIT" | "BEGIN"), true) => {}
                (Role::Transaction("COMMIT" | "BEGIN" | "END" | "START TRANSACTION"), false) => {
                    transactional = false;
                }
                (Role::Migration, false) => statements.push(s),
                (Role::Transaction(command), false) => {
                    return Err(stray(
                        line,
                        &s,
                        format!("in revision {to}: {command} cannot be imported"),
                    ));
                }
                (_, false) => {
                    return Err(stray(
                        line,
                        &s,
                        format!("in revision {to}: a statement on alembic_version"),
                    ));
                }
                (_, true) => {
                    return Err(stray(
                        line,
                        &s,
                        format!("after revision {to}'s version update"),
                    ));
                }
            }
        }
        if !moved {
            return Err(version_err(
                part.marker_line,
                "no INSERT INTO / UPDATE alembic_version moving it there (a truncated file?)"
                    .into(),
            ));
        }
        revisions.push(Revision {
            id: to.clone(),
            parent: from.clone(),
            statements,
            transactional,
            line: part.marker_line,
        });
    }
    Ok(revisions)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_TRANSACTION: &str = "BEGIN;\n\n-- Running upgrade a1 -> b2\n\n\
        ALTER TABLE t ADD COLUMN x INTEGER;\n\n\
        UPDATE alembic_version SET version_num='b2' WHERE alembic_version.version_num = 'a1';\n\n\
        -- Running upgrade b2 -> c3\n\n\
        UPDATE alembic_version SET version_num='c3' WHERE alembic_version.version_num = 'b2';\n\n\
        -- Running upgrade c3 -> d4\n\nCOMMIT;\n\n\
        CREATE INDEX CONCURRENTLY ix_t_x ON t (x);\n\nBEGIN;\n\n\
        UPDATE alembic_version SET version_num='d4' WHERE alembic_version.version_num = 'c3';\n\n\
        COMMIT;\n\n";

    #[test]
    fn a_range_in_one_transaction_gives_linked_revisions() {
        let r = parse(ONE_TRANSACTION, "range.sql").unwrap();
        let ids: Vec<(&str, Option<&str>, bool, usize)> = r
            .iter()
            .map(|r| {
                (
                    r.id.as_str(),
                    r.parent.as_deref(),
                    r.transactional,
                    r.statements.len(),
                )
            })
            .collect();
        assert_eq!(
            ids,
            [
                ("b2", Some("a1"), true, 1),
                ("c3", Some("b2"), true, 0),
                ("d4", Some("c3"), false, 1)
            ]
        );
        assert_eq!(r[0].line, 3);
        assert_eq!(
            r[2].statements,
            ["CREATE INDEX CONCURRENTLY ix_t_x ON t (x)"]
        );
        let file = r[2].sql_file("range.sql");
        assert!(
            file.starts_with("-- notify-db: parent=c3\n-- notify-db: no-transaction\n"),
            "{file}"
        );
    }

    #[test]
    fn what_cannot_be_imported_is_named_with_its_line() {
        let err = |text: &str| parse(text, "f.sql").unwrap_err().to_string();
        assert!(err("SELECT 1;").contains("no `-- Running upgrade"));
        assert!(err("BEGIN;\n\n-- Running downgrade b2 -> a1\n").starts_with("f.sql:3:"));
        let merge = err("-- Running upgrade a1, b1 -> c1\n");
        assert!(
            merge.contains("f.sql:1:") && merge.contains("merge"),
            "{merge}"
        );
        let stray = err("BEGIN;\n\nSET search_path = x;\n\n-- Running upgrade  -> a1\n");
        assert!(
            stray.starts_with("f.sql:3: `SET search_path = x`"),
            "{stray}"
        );
        let wrong = ONE_TRANSACTION.replace("SET version_num='c3'", "SET version_num='c9'");
        let wrong = err(&wrong);
        assert!(
            wrong.starts_with("f.sql:11: revision c3") && wrong.contains("to c9"),
            "{wrong}"
        );
        let cut = err("-- Running upgrade a1 -> b2\n\nSELECT 1;\n");
        assert!(cut.contains("truncated"), "{cut}");
        let gap = ONE_TRANSACTION.replace("upgrade b2 -> c3", "upgrade x9 -> c3");
        assert!(err(&gap).contains("not one linear range"));
    }
}
