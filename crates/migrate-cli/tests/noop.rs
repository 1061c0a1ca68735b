//! A run with nothing to do, through the `notify-db-migrate` binary: decided before locking (one
//! read after connecting), and the connection made while the set loads.

mod common;

use std::time::Duration;

use common::{SqlDir, col, db, exists, run, text, version};

const LOCK: &str = "SELECT pg_advisory_lock(7020097439640675072)";

#[tokio::test]
async fn a_run_at_its_target_needs_no_lock_and_still_refuses_a_changed_migration() {
    let db = db().await;
    let dir = SqlDir::tables("noop", 3, |i| {
        format!("CREATE TABLE t_{i} (id bigint PRIMARY KEY)")
    });
    let out = run(dir.path(), &db, &["upgrade"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let holder = db.connect().await.expect("connect");
    holder.batch_execute(LOCK).await.expect("lock");
    let wait = ["--advisory-lock-wait", "300ms"];

    // At head with another session holding the lock: nothing to do, no wait.
    for args in [
        &["upgrade"][..],
        &["upgrade", "0003"],
        &["downgrade", "0003_t_3"],
    ] {
        let out = run(dir.path(), &db, &[&wait[..], args].concat()).await;
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("0003_t_3 -> 0003_t_3 (0 migrations"),
            "{args:?}: {}",
            text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("nothing to do"),
            "{}",
            text(&out)
        );
    }
    // Work to do: the run waits for the lock (and here gives up).
    let out = run(dir.path(), &db, &[&wait[..], &["downgrade", "-1"]].concat()).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("held the advisory lock for more than"),
        "{}",
        text(&out)
    );

    // An applied migration edited since: refused at once, not after the lock wait.
    dir.add(
        "0002_t_2",
        "CREATE TABLE t_2 (id bigint PRIMARY KEY, x int)",
        None,
    );
    let out = run(dir.path(), &db, &[&wait[..], &["upgrade"]].concat()).await;
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("migration 0002_t_2 was applied with checksum"),
        "{}",
        text(&out)
    );
    assert!(!err.contains("advisory lock"), "{}", text(&out));
    let out = run(
        dir.path(),
        &db,
        &[&wait[..], &["upgrade", "--allow-changed-checksums"]].concat(),
    )
    .await;
    assert!(out.status.success(), "allowed: {}", text(&out));

    // Nothing was taken, written or left behind by the no-op runs.
    let c = db.connect().await.expect("connect");
    assert_eq!(version(&c).await, vec!["0003_t_3"]);
    assert!(exists(&c, "t_3").await);
    assert_eq!(
        col(
            &c,
            "SELECT count(*) FROM notify_db_migration_journal WHERE operation <> 'upgrade'"
        )
        .await,
        vec![Some("0".to_owned())]
    );
    assert_eq!(
        col(
            &c,
            // pg_locks is the whole cluster's: other tests' runners lock in their databases.
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid() \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        .await,
        vec![Some("1".to_owned())],
        "only the holder's lock"
    );
}

#[tokio::test]
async fn a_set_that_does_not_load_is_reported_while_the_connection_still_hangs() {
    // A server that accepts the TCP connection and never answers: the connection is made while
    // the set loads, and must not delay the set's error (connecting gives up after 30 s).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("address").port();
    let dir = SqlDir::new("noop-badset");
    dir.add("0001_a", "CREATE TABLE a (id bigint)", None).add(
        "0001_b",
        "CREATE TABLE b (id bigint)",
        None,
    );
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_notify-db-migrate"))
        .arg("--source")
        .arg(dir.path())
        .args([
            "--database-url",
            &format!("postgresql://u:secret@127.0.0.1:{port}/d"),
            "upgrade",
        ])
        .env("NOTIFY_ENVIRONMENT", "test")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("the set's error waited for the hanging connection")
        .expect("wait");
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("duplicate migration number 0001"),
        "{}",
        text(&out)
    );
    assert!(!err.contains("secret"), "{}", text(&out));
    drop(silent);
}
