//! [`ReplicaLagSampler`]: a background task sampling each bulk server's replay lag into
//! `db_replica_lag_seconds`.

use std::sync::Arc;
use std::time::Duration;

use notify_db_config::Settings;
use notify_db_connect::{Bind, REPLICA_LAG_SQL, connect_one};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::observer::DbMetrics;

/// Samples `db_replica_lag_seconds{bind="bulk",host="host:port"}` for every host of the bulk
/// URI, every `interval`, over one connection of its own per host (opened like the bulk pool's:
/// same TLS, timeouts and session setup, but not taken from the pool).
///
/// The value is 0 on a replica that has replayed all the WAL it received (caught up, also when
/// idle), the seconds since the last replayed transaction while it is behind, 0 for a primary
/// (e.g. bulk falling back to the primary), and NaN while the server cannot be reached or
/// queried. The task stops when this value is dropped.
///
/// As with any lag measured from `pg_last_xact_replay_timestamp()`: after the primary has been
/// idle, the first write not yet replayed shows the whole idle time for a sample, until replay
/// catches up (typically milliseconds, so rarely seen at a sampling interval of seconds).
#[derive(Debug)]
pub struct ReplicaLagSampler {
    task: JoinHandle<()>,
}

impl ReplicaLagSampler {
    /// Starts sampling the bulk hosts of `settings` every `interval` (call within a tokio runtime).
    pub fn spawn(
        settings: &Settings,
        interval: Duration,
        metrics: Arc<DbMetrics>,
    ) -> ReplicaLagSampler {
        let servers: Vec<Server> = settings
            .bulk
            .hosts()
            .iter()
            .map(|h| Server {
                label: format!("{}:{}", h.host, h.port),
                settings: Settings {
                    bulk: settings.bulk.with_hosts(vec![h.clone()]),
                    ..settings.clone()
                },
                client: None,
            })
            .collect();
        // Connecting has its own timeout; this bounds a query on a hung server.
        let timeout = settings.pool.connect_timeout.max(Duration::from_secs(1)) * 2;
        let task = tokio::spawn(run(servers, interval, timeout, metrics));
        ReplicaLagSampler { task }
    }
}

impl Drop for ReplicaLagSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Server {
    label: String,
    /// The settings with `bulk` narrowed to this one host.
    settings: Settings,
    client: Option<Client>,
}

async fn run(
    mut servers: Vec<Server>,
    interval: Duration,
    timeout: Duration,
    metrics: Arc<DbMetrics>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for server in &mut servers {
            let lag = match tokio::time::timeout(timeout, sample(server)).await {
                Ok(Ok(lag)) => lag,
                Ok(Err(e)) => {
                    tracing::warn!(server = %server.label, error = %e, "cannot sample replica lag");
                    server.client = None;
                    f64::NAN
                }
                Err(_) => {
                    tracing::warn!(server = %server.label, "replica lag sample timed out");
                    server.client = None;
                    f64::NAN
                }
            };
            metrics.set_replica_lag(&server.label, lag);
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SampleError {
    #[error(transparent)]
    Connect(#[from] notify_db_connect::ConnectError),
    #[error(transparent)]
    Query(#[from] tokio_postgres::Error),
}

async fn sample(server: &mut Server) -> Result<f64, SampleError> {
    let client = match server.client.take() {
        Some(c) if !c.is_closed() => c,
        _ => {
            connect_one(&server.settings.bulk, &server.settings, Bind::Bulk)
                .await?
                .0
        }
    };
    // One round trip: an unnamed statement, no prepare.
    let rows = client.query_typed(REPLICA_LAG_SQL, &[]).await?;
    let lag = match rows.first() {
        Some(row) => row.try_get::<_, f64>(0)?,
        None => f64::NAN,
    };
    server.client = Some(client);
    Ok(lag)
}
