//! `cargo xtask bench template`: the cost of a test database copied from the migrated template
//! (`TestDb::migrated_on`: `CREATE DATABASE ... TEMPLATE test_notification_api_master`) for the
//! starter set the tests use and for sets of 10 and 500 generated trivial migrations (and 500 on
//! only 10 tables), against the baseline of migrating an empty database from scratch. The
//! target: at most 300 ms per database, flat in the number of migrations. For each set, the copy
//! with `STRATEGY = WAL_LOG` (PostgreSQL 15's default) beside `FILE_COPY`: the statement alone,
//! and a whole test database (connect, copy, replica caught up), one at a time and four at once.
//!
//! A private primary + replica, as the tests have (the shared template of the test run is left
//! alone). Nothing is dropped
//! until every figure is measured: creating files right after dropping many databases is 2-3x
//! slower on these machines for ~30 s, so every measurement uses fresh names after no mass drop.
//! `NOTIFY_BENCH_TEMPLATE_DBS` (default 8) sets the number of worker databases per set.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use notify_db_migrate::{Migration, MigrationSet, Migrator, Target};
use notify_db_testdb::{
    BoxError, Cluster, CopyStrategy, Endpoint, MASTER_DB, TEMPLATE_STRATEGY, TestDb, quote_ident,
};

use super::workload::client_runtime;
use super::{Figure, median};

/// (label, number of migrations, number of tables): 10 and 500 migrations creating a table each
/// (the sets), and 500 migrations on 10 tables (490 of them add a column), which
/// separates the number of migrations from the number of relations the copy has to write.
const GENERATED: [(&str, usize, usize); 3] = [
    ("N=10", 10, 10),
    ("N=500", 500, 500),
    ("N=500/10 tables", 500, 10),
];
/// Both strategies, the default first.
const STRATEGIES: [CopyStrategy; 2] = [CopyStrategy::WalLog, CopyStrategy::FileCopy];
/// Test databases created at the same moment in the concurrent rounds (tests run in parallel).
const AT_ONCE: usize = 4;
const TARGET_MS: f64 = 300.0;

/// `n` trivial migrations: the first `tables` are `CREATE TABLE t_N (id bigint PRIMARY KEY)`, the
/// others add a `bigint` column to one of those tables in turn.
fn generated(n: usize, tables: usize) -> Result<MigrationSet> {
    let tables = tables.clamp(1, n.max(1));
    let ms = (1..=n)
        .map(|i| {
            if i <= tables {
                Migration::new(format!("{i:04}_t_{i}"))
                    .up(format!("CREATE TABLE t_{i} (id bigint PRIMARY KEY)"))
                    .down(format!("DROP TABLE t_{i}"))
            } else {
                let t = (i % tables) + 1;
                Migration::new(format!("{i:04}_c_{i}"))
                    .up(format!("ALTER TABLE t_{t} ADD COLUMN c_{i} bigint"))
                    .down(format!("ALTER TABLE t_{t} DROP COLUMN c_{i}"))
            }
        })
        .collect();
    Ok(MigrationSet::new(ms)?)
}

async fn migrate(set: MigrationSet, uri: String) -> Result<(), BoxError> {
    let uri = notify_db_config::DatabaseUri::parse(&uri, "the benchmark database")?;
    Migrator::new(set, &uri)?.upgrade(&Target::Head).await?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the template database benchmark.
pub(crate) fn run() -> Result<Vec<Figure>> {
    let workers: usize = std::env::var("NOTIFY_BENCH_TEMPLATE_DBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
        .max(1);
    eprintln!("bench template: starting a private cluster");
    let cluster = Cluster::builder()
        .label("bench-template")
        .replica(true)
        .start()
        .context("starting a private PostgreSQL cluster for the template benchmark")?;
    let ep = cluster.primary().endpoint().clone();
    let replica = cluster
        .replica()
        .context("the replica did not start")?
        .endpoint()
        .clone();
    let rt = client_runtime(false)?;
    let figures = rt.block_on(measure(&ep, &replica, workers))?;
    drop(rt);
    drop(cluster);
    Ok(figures)
}

async fn measure(ep: &Endpoint, replica: &Endpoint, workers: usize) -> Result<Vec<Figure>> {
    // Every database stays until the end: no drop precedes a measurement.
    let mut keep: Vec<TestDb> = Vec::new();
    let mut figures = Vec::new();
    let mut per_db = Vec::new();
    let admin = ep.connect("postgres").await?;
    // Warm-up (not measured): a just-started server is slower for its first databases.
    for _ in 0..workers {
        keep.push(TestDb::create_on(ep, Some(replica)).await?);
    }
    let mut cases = vec![(
        "starter set".to_owned(),
        notify_db_migrations::set().context("the starter migration set")?,
    )];
    for (label, count, tables) in GENERATED {
        cases.push((label.to_owned(), generated(count, tables)?));
    }
    for (case, (n, set)) in cases.into_iter().enumerate() {
        let fp = set.fingerprint();

        // Baseline: an empty database migrated from scratch, as without a template.
        let t = Instant::now();
        let db = TestDb::create_on(ep, Some(replica)).await?;
        migrate(set.clone(), db.primary_uri())
            .await
            .map_err(|e| anyhow::anyhow!("migrating a baseline database: {e}"))?;
        let baseline = ms(t.elapsed());
        keep.push(db);

        // Build the template (not counted: once per migration set).
        let t = Instant::now();
        let s = set.clone();
        keep.push(
            TestDb::migrated_on(ep, Some(replica), &fp, move |uri| migrate(s, uri))
                .await
                .context("building the template")?,
        );
        let build = ms(t.elapsed());

        // Every case starts from the same state: no checkpoint pending from the build.
        admin.batch_execute("CHECKPOINT").await?;
        let mut times = Vec::with_capacity(workers);
        for _ in 0..workers {
            let t = Instant::now();
            let db = TestDb::migrated_on(ep, Some(replica), &fp, |_uri| async {
                Err::<(), BoxError>("the template should not be rebuilt".into())
            })
            .await
            .context("copying the template")?;
            times.push(ms(t.elapsed()));
            keep.push(db);
        }
        let mean = median(times.clone());
        let max = times.iter().copied().fold(0.0, f64::max);
        eprintln!(
            "bench template: {n}: template built in {build:.0} ms; {workers} copies: median {mean:.1} ms, max {max:.1} ms; from scratch {baseline:.0} ms"
        );
        figures.push(Figure {
            bench: "template".into(),
            name: format!("{n} ms per worker db (median of {workers})"),
            value: mean,
            unit: "ms/db".into(),
            ratio: Some(mean / baseline),
            note: format!(
                "{}; target <= {TARGET_MS:.0} ms{}; ratio = template copy / migrating an empty db",
                TEMPLATE_STRATEGY.keyword(),
                if mean <= TARGET_MS {
                    ", met"
                } else {
                    ", MISSED"
                }
            ),
        });
        figures.push(Figure {
            bench: "template".into(),
            name: format!("{n} ms per worker db (max of {workers})"),
            value: max,
            unit: "ms/db".into(),
            ratio: None,
            note: format!("slowest copy; target <= {TARGET_MS:.0} ms"),
        });
        figures.push(Figure {
            bench: "template".into(),
            name: format!("{n} baseline: migrate an empty db"),
            value: baseline,
            unit: "ms/db".into(),
            ratio: None,
            note: "CREATE DATABASE + upgrade to head, no template".into(),
        });
        per_db.push(mean);

        figures.extend(by_strategy(&admin, ep, replica, &n, case, workers, &mut keep).await?);
    }
    // What a copy costs besides CREATE DATABASE: TestDb::migrated_on opens one admin
    // connection (fingerprint check, shared template lock, the CREATE itself): a SCRAM login.
    let mut times = Vec::with_capacity(workers);
    for _ in 0..workers {
        let t = Instant::now();
        let c = ep.connect("postgres").await?;
        c.simple_query("SELECT 1").await?;
        times.push(ms(t.elapsed()));
    }
    figures.push(Figure {
        bench: "template".into(),
        name: "connect + SELECT 1 (scram login)".into(),
        value: median(times.clone()),
        unit: "ms".into(),
        ratio: None,
        note: "migrated_on opens one such connection per database".into(),
    });
    if let [_, small, large, many_migrations] = per_db[..] {
        figures.push(Figure {
            bench: "template".into(),
            name: "flatness: 500 vs 10 migrations, 10 tables".into(),
            value: many_migrations / small,
            unit: "x".into(),
            ratio: Some(many_migrations / small),
            note: "1.0 = the copy does not grow with the number of migrations".into(),
        });
        figures.push(Figure {
            bench: "template".into(),
            name: "growth: 500 vs 10 tables".into(),
            value: large / small,
            unit: "x".into(),
            ratio: Some(large / small),
            note: "CREATE DATABASE copies every relation file: grows with the schema".into(),
        });
    }
    drop(keep);
    Ok(figures)
}

/// The copy of the template by each strategy: the statement alone (sequential), then whole test
/// databases (admin connection, `CREATE DATABASE`, the replica caught up) one at a time and
/// [`AT_ONCE`] at once. FILE_COPY's rows carry the ratio to WAL_LOG's.
async fn by_strategy(
    admin: &tokio_postgres::Client,
    ep: &Endpoint,
    replica: &Endpoint,
    n: &str,
    case: usize,
    workers: usize,
    keep: &mut Vec<TestDb>,
) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    // [statement alone, one at a time, AT_ONCE at once] medians, per strategy.
    let mut medians = [[0.0; 3]; 2];
    // Alternate which strategy goes first, so that neither always meets the other's leftovers.
    let mut order = [0, 1];
    if case % 2 == 1 {
        order.reverse();
    }
    for s in order {
        let strategy = STRATEGIES[s];
        let kw = strategy.keyword();
        admin.batch_execute("CHECKPOINT").await?;
        let mut alone = Vec::with_capacity(workers);
        for i in 0..workers {
            let name = format!("bench_template_{}_{case}_{i}", kw.to_ascii_lowercase());
            let t = Instant::now();
            admin
                .batch_execute(&format!(
                    "CREATE DATABASE {} TEMPLATE {} STRATEGY = {kw}",
                    quote_ident(&name),
                    quote_ident(MASTER_DB)
                ))
                .await
                .with_context(|| format!("CREATE DATABASE ... STRATEGY = {kw}"))?;
            alone.push(ms(t.elapsed()));
        }
        admin.batch_execute("CHECKPOINT").await?;
        let mut serial = Vec::with_capacity(workers);
        for _ in 0..workers {
            let t = Instant::now();
            keep.push(TestDb::copy_of(ep, Some(replica), MASTER_DB, strategy).await?);
            serial.push(ms(t.elapsed()));
        }
        admin.batch_execute("CHECKPOINT").await?;
        let mut parallel = Vec::with_capacity(workers);
        for _ in 0..workers.div_ceil(AT_ONCE) {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..AT_ONCE {
                let (ep, replica) = (ep.clone(), replica.clone());
                set.spawn(async move {
                    let t = Instant::now();
                    let db = TestDb::copy_of(&ep, Some(&replica), MASTER_DB, strategy).await;
                    (ms(t.elapsed()), db)
                });
            }
            while let Some(done) = set.join_next().await {
                let (took, db) = done.context("a concurrent copy panicked")?;
                keep.push(db?);
                parallel.push(took);
            }
        }
        medians[s] = [median(alone), median(serial), median(parallel)];
    }
    let rows = [
        (
            "CREATE DATABASE alone",
            "the statement only, sequential (median)",
        ),
        (
            "test db, one at a time",
            "connect + CREATE DATABASE + replica caught up (median)",
        ),
        (
            "test db, 4 at once",
            "the same, 4 concurrent creations (median latency)",
        ),
    ];
    for (s, strategy) in STRATEGIES.into_iter().enumerate() {
        for (r, (what, how)) in rows.iter().enumerate() {
            let chosen = if strategy == TEMPLATE_STRATEGY {
                "; the strategy testdb uses"
            } else {
                ""
            };
            figures.push(Figure {
                bench: "template".into(),
                name: format!("{n} {what}, {}", strategy.keyword()),
                value: medians[s][r],
                unit: "ms/db".into(),
                ratio: (s > 0).then(|| medians[s][r] / medians[0][r]),
                note: if s > 0 {
                    format!("{how}; ratio: / WAL_LOG{chosen}")
                } else {
                    format!("{how}{chosen}")
                },
            });
        }
    }
    eprintln!(
        "bench template: {n}: WAL_LOG alone {:.1} / one {:.1} / {AT_ONCE} at once {:.1} ms; \
         FILE_COPY alone {:.1} / one {:.1} / {AT_ONCE} at once {:.1} ms",
        medians[0][0], medians[0][1], medians[0][2], medians[1][0], medians[1][1], medians[1][2]
    );
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_sets_are_valid_and_fingerprints_differ() {
        let a = generated(10, 10).unwrap();
        let b = generated(11, 11).unwrap();
        assert_eq!(a.migrations().len(), 10);
        assert_eq!(a.head(), Some("0010_t_10"));
        assert_eq!(a.fingerprint(), generated(10, 10).unwrap().fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
        let c = generated(500, 10).unwrap();
        assert_eq!(c.migrations().len(), 500);
        assert_eq!(c.head(), Some("0500_c_500"));
        assert!(c.migrations()[10].up_statements()[0].starts_with("ALTER TABLE t_2 ADD COLUMN"));
    }
}
