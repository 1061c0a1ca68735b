//! `cargo xtask bench migrate`: 1000 trivial migrations applied by the built binaries (release):
//! `notify-db-migrations`, the set compiled in as a deployment would ship it (built with
//! `NOTIFY_DB_MIGRATIONS_DIR` pointing at 1000 generated `.rs` files), and `notify-db-migrate`
//! reading a directory of 1000 `.up.sql` and 1000 `.down.sql` files; against the floor: the same
//! migrations as plain SQL, each sent as ONE simple-query string (`BEGIN\; CREATE TABLE ...\;
//! UPDATE alembic_version ...\; COMMIT;`) by the server's own `psql -f` over one connection. Then
//! no-op runs (already at head) of both, each timed right after a `psql -c 'SELECT 1'` (process
//! start + connect + one query): the no-op's floor. Last, a 549-revision Alembic-shaped history
//! beside psql in chain order (see [`history`]).
//!
//! The cluster lives on tmpfs (`/dev/shm`) unless `NOTIFY_DB_TESTDB_DIR` says where: see
//! [`tmpfs_base`]. Each run gets a fresh database (creating files right after dropping many
//! databases is slower on these machines); all are dropped at the end. `NOTIFY_BENCH_MIGRATIONS` (default 1000) and
//! `NOTIFY_BENCH_REPEAT` (default 5, the best run counts) tune it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use notify_db_testdb::{Cluster, Endpoint, find_bin_dir};

use super::timed::{PsqlInput, time_ours, time_psql};
use super::workload::client_runtime;
use super::{Figure, history, median, root};

/// Runs the migration benchmarks.
pub(crate) fn run() -> Result<Vec<Figure>> {
    let n: usize = env_number("NOTIFY_BENCH_MIGRATIONS", 1000).min(9999);
    let repeat: usize = env_number("NOTIFY_BENCH_REPEAT", 5);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let work = root().join("target/bench/migrate");
    let set_dir = work.join(format!("set-{n}"));
    write_set(&set_dir, n)?;
    let rs_dir = work.join(format!("rs-{n}"));
    write_rust_set(&rs_dir, n)?;
    let floor_file = work.join(format!("floor-{n}.sql"));
    write_floor(&floor_file, n, false)?;
    let journal_file = work.join(format!("floor-journal-{n}.sql"));
    write_floor(&journal_file, n, true)?;
    let shaped = history::prepare(&work)?;

    eprintln!(
        "bench migrate: building notify-db-migrate and notify-db-migrations with {n} compiled-in migrations (release)"
    );
    let build = |package: &str, binary: &str, features: &[&str]| {
        let mut c = Command::new(&cargo);
        c.args(["build", "--release", "-p", package, "--bin", binary]);
        if !features.is_empty() {
            c.arg("--features").arg(features.join(","));
        }
        c
    };
    cargo_build(
        &mut build("notify-db-migrate-cli", "notify-db-migrate", &[]),
        "notify-db-migrate-cli",
    )?;
    cargo_build(
        build("notify-db-migrations", "notify-db-migrations", &["cli"])
            .env("NOTIFY_DB_MIGRATIONS_DIR", &rs_dir),
        "notify-db-migrations",
    )?;
    let sql_binary = root().join("target/release/notify-db-migrate");
    let compiled = root().join("target/release/notify-db-migrations");
    let psql = find_bin_dir()
        .context("finding the PostgreSQL binaries (psql)")?
        .join("psql");

    let mut builder = Cluster::builder().label("bench-migrate").replica(false);
    let place = match tmpfs_base() {
        Some(base) => {
            builder = builder.under(&base);
            format!("on tmpfs ({})", base.display())
        }
        None => format!(
            "under {} (NOTIFY_DB_TESTDB_DIR, or no /dev/shm)",
            notify_db_testdb::base_dir().display()
        ),
    };
    eprintln!("bench migrate: starting a private cluster {place}");
    let cluster = builder
        .start()
        .context("starting a private PostgreSQL cluster for the migrate benchmark")?;
    let ep = cluster.primary().endpoint().clone();
    let rt = client_runtime(false)?;
    let admin = rt
        .block_on(ep.connect("postgres"))
        .context("connecting to the bench cluster")?;
    let mut dbs = Vec::new();
    let mut fresh = |label: &str| -> Result<String> {
        let name = format!("bench_migrate_{}_{}_{label}", std::process::id(), dbs.len());
        rt.block_on(admin.batch_execute(&format!("CREATE DATABASE {name}")))
            .with_context(|| format!("creating {name}"))?;
        dbs.push(name.clone());
        Ok(name)
    };

    let (mut ours, mut ours_sql, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    let mut floor_journal = Vec::new();
    let mut shaped_times = history::Timings::default();
    let (mut noop, mut noop_sql, mut connect) = (Vec::new(), Vec::new(), Vec::new());
    // The psql -c timed right before each .sql no-op, for paired ratios.
    let mut connect_sql = Vec::new();
    // Client CPU seconds (user + system) of those psql -c and .sql no-op processes, summed.
    let (mut connect_sql_cpu, mut noop_sql_cpu) = (0.0, 0.0);
    let result = (|| -> Result<()> {
        // Warm-up until two floor runs in a row agree within 10 % (at most 8): file creation
        // stays 2-3x slower for a while after many files were deleted (a previous run's
        // cluster), which would otherwise skew the first pairs.
        let mut last = time_psql(&psql, &ep, &fresh("warm")?, PsqlInput::File(&floor_file))?;
        for _ in 0..7 {
            let t = time_psql(&psql, &ep, &fresh("warm")?, PsqlInput::File(&floor_file))?;
            let settled = (t.as_secs_f64() / last.as_secs_f64() - 1.0).abs() < 0.10;
            last = t;
            if settled {
                break;
            }
        }
        eprintln!(
            "bench migrate: warmed up ({:.3} ms/migration)",
            last.as_secs_f64() * 1000.0 / n as f64
        );
        for r in 0..repeat {
            eprintln!(
                "bench migrate: run {}/{repeat}: psql floor, notify-db-migrations, notify-db-migrate",
                r + 1
            );
            let db = fresh("psql")?;
            floor.push(time_psql(&psql, &ep, &db, PsqlInput::File(&floor_file))?);
            let db = fresh("psqljournal")?;
            floor_journal.push(time_psql(&psql, &ep, &db, PsqlInput::File(&journal_file))?);
            let db = fresh("compiled")?;
            ours.push(time_ours(&compiled, None, &ep, &db)?);
            check_head(&rt, &ep, &db, n)?;
            for _ in 0..5 {
                noop.push(time_ours(&compiled, None, &ep, &db)?);
                connect.push(time_psql(&psql, &ep, &db, PsqlInput::Command("SELECT 1"))?);
            }
            let db = fresh("sqldir")?;
            ours_sql.push(time_ours(&sql_binary, Some(&set_dir), &ep, &db)?);
            check_head(&rt, &ep, &db, n)?;
            for _ in 0..5 {
                let cpu = children_cpu();
                connect_sql.push(time_psql(&psql, &ep, &db, PsqlInput::Command("SELECT 1"))?);
                let between = children_cpu();
                noop_sql.push(time_ours(&sql_binary, Some(&set_dir), &ep, &db)?);
                connect_sql_cpu += between - cpu;
                noop_sql_cpu += children_cpu() - between;
            }
            history::measure_once(
                &shaped,
                &psql,
                &sql_binary,
                &ep,
                &mut fresh,
                &mut shaped_times,
            )?;
        }
        Ok(())
    })();
    for db in &dbs {
        let _ = rt.block_on(admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db}")));
    }
    drop(admin);
    drop(cluster);
    result?;

    let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
    let median_ms = |v: &[Duration]| median(v.iter().map(|d| d.as_secs_f64() * 1000.0).collect());
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / n as f64;
    // Ratios: the median over runs of (this run's time / the same run's floor), measured back to
    // back, so load that changes between runs (2 shared cores) cancels out.
    let paired_with = |v: &[Duration], base: &[Duration]| {
        let r: Vec<f64> = v
            .iter()
            .zip(base)
            .map(|(a, f)| a.as_secs_f64() / f.as_secs_f64())
            .collect();
        (!r.is_empty()).then(|| median(r))
    };
    let paired = |v: &[Duration]| paired_with(v, &floor);
    for (i, f) in floor.iter().enumerate() {
        let r = |v: &[Duration]| v.get(i).map_or(0.0, |d| d.as_secs_f64() / f.as_secs_f64());
        eprintln!(
            "bench migrate: run {}: floor {:.3} ms/migration; / floor: journal floor {:.3}, compiled {:.3}, .sql dir {:.3}",
            i + 1,
            per(*f),
            r(&floor_journal),
            r(&ours),
            r(&ours_sql)
        );
    }
    let (ours_ms, sql_ms, floor_ms) = (per(best(&ours)), per(best(&ours_sql)), per(best(&floor)));
    let journal_ms = per(best(&floor_journal));
    let noop_ms = median_ms(&noop);
    let noop_sql_ratio = paired_with(&noop_sql, &connect_sql);
    let noop_sql_ms = median_ms(&noop_sql);
    connect.extend_from_slice(&connect_sql);
    let connect_ms = median_ms(&connect);
    let fig = |name: String, value: f64, unit: &str, ratio: Option<f64>, note: String| Figure {
        bench: "migrate".into(),
        name,
        value,
        unit: unit.into(),
        ratio,
        note,
    };
    let mut figures = vec![
        fig(
            format!("{n} migrations, psql -f floor"),
            floor_ms,
            "ms/migration",
            None,
            format!("best of {repeat}; one simple query per migration, one connection"),
        ),
        fig(
            format!("{n} migrations, psql -f floor + journal row"),
            journal_ms,
            "ms/migration",
            paired(&floor_journal),
            format!(
                "best of {repeat}; the floor plus a plain journal INSERT per migration (ours EXECUTEs prepared bookkeeping instead); ratio: median of per-run / floor"
            ),
        ),
        fig(
            format!("{n} migrations, notify-db-migrations"),
            ours_ms,
            "ms/migration",
            paired(&ours),
            format!(
                "best of {repeat}; set compiled in; ratio: median of per-run ours / floor, target <= 1.1"
            ),
        ),
        fig(
            format!("{n} migrations, notify-db-migrate (.sql dir)"),
            sql_ms,
            "ms/migration",
            paired(&ours_sql),
            format!(
                "best of {repeat}; reads {n} .sql files; ratio: median of per-run ours / floor"
            ),
        ),
        fig(
            "psql -c 'SELECT 1' (process start + connect + one query)".into(),
            connect_ms,
            "ms",
            None,
            format!(
                "median of {}; the no-op floor: a fresh backend costs most of it",
                connect.len()
            ),
        ),
        fig(
            format!("no-op at head ({n} applied), compiled"),
            noop_ms,
            "ms",
            Some(noop_ms / connect_ms),
            format!(
                "median of {}; process start + connect + one read (no lock: nothing to do) + checksums; ratio: / psql -c; target <= 20 ms",
                noop.len()
            ),
        ),
        fig(
            format!("no-op at head ({n} applied), .sql dir, client CPU"),
            noop_sql_cpu * 1000.0 / noop_sql.len().max(1) as f64,
            "ms",
            (connect_sql_cpu > 0.0).then(|| noop_sql_cpu / connect_sql_cpu),
            format!(
                "mean over {} runs of the process's user + system CPU (psql -c's: {:.3} ms); \
                 ratio: / psql -c's; steadier than wall time on a loaded machine; the server's \
                 CPU is in neither",
                noop_sql.len(),
                connect_sql_cpu * 1000.0 / connect_sql.len().max(1) as f64
            ),
        ),
        fig(
            format!("no-op at head ({n} applied), .sql dir"),
            noop_sql_ms,
            "ms",
            noop_sql_ratio,
            format!(
                "median of {}; the same plus {n} .up.sql files (stat each, texts from the pack), loaded \
                 while connecting; ratio: median of paired (no-op / the psql -c timed just before \
                 it); target <= 1.0",
                noop_sql.len()
            ),
        ),
    ];
    figures.extend(history::figures(&shaped_times));
    Ok(figures)
}

/// Runs `cargo build` of `package` in the workspace root.
fn cargo_build(cmd: &mut Command, package: &str) -> Result<()> {
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("running cargo build -p {package}"))?;
    if !status.success() {
        bail!("cargo build --release -p {package} failed with {status}");
    }
    Ok(())
}

/// The engine's journal table, as `notify_db_migrate` creates it (for the journal floor).
const JOURNAL_DDL: &str = "CREATE TABLE notify_db_migration_journal (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
    version_num varchar(32) NOT NULL, operation text NOT NULL CHECK (operation IN ('upgrade', 'downgrade', 'step')), \
    step integer, checksum text, applied_at timestamptz NOT NULL DEFAULT now(), duration_ms double precision, \
    applied_by text NOT NULL DEFAULT current_setting('application_name'), runner_host text, \
    client_addr inet DEFAULT inet_client_addr())";

/// Where the cluster goes: `/dev/shm` unless `NOTIFY_DB_TESTDB_DIR` chooses. Every migration
/// creates files; on the shared disk their cost swings 2-3x from minute to minute (more after
/// many deletions), which drowns a 10 % ratio. On tmpfs the floor and ours do the same work
/// without that noise, so the ratio is the client's overhead (a stricter test: a smaller floor).
fn tmpfs_base() -> Option<std::path::PathBuf> {
    if std::env::var_os("NOTIFY_DB_TESTDB_DIR").is_some_and(|d| !d.is_empty()) {
        return None;
    }
    let shm = Path::new("/dev/shm");
    shm.is_dir().then(|| {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
        shm.join(format!("notify-db-bench-{uid}"))
    })
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

fn id(i: usize) -> String {
    format!("{i:04}_t_{i}")
}

/// `NNNN_t_N.up.sql` files, each `CREATE TABLE t_N (id bigint primary key)`, and their
/// `.down.sql` (`DROP TABLE t_N`), as a project keeps them.
fn write_set(dir: &Path, n: usize) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for i in 1..=n {
        for (suffix, sql) in [
            (
                "up",
                format!("CREATE TABLE t_{i} (id bigint primary key)\n"),
            ),
            ("down", format!("DROP TABLE t_{i}\n")),
        ] {
            let path = dir.join(format!("{}.{suffix}.sql", id(i)));
            std::fs::write(&path, sql).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

/// `NNNN_t_N.rs` files for the migrations crate's build script, each the same `CREATE TABLE`.
fn write_rust_set(dir: &Path, n: usize) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for i in 1..=n {
        let path = dir.join(format!("{}.rs", id(i)));
        let text = format!(
            "//! Bench migration {i}.\n\n/// Creates t_{i}.\npub(crate) fn define(m: notify_db_migrate::Migration) -> notify_db_migrate::Migration {{\n    \
             m.up(\"CREATE TABLE t_{i} (id bigint primary key)\").down(\"DROP TABLE t_{i}\")\n}}\n"
        );
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The floor script: the version table, then one line (one simple query) per migration; with
/// `journal`, each line also inserts the journal row the engine writes.
fn write_floor(path: &Path, n: usize, journal: bool) -> Result<()> {
    let mut s = String::from(
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));\n",
    );
    if journal {
        s.push_str(JOURNAL_DDL);
        s.push_str(";\n");
    }
    for i in 1..=n {
        let version = if i == 1 {
            format!(
                "INSERT INTO alembic_version (version_num) VALUES ('{}')",
                id(i)
            )
        } else {
            format!(
                "UPDATE alembic_version SET version_num = '{}' WHERE version_num = '{}'",
                id(i),
                id(i - 1)
            )
        };
        let row = if journal {
            format!(
                "\\; INSERT INTO notify_db_migration_journal (version_num, operation, step, checksum, duration_ms, runner_host) \
                 VALUES ('{}', 'upgrade', NULL, '{:064}', extract(epoch FROM clock_timestamp() - now())::float8 * 1000, 'bench')",
                id(i),
                i
            )
        } else {
            String::new()
        };
        s.push_str(&format!(
            "BEGIN\\; CREATE TABLE t_{i} (id bigint primary key)\\; {version}{row}\\; COMMIT;\n"
        ));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, s).with_context(|| format!("writing {}", path.display()))
}

/// CPU seconds (user + system) of this process's waited-for children so far.
fn children_cpu() -> f64 {
    super::cpu::proc_times("self").map_or(0.0, |(_, children, _)| {
        children as f64 / super::cpu::clock_ticks()
    })
}

fn check_head(rt: &tokio::runtime::Runtime, ep: &Endpoint, db: &str, n: usize) -> Result<()> {
    let c = rt.block_on(ep.connect(db))?;
    let v: String = rt
        .block_on(c.query_one("SELECT version_num::text FROM alembic_version", &[]))
        .context("reading alembic_version")?
        .get(0);
    if v != id(n) {
        bail!("after the run {db} is at {v}, expected {}", id(n));
    }
    Ok(())
}
