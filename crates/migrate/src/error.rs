//! Errors of the migration engine.

use std::time::Duration;

/// A migration set that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    /// An id that is not a revision id we accept (letters, digits, `_`, `-`; not a keyword).
    #[error(
        "migration id {id:?} is not a usable revision id (1 to 32 ASCII letters, digits, _ and -, \
         starting with a letter or digit, not head/heads/base)"
    )]
    BadId {
        /// The id.
        id: String,
    },
    /// A parent link that is not a usable revision id.
    #[error("migration {id}: parent {parent:?} is not a usable revision id")]
    BadParent {
        /// The migration id.
        id: String,
        /// The declared parent.
        parent: String,
    },
    /// Two migrations with the same id.
    #[error("two migrations have the id {id}")]
    DuplicateId {
        /// The id.
        id: String,
    },
    /// A migration whose place in the history is unknown: no parent link and no 4-digit number.
    #[error(
        "migration {id} has no parent link and no 4-digit number to order it by: declare its parent \
         (`-- notify-db: parent=ID` in a .sql file, `.parent(\"ID\")` in a .rs file)"
    )]
    NoOrder {
        /// The id.
        id: String,
    },
    /// A parent link to a revision the set does not have.
    #[error("migration {id} follows {parent}, which is not in the set")]
    UnknownParent {
        /// The migration id.
        id: String,
        /// The declared parent.
        parent: String,
    },
    /// Two migrations follow the same revision (or both start the history): two heads.
    #[error(
        "migrations {first} and {second} both follow {parent}: a branch, which would make two \
         heads; re-parent one of them onto the other (merges are not supported)"
    )]
    Branch {
        /// The shared parent (`base` when both start the history).
        parent: String,
        /// One child.
        first: String,
        /// The other.
        second: String,
    },
    /// Parent links that loop.
    #[error("parent links loop through {ids}")]
    Cycle {
        /// The ids in the loop (comma separated).
        ids: String,
    },
    /// A baseline that declares a parent, or a second baseline.
    #[error(
        "migration {id} is marked baseline but {reason}: a set has at most one baseline, its first migration"
    )]
    MisplacedBaseline {
        /// The migration id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// An id longer than `alembic_version.version_num` (32 characters) holds.
    #[error("migration id {id:?} is longer than 32 characters (alembic_version.version_num)")]
    IdTooLong {
        /// The id.
        id: String,
    },
    /// Two migrations with the same number (two branches both added migration N).
    #[error(
        "duplicate migration number {number:04}: {first} and {second} (renumber one of them, or \
         order them with parent links)"
    )]
    DuplicateNumber {
        /// The number.
        number: u32,
        /// One id.
        first: String,
        /// The other.
        second: String,
    },
    /// A down file without its up file: the up is what makes a migration (an empty up file is
    /// a valid migration that only moves `alembic_version`, as an Alembic revision whose
    /// `upgrade()` does nothing).
    #[error(
        "migration {id}: {path} has no {id}.up.sql beside it (add the up file, empty if the \
         revision changes nothing, or remove the down file)"
    )]
    MissingUp {
        /// The id.
        id: String,
        /// The down file found.
        path: String,
    },
    /// A transactional migration with a statement that controls the transaction itself.
    #[error(
        "migration {id}: {direction} statement {index} `{statement}` is transaction control \
         ({command}), but the runner wraps this migration in ONE transaction with its version \
         update, which it would break (part of the migration committed, alembic_version not \
         moved). Remove the statement \
         (the runner commits the migration), or mark the migration no-transaction \
         (`-- notify-db: no-transaction` as the first line of a .sql file, `.no_transaction()` in \
         a .rs one) if it must manage its own transactions. SAVEPOINT, RELEASE and ROLLBACK TO \
         are allowed"
    )]
    TransactionControl {
        /// The migration id.
        id: String,
        /// `upgrade` or `downgrade`.
        direction: &'static str,
        /// 1-based position of the statement in that direction.
        index: usize,
        /// The statement (on one line, shortened).
        statement: String,
        /// The command it is (`COMMIT`, `BEGIN`, ...).
        command: &'static str,
    },
    /// An unknown `-- notify-db:` option in a SQL migration file.
    #[error("migration {id}: unknown or malformed option {option:?}")]
    BadOption {
        /// The id.
        id: String,
        /// The option text.
        option: String,
    },
}

/// What the engine can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The migration set is invalid.
    #[error(transparent)]
    Set(#[from] SetError),
    /// The URI's TLS settings (`sslmode`, `sslrootcert`) cannot be used.
    #[error(transparent)]
    Tls(#[from] notify_db_connect::TlsError),
    /// A [`crate::Migrator::offline`] runner was asked to do something that needs a database.
    #[error(
        "cannot {operation}: this migration runner was built without a database URI \
         (Migrator::offline renders SQL only)"
    )]
    Offline {
        /// What it was asked to do.
        operation: &'static str,
    },
    /// Connecting failed (the message never contains the password).
    #[error("connecting to {target}: {source}")]
    Connect {
        /// host:port/dbname.
        target: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Connecting took longer than the engine waits (30 s).
    #[error("connecting to {target}: timed out after {waited:?}")]
    ConnectTimeout {
        /// host:port/dbname.
        target: String,
        /// How long it waited.
        waited: Duration,
    },
    /// The server answered a query of the engine's own without the row it must return.
    #[error("{context}: the server returned no row")]
    NoRow {
        /// What the engine was doing.
        context: &'static str,
    },
    /// The server is older than PostgreSQL 15.
    #[error("{target} runs PostgreSQL {version}; notify-db needs 15 or later")]
    ServerTooOld {
        /// host:port/dbname.
        target: String,
        /// `server_version`.
        version: String,
    },
    /// A database query of the engine's own (not a migration's) failed.
    #[error("{context}: {source}")]
    Db {
        /// What the engine was doing.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A migration statement failed (not a lock timeout).
    #[error(transparent)]
    Migration(Box<StatementFailure>),
    /// Lock timeouts (55P03) on every attempt.
    #[error(
        "migration {id} could not get its locks within lock_timeout after {attempts} attempts; \
         last blockers: {blockers}"
    )]
    LockTimeout {
        /// The migration id.
        id: String,
        /// How many attempts were made.
        attempts: u32,
        /// The sessions that blocked the last attempt.
        blockers: String,
    },
    /// Another runner held the advisory lock for longer than the configured wait.
    #[error("another migration runner held the advisory lock for more than {waited:?}: {holders}")]
    AdvisoryLockWait {
        /// The configured wait.
        waited: Duration,
        /// Who held it.
        holders: String,
    },
    /// The session moved to another server process between two statements: a transaction
    /// pooler is between the runner and the server, and the session-level advisory lock would
    /// stay with a pooled server connection.
    #[error(
        "the migration session moved from server process {locked_pid} (which took the advisory \
         lock) to {now_pid}: a transaction pooler (e.g. PgBouncer pool_mode = transaction) is \
         between the runner and the server, and migrations need one session for the whole run; \
         point DATABASE_MIGRATION_URI (or --database-url) at the primary itself, bypassing the \
         pooler.{}{}",
        if ended.is_empty() { String::new() } else {
            format!(" The orphaned lock holder(s) {ended:?} were ended (pg_terminate_backend) or released.")
        },
        if left.is_empty() { String::new() } else {
            format!(" Could not end lock holder(s) {left:?}: as a superuser, run \
                     SELECT pg_terminate_backend(<pid>) for each (or RECONNECT the database in \
                     PgBouncer's admin console)")
        }
    )]
    SessionMoved {
        /// The server process that took the lock.
        locked_pid: i32,
        /// The server process the session ran on afterwards.
        now_pid: i32,
        /// Orphaned holders that were ended.
        ended: Vec<i32>,
        /// Orphaned holders that could not be ended.
        left: Vec<i32>,
    },
    /// The database is at a revision this build does not know.
    #[error(
        "the database is at revision {current}, which this code does not know{}",
        if *ahead { " (database is ahead of this code: deploy the newer code, or downgrade with it)" } else { "" }
    )]
    UnknownRevision {
        /// What `alembic_version` holds.
        current: String,
        /// True when its number is above this set's head.
        ahead: bool,
    },
    /// The database is at a revision before this set's baseline, or of another history.
    #[error(
        "the database is at revision {current}, which this code does not know: the migration set \
         continues from the baseline {baseline}{}. Finish upgrading this database to {baseline} with \
         Alembic (the code that knows {current}) first, or import the history from {current} to \
         {baseline} into the set; then run again",
        if *older { ", and the database is older than that" } else { "" }
    )]
    BeforeBaseline {
        /// What `alembic_version` holds.
        current: String,
        /// The set's baseline revision.
        baseline: String,
        /// True when the revision's number is below the baseline's.
        older: bool,
    },
    /// An applied migration's SQL changed since it ran.
    #[error(
        "migration {id} was applied with checksum {recorded} but its SQL now has checksum {actual}; \
         restore the file or allow changed checksums explicitly"
    )]
    ChecksumChanged {
        /// The migration id.
        id: String,
        /// Checksum in the journal.
        recorded: String,
        /// Checksum of the code.
        actual: String,
    },
    /// A downgrade planned with a set loaded without its down files.
    #[error(
        "cannot downgrade with a migration set loaded without its down files \
         (MigrationSet::from_dir_without_downs); load it with MigrationSet::from_dir"
    )]
    DownsNotRead,
    /// A downgrade through a migration that has no `down`.
    #[error("migration {id} has no down: cannot downgrade through it")]
    NoDown {
        /// The migration id.
        id: String,
    },
    /// A target that does not exist or points the wrong way.
    #[error("unknown or unusable target {target:?}: {reason}")]
    UnknownTarget {
        /// The target as given.
        target: String,
        /// Why.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server warned about the transaction state while a migration ran (SQLSTATE class 25,
    /// e.g. "there is no transaction in progress"): the migration controls transactions itself.
    #[error(
        "migration {id}: the server said {severity}: {message} [SQLSTATE {code}]{}; the migration \
         ends or starts transactions itself (COMMIT, BEGIN, ROLLBACK, or SET LOCAL outside a \
         transaction block). Remove that statement, or move it to a migration of its own; check \
         the schema against alembic_version before running again",
        if statement.is_empty() { String::new() } else { format!(" running `{statement}`") }
    )]
    TransactionState {
        /// The migration id.
        id: String,
        /// The statement that caused it, when the runner can tell (empty otherwise).
        statement: String,
        /// WARNING or NOTICE.
        severity: String,
        /// The server's message.
        message: String,
        /// SQLSTATE.
        code: String,
    },
    /// An INVALID index left by a failed `CREATE INDEX CONCURRENTLY` this migration did not create.
    #[error(
        "INVALID index {index} exists; drop it (DROP INDEX CONCURRENTLY) or rebuild it before migrating"
    )]
    InvalidIndex {
        /// Schema-qualified index name.
        index: String,
    },
}

impl Error {
    /// The SQLSTATE of a server error behind this error, if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Migration(f) => Some(&f.code),
            Error::LockTimeout { .. } => Some("55P03"),
            Error::Db { source, .. } | Error::Connect { source, .. } => {
                source.code().map(|c| c.code())
            }
            _ => None,
        }
    }
}

/// A migration statement the server refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "migration {id} failed{}: {message} [SQLSTATE {code}]\n  statement: {statement}{}",
    position.map(|p| format!(" at character {p} of its statement")).unwrap_or_default(),
    detail.as_deref().map(|d| format!("\n  detail: {d}")).unwrap_or_default()
)]
pub struct StatementFailure {
    /// The migration id.
    pub id: String,
    /// The statement that failed (the whole batch when the server did not say which).
    pub statement: String,
    /// The server's message.
    pub message: String,
    /// SQLSTATE.
    pub code: String,
    /// 1-based character position inside `statement`, when the server gave one.
    pub position: Option<u32>,
    /// The server's detail line.
    pub detail: Option<String>,
}

/// An error and its causes on one line, `a: b: c`, leaving out a cause whose text the line
/// already holds (messages written `{what}: {source}` name their cause themselves).
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string().replace('\n', " ");
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        next = err.source();
    }
    out
}

#[cfg(test)]
mod one_line_tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Plain(#[source] std::io::Error);

    #[test]
    fn causes_are_joined_once() {
        let io = || std::io::Error::other("inner\ncause");
        assert_eq!(one_line(&Plain(io())), "outer: inner cause");
        assert_eq!(
            one_line(&Repeats(io())),
            "outer: inner cause",
            "a cause the message already names is not repeated"
        );
    }
}
