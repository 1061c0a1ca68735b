//! `cargo xtask test` and `cargo xtask lint`.

use std::process::Command;

use anyhow::{Context, Result};
use notify_db_testdb::{Cluster, ENV_PRIMARY, ENV_REPLICA, bin_dir_for_major, find_bin_dir};

use crate::{majors, prereq, util};
use notify_db_faults::results;

/// Arguments of `cargo xtask test`.
#[derive(clap::Args)]
pub(crate) struct TestArgs {
    /// Skip `cargo fmt --check` and clippy.
    #[arg(long)]
    no_lint: bool,
    /// PostgreSQL majors to run the suite on, e.g. `--pg 18` or `--pg 15,18` (default: CI's
    /// plan, the whole suite on 15 and 18 and the subset on 16 and 17; or `NOTIFY_DB_PG_MAJOR`,
    /// or the `PG_BIN` binaries).
    #[arg(long = "pg", value_delimiter = ',')]
    pg: Vec<u32>,
    /// Only the tests that read catalogs or depend on the server's major (migrate,
    /// autogenerate, stairway, schema capture, pool, connect, doctor, PgBouncer) on each major.
    #[arg(long)]
    subset: bool,
    /// Extra arguments for cargo-nextest (after `--`), e.g. a filter: `-- -E 'package(notify-db-pool)'`.
    #[arg(last = true)]
    extra: Vec<String>,
}

/// The cargo that runs xtask (shared with the first step, xtask-boot).
pub(crate) use xtask_boot::cargo;

/// Checks (and installs) the prerequisites, starts the shared clusters, runs the workspace tests
/// against them under cargo-nextest, then the static checks.
pub(crate) fn run(args: TestArgs) -> Result<()> {
    let cargo = cargo();
    // First, before anything is built: a machine that lacks something hears it in seconds.
    prereq::ensure(&cargo)?;
    let runs = majors::plan(&args.pg, args.subset)?;
    majors::prepare(&runs)?;
    if !args.no_lint {
        fmt_check(&cargo)?;
    }
    util::run(util::cargo_command(&cargo).args(["nextest", "run", "--workspace", "--no-run"]))?;
    results::clear(&results::results_dir(&util::root()))?;
    let mut outcomes = Vec::new();
    for run in &runs {
        let label = majors::label(run);
        eprintln!(">>> the suite on {label}");
        outcomes.push(majors::timed(label, || {
            // Always nextest: plain `cargo test` would lose the fault suite's serial group and
            // the per-test time limits of .config/nextest.toml.
            let mut cmd = util::cargo_command(&cargo);
            cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
            if run.scope == majors::Scope::Subset && args.extra.is_empty() {
                cmd.args(["-E", majors::SUBSET_FILTER]);
            }
            cmd.args(&args.extra);
            majors::env(run, &mut cmd);
            let mut summary = None;
            let result = with_shared_clusters("xtask-test", run.major, &mut cmd, |cmd| {
                let (s, r) = majors::run_capturing_summary(cmd);
                summary = s;
                r
            });
            (summary, result)
        }));
    }
    // The durable fault scenarios' results table, also after a failed run (it says what failed).
    let rows = results::results_dir(&util::root());
    if let Some(table) = results::table(&rows)? {
        println!("\nfault suite results:\n\n{table}");
        let out = rows.with_file_name("fault-results.md");
        std::fs::write(&out, &table).with_context(|| format!("writing {}", out.display()))?;
        println!("written to {}", out.display());
    }
    majors::report(&outcomes)?;
    if !args.no_lint {
        clippy(&cargo)?;
    }
    Ok(())
}

/// Runs `cargo <build>` (the tests `cmd` runs, built first so that compile time does not count
/// against the clusters' lifetime), starts the shared primary + replica, runs `cmd` with their
/// URIs in its environment, and removes them.
pub(crate) fn under_shared_clusters(
    label: &str,
    cargo: &str,
    build: &[&str],
    cmd: &mut Command,
) -> Result<()> {
    util::run(util::cargo_command(cargo).args(build))?;
    with_shared_clusters(label, None, cmd, util::run)
}

/// Starts the shared primary + replica of `major` (`None`: the binaries the search finds),
/// runs `cmd` through `exec` with their URIs and binaries in its environment, and removes them.
fn with_shared_clusters(
    label: &str,
    major: Option<u32>,
    cmd: &mut Command,
    exec: impl FnOnce(&mut Command) -> Result<()>,
) -> Result<()> {
    let bin = match major {
        Some(m) => bin_dir_for_major(m)?,
        None => find_bin_dir()?,
    };
    tracing::info!(bin = %bin.display(), "starting primary + streaming replica");
    let mut builder = Cluster::builder().label(label).replica(true);
    if let Some(m) = major {
        builder = builder.major(m);
    }
    let cluster = builder.start()?;
    let primary = cluster.primary().uri("postgres");
    let replica = cluster
        .replica()
        .map(|r| r.uri("postgres"))
        .context("replica did not start")?;
    tracing::info!(
        primary = %format!("127.0.0.1:{}", cluster.primary().endpoint().port),
        replica = %cluster.replica().map(|r| format!("127.0.0.2:{}", r.endpoint().port)).unwrap_or_default(),
        "clusters up"
    );
    cmd.env(ENV_PRIMARY, &primary)
        .env(ENV_REPLICA, &replica)
        .env("PG_BIN", &bin);
    let result = exec(cmd);
    drop(cluster);
    result
}

fn fmt_check(cargo: &str) -> Result<()> {
    util::run(util::cargo_command(cargo).args(["fmt", "--all", "--check"]))
        .context("formatting check (run `cargo fmt --all`)")
}

fn clippy(cargo: &str) -> Result<()> {
    util::run(util::cargo_command(cargo).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
    .context("clippy found problems")
}

/// `cargo fmt --check` and clippy with `-D warnings`.
pub(crate) fn lint() -> Result<()> {
    let cargo = cargo();
    fmt_check(&cargo)?;
    clippy(&cargo)?;
    Ok(())
}
