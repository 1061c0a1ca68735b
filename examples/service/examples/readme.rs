//! The README's "a service, start to finish" example, compiled (a test keeps the two identical).

use notify_db_config::Settings;
use notify_db_metrics::with_job_context;
use notify_db_migrate::{Migrator, Options, Target};
use notify_db_pool::Databases;
use std::sync::Arc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?; // SQLALCHEMY_DATABASE_URI, ..._BULK, DATABASE_*_MS...
    let uri = settings.migration_uri()?; // not through a transaction pooler; TLS per its sslmode
    let migrator = Migrator::new(notify_db_migrations::set()?, uri)?; // migrate on start (optional)
    let options = Options::from_settings(&settings.migrations);
    let migrator = migrator.with_options(options);
    migrator.upgrade(&Target::Head).await?;
    let metrics = Arc::new(notify_db_metrics::install(None)?); // render() it on GET /metrics
    let db = Databases::builder(&settings)
        .observer(metrics.observer())
        .build()
        .await?;
    with_job_context("my-app", "nightly-report", async {
        let bulk = db.bulk().get().await?; // a read-only session on a replica
        let row = bulk
            .query_one("SELECT count(*) FROM notifications", &[])
            .await?;
        let (sql, n) = (
            "UPDATE services SET message_limit = $1",
            row.get::<_, i64>(0),
        );
        db.default().get().await?.execute(sql, &[&n]).await?; // the primary
        anyhow::Ok(())
    })
    .await
}
