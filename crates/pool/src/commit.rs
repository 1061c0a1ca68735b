//! Commits whose outcome is unknown: when the connection fails after COMMIT was sent and before
//! its answer, the transaction may or may not have committed. [`Transaction::commit`] and
//! [`PooledConnection::execute_autocommit`] say so with [`PoolError::CommitOutcomeUnknown`]
//! instead of an ordinary error, so that the caller checks before retrying a write.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use notify_db_connect::{ConnInfo, ConnState};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, ToStatement};

use crate::error::PoolError;
use crate::pool::PooledConnection;

/// A transaction on a pooled connection: a `tokio_postgres::Transaction` (it derefs to one)
/// whose [`commit`](Transaction::commit) tells a failed commit from one whose outcome is
/// unknown. Dropped without commit, it rolls back (and the pool resets the connection).
pub struct Transaction<'a> {
    inner: tokio_postgres::Transaction<'a>,
    state: &'a ConnState,
    info: &'a ConnInfo,
}

impl<'a> Transaction<'a> {
    /// Commits. An error the server answered (e.g. a deferred constraint) means nothing was
    /// committed; [`PoolError::CommitOutcomeUnknown`] means COMMIT left and no answer came.
    pub async fn commit(self) -> Result<(), PoolError> {
        let before = self.state.written();
        let (state, info) = (self.state, self.info);
        self.inner
            .commit()
            .await
            .map_err(|e| outcome_error(state, info, before, e))
    }

    /// Rolls back (as dropping it does, but waiting for the answer).
    pub async fn rollback(self) -> Result<(), PoolError> {
        let bind = self.info.bind;
        self.inner.rollback().await.map_err(|e| PoolError::Query {
            bind,
            source: Arc::new(e),
        })
    }
}

impl<'a> Deref for Transaction<'a> {
    type Target = tokio_postgres::Transaction<'a>;

    fn deref(&self) -> &tokio_postgres::Transaction<'a> {
        &self.inner
    }
}

impl<'a> DerefMut for Transaction<'a> {
    fn deref_mut(&mut self) -> &mut tokio_postgres::Transaction<'a> {
        &mut self.inner
    }
}

impl PooledConnection {
    /// Begins a transaction (see [`Transaction`]).
    pub async fn transaction(&mut self) -> Result<Transaction<'_>, PoolError> {
        let conn = self.conn_mut();
        let bind = conn.info.bind;
        let inner = conn
            .client
            .transaction()
            .await
            .map_err(|e| PoolError::Query {
                bind,
                source: Arc::new(e),
            })?;
        Ok(Transaction {
            inner,
            state: &conn.state,
            info: &conn.info,
        })
    }

    /// Runs one statement in its own implicit transaction and returns the rows it affected;
    /// [`PoolError::CommitOutcomeUnknown`] when the connection failed after the statement was
    /// sent and before its answer (it may have committed). Conservative: with a `&str`, the
    /// statement's preparation is a request too.
    pub async fn execute_autocommit<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, PoolError>
    where
        T: ?Sized + ToStatement,
    {
        let conn = self.conn();
        let before = conn.state.written();
        conn.client
            .execute(statement, params)
            .await
            .map_err(|e| outcome_error(&conn.state, &conn.info, before, e))
    }
}

/// Whether the server answered `e` itself, so that the statement's fate is known (it failed).
/// A FATAL or a shutdown arriving mid-commit does not say whether the commit record was
/// written first.
fn answered(e: &Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        let code = db.code();
        !matches!(db.severity(), "FATAL" | "PANIC")
            && *code != SqlState::ADMIN_SHUTDOWN
            && *code != SqlState::CRASH_SHUTDOWN
            && !code.code().starts_with("08")
    })
}

fn outcome_error(state: &ConnState, info: &ConnInfo, before: u64, e: Error) -> PoolError {
    if answered(&e) || state.written() == before {
        // The server answered, or nothing reached the socket: not committed.
        return PoolError::Query {
            bind: info.bind,
            source: Arc::new(e),
        };
    }
    state.mark_broken();
    PoolError::CommitOutcomeUnknown {
        bind: info.bind,
        host: info.host.clone(),
        port: info.port,
        backend_pid: info.backend_pid,
        cause: notify_db_connect::error_text(&e),
    }
}
