//! `doctor --metrics`: the checks' outcome, the migration lock and the journal in the Prometheus
//! text format, for a textfile collector (docs/operations.md, "Alerts and dashboard").
//!
//! These are facts about the database, not about one service process: one exporter reports
//! them once, with the migration role (which can see other roles' sessions), instead of every
//! service process polling `pg_locks` and reporting the same fact N times.

use std::fmt::{Display, Write as _};
use std::io::Write;

use notify_db_config::{ConfigError, Settings};
use notify_db_connect::{Bind, connect_one};
use notify_db_migrate::{JOURNAL_TABLE, MigrationSet, Migrator, Options};
use tokio_postgres::Client;

use super::report::{DoctorError, DoctorOptions, DoctorReport};
use super::run;

/// Gauge: how many doctor checks failed (0 when all passed).
pub const CHECKS_FAILED: &str = "db_doctor_checks_failed";
/// Gauge: sessions holding the migration advisory lock.
pub const LOCK_HOLDERS: &str = "db_migration_lock_holders";
/// Gauge: seconds the longest-idle session holding the migration lock has run no statement
/// (0 when the lock is free or only a running migration holds it).
pub const LOCK_IDLE_SECONDS: &str = "db_migration_lock_idle_seconds";
/// Counter: journal rows by `operation` (`upgrade`, `downgrade`, `step`, `stamp`).
pub const APPLIED: &str = "db_migrations_applied_total";
/// Counter: summed duration of the journal rows by `operation`, in seconds.
pub const DURATION: &str = "db_migrations_duration_seconds_total";
/// Gauge: when the newest journal row was written (Unix seconds).
pub const LAST_APPLIED: &str = "db_migration_last_applied_timestamp_seconds";
/// Gauge: migrations of the set not applied to the database.
pub const PENDING: &str = "db_migrations_pending";

/// Journal rows, durations and newest time per operation: (operation, rows, seconds, newest).
fn journal_sql() -> String {
    format!(
        "SELECT operation, count(*)::float8, (coalesce(sum(duration_ms), 0) / 1000)::float8, \
         extract(epoch FROM max(applied_at))::float8 FROM {JOURNAL_TABLE} GROUP BY operation \
         ORDER BY operation"
    )
}

/// Appends one metric family (help, type, samples) to `text`.
fn family(text: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(text, "{name}{labels} {value}");
    }
}

/// Runs the doctor checks (their report discarded) and writes the metrics to `out`; returns
/// the checks' outcome, as `run` does. A fact that cannot be read is left out, and counted in
/// `db_doctor_checks_failed` by the check that could not read it.
pub async fn metrics(
    settings: Result<&Settings, &ConfigError>,
    set: Result<&MigrationSet, &dyn Display>,
    options: &DoctorOptions,
    out: &mut dyn Write,
) -> Result<DoctorReport, DoctorError> {
    let report = run(settings, set, options, &mut std::io::sink()).await?;
    let mut text = String::new();
    family(
        &mut text,
        CHECKS_FAILED,
        "gauge",
        "How many notify-db doctor checks failed",
        &[(String::new(), report.failed as f64)],
    );
    if let Ok(settings) = settings {
        if let Ok((client, _)) = connect_one(&settings.primary, settings, Bind::Default).await {
            lock_metrics(&client, &mut text).await;
            journal_metrics(&client, &mut text).await;
        }
        if let (Ok(set), Ok(uri)) = (set, settings.migration_uri()) {
            let migrator = Migrator::new(set.clone(), uri)
                .map(|m| m.with_options(Options::from_settings(&settings.migrations)));
            if let Ok(status) = async { migrator?.status().await }.await {
                family(
                    &mut text,
                    PENDING,
                    "gauge",
                    "Migrations of the set not applied to the database",
                    &[(String::new(), status.pending().len() as f64)],
                );
            }
        }
    }
    out.write_all(text.as_bytes()).map_err(DoctorError)?;
    Ok(report)
}

/// The lock's holders and how long the longest-idle one has been idle.
async fn lock_metrics(client: &Client, text: &mut String) {
    let Ok(holders) = notify_db_migrate::lock_holders(client).await else {
        return;
    };
    let mut idle = 0.0f64;
    for h in holders.iter().filter(|h| h.state != "active") {
        // The server reads back the timestamp it wrote (`state_change`), in its own format.
        let since = client
            .query_one(
                "SELECT extract(epoch FROM now() - $1::text::timestamptz)::float8",
                &[&h.since],
            )
            .await;
        if let Ok(row) = since {
            idle = idle.max(row.get::<_, f64>(0).max(0.0));
        }
    }
    family(
        text,
        LOCK_HOLDERS,
        "gauge",
        "Sessions holding the migration advisory lock",
        &[(String::new(), holders.len() as f64)],
    );
    family(
        text,
        LOCK_IDLE_SECONDS,
        "gauge",
        "Seconds the longest-idle session holding the migration lock has run no statement",
        &[(String::new(), idle)],
    );
}

/// Journal rows and durations per operation (nothing before the first run made the journal).
async fn journal_metrics(client: &Client, text: &mut String) {
    let Ok(rows) = client.query(&journal_sql(), &[]).await else {
        return;
    };
    let mut applied = Vec::new();
    let mut seconds = Vec::new();
    let mut newest = f64::NAN;
    for row in &rows {
        let operation: String = row.get(0);
        let labels = format!("{{operation=\"{operation}\"}}");
        applied.push((labels.clone(), row.get::<_, f64>(1)));
        seconds.push((labels, row.get::<_, f64>(2)));
        let at: f64 = row.get(3);
        if newest.is_nan() || at > newest {
            newest = at;
        }
    }
    family(
        text,
        APPLIED,
        "counter",
        "Migration journal rows by operation",
        &applied,
    );
    family(
        text,
        DURATION,
        "counter",
        "Summed duration of the migration journal rows by operation, in seconds",
        &seconds,
    );
    if !newest.is_nan() {
        family(
            text,
            LAST_APPLIED,
            "gauge",
            "When the newest migration journal row was written, in Unix seconds",
            &[(String::new(), newest)],
        );
    }
}
