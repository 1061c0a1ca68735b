//! The pending check: whether a database is behind the set's head (`check` of the migration
//! binary, `cargo xtask check-if-migrations-to-run`). A database that cannot be read, or one at a
//! revision the set does not know (ahead of this code), is an error, never "not behind".

use std::time::Duration;

use crate::engine::describe;
use crate::{Error, Migrator};

/// The pending check failed: no answer either way.
#[derive(Debug, thiserror::Error)]
#[error("checking the migration state of {target}")]
pub struct PendingError {
    /// host:port/dbname of the database (never the password).
    pub target: String,
    /// Why.
    #[source]
    pub source: PendingFailure,
}

/// Why the pending check has no answer.
#[derive(Debug, thiserror::Error)]
pub enum PendingFailure {
    /// The database did not answer within the limit.
    #[error("no answer within {0:?}")]
    NoAnswer(Duration),
    /// Reading the migration state failed (unreachable, TLS, unknown revision...).
    #[error(transparent)]
    Migrate(#[from] Error),
}

/// Whether `migrator`'s database is behind its set's head; gives up after `limit` when given.
/// Takes no lock and creates nothing.
pub async fn migrations_pending(
    migrator: &Migrator,
    limit: Option<Duration>,
) -> Result<bool, PendingError> {
    let fail = |source: PendingFailure| PendingError {
        target: migrator
            .database("check for pending migrations")
            .map_or_else(|_| "no database".to_owned(), |d| describe(&d.pg)),
        source,
    };
    let status = match limit {
        Some(limit) => tokio::time::timeout(limit, migrator.status())
            .await
            .map_err(|_| fail(PendingFailure::NoAnswer(limit)))?,
        None => migrator.status().await,
    };
    let status = status.map_err(|e| fail(e.into()))?;
    Ok(!status.pending().is_empty())
}
