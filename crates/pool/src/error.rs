//! The pool's own errors; a failed connect is the connect path's [`ConnectError`], wrapped.

use std::time::Duration;

use notify_db_connect::{Bind, ConnectError};

/// Everything that can go wrong getting a connection from a pool or using it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// Every connection stayed checked out for the whole wait timeout.
    #[error(
        "pool exhausted: all {size} connections of the {bind} pool stayed checked out for \
         {timeout:?} ({waiting} callers waiting); check for slow queries or long transactions \
         holding connections, connections held across slow non-database work, and \
         SQLALCHEMY_POOL_SIZE"
    )]
    Exhausted {
        /// The pool.
        bind: Bind,
        /// Its maximum size.
        size: usize,
        /// How many `get()` calls were waiting when this one gave up.
        waiting: usize,
        /// The wait timeout that ran out.
        timeout: Duration,
    },
    /// A named prepared statement was asked for on a connection through a transaction pooler,
    /// where it would not outlive the transaction.
    #[error(
        "{bind} pool goes through a transaction pooler ({flag}=true): prepare_cached is refused, \
         because a named prepared statement stays on one server connection while the next \
         transaction may run on another (`prepared statement ... does not exist`); use \
         query_typed / execute_typed (unnamed, one round trip)"
    )]
    NamedStatementThroughPooler {
        /// The pool.
        bind: Bind,
        /// The setting that says the URI goes through a pooler.
        flag: &'static str,
    },
    /// A statement the pool sent on behalf of the caller failed.
    #[error("{bind} pool: {source}")]
    Query {
        /// The pool.
        bind: Bind,
        /// The server's or the client's error.
        #[source]
        source: std::sync::Arc<tokio_postgres::Error>,
    },
    /// The connection failed after COMMIT (or a single autocommit statement) was sent and
    /// before the server answered: the transaction may or may not have committed. The
    /// connection is discarded.
    #[error(
        "{bind} pool: the connection to {host}:{port} (backend pid {backend_pid}) failed after \
         COMMIT was sent and before the server answered ({cause}): the transaction may or may \
         not have committed; check whether its writes are there before retrying"
    )]
    CommitOutcomeUnknown {
        /// The pool.
        bind: Bind,
        /// The host the connection went to.
        host: String,
        /// Its port.
        port: u16,
        /// The server process that ran the transaction (`pg_backend_pid()`).
        backend_pid: i32,
        /// How the connection failed.
        cause: String,
    },
    /// Opening a new connection failed (the connect path's own error, its text unchanged).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The pool was closed with [`crate::Pool::close`].
    #[error("the {bind} pool is closed")]
    Closed {
        /// The pool.
        bind: Bind,
    },
}

impl PoolError {
    /// The bind this error is about, when it is about one.
    pub fn bind(&self) -> Option<Bind> {
        match self {
            PoolError::Exhausted { bind, .. }
            | PoolError::NamedStatementThroughPooler { bind, .. }
            | PoolError::Query { bind, .. }
            | PoolError::CommitOutcomeUnknown { bind, .. }
            | PoolError::Closed { bind } => Some(*bind),
            PoolError::Connect(e) => e.bind(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_to_check() {
        let exhausted = PoolError::Exhausted {
            bind: Bind::Bulk,
            size: 5,
            waiting: 3,
            timeout: Duration::from_secs(30),
        };
        let text = exhausted.to_string();
        assert!(
            text.contains("pool exhausted")
                && text.contains("bulk")
                && text.contains("all 5 connections")
                && text.contains("3 callers waiting")
                && text.contains("30s"),
            "{text}"
        );
        assert_eq!(exhausted.bind(), Some(Bind::Bulk));
        let old = ConnectError::ServerTooOld {
            host: "db1".into(),
            port: 5433,
            version: "14.9".into(),
        };
        let wrapped = PoolError::from(old.clone());
        assert_eq!(
            wrapped.to_string(),
            old.to_string(),
            "the connect text, unchanged"
        );
        assert_eq!(wrapped.bind(), None);
    }
}
