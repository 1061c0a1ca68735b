//! [`DbMetrics`]: the [`PoolObserver`] that records Notify's connection metrics and ours.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, SharedString,
};
use notify_db_connect::{
    Bind, CheckoutToken, ConnInfo, ConnectFailure, HoldContext, PoolObserver, ResetReason,
    log_long_hold,
};

use crate::context::{self, RequestContext, UNKNOWN};
use crate::names;

/// The `inet_server_addr` value for a connection over a Unix socket, where
/// `inet_server_addr()` is NULL: the reference passes Python's `None` to the label, which
/// prometheus_client renders as `str(None)`.
pub const NO_SERVER_ADDR: &str = "None";

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Where events go: the recorder given at construction, or the `metrics` facade's current one.
enum Target {
    Bound(Arc<dyn Recorder + Send + Sync>),
    Facade,
}

impl Target {
    fn gauge(&self, key: &Key) -> Gauge {
        match self {
            Target::Bound(r) => r.register_gauge(key, &METADATA),
            Target::Facade => metrics::with_recorder(|r| r.register_gauge(key, &METADATA)),
        }
    }

    fn counter(&self, key: &Key) -> Counter {
        match self {
            Target::Bound(r) => r.register_counter(key, &METADATA),
            Target::Facade => metrics::with_recorder(|r| r.register_counter(key, &METADATA)),
        }
    }

    fn histogram(&self, key: &Key) -> Histogram {
        match self {
            Target::Bound(r) => r.register_histogram(key, &METADATA),
            Target::Facade => metrics::with_recorder(|r| r.register_histogram(key, &METADATA)),
        }
    }

    fn describe(&self) {
        let f = |r: &dyn Recorder| {
            for (name, kind, help) in names::DESCRIPTIONS {
                let name = KeyName::from_const_str(name);
                let help = SharedString::const_str(help);
                match kind {
                    names::Kind::Gauge => r.describe_gauge(name, None, help),
                    names::Kind::Counter => r.describe_counter(name, None, help),
                    names::Kind::Histogram => r.describe_histogram(name, None, help),
                }
            }
        };
        match self {
            Target::Bound(r) => f(r.as_ref()),
            Target::Facade => metrics::with_recorder(f),
        }
    }
}

/// Handles of one (bind, inet_server_addr) pair.
struct ConnHandles {
    connected: Gauge,
    checked_out: Gauge,
}

/// Handles of one bind.
struct BindHandles {
    wait: Histogram,
    timeouts: Counter,
    max_size: Gauge,
    opened: Counter,
    closed: Counter,
    longest: Gauge,
}

/// The labels of one `db_connection_open_duration_seconds` series.
struct DurationKey {
    ctx: Arc<RequestContext>,
    bind: Bind,
    addr: Option<IpAddr>,
}

impl PartialEq for DurationKey {
    fn eq(&self, other: &Self) -> bool {
        self.bind == other.bind
            && self.addr == other.addr
            && (Arc::ptr_eq(&self.ctx, &other.ctx) || *self.ctx == *other.ctx)
    }
}

impl Eq for DurationKey {}

impl Hash for DurationKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.ctx.hash);
        self.bind.hash(state);
        self.addr.hash(state);
    }
}

/// A multiply-rotate hasher (FxHash's): cache keys are a few small integers or an already
/// computed hash, so SipHash's flooding resistance buys nothing on this hot path.
#[derive(Default)]
struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(buf));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }
}

/// A lookup table of registered handles, filled on first use.
struct Cache<K, V>(RwLock<HashMap<K, V, BuildHasherDefault<FastHasher>>>);

impl<K: Eq + Hash, V> Cache<K, V> {
    fn new() -> Self {
        Cache(RwLock::new(HashMap::default()))
    }

    /// Runs `f` on the value of `key`, made by `make` on first use.
    fn with<R>(&self, key: K, make: impl FnOnce() -> V, f: impl FnOnce(&V) -> R) -> R {
        if let Some(v) = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return f(v);
        }
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        f(map.entry(key).or_insert_with(make))
    }
}

/// Handles registered once, when bound to a recorder (the facade's recorder can change, e.g. a
/// local recorder in a test, so nothing is cached then).
struct Cached {
    /// Registered on first use, so a bind without a pool renders nothing.
    binds: [OnceLock<BindHandles>; 2],
    /// The first server address seen per bind, with its handles. A bind's connections nearly
    /// always go to one server, whose handles this gives with one atomic load: no lock (two
    /// read-modify-writes) and no hashing on each checkout, open and close. Other addresses
    /// (several replicas, a failover) go through `conns`.
    first_conns: [OnceLock<(Option<IpAddr>, ConnHandles)>; 2],
    conns: Cache<(Bind, Option<IpAddr>), ConnHandles>,
    durations: Cache<DurationKey, Histogram>,
    /// The open-duration histogram of checkouts outside any request or job context, per bind,
    /// for the first server address seen (as `first_conns`): no lock and no hashing.
    unknown_durations: [OnceLock<(Option<IpAddr>, Histogram)>; 2],
}

fn bind_index(bind: Bind) -> usize {
    match bind {
        Bind::Default => 0,
        Bind::Bulk => 1,
    }
}

/// What `checked_out` hands back to `returned`.
struct Checkout {
    checked_out: Gauge,
    open_duration: Histogram,
    /// The request or job it was made for, named by the long-hold warning.
    ctx: Arc<RequestContext>,
}

/// Records the pool metrics. Give it to the pool with
/// `Databases::builder(&settings).observer(Arc::new(metrics))` (or `handle.observer()`).
///
/// | name | type | labels |
/// |---|---|---|
/// | `db_connection_total_connected` | gauge | `bind`, `inet_server_addr` |
/// | `db_connection_total_checked_out` | gauge | `bind`, `inet_server_addr` |
/// | `db_connection_open_duration_seconds` | histogram | `method`, `host`, `path`, `bind`, `inet_server_addr` |
/// | `db_pool_wait_seconds` | histogram | `bind` |
/// | `db_pool_timeouts_total` | counter | `bind` |
/// | `db_pool_max_size` | gauge | `bind` |
/// | `db_pool_longest_checkout_seconds` | gauge | `bind`: the longest checkout still held, sampled about once a second |
/// | `db_connection_errors_total` | counter | `bind`, `host` (`host:port`), `reason` |
/// | `db_replica_lag_seconds` | gauge | `bind`, `host` (`host:port`), see [`crate::ReplicaLagSampler`] |
/// | `db_bulk_fallback_to_primary` | gauge | (none): 1 while every bulk replica lags over `pool.max_replica_lag` |
/// | `db_statement_timeouts_total` | counter | `bind`: 57014 errors reported to [`DbMetrics::statement_error`] |
/// | `db_connections_opened_total`, `db_connections_closed_total` | counter | `bind` |
///
/// `inet_server_addr` is the server's own address (`inet_server_addr()` at connect), or
/// [`NO_SERVER_ADDR`] over a Unix socket. Outside any request/job context the `method`, `host`
/// and `path` labels are `unknown`, and a warning is logged once per observer. (The pools'
/// start-up check, `DatabasesBuilder::build` with `check_on_build(true)`, checks out one
/// connection per pool: wrap it in [`crate::with_job_context`] to label it.)
pub struct DbMetrics {
    target: Target,
    cached: Option<Cached>,
    unknown: Arc<RequestContext>,
    warned_no_context: AtomicBool,
}

impl std::fmt::Debug for DbMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = match self.target {
            Target::Bound(_) => "bound",
            Target::Facade => "facade",
        };
        f.debug_struct("DbMetrics")
            .field("target", &target)
            .finish_non_exhaustive()
    }
}

impl DbMetrics {
    /// An observer recording into `recorder`; handles are registered once and cached.
    pub fn with_recorder(recorder: Arc<dyn Recorder + Send + Sync>) -> DbMetrics {
        DbMetrics::build(Target::Bound(recorder), true)
    }

    /// An observer recording through the `metrics` facade: into whichever recorder (local or
    /// global) is current at each event. Slower than [`DbMetrics::with_recorder`] (each event
    /// looks its metric up in the recorder); create it after the global recorder is installed,
    /// so the metric descriptions reach it.
    pub fn from_facade() -> DbMetrics {
        DbMetrics::build(Target::Facade, false)
    }

    fn build(target: Target, cache: bool) -> DbMetrics {
        target.describe();
        let cached = cache.then(|| Cached {
            binds: [OnceLock::new(), OnceLock::new()],
            first_conns: [OnceLock::new(), OnceLock::new()],
            conns: Cache::new(),
            durations: Cache::new(),
            unknown_durations: [OnceLock::new(), OnceLock::new()],
        });
        DbMetrics {
            target,
            cached,
            unknown: Arc::new(RequestContext::new(UNKNOWN, UNKNOWN, UNKNOWN)),
            warned_no_context: AtomicBool::new(false),
        }
    }

    /// Sets the replica lag gauge of bulk server `server` (`host:port`).
    pub(crate) fn set_replica_lag(&self, server: &str, seconds: f64) {
        let key = Key::from_parts(
            names::REPLICA_LAG,
            vec![
                Label::from_static_parts("bind", "bulk"),
                Label::new("host", server.to_owned()),
            ],
        );
        self.target.gauge(&key).set(seconds);
    }

    /// Counts `error` in `db_statement_timeouts_total{bind}` when it is a statement cancelled by
    /// `statement_timeout` (SQLSTATE 57014 with the server's "statement timeout" message, not a
    /// `pg_cancel_backend()`); returns whether it counted. The pool cannot see query results,
    /// so the service reports the errors of its queries here.
    pub fn statement_error(&self, bind: Bind, error: &tokio_postgres::Error) -> bool {
        let timed_out = error.as_db_error().is_some_and(|db| {
            *db.code() == tokio_postgres::error::SqlState::QUERY_CANCELED
                && db.message().contains("statement timeout")
        });
        if timed_out {
            let key = Key::from_parts(
                names::STATEMENT_TIMEOUTS,
                vec![Label::from_static_parts("bind", bind.as_str())],
            );
            self.target.counter(&key).increment(1);
        }
        timed_out
    }

    fn with_conn<R>(
        &self,
        bind: Bind,
        addr: Option<IpAddr>,
        f: impl FnOnce(&ConnHandles) -> R,
    ) -> R {
        let make = || {
            let labels = conn_labels(bind, addr);
            ConnHandles {
                connected: self
                    .target
                    .gauge(&Key::from_parts(names::CONNECTED, labels.clone())),
                checked_out: self
                    .target
                    .gauge(&Key::from_parts(names::CHECKED_OUT, labels)),
            }
        };
        match &self.cached {
            Some(c) => {
                let (first_addr, first) =
                    c.first_conns[bind_index(bind)].get_or_init(|| (addr, make()));
                if *first_addr == addr {
                    return f(first);
                }
                c.conns.with((bind, addr), make, f)
            }
            None => f(&make()),
        }
    }

    fn with_bind<R>(&self, bind: Bind, f: impl FnOnce(&BindHandles) -> R) -> R {
        match &self.cached {
            Some(c) => {
                f(c.binds[bind_index(bind)].get_or_init(|| make_bind_handles(&self.target, bind)))
            }
            None => f(&make_bind_handles(&self.target, bind)),
        }
    }

    fn open_duration(
        &self,
        ctx: Arc<RequestContext>,
        bind: Bind,
        addr: Option<IpAddr>,
    ) -> Histogram {
        let make = |ctx: &RequestContext| {
            let mut labels = vec![
                Label::new("method", SharedString::from_shared(Arc::clone(&ctx.method))),
                Label::new("host", SharedString::from_shared(Arc::clone(&ctx.host))),
                Label::new("path", SharedString::from_shared(Arc::clone(&ctx.path))),
            ];
            labels.extend(conn_labels(bind, addr));
            self.target
                .histogram(&Key::from_parts(names::OPEN_DURATION, labels))
        };
        match &self.cached {
            Some(c) if Arc::ptr_eq(&ctx, &self.unknown) => {
                let (first_addr, first) =
                    c.unknown_durations[bind_index(bind)].get_or_init(|| (addr, make(&ctx)));
                if *first_addr == addr {
                    return first.clone();
                }
                c.durations.with(
                    DurationKey { ctx, bind, addr },
                    || make(&self.unknown),
                    Histogram::clone,
                )
            }
            Some(c) => {
                let for_make = Arc::clone(&ctx);
                c.durations.with(
                    DurationKey { ctx, bind, addr },
                    || make(&for_make),
                    Histogram::clone,
                )
            }
            None => make(&ctx),
        }
    }

    fn context(&self) -> Arc<RequestContext> {
        if let Some(ctx) = context::current_shared() {
            return ctx;
        }
        // A load first: the swap (a read-modify-write) only until the warning is given.
        if !self.warned_no_context.load(Ordering::Relaxed)
            && !self.warned_no_context.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "database connection checked out outside any request or job context: \
                 method/host/path labels are \"unknown\" (logged once)"
            );
        }
        Arc::clone(&self.unknown)
    }
}

fn make_bind_handles(target: &Target, bind: Bind) -> BindHandles {
    let labels = || vec![Label::from_static_parts("bind", bind.as_str())];
    BindHandles {
        wait: target.histogram(&Key::from_parts(names::POOL_WAIT, labels())),
        timeouts: target.counter(&Key::from_parts(names::POOL_TIMEOUTS, labels())),
        max_size: target.gauge(&Key::from_parts(names::POOL_MAX_SIZE, labels())),
        opened: target.counter(&Key::from_parts(names::CONNECTIONS_OPENED, labels())),
        closed: target.counter(&Key::from_parts(names::CONNECTIONS_CLOSED, labels())),
        longest: target.gauge(&Key::from_parts(names::LONGEST_CHECKOUT, labels())),
    }
}

fn conn_labels(bind: Bind, addr: Option<IpAddr>) -> Vec<Label> {
    let addr = match addr {
        Some(ip) => SharedString::from_owned(ip.to_string()),
        None => SharedString::const_str(NO_SERVER_ADDR),
    };
    vec![
        Label::from_static_parts("bind", bind.as_str()),
        Label::new("inet_server_addr", addr),
    ]
}

impl PoolObserver for DbMetrics {
    fn connected(&self, conn: &ConnInfo) {
        self.with_conn(conn.bind, conn.server_addr, |h| h.connected.increment(1.0));
        self.with_bind(conn.bind, |h| h.opened.increment(1));
    }

    fn closed(&self, conn: &ConnInfo) {
        self.with_conn(conn.bind, conn.server_addr, |h| h.connected.decrement(1.0));
        self.with_bind(conn.bind, |h| h.closed.increment(1));
    }

    fn connect_failed(&self, bind: Bind, host: &str, port: u16, why: ConnectFailure) {
        let key = Key::from_parts(
            names::CONNECT_ERRORS,
            vec![
                Label::from_static_parts("bind", bind.as_str()),
                Label::new("host", format!("{host}:{port}")),
                Label::from_static_parts("reason", why.as_str()),
            ],
        );
        self.target.counter(&key).increment(1);
    }

    fn replica_lag(&self, bind: Bind, host: &str, port: u16, seconds: f64) {
        if bind == Bind::Bulk {
            self.set_replica_lag(&format!("{host}:{port}"), seconds);
        }
    }

    fn bulk_fallback(&self, active: bool) {
        let key = Key::from_name(names::BULK_FALLBACK);
        self.target.gauge(&key).set(if active { 1.0 } else { 0.0 });
    }

    fn checked_out(&self, conn: &ConnInfo, waited: Duration) -> CheckoutToken {
        let checked_out = self.with_conn(conn.bind, conn.server_addr, |h| {
            h.checked_out.increment(1.0);
            h.checked_out.clone()
        });
        self.with_bind(conn.bind, |h| h.wait.record(waited.as_secs_f64()));
        let ctx = self.context();
        let open_duration = self.open_duration(Arc::clone(&ctx), conn.bind, conn.server_addr);
        Some(Box::new(Checkout {
            checked_out,
            open_duration,
            ctx,
        }))
    }

    fn returned(&self, conn: &ConnInfo, held: Duration, token: CheckoutToken) {
        match token.and_then(|t| t.downcast::<Checkout>().ok()) {
            Some(checkout) => {
                checkout.checked_out.decrement(1.0);
                checkout.open_duration.record(held.as_secs_f64());
            }
            None => {
                // Not checked out through this observer's `checked_out` (cannot happen with the
                // pool, which hands every token back): keep the gauge balanced anyway.
                self.with_conn(conn.bind, conn.server_addr, |h| {
                    h.checked_out.decrement(1.0)
                });
                self.open_duration(Arc::clone(&self.unknown), conn.bind, conn.server_addr)
                    .record(held.as_secs_f64());
            }
        }
    }

    fn reset(&self, conn: &ConnInfo, reason: ResetReason) {
        let key = Key::from_parts(
            names::POOL_RESETS,
            vec![
                Label::from_static_parts("bind", conn.bind.as_str()),
                Label::from_static_parts("reason", reason.as_str()),
            ],
        );
        self.target.counter(&key).increment(1);
    }

    fn wait_timed_out(&self, bind: Bind, waited: Duration) {
        self.with_bind(bind, |h| {
            h.timeouts.increment(1);
            h.wait.record(waited.as_secs_f64());
        });
    }

    fn held_long(
        &self,
        conn: &ConnInfo,
        held: Duration,
        threshold: Duration,
        token: &CheckoutToken,
    ) {
        let checkout = token.as_ref().and_then(|t| t.downcast_ref::<Checkout>());
        let context = checkout.map(|c| HoldContext {
            method: c.ctx.method(),
            host: c.ctx.host(),
            path: c.ctx.path(),
        });
        log_long_hold(conn, held, threshold, context);
    }

    fn longest_checkout(&self, bind: Bind, held: Duration) {
        self.with_bind(bind, |h| h.longest.set(held.as_secs_f64()));
    }

    fn pool_created(&self, bind: Bind, max_size: usize) {
        // Pool sizes are small integers: exact in f64.
        self.with_bind(bind, |h| h.max_size.set(max_size as f64));
    }
}
