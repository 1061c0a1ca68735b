//! The migration linter: lints the SQL every migration really runs (rendered
//! through the engine's offline mode, so barrel-built migrations are linted too), up and down,
//! with squawk's rule engine (for the PostgreSQL major of [`PgMajor`]) plus rules of our own, honouring `lint-allow`
//! exceptions. Run by `notify-db-migrations lint` and `cargo xtask lint-migrations`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::FileKind;
use notify_db_migrate::{Direction, MigrationSet, Migrator, Target};

mod allow;
mod error;
mod finding;
mod output;
mod pg_major;
mod rules;
mod squawk;

use allow::{apply_allows, find_allows};
pub use error::LintError;
use finding::Ctx;
pub use finding::{Finding, Report};
pub use output::Format;
use output::display_path;
pub(crate) use output::json_str;
pub use pg_major::{DEFAULT_PG_MAJOR, PgMajor, server_major};
use rules::own_findings;
use squawk::squawk_findings;

/// What the linter checks and how exceptions are written: the long help of the lint commands.
pub const HELP: &str = "\
Rules: squawk's default rule set (https://squawkhq.com/docs/rules) for the PostgreSQL major given
by --pg-version (or NOTIFY_DB_LINT_PG_VERSION), else that of the server --database-url points at
(the migration command), else 15, the oldest supported, without
require-statement-timeout and require-lock-timeout (the runner sets both), and without
ban-concurrent-index-creation-in-transaction (superseded by our own
statement-refused-in-transaction). Downgrades are linted without the ban-drop-* and renaming-*
rules (a down drops or renames back what its own up added). Our own rules:
  statement-refused-in-transaction  CREATE/DROP/REINDEX ... CONCURRENTLY, VACUUM, CREATE DATABASE,
                                    ALTER SYSTEM, COMMIT inside DO, ... in a migration that runs in
                                    a transaction (mark it with no_transaction()).
  transaction-control-in-migration  BEGIN, COMMIT, END, ROLLBACK, ABORT, PREPARE TRANSACTION, ...
                                    in a migration that runs in the runner's transaction (which
                                    refuses to load such a set); SAVEPOINT/ROLLBACK TO are fine.
  missing-down                      a migration without down.
  update-or-delete-without-where    an UPDATE or DELETE without WHERE in a schema migration.

Exceptions: a migration turns a rule off for itself (up and down) with a comment naming the rule
and the reason, in its SQL or anywhere in its file:
    -- lint-allow: <rule>: <reason>        (SQL, or a .sql migration file)
    // lint-allow: <rule>: <reason>        (a .rs migration file)
e.g. `-- lint-allow: ban-drop-column: the column was unused since 0042 and is empty`.
An exception without a reason, naming an unknown rule, or suppressing nothing is a finding
itself (lint-allow-without-reason, unknown-lint-rule, unused-lint-allow). Squawk's own
`-- squawk-ignore <rule>` comments also need a reason: `-- squawk-ignore <rule> -- <reason>`.
SQL that squawk cannot parse is a syntax-error finding, and transaction control (the runner
refuses it) is transaction-control-in-migration: no exception covers either
(lint-allow-not-possible).

Output: one finding per line, `file:line: rule: message`, then an indented help line; with
--format json, a JSON array of {file, line, rule, message, help, migration, direction}.
Exit status 1 when anything is found.";

/// A migration set and where its files live.
#[derive(Debug, Clone)]
pub struct Source {
    /// The set, built with [`MigrationSet::new_for_lint`] so that transaction control is a
    /// finding rather than a load error.
    pub set: MigrationSet,
    /// The directory of its files.
    pub dir: PathBuf,
    /// How its files are written.
    pub kind: FileKind,
}

impl Source {
    /// The file holding `id`'s SQL for `direction`.
    fn file(&self, id: &str, direction: Direction) -> PathBuf {
        match (self.kind, direction) {
            (FileKind::Sql, Direction::Up) => self.dir.join(format!("{id}.up.sql")),
            (FileKind::Sql, Direction::Down) => self.dir.join(format!("{id}.down.sql")),
            (FileKind::Rust, _) => self.dir.join(format!("{id}.rs")),
        }
    }

    fn sql_files(&self) -> bool {
        self.kind == FileKind::Sql
    }
}

/// Lints `source` (only the migrations changed since git ref `since`, when given), writes the
/// findings to `out` in `format`, and fails with [`LintError::Findings`] when there are any.
/// File names are shown relative to `base` when under it.
pub fn run(
    source: &Source,
    since: Option<&str>,
    format: Format,
    base: &Path,
    pg: PgMajor,
    out: &mut dyn std::io::Write,
) -> Result<Report, LintError> {
    let only = match since {
        Some(r) => Some(crate::changed::since(&source.dir, r, &source.set)?),
        None => None,
    };
    let report = lint(source, only.as_ref(), base, pg)?;
    out.write_all(report.render(format).as_bytes())
        .map_err(LintError::Output)?;
    if !report.findings.is_empty() {
        return Err(LintError::Findings {
            findings: report.findings.len(),
            linted: report.linted,
        });
    }
    Ok(report)
}

/// Lints the set (or the migrations in `only`) with squawk's rules for `pg`; file names
/// relative to `base` when under it.
pub fn lint(
    source: &Source,
    only: Option<&BTreeSet<String>>,
    base: &Path,
    pg: PgMajor,
) -> Result<Report, LintError> {
    let migrator = Migrator::offline(source.set.clone());
    let migrations = source.set.migrations();
    let mut findings = Vec::new();
    let mut linted = 0;
    for (i, m) in migrations.iter().enumerate() {
        // A baseline is a dump of a schema that exists, run only on an empty database (nobody
        // waits on its locks) and never below (no down): there is nothing to lint.
        if only.is_some_and(|o| !o.contains(m.id())) || m.is_baseline() {
            continue;
        }
        linted += 1;
        let prev = i.checked_sub(1).map(|p| migrations[p].id());
        let mut found = Vec::new();
        let mut allows = Vec::new();
        let mut directions = vec![Direction::Up];
        if m.down_statements().is_some() {
            directions.push(Direction::Down);
        }
        for &dir in &directions {
            let path = source.file(m.id(), dir);
            let text = read(&path)?;
            let file = display_path(&path, base);
            if dir == Direction::Up || source.sql_files() {
                allows.extend(find_allows(&text, &file));
            }
            let statements = match dir {
                Direction::Up => m.up_statements(),
                Direction::Down => m.down_statements().unwrap_or_default(),
            };
            let rendered = match dir {
                Direction::Up => migrator.render_sql(prev, &Target::Revision(m.id().into()), dir),
                Direction::Down => migrator.render_sql(
                    Some(m.id()),
                    &prev.map_or(Target::Base, |p| Target::Revision(p.into())),
                    dir,
                ),
            }
            .map_err(|e| LintError::Render {
                id: m.id().to_owned(),
                direction: dir.as_str(),
                source: Box::new(e),
            })?;
            let ctx = Ctx {
                m,
                dir,
                file: &file,
                text: &text,
                statements,
                pg,
            };
            found.extend(squawk_findings(&ctx, &rendered)?);
            found.extend(own_findings(&ctx));
        }
        if m.down_statements().is_none() {
            let path = source.file(m.id(), Direction::Up);
            let text = read(&path)?;
            found.push(Finding {
                file: display_path(&path, base),
                line: text
                    .lines()
                    .position(|l| l.contains(".up(") || l.contains("fn define"))
                    .map_or(1, |p| p + 1),
                rule: "missing-down".into(),
                message: format!("migration {} has no down: it cannot be rolled back", m.id()),
                help: if source.sql_files() {
                    format!("add {}.down.sql undoing the upgrade", m.id())
                } else {
                    "add .down(\"...\") undoing the upgrade".into()
                },
                migration: m.id().into(),
                direction: "down",
            });
        }
        findings.extend(apply_allows(found, &mut allows, m.id()));
    }
    Ok(Report { findings, linted })
}

/// A migration file's text.
fn read(path: &Path) -> Result<String, LintError> {
    std::fs::read_to_string(path).map_err(|source| LintError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::rules::{refused_in_transaction, unbounded_dml};
    use super::*;
    use notify_db_migrate::Migration;

    #[test]
    fn refused_statements_are_recognised() {
        assert!(refused_in_transaction("CREATE INDEX CONCURRENTLY ix ON t (a)").is_some());
        assert!(refused_in_transaction("drop index concurrently ix").is_some());
        assert!(refused_in_transaction("VACUUM ANALYZE t").is_some());
        assert!(refused_in_transaction("DO $$BEGIN COMMIT; END$$").is_some());
        assert!(refused_in_transaction("CREATE INDEX ix ON t (a)").is_none());
        assert!(refused_in_transaction("COMMENT ON TABLE t IS 'concurrently'").is_none());
        assert!(
            refused_in_transaction("CREATE INDEX /* a /* nested */ CONCURRENTLY */ ix ON t (a)")
                .is_none(),
            "a keyword in a nested comment is no keyword"
        );
    }

    #[test]
    fn unbounded_dml_is_found() {
        let hits = |s: &str| {
            let mut v = Vec::new();
            unbounded_dml(s, 0, &mut v);
            v
        };
        assert_eq!(hits("UPDATE t SET a = 1").len(), 1);
        assert_eq!(hits("DELETE FROM t").len(), 1);
        assert!(hits("UPDATE t SET a = 1 WHERE b IS NULL").is_empty());
        assert!(hits("UPDATE t SET a = (SELECT 1 FROM u WHERE u.x = 1)").len() == 1);
        assert!(hits("CREATE TABLE t (a bigint REFERENCES u (id) ON DELETE CASCADE)").is_empty());
        assert!(hits("GRANT SELECT, UPDATE ON t TO r").is_empty());
        assert_eq!(
            hits("WITH gone AS (DELETE FROM t RETURNING id) INSERT INTO log SELECT id FROM gone")
                .len(),
            1
        );
        assert!(hits("WITH gone AS (DELETE FROM t WHERE id < 5 RETURNING id) SELECT 1").is_empty());
        assert!(hits("SELECT count(*) FROM (SELECT 1) AS x").is_empty());
        assert_eq!(
            hits("WITH g AS (DELETE FROM t RETURNING id) SELECT * FROM g WHERE id > 1").len(),
            1,
            "the outer WHERE does not bound the DELETE"
        );
        assert_eq!(
            hits("DO $x$ BEGIN LOOP UPDATE t SET a = 1; EXIT; END LOOP; END $x$").len(),
            1
        );
        assert!(hits("DO $x$ BEGIN UPDATE t SET a = 1 WHERE id IN (SELECT 1); END $x$").is_empty());
        assert_eq!(
            hits(r"UPDATE t SET a = E'\' WHERE b'").len(),
            1,
            "WHERE inside an E'' string is no WHERE"
        );
    }

    #[test]
    fn lines_are_found_for_verbatim_and_barrel_sql() {
        let m = Migration::new("0001_a")
            .up("CREATE TABLE \"widgets\" (\"id\" bigint, \"name\" VARCHAR(255) NOT NULL)")
            .up("ALTER TABLE widgets\n    ALTER COLUMN name SET NOT NULL");
        let text = "fn define(m: Migration) -> Migration {\n    up.create_table(\"widgets\", |t| {\n        \
                    t.add_column(\"id\", id_key());\n        t.add_column(\"name\", types::varchar(255));\n    \
                    });\n    m.up(pg(&up))\n        .up(\"ALTER TABLE widgets\n    ALTER COLUMN name SET NOT NULL\")\n}\n";
        let ctx = Ctx {
            m: &m,
            dir: Direction::Up,
            file: "f.rs",
            text,
            statements: m.up_statements(),
            pg: PgMajor::default(),
        };
        let at = |i: usize, needle: &str| {
            ctx.line_of(i, ctx.statements[i].find(needle).expect("needle"))
        };
        assert_eq!(at(0, "\"name\""), 4, "the add_column line of the column");
        assert_eq!(at(0, "VARCHAR"), 4, "a type right after its column");
        assert_eq!(at(1, "ALTER COLUMN"), 8, "verbatim SQL, second line");
        assert_eq!(at(0, "CREATE"), 6, "nothing to anchor on: the .up( line");
    }

    #[test]
    fn a_baseline_is_not_linted() {
        let dir =
            std::env::temp_dir().join(format!("notify-db-lint-baseline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("3f2a1b9c0d4e.up.sql"),
            "-- notify-db: baseline\nCREATE TABLE public.t (id integer);\n\
             CREATE INDEX ix_t ON public.t USING btree (id);\n",
        )
        .unwrap();
        std::fs::write(dir.join("0001_a.up.sql"), "CREATE INDEX ix_t2 ON t (id)").unwrap();
        std::fs::write(dir.join("0001_a.down.sql"), "DROP INDEX ix_t2").unwrap();
        let set = MigrationSet::new_for_lint(MigrationSet::read_dir(&dir).unwrap()).unwrap();
        let source = Source {
            set,
            dir: dir.clone(),
            kind: FileKind::Sql,
        };
        let report = lint(&source, None, &dir, PgMajor::default()).unwrap();
        assert_eq!(report.linted, 1, "{report:?}");
        assert!(
            report.findings.iter().all(|f| f.migration == "0001_a"),
            "{:?}",
            report.findings
        );
        assert!(
            !report.findings.is_empty(),
            "the non-concurrent index of 0001_a is found"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn allows_are_parsed() {
        let a = find_allows(
            "-- lint-allow: ban-drop-column: unused since 0042\n// lint-allow: renaming-column\n",
            "f",
        );
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].rule, "ban-drop-column");
        assert_eq!(a[0].reason, "unused since 0042");
        assert_eq!(a[1].reason, "");
        let b = find_allows(
            "-- squawk-ignore ban-drop-column\n-- squawk-ignore renaming-column -- the old name is unused\n",
            "f",
        );
        assert_eq!(b.len(), 1, "only the one without a reason");
        assert_eq!((b[0].rule.as_str(), b[0].line), ("ban-drop-column", 1));
        assert_eq!(
            json_str("a\"b\\\n"),
            "\"a\\\"b\\\\\\n\"",
            "JSON strings are escaped"
        );
    }

    #[test]
    fn transaction_control_cannot_be_allowed() {
        let mut allows = find_allows(
            "-- lint-allow: transaction-control-in-migration: we commit on purpose\n",
            "f",
        );
        let finding = Finding {
            file: "f".into(),
            line: 2,
            rule: "transaction-control-in-migration".into(),
            message: "COMMIT".into(),
            help: String::new(),
            migration: "0001_a".into(),
            direction: "up",
        };
        let out = apply_allows(vec![finding], &mut allows, "0001_a");
        let rules: Vec<&str> = out.iter().map(|f| f.rule.as_str()).collect();
        assert!(
            rules.contains(&"transaction-control-in-migration"),
            "the finding stays: {rules:?}"
        );
        assert!(
            rules.contains(&"lint-allow-not-possible"),
            "the exception is reported, not called an unknown rule: {rules:?}"
        );
        assert!(!rules.contains(&"unknown-lint-rule"), "{rules:?}");
    }
}
