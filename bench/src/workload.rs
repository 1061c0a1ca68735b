//! The workload the pool and PgBouncer benchmarks share: pgbench's `-S` query on its tables, run
//! by pgbench itself or by N client tasks of ours in interleaved rounds.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use notify_db_config::Settings;
use notify_db_pool::Databases;
use notify_db_testdb::{Cluster, Endpoint, find_bin_dir};

use super::cpu::{Cpu, cpu_now, cpu_per_txn, idle_share, proc_times};

/// The pgbench -S statement.
pub(super) const SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";

/// pgbench scale.
pub(super) const SCALE: i32 = 10;

/// Interleaved rounds per method and client count.
pub(super) const ROUNDS: usize = 5;

/// Phases of a throughput run, shared by its client tasks.
pub(super) const WARMUP: u8 = 0;
pub(super) const MEASURE: u8 = 1;
pub(super) const STOP: u8 = 2;

/// A client runtime: current-thread, or tokio's multi-thread scheduler with 2 workers.
pub(super) fn client_runtime(current_thread: bool) -> Result<tokio::runtime::Runtime> {
    let mut builder = if current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    };
    builder
        .enable_all()
        .build()
        .context("building the benchmark runtime")
}

/// Finds pgbench and fills its tables at [`SCALE`] in `ep`'s `postgres` database (`pgbench -i`);
/// returns pgbench's path.
pub(super) fn pgbench_init(ep: &Endpoint) -> Result<std::path::PathBuf> {
    let pgbench = find_bin_dir()
        .context("finding the PostgreSQL binaries (pgbench)")?
        .join("pgbench");
    let out = pgbench_cmd(&pgbench, ep)
        .args(["-i", "-q", "-s", &SCALE.to_string(), "postgres"])
        .output()
        .context("running pgbench -i")?;
    if !out.status.success() {
        bail!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(pgbench)
}

pub(super) fn pgbench_cmd(pgbench: &std::path::Path, ep: &Endpoint) -> Command {
    let mut cmd = Command::new(pgbench);
    cmd.env("PGPASSWORD", &ep.password).args([
        "-h",
        &ep.host,
        "-p",
        &ep.port.to_string(),
        "-U",
        &ep.user,
    ]);
    cmd
}

/// Seconds of each pgbench round that are run but not measured: its logins and its cold
/// backends' first statements. Our pools are opened and warmed before their rounds, so both
/// sides are measured warm, over a steady window.
pub(super) const PGBENCH_WARM_UP: u64 = 1;

/// pgbench's usual thread count for `n` clients: `-j 2` (one per core here) when N > 1.
pub(super) fn pgbench_threads(n: usize) -> usize {
    n.min(2)
}

/// (a): `pgbench -S -M <mode> -c N -j <threads> -P 1 -T warm-up + seconds + 1` (mode `prepared`
/// here, `extended` through PgBouncer). The window measured is the progress reports after the
/// first [`PGBENCH_WARM_UP`] seconds: the mean of their TPS, and the CPU of pgbench (read live
/// from `/proc/<pid>`) and of the server from the report before the first of them to the last.
pub(super) fn pgbench_select(
    pgbench: &std::path::Path,
    ep: &Endpoint,
    (n, threads): (usize, usize),
    seconds: u64,
    postmaster: u32,
    mode: &str,
) -> Result<Round> {
    let mut child = pgbench_cmd(pgbench, ep)
        .args(["-n", "-S", "-M", mode, "-c", &n.to_string(), "-P", "1"])
        .args([
            "-j",
            &threads.to_string(),
            "-T",
            // One second more than measured: pgbench often ends before printing its last
            // report.
            &(seconds + PGBENCH_WARM_UP + 1).to_string(),
            "postgres",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running pgbench -S")?;
    let pid = child.id().to_string();
    // pgbench's own CPU so far (it is still running: not yet in this process's children).
    let sample = || {
        let mut cpu = cpu_now(postmaster);
        cpu.children = proc_times(&pid).map_or(0, |(t, _, _)| t);
        cpu
    };
    let stderr = child.stderr.take().context("pgbench's stderr")?;
    // Every progress report with the CPU sampled when it was read.
    let mut reports = Vec::new();
    let mut other = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.context("reading pgbench's progress")?;
        match progress(&line) {
            Some((at, tps)) => reports.push((at, tps, sample())),
            None => {
                other.push_str(&line);
                other.push('\n');
            }
        }
    }
    let out = child.wait_with_output().context("waiting for pgbench")?;
    if !out.status.success() {
        bail!(
            "pgbench -S failed: {} {}",
            String::from_utf8_lossy(&out.stdout).trim(),
            other.trim()
        );
    }
    // The window: the reports after the warm-up, with the CPU counted from the report before
    // the first of them (on a loaded machine the first report may come late: then it only
    // opens the window).
    let warm = PGBENCH_WARM_UP as f64 + 0.5;
    let first = reports.iter().position(|r| r.0 > warm).map(|i| i.max(1));
    let Some(first) = first.filter(|&i| i < reports.len()) else {
        bail!(
            "pgbench -S printed {} progress report(s), none after its warm-up second: {}",
            reports.len(),
            other.trim()
        );
    };
    let before = reports[first - 1].2;
    let after = reports[reports.len() - 1].2;
    let measured = &reports[first..];
    let tps_sum: f64 = measured.iter().map(|r| r.1).sum();
    let reports = measured.len() as u32;
    let tps = tps_sum / f64::from(reports);
    let txns = tps_sum; // one report per second
    Ok(Round::measured(tps, txns, (before, after), true))
}

/// `(seconds, tps)` of a pgbench `-P` line: `progress: 2.0 s, 41234.5 tps, lat ...`.
fn progress(line: &str) -> Option<(f64, f64)> {
    let mut parts = line.strip_prefix("progress: ")?.split(", ");
    let at = parts.next()?.strip_suffix(" s")?.parse().ok()?;
    let tps = parts.next()?.strip_suffix(" tps")?.parse().ok()?;
    Some((at, tps))
}

/// One round of one method: throughput, and CPU per transaction on each side.
#[derive(Clone, Copy)]
pub(super) struct Round {
    pub(super) tps: f64,
    pub(super) client_us: f64,
    pub(super) server_us: f64,
    /// The share of the machine's CPU time left idle during the round.
    pub(super) idle: f64,
}

impl Round {
    /// `txns` transactions at `tps`, with the CPU per transaction and the idle share between two
    /// snapshots (`client_is_child`: the client is a child process of ours, as pgbench is).
    pub(super) fn measured(
        tps: f64,
        txns: f64,
        (before, after): (Cpu, Cpu),
        client_is_child: bool,
    ) -> Round {
        let (client_us, server_us) = cpu_per_txn(before, after, client_is_child, txns);
        Round {
            tps,
            client_us,
            server_us,
            idle: idle_share(before, after),
        }
    }

    /// `total` transactions of our own client tasks over `elapsed`.
    pub(super) fn of_clients(total: u64, elapsed: Duration, cpu: (Cpu, Cpu)) -> Round {
        Round::measured(
            total as f64 / elapsed.as_secs_f64(),
            total as f64,
            cpu,
            false,
        )
    }
}

/// A tiny xorshift for account ids, one per client.
pub(super) fn next_aid(state: &mut u64) -> i32 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state % (100_000 * SCALE as u64)) as i32 + 1
}

/// One client's loop: `once(account id)` until the phase is STOP; returns how many ran while it
/// was MEASURE.
pub(super) async fn count_until_stop<F, Fut>(
    phase: Arc<AtomicU8>,
    mut seed: u64,
    mut once: F,
) -> Result<u64>
where
    F: FnMut(i32) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut count = 0u64;
    loop {
        let p = phase.load(Ordering::Relaxed);
        if p == STOP {
            return Ok(count);
        }
        once(next_aid(&mut seed)).await?;
        if p == MEASURE {
            count += 1;
        }
    }
}

/// Runs `clients` loops (warm-up 200 ms, then `duration` measured): transactions/s and CPU per
/// transaction during the measured part.
pub(super) async fn drive<F, Fut>(
    clients: usize,
    duration: Duration,
    postmaster: u32,
    client: F,
) -> Result<Round>
where
    F: Fn(Arc<AtomicU8>, u64) -> Fut,
    Fut: std::future::Future<Output = Result<u64>> + Send + 'static,
{
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            tokio::spawn(client(
                phase.clone(),
                0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    phase.store(MEASURE, Ordering::Relaxed);
    let before = cpu_now(postmaster);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    phase.store(STOP, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let after = cpu_now(postmaster);
    let mut total = 0u64;
    for t in tasks {
        total += t.await.context("a benchmark client panicked")??;
    }
    Ok(Round::of_clients(total, elapsed, (before, after)))
}

/// Our pools with `settings`, the `default` pool of size `n` with all `n` connections opened.
pub(super) async fn warm(mut settings: Settings, n: usize) -> Result<Databases> {
    settings.pool.size = n;
    let dbs = Databases::connect(&settings)
        .await
        .context("building our pools")?;
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(dbs.default().get().await?);
    }
    drop(held);
    Ok(dbs)
}

/// `NOTIFY_BENCH_SECONDS`: seconds per method and client count, split into rounds (default 10).
pub(super) fn bench_seconds() -> u64 {
    std::env::var("NOTIFY_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&s| s > 0)
        .unwrap_or(10)
}

/// A private one-server cluster for a benchmark: the cluster, its endpoint and its postmaster's
/// pid (for the server's CPU figures).
pub(super) fn bench_cluster(label: &str) -> Result<(Cluster, Endpoint, u32)> {
    let cluster = Cluster::builder()
        .label(label)
        .replica(false)
        .start()
        .with_context(|| format!("starting a private PostgreSQL cluster for {label}"))?;
    let ep = cluster.primary().endpoint().clone();
    let pm = cluster
        .primary()
        .postmaster_pid()
        .context("reading the bench server's postmaster pid")?;
    Ok((cluster, ep, pm))
}
