//! `cargo xtask test` on several PostgreSQL majors: which majors a run covers (`--pg`,
//! `NOTIFY_DB_PG_MAJOR`, `PG_BIN`, else CI's list), their binaries fetched before anything is
//! built, one suite run per major against its own shared clusters, and a summary naming each
//! major with its time and nextest's counts.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use notify_db_testdb::majors::{
    ENV_PG_MAJOR, REFUSED_MAJOR, SUPPORTED_MAJORS, check_ssl, requested_major,
};
use notify_db_testdb::{bin_dir_for_major, find_bin_dir};

/// How much of the suite one major runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every test.
    Whole,
    /// The tests that read catalogs or depend on the server's major ([`SUBSET_FILTER`]).
    Subset,
}

/// The majors CI runs (`cargo xtask test` without `--pg`, `NOTIFY_DB_PG_MAJOR` or `PG_BIN`):
/// the whole suite on the oldest supported major (Debian's 15) and on the newest (18), and
/// [`SUBSET_FILTER`] on 16 and 17 (about 2 minutes each; four whole runs would pass CI's 30
/// minutes on 2 cores). The build is done once and only the test runs repeat.
pub(crate) const CI_PLAN: [(u32, Scope); 4] = [
    (15, Scope::Whole),
    (16, Scope::Subset),
    (17, Scope::Subset),
    (18, Scope::Whole),
];

/// The nextest filter of [`Scope::Subset`]: migrate, autogenerate, stairway, schema capture,
/// doctor (the migration crates), the pool and the connect path, and PgBouncer.
pub(crate) const SUBSET_FILTER: &str = "package(notify-db-migrate) | package(notify-db-migrate-cli) | \
     package(notify-db-migrations) | package(notify-db-pool) | package(notify-db-connect) | \
     test(/pgbouncer/) | binary(doctor)";

/// One suite run: a major (`None`: the binaries `PG_BIN` or the search finds) and its scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    /// The major, when chosen.
    pub major: Option<u32>,
    /// Whole suite or subset.
    pub scope: Scope,
}

/// The runs of `cargo xtask test`: `--pg` (each major given), else `NOTIFY_DB_PG_MAJOR`, else
/// `PG_BIN` alone, else [`CI_PLAN`].
pub(crate) fn plan(pg: &[u32], subset: bool) -> Result<Vec<Run>> {
    let scope = if subset { Scope::Subset } else { Scope::Whole };
    let whole = |m: u32| -> Result<Run> {
        if !SUPPORTED_MAJORS.contains(&m) {
            bail!(
                "--pg {m}: the suite runs on PostgreSQL {} (14 and older are refused by design)",
                majors_text()
            );
        }
        Ok(Run {
            major: Some(m),
            scope,
        })
    };
    if !pg.is_empty() {
        return pg.iter().map(|m| whole(*m)).collect();
    }
    if let Some(m) = requested_major()? {
        return Ok(vec![whole(m)?]);
    }
    if std::env::var_os("PG_BIN").is_some_and(|d| !d.is_empty()) {
        return Ok(vec![Run { major: None, scope }]);
    }
    Ok(CI_PLAN
        .iter()
        .map(|(m, planned)| Run {
            major: Some(*m),
            scope: if subset { Scope::Subset } else { *planned },
        })
        .collect())
}

fn majors_text() -> String {
    SUPPORTED_MAJORS.map(|m| m.to_string()).join(", ")
}

/// Makes sure every major of `runs` (and 14, which the refusal tests start) is installed or
/// fetched, and that each server was built with SSL: before anything is compiled.
pub(crate) fn prepare(runs: &[Run]) -> Result<()> {
    let mut wanted: Vec<u32> = runs.iter().filter_map(|r| r.major).collect();
    wanted.push(REFUSED_MAJOR);
    crate::prereq::ensure_fetchers(&wanted)?;
    for major in runs.iter().filter_map(|r| r.major) {
        let bin = bin_dir_for_major(major)
            .with_context(|| format!("PostgreSQL {major} for `cargo xtask test`"))?;
        check_ssl(&bin).with_context(|| format!("PostgreSQL {major}"))?;
        tracing::info!(major, bin = %bin.display(), "PostgreSQL binaries ready");
    }
    bin_dir_for_major(REFUSED_MAJOR).with_context(|| {
        format!("PostgreSQL {REFUSED_MAJOR} (the tests prove it is refused) for `cargo xtask test`")
    })?;
    Ok(())
}

/// What one run gave.
pub(crate) struct Outcome {
    /// The major's label (`PostgreSQL 18`, or the `PG_BIN` binaries').
    pub label: String,
    /// Seconds the run took (clusters started and stopped included).
    pub seconds: u64,
    /// nextest's summary line (`329 tests run: 329 passed, ...`), when it printed one.
    pub summary: Option<String>,
    /// The failure, when it failed.
    pub error: Option<anyhow::Error>,
}

/// The label of a run: its major, or that of the binaries found.
pub(crate) fn label(run: &Run) -> String {
    let major = run.major.or_else(|| {
        find_bin_dir()
            .ok()
            .and_then(|b| notify_db_testdb::server_major(&b).ok())
    });
    match (major, run.scope) {
        (Some(m), Scope::Whole) => format!("PostgreSQL {m}"),
        (Some(m), Scope::Subset) => format!("PostgreSQL {m} (subset)"),
        (None, _) => "PostgreSQL (PG_BIN)".into(),
    }
}

/// Sets the environment of a test command for `run` (the major the tests' harness picks).
pub(crate) fn env(run: &Run, cmd: &mut Command) {
    if let Some(m) = run.major {
        cmd.env(ENV_PG_MAJOR, m.to_string());
    }
}

/// Runs `cmd` with its stderr passed through, and returns nextest's summary line.
pub(crate) fn run_capturing_summary(cmd: &mut Command) -> (Option<String>, Result<()>) {
    let name = format!("{:?}", cmd.get_program());
    let child = cmd
        .current_dir(crate::util::root())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return (None, Err(e).with_context(|| format!("running {name}"))),
    };
    let mut summary = None;
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("{line}");
            if let Some(rest) = line.split_once("] ").map(|(_, r)| r)
                && line.trim_start().starts_with("Summary")
            {
                summary = Some(rest.trim().to_owned());
            }
        }
    }
    let status = child.wait().with_context(|| format!("waiting for {name}"));
    let result = match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(anyhow::anyhow!("the tests failed ({s})")),
        Err(e) => Err(e),
    };
    (summary, result)
}

/// Times `body`, the run of one major.
pub(crate) fn timed(label: String, body: impl FnOnce() -> (Option<String>, Result<()>)) -> Outcome {
    let start = Instant::now();
    let (summary, result) = body();
    Outcome {
        label,
        seconds: start.elapsed().as_secs(),
        summary,
        error: result.err(),
    }
}

/// Prints one line per major and fails naming every major that failed.
pub(crate) fn report(outcomes: &[Outcome]) -> Result<()> {
    eprintln!(">>> test runs per PostgreSQL major:");
    for o in outcomes {
        eprintln!(
            ">>>   {}: {} in {} s: {}",
            o.label,
            if o.error.is_none() {
                "passed"
            } else {
                "FAILED"
            },
            o.seconds,
            o.summary.as_deref().unwrap_or("no nextest summary")
        );
    }
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            o.error
                .as_ref()
                .map(|e| format!("{}: {}", o.label, crate::util::one_line(e)))
        })
        .collect();
    if !failed.is_empty() {
        bail!("tests failed on {}", failed.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_flags_choose_the_majors_and_refuse_unsupported_ones() {
        let runs = plan(&[18, 16], false).expect("plan");
        assert_eq!(
            runs.iter().map(|r| r.major).collect::<Vec<_>>(),
            vec![Some(18), Some(16)]
        );
        let err = plan(&[14], false).expect_err("14 is refused");
        assert!(err.to_string().contains("--pg 14"), "{err}");
    }

    #[test]
    fn ci_covers_the_oldest_and_newest_majors_whole_and_every_other_one_by_the_subset() {
        for m in [15, 18] {
            assert!(SUPPORTED_MAJORS.contains(&m), "{m}");
            assert!(CI_PLAN.contains(&(m, Scope::Whole)), "{m}");
        }
        for m in SUPPORTED_MAJORS {
            assert!(CI_PLAN.iter().any(|(planned, _)| *planned == m), "{m}");
        }
    }
}
