//! Fault suite item 7 (secrets): every xtask command that can see a database URI, and its error
//! paths, run with a URI holding a distinctive password, right and wrong, with debug logging in
//! both log formats: the password appears in no output (stdout, stderr, logs, errors, the
//! `/metrics` text the demo prints). Every command that takes a database reached it: the
//! server's log (`log_connections`) shows its login with the right password and the rejected
//! one with the wrong password. Runs on a private cluster, since `drop-test-dbs` drops every
//! test database of the server it is pointed at.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use notify_db_testdb::Cluster;

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");
const LIMIT: Duration = Duration::from_secs(120);

/// Runs xtask with `args` and `uri`; returns (exit success, stdout + stderr). Killed after LIMIT.
fn run(args: &[&str], uri: &str, json: bool) -> (bool, String) {
    let mut cmd = Command::new(XTASK);
    if json {
        cmd.args(["--log-format", "json"]);
    }
    let mut child = cmd
        .args(args)
        .env("SQLALCHEMY_DATABASE_URI", uri)
        .env("SQLALCHEMY_DATABASE_URI_BULK", uri)
        .env("NOTIFY_ENVIRONMENT", "test")
        .env("RUST_LOG", "debug")
        .env_remove("NOTIFY_CONFIG_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xtask");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait xtask") {
            break Some(status);
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = String::from_utf8_lossy(&out_reader.join().expect("stdout reader")).into_owned();
    text.push_str(&String::from_utf8_lossy(
        &err_reader.join().expect("stderr reader"),
    ));
    (status.is_some_and(|s| s.success()), text)
}

/// What the server logged since `offset` bytes into its log; the new end of the log.
fn log_since(log: &Path, offset: u64) -> (String, u64) {
    let mut f = std::fs::File::open(log).expect("open the server log");
    f.seek(SeekFrom::Start(offset))
        .expect("seek in the server log");
    let mut new = String::new();
    f.read_to_string(&mut new).expect("read the server log");
    let end = offset + new.len() as u64;
    (new, end)
}

#[test]
fn no_command_or_error_path_prints_the_password() {
    let cluster = Cluster::builder()
        .label("secrets")
        .setting("log_connections", "on")
        .start()
        .expect("a private PostgreSQL cluster must start for the secrets test");
    let ep = cluster.primary().endpoint().clone();
    let pid = std::process::id();
    let right = format!("Right5ecretPw{pid}Xq");
    let wrong = format!("Wr0ngSecretPw{pid}Zq");
    let role = format!("faults_secret_{pid}");
    // The role with the distinctive password owns the database it migrates.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let admin = ep.connect("postgres").await.expect("connect as superuser");
        for sql in [
            format!("CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{right}'"),
            format!("CREATE DATABASE notification_api OWNER {role}"),
            format!("CREATE DATABASE test_notification_api_gw990001 OWNER {role}"),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .expect("create the role and databases");
        }
    });
    let uri = |pw: &str, db: &str| format!("postgresql://{role}:{pw}@{}:{}/{db}", ep.host, ep.port);
    let good = uri(&right, "notification_api");
    let bad = uri(&wrong, "notification_api");
    let malformed = [
        format!(
            "postgresql://{role}:{right}@{}:notaport/notification_api",
            ep.host
        ),
        format!(
            "postgresql://{role}:{right}@{}:{}/notification_api?foo=bar",
            ep.host, ep.port
        ),
        format!(
            "mysql://{role}:{right}@{}:{}/notification_api",
            ep.host, ep.port
        ),
        format!("postgresql://{role}:{right}@/notification_api"),
        format!("postgresql://{role}:{right}@{}:1/notification_api", ep.host),
        format!(
            "postgresql://{role}:{right}@{}:{}/no_such_db",
            ep.host, ep.port
        ),
    ];

    // (command, whether it connects to the configured database)
    let commands: &[(&[&str], bool)] = &[
        (&["migrate", "current"], true),
        (&["migrate", "history"], true),
        (&["migrate", "check"], true),
        (&["migrate", "upgrade", "head"], true),
        (&["migrate", "downgrade", "-1"], true),
        (&["migrate", "upgrade", "no_such_revision"], true),
        (&["migrate", "drift"], true),
        (&["check-if-migrations-to-run"], true),
        (&["doctor"], true),
        (&["demo", "--no-wait"], true),
        (&["test-migration-downgrade"], true),
        (&["drop-test-dbs"], true),
        (&["lint-migrations"], false),
        (&["dev", "status"], false),
        (&["migrate", "--help"], false),
        (&["doctor", "--help"], false),
    ];
    let log = cluster.primary().log_file().to_path_buf();
    let (_, mut log_end) = log_since(&log, 0);
    let login = format!("connection authorized: user={role} ");
    let refused = format!("password authentication failed for user \"{role}\"");
    let mut ran = 0;
    let mut failures = Vec::new();
    let mut unreached = Vec::new();
    let mut outcomes = Vec::new();
    for (args, connects) in commands {
        for (label, u, secret) in [("right", &good, &right), ("wrong", &bad, &wrong)] {
            for json in [false, true] {
                let (ok, text) = run(args, u, json);
                ran += 1;
                let (logged, end) = log_since(&log, log_end);
                log_end = end;
                let reached = logged.contains(if label == "right" { &login } else { &refused });
                outcomes.push(format!(
                    "{} ({label}, json={json}): {}, {}",
                    args.join(" "),
                    if ok { "ok" } else { "failed" },
                    if reached {
                        "reached the database"
                    } else {
                        "no login"
                    }
                ));
                if *connects && !reached {
                    unreached.push(format!(
                        "`xtask {}` ({label} password, json={json}): the server logged no {}; output:\n{}",
                        args.join(" "),
                        if label == "right" { "login" } else { "rejected login" },
                        text.replace(secret.as_str(), "<PASSWORD>")
                    ));
                }
                if text.contains(secret.as_str()) {
                    let line = text
                        .lines()
                        .find(|l| l.contains(secret.as_str()))
                        .unwrap_or_default()
                        .replace(secret.as_str(), "<PASSWORD>");
                    failures.push(format!(
                        "`xtask {}` ({label} password, json={json}): {line}",
                        args.join(" ")
                    ));
                }
            }
        }
    }
    for m in &malformed {
        for args in [
            &["migrate", "current"][..],
            &["doctor"][..],
            &["check-if-migrations-to-run"][..],
        ] {
            let (_, text) = run(args, m, false);
            ran += 1;
            if text.contains(&right) {
                let line = text
                    .lines()
                    .find(|l| l.contains(&right))
                    .unwrap_or_default()
                    .replace(&right, "<PASSWORD>");
                failures.push(format!(
                    "`xtask {}` with a malformed URI: {line}",
                    args.join(" ")
                ));
            }
        }
    }
    // The right password really works (so the "right" runs exercised the success paths).
    let (ok, text) = run(&["migrate", "current"], &good, false);
    assert!(
        ok,
        "`xtask migrate current` with the right password failed:\n{}",
        text.replace(&right, "<PASSWORD>")
    );
    let (ok, _) = run(&["migrate", "current"], &bad, false);
    assert!(
        !ok,
        "`xtask migrate current` with a wrong password succeeded"
    );
    println!("secrets: {ran} runs\n{}", outcomes.join("\n"));
    assert!(
        failures.is_empty(),
        "the password appeared in xtask output:\n{}",
        failures.join("\n")
    );
    assert!(
        unreached.is_empty(),
        "commands that take a database did not reach it:\n{}",
        unreached.join("\n")
    );
}
