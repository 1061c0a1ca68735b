//! `cargo xtask soak --minutes N`: the fault suite's soak (32 tasks holding both pools of 5 at
//! their maximum) for as long as asked, on the shared primary + replica. The 60 s CI run is the
//! same test under `cargo xtask test`.

use anyhow::{Result, ensure};

use crate::{prereq, test, util};

/// Arguments of `cargo xtask soak`.
#[derive(clap::Args)]
pub(crate) struct SoakArgs {
    /// How long the load runs, in minutes.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
}

/// The soak test, as a nextest filter. Selected from the whole workspace (not `-p`), so that it
/// is built with the same features as under `cargo xtask test` and reuses that build.
const FILTER: &str = "package(notify-db-faults) & binary(soak)";
/// The test reads its duration from this variable (seconds).
const ENV_SECS: &str = "FAULTS_SOAK_SECS";

/// Runs the soak for `--minutes`.
pub(crate) fn run(args: SoakArgs) -> Result<()> {
    ensure!(
        args.minutes.is_finite() && args.minutes > 0.0,
        "--minutes must be a positive number of minutes, not {}",
        args.minutes
    );
    let secs = (args.minutes * 60.0).round().max(1.0) as u64;
    let cargo = test::cargo();
    prereq::ensure(&cargo)?;
    let mut cmd = util::cargo_command(&cargo);
    // The `soak` profile lifts the suite's 3-minute limit: the test bounds itself (its duration
    // plus a setup and drain allowance).
    cmd.args([
        "nextest",
        "run",
        "--workspace",
        "--profile",
        "soak",
        "--no-capture",
        "-E",
        FILTER,
    ])
    .env(ENV_SECS, secs.to_string());
    eprintln!(">>> soak for {secs} s");
    test::under_shared_clusters(
        "xtask-soak",
        &cargo,
        &["nextest", "run", "--workspace", "--no-run"],
        &mut cmd,
    )
}
