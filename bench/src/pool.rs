//! `cargo xtask bench pool`: pgbench -S vs bare deadpool-postgres vs our `default` pool, and the
//! time to open one connection (bare tokio-postgres vs ours with session setup).
//!
//! Everything runs against a private cluster (no replica) on 127.0.0.1 with `pgbench -i -s 10`
//! data; every client uses TCP to 127.0.0.1 and the pgbench -S query, prepared. Each client
//! loop is one checkout + one `SELECT abalance FROM pgbench_accounts WHERE aid = $1` per
//! transaction, like pgbench's.
//!
//! Throughput is measured in 5 interleaved rounds per method (a, b, c, a, b, c, ...) and the
//! median round is reported, because the machine is shared and load comes in bursts. Every
//! side is measured warm: our pools are opened and warmed before their rounds, and each pgbench
//! run gets a warm-up second (its logins, its cold backends) that is run but discarded: only its
//! progress reports after it are measured.
//!
//! Our pool runs with everything on: the tap, reset on return, the long-hold sampler. Also
//! reported: (e) the pool's own cost per checkout + statement-cache hit + return, without I/O.
//!
//! Knobs: `NOTIFY_BENCH_SECONDS` (default 10: total per method and N, split into rounds),
//! `NOTIFY_BENCH_CLIENTS` (default `1,8,32`), `NOTIFY_BENCH_RUNTIME=multi` (client runtime of
//! (b) and (c) with 2 workers when N > 1; by default current-thread, see [`runtime`]).
//!
//! For N > 1, pgbench runs with `-j 2` (a) and also with `-j 1` (a1), the shape of (c): one
//! thread driving every connection; and (c2) runs our pool in pgbench `-j 2`'s shape: two
//! threads, each with a current-thread runtime, its own pool of N/2 and N/2 clients; (t2) runs
//! tokio-postgres alone in that shape, one connection per client and no pool, the most any
//! pool on this driver can reach. Every method also reports its client and server CPU per
//! transaction (from `/proc`) and the share of the machine's CPU left idle, which say where a
//! throughput gap comes from when the client and the server share 2 cores.

use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use notify_db_config::Settings;
use notify_db_pool::{Bind, Databases, connect_one};
use notify_db_testdb::Endpoint;

use super::two_threads::two_threads;
use super::workload::{
    PGBENCH_WARM_UP, ROUNDS, Round, SCALE, SELECT, bench_cluster, bench_seconds, client_runtime,
    count_until_stop, drive, pgbench_init, pgbench_select, pgbench_threads, warm,
};
use super::{Figure, median};

/// Default client counts.
const CLIENTS: [usize; 3] = [1, 8, 32];
/// Connections opened per method for the connect-time figure.
const CONNECTS: usize = 60;

/// Runs the pool benchmarks, in an optimised build (see [`super::optimised`]).
pub(crate) fn run() -> Result<Vec<Figure>> {
    super::optimised("pool", measure)
}

fn measure() -> Result<Vec<Figure>> {
    let seconds = bench_seconds();
    let duration = Duration::from_secs(seconds);
    // `NOTIFY_BENCH_CLIENTS=1,8` runs only those client counts (default 1, 8, 32).
    let clients: Vec<usize> = std::env::var("NOTIFY_BENCH_CLIENTS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| CLIENTS.to_vec());
    eprintln!("bench pool: starting a private cluster");
    let (cluster, ep, pm) = bench_cluster("bench-pool")?;
    eprintln!("bench pool: pgbench -i -s {SCALE}");
    let pgbench = pgbench_init(&ep)?;

    let mut figures = Vec::new();
    let bench = |name: String, value: f64, unit: &str, ratio: Option<f64>, note: &str| Figure {
        bench: "pool".into(),
        name,
        value,
        unit: unit.into(),
        ratio,
        note: note.into(),
    };
    // Each method runs ROUNDS short rounds, interleaved a, b, c, a, b, c...; the median round
    // is reported, so a burst of background load hits one round of each rather than one method.
    let round_secs = (duration / ROUNDS as u32).as_secs().max(1);
    let round = Duration::from_secs(round_secs);
    for n in clients {
        eprintln!(
            "bench pool: N={n}: {ROUNDS} rounds of {round_secs} s each of pgbench, deadpool, ours"
        );
        let rt_b = runtime(n)?;
        let pool_b = rt_b.block_on(bare_pool(&ep, n))?;
        let rt_c = runtime(n)?;
        let pool_c = rt_c.block_on(our_pool(&ep, n))?;
        let (mut a, mut a1, mut b, mut c, mut c2, mut t2) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        let pgbench_j =
            |threads| pgbench_select(&pgbench, &ep, (n, threads), round_secs, pm, "prepared");
        for _ in 0..ROUNDS {
            a.push(pgbench_j(pgbench_threads(n))?);
            b.push(rt_b.block_on(bare_deadpool(&pool_b, n, round, pm))?);
            c.push(rt_c.block_on(ours(&pool_c, n, round, pm))?);
            if n > 1 {
                // (c)'s shape: one thread drives every connection.
                a1.push(pgbench_j(1)?);
                c2.push(ours_two_threads(&ep, n, round, pm)?);
                t2.push(bare_two_threads(&ep, n, round, pm)?);
            }
        }
        drop(pool_b);
        drop(pool_c);
        let show = |v: &[Round]| {
            v.iter()
                .map(|x| format!("{:.0}", x.tps))
                .collect::<Vec<_>>()
                .join(" ")
        };
        eprintln!(
            "bench pool: N={n} rounds (tps): a [{}] a1 [{}] b [{}] c [{}] c2 [{}] t2 [{}]",
            show(&a),
            show(&a1),
            show(&b),
            show(&c),
            show(&c2),
            show(&t2)
        );
        // CPU per transaction, client and server side (medians of rounds): where a gap in
        // throughput comes from when the 2 cores are saturated.
        let cpu = |v: &[Round]| {
            (
                median(v.iter().map(|r| r.client_us).collect()),
                median(v.iter().map(|r| r.server_us).collect()),
                median(v.iter().map(|r| r.idle).collect()),
            )
        };
        let (cpu_a, cpu_a1, cpu_b, cpu_c) = (cpu(&a), cpu(&a1), cpu(&b), cpu(&c));
        let (cpu_c2, cpu_t2) = (cpu(&c2), cpu(&t2));
        let tps = |v: Vec<Round>| median(v.into_iter().map(|r| r.tps).collect());
        let has_c2 = !c2.is_empty();
        let (a, a1, b, c, c2, t2) = (tps(a), tps(a1), tps(b), tps(c), tps(c2), tps(t2));
        figures.push(bench(
            format!("N={n} (a) pgbench -S -M prepared"),
            a,
            "tps",
            None,
            &format!(
                "baseline, -j {}, warm: first {PGBENCH_WARM_UP} s of each run discarded (median of rounds)",
                pgbench_threads(n)
            ),
        ));
        if has_c2 {
            figures.push(bench(
                format!("N={n} (a1) pgbench -S -M prepared -j 1"),
                a1,
                "tps",
                Some(a1 / a),
                "a1/a: (c)'s shape, one thread driving every connection",
            ));
        }
        figures.push(bench(
            format!("N={n} (b) bare deadpool-postgres"),
            b,
            "tps",
            Some(b / a),
            &format!("b/a ({} runtime)", runtime_name(n)),
        ));
        figures.push(bench(
            format!("N={n} (c) ours vs pgbench"),
            c,
            "tps",
            Some(c / a),
            "c/a, target >= 0.90",
        ));
        if has_c2 {
            figures.push(bench(
                format!("N={n} (c) ours vs pgbench -j 1"),
                c,
                "tps",
                Some(c / a1),
                "c/a1: the same shape, one thread",
            ));
        }
        figures.push(bench(
            format!("N={n} (c) ours vs deadpool"),
            c,
            "tps",
            Some(c / b),
            "c/b, target >= 0.97",
        ));
        if has_c2 {
            figures.push(bench(
                format!("N={n} (c2) ours, 2 threads x pool of N/2"),
                c2,
                "tps",
                Some(c2 / a),
                "c2/a: pgbench -j 2's shape (a current-thread runtime and a pool per thread)",
            ));
            figures.push(bench(
                format!("N={n} (t2) tokio-postgres alone, 2 threads"),
                t2,
                "tps",
                Some(t2 / a),
                "t2/a: the driver without a pool in pgbench -j 2's shape, what a pool on it can reach",
            ));
            figures.push(bench(
                format!("N={n} (c2) ours vs tokio-postgres alone"),
                c2,
                "tps",
                Some(c2 / t2),
                "c2/t2: the pool's cost in the same shape",
            ));
        }
        let mut cpus = vec![("(a) pgbench", cpu_a)];
        if has_c2 {
            cpus.push(("(a1) pgbench -j 1", cpu_a1));
        }
        cpus.extend([("(b) deadpool", cpu_b), ("(c) ours", cpu_c)]);
        if has_c2 {
            cpus.push(("(c2) ours, 2 threads", cpu_c2));
            cpus.push(("(t2) tokio-postgres, 2 threads", cpu_t2));
        }
        for (label, (client, server, idle)) in cpus {
            figures.push(bench(
                format!("N={n} {label} client CPU"),
                client,
                "us/txn",
                Some(client / cpu_a.0),
                &format!(
                    "/ pgbench's; server CPU {server:.1} us/txn ({:.2} of pgbench's); CPUs idle {:.1} %; medians of rounds",
                    server / cpu_a.1,
                    idle * 100.0
                ),
            ));
        }
    }

    eprintln!("bench pool: checkout + return without a query, {CHECKOUTS} each");
    let (b_ns, c_ns) = runtime(1)?.block_on(checkout_cost(&ep))?;
    figures.push(bench(
        "(e) checkout+return: bare deadpool-postgres".into(),
        b_ns,
        "ns/checkout",
        None,
        "baseline (get + prepare_cached hit + drop, no I/O)",
    ));
    figures.push(bench(
        "(e) checkout+return: ours".into(),
        c_ns,
        "ns/checkout",
        Some(c_ns / b_ns),
        "ours/bare (lower is better)",
    ));

    eprintln!("bench pool: reset on return, {RESETS} checkouts each");
    let (explicit_us, reset_us) = runtime(1)?.block_on(reset_cost(&ep))?;
    figures.push(bench(
        "(f) BEGIN + ROLLBACK by the holder".into(),
        explicit_us,
        "us/checkout",
        None,
        "baseline (pool of 1; best of 5)",
    ));
    figures.push(bench(
        "(f) BEGIN left open: rolled back on return".into(),
        reset_us,
        "us/checkout",
        Some(reset_us / explicit_us),
        "reset path / baseline (the next get() waits for the reset task)",
    ));

    eprintln!("bench pool: connection open time, {CONNECTS} each, interleaved");
    let [bare, plain, prefer] = runtime(1)?.block_on(open_times(&ep))?;
    figures.push(bench(
        "(d) open: bare tokio-postgres".into(),
        bare.median,
        "ms/connection",
        None,
        &format!("baseline (NoTls, TCP, scram; median, min {:.3})", bare.min),
    ));
    figures.push(bench(
        "(d) open: ours + setup, sslmode=disable".into(),
        plain.median,
        "ms/connection",
        Some(plain.median / bare.median),
        &format!(
            "ours/bare of medians, target <= 1.15 (of minimums: {:.3})",
            plain.min / bare.min
        ),
    ));
    figures.push(bench(
        "(d) open: ours + setup, sslmode=prefer".into(),
        prefer.median,
        "ms/connection",
        Some(prefer.median / bare.median),
        &format!(
            "ours/bare, default sslmode, server ssl=off (of minimums: {:.3})",
            prefer.min / bare.min
        ),
    ));
    drop(cluster);
    Ok(figures)
}

/// The client runtime for (b) and (c) with `clients` clients, the same for both:
/// current-thread, unless `NOTIFY_BENCH_RUNTIME=multi` asks for 2 workers when N > 1. Measured
/// here, tokio's 2-worker scheduler costs 40 % more client CPU per transaction (cross-worker
/// wake-ups) than current-thread, which matches pgbench's per-transaction CPU; on 2 cores
/// shared with the server that CPU is throughput. (c2) gives pgbench `-j 2`'s two threads.
pub(super) fn runtime(clients: usize) -> Result<tokio::runtime::Runtime> {
    client_runtime(current_thread(clients))
}

fn current_thread(clients: usize) -> bool {
    clients == 1 || std::env::var("NOTIFY_BENCH_RUNTIME").map_or(true, |v| v != "multi")
}

fn runtime_name(clients: usize) -> &'static str {
    if current_thread(clients) {
        "current-thread"
    } else {
        "multi-thread x2"
    }
}

/// (b)'s pool: bare deadpool-postgres (Fast recycling), size N, N connections opened.
async fn bare_pool(ep: &Endpoint, n: usize) -> Result<deadpool_postgres::Pool> {
    use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
    let mgr = Manager::from_config(
        ep.pg_config("postgres"),
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(mgr)
        .max_size(n)
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(Duration::from_secs(30)),
            create: None,
            recycle: None,
        })
        .build()
        .context("building the deadpool-postgres pool")?;
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(
            pool.get()
                .await
                .context("opening the deadpool connections")?,
        );
    }
    drop(held);
    Ok(pool)
}

/// (b): one round on bare deadpool-postgres with `prepare_cached`.
async fn bare_deadpool(
    pool: &deadpool_postgres::Pool,
    n: usize,
    duration: Duration,
    postmaster: u32,
) -> Result<Round> {
    drive(n, duration, postmaster, |phase, seed| {
        let pool = pool.clone();
        count_until_stop(phase, seed, move |aid| {
            let pool = pool.clone();
            async move {
                let c = pool.get().await.context("deadpool get")?;
                let stmt = c.prepare_cached(SELECT).await?;
                let row = c.query_one(&stmt, &[&aid]).await?;
                let _: i32 = row.get(0);
                Ok(())
            }
        })
    })
    .await
}

fn settings_for(ep: &Endpoint, query: &str) -> Result<Settings> {
    let uri = format!("{}{query}", ep.uri("postgres"));
    let env = |k: &str| match k {
        "SQLALCHEMY_DATABASE_URI" => Some(uri.clone()),
        "NOTIFY_ENVIRONMENT" => Some("test".to_owned()),
        _ => None,
    };
    Settings::load(None, &env).context("building settings for the benchmark")
}

/// (c)'s pool: our `default` pool, size N, `sslmode=disable` like the baselines, N connections
/// opened.
async fn our_pool(ep: &Endpoint, n: usize) -> Result<Databases> {
    warm(settings_for(ep, "?sslmode=disable")?, n).await
}

/// (c): one round on our `default` pool with `prepare_cached`.
async fn ours(dbs: &Databases, n: usize, duration: Duration, postmaster: u32) -> Result<Round> {
    drive(n, duration, postmaster, |phase, seed| {
        our_client(dbs.default().clone(), phase, seed)
    })
    .await
}

/// One client of (c): checkout, the cached statement, one row, return; until told to stop.
async fn our_client(pool: notify_db_pool::Pool, phase: Arc<AtomicU8>, seed: u64) -> Result<u64> {
    count_until_stop(phase, seed, |aid| {
        let pool = pool.clone();
        async move {
            let c = pool.get().await?;
            let stmt = c.prepare_cached(SELECT).await?;
            let row = c.query_one(&stmt, &[&aid]).await?;
            let _: i32 = row.get(0);
            Ok(())
        }
    })
    .await
}

/// (c2): pgbench `-j 2`'s shape with our `default` pool: a pool of n/2 per thread.
fn ours_two_threads(ep: &Endpoint, n: usize, duration: Duration, postmaster: u32) -> Result<Round> {
    two_threads(
        ep,
        n,
        duration,
        postmaster,
        |ep, k| async move { our_pool(&ep, k).await },
        |dbs: &Databases, _, phase, seed| our_client(dbs.default().clone(), phase, seed),
    )
}

/// (t2): the driver alone in pgbench `-j 2`'s shape: tokio-postgres, no pool, each client its
/// own connection and prepared statement, as each pgbench client has. What any pool on this
/// driver can reach.
fn bare_two_threads(ep: &Endpoint, n: usize, duration: Duration, postmaster: u32) -> Result<Round> {
    two_threads(
        ep,
        n,
        duration,
        postmaster,
        |ep, k| async move {
            let mut clients = Vec::with_capacity(k);
            for _ in 0..k {
                let client = ep
                    .connect("postgres")
                    .await
                    .context("connecting a bare tokio-postgres client")?;
                let stmt = client.prepare(SELECT).await?;
                clients.push(Arc::new((client, stmt)));
            }
            Ok(clients)
        },
        |clients: &Vec<Arc<(tokio_postgres::Client, tokio_postgres::Statement)>>,
         i,
         phase,
         seed| {
            let own = clients[i].clone();
            count_until_stop(phase, seed, move |aid| {
                let own = own.clone();
                async move {
                    let row = own.0.query_one(&own.1, &[&aid]).await?;
                    let _: i32 = row.get(0);
                    Ok(())
                }
            })
        },
    )
}

/// Checkouts per method for the checkout-cost figure.
const CHECKOUTS: u32 = 200_000;

/// (e): ns per checkout + `prepare_cached` hit + return, no query, pool of 1: the pool's own
/// hot-path cost, nearly free of server noise. Best of 5 interleaved runs.
async fn checkout_cost(ep: &Endpoint) -> Result<(f64, f64)> {
    let bare = bare_pool(ep, 1).await?;
    let ours = our_pool(ep, 1).await?;
    {
        let c = bare.get().await.context("deadpool get")?;
        c.prepare_cached(SELECT).await?;
        let c = ours.default().get().await?;
        c.prepare_cached(SELECT).await?;
    }
    let (mut b_best, mut c_best) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..CHECKOUTS {
            let c = bare.get().await.context("deadpool get")?;
            std::hint::black_box(c.prepare_cached(SELECT).await?);
        }
        b_best = b_best.min(t.elapsed().as_nanos() as f64 / f64::from(CHECKOUTS));
        let t = Instant::now();
        for _ in 0..CHECKOUTS {
            let c = ours.default().get().await?;
            std::hint::black_box(c.prepare_cached(SELECT).await?);
        }
        c_best = c_best.min(t.elapsed().as_nanos() as f64 / f64::from(CHECKOUTS));
    }
    Ok((b_best, c_best))
}

const RESETS: u32 = 2_000;

/// (f): us per checkout whose holder leaves a transaction open (`BEGIN`, then the connection
/// dropped: the pool's reset task rolls it back before anyone else gets it), against a holder
/// that sends the `ROLLBACK` itself: the same two round trips, so the ratio is the reset path's
/// own cost (the spawned task, the tap's wake-up). Pool of 1, best of 5 interleaved runs.
async fn reset_cost(ep: &Endpoint) -> Result<(f64, f64)> {
    let dbs = our_pool(ep, 1).await?;
    let pool = dbs.default();
    let per = |t: Instant| t.elapsed().as_nanos() as f64 / 1e3 / f64::from(RESETS);
    let (mut explicit, mut reset) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..RESETS {
            let c = pool.get().await?;
            c.batch_execute("BEGIN").await?;
            c.batch_execute("ROLLBACK").await?;
        }
        explicit = explicit.min(per(t));
        let t = Instant::now();
        for _ in 0..RESETS {
            pool.get().await?.batch_execute("BEGIN").await?;
        }
        // The last reset ends when its slot is free again.
        drop(pool.get().await?);
        reset = reset.min(per(t));
    }
    Ok((explicit, reset))
}

/// Median and minimum of a sample, in ms.
#[derive(Clone, Copy, Default)]
struct Sample {
    median: f64,
    min: f64,
}

impl Sample {
    fn of(v: Vec<f64>) -> Sample {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        Sample {
            median: median(v),
            min,
        }
    }
}

/// (d): ms to open one connection: bare `tokio_postgres::Config::connect(NoTls)` vs our
/// `connect_one` (with session setup) at sslmode=disable and at the default sslmode=prefer.
/// The three methods are interleaved so that background load hits them alike; one warm-up
/// connection each is not counted.
async fn open_times(ep: &Endpoint) -> Result<[Sample; 3]> {
    let config = ep.pg_config("postgres");
    let plain = settings_for(ep, "?sslmode=disable")?;
    let prefer = settings_for(ep, "")?;
    let mut samples: [Vec<f64>; 3] = Default::default();
    for i in 0..=CONNECTS {
        let t = Instant::now();
        let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
        let task = tokio::spawn(conn);
        let bare = t.elapsed();
        drop(client);
        let _ = task.await;
        if i > 0 {
            samples[0].push(bare.as_secs_f64() * 1000.0);
        }
        for (k, s) in [(1, &plain), (2, &prefer)] {
            let t = Instant::now();
            let (client, _info) = connect_one(&s.primary, s, Bind::Default).await?;
            let took = t.elapsed();
            drop(client);
            if i > 0 {
                samples[k].push(took.as_secs_f64() * 1000.0);
            }
        }
    }
    Ok(samples.map(Sample::of))
}
