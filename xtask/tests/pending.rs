//! `cargo xtask check-if-migrations-to-run`: `yes`/`no`, `--exit-code`, and errors (never `no`)
//! for an unreachable database or one ahead of the code; against harness databases.

use std::process::Command;

use notify_db_config::DatabaseUri;
use notify_db_migrate::{Migrator, Target};
use notify_db_testdb::TestDb;

fn check(uri: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("check-if-migrations-to-run")
        .args(args)
        .env("SQLALCHEMY_DATABASE_URI", uri)
        .env("NOTIFY_ENVIRONMENT", "test")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run xtask check-if-migrations-to-run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn migrator(db: &TestDb) -> Migrator {
    let uri = DatabaseUri::parse(&db.primary_uri(), "the test database").expect("test URI");
    Migrator::new(
        notify_db_migrations::set().expect("the migration set"),
        &uri,
    )
    .expect("migrator")
}

#[tokio::test]
async fn yes_while_behind_no_at_head() {
    let db = TestDb::create().await.expect("test database");
    let uri = db.primary_uri();
    // An empty database is behind.
    let (code, out, _) = check(&uri, &[]);
    assert_eq!((code, out.as_str()), (Some(0), "yes\n"));
    let (code, out, _) = check(&uri, &["--exit-code"]);
    assert_eq!((code, out.as_str()), (Some(1), "yes\n"));
    // Part way: still behind.
    migrator(&db)
        .upgrade(&Target::Revision("0003".into()))
        .await
        .expect("upgrade to 0003");
    let (code, out, _) = check(&uri, &["--exit-code"]);
    assert_eq!((code, out.as_str()), (Some(1), "yes\n"));
    // At head: no.
    migrator(&db)
        .upgrade(&Target::Head)
        .await
        .expect("upgrade to head");
    assert_eq!(check(&uri, &[]).1, "no\n");
    let (code, out, _) = check(&uri, &["--exit-code"]);
    assert_eq!((code, out.as_str()), (Some(0), "no\n"));
    // --database-url wins over the environment.
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["check-if-migrations-to-run", "--database-url", &uri])
        .env(
            "SQLALCHEMY_DATABASE_URI",
            "postgresql://nobody@127.0.0.1:1/nothing",
        )
        .env("NOTIFY_ENVIRONMENT", "test")
        .output()
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no\n");
}

#[tokio::test]
async fn a_database_ahead_of_the_code_is_an_error_not_no() {
    let db = TestDb::create().await.expect("test database");
    migrator(&db)
        .upgrade(&Target::Head)
        .await
        .expect("upgrade to head");
    db.connect()
        .await
        .expect("connect")
        .batch_execute("UPDATE alembic_version SET version_num = '9999_from_newer_code'")
        .await
        .expect("move ahead");
    let (code, out, err) = check(&db.primary_uri(), &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(out, "", "no answer on stdout");
    assert!(err.contains("ahead of this code"), "{err}");
    assert!(err.contains("9999_from_newer_code"), "{err}");
    let (code, out, _) = check(&db.primary_uri(), &["--exit-code"]);
    assert_eq!((code, out.as_str()), (Some(2), ""));
}

#[test]
fn an_unreachable_database_is_an_error_not_no() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let uri = format!("postgresql://postgres:s3cret-pw@127.0.0.1:{port}/notification_api");
    let (code, out, err) = check(&uri, &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(out, "");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("s3cret-pw"), "no password in errors: {err}");
    let (code, out, _) = check(&uri, &["--exit-code"]);
    assert_eq!((code, out.as_str()), (Some(2), ""));
}

#[test]
fn a_database_that_never_answers_is_an_error_after_the_timeout() {
    // Accepts TCP connections (the kernel's backlog) but never speaks PostgreSQL.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let uri = format!("postgresql://postgres:pw@127.0.0.1:{port}/notification_api");
    let (code, out, err) = check(&uri, &["--exit-code", "--timeout", "1"]);
    assert_eq!((code, out.as_str()), (Some(2), ""), "{err}");
    assert!(err.contains("no answer within"), "{err}");
    drop(silent);
}
