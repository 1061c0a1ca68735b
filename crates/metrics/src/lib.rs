//! GOV.UK Notify's database connection metrics for notify-db pools, in Prometheus format.
//!
//! The pools of `notify-db-pool` report their events to a [`PoolObserver`]; [`DbMetrics`] is the
//! observer that turns them into the reference's three metrics
//! (`db_connection_total_connected`, `db_connection_total_checked_out`,
//! `db_connection_open_duration_seconds`, with the same names and labels) plus pool metrics
//! the reference does not have (wait time, timeouts, size, connect errors, replica lag).
//!
//! ```no_run
//! # async fn demo(settings: notify_db_config::Settings) -> Result<(), Box<dyn std::error::Error>> {
//! let metrics = notify_db_metrics::install(None)?; // or Some(addr) for the exporter's own listener
//! // Databases::builder(&settings).observer(metrics.observer()).build().await?;
//! let _lag = notify_db_metrics::ReplicaLagSampler::spawn(
//!     &settings, std::time::Duration::from_secs(15), metrics.observer());
//! // serve `metrics.render()` on GET /metrics; wrap each request or job:
//! notify_db_metrics::with_job_context("notify-celery", "send-email", async { /* ... */ }).await;
//! # Ok(()) }
//! ```
//!
//! [`PoolObserver`]: notify_db_connect::PoolObserver

#![deny(missing_docs)]

mod context;
mod lag;
mod observer;

#[cfg(feature = "axum")]
mod axum_layer;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics_exporter_prometheus::{
    BuildError, Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

#[cfg(feature = "axum")]
pub use axum_layer::{RequestContextLayer, RequestContextService};
pub use context::{
    JOB_METHOD, NO_ENDPOINT, RequestContext, UNKNOWN, current_context, with_job_context,
    with_request_context,
};
pub use lag::ReplicaLagSampler;
pub use observer::{DbMetrics, NO_SERVER_ADDR};

/// Metric names, and the help text the exporter renders for each.
pub mod names {
    /// Gauge: physical connections held open to the server (`bind`, `inet_server_addr`).
    pub const CONNECTED: &str = "db_connection_total_connected";
    /// Gauge: connections currently checked out (`bind`, `inet_server_addr`).
    pub const CHECKED_OUT: &str = "db_connection_total_checked_out";
    /// Histogram: how long a connection was checked out (`method`, `host`, `path`, `bind`, `inet_server_addr`).
    pub const OPEN_DURATION: &str = "db_connection_open_duration_seconds";
    /// Histogram: time spent waiting for a free connection (`bind`).
    pub const POOL_WAIT: &str = "db_pool_wait_seconds";
    /// Counter: `get()` calls that gave up waiting (`bind`).
    pub const POOL_TIMEOUTS: &str = "db_pool_timeouts_total";
    /// Gauge: the configured maximum size of the pool (`bind`).
    pub const POOL_MAX_SIZE: &str = "db_pool_max_size";
    /// Counter: failed attempts to open a connection (`bind`, `host`, `reason`).
    pub const CONNECT_ERRORS: &str = "db_connection_errors_total";
    /// Gauge: replay lag of each bulk server, in seconds (`bind`, `host`).
    pub const REPLICA_LAG: &str = "db_replica_lag_seconds";
    /// Gauge: 1 while bulk falls back to the primary because every replica lags, else 0.
    pub const BULK_FALLBACK: &str = "db_bulk_fallback_to_primary";
    /// Counter: statements cancelled by `statement_timeout` (SQLSTATE 57014), as reported to
    /// [`crate::DbMetrics::statement_error`] (`bind`).
    pub const STATEMENT_TIMEOUTS: &str = "db_statement_timeouts_total";
    /// Counter: physical connections opened and set up (`bind`).
    pub const CONNECTIONS_OPENED: &str = "db_connections_opened_total";
    /// Counter: physical connections closed (`bind`).
    pub const CONNECTIONS_CLOSED: &str = "db_connections_closed_total";
    /// Counter: connections that came back dirty, by `bind` and `reason` (drained, rollback,
    /// cancel: reset and returned; discard, read_only, server_shutdown, broken: closed).
    pub const POOL_RESETS: &str = "db_pool_resets_total";
    /// Gauge: the longest checkout of the pool still held, in seconds (`bind`).
    pub const LONGEST_CHECKOUT: &str = "db_pool_longest_checkout_seconds";

    #[derive(Clone, Copy)]
    pub(crate) enum Kind {
        Gauge,
        Counter,
        Histogram,
    }

    pub(crate) const DESCRIPTIONS: &[(&str, Kind, &str)] = &[
        (
            CONNECTED,
            Kind::Gauge,
            "How many db connections are currently held (potentially idle) by the server",
        ),
        (
            CHECKED_OUT,
            Kind::Gauge,
            "How many db connections are currently checked out by web requests",
        ),
        (
            OPEN_DURATION,
            Kind::Histogram,
            "How long db connections are held open for in seconds",
        ),
        (
            POOL_WAIT,
            Kind::Histogram,
            "How long a checkout waited for a free db connection in seconds",
        ),
        (
            POOL_TIMEOUTS,
            Kind::Counter,
            "How many checkouts gave up waiting for a free db connection",
        ),
        (
            POOL_MAX_SIZE,
            Kind::Gauge,
            "The maximum number of db connections of the pool",
        ),
        (
            CONNECT_ERRORS,
            Kind::Counter,
            "How many attempts to open a db connection failed, by reason",
        ),
        (
            REPLICA_LAG,
            Kind::Gauge,
            "Seconds since the last replayed transaction while the replica is behind, 0 when caught up; NaN when it cannot be sampled",
        ),
        (
            LONGEST_CHECKOUT,
            Kind::Gauge,
            "How long the longest db connection checkout still held has been held, in seconds (0 when none)",
        ),
        (
            BULK_FALLBACK,
            Kind::Gauge,
            "1 while the bulk pool falls back to the primary because every replica lags over the limit, else 0",
        ),
        (
            STATEMENT_TIMEOUTS,
            Kind::Counter,
            "How many statements were cancelled by statement_timeout (SQLSTATE 57014)",
        ),
        (
            CONNECTIONS_OPENED,
            Kind::Counter,
            "How many db connections were opened and set up",
        ),
        (
            CONNECTIONS_CLOSED,
            Kind::Counter,
            "How many db connections were closed",
        ),
        (
            POOL_RESETS,
            Kind::Counter,
            "How many db connections came back not idle and were reset or closed, by reason",
        ),
    ];
}

/// Histogram buckets in seconds, from 1 ms to 30 min (checkouts range from a cached lookup to a
/// long report). Set for every histogram of this crate, so the exporter renders real
/// Prometheus histograms rather than summaries.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1200.0, 1800.0,
];

/// How often the recorder's upkeep runs when [`install`] or [`MetricsHandle::new`] has a tokio
/// runtime.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Why the metrics could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The Prometheus exporter could not be built (e.g. the listen address is in use).
    #[error("cannot build the Prometheus exporter: {0}")]
    Build(#[from] BuildError),
    /// Another global `metrics` recorder was installed by someone else.
    #[error("another global metrics recorder is already installed")]
    OtherRecorderInstalled,
    /// The HTTP listener needs a tokio runtime, and `install` was called outside one.
    #[error("the metrics HTTP listener needs a tokio runtime: call install() from within one")]
    NoRuntime,
}

/// A [`PrometheusBuilder`] with this crate's histogram buckets; for services building their own
/// recorder.
pub fn prometheus_builder() -> PrometheusBuilder {
    let mut builder = PrometheusBuilder::new();
    for name in [names::OPEN_DURATION, names::POOL_WAIT] {
        builder = match builder
            .set_buckets_for_metric(Matcher::Full(name.to_owned()), DURATION_BUCKETS)
        {
            Ok(b) => b,
            // Only fails for an empty bucket list, which DURATION_BUCKETS is not.
            Err(_) => PrometheusBuilder::new(),
        };
    }
    builder
}

/// A Prometheus recorder with its [`DbMetrics`] observer and render handle.
#[derive(Clone, Debug)]
pub struct MetricsHandle {
    prometheus: PrometheusHandle,
    observer: Arc<DbMetrics>,
}

impl MetricsHandle {
    /// A recorder of its own, not installed globally (tests; services that compose recorders).
    /// Inside a tokio runtime its upkeep runs every 5 s while its observer lives; elsewhere
    /// histogram samples are kept until [`MetricsHandle::render`] (or the exporter's
    /// `run_upkeep`) drains them.
    pub fn new() -> MetricsHandle {
        let handle = MetricsHandle::from_recorder(Arc::new(prometheus_builder().build_recorder()));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            handle.spawn_upkeep(&rt);
        }
        handle
    }

    /// Runs the recorder's upkeep (it drains histogram samples into their buckets) every
    /// [`UPKEEP_INTERVAL`] on `rt`, until the observer every recording goes through is gone.
    fn spawn_upkeep(&self, rt: &tokio::runtime::Handle) {
        let prometheus = self.prometheus.clone();
        let observer = Arc::downgrade(&self.observer);
        rt.spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                if observer.strong_count() == 0 {
                    return;
                }
                prometheus.run_upkeep();
            }
        });
    }

    fn from_recorder(recorder: Arc<PrometheusRecorder>) -> MetricsHandle {
        let prometheus = recorder.handle();
        MetricsHandle {
            prometheus,
            observer: Arc::new(DbMetrics::with_recorder(recorder)),
        }
    }

    /// The observer to give the pools (`Databases::builder(..).observer(handle.observer())`).
    pub fn observer(&self) -> Arc<DbMetrics> {
        Arc::clone(&self.observer)
    }

    /// The `/metrics` payload, in the Prometheus text format.
    pub fn render(&self) -> String {
        self.prometheus.render()
    }

    /// The exporter's own handle (protobuf rendering, upkeep).
    pub fn prometheus(&self) -> &PrometheusHandle {
        &self.prometheus
    }
}

impl Default for MetricsHandle {
    fn default() -> Self {
        MetricsHandle::new()
    }
}

static INSTALLED: Mutex<Option<MetricsHandle>> = Mutex::new(None);

/// Installs the Prometheus recorder as the global `metrics` recorder, once per process, and
/// returns its handle; later calls return the same handle. With `listen`, also starts the
/// exporter's HTTP listener serving `/metrics` on that address (needs a tokio runtime).
pub fn install(listen: Option<SocketAddr>) -> Result<MetricsHandle, MetricsError> {
    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = installed.as_ref() {
        if listen.is_some() {
            tracing::warn!("metrics already installed: the listen address of this call is ignored");
        }
        return Ok(handle.clone());
    }
    let runtime = tokio::runtime::Handle::try_current().ok();
    let recorder = match (listen, &runtime) {
        (Some(addr), Some(rt)) => {
            let (recorder, exporter) = {
                let _guard = rt.enter();
                prometheus_builder().with_http_listener(addr).build()?
            };
            rt.spawn(async move {
                if let Err(e) = exporter.await {
                    tracing::error!(error = ?e, "the metrics HTTP listener stopped");
                }
            });
            tracing::info!(%addr, "serving Prometheus metrics");
            recorder
        }
        (Some(_), None) => return Err(MetricsError::NoRuntime),
        (None, _) => prometheus_builder().build_recorder(),
    };
    let recorder = Arc::new(recorder);
    metrics::set_global_recorder(Arc::clone(&recorder))
        .map_err(|_| MetricsError::OtherRecorderInstalled)?;
    let handle = MetricsHandle::from_recorder(recorder);
    // The HTTP listener's scrapes drain the samples; without it, upkeep does.
    if let (None, Some(rt)) = (listen, &runtime) {
        handle.spawn_upkeep(rt);
    }
    *installed = Some(handle.clone());
    Ok(handle)
}
