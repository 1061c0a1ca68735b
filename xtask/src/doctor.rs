//! `cargo xtask doctor`: [`notify_db_migrate_cli::doctor`] with this workspace's migration set;
//! exit status 1 when anything failed.

use anyhow::Result;
use notify_db_config::Settings;
use notify_db_migrate_cli::doctor::{self, DoctorOptions};

use crate::util;

/// Arguments of `cargo xtask doctor`.
#[derive(clap::Args)]
pub(crate) struct DoctorArgs {
    /// Replica lag (seconds) above which the lag check fails.
    #[arg(long, default_value_t = 30.0)]
    max_lag_seconds: f64,
    /// Print the outcome, the migration lock and the journal as Prometheus metrics instead of
    /// the report.
    #[arg(long)]
    metrics: bool,
}

/// Runs `cargo xtask doctor`.
pub(crate) fn run(args: DoctorArgs) -> Result<()> {
    let settings = Settings::from_env();
    let set = notify_db_migrations::set();
    let options = DoctorOptions {
        max_lag_seconds: args.max_lag_seconds,
    };
    let report = util::runtime()?.block_on(async {
        let set = set.as_ref().map_err(|e| e as &dyn std::fmt::Display);
        let out = &mut std::io::stdout();
        if args.metrics {
            doctor::metrics::metrics(settings.as_ref(), set, &options, out).await
        } else {
            doctor::run(settings.as_ref(), set, &options, out).await
        }
    })?;
    if let Some(problems) = report.problems() {
        anyhow::bail!(problems);
    }
    Ok(())
}
