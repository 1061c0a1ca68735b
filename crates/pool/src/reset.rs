//! Reset on return: a connection goes back to the pool only idle, outside any transaction, with
//! nothing in flight (SQLAlchemy's `reset_on_return='rollback'`, made cancel-safe). The state
//! comes from the tap on the connection's byte stream, so a clean return costs a few atomic
//! loads and no round trip; only a dirty one pays for a reset, on a task of its own, while its
//! pool slot stays taken.

use std::time::Duration;

use deadpool::managed::Object;
use notify_db_connect::{ConnState, ResetReason, TxStatus};

use crate::conn::{Conn, Manager, must_close};

/// How long a request still in flight gets to finish by itself before it is cancelled: a
/// dropped `Transaction`'s ROLLBACK, the Close + Sync tokio-postgres sends when a statement
/// prepared from a `&str` is dropped, or a statement that was about to end. 50 ms was too
/// short on a loaded 2-core machine: harmless closes were cancelled and their connections
/// closed. The slot stays taken meanwhile, so the next holder never waits behind it.
const GRACE: Duration = Duration::from_millis(500);

/// Through a transaction pooler, how long a return inside a transaction with nothing in flight
/// waits for a request the driver still holds (a dropped `Transaction`'s ROLLBACK, queued in the
/// very poll the connection was dropped) to be written, before the pool sends its own ROLLBACK.
/// Sent back to back, PgBouncer 1.18 releases the server connection at the first one's
/// ReadyForQuery and drops the second one's answer, or hands it to the next client linked to
/// that server, whose requests and answers then no longer match.
const SETTLE: Duration = Duration::from_millis(100);

/// Called by `PooledConnection`'s `Drop`: returns a clean connection, closes one that must not
/// be reused, and resets the others on a spawned task (closing them when no runtime runs).
pub(crate) fn on_return(obj: Object<Manager>) {
    if let Some(reason) = must_close(&obj) {
        return discard(obj, reason, "");
    }
    if obj.state.is_clean() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(reset(obj));
        }
        Err(_) => discard(obj, ResetReason::Discard, "no tokio runtime to reset it on"),
    }
}

/// Closes the connection: `take` frees its pool slot, dropping it closes the socket.
fn discard(obj: Object<Manager>, reason: ResetReason, why: &str) {
    report(&obj, reason, why);
    drop(Object::take(obj));
}

fn report(conn: &Conn, reason: ResetReason, why: &str) {
    tracing::debug!(
        bind = conn.info.bind.as_str(),
        host = conn.info.host.as_str(),
        backend_pid = conn.info.backend_pid,
        reason = reason.as_str(),
        "returned connection {}{}{why}",
        if reason.discards() { "closed" } else { "reset" },
        if why.is_empty() { "" } else { ": " },
    );
    if let Some(o) = &conn.observer {
        o.reset(&conn.info, reason);
    }
}

async fn reset(obj: Object<Manager>) {
    let outcome = tokio::time::timeout(obj.reset_limit, clean(&obj)).await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no clean state within {:?}", obj.reset_limit)),
    };
    match outcome {
        Ok(reason) => match must_close(&obj) {
            Some(close) => discard(obj, close, ""),
            None if obj.state.is_clean() => report(&obj, reason, ""),
            None => discard(obj, ResetReason::Discard, "still busy after the reset"),
        },
        Err(why) => match must_close(&obj) {
            Some(close) => discard(obj, close, &why),
            None => discard(obj, ResetReason::Discard, &why),
        },
    }
}

/// Brings the connection back to idle: lets a request in flight finish within the grace, else
/// cancels it and waits for its answer; then rolls back an open or failed transaction.
async fn clean(conn: &Conn) -> Result<ResetReason, String> {
    let state = &conn.state;
    let mut reason = None;
    if state.pending() < 0 {
        return Err("the tap lost count of the requests in flight".into());
    }
    if conn.through_pooler && state.pending() == 0 && state.tx_status() != TxStatus::Idle {
        settle(state).await;
    }
    if state.pending() > 0 {
        if state.wait_answered(GRACE).await {
            reason = Some(ResetReason::Drained);
        } else {
            if conn.through_pooler && state.pending() > 1 {
                // PgBouncer 1.18 (Debian 12's; fixed upstream by pgbouncer/pgbouncer#927) exits
                // with FATAL "server in bad state: 11" when the server it is cancelling a
                // statement on answers a request queued behind that statement (tokio-postgres
                // queues a Close + Sync behind a COPY or a query from a `&str`). Closing the
                // connection is safe: PgBouncer then closes its server connection.
                return Err(
                    "a request is queued behind the running one: no CancelRequest through \
                     the pooler"
                        .into(),
                );
            }
            state.clear_canceled();
            conn.canceller.cancel().await?;
            if !state.wait_answered(conn.reset_limit).await {
                return Err("no answer to the cancelled request".into());
            }
            // A CancelRequest names the server process, not a statement: if nothing answered
            // 57014, the signal may still be on its way and would cancel the next holder's
            // statement.
            if !state.saw_canceled() {
                return Err("the request ended before the cancel reached it".into());
            }
            reason = Some(ResetReason::Cancel);
        }
    }
    match state.tx_status() {
        TxStatus::Idle => {}
        TxStatus::InTransaction | TxStatus::Failed => {
            conn.client
                .batch_execute("ROLLBACK")
                .await
                .map_err(|e| format!("ROLLBACK failed: {}", notify_db_connect::error_text(&e)))?;
            // The reason reported is the strongest step taken: cancel, rollback, drained.
            if reason != Some(ResetReason::Cancel) {
                reason = Some(ResetReason::Rollback);
            }
        }
        TxStatus::Unknown => return Err("no transaction status seen".into()),
    }
    // A request queued after the ROLLBACK (a dropped Transaction's own) may still be in flight.
    if !state.wait_answered(conn.reset_limit).await {
        return Err("requests still in flight after the reset".into());
    }
    Ok(reason.unwrap_or(ResetReason::Drained))
}

/// Waits up to [`SETTLE`] for one more request to be written.
async fn settle(state: &ConnState) {
    let written = state.written();
    let deadline = tokio::time::Instant::now() + SETTLE;
    while state.written() == written && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
