//! The migration linter: lints the SQL every migration really runs (rendered
//! through the engine's offline mode, so barrel-built migrations are linted too), up and down,
//! with squawk's rule engine (for the PostgreSQL major of [`PgMajor`]) plus rules of our own, honouring `lint-allow`
//! exceptions. Run by `notify-db-migrations lint` and `cargo xtask lint-migrations`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use squawk_linter::{Linter, Rule};

use crate::FileKind;
use notify_db_migrate::{
    Direction, Migration, MigrationSet, Migrator, Target, transaction_control,
};

mod allow;
mod output;
mod rules;

use allow::*;
pub use output::Format;
pub(crate) use output::json_str;
use output::*;
use rules::*;

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

/// Why linting failed (findings are [`LintError::Findings`]).
#[derive(Debug, thiserror::Error)]
pub enum LintError {
    /// The linter found something (the findings were written out).
    #[error(
        "{findings} finding{} in {linted} migration{} linted",
        if *findings == 1 { "" } else { "s" },
        if *linted == 1 { "" } else { "s" }
    )]
    Findings {
        /// How many findings.
        findings: usize,
        /// How many migrations were linted.
        linted: usize,
    },
    /// A migration file could not be read.
    #[error(
        "{path}: cannot read the migration file (the linter reads it for line numbers and \
         lint-allow exceptions): {source}"
    )]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The engine could not render a migration's SQL.
    #[error("rendering the SQL of {id} ({direction}): {source}")]
    Render {
        /// The migration.
        id: String,
        /// `upgrade` or `downgrade`.
        direction: &'static str,
        /// The engine's error.
        #[source]
        source: Box<notify_db_migrate::Error>,
    },
    /// Squawk refused the PostgreSQL version it is told to lint for.
    #[error("PostgreSQL version for squawk: {0}")]
    SquawkVersion(String),
    /// `--since`: the changed migrations could not be found.
    #[error(transparent)]
    Changed(#[from] crate::changed::GitError),
    /// The server whose version the linter should use could not be asked.
    #[error(
        "reading the server version of {server}: {why} (or give it: --pg-version / NOTIFY_DB_LINT_PG_VERSION)"
    )]
    ServerVersion {
        /// The server (hosts and ports; never a password).
        server: String,
        /// What went wrong.
        why: String,
    },
    /// The findings could not be written out.
    #[error("writing the lint output: {0}")]
    Output(#[source] std::io::Error),
}

/// The oldest supported major: the linter's PostgreSQL version when none is set and no server
/// is asked (rules that hold there hold on every supported server).
pub const DEFAULT_PG_MAJOR: u32 = (notify_db_config::MIN_SERVER_VERSION_NUM / 10_000) as u32;

/// The PostgreSQL major squawk's rules are applied for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgMajor(pub u32);

impl Default for PgMajor {
    fn default() -> Self {
        PgMajor(DEFAULT_PG_MAJOR)
    }
}

/// The major of the server `uri` points at (`server_version_num / 10000`), for the linter.
pub async fn server_major(uri: &notify_db_config::DatabaseUri) -> Result<PgMajor, LintError> {
    use notify_db_connect::ConnectUri;
    let what = || uri.to_string();
    let tls = uri.tls().map_err(|e| LintError::ServerVersion {
        server: what(),
        why: e.to_string(),
    })?;
    let ask = async {
        let client = tls.connect(&uri.to_pg_config()).await?;
        let row = client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await?;
        Ok::<i32, tokio_postgres::Error>(row.get(0))
    };
    match tokio::time::timeout(std::time::Duration::from_secs(10), ask).await {
        Ok(Ok(num)) => Ok(PgMajor(num.max(0) as u32 / 10_000)),
        Ok(Err(e)) => Err(LintError::ServerVersion {
            server: what(),
            why: e.to_string(),
        }),
        Err(_) => Err(LintError::ServerVersion {
            server: what(),
            why: "no answer within 10 s".into(),
        }),
    }
}

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

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The migration file, relative to the base directory given to [`lint`] when under it.
    pub file: String,
    /// The line in that file (1-based).
    pub line: usize,
    /// The rule (squawk's name, or one of ours).
    pub rule: String,
    /// What is wrong, with the migration, direction, statement number and a snippet.
    pub message: String,
    /// How to fix it.
    pub help: String,
    /// The migration's id.
    pub migration: String,
    /// `up` or `down`.
    pub direction: &'static str,
}

/// What a lint run found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The findings, by file and line.
    pub findings: Vec<Finding>,
    /// How many migrations were linted.
    pub linted: usize,
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

/// What a rule check needs to know about one migration and direction.
struct Ctx<'a> {
    m: &'a Migration,
    dir: Direction,
    file: &'a str,
    text: &'a str,
    statements: &'a [String],
    pg: PgMajor,
}

impl Ctx<'_> {
    /// The line in the migration's file of byte `offset` in statement `idx`.
    fn line_of(&self, idx: usize, offset: usize) -> usize {
        let stmt = &self.statements[idx];
        let line_at = |pos: usize| self.text[..pos.min(self.text.len())].lines().count().max(1);
        if let Some(p) = self.text.find(stmt.as_str()) {
            return line_at(p + offset + 1);
        }
        // Not verbatim in the file (barrel-generated, or a Rust string with `\` continuations):
        // look for the offending line of the statement, then for its first words.
        let start = stmt[..offset.min(stmt.len())]
            .rfind('\n')
            .map_or(0, |p| p + 1);
        let end = stmt[start..].find('\n').map_or(stmt.len(), |p| start + p);
        let line = stmt[start..end].trim();
        if line.len() > 8
            && let Some(p) = self.text.find(line)
        {
            return line_at(p + 1);
        }
        // Barrel quotes identifiers: find the column (or table) the finding is about in the
        // file, e.g. `t.add_column("name", ...)` for a finding on `"name" VARCHAR(255)`.
        let offset = offset.min(stmt.len());
        let ident = match stmt[offset..].strip_prefix('"') {
            Some(rest) => rest.split('"').next(),
            None => {
                let pre = &stmt[..offset];
                pre.rfind('"')
                    .and_then(|close| pre[..close].rfind('"').map(|open| &pre[open + 1..close]))
            }
        };
        if let Some(id) = ident.filter(|i| !i.is_empty())
            && let Some(p) = self.text.find(&format!("\"{id}\""))
        {
            return line_at(p + 1);
        }
        let words: Vec<&str> = stmt.split_whitespace().take(3).collect();
        if let Some(p) = self.text.find(&words.join(" ")) {
            return line_at(p + 1);
        }
        let call = match self.dir {
            Direction::Up => ".up(",
            Direction::Down => ".down(",
        };
        self.text
            .lines()
            .position(|l| l.contains(call))
            .or_else(|| self.text.lines().position(|l| l.contains("fn define")))
            .map_or(1, |p| p + 1)
    }

    fn finding(
        &self,
        idx: usize,
        offset: usize,
        rule: &str,
        message: String,
        help: String,
    ) -> Finding {
        let stmt = &self.statements[idx];
        let snippet: String = stmt[offset.min(stmt.len())..]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(80)
            .collect();
        Finding {
            file: self.file.to_owned(),
            line: self.line_of(idx, offset),
            rule: rule.to_owned(),
            message: format!(
                "{message} [{} {}, statement {}: `{snippet}`]",
                self.m.id(),
                self.dir.as_str(),
                idx + 1
            ),
            help,
            migration: self.m.id().to_owned(),
            direction: match self.dir {
                Direction::Up => "up",
                Direction::Down => "down",
            },
        }
    }
}

/// Squawk's findings on the rendered script, kept only where they point into the migration's own
/// statements (not the engine's version/journal bookkeeping).
fn squawk_findings(ctx: &Ctx<'_>, rendered: &str) -> Result<Vec<Finding>, LintError> {
    // Where each statement of the migration sits in the rendered script.
    let marker = format!("\n-- {} (", ctx.m.id());
    let mut cursor = rendered.find(&marker).unwrap_or(0);
    let mut spans = Vec::new();
    for (i, s) in ctx.statements.iter().enumerate() {
        if let Some(p) = rendered[cursor..].find(s.as_str()) {
            let start = cursor + p;
            spans.push((start, start + s.len(), i));
            cursor = start + s.len();
        }
    }
    let parse = squawk_syntax::SourceFile::parse(rendered);
    let mut linter = Linter::with_rules(
        &[],
        &[
            Rule::RequireStatementTimeout,
            Rule::RequireLockTimeout,
            Rule::RequireTimeoutSettings,
            Rule::BanConcurrentIndexCreationInTransaction,
        ],
    );
    linter.settings.pg_version = ctx
        .pg
        .0
        .to_string()
        .parse()
        .map_err(|e| LintError::SquawkVersion(format!("{e:?}")))?;
    linter.settings.assume_in_transaction = false;
    let mut out = Vec::new();
    for e in parse.errors() {
        let at: usize = e.range().start().into();
        // A parse error may point just past the statement (where more was expected).
        if let Some(&(start, _, idx)) = spans.iter().find(|(s, e, _)| *s <= at && at <= *e) {
            out.push(ctx.finding(
                idx,
                at - start,
                "syntax-error",
                format!("squawk cannot parse this: {}", e.message()),
                "fix the SQL (the rules cannot check what they cannot parse)".into(),
            ));
        }
    }
    for v in linter.lint(&parse, rendered) {
        let at: usize = v.text_range.start().into();
        let Some(&(start, _, idx)) = spans.iter().find(|(s, e, _)| *s <= at && at < *e) else {
            continue;
        };
        let rule = v.code.to_string();
        if ctx.dir == Direction::Down && undoes_its_up(&rule) {
            continue;
        }
        let help = v.help.clone().unwrap_or_else(|| {
            format!("see https://squawkhq.com/docs/{rule}, or add `lint-allow: {rule}: <reason>`")
        });
        out.push(ctx.finding(idx, at - start, &rule, v.message.clone(), help));
    }
    Ok(out)
}

/// Rules about breaking clients by dropping or renaming objects: a down that drops or renames back
/// what its own up added breaks no client older than the migration, so they are not applied to
/// downgrades (lock-related rules are).
fn undoes_its_up(rule: &str) -> bool {
    (rule.starts_with("ban-drop-") && rule != "ban-drop-database") || rule.starts_with("renaming-")
}

#[cfg(test)]
mod tests {
    use super::*;

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
