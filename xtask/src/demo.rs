//! `cargo xtask demo`: the main job on an embedded default. Starts a local primary + streaming
//! replica (or uses SQLALCHEMY_DATABASE_URI), creates and migrates `notification_api`, runs a
//! short mixed workload through both pools, and shows `current`, replica lag and `/metrics`;
//! a Prometheus with ops/prometheus's rules scrapes it (its graph URL and the dashboard's path
//! are printed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify_db_config::Settings;
use notify_db_metrics::{MetricsHandle, RequestContext, with_job_context, with_request_context};
use notify_db_migrate::{Migrator, Options, Target};
use notify_db_pool::{Databases, REPLICA_LAG_SQL};
use notify_db_testdb::{Cluster, Prometheus, serve_exposition};

use crate::util;

/// Arguments of `cargo xtask demo`.
#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// Exit after the workload instead of serving /metrics until Ctrl-C.
    #[arg(long)]
    no_wait: bool,
}

/// Runs the demo.
pub(crate) fn run(args: DemoArgs) -> Result<()> {
    let configured = std::env::var("SQLALCHEMY_DATABASE_URI").is_ok_and(|v| !v.trim().is_empty());
    // Our own throwaway clusters unless the user configured a database.
    let mut cluster = None;
    let settings = if configured {
        let s = Settings::from_env()?;
        println!(
            "Using the database in SQLALCHEMY_DATABASE_URI: {}",
            s.primary
        );
        s
    } else {
        println!(
            "SQLALCHEMY_DATABASE_URI is not set: starting a local primary + streaming replica"
        );
        let c = Cluster::builder().label("demo").replica(true).start()?;
        let p = c.primary().endpoint().clone();
        let r = c
            .replica()
            .context("replica did not start")?
            .endpoint()
            .clone();
        println!(
            "  primary 127.0.0.1:{}  replica 127.0.0.2:{}",
            p.port, r.port
        );
        util::runtime()?.block_on(async {
            let admin = p.connect("postgres").await?;
            admin
                .batch_execute("CREATE DATABASE notification_api")
                .await
                .context("creating notification_api")?;
            anyhow::Ok(())
        })?;
        let env: HashMap<&str, String> = [
            ("NOTIFY_ENVIRONMENT", "development".to_string()),
            ("SQLALCHEMY_DATABASE_URI", p.uri("notification_api")),
            ("SQLALCHEMY_DATABASE_URI_BULK", r.uri("notification_api")),
        ]
        .into();
        c.wait_for_replica()?;
        cluster = Some(c);
        Settings::load(None, &|k| env.get(k).cloned())?
    };
    let rt = util::runtime()?;
    let result = rt.block_on(main_job(&settings, args.no_wait));
    if let Some(c) = cluster {
        c.stop()?;
        println!("stopped the local clusters");
    }
    result
}

async fn main_job(settings: &Settings, no_wait: bool) -> Result<()> {
    // 1. Migrate to head, one progress line per migration.
    println!("\n== migrate to head");
    let migrator = Migrator::new(notify_db_migrations::set()?, settings.migration_uri()?)?
        .with_options(Options::from_settings(&settings.migrations))
        .on_progress(|a| {
            println!(
                "  {:<40} {:>8.1} ms",
                a.id,
                a.duration.as_secs_f64() * 1000.0
            )
        });
    let report = migrator.upgrade(&Target::Head).await?;
    if report.applied.is_empty() {
        println!("  already at head");
    }

    // 2. Both pools, observed by the metrics.
    let metrics = Arc::new(MetricsHandle::new());
    let db = Databases::builder(settings)
        .observer(metrics.observer())
        .build()
        .await?;

    println!("\n== workload");
    let ctx = RequestContext::new("POST", "demo.local", "/services");
    let written = with_request_context(ctx, async {
        let conn = db.default().get().await?;
        let mut n = 0;
        for i in 0..20 {
            conn.execute(
                "INSERT INTO services (name, message_limit, email_from) VALUES ($1::text, 1000, $1::text) \
                 ON CONFLICT (name) DO NOTHING",
                &[&format!("demo-service-{i}")],
            )
            .await?;
            n += 1;
        }
        anyhow::Ok(n)
    })
    .await?;
    println!("  default: wrote {written} services on the primary");
    tokio::time::sleep(Duration::from_millis(200)).await;
    with_job_context("notify-demo", "count-services", async {
        let conn = db.bulk().get().await?;
        let count: i64 = conn
            .query_one("SELECT count(*) FROM services", &[])
            .await?
            .get(0);
        println!(
            "  bulk:    read {count} services on {} (in recovery: {})",
            conn.server_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|| "a Unix socket".into()),
            conn.in_recovery()
        );
        match conn
            .execute(
                "INSERT INTO services (name, message_limit, email_from) VALUES ('x', 1, 'x')",
                &[],
            )
            .await
        {
            Err(e) => println!(
                "  bulk:    a write is refused, as expected: SQLSTATE {} {}",
                e.code().map(|c| c.code()).unwrap_or("?"),
                e.as_db_error().map(|d| d.message()).unwrap_or("")
            ),
            Ok(_) => {
                anyhow::bail!("a write on the bulk pool succeeded: bulk sessions must be read-only")
            }
        }
        anyhow::Ok(())
    })
    .await?;

    // 3. State: current revision, replica lag, metrics.
    println!("\n== current");
    println!(
        "  {}",
        migrator.current().await?.unwrap_or_else(|| "base".into())
    );
    println!("\n== replica lag");
    {
        let conn = db.bulk().get().await?;
        let row = conn
            .query_one(
                &format!("SELECT pg_is_in_recovery(), ({REPLICA_LAG_SQL})"),
                &[],
            )
            .await?;
        let (rec, lag): (bool, f64) = (row.get(0), row.get(1));
        if rec {
            println!(
                "  {lag:.3} s behind the primary (0 when the replica has replayed all it received)"
            );
        } else {
            println!("  bulk is the primary (no replica configured): no lag");
        }
    }
    println!("\n== /metrics (db_ lines)");
    for line in metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("db_") && !l.contains("_bucket{"))
    {
        println!("  {line}");
    }
    // 4. /metrics on a loopback port, scraped by a Prometheus with the alert rules.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let exposition = Arc::clone(&metrics);
    let serving = tokio::spawn(serve_exposition(listener, move || {
        let body = exposition.render().into_bytes();
        async move { body }
    }));
    let prom = start_prometheus(&addr.to_string())?;
    if no_wait {
        prom.wait_for_scrape(DEMO_JOB, Duration::from_secs(30))
            .await?;
        println!("  Prometheus scraped the demo's /metrics");
        serving.abort();
        return Ok(());
    }
    println!("\nServing /metrics on http://{addr}/metrics — press Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    serving.abort();
    // Dropping `prom` stops Prometheus; `run` stops the clusters.
    drop(prom);
    println!("stopped Prometheus");
    Ok(())
}

/// The queries the graph page opens with: pool use against its size, wait time, replica lag.
const KEY_QUERIES: &[&str] = &[
    "job_instance_bind:db_connection_checked_out:sum",
    "job_instance_bind:db_pool_max_size:max",
    "job_instance_bind:db_pool_wait_seconds:p99_5m",
    "db_replica_lag_seconds",
    "ALERTS",
];

/// Starts Prometheus with ops/prometheus's rules, scraping `target`, and prints where to look.
fn start_prometheus(target: &str) -> Result<Prometheus> {
    let ops = util::root().join("ops");
    let read = |rel: &str| {
        std::fs::read_to_string(ops.join(rel)).with_context(|| format!("reading ops/{rel}"))
    };
    let prom = Prometheus::builder()
        .rules("recording.yml", &read("prometheus/recording.yml")?)
        .rules("alerts.yml", &read("prometheus/alerts.yml")?)
        .scrape(DEMO_JOB, target)
        .interval(Duration::from_secs(5))
        .start()
        .context("starting Prometheus (Debian package `prometheus`)")?;
    println!("\n== Prometheus (rules: ops/prometheus/alerts.yml, recording.yml)");
    println!("  graph:  {}", prom.graph_url(KEY_QUERIES));
    println!("  alerts: {}/alerts", prom.url());
    println!(
        "  Grafana dashboard to import: {}",
        ops.join("grafana/notify-db.json").display()
    );
    Ok(prom)
}

/// The job name of the demo's scrape target.
const DEMO_JOB: &str = "notify-db-demo";
