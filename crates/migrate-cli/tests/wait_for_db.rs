//! `--wait-for-db DURATION` (issue 24, point 4): a run started before its server waits for it
//! (connection refused, SQLSTATE 57P03, a host name that does not resolve), with a line per
//! attempt on stderr; past the deadline it fails naming the host and the last cause, never the
//! password; any other failure ends the run at once.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{SqlDir, bin_at, db, finish, text};
use notify_db_testdb::{Cluster, Server, StopMode, append, free_port};

const NEED_CLUSTER: &str = "a private PostgreSQL cluster (notify-db-testdb needs PostgreSQL 15+ \
                            binaries; see crates/testdb)";

/// The migration binary on `dir` against `uri`, with `args`.
fn bin(dir: &SqlDir, uri: &str, args: &[&str]) -> tokio::process::Command {
    let mut c = bin_at(dir.path(), uri);
    c.args(args);
    c
}

fn two_tables(label: &str) -> SqlDir {
    SqlDir::tables(label, 2, |i| format!("CREATE TABLE t_{i} (id bigint)"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_waits_for_a_server_started_after_it() {
    let cluster = Cluster::builder()
        .label("wait-for-db")
        .start()
        .expect(NEED_CLUSTER);
    let server = cluster.primary();
    let ep = server.endpoint().clone();
    server.stop(StopMode::Fast).expect("stopping the server");
    let dir = two_tables("wait-start");
    let child = bin(
        &dir,
        &ep.uri("postgres"),
        &["upgrade", "--wait-for-db", "90s"],
    )
    .spawn()
    .expect("running notify-db-migrate");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = Instant::now();
    tokio::task::block_in_place(|| server.start()).expect("starting the server again");
    let out = finish(child).await;
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let waits = stderr
        .matches(&format!(
            "waiting for the database at 127.0.0.1:{}",
            ep.port
        ))
        .count();
    assert!(
        waits >= 2,
        "one line per attempt while down:\n{}",
        text(&out)
    );
    assert!(
        stderr.contains("Connection refused"),
        "the cause is shown: {}",
        text(&out)
    );
    assert!(
        !text(&out).contains(&ep.password),
        "the password is never shown"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the run ends soon after the server is up"
    );
    let c = ep.connect("postgres").await.expect("connect");
    let version = c
        .query_one("SELECT version_num FROM alembic_version", &[])
        .await
        .expect("alembic_version");
    assert_eq!(version.get::<_, String>(0), "0002_t_2");
}

#[tokio::test]
async fn a_deadline_that_passes_names_the_host_and_the_last_cause_never_the_password() {
    let dir = two_tables("wait-deadline");
    let port = free_port(Ipv4Addr::LOCALHOST).expect("a free loopback port");
    let password = "wait-secret-4711";
    let uri = format!("postgresql://notify:{password}@127.0.0.1:{port}/notification_api");
    let started = Instant::now();
    let out = finish(
        bin(&dir, &uri, &["current", "--wait-for-db", "3s"])
            .spawn()
            .expect("running notify-db-migrate"),
    )
    .await;
    let took = started.elapsed();
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "error: the database at 127.0.0.1:{port} did not accept a connection within 3s"
        )) && stderr.contains("last cause: error connecting to server")
            && stderr.contains("Connection refused"),
        "{}",
        text(&out)
    );
    assert!(
        stderr.matches("waiting for the database").count() >= 2,
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(password), "{}", text(&out));
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(30),
        "waited {took:?} for a deadline of 3s"
    );

    // A host name that does not resolve is waited out too, and named.
    let uri = format!("postgresql://notify:{password}@notify-db-wait-test.invalid:5432/x");
    let out = finish(
        bin(&dir, &uri, &["upgrade", "--wait-for-db", "2s"])
            .spawn()
            .expect("running notify-db-migrate"),
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: the database at notify-db-wait-test.invalid:5432 did not accept"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(password), "{}", text(&out));
}

#[tokio::test]
async fn a_failure_waiting_does_not_fix_ends_the_run_at_once() {
    let db = db().await;
    let dir = two_tables("wait-auth");
    let p = db.primary();
    let uri = format!(
        "postgresql://{}:not-the-password@{}:{}/{}",
        p.user,
        p.host,
        p.port,
        db.name()
    );
    let started = Instant::now();
    let out = finish(
        bin(&dir, &uri, &["upgrade", "--wait-for-db", "60s"])
            .spawn()
            .expect("running notify-db-migrate"),
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "an authentication failure is not waited out: {}",
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("waiting for the database") && stderr.contains("password authentication"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("not-the-password"), "{}", text(&out));
}

/// Restarts `standby` with `hot_standby` set to `on` or `off` (the last line of its
/// postgresql.conf wins).
fn hot_standby(standby: &Server, value: &str) {
    append(
        &standby.data_dir().join("postgresql.conf"),
        &format!("\nhot_standby = {value}\n"),
    )
    .expect("setting hot_standby");
    tokio::task::block_in_place(|| standby.restart(StopMode::Fast))
        .expect("restarting the standby");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refusing_connections_with_57p03_is_waited_for() {
    // A standby without hot standby answers every connection with SQLSTATE 57P03 ("the
    // database system is not accepting connections"), as a server does while it starts up.
    let cluster = Cluster::builder()
        .label("wait-57p03")
        .replica(true)
        .start()
        .expect(NEED_CLUSTER);
    let standby = cluster.replica().expect("the cluster's standby");
    let ep = standby.endpoint().clone();
    hot_standby(standby, "off");
    let dir = two_tables("wait-57p03");
    let uri = ep.uri("postgres");

    let out = finish(
        bin(&dir, &uri, &["current", "--wait-for-db", "3s"])
            .spawn()
            .expect("running notify-db-migrate"),
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "error: the database at {}:{} did not accept a connection within 3s",
            ep.host, ep.port
        )) && stderr.contains("(SQLSTATE 57P03)"),
        "{}",
        text(&out)
    );

    // Waited out: hot standby comes on while the command waits.
    let child = bin(&dir, &uri, &["current", "--wait-for-db", "90s"])
        .spawn()
        .expect("running notify-db-migrate");
    tokio::time::sleep(Duration::from_secs(3)).await;
    hot_standby(standby, "on");
    let out = finish(child).await;
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("waiting for the database") && stderr.contains("57P03"),
        "{}",
        text(&out)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "base");
    assert!(!text(&out).contains(&ep.password), "{}", text(&out));
}
