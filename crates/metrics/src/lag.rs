//! [`ReplicaLagSampler`]: a background task sampling each bulk server's replay lag into
//! `db_replica_lag_seconds`.

use std::sync::Arc;
use std::time::Duration;

use notify_db_config::{DatabaseUri, Settings};
use tokio::task::JoinHandle;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Socket};

use crate::observer::DbMetrics;

/// The lag of one server in seconds: 0 on a primary, 0 on a replica that has replayed all it
/// received (caught up, even when idle for hours), else the age of the last replayed
/// transaction (`now() - pg_last_xact_replay_timestamp()`).
const LAG_SQL: &str = "SELECT CASE \
    WHEN NOT pg_is_in_recovery() THEN 0 \
    WHEN pg_last_wal_receive_lsn() IS NOT NULL AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
    ELSE GREATEST(0, COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)) \
    END::float8";

/// Samples `db_replica_lag_seconds{bind="bulk",host="host:port"}` for every host of the bulk
/// URI, every `interval`, over one connection of its own per host (not taken from the pools).
///
/// The value is 0 on a replica that has replayed all the WAL it received (caught up, also when
/// idle), the seconds since the last replayed transaction while it is behind, 0 for a primary
/// (e.g. bulk falling back to the primary), and NaN while the server cannot be reached or
/// queried. The task stops when this value is dropped.
#[derive(Debug)]
pub struct ReplicaLagSampler {
    task: JoinHandle<()>,
}

impl ReplicaLagSampler {
    /// Starts sampling the bulk hosts of `settings` every `interval` (within a tokio runtime),
    /// connecting with `tls` (`tokio_postgres::NoTls` when the bulk URI does not use TLS).
    pub fn spawn<T>(
        settings: &Settings,
        tls: T,
        interval: Duration,
        metrics: Arc<DbMetrics>,
    ) -> ReplicaLagSampler
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let servers: Vec<Server<T>> = settings
            .bulk
            .hosts()
            .iter()
            .map(|h| Server {
                label: format!("{}:{}", h.host, h.port),
                config: one_host(
                    &settings.bulk,
                    h.clone(),
                    settings.pool.connect_timeout,
                    &settings.pool.application_name,
                ),
                client: None,
                tls: tls.clone(),
            })
            .collect();
        let timeout = settings.pool.connect_timeout.max(Duration::from_secs(1));
        let task = tokio::spawn(run(servers, interval, timeout, metrics));
        ReplicaLagSampler { task }
    }
}

impl Drop for ReplicaLagSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn one_host(
    uri: &DatabaseUri,
    host: notify_db_config::HostPort,
    connect_timeout: Duration,
    application_name: &str,
) -> tokio_postgres::Config {
    let mut config = uri.with_hosts(vec![host]).to_pg_config();
    config.connect_timeout(connect_timeout);
    config.application_name(format!("{application_name}-replica-lag"));
    config
}

struct Server<T> {
    label: String,
    config: tokio_postgres::Config,
    client: Option<Client>,
    tls: T,
}

async fn run<T>(
    mut servers: Vec<Server<T>>,
    interval: Duration,
    timeout: Duration,
    metrics: Arc<DbMetrics>,
) where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
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

async fn sample<T>(server: &mut Server<T>) -> Result<f64, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let client = match server.client.take() {
        Some(c) if !c.is_closed() => c,
        _ => {
            let (client, connection) = server.config.connect(server.tls.clone()).await?;
            let label = server.label.clone();
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(server = %label, error = %e, "replica lag connection closed");
                }
            });
            client
        }
    };
    // One round trip: an unnamed statement, no prepare.
    let rows = client.query_typed(LAG_SQL, &[]).await?;
    let lag = match rows.first() {
        Some(row) => row.try_get::<_, f64>(0)?,
        None => f64::NAN,
    };
    server.client = Some(client);
    Ok(lag)
}
