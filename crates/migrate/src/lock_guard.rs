//! The migration advisory lock never outlives a run, also through a transaction pooler.
//!
//! The lock is session-level: it stays with the server process that took it. Directly, closing
//! the connection releases it. Through a transaction pooler (PgBouncer `pool_mode =
//! transaction`) each statement may run on another server process, and closing our client
//! connection closes nothing on the server: the lock would stay held by an idle pooled server
//! connection, and Alembic (or the next run) would wait for it forever.
//!
//! So the runner (1) refuses a primary URI marked as pooled, naming the direct migration URI
//! variable (`notify_db_config::Settings::migration_uri`), and, for a pooler nobody told us
//! about, (2) checks right after taking the lock that its own server process holds it, and
//! (3) releases it explicitly at the end of every run. When (2) or (3) finds that the session
//! moved to another server process, the run stops with [`Error::SessionMoved`], after ending the
//! orphaned holder (`pg_terminate_backend`, allowed for one's own role) or naming its pid.

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::error::Error;
use crate::render::queries;

/// One session holding the migration advisory lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// Server process id.
    pub pid: i32,
    /// Its `application_name` (a PgBouncer server connection carries its last client's).
    pub application_name: String,
    /// `pg_stat_activity.state`: `active`, `idle`, `idle in transaction`, ...
    pub state: String,
    /// When it entered that state (`state_change`, ISO 8601 UTC).
    pub since: String,
    /// When its connection started (`backend_start`).
    pub backend_start: String,
    /// The start of its last statement.
    pub query: String,
}

/// Every session holding the migration advisory lock of the current database (advisory locks
/// are per database; Alembic's id, so Alembic runs show too).
pub async fn lock_holders(client: &Client) -> Result<Vec<LockHolder>, tokio_postgres::Error> {
    let msgs = client.simple_query(&queries::lock_holders()).await?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(LockHolder {
                pid: r.get(0).and_then(|p| p.parse().ok()).unwrap_or(0),
                application_name: r.get(1).unwrap_or("").to_owned(),
                state: r.get(2).unwrap_or("").to_owned(),
                since: r.get(3).unwrap_or("").to_owned(),
                backend_start: r.get(4).unwrap_or("").to_owned(),
                query: r.get(5).unwrap_or("").replace('\n', " "),
            }),
            _ => None,
        })
        .collect())
}

/// The current server process id, and whether it holds the lock; one statement.
async fn own_state(client: &Client, release: bool) -> Result<(i32, bool), Error> {
    let sql = queries::own_lock_state(release);
    let context = if release {
        "releasing the advisory lock"
    } else {
        "checking that this session holds the advisory lock"
    };
    let msgs = client
        .simple_query(&sql)
        .await
        .map_err(|source| Error::Db { context, source })?;
    msgs.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((
                r.get(0).and_then(|p| p.parse().ok()).unwrap_or(0),
                r.get(1) == Some("t"),
            )),
            _ => None,
        })
        .ok_or(Error::NoRow { context })
}

/// Right after the lock was taken: this session's server process must hold it. Returns that
/// process id; on a move, ends the orphaned holder and fails.
pub(crate) async fn confirm(client: &Client, locked_pid: i32) -> Result<i32, Error> {
    let (pid, held) = own_state(client, false).await?;
    if held {
        return Ok(pid);
    }
    Err(moved(client, locked_pid, pid).await)
}

/// At the end of a run: releases the lock explicitly (closing our connection may close nothing
/// on the server). A move found here ends the orphaned holder and fails.
pub(crate) async fn release(client: &Client, locked_pid: i32) -> Result<(), Error> {
    let (pid, released) = own_state(client, true).await?;
    if released {
        return Ok(());
    }
    Err(moved(client, locked_pid, pid).await)
}

/// Ends (or, when landing on one, unlocks) the idle sessions of our application that still hold the lock (the orphans a pooler
/// left), and builds the error naming what was and was not ended.
async fn moved(client: &Client, locked_pid: i32, now_pid: i32) -> Error {
    let mut ended = Vec::new();
    let mut left = Vec::new();
    let app = client
        .simple_query(queries::APPLICATION_NAME)
        .await
        .ok()
        .and_then(|msgs| {
            msgs.iter().find_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
        })
        .unwrap_or_default();
    let holders = lock_holders(client).await.unwrap_or_default();
    for h in holders {
        // Only our own orphans: an active or foreign holder may be a real concurrent run.
        let ours = h.pid == locked_pid || (h.application_name == app && h.state == "idle");
        if !ours {
            continue;
        }
        // Through the pooler this statement may land on the holder itself: then unlock there.
        let sql = queries::end_orphan(h.pid);
        match client.simple_query(&sql).await {
            Ok(msgs)
                if msgs
                    .iter()
                    .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("t"))) =>
            {
                ended.push(h.pid)
            }
            _ => left.push(h.pid),
        }
    }
    tracing::error!(
        locked_pid,
        now_pid,
        ended = ?ended,
        left = ?left,
        "the migration session moved to another server process: a transaction pooler is in between"
    );
    Error::SessionMoved {
        locked_pid,
        now_pid,
        ended,
        left,
    }
}
