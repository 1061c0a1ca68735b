//! `cargo xtask test` and `cargo xtask lint`.

use std::process::Command;

use anyhow::{Context, Result};
use notify_db_testdb::{Cluster, ENV_PRIMARY, ENV_REPLICA, find_bin_dir};

use crate::util;

/// Arguments of `cargo xtask test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// Skip `cargo fmt --check` and clippy.
    #[arg(long)]
    no_lint: bool,
    /// Use `cargo test` even when cargo-nextest is installed.
    #[arg(long)]
    no_nextest: bool,
    /// Extra arguments for the test runner (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    extra: Vec<String>,
}

fn has_nextest() -> bool {
    Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Starts the shared clusters, runs the workspace tests against them, then the static checks.
pub fn run(args: TestArgs) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if !args.no_lint {
        fmt_check(&cargo)?;
    }
    // Build first, so that compile time does not count against the clusters' lifetime.
    let nextest = !args.no_nextest && has_nextest();
    if nextest {
        util::run(Command::new(&cargo).args(["nextest", "run", "--workspace", "--no-run"]))?;
    } else {
        util::run(Command::new(&cargo).args(["test", "--workspace", "--no-run"]))?;
    }
    let bin = find_bin_dir()?;
    tracing::info!(bin = %bin.display(), "starting primary + streaming replica");
    let cluster = Cluster::builder()
        .label("xtask-test")
        .replica(true)
        .start()?;
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
    let mut cmd = Command::new(&cargo);
    if nextest {
        cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        cmd.args(["test", "--workspace", "--no-fail-fast"]);
    }
    if !args.extra.is_empty() {
        if !nextest {
            cmd.arg("--");
        }
        cmd.args(&args.extra);
    }
    cmd.env(ENV_PRIMARY, &primary)
        .env(ENV_REPLICA, &replica)
        .env("PG_BIN", &bin);
    let tests = util::run(&mut cmd);
    drop(cluster);
    tests?;
    if !args.no_lint {
        clippy(&cargo)?;
    }
    Ok(())
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
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    fmt_check(&cargo)?;
    clippy(&cargo)?;
    Ok(())
}
