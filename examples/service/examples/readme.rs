//! The README's "a service in 20 lines" example, compiled (a test keeps the two identical).

use std::{sync::Arc, time::Duration};
use notify_db_config::Settings;
use notify_db_migrate::{Migrator, Options, Target};
use notify_db_pool::Databases;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?; // SQLALCHEMY_DATABASE_URI, ..._BULK, DATABASE_*_MS, ...
    Migrator::new(notify_db_migrations::set()?)              // migrate on start (optional)
        .with_options(Options::from_settings(&settings.migrations))
        .upgrade(&settings.primary.to_pg_config(), &Target::Head).await?;
    let metrics = Arc::new(notify_db_metrics::install(None)?); // serve metrics.render() on /metrics
    let db = Databases::builder(&settings).observer(metrics.observer()).build().await?;
    let _lag = notify_db_metrics::ReplicaLagSampler::spawn(&settings, Duration::from_secs(15), metrics.observer());
    notify_db_metrics::with_job_context("my-app", "nightly-report", async {
        let conn = db.bulk().get().await?;                   // read-only replica session
        let n: i64 = conn.query_one("SELECT count(*) FROM notifications", &[]).await?.get(0);
        db.default().get().await?.execute("INSERT INTO jobs_done (n) VALUES ($1)", &[&n]).await?;
        anyhow::Ok(())
    }).await
}
