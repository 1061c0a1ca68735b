//! `cargo xtask bench pgbouncer`: through one PgBouncer in transaction mode, `pgbench -S -M
//! extended` (prepared statements do not survive transaction pooling before PgBouncer 1.21)
//! against our `default` pool in pooler mode (`query_typed`: unnamed, one round trip), at 8 and
//! 32 clients; and the same two directly against the server, for the cost of going through
//! PgBouncer per transaction. Target: ours >= 0.90x pgbench through PgBouncer.
//!
//! A private cluster with `pgbench -i -s 10` data; PgBouncer's database `postgres` leads to it,
//! with enough server connections for every client (`default_pool_size` 32), so the figures
//! measure the pooler's cost, not a queue. Rounds interleaved, medians reported, as in
//! `bench pool`. Knobs: `NOTIFY_BENCH_SECONDS` (default 10 per method and N),
//! `NOTIFY_BENCH_RUNTIME=current` (one client thread instead of pgbench `-j 2`'s two).

use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::Duration;

use anyhow::{Context, Result};
use notify_db_config::Settings;
use notify_db_pool::Databases;
use notify_db_testdb::{Endpoint, PgBouncer};
use tokio_postgres::types::Type;

use super::workload::{
    ROUNDS, Round, SELECT, bench_cluster, bench_seconds, client_runtime, count_until_stop, drive,
    pgbench_init, pgbench_select, pgbench_threads, warm,
};
use super::{Figure, median};

/// Client counts.
const CLIENTS: [usize; 2] = [8, 32];
/// Statement timeout the pooled server connections get from PgBouncer's connect_query (the
/// pool's default, which it checks).
const TIMEOUT_MS: u64 = 1_200_000;

/// PgBouncer's database for the bulk pool (read-only server connections).
const BULK_DB: &str = "postgres_bulk";

/// Runs the PgBouncer benchmark, in an optimised build.
pub(crate) fn run() -> Result<Vec<Figure>> {
    super::optimised("pgbouncer", measure)
}

fn measure() -> Result<Vec<Figure>> {
    let seconds = bench_seconds();
    eprintln!("bench pgbouncer: starting a private cluster and a PgBouncer");
    // Held to the end: dropping it stops the server.
    let (_cluster, direct, pm) = bench_cluster("bench-bouncer")?;
    let bouncer = PgBouncer::builder()
        .database("postgres", &direct, "postgres")
        .connect_query(&format!("SET statement_timeout = {TIMEOUT_MS}"))
        .database(BULK_DB, &direct, "postgres")
        .connect_query(&format!(
            "SET statement_timeout = {TIMEOUT_MS}; SET default_transaction_read_only = on"
        ))
        .pool_size(32)
        .start()
        .context("starting PgBouncer (Debian package `pgbouncer`)")?;
    let via = bouncer.endpoint(&direct.user, &direct.password);
    let pgbench = pgbench_init(&direct)?;
    let round_secs = (seconds / ROUNDS as u64).max(1);
    let round = Duration::from_secs(round_secs);
    let fig = |name: String, value: f64, unit: &str, ratio: Option<f64>, note: &str| Figure {
        bench: "pgbouncer".into(),
        name,
        value,
        unit: unit.into(),
        ratio,
        note: note.into(),
    };
    let mut figures = Vec::new();
    for n in CLIENTS {
        eprintln!("bench pgbouncer: N={n}: {ROUNDS} rounds of {round_secs} s of 4 methods");
        let rt = runtime()?;
        let ours_via = rt.block_on(pool(&via, n, true))?;
        let ours_direct = rt.block_on(pool(&direct, n, false))?;
        let (mut a, mut b, mut c, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let pgbench_on = |ep| {
            pgbench_select(
                &pgbench,
                ep,
                (n, pgbench_threads(n)),
                round_secs,
                pm,
                "extended",
            )
            .map(|r| r.tps)
        };
        for _ in 0..ROUNDS {
            a.push(pgbench_on(&via)?);
            b.push(rt.block_on(ours(&ours_via, n, round, pm))?.tps);
            c.push(pgbench_on(&direct)?);
            d.push(rt.block_on(ours(&ours_direct, n, round, pm))?.tps);
        }
        drop((ours_via, ours_direct));
        let (a, b, c, d) = (median(a), median(b), median(c), median(d));
        // Per-transaction latency at N clients is N / tps; the pooler's cost is the difference.
        let cost_us = |via: f64, direct: f64| n as f64 * 1e6 * (1.0 / via - 1.0 / direct);
        figures.extend([
            fig(
                format!("N={n} pgbench -S -M extended via PgBouncer"),
                a,
                "tps",
                None,
                "baseline",
            ),
            fig(
                format!("N={n} ours (pooler mode) via PgBouncer"),
                b,
                "tps",
                Some(b / a),
                "target >= 0.90 (ours / pgbench, both through PgBouncer)",
            ),
            fig(
                format!("N={n} pgbench: PgBouncer cost"),
                cost_us(a, c),
                "us/txn",
                Some(a / c),
                &format!("direct {c:.0} tps; ratio via / direct"),
            ),
            fig(
                format!("N={n} ours: PgBouncer cost"),
                cost_us(b, d),
                "us/txn",
                Some(b / d),
                &format!("direct {d:.0} tps; ratio via / direct"),
            ),
        ]);
    }
    drop(bouncer);
    Ok(figures)
}

/// The client runtime: two worker threads, pgbench `-j 2`'s shape. With PgBouncer a third busy
/// process shares the 2 cores, and one client thread then gets a smaller share of them than
/// pgbench's two (measured: 0.69-0.72x at N=8 on one thread, 1.29x on two);
/// `NOTIFY_BENCH_RUNTIME=current` measures the one-thread shape.
fn runtime() -> Result<tokio::runtime::Runtime> {
    client_runtime(std::env::var("NOTIFY_BENCH_RUNTIME").is_ok_and(|v| v == "current"))
}

/// Our pool of `n` on `ep` (through a transaction pooler when `pooled`: bulk then on PgBouncer's
/// read-only database), all `n` default connections opened.
async fn pool(ep: &Endpoint, n: usize, pooled: bool) -> Result<Databases> {
    let uri = format!("{}?sslmode=disable", ep.uri("postgres"));
    let bulk = format!("{}?sslmode=disable", ep.uri(BULK_DB));
    let flag = pooled.to_string();
    let env = |k: &str| match k {
        "SQLALCHEMY_DATABASE_URI" => Some(uri.clone()),
        "SQLALCHEMY_DATABASE_URI_BULK" if pooled => Some(bulk.clone()),
        "DATABASE_URI_TRANSACTION_POOLER" | "DATABASE_URI_BULK_TRANSACTION_POOLER" => {
            Some(flag.clone())
        }
        "NOTIFY_ENVIRONMENT" => Some("test".to_owned()),
        _ => None,
    };
    warm(Settings::load(None, &env).context("benchmark settings")?, n).await
}

/// One round of our pool: checkout, the pgbench -S query as an unnamed statement, return.
async fn ours(dbs: &Databases, n: usize, duration: Duration, postmaster: u32) -> Result<Round> {
    drive(n, duration, postmaster, |phase, seed| {
        client(dbs.default().clone(), phase, seed)
    })
    .await
}

async fn client(pool: notify_db_pool::Pool, phase: Arc<AtomicU8>, seed: u64) -> Result<u64> {
    count_until_stop(phase, seed, |aid| {
        let pool = pool.clone();
        async move {
            let c = pool.get().await?;
            let rows = c.query_typed(SELECT, &[(&aid, Type::INT4)]).await?;
            let _: i32 = rows.first().context("no row")?.get(0);
            Ok(())
        }
    })
    .await
}
