//! `cargo xtask migrate drift`: the exit codes a script reads (0 the same, 1 drift, 2 cannot
//! tell), against harness databases and the project's migrations.

use std::process::Command;

use notify_db_config::DatabaseUri;
use notify_db_migrate::{Migrator, Target};
use notify_db_testdb::TestDb;

/// Runs `xtask migrate drift` against `uri`: (exit code, stdout).
fn drift(uri: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["migrate", "drift"])
        .env("SQLALCHEMY_DATABASE_URI", uri)
        .env("NOTIFY_ENVIRONMENT", "test")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run xtask migrate drift");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn xtask_migrate_drift_exits_0_1_or_2() {
    let db = TestDb::create().await.expect("test database");
    let uri = db.primary_uri();
    let (code, text) = drift(&uri);
    assert_eq!(code, Some(2), "no alembic_version: cannot tell:\n{text}");
    let parsed = DatabaseUri::parse(&uri, "the test database").expect("test URI");
    Migrator::new(
        notify_db_migrations::set().expect("the migration set"),
        &parsed,
    )
    .expect("migrator")
    .upgrade(&Target::Head)
    .await
    .expect("upgrade to head");
    let (code, text) = drift(&uri);
    assert_eq!(code, Some(0), "{text}");
    db.connect()
        .await
        .expect("connect")
        .batch_execute("CREATE INDEX ix_hand_made ON services (email_from)")
        .await
        .expect("a hand-made index");
    let (code, text) = drift(&uri);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("+ index ix_hand_made: "), "{text}");
    assert!(!text.contains(&db.primary().password), "{text}");
}
