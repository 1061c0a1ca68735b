//! The narrow hook through which an observer (e.g. `notify-db-metrics`) watches the pools,
//! without this crate depending on it.

use std::any::Any;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::ConnectFailure;

/// Which pool a connection belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bind {
    /// The primary, for transactional queries.
    Default,
    /// The read-only replica(s), for analytics and reporting.
    Bulk,
}

impl Bind {
    /// The label value: `default` or `bulk`.
    pub fn as_str(self) -> &'static str {
        match self {
            Bind::Default => "default",
            Bind::Bulk => "bulk",
        }
    }
}

impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an observer learns about one physical connection, fixed when it is opened.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// Unique (per process) id of this physical connection.
    pub id: u64,
    /// The pool it belongs to.
    pub bind: Bind,
    /// The configured host it was opened to.
    pub host: String,
    /// The configured port it was opened to.
    pub port: u16,
    /// `inet_server_addr()`: the server's own address; `None` over a Unix socket.
    pub server_addr: Option<IpAddr>,
    /// `pg_is_in_recovery()` at connect: true on a replica.
    pub in_recovery: bool,
    /// The server process id serving this connection.
    pub backend_pid: i32,
}

/// Why a returned connection did not go straight back to the pool (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResetReason {
    /// A request was still in flight and was answered within the grace period.
    Drained,
    /// A transaction (open or failed) was rolled back.
    Rollback,
    /// A statement in flight was cancelled on the server (CancelRequest), then answered.
    Cancel,
    /// The reset failed, timed out, or could not run (no tokio runtime, unknown state): the
    /// connection was closed.
    Discard,
    /// The default bind's server answered 25006 (read-only): closed.
    ReadOnly,
    /// The server said it is shutting down or refuses connections (57P01, 57P02, 57P03): closed.
    ServerShutdown,
    /// The connection failed (an I/O error, or closed by the server): closed.
    Broken,
}

impl ResetReason {
    /// The label value, e.g. `rollback`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResetReason::Drained => "drained",
            ResetReason::Rollback => "rollback",
            ResetReason::Cancel => "cancel",
            ResetReason::Discard => "discard",
            ResetReason::ReadOnly => "read_only",
            ResetReason::ServerShutdown => "server_shutdown",
            ResetReason::Broken => "broken",
        }
    }

    /// Whether the connection was closed rather than returned.
    pub fn discards(self) -> bool {
        !matches!(
            self,
            ResetReason::Drained | ResetReason::Rollback | ResetReason::Cancel
        )
    }
}

/// Per-checkout state an observer wants back when the connection is returned.
pub type CheckoutToken = Option<Box<dyn Any + Send + Sync>>;

/// Observes pool events. Every method has a no-op default; calls are made inline on the hot
/// path, so implementations must be cheap and must not block.
pub trait PoolObserver: Send + Sync + 'static {
    /// A physical connection was opened and set up.
    fn connected(&self, _conn: &ConnInfo) {}
    /// A physical connection was closed (lifetime expiry, broken, pool dropped...).
    fn closed(&self, _conn: &ConnInfo) {}
    /// Opening a connection to `host:port` failed.
    fn connect_failed(&self, _bind: Bind, _host: &str, _port: u16, _why: ConnectFailure) {}
    /// A connection was handed out after waiting `waited`; the token comes back in `returned`.
    fn checked_out(&self, _conn: &ConnInfo, _waited: Duration) -> CheckoutToken {
        None
    }
    /// A connection came back after being held for `held` (also when the holder was cancelled or panicked).
    fn returned(&self, _conn: &ConnInfo, _held: Duration, _token: CheckoutToken) {}
    /// A returned connection was not clean: it was reset (and returned) or closed, for `reason`.
    fn reset(&self, _conn: &ConnInfo, _reason: ResetReason) {}
    /// A `get()` gave up after waiting `waited` for a free connection.
    fn wait_timed_out(&self, _bind: Bind, _waited: Duration) {}
    /// The pool was created with this maximum size.
    fn pool_created(&self, _bind: Bind, _max_size: usize) {}
    /// The replay lag of bulk host `host:port` was sampled (seconds; NaN when it could not be).
    fn replica_lag(&self, _bind: Bind, _host: &str, _port: u16, _seconds: f64) {}
    /// Bulk started (`true`) or stopped (`false`) falling back to the primary because every
    /// replica lags more than the limit.
    fn bulk_fallback(&self, _active: bool) {}
    /// A checkout of `conn` has been held for `held`, over the pool's `long_hold_warning`
    /// (`threshold`): called once per such checkout, from the pool's sampling task, with the
    /// token `checked_out` gave. The default logs [`log_long_hold`] without a request context;
    /// an observer that knows the request or job of the checkout logs it with that.
    fn held_long(
        &self,
        conn: &ConnInfo,
        held: Duration,
        threshold: Duration,
        _token: &CheckoutToken,
    ) {
        log_long_hold(conn, held, threshold, None);
    }
    /// The longest checkout of `bind` still held (zero when none), sampled about once a second.
    fn longest_checkout(&self, _bind: Bind, _held: Duration) {}
}

/// The request or job a checkout was made for: the `method`, `host` and `path` labels of
/// `db_connection_open_duration_seconds` (for a job: worker kind, app, task).
#[derive(Clone, Copy, Debug)]
pub struct HoldContext<'a> {
    /// HTTP method, or the worker kind of a job.
    pub method: &'a str,
    /// Host header, or the app of a job.
    pub host: &'a str,
    /// Route template, or the task of a job.
    pub path: &'a str,
}

/// The one long-hold warning: a connection checked out for longer than `threshold`, with the
/// bind, host, backend pid and (when known) the request or job holding it, so that a leak
/// names its route before the pool runs dry.
pub fn log_long_hold(
    conn: &ConnInfo,
    held: Duration,
    threshold: Duration,
    context: Option<HoldContext<'_>>,
) {
    let unknown = HoldContext {
        method: "unknown",
        host: "unknown",
        path: "unknown",
    };
    let ctx = context.unwrap_or(unknown);
    tracing::warn!(
        bind = conn.bind.as_str(),
        host = conn.host.as_str(),
        port = conn.port,
        backend_pid = conn.backend_pid,
        held_seconds = held.as_secs_f64(),
        method = ctx.method,
        request_host = ctx.host,
        path = ctx.path,
        "database connection checked out for longer than the long-hold warning of {threshold:?} \
         and still held: a slow query, a long transaction, or a connection held across other \
         work ({} {} {})",
        ctx.method,
        ctx.host,
        ctx.path,
    );
}
