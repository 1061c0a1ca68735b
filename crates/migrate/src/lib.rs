//! Alembic-compatible PostgreSQL migration engine for notify-db.
//!
//! - Revision ids are file stems (`0007_add_jobs_index`), kept in Alembic's
//!   `alembic_version(version_num varchar(32) primary key)`, so a database the Python service
//!   migrated is adopted as it is; a journal (`notify_db_migration_journal`) records the checksum,
//!   time, duration and runner of every migration.
//! - Runners exclude each other (and Alembic) with the session advisory lock
//!   [`ADVISORY_LOCK_ID`], taken by polling `pg_try_advisory_lock`.
//! - Every migration runs with `lock_timeout` (1 s unless it asks for more) and no
//!   `statement_timeout` unless the migration or the runner sets one (as Alembic's runner);
//!   lock timeouts (55P03) are retried, resuming at the failed migration.
//! - A transactional migration is ONE simple-query round trip: `BEGIN; ...; version update;
//!   journal row; COMMIT` (those two are `EXECUTE`s of statements prepared once per run). A
//!   non-transactional one runs statement by statement, journaling each, so a rerun resumes
//!   after the last completed statement.
//! - [`pending`] answers whether a database has migrations to run (a service's
//!   `check-if-migrations-to-run`).
//!
//! This crate is the engine alone, for a service that runs its migrations at start-up. The
//! command line, the linter, the stairway test, `doctor` and `revision --autogenerate` are in
//! `notify-db-migrate-cli`.
//!
//! ```no_run
//! # async fn f(uri: notify_db_config::DatabaseUri) -> Result<(), notify_db_migrate::Error> {
//! use notify_db_migrate::{Migration, MigrationSet, Migrator, Target};
//! let set = MigrationSet::new(vec![
//!     Migration::new("0001_create_t").up("CREATE TABLE t (id bigint PRIMARY KEY)").down("DROP TABLE t"),
//! ])?;
//! // Connects as the URI says, TLS per its `sslmode` included.
//! Migrator::new(set, &uri)?.upgrade(&Target::Head).await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod engine;
mod error;
pub mod lexer;
mod lock_guard;
mod migration;
mod options;
mod order;
pub mod pending;
mod render;
mod set;
mod sql_dir;
mod sql_pack;
mod txcontrol;

pub use engine::{Applied, HistoryEntry, Migrator, Prefetch, RunReport, StampReport, Status};
pub use error::{Error, SetError, StatementFailure, one_line};
pub use lock_guard::{LockHolder, lock_holders};
pub use migration::{Direction, MAX_ID_LEN, Migration};
pub use options::Options;
pub use render::queries::ADVISORY_LOCK_ID;
pub use set::{MigrationSet, Target};
pub use sql_pack::{PACK_ENV, PACK_FILE};
pub use txcontrol::transaction_control;

/// Name of the journal table the engine keeps next to `alembic_version`.
pub const JOURNAL_TABLE: &str = render::JOURNAL_TABLE;

/// Name of Alembic's version table (`alembic_version`).
pub const VERSION_TABLE: &str = render::VERSION_TABLE;
