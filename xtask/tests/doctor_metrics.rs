//! `cargo xtask doctor --metrics`: the migration lock held by an idle session, the journal and
//! the checks' outcome, as Prometheus text that promtool accepts.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use notify_db_testdb::TestDb;

fn doctor_metrics(primary: &str) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["doctor", "--metrics"])
        .env("NOTIFY_ENVIRONMENT", "test")
        .env("SQLALCHEMY_DATABASE_URI", primary)
        .env_remove("SQLALCHEMY_DATABASE_URI_BULK")
        .env_remove("DATABASE_MIGRATION_URI")
        .output()
        .expect("run xtask doctor --metrics");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

/// The value of the sample `series` (name and labels exactly as rendered).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is required (Debian package `prometheus`)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n--- input ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn an_idle_lock_holder_and_the_journal_are_exported() {
    let db = TestDb::create().await.expect("test database");
    let primary = db.primary_uri();
    let upgrade = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["migrate", "upgrade"])
        .env("NOTIFY_ENVIRONMENT", "test")
        .env("SQLALCHEMY_DATABASE_URI", &primary)
        .output()
        .expect("run xtask migrate upgrade");
    assert!(
        upgrade.status.success(),
        "{}",
        String::from_utf8_lossy(&upgrade.stderr)
    );
    let migrations = notify_db_migrations::set().expect("set").migrations().len() as f64;

    // A session that takes the migration lock and then runs nothing.
    let holder = db.connect().await.expect("holder session");
    holder
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&notify_db_migrate::ADVISORY_LOCK_ID],
        )
        .await
        .expect("taking the migration lock");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (out, text) = doctor_metrics(&primary);
    assert!(!out.status.success(), "an idle holder is a failed check");
    assert_eq!(value(&text, "db_migration_lock_holders"), 1.0);
    let idle = value(&text, "db_migration_lock_idle_seconds");
    assert!(idle >= 1.0, "idle for {idle}s, expected at least 1");
    let failed_while_held = value(&text, "db_doctor_checks_failed");
    assert!(failed_while_held >= 1.0, "{text}");
    assert_eq!(
        value(&text, "db_migrations_applied_total{operation=\"upgrade\"}"),
        migrations
    );
    assert!(
        value(
            &text,
            "db_migrations_duration_seconds_total{operation=\"upgrade\"}"
        ) > 0.0
    );
    assert!(value(&text, "db_migration_last_applied_timestamp_seconds") > 1.6e9);
    assert_eq!(value(&text, "db_migrations_pending"), 0.0);
    assert!(
        !text.contains(&db.primary().password),
        "password in metrics"
    );
    promtool_check(&text);

    drop(holder);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = doctor_metrics(&primary);
        if value(&text, "db_migration_lock_holders") == 0.0 {
            assert_eq!(value(&text, "db_migration_lock_idle_seconds"), 0.0);
            assert_eq!(
                value(&text, "db_doctor_checks_failed"),
                failed_while_held - 1.0,
                "the lock check passes once the holder is gone:\n{text}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lock is still held after its session ended:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
