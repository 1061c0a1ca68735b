//! One physical connection of a pool ([`Conn`]) and the deadpool `Manager` that creates and
//! recycles them: max lifetime and the idle ping in the recycle step, and the state that makes
//! a connection unfit for reuse ([`must_close`]). The pool (`pool.rs`), the reset on return
//! (`reset.rs`) and the checkout wrapper build on these; this file uses none of them.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use notify_db_connect::{
    Bind, Canceller, ConnInfo, ConnState, Connector, LagRouting, PoolObserver, ResetReason, Route,
};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Statement};

use crate::error::PoolError;
use crate::holds::{HoldSlot, Holds};

/// One physical connection in a pool. Dropping it closes it and tells the observer.
pub(crate) struct Conn {
    pub(crate) client: Client,
    pub(crate) task: JoinHandle<()>,
    pub(crate) info: ConnInfo,
    pub(crate) expires_at: Instant,
    pub(crate) observer: Option<Arc<dyn PoolObserver>>,
    /// What the tap on the byte stream knows (requests in flight, transaction status).
    pub(crate) state: Arc<ConnState>,
    /// The CancelRequest for this connection (same address, same TLS).
    pub(crate) canceller: Canceller,
    /// How long a reset on return may take before the connection is closed instead.
    pub(crate) reset_limit: Duration,
    /// The connection goes through a transaction pooler: no named statements.
    pub(crate) through_pooler: bool,
    /// Where it was opened, and the lag state that may retire it (bulk with a lag limit).
    pub(crate) route: Route,
    pub(crate) lag: Option<Arc<LagRouting>>,
    /// Statements prepared on this connection by [`PooledConnection::prepare_cached`].
    pub(crate) statements: Mutex<HashMap<Box<str>, Statement>>,
    /// When it was checked out, for the long-hold gauge and warning (`holds.rs`).
    pub(crate) hold: Arc<HoldSlot>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(o) = &self.observer {
            o.closed(&self.info);
        }
        tracing::debug!(
            bind = self.info.bind.as_str(),
            host = self.info.host.as_str(),
            backend_pid = self.info.backend_pid,
            "connection closed"
        );
    }
}

/// Creates and recycles [`Conn`]s.
pub(crate) struct Manager {
    pub(crate) connector: Connector,
    pub(crate) through_pooler: bool,
    pub(crate) max_lifetime: Duration,
    /// Ping a connection not checked out for this long before handing it out.
    pub(crate) ping_idle_after: Duration,
    /// How long that ping may take (and a reset on return).
    pub(crate) ping_timeout: Duration,
    /// The checkout slots of this pool's connections.
    pub(crate) holds: Arc<Holds>,
}

impl managed::Manager for Manager {
    /// Boxed: deadpool moves its objects on every checkout; a pointer is cheaper to move.
    type Type = Box<Conn>;
    type Error = PoolError;

    async fn create(&self) -> Result<Box<Conn>, PoolError> {
        // Boxed: the connect future is kilobytes, and deadpool's `get()` future (moved on every
        // checkout) would otherwise embed it.
        let opened = Box::pin(self.connector.open()).await?;
        let created = Instant::now();
        let observer = self.connector.observer.clone();
        if let Some(o) = &observer {
            o.connected(&opened.info);
        }
        let hold = self.holds.register(&opened.info);
        Ok(Box::new(Conn {
            expires_at: created + self.max_lifetime - jitter(self.max_lifetime, opened.info.id),
            client: opened.client,
            task: opened.task,
            info: opened.info,
            observer,
            through_pooler: self.through_pooler,
            route: opened.route,
            lag: self.connector.lag.clone(),
            statements: Mutex::new(HashMap::new()),
            state: opened.state,
            canceller: opened.canceller,
            reset_limit: self.ping_timeout,
            hold,
        }))
    }

    /// A closed connection or one past its lifetime is discarded (and a new one made); one not
    /// checked out for `ping_idle_after` must answer an empty query within `ping_timeout` first
    /// (a server that vanished without closing the socket looks open). A connection in steady
    /// use costs no round trip. Session settings are never reset.
    async fn recycle(&self, conn: &mut Box<Conn>, metrics: &Metrics) -> RecycleResult<PoolError> {
        if conn.client.is_closed() {
            return Err(RecycleError::Message("connection closed".into()));
        }
        if Instant::now() >= conn.expires_at {
            return Err(RecycleError::Message("max lifetime reached".into()));
        }
        // The return checked this too; a request the last holder queued in the same poll in
        // which it dropped the connection is only written (and seen) after that.
        if !conn.state.is_clean() || must_close(conn).is_some() {
            return Err(RecycleError::Message(
                "not idle when handed out again".into(),
            ));
        }
        if let Some(why) = conn.lag.as_ref().and_then(|l| l.should_retire(conn.route)) {
            tracing::debug!(
                host = conn.info.host.as_str(),
                backend_pid = conn.info.backend_pid,
                "bulk connection retired: {why}"
            );
            return Err(RecycleError::Message(why.into()));
        }
        if metrics.last_used() >= self.ping_idle_after {
            let why =
                match tokio::time::timeout(self.ping_timeout, conn.client.simple_query("")).await {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(e)) => format!("ping failed: {e}"),
                    Err(_) => format!("no answer to a ping within {:?}", self.ping_timeout),
                };
            tracing::warn!(
                bind = conn.info.bind.as_str(),
                host = conn.info.host.as_str(),
                backend_pid = conn.info.backend_pid,
                idle = ?metrics.last_used(),
                "idle connection replaced: {why}"
            );
            return Err(RecycleError::Message(why.into()));
        }
        Ok(())
    }
}

/// Up to a tenth of the lifetime (at most 30 s), so connections made together expire apart.
fn jitter(lifetime: Duration, id: u64) -> Duration {
    let max = (lifetime / 10).min(Duration::from_secs(30)).as_nanos() as u64;
    if max == 0 {
        return Duration::ZERO;
    }
    let mut h = RandomState::new().build_hasher();
    h.write_u64(id);
    Duration::from_nanos(h.finish() % max)
}

/// Why `conn` must be closed rather than reused, whatever its transaction state.
pub(crate) fn must_close(conn: &Conn) -> Option<ResetReason> {
    let state = &conn.state;
    if state.saw_io_error() || conn.client.is_closed() {
        return Some(ResetReason::Broken);
    }
    if conn.info.bind == Bind::Default {
        // The "primary" behind the address is read-only or going away: a new connection
        // re-checks it (and refuses it while it stays read-only).
        if state.saw_read_only() {
            return Some(ResetReason::ReadOnly);
        }
        if state.saw_shutdown() {
            return Some(ResetReason::ServerShutdown);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_under_a_tenth_of_the_lifetime() {
        let lifetime = Duration::from_secs(300);
        let values: Vec<Duration> = (0..200).map(|id| jitter(lifetime, id)).collect();
        assert!(values.iter().all(|j| *j < Duration::from_secs(30)));
        let distinct: std::collections::HashSet<_> = values.iter().collect();
        assert!(
            distinct.len() > 150,
            "jitter must spread: {}",
            distinct.len()
        );
        assert_eq!(jitter(Duration::ZERO, 7), Duration::ZERO);
        assert!(jitter(Duration::from_secs(1), 7) < Duration::from_millis(100));
    }
}
