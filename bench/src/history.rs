//! Part of `cargo xtask bench migrate`: a 549-revision history shaped like the reference's
//! (`notify_db_testdb::history`: parent links, odd ids, autocommit and explicitly committed
//! revisions) applied from empty by `notify-db-migrate --source`, beside psql applying the same
//! SQL in chain order over one connection (each transactional revision one simple query with
//! Alembic's version update, the others statement by statement).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use notify_db_testdb::Endpoint;
use notify_db_testdb::history::{self, REFERENCE_REVISIONS};

use super::Figure;
use super::timed::{PsqlInput, time_ours, time_psql};

/// The generated history on disk.
pub(super) struct Prepared {
    dir: PathBuf,
    script: PathBuf,
    head: String,
}

/// Times measured run by run (the same index: back to back).
#[derive(Default)]
pub(super) struct Timings {
    ours: Vec<Duration>,
    psql: Vec<Duration>,
}

/// Writes the `.sql` directory and the psql script under `work`.
pub(super) fn prepare(work: &Path) -> Result<Prepared> {
    let revisions = history::reference_shaped(REFERENCE_REVISIONS);
    let dir = work.join("history-sql");
    let _ = std::fs::remove_dir_all(&dir);
    history::write_sql_dir(&revisions, &dir)
        .with_context(|| format!("writing {}", dir.display()))?;
    let script = work.join("history-psql.sql");
    std::fs::write(&script, history::psql_script(&revisions, None))
        .with_context(|| format!("writing {}", script.display()))?;
    let head = revisions
        .last()
        .map(|r| r.id.clone())
        .context("an empty generated history")?;
    Ok(Prepared { dir, script, head })
}

/// One pair of runs, each on a fresh database from `fresh`; checks both reached the head.
pub(super) fn measure_once(
    p: &Prepared,
    psql: &Path,
    binary: &Path,
    ep: &Endpoint,
    fresh: &mut dyn FnMut(&str) -> Result<String>,
    t: &mut Timings,
) -> Result<()> {
    let db = fresh("histpsql")?;
    t.psql
        .push(time_psql(psql, ep, &db, PsqlInput::File(&p.script))?);
    check(psql, ep, &db, &p.head)?;
    let db = fresh("histours")?;
    t.ours.push(time_ours(binary, Some(&p.dir), ep, &db)?);
    check(psql, ep, &db, &p.head)?;
    if let (Some(o), Some(q)) = (t.ours.last(), t.psql.last()) {
        eprintln!(
            "bench migrate: {REFERENCE_REVISIONS}-revision history: psql {:.1} ms, ours {:.1} ms, ratio {:.3}",
            q.as_secs_f64() * 1000.0,
            o.as_secs_f64() * 1000.0,
            o.as_secs_f64() / q.as_secs_f64()
        );
    }
    Ok(())
}

fn check(psql: &Path, ep: &Endpoint, db: &str, head: &str) -> Result<()> {
    let sql = format!(
        "DO $c$ BEGIN IF (SELECT version_num FROM alembic_version) IS DISTINCT FROM '{head}' \
         THEN RAISE 'not at the head {head}'; END IF; END $c$"
    );
    time_psql(psql, ep, db, PsqlInput::Command(&sql)).map(|_| ())
}

/// The figures: psql's time and ours, with the median of per-run ratios.
pub(super) fn figures(t: &Timings) -> Vec<Figure> {
    let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut ratios: Vec<f64> = t
        .ours
        .iter()
        .zip(&t.psql)
        .map(|(o, p)| o.as_secs_f64() / p.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios.get(ratios.len() / 2).copied();
    let n = REFERENCE_REVISIONS;
    let runs = t.psql.len();
    vec![
        Figure {
            bench: "migrate".into(),
            name: format!("{n}-revision Alembic-shaped history, psql in chain order"),
            value: ms(best(&t.psql)),
            unit: "ms".into(),
            ratio: None,
            note: format!("best of {runs}; one connection, Alembic's version updates"),
        },
        Figure {
            bench: "migrate".into(),
            name: format!("{n}-revision Alembic-shaped history, notify-db-migrate"),
            value: ms(best(&t.ours)),
            unit: "ms".into(),
            ratio,
            note: format!(
                "best of {runs}; .sql dir with parent links, 25 no-transaction revisions journaled \
                 statement by statement; ratio: median of per-run ours / psql"
            ),
        },
    ]
}
