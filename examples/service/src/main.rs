//! The example service's binary: `SQLALCHEMY_DATABASE_URI=... cargo run -p notify-db-example-service`.
//! `LISTEN_ADDR` (default 127.0.0.1:6011), `MIGRATE_ON_START=1` to migrate before serving.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use notify_db_config::Settings;
use notify_db_example_service::{AppState, app, migrate_on_start};
use notify_db_pool::Databases;

/// How often each bulk host's replay lag is sampled for the metrics.
const LAG_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let settings = Settings::from_env()?;
    if std::env::var("MIGRATE_ON_START").is_ok_and(|v| v == "1") {
        migrate_on_start(&settings)
            .await
            .context("migrating on start")?;
    }
    let metrics = Arc::new(notify_db_metrics::install(None)?);
    let db = Databases::builder(&settings)
        .observer(metrics.observer())
        .build()
        .await?;
    // `db_replica_lag_seconds` of every bulk host (the replica-lag alert and dashboard panel),
    // also with a single bulk host, where the pool's lag-aware routing (which reports it too)
    // is off.
    let _lag = notify_db_metrics::ReplicaLagSampler::spawn(
        &settings,
        LAG_SAMPLE_INTERVAL,
        metrics.observer(),
    );
    let addr = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:6011".into());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    // The first line on stdout says where we listen (tests read it when LISTEN_ADDR ends in :0).
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app(AppState { db, metrics }))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
