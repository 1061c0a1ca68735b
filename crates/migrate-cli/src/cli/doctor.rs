//! `doctor`: [`crate::doctor`] on the project's migration set; fails (exit status 1) when any
//! check failed.

use std::io::Write;

use notify_db_config::{ConfigError, Settings};

use super::error::CliError;
use super::project::Project;
use crate::doctor::{self, DoctorOptions};

/// Runs every check and writes the report (with `metrics`: the metrics) to `out`.
pub(super) async fn run(
    project: &Project,
    settings: Result<Settings, ConfigError>,
    max_lag_seconds: f64,
    metrics: bool,
    out: &mut dyn Write,
) -> Result<i32, CliError> {
    let options = DoctorOptions { max_lag_seconds };
    let report = if metrics {
        doctor::metrics::metrics(settings.as_ref(), Ok(&project.set), &options, out).await?
    } else {
        doctor::run(settings.as_ref(), Ok(&project.set), &options, out).await?
    };
    match report.problems() {
        Some(problems) => Err(CliError::Refused(problems)),
        None => Ok(0),
    }
}
