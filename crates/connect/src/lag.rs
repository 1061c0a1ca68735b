//! Lag-aware bulk routing: a replica whose replay lag is over `pool.max_replica_lag` gets no
//! new bulk connections and its pooled ones are retired at their next checkout; when every
//! replica lags, bulk falls back to the primary (read-only, as always on bulk) and comes back
//! when they catch up. Lag is sampled per host in the background, never on a checkout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use notify_db_config::{HostPort, Settings};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::REPLICA_LAG_SQL;

use crate::connector::Connector;
use crate::error::ConnectError;
use crate::observer::{Bind, PoolObserver};
use crate::password::PasswordSource;

/// Where a connection was opened: a configured bulk host (by index) or the fallback primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The bulk URI's host with this index.
    Host(usize),
    /// The primary, while every replica lags.
    Fallback,
}

/// The lag state the bulk connector and the pool's recycle step read.
pub struct LagRouting {
    lagging: Vec<AtomicBool>,
}

impl LagRouting {
    /// Whether host `i` is over the lag limit.
    pub(crate) fn is_lagging(&self, i: usize) -> bool {
        self.lagging
            .get(i)
            .is_some_and(|l| l.load(Ordering::Relaxed))
    }

    /// Whether every replica lags, so bulk uses the primary.
    pub(crate) fn on_fallback(&self) -> bool {
        self.lagging.iter().all(|l| l.load(Ordering::Relaxed))
    }

    /// Whether a pooled connection opened on `route` should be replaced at checkout.
    pub fn should_retire(&self, route: Route) -> Option<&'static str> {
        match route {
            Route::Host(i) if self.is_lagging(i) => Some("its replica lags over the limit"),
            Route::Fallback if !self.on_fallback() => Some("a replica caught up"),
            _ => None,
        }
    }
}

/// Starts lag routing when the settings ask for it (a lag limit above 0 and a bulk URI of its
/// own with several hosts): the sampler (one connection per bulk host, logging in with
/// `password`, reporting `replica_lag` to the observer) runs until the routing is dropped.
pub(crate) fn start(
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
    // Told apart from the pool's own sessions in pg_stat_activity (unless the URI names them).
    let mut sampling = settings.clone();
    sampling.pool.application_name = format!("{}-lag", settings.pool.application_name);
    let mut samplers = Vec::new();
    for hp in settings.bulk.hosts() {
        let mut sampler = Connector::new(
            &settings.bulk.with_hosts(vec![hp.clone()]),
            &sampling,
            Bind::Bulk,
            None,
        )?;
        sampler.password = password.clone();
        samplers.push(Sampler {
            hp: hp.clone(),
            connector: sampler,
            client: None,
        });
    }
    let routing = Arc::new(LagRouting {
        lagging: samplers.iter().map(|_| AtomicBool::new(false)).collect(),
    });
    let every = settings
        .pool
        .replica_lag_interval
        .max(Duration::from_millis(10));
    // A query on a hung server must not stall the sampling of the others for long.
    let query_timeout = settings.pool.connect_timeout.max(Duration::from_secs(1)) * 2;
    handle.spawn(monitor(
        Arc::downgrade(&routing),
        samplers,
        every,
        limit,
        query_timeout,
        observer,
    ));
    Ok(Some(routing))
}

/// One bulk host's sampling connection (not taken from the pool).
struct Sampler {
    hp: HostPort,
    connector: Connector,
    client: Option<(Client, JoinHandle<()>)>,
}

impl Drop for Sampler {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.client {
            task.abort();
        }
    }
}

impl Sampler {
    async fn sample(&mut self) -> Result<f64, String> {
        let (client, task) = match self.client.take() {
            Some((c, t)) if !c.is_closed() => (c, t),
            _ => {
                let opened = self.connector.open().await.map_err(|e| e.to_string())?;
                (opened.client, opened.task)
            }
        };
        let rows = client
            .query_typed(REPLICA_LAG_SQL, &[])
            .await
            .map_err(|e| e.to_string())?;
        let lag = rows
            .first()
            .and_then(|r| r.try_get::<_, f64>(0).ok())
            .unwrap_or(f64::NAN);
        self.client = Some((client, task));
        Ok(lag)
    }
}

async fn monitor(
    routing: Weak<LagRouting>,
    mut samplers: Vec<Sampler>,
    every: Duration,
    limit: Duration,
    query_timeout: Duration,
    observer: Option<Arc<dyn PoolObserver>>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut on_fallback = false;
    loop {
        tick.tick().await;
        let Some(routing) = routing.upgrade() else {
            return;
        };
        for (i, s) in samplers.iter_mut().enumerate() {
            let lag = match tokio::time::timeout(query_timeout, s.sample()).await {
                Ok(Ok(lag)) => lag,
                Ok(Err(e)) => {
                    tracing::debug!(host = %s.hp.host, port = s.hp.port, error = %e, "cannot sample replica lag");
                    s.client = None;
                    f64::NAN
                }
                Err(_) => {
                    s.client = None;
                    f64::NAN
                }
            };
            if let Some(o) = &observer {
                o.replica_lag(Bind::Bulk, &s.hp.host, s.hp.port, lag);
            }
            // A host that cannot be sampled is left to the connect back-off, not called lagging.
            let lagging = lag.is_finite() && lag > limit.as_secs_f64();
            if routing.lagging[i].swap(lagging, Ordering::Relaxed) != lagging {
                if lagging {
                    tracing::warn!(host = %s.hp.host, port = s.hp.port, lag_seconds = lag, limit = ?limit,
                        "replica lags over the limit: no new bulk connections to it");
                } else {
                    tracing::info!(host = %s.hp.host, port = s.hp.port, lag_seconds = lag,
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
