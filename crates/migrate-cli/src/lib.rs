//! The notify-db migration tools, built on the engine (`notify-db-migrate`): the command line
//! ([`cli`]: `upgrade`, `downgrade`, `current`, `history`, `revision`, `check`, `check-head`,
//! `stamp`, `lint`, `test-downgrade`, `doctor`, `drift`, `import-alembic-sql`) that a service's
//! own binary embeds, the linter ([`lint`]), the pre-flight checks ([`doctor`]), the stairway test
//! ([`stairway`]), schema capture and comparison ([`schema`]), `revision --autogenerate`
//! ([`autogen`]), schema drift against the set ([`drift`]), the migrations a git change touched
//! ([`changed`]), Alembic's offline SQL read back into migrations ([`alembic_sql`], for
//! `import-alembic-sql`), and the `notify-db-migrate` binary over a directory of `.sql` migrations.
//!
//! A service that only runs its migrations at start-up depends on `notify-db-migrate` alone.

#![deny(missing_docs)]

pub mod alembic_sql;
pub mod autogen;
pub mod changed;
pub mod cli;
pub mod doctor;
pub mod drift;
pub mod lint;
mod rust_file;
pub mod schema;
pub mod stairway;

/// How a project's migration files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `NNNN_slug.rs` with a `define(m: Migration) -> Migration` function (a build script registers them).
    Rust,
    /// `NNNN_slug.up.sql` and `NNNN_slug.down.sql`.
    Sql,
}
