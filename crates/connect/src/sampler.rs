//! The one replica-lag sampler: one connection of its own per bulk host (opened like the bulk
//! pool's, application_name `<pool.application_name>-lag`, not taken from a pool), one
//! [`REPLICA_LAG_SQL`] per host and interval. Each figure goes to the observer
//! ([`PoolObserver::replica_lag`], which the metrics crate exports as `db_replica_lag_seconds`),
//! and, for lag routing, into the routing's flags.

use std::sync::{Arc, Weak};
use std::time::Duration;

use notify_db_config::{HostPort, Settings};
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_postgres::Client;

use crate::REPLICA_LAG_SQL;

use crate::connector::Connector;
use crate::error::ConnectError;
use crate::lag::LagRouting;
use crate::observer::{Bind, PoolObserver};
use crate::password::PasswordSource;

/// Samples every bulk host's replay lag in the background and reports each figure to an
/// observer ([`PoolObserver::replica_lag`]); stops when dropped.
///
/// A figure is 0 on a replica that has replayed all the WAL it received (caught up, also when
/// idle), the seconds since the last replayed transaction while it is behind, 0 for a primary
/// (e.g. bulk falling back to the primary), and NaN while the server cannot be reached or
/// queried.
#[derive(Debug)]
pub struct LagSampler {
    task: JoinHandle<()>,
}

impl LagSampler {
    /// Starts sampling the bulk hosts of `settings` every `interval`, with the bulk bind's
    /// password (URI or password file); call within a tokio runtime.
    pub fn spawn(
        settings: &Settings,
        interval: Duration,
        observer: Arc<dyn PoolObserver>,
    ) -> LagSampler {
        let password = PasswordSource::for_bind(settings, Bind::Bulk);
        let mut hosts = host_samplers(settings, &password);
        let timeout = query_timeout(settings);
        let task = tokio::spawn(async move {
            let mut tick = ticker(interval);
            loop {
                tick.tick().await;
                sample_all(&mut hosts, timeout, Some(&observer)).await;
            }
        });
        LagSampler { task }
    }
}

impl Drop for LagSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts lag routing when the settings ask for it (a lag limit above 0 and a bulk URI of its
/// own with several hosts): the sampler (logging in with `password`, reporting to `observer`)
/// runs until the routing is dropped.
pub(crate) fn start_routing(
    settings: &Settings,
    observer: Option<Arc<dyn PoolObserver>>,
    password: &PasswordSource,
) -> Result<Option<Arc<LagRouting>>, ConnectError> {
    let limit = settings.pool.max_replica_lag;
    if limit.is_zero() || settings.bulk_is_fallback || settings.bulk.hosts().len() < 2 {
        return Ok(None);
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return Ok(None);
    };
    let hosts = host_samplers(settings, password);
    if let Some(Err(e)) = hosts
        .iter()
        .map(|h| h.connector.as_ref())
        .find(Result::is_err)
    {
        return Err(e.clone());
    }
    let routing = Arc::new(LagRouting::new(hosts.len()));
    let every = settings
        .pool
        .replica_lag_interval
        .max(Duration::from_millis(10));
    handle.spawn(route(
        Arc::downgrade(&routing),
        hosts,
        every,
        limit,
        query_timeout(settings),
        observer,
    ));
    Ok(Some(routing))
}

/// A query on a hung server must not stall the sampling of the others for long (connecting has
/// its own timeout).
fn query_timeout(settings: &Settings) -> Duration {
    settings.pool.connect_timeout.max(Duration::from_secs(1)) * 2
}

fn ticker(every: Duration) -> Interval {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
}

/// One bulk host's sampling connection (not taken from the pool).
struct HostSampler {
    hp: HostPort,
    /// A connector that cannot be built (e.g. a bad `sslrootcert`) reads NaN, saying why.
    connector: Result<Connector, ConnectError>,
    client: Option<(Client, JoinHandle<()>)>,
}

impl Drop for HostSampler {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.client {
            task.abort();
        }
    }
}

/// Why a sample could not be taken.
enum SampleError {
    /// No connection: `Connector::open` has logged why.
    Connect(ConnectError),
    /// The query failed.
    Query(tokio_postgres::Error),
}

fn host_samplers(settings: &Settings, password: &PasswordSource) -> Vec<HostSampler> {
    // Told apart from the pool's own sessions in pg_stat_activity (unless the URI names them).
    let mut sampling = settings.clone();
    sampling.pool.application_name = format!("{}-lag", settings.pool.application_name);
    settings
        .bulk
        .hosts()
        .iter()
        .map(|hp| HostSampler {
            hp: hp.clone(),
            connector: Connector::new(
                &settings.bulk.with_hosts(vec![hp.clone()]),
                &sampling,
                Bind::Bulk,
                None,
            )
            .map(|mut c| {
                c.password = password.clone();
                c
            }),
            client: None,
        })
        .collect()
}

impl HostSampler {
    async fn sample(&mut self) -> Result<f64, SampleError> {
        let (client, task) = match self.client.take() {
            Some((c, t)) if !c.is_closed() => (c, t),
            _ => {
                let connector = self
                    .connector
                    .as_ref()
                    .map_err(|e| SampleError::Connect(e.clone()))?;
                let opened = connector.open().await.map_err(SampleError::Connect)?;
                (opened.client, opened.task)
            }
        };
        // One round trip: an unnamed statement, no prepare.
        let rows = client
            .query_typed(REPLICA_LAG_SQL, &[])
            .await
            .map_err(SampleError::Query)?;
        let lag = match rows.first() {
            Some(row) => row.try_get::<_, f64>(0).map_err(SampleError::Query)?,
            None => f64::NAN,
        };
        self.client = Some((client, task));
        Ok(lag)
    }
}

/// Samples every host once (NaN where it cannot), reports each figure to `observer`, and
/// returns them in host order.
async fn sample_all(
    hosts: &mut [HostSampler],
    timeout: Duration,
    observer: Option<&Arc<dyn PoolObserver>>,
) -> Vec<f64> {
    let mut lags = Vec::with_capacity(hosts.len());
    for h in hosts.iter_mut() {
        let lag = match tokio::time::timeout(timeout, h.sample()).await {
            Ok(Ok(lag)) => lag,
            Ok(Err(SampleError::Connect(e))) => {
                tracing::debug!(host = %h.hp.host, port = h.hp.port, error = %e, "cannot sample replica lag");
                h.client = None;
                f64::NAN
            }
            Ok(Err(SampleError::Query(e))) => {
                tracing::warn!(host = %h.hp.host, port = h.hp.port, error = %e, "cannot sample replica lag");
                h.client = None;
                f64::NAN
            }
            Err(_) => {
                tracing::warn!(host = %h.hp.host, port = h.hp.port, "replica lag sample timed out");
                h.client = None;
                f64::NAN
            }
        };
        if let Some(o) = observer {
            o.replica_lag(Bind::Bulk, &h.hp.host, h.hp.port, lag);
        }
        lags.push(lag);
    }
    lags
}

/// The routing's sampler: each round's figures set the hosts' lagging flags (logged once per
/// change) and the fallback (told to the observer once per change).
async fn route(
    routing: Weak<LagRouting>,
    mut hosts: Vec<HostSampler>,
    every: Duration,
    limit: Duration,
    timeout: Duration,
    observer: Option<Arc<dyn PoolObserver>>,
) {
    let mut tick = ticker(every);
    let mut on_fallback = false;
    loop {
        tick.tick().await;
        let Some(routing) = routing.upgrade() else {
            return;
        };
        let lags = sample_all(&mut hosts, timeout, observer.as_ref()).await;
        for (i, (h, lag)) in hosts.iter().zip(lags).enumerate() {
            // A host that cannot be sampled is left to the connect back-off, not called lagging.
            let lagging = lag.is_finite() && lag > limit.as_secs_f64();
            if routing.set_lagging(i, lagging) {
                if lagging {
                    tracing::warn!(host = %h.hp.host, port = h.hp.port, lag_seconds = lag, limit = ?limit,
                        "replica lags over the limit: no new bulk connections to it");
                } else {
                    tracing::info!(host = %h.hp.host, port = h.hp.port, lag_seconds = lag,
                        "replica caught up: bulk uses it again");
                }
            }
        }
        let all = routing.on_fallback();
        if all != on_fallback {
            on_fallback = all;
            if all {
                tracing::warn!(limit = ?limit,
                    "every bulk replica lags over the limit: bulk falls back to the primary (read-only)");
            } else {
                tracing::info!("a bulk replica caught up: bulk leaves the primary");
            }
            if let Some(o) = &observer {
                o.bulk_fallback(all);
            }
        }
    }
}
