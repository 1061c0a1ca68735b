//! `cargo xtask test` and `cargo xtask lint`.

use std::process::Command;

use anyhow::{Context, Result};
use notify_db_testdb::{Cluster, ENV_PRIMARY, ENV_REPLICA, find_bin_dir};

use crate::{fault_table, prereq, util};

/// Arguments of `cargo xtask test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// Skip `cargo fmt --check` and clippy.
    #[arg(long)]
    no_lint: bool,
    /// Extra arguments for cargo-nextest (after `--`), e.g. a filter: `-- -E 'package(notify-db-pool)'`.
    #[arg(last = true)]
    extra: Vec<String>,
}

/// The cargo that runs xtask (`CARGO`), else `cargo` from PATH.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Checks (and installs) the prerequisites, starts the shared clusters, runs the workspace tests
/// against them under cargo-nextest, then the static checks.
pub fn run(args: TestArgs) -> Result<()> {
    let cargo = cargo();
    // First, before anything is built: a machine that lacks something hears it in seconds.
    prereq::ensure(&cargo)?;
    if !args.no_lint {
        fmt_check(&cargo)?;
    }
    // Always nextest: plain `cargo test` would lose the fault suite's serial group and the
    // per-test time limits of .config/nextest.toml.
    let mut cmd = Command::new(&cargo);
    cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"])
        .args(&args.extra);
    fault_table::clear()?;
    let tested = under_shared_clusters(
        "xtask-test",
        &cargo,
        &["nextest", "run", "--workspace", "--no-run"],
        &mut cmd,
    );
    // The durable fault scenarios' results table, also after a failed run (it says what failed).
    fault_table::write()?;
    tested?;
    if !args.no_lint {
        clippy(&cargo)?;
    }
    Ok(())
}

/// Runs `cargo <build>` (the tests `cmd` runs, built first so that compile time does not count
/// against the clusters' lifetime), starts the shared primary + replica, runs `cmd` with their
/// URIs in its environment, and removes them.
pub fn under_shared_clusters(
    label: &str,
    cargo: &str,
    build: &[&str],
    cmd: &mut Command,
) -> Result<()> {
    util::run(Command::new(cargo).args(build))?;
    let bin = find_bin_dir()?;
    tracing::info!(bin = %bin.display(), "starting primary + streaming replica");
    let cluster = Cluster::builder().label(label).replica(true).start()?;
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
    let result = util::run(cmd);
    drop(cluster);
    result
}

fn fmt_check(cargo: &str) -> Result<()> {
    util::run(Command::new(cargo).args(["fmt", "--all", "--check"]))
        .context("formatting check (run `cargo fmt --all`)")
}

fn clippy(cargo: &str) -> Result<()> {
    util::run(Command::new(cargo).args([
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
pub fn lint() -> Result<()> {
    let cargo = cargo();
    fmt_check(&cargo)?;
    clippy(&cargo)?;
    Ok(())
}
