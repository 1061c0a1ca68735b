//! `doctor`: checks the configured primary and every bulk host the way the pools would use
//! them, the settings in force and the migration state; one line per check (✓/✗), a suggested
//! fix (from docs/operations.md) under every ✗. Never prints a password: hosts are shown as
//! host:port, URIs through their redacting Display.
//!
//! Shipped as the migration binary's `doctor` command and behind
//! `cargo xtask doctor`.

use std::fmt::Display;
use std::io::Write;

use notify_db_config::{ConfigError, Settings};
use notify_db_connect::{Bind, connect_one};

use notify_db_migrate::{Error as MigrateError, MigrationSet, Migrator, Options};

mod host;
pub mod metrics;
mod report;

use host::check_host;
use report::{DOC, Report};
pub use report::{DoctorError, DoctorOptions, DoctorReport};

/// Runs every check, writing one line per check to `out` (and `all checks passed` when none
/// failed). `settings` and `set` are taken as loaded: a load error is a failed check.
pub async fn run(
    settings: Result<&Settings, &ConfigError>,
    set: Result<&MigrationSet, &dyn Display>,
    options: &DoctorOptions,
    out: &mut dyn Write,
) -> Result<DoctorReport, DoctorError> {
    let mut r = Report {
        out,
        failed: 0,
        write_error: None,
    };
    let settings_failed = settings.is_err();
    match settings {
        Ok(settings) => check_all(settings, set, options, &mut r).await,
        Err(e) => r.fail(
            "settings",
            e,
            format!(
                "set SQLALCHEMY_DATABASE_URI (and SQLALCHEMY_DATABASE_URI_BULK for replicas) as in {DOC}#settings-you-will-touch"
            ),
        ),
    }
    if r.failed == 0 {
        r.line(format_args!("all checks passed"));
    }
    match r.write_error {
        Some(e) => Err(DoctorError(e)),
        None => Ok(DoctorReport {
            failed: r.failed,
            settings_failed,
        }),
    }
}

async fn check_all(
    settings: &Settings,
    set: Result<&MigrationSet, &dyn Display>,
    options: &DoctorOptions,
    r: &mut Report<'_>,
) {
    let bulk_note = if settings.bulk_is_fallback {
        " (SQLALCHEMY_DATABASE_URI_BULK unset: bulk falls back to the primary)"
    } else {
        ""
    };
    r.ok(
        "settings",
        format!(
            "environment {}; default {}; bulk {}{bulk_note}",
            settings.environment, settings.primary, settings.bulk
        ),
    );
    let p = &settings.pool;
    r.ok(
        "pool settings",
        format!(
            "size {} per bind, wait {:?}, max lifetime {:?}, connect timeout {:?}, tcp_user_timeout {:?}, host back-off {:?}, idle ping after {:?}, application_name {}",
            p.size,
            p.wait_timeout,
            p.max_lifetime,
            p.connect_timeout,
            p.tcp_user_timeout,
            p.host_backoff,
            p.ping_idle_after,
            p.application_name
        ),
    );

    let mut primary_ok = false;
    for hp in settings.primary.hosts() {
        let ok = check_host(settings, options, r, Bind::Default, &settings.primary, hp).await;
        primary_ok |= ok;
    }
    for hp in settings.bulk.hosts() {
        check_host(settings, options, r, Bind::Bulk, &settings.bulk, hp).await;
    }
    check_migrations(settings, set, r, primary_ok).await;
    if primary_ok {
        check_migration_lock(settings, r).await;
    }
}

/// The migration advisory lock: free, held by a running migration, or left held by an idle
/// session (e.g. a pooled server connection after a run through a transaction pooler), which
/// would make every later run (ours or Alembic's) wait forever.
async fn check_migration_lock(settings: &Settings, r: &mut Report<'_>) {
    let check = "migration lock";
    let holders = match connect_one(&settings.primary, settings, Bind::Default).await {
        Ok((client, _)) => notify_db_migrate::lock_holders(&client).await,
        Err(e) => {
            r.fail(
                check,
                format!("not checked: {e}"),
                "fix the primary first (see above)",
            );
            return;
        }
    };
    let holders = match holders {
        Ok(h) => h,
        Err(e) => {
            r.fail(
                check,
                format!("cannot read pg_locks / pg_stat_activity: {e}"),
                "grant the role pg_read_all_stats to see other sessions",
            );
            return;
        }
    };
    let id = notify_db_migrate::ADVISORY_LOCK_ID;
    if holders.is_empty() {
        r.ok(check, format!("advisory lock {id} is free"));
    }
    for h in holders {
        let who = format!(
            "advisory lock {id} held by pid {} (application_name {:?}), {} since {} (connected {})",
            h.pid, h.application_name, h.state, h.since, h.backend_start
        );
        if h.state == "active" {
            r.ok(check, format!("{who}: a migration is running"));
            continue;
        }
        r.fail(
            check,
            format!("{who}: no statement running, so every later migration run (ours or Alembic's) waits for it"),
            format!(
                "if no migration is running from it, end it: `SELECT pg_terminate_backend({})` as a superuser or its role \
                 (through PgBouncer, RECONNECT the database in its admin console also works). An idle holder is typically \
                 a pooled server connection left by a run through a transaction pooler: set DATABASE_MIGRATION_URI to the \
                 primary itself ({DOC}#behind-pgbouncer)",
                h.pid
            ),
        );
    }
}

/// The timeouts a migration run applies: the runner's (from the settings) and each migration's own.
fn migration_timeouts(settings: &Settings, set: &MigrationSet) -> String {
    let options = Options::from_settings(&settings.migrations);
    let own: Vec<String> = set
        .migrations()
        .iter()
        .filter_map(|m| {
            let mut v = Vec::new();
            if let Some(t) = m.own_lock_timeout() {
                v.push(format!("lock_timeout {}ms", t.as_millis()));
            }
            if let Some(t) = m.own_statement_timeout() {
                v.push(format!("statement_timeout {}ms", t.as_millis()));
            }
            (!v.is_empty()).then(|| format!("{} {}", m.id(), v.join(", ")))
        })
        .collect();
    format!(
        "{}{}",
        options.describe_timeouts(),
        if own.is_empty() {
            "; no migration sets its own".to_owned()
        } else {
            format!("; own: {}", own.join("; "))
        }
    )
}

async fn check_migrations(
    settings: &Settings,
    set: Result<&MigrationSet, &dyn Display>,
    r: &mut Report<'_>,
    primary_ok: bool,
) {
    let check = "migrations";
    if !primary_ok {
        r.fail(
            check,
            "not checked: the primary cannot be used",
            "fix the primary first (see above)",
        );
        return;
    }
    let set = match set {
        Ok(s) => s.clone(),
        Err(e) => {
            r.fail(
                check,
                format!("the migration set of this build is invalid: {e}"),
                "fix migrations/ (cargo xtask migrate check-head)",
            );
            return;
        }
    };
    let head = set.head().unwrap_or("base").to_owned();
    let total = set.migrations().len();
    r.ok("migration timeouts", migration_timeouts(settings, &set));
    let migrator = match Migrator::new(set, &settings.primary) {
        Ok(migrator) => migrator,
        Err(e) => {
            r.fail(
                check,
                format!("not checked: {e}"),
                "fix sslmode / sslrootcert in SQLALCHEMY_DATABASE_URI",
            );
            return;
        }
    };
    match migrator.status().await {
        Ok(status) => {
            let current = status.current.clone().unwrap_or_else(|| "base (not migrated)".to_owned());
            let pending = status.pending();
            if pending.is_empty() {
                r.ok(check, format!("at head {head} ({total} migrations applied)"));
            } else {
                r.fail(
                    check,
                    format!(
                        "at {current}, head is {head}: {} pending ({})",
                        pending.len(),
                        pending.join(", ")
                    ),
                    format!("run `cargo xtask migrate upgrade` before deploying code that needs them ({DOC}#deployment-order)"),
                );
            }
        }
        Err(e @ MigrateError::UnknownRevision { .. }) => r.fail(
            check,
            e,
            format!("deploy the code that has this migration, or downgrade with it ({DOC}#deployment-order)"),
        ),
        Err(e) => r.fail(check, format!("cannot read the migration state: {e}"), format!("check that the role can read alembic_version ({DOC}#troubleshooting)")),
    }
}
