//! `cargo xtask bench metrics`: what the metrics observer costs. Our `default` pool with and
//! without `MetricsHandle::observer()`, on a private cluster (no replica):
//!
//! - checkout + return with no query (the observer's whole cost, per operation), 8 tasks;
//! - checkout + a prepared `SELECT 1` (the cost as part of a real round trip), 8 tasks;
//! - one `render()` of `/metrics` after that traffic.
//!
//! Rounds are interleaved (without, with, without, with...) and the median is reported. Like the
//! pool benchmark, a debug xtask re-runs itself with `--release` so our crates are optimised.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use notify_db_config::Settings;
use notify_db_metrics::MetricsHandle;
use notify_db_pool::Databases;
use notify_db_testdb::{Cluster, Endpoint};

use super::{Figure, median};

const TASKS: usize = 8;
const ROUNDS: usize = 5;
const RENDERS: usize = 2_000;

/// Runs the metrics-overhead benchmark (in an optimised build).
pub(crate) fn run() -> Result<Vec<Figure>> {
    super::optimised("metrics", measure)
}

fn settings_for(ep: &Endpoint) -> Result<Settings> {
    let uri = format!("{}?sslmode=disable", ep.uri("postgres"));
    let env = |k: &str| match k {
        "SQLALCHEMY_DATABASE_URI" => Some(uri.clone()),
        "NOTIFY_ENVIRONMENT" => Some("test".to_owned()),
        _ => None,
    };
    let mut s = Settings::load(None, &env).context("building settings for the benchmark")?;
    s.pool.size = TASKS;
    Ok(s)
}

/// Operations per second of `TASKS` tasks doing checkout (+ `SELECT 1` when `query`) + return.
async fn round(dbs: &Databases, query: bool, length: Duration) -> Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let pool = dbs.default().clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let c = pool.get().await?;
                if query {
                    let stmt = c.prepare_cached("SELECT 1").await?;
                    let _: i32 = c.query_one(&stmt, &[]).await?.get(0);
                }
                drop(c);
                n += 1;
                if n.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
            anyhow::Ok(n)
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for t in tasks {
        total += t.await.context("benchmark task")??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

fn measure() -> Result<Vec<Figure>> {
    let seconds: f64 = std::env::var("NOTIFY_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&s: &f64| s > 0.0)
        .unwrap_or(10.0);
    // Each (mode, observer) pair gets ROUNDS rounds; the whole run takes about `seconds` x 2.
    let length = Duration::from_secs_f64((seconds / ROUNDS as f64 / 2.0).max(0.2));
    eprintln!("bench metrics: starting a private cluster");
    let cluster = Cluster::builder()
        .label("bench-metrics")
        .replica(false)
        .start()
        .context("starting a private PostgreSQL cluster for the metrics benchmark")?;
    let ep = cluster.primary().endpoint().clone();
    let settings = settings_for(&ep)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the benchmark runtime")?;
    rt.block_on(async {
        let plain = Databases::connect(&settings)
            .await
            .context("building the pool without observer")?;
        let metrics = MetricsHandle::new();
        let observed = Databases::builder(&settings)
            .observer(metrics.observer())
            .build()
            .await
            .context("building the pool with the metrics observer")?;
        let mut figures = Vec::new();
        let fig = |name: &str, value: f64, unit: &str, ratio: Option<f64>, note: &str| Figure {
            bench: "metrics".into(),
            name: name.into(),
            value,
            unit: unit.into(),
            ratio,
            note: note.into(),
        };
        for (query, what) in [(false, "checkout+return"), (true, "checkout+SELECT 1")] {
            eprintln!(
                "bench metrics: {what}, {TASKS} tasks, {ROUNDS} rounds of {length:?} each way"
            );
            // Warm both pools (all connections open, statements cached).
            round(&plain, query, Duration::from_millis(200)).await?;
            round(&observed, query, Duration::from_millis(200)).await?;
            let (mut without, mut with) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                without.push(round(&plain, query, length).await?);
                with.push(round(&observed, query, length).await?);
            }
            let (a, b) = (median(without), median(with));
            let (ns_a, ns_b) = (1e9 / a, 1e9 / b);
            figures.push(fig(
                &format!("{what} N={TASKS} no observer"),
                ns_a,
                "ns/op",
                None,
                "baseline: our pool without observer",
            ));
            figures.push(fig(
                &format!("{what} N={TASKS} metrics observer"),
                ns_b,
                "ns/op",
                Some(ns_b / ns_a),
                &format!(
                    "with/without; observer adds {:.0} ns/op (target: <5% with a query)",
                    ns_b - ns_a
                ),
            ));
        }
        let started = Instant::now();
        let mut bytes = 0;
        for _ in 0..RENDERS {
            bytes += metrics.render().len();
        }
        let per = started.elapsed().as_secs_f64() * 1e6 / RENDERS as f64;
        figures.push(fig(
            "render /metrics",
            per,
            "us/render",
            None,
            &format!("{} bytes of text per render", bytes / RENDERS),
        ));
        anyhow::Ok(figures)
    })
}
