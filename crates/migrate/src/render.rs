//! The SQL the engine sends, built in one place so that offline `--sql` output is exactly what runs.

use std::fmt::Write as _;
use std::time::Duration;

use crate::lexer::{self, Kind};
use crate::migration::{Direction, Migration};
use crate::options::Options;

pub(crate) mod queries;

/// Alembic's version table.
pub(crate) const VERSION_TABLE: &str = "alembic_version";
/// Our journal table: one row per applied/reverted migration and per completed non-transactional statement.
pub(crate) const JOURNAL_TABLE: &str = "notify_db_migration_journal";

/// Creates `alembic_version` exactly as Alembic does.
pub(crate) const CREATE_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS alembic_version (\
version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))";

/// The journal's operation check: what a journal row can record.
macro_rules! journal_operation_check {
    () => {
        "CHECK (operation IN ('upgrade', 'downgrade', 'step', 'stamp'))"
    };
}

/// Creates the journal.
pub(crate) const CREATE_JOURNAL_TABLE: &str = concat!(
    "CREATE TABLE IF NOT EXISTS notify_db_migration_journal (\
id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
version_num varchar(32) NOT NULL, \
operation text NOT NULL CONSTRAINT notify_db_migration_journal_operation_check ",
    journal_operation_check!(),
    ", \
step integer, \
checksum text, \
applied_at timestamptz NOT NULL DEFAULT now(), \
duration_ms double precision, \
applied_by text NOT NULL DEFAULT current_setting('application_name'), \
runner_host text, \
client_addr inet DEFAULT inet_client_addr())"
);

/// Lets a journal created before `stamp` existed record `stamp` rows (the check's name is the
/// one PostgreSQL gave the column constraint of the first journal).
pub(crate) const ALLOW_STAMP_IN_JOURNAL: &str = concat!(
    "ALTER TABLE notify_db_migration_journal \
DROP CONSTRAINT IF EXISTS notify_db_migration_journal_operation_check, \
ADD CONSTRAINT notify_db_migration_journal_operation_check ",
    journal_operation_check!()
);

/// A SQL literal.
pub(crate) fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `SET [LOCAL] name = 'Nms'`.
pub(crate) fn set_ms(local: bool, name: &str, d: Duration) -> String {
    format!(
        "SET {}{name} = '{}ms'",
        if local { "LOCAL " } else { "" },
        d.as_millis()
    )
}

/// Session settings for a migration connection. No `statement_timeout` (`None`) is sent as 0,
/// so neither the server's nor the URI's default cancels a long migration.
pub(crate) fn session_setup(lock_timeout: Duration, statement_timeout: Option<Duration>) -> String {
    format!(
        "{};\n{};\n",
        set_ms(false, "lock_timeout", lock_timeout),
        set_ms(
            false,
            "statement_timeout",
            statement_timeout.unwrap_or(Duration::ZERO)
        )
    )
}

/// For a non-transactional migration with timeouts of its own: the `SET`s before its statements
/// and the ones restoring the runner's `lock_timeout` / `statement_timeout` after them.
pub(crate) fn own_session_settings(
    m: &Migration,
    runner: &Options,
) -> (Option<String>, Option<String>) {
    let (lock_timeout, statement_timeout) = (runner.lock_timeout, runner.statement_timeout);
    let mut own = Vec::new();
    let mut restore = Vec::new();
    if let Some(t) = m.own_lock_timeout() {
        own.push(set_ms(false, "lock_timeout", t));
        restore.push(set_ms(false, "lock_timeout", lock_timeout));
    }
    if let Some(t) = m.own_statement_timeout() {
        own.push(set_ms(false, "statement_timeout", t));
        restore.push(set_ms(
            false,
            "statement_timeout",
            statement_timeout.unwrap_or(Duration::ZERO),
        ));
    }
    let join = |v: Vec<String>| (!v.is_empty()).then(|| v.join(";\n"));
    (join(own), join(restore))
}

/// Moves `alembic_version` from `from` to `to` (`None` is base).
pub(crate) fn version_update(from: Option<&str>, to: Option<&str>) -> String {
    match (from, to) {
        (None, Some(to)) => format!(
            "INSERT INTO {VERSION_TABLE} (version_num) VALUES ({})",
            lit(to)
        ),
        (Some(from), Some(to)) => format!(
            "UPDATE {VERSION_TABLE} SET version_num = {} WHERE version_num = {}",
            lit(to),
            lit(from)
        ),
        (Some(from), None) => format!(
            "DELETE FROM {VERSION_TABLE} WHERE version_num = {}",
            lit(from)
        ),
        (None, None) => "SELECT 1".to_owned(),
    }
}

/// `statements` as one transaction: `BEGIN; ...; COMMIT`.
pub(crate) fn in_transaction(statements: &[&str]) -> String {
    format!("BEGIN;\n{};\nCOMMIT", statements.join(";\n"))
}

/// `stamp`: `alembic_version` holds exactly `to` (nothing for base), with its journal row, in
/// one transaction.
pub(crate) fn stamp(to: Option<&str>, journal_row: &str) -> String {
    let mut statements = vec![
        ALLOW_STAMP_IN_JOURNAL.to_owned(),
        format!("DELETE FROM {VERSION_TABLE}"),
    ];
    if let Some(to) = to {
        statements.push(format!(
            "INSERT INTO {VERSION_TABLE} (version_num) VALUES ({})",
            lit(to)
        ));
    }
    statements.push(journal_row.to_owned());
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    in_transaction(&statements)
}

/// How the journal row gets its duration.
pub(crate) enum Elapsed {
    /// Server side: since the start of the current transaction.
    SinceTransactionStart,
    /// Measured by the runner.
    Measured(Duration),
}

/// One journal row.
pub(crate) fn journal_insert(
    id: &str,
    operation: &str,
    step: Option<usize>,
    checksum: Option<&str>,
    elapsed: Elapsed,
    host: &str,
) -> String {
    let duration = match elapsed {
        Elapsed::SinceTransactionStart => {
            "extract(epoch FROM clock_timestamp() - now())::float8 * 1000".to_owned()
        }
        Elapsed::Measured(d) => format!("{:.3}", d.as_secs_f64() * 1000.0),
    };
    format!(
        "INSERT INTO {JOURNAL_TABLE} (version_num, operation, step, checksum, duration_ms, runner_host) \
         VALUES ({}, {}, {}, {}, {duration}, {})",
        lit(id),
        lit(operation),
        step.map_or("NULL".to_owned(), |s| s.to_string()),
        checksum.map_or("NULL".to_owned(), lit),
        lit(host)
    )
}

/// A non-transactional migration step, statement by statement: the live run sends exactly these
/// statements in this order (only the measured durations in the journal rows differ), and the
/// offline `--sql` script is [`NonTxScript::lines`] of the same value.
pub(crate) struct NonTxScript<'a> {
    m: &'a Migration,
    dir: Direction,
    from: Option<&'a str>,
    to: Option<&'a str>,
    host: &'a str,
    /// The migration's own timeouts before its statements, and the runner's restored after them.
    pub(crate) own_settings: Option<String>,
    /// See `own_settings`.
    pub(crate) restore_settings: Option<String>,
}

impl<'a> NonTxScript<'a> {
    /// The script of `m` in `dir`, moving `alembic_version` from `from` to `to`.
    pub(crate) fn new(
        m: &'a Migration,
        dir: Direction,
        (from, to): (Option<&'a str>, Option<&'a str>),
        host: &'a str,
        runner: &Options,
    ) -> Self {
        let (own_settings, restore_settings) = own_session_settings(m, runner);
        Self {
            m,
            dir,
            from,
            to,
            host,
            own_settings,
            restore_settings,
        }
    }

    /// The migration's statements in this direction.
    pub(crate) fn statements(&self) -> &'a [String] {
        statements(self.m, self.dir)
    }

    /// The journal row recording statement `i` done (upgrades only: a rerun resumes after it).
    pub(crate) fn step_done(&self, i: usize, took: Duration) -> Option<String> {
        (self.dir == Direction::Up).then(|| {
            journal_insert(
                self.m.id(),
                "step",
                Some(i),
                None,
                Elapsed::Measured(took),
                self.host,
            )
        })
    }

    /// The transaction that moves `alembic_version` and writes the migration's journal row.
    pub(crate) fn version_batch(&self, took: Duration) -> String {
        let checksum = (self.dir == Direction::Up).then(|| self.m.checksum());
        in_transaction(&[
            &version_update(self.from, self.to),
            &journal_insert(
                self.m.id(),
                self.dir.as_str(),
                None,
                checksum,
                Elapsed::Measured(took),
                self.host,
            ),
        ])
    }

    /// Every statement in order, for the offline script (durations zero).
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut v: Vec<String> = self.own_settings.iter().cloned().collect();
        for (i, s) in self.statements().iter().enumerate() {
            v.push(s.clone());
            v.extend(self.step_done(i, Duration::ZERO));
        }
        v.extend(self.restore_settings.iter().cloned());
        v.push(self.version_batch(Duration::ZERO));
        v
    }
}

/// Name of the prepared `alembic_version` update (see [`prepare_bookkeeping`]).
const PREPARED_VERSION_UPDATE: &str = "notify_db_version_update";
/// Name of the prepared journal insert (see [`prepare_bookkeeping`]).
const PREPARED_JOURNAL: &str = "notify_db_journal";

/// The statements a migration runs in `dir` (none for a missing down).
pub(crate) fn statements(m: &Migration, dir: Direction) -> &[String] {
    match dir {
        Direction::Up => m.up_statements(),
        Direction::Down => m.down_statements().unwrap_or(&[]),
    }
}

/// Prepares, once per run, the version update and the journal row that every transactional
/// step sends, so the server parses and plans them once instead of once per migration.
pub(crate) fn prepare_bookkeeping(host: &str) -> String {
    format!(
        "PREPARE {PREPARED_VERSION_UPDATE}(varchar, varchar) AS \
         UPDATE {VERSION_TABLE} SET version_num = $1 WHERE version_num = $2;\n\
         PREPARE {PREPARED_JOURNAL}(varchar, text, text) AS \
         INSERT INTO {JOURNAL_TABLE} (version_num, operation, step, checksum, duration_ms, runner_host) \
         VALUES ($1, $2, NULL, $3, extract(epoch FROM clock_timestamp() - now())::float8 * 1000, {});\n",
        lit(host)
    )
}

/// True when statements may drop the session's prepared statements (`DEALLOCATE`, `DISCARD`):
/// such a migration, and every later one of the run, uses the plain bookkeeping statements. The
/// keywords count anywhere, in function bodies and string literals too (dynamic SQL).
pub(crate) fn may_deallocate(statements: &[String]) -> bool {
    statements.iter().any(|s| drops_prepared(s))
}

/// True when `sql`, or SQL nested in its string literals and dollar-quoted bodies, has the word
/// `DEALLOCATE` or `DISCARD`.
fn drops_prepared(sql: &str) -> bool {
    lexer::code_tokens(sql).any(|t| match t.kind {
        Kind::Word => t.is_keyword("DEALLOCATE") || t.is_keyword("DISCARD"),
        Kind::String => drops_prepared(t.text.trim_start_matches(['E', 'e']).trim_matches('\'')),
        Kind::DollarQuoted => t
            .dollar_body()
            .is_some_and(|(_, body)| drops_prepared(body)),
        _ => false,
    })
}

/// A batch of statements sent as one simple-query string, with where each migration statement starts.
pub(crate) struct Batch {
    /// The SQL text.
    pub sql: String,
    /// Character offset in `sql` of each migration statement.
    pub starts: Vec<usize>,
    /// How many commands (BEGIN, SET LOCAL) precede the first migration statement.
    pub leading: usize,
}

impl Batch {
    /// Turns a 1-based character position in the batch into one inside statement `index`.
    pub(crate) fn position_in(&self, index: usize, position: u32) -> Option<u32> {
        let start = *self.starts.get(index)?;
        let within = (position as usize).checked_sub(start)?;
        u32::try_from(within).ok().filter(|&w| w > 0)
    }
}

/// A transactional migration step: BEGIN; its statements; version update; journal row; COMMIT.
/// With `prepared`, the version update and the journal row execute [`prepare_bookkeeping`]'s
/// statements.
pub(crate) fn transactional_batch(
    m: &Migration,
    dir: Direction,
    from: Option<&str>,
    to: Option<&str>,
    host: &str,
    prepared: bool,
) -> Batch {
    let statements = statements(m, dir);
    let mut sql = String::with_capacity(256 + statements.iter().map(String::len).sum::<usize>());
    sql.push_str("BEGIN;\n");
    let mut leading = 1;
    if let Some(t) = m.own_lock_timeout() {
        sql.push_str(&set_ms(true, "lock_timeout", t));
        sql.push_str(";\n");
        leading += 1;
    }
    if let Some(t) = m.own_statement_timeout() {
        sql.push_str(&set_ms(true, "statement_timeout", t));
        sql.push_str(";\n");
        leading += 1;
    }
    let mut starts = Vec::with_capacity(statements.len());
    let mut chars = sql.chars().count();
    for s in statements {
        starts.push(chars);
        sql.push_str(s);
        sql.push_str(";\n");
        chars += s.chars().count() + 2;
    }
    let checksum = (dir == Direction::Up).then(|| m.checksum());
    match (prepared, from, to) {
        (true, Some(from), Some(to)) => {
            let _ = writeln!(
                sql,
                "EXECUTE {PREPARED_VERSION_UPDATE}({}, {});",
                lit(to),
                lit(from)
            );
        }
        _ => {
            sql.push_str(&version_update(from, to));
            sql.push_str(";\n");
        }
    }
    if prepared {
        let _ = writeln!(
            sql,
            "EXECUTE {PREPARED_JOURNAL}({}, {}, {});",
            lit(m.id()),
            lit(dir.as_str()),
            checksum.map_or("NULL".to_owned(), lit)
        );
    } else {
        sql.push_str(&journal_insert(
            m.id(),
            dir.as_str(),
            None,
            checksum,
            Elapsed::SinceTransactionStart,
            host,
        ));
        sql.push_str(";\n");
    }
    sql.push_str("COMMIT;");
    Batch {
        sql,
        starts,
        leading,
    }
}

/// The index a `CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] name ON ...` statement creates.
pub(crate) fn created_index_name(stmt: &str) -> Option<String> {
    let mut tokens = lexer::code_tokens(stmt).peekable();
    let mut skip = |keyword: &str| tokens.next_if(|t| t.is_keyword(keyword)).is_some();
    if !skip("CREATE") {
        return None;
    }
    skip("UNIQUE");
    if !skip("INDEX") {
        return None;
    }
    skip("CONCURRENTLY");
    if skip("IF") {
        skip("NOT");
        skip("EXISTS");
    }
    // The name, maybe schema-qualified: the last part before ON.
    let mut name = None;
    for t in tokens {
        match t.kind {
            Kind::Word if t.is_keyword("ON") => break,
            Kind::Word => name = Some(t.text.to_ascii_lowercase()),
            Kind::QuotedIdent => {
                let inner = t.text.strip_prefix('"').unwrap_or(t.text);
                let inner = inner.strip_suffix('"').unwrap_or(inner);
                name = Some(inner.replace("\"\"", "\""));
            }
            Kind::Punct if t.is_punct('.') => {}
            _ => return None,
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_locates_statements() {
        let m = Migration::new("0001_a").up("CREATE TABLE a (id bigint);\nSELECT nope");
        let b = transactional_batch(&m, Direction::Up, None, Some("0001_a"), "h", false);
        assert!(b.sql.starts_with(
            "BEGIN;\nCREATE TABLE a (id bigint);\nSELECT nope;\nINSERT INTO alembic_version"
        ));
        assert!(b.sql.ends_with("COMMIT;"));
        let pos = b.sql.find("nope").unwrap() as u32 + 1;
        assert_eq!(b.position_in(1, pos), Some(8));
        assert_eq!(b.position_in(0, 8), Some(1));
        assert_eq!(b.leading, 1);
    }

    #[test]
    fn index_names_are_found() {
        assert_eq!(
            created_index_name("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_a ON t (x)").as_deref(),
            Some("ix_a")
        );
        assert_eq!(
            created_index_name("-- c\ncreate unique index concurrently public.\"Ix\" on t (x)")
                .as_deref(),
            Some("Ix")
        );
        assert_eq!(created_index_name("CREATE INDEX ON t (x)"), None);
        assert_eq!(
            created_index_name("/* CREATE INDEX */ CREATE INDEX \"a\"\"b\" ON t (x)").as_deref(),
            Some("a\"b")
        );
        assert_eq!(created_index_name("ALTER TABLE t ADD x int"), None);
    }

    #[test]
    fn deallocation_is_found_in_code_bodies_and_dynamic_sql_only() {
        let may = |s: &str| may_deallocate(&[s.to_owned()]);
        assert!(may("DEALLOCATE ALL"));
        assert!(may("discard all"));
        assert!(may("DO $$ BEGIN EXECUTE 'DEALLOCATE ALL'; END $$"));
        assert!(may("DO $$ BEGIN EXECUTE E'DISCARD\\tPLANS'; END $$"));
        assert!(!may("ALTER TABLE t ADD COLUMN discarded_at timestamptz"));
        assert!(!may("-- no DISCARD here\nSELECT 1"));
    }

    #[test]
    fn version_updates() {
        assert_eq!(
            version_update(Some("0001_a"), None),
            "DELETE FROM alembic_version WHERE version_num = '0001_a'"
        );
        assert!(
            journal_insert(
                "0001_a",
                "step",
                Some(2),
                None,
                Elapsed::Measured(Duration::from_millis(5)),
                "o'h"
            )
            .contains("'o''h'")
        );
    }
}
