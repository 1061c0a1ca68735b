//! `cargo xtask doctor` against the harness' real primary + replica: a good configuration passes
//! every check; a closed port, a wrong password, an unknown host, a missing database, a replica as
//! primary and pending migrations each give a ✗ line with a fix line, and a non-zero exit. No
//! password is ever shown.

use std::net::TcpListener;
use std::process::{Command, Output};

use notify_db_testdb::{PgBouncer, TestDb};

/// Variables of SPEC.md that must not leak in from the environment running the tests.
const VARS: [&str; 11] = [
    "SQLALCHEMY_DATABASE_URI",
    "SQLALCHEMY_DATABASE_URI_BULK",
    "DATABASE_STATEMENT_TIMEOUT_MS",
    "DATABASE_STATEMENT_TIMEOUT_REPLICA_MS",
    "DATABASE_MAX_PARALLEL_WORKERS",
    "DATABASE_MAX_PARALLEL_WORKERS_REPLICA",
    "DATABASE_DEFAULT_DISABLE_PARALLEL_QUERY",
    "SQLALCHEMY_POOL_SIZE",
    "DATABASE_URI_TRANSACTION_POOLER",
    "DATABASE_URI_BULK_TRANSACTION_POOLER",
    "DATABASE_MIGRATION_URI",
];

fn xtask(args: &[&str], env: &[(&str, &str)]) -> (Output, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args).env("NOTIFY_ENVIRONMENT", "test");
    for v in VARS {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run xtask");
    // Shown with --nocapture, or when the test fails.
    println!(
        "$ xtask {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
    // dropped here: nothing listens on it any more
}

/// The line starting with `prefix`, and the line after it.
fn line_and_next<'a>(text: &'a str, prefix: &str) -> (&'a str, &'a str) {
    let lines: Vec<&str> = text.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}:\n{text}"));
    (lines[i], lines.get(i + 1).copied().unwrap_or_default())
}

fn head() -> String {
    let set = notify_db_migrations::set().expect("migration set");
    set.head().expect("a head").to_owned()
}

#[tokio::test]
async fn a_good_configuration_passes_every_check() {
    let db = TestDb::create().await.expect("test database");
    let primary = db.primary_uri();
    let replica = db.replica_uri().expect("replica");
    let (out, text) = xtask(
        &["migrate", "upgrade"],
        &[("SQLALCHEMY_DATABASE_URI", &primary)],
    );
    assert!(out.status.success(), "migrate upgrade failed:\n{text}");
    db.sync_replica().await.expect("replica caught up");

    let env = [
        ("SQLALCHEMY_DATABASE_URI", primary.as_str()),
        ("SQLALCHEMY_DATABASE_URI_BULK", replica.as_str()),
        ("DATABASE_STATEMENT_TIMEOUT_REPLICA_MS", "600000"),
        ("DATABASE_MAX_PARALLEL_WORKERS", "3"),
    ];
    let (out, text) = xtask(&["doctor"], &env);
    assert!(
        out.status.success(),
        "doctor failed on a good configuration:\n{text}"
    );
    let p = db.primary();
    let r = db.replica().expect("replica");
    // The run's major (the suite runs on every supported one), read from the server itself.
    let major: String = db
        .connect()
        .await
        .expect("connect")
        .query_one(
            "SELECT (current_setting('server_version_num')::int / 10000)::text",
            &[],
        )
        .await
        .expect("server_version_num")
        .get(0);
    let (pl, rl) = (
        format!("default {}:{}", p.host, p.port),
        format!("bulk {}:{}", r.host, r.port),
    );
    for expected in [
        format!("✓ {pl} reachable: accepts connections"),
        format!("✓ {pl} version: PostgreSQL {major}."),
        format!("✓ {pl} role: primary (read-write)"),
        // The session values are read back from the server, as our setup left them.
        format!(
            "✓ {pl} session: statement_timeout 1200000 ms (DATABASE_STATEMENT_TIMEOUT_MS), max_parallel_workers_per_gather 3"
        ),
        format!("✓ {rl} reachable: accepts connections"),
        format!("✓ {rl} role: replica (in recovery, read-only)"),
        format!("✓ {rl} replica lag: "),
        format!(
            "✓ {rl} session: statement_timeout 600000 ms (DATABASE_STATEMENT_TIMEOUT_REPLICA_MS)"
        ),
        format!("✓ {rl} connections: max_connections "),
        "✓ pool settings: size 5 per bind, wait 30s".to_owned(),
        // What a migration run applies: no statement_timeout unless asked, as the reference.
        "✓ migration timeouts: lock_timeout 1000ms, statement_timeout none".to_owned(),
        format!("✓ migrations: at head {}", head()),
        "✓ migration lock: advisory lock 7020097439640675072 is free".to_owned(),
        "all checks passed".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&expected)),
            "missing {expected:?}:\n{text}"
        );
    }
    assert!(
        text.contains(", read-only"),
        "bulk session must be read-only:\n{text}"
    );
    assert!(!text.contains('✗'), "{text}");
    assert!(!text.contains(&p.password), "password leaked:\n{text}");
}

#[tokio::test]
async fn a_closed_port_and_pending_migrations_fail_with_fixes() {
    let db = TestDb::create().await.expect("test database");
    let p = db.primary();
    let port = closed_port();
    let bulk = format!(
        "postgresql://{}:{}@127.0.0.1:{port}/{}",
        p.user,
        p.password,
        db.name()
    );
    let (out, text) = xtask(
        &["doctor"],
        &[
            ("SQLALCHEMY_DATABASE_URI", &db.primary_uri()),
            ("SQLALCHEMY_DATABASE_URI_BULK", &bulk),
        ],
    );
    assert!(
        !out.status.success(),
        "doctor passed with a closed port:\n{text}"
    );
    let (line, fix) = line_and_next(&text, &format!("✗ bulk 127.0.0.1:{port} reachable"));
    assert!(line.contains(": refused: "), "{line}");
    assert!(
        fix.starts_with("    fix: ") && fix.contains(&format!("pg_isready -h 127.0.0.1 -p {port}")),
        "{fix}"
    );
    // The primary is fine, and the database has no migrations applied yet.
    assert!(
        text.contains(&format!("✓ default {}:{} reachable", p.host, p.port)),
        "{text}"
    );
    let total = notify_db_migrations::set().expect("set").migrations().len();
    let (line, fix) = line_and_next(&text, "✗ migrations: ");
    assert!(
        line.contains(&format!(
            "at base (not migrated), head is {}: {total} pending",
            head()
        )),
        "{line}"
    );
    assert!(fix.contains("cargo xtask migrate upgrade"), "{fix}");
    let last = text
        .lines()
        .rev()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert_eq!(last, "error: doctor found 2 problem(s)", "{text}");
    assert!(!text.contains(&p.password), "password leaked:\n{text}");
}

#[tokio::test]
async fn wrong_password_and_unknown_host_are_named() {
    let db = TestDb::create().await.expect("test database");
    let p = db.primary();
    let wrong = "Wr0ngDoctorPw";
    let primary = format!(
        "postgresql://{}:{wrong}@{}:{}/{}",
        p.user,
        p.host,
        p.port,
        db.name()
    );
    let bulk = format!(
        "postgresql://{}:{}@doctor-test.invalid:5432/{}",
        p.user,
        p.password,
        db.name()
    );
    let (out, text) = xtask(
        &["doctor"],
        &[
            ("SQLALCHEMY_DATABASE_URI", &primary),
            ("SQLALCHEMY_DATABASE_URI_BULK", &bulk),
        ],
    );
    assert!(!out.status.success(), "{text}");
    let (line, fix) = line_and_next(&text, &format!("✗ default {}:{} reachable", p.host, p.port));
    assert!(
        line.contains(": auth failed: password authentication failed"),
        "{line}"
    );
    assert!(
        fix.contains("user name and password in SQLALCHEMY_DATABASE_URI"),
        "{fix}"
    );
    let (line, fix) = line_and_next(&text, "✗ bulk doctor-test.invalid:5432 reachable");
    assert!(
        line.contains(": DNS: cannot resolve doctor-test.invalid"),
        "{line}"
    );
    assert!(fix.contains("SQLALCHEMY_DATABASE_URI_BULK"), "{fix}");
    let (line, _) = line_and_next(&text, "✗ migrations: ");
    assert!(line.contains("not checked"), "{line}");
    assert!(
        !text.contains(wrong) && !text.contains(&p.password),
        "password leaked:\n{text}"
    );
}

#[tokio::test]
async fn a_missing_database_is_named_directly_and_through_pgbouncer() {
    let db = TestDb::create().await.expect("test database");
    let p = db.primary();
    let missing = format!("{}_missing", db.name());
    // PostgreSQL answers 3D000 directly; PgBouncer relays the server's refusal as 08P01.
    let bouncer = PgBouncer::builder()
        .database("bulk", p, &missing)
        .start()
        .expect("a PgBouncer from notify-db-testdb (install the Debian package `pgbouncer`)");
    let primary = p.uri(&missing);
    let bulk = bouncer.endpoint(&p.user, &p.password).uri("bulk");
    let (out, text) = xtask(
        &["doctor"],
        &[
            ("SQLALCHEMY_DATABASE_URI", &primary),
            ("SQLALCHEMY_DATABASE_URI_BULK", &bulk),
            ("DATABASE_URI_BULK_TRANSACTION_POOLER", "true"),
        ],
    );
    assert!(!out.status.success(), "{text}");
    let hosts = [
        (
            "default",
            p.host.clone(),
            p.port,
            "SQLALCHEMY_DATABASE_URI:",
            "3D000",
        ),
        (
            "bulk",
            bouncer.endpoint("", "").host,
            bouncer.port(),
            "SQLALCHEMY_DATABASE_URI_BULK:",
            "08P01",
        ),
    ];
    for (bind, host, port, var, code) in hosts {
        let (line, fix) = line_and_next(&text, &format!("✗ {bind} {host}:{port} reachable"));
        assert!(
            line.contains(&format!(
                "no such database: database \"{missing}\" does not exist"
            )) && line.contains(code),
            "{line}"
        );
        assert!(
            fix.contains(var) && fix.contains("database name at the end of the URI"),
            "{fix}"
        );
    }
    assert!(!text.contains(&p.password), "password leaked:\n{text}");
}

#[tokio::test]
async fn a_replica_configured_as_primary_is_flagged() {
    let db = TestDb::create().await.expect("test database");
    db.sync_replica().await.expect("database on the replica");
    let r = db.replica().expect("replica");
    let (out, text) = xtask(
        &["doctor"],
        &[(
            "SQLALCHEMY_DATABASE_URI",
            &db.replica_uri().expect("replica uri"),
        )],
    );
    assert!(!out.status.success(), "{text}");
    let (line, fix) = line_and_next(&text, &format!("✗ default {}:{} role", r.host, r.port));
    assert!(line.ends_with("replica (in recovery, read-only)"), "{line}");
    assert!(fix.contains("point SQLALCHEMY_DATABASE_URI at it"), "{fix}");
    assert!(!text.contains(&r.password), "password leaked:\n{text}");
}

#[tokio::test]
async fn a_pg_hba_rejection_is_told_apart_from_a_wrong_password() {
    // A private cluster: its pg_hba.conf is changed.
    let cluster = notify_db_testdb::Cluster::builder()
        .label("doctor-hba")
        .start()
        .expect("private cluster");
    let server = cluster.primary();
    let ep = server.endpoint();
    let admin = ep.connect("postgres").await.expect("connect");
    admin
        .batch_execute("CREATE DATABASE hba_rejected")
        .await
        .expect("create database");
    let hba = server.data_dir().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    std::fs::write(
        &hba,
        format!("host hba_rejected all 127.0.0.0/8 reject\n{old}"),
    )
    .expect("write pg_hba.conf");
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .expect("reload");

    let (out, text) = xtask(
        &["doctor"],
        &[("SQLALCHEMY_DATABASE_URI", &ep.uri("hba_rejected"))],
    );
    assert!(!out.status.success(), "{text}");
    let (line, fix) = line_and_next(
        &text,
        &format!("✗ default {}:{} reachable", ep.host, ep.port),
    );
    assert!(line.contains(": pg_hba rejected: "), "{line}");
    assert!(
        fix.contains("pg_hba.conf has no line for this client"),
        "{fix}"
    );
    assert!(!text.contains(&ep.password), "password leaked:\n{text}");
}

#[test]
fn doctor_and_pitr_drill_have_help() {
    for (sub, option) in [
        ("doctor", "--max-lag-seconds"),
        ("pitr-drill", "--rows-before-backup"),
    ] {
        let (out, text) = xtask(&[sub, "--help"], &[]);
        assert!(
            out.status.success() && text.contains("Usage:") && text.contains(option),
            "{sub} --help:\n{text}"
        );
    }
}

#[tokio::test]
async fn a_migration_lock_held_by_an_idle_session_is_reported_with_its_pid_and_the_cure() {
    let db = TestDb::create().await.expect("test database");
    let primary = db.primary_uri();
    let (out, text) = xtask(
        &["migrate", "upgrade"],
        &[("SQLALCHEMY_DATABASE_URI", &primary)],
    );
    assert!(out.status.success(), "migrate upgrade failed:\n{text}");
    // What a run through a transaction pooler leaves behind: an idle session holding the lock.
    let mut config = db.primary().pg_config(db.name());
    config.application_name("leftover-runner");
    let (holder, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("a direct session");
    tokio::spawn(conn);
    let pid: i32 = holder
        .query_one(
            "SELECT pg_backend_pid() FROM pg_advisory_lock(7020097439640675072)",
            &[],
        )
        .await
        .expect("taking the lock as Alembic does")
        .get(0);
    let (out, text) = xtask(&["doctor"], &[("SQLALCHEMY_DATABASE_URI", &primary)]);
    assert!(
        !out.status.success(),
        "a held lock must fail doctor:\n{text}"
    );
    let (line, fix) = line_and_next(&text, "✗ migration lock:");
    for part in [
        format!("held by pid {pid}"),
        "application_name \"leftover-runner\"".to_owned(),
        "idle since 20".to_owned(),
    ] {
        assert!(line.contains(&part), "missing {part:?} in {line:?}");
    }
    assert!(
        fix.contains(&format!("pg_terminate_backend({pid})"))
            && fix.contains("DATABASE_MIGRATION_URI"),
        "{fix}"
    );
    drop(holder);
}
