//! Every command that connects uses the URI's sslmode: against a server that accepts only
//! `hostssl` connections, with `sslmode=verify-full` and the right CA, each one reaches the
//! database; with another CA, each one refuses the server (and never falls back to plain).
//! Covered: `migrate` upgrade, downgrade, current, history, check, stamp, drift and
//! `revision --baseline --from-db`; the pending check
//! (`check-if-migrations-to-run`); `doctor` and `migrate doctor`; the stairway test (`test-migration-downgrade`);
//! `drop-test-dbs`.

use std::process::Command;

use notify_db_testdb::{Cluster, TestCa};

/// Only TLS over TCP (and the local socket, which the harness itself does not use for clients).
const HBA_TLS_ONLY: &str = "local all all trust\nhostssl all all 127.0.0.0/8 scram-sha-256\n";

/// Runs xtask with `SQLALCHEMY_DATABASE_URI=uri` (bulk falls back to it); (success, all output).
fn xtask(args: &[&str], uri: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("SQLALCHEMY_DATABASE_URI", uri)
        .env_remove("SQLALCHEMY_DATABASE_URI_BULK")
        .env("NOTIFY_ENVIRONMENT", "test")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run xtask");
    // URIs in the arguments are shown as the tools show them: without the password.
    let shown: Vec<String> = args
        .iter()
        .map(
            |a| match notify_db_config::DatabaseUri::parse(a, "an argument") {
                Ok(uri) if a.contains("://") => uri.to_string(),
                _ => (*a).to_owned(),
            },
        )
        .collect();
    let text = format!(
        "$ xtask {}\n{}{}",
        shown.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    (out.status.success(), text)
}

#[test]
fn every_command_connects_with_verify_full_and_refuses_a_wrong_ca() {
    let ca = TestCa::new().expect("test CA");
    let other_ca = TestCa::new().expect("a second CA");
    let cluster = Cluster::builder()
        .label("xtask-tls")
        .replica(false)
        .tls(&ca.server_cert(&["127.0.0.1"]).expect("server certificate"))
        .file("pg_hba.conf", HBA_TLS_ONLY)
        .start()
        .expect("a private cluster with ssl=on (PostgreSQL server binaries needed)");
    let dir = std::env::temp_dir().join(format!("notify-db-xtask-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (good, wrong) = (dir.join("ca.crt"), dir.join("wrong-ca.crt"));
    std::fs::write(&good, ca.pem()).expect("write ca.crt");
    std::fs::write(&wrong, other_ca.pem()).expect("write wrong-ca.crt");
    let ep = cluster.primary().endpoint();
    let uri = |ca: &std::path::Path| {
        format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            ep.uri("postgres"),
            ca.display()
        )
    };
    let (good_uri, wrong_uri) = (uri(&good), uri(&wrong));

    // Plain TCP is refused by the server, so a command that forgot TLS fails here.
    let plain = format!("{}?sslmode=disable", ep.uri("postgres"));
    let (ok, text) = xtask(&["migrate", "current"], &plain);
    assert!(!ok, "the server must refuse a plain connection:\n{text}");

    let head = notify_db_migrations::set()
        .expect("migration set")
        .head()
        .expect("a head")
        .to_owned();
    // The stairway test first: it wants an empty database and leaves it at head.
    let (ok, text) = xtask(
        &["test-migration-downgrade", "--database-url", &good_uri],
        &good_uri,
    );
    assert!(ok, "test-migration-downgrade over TLS:\n{text}");
    let answers = |args: &[&str], want: &str| {
        let (ok, text) = xtask(args, &good_uri);
        assert!(
            ok && text.lines().any(|l| l == want),
            "{args:?} over TLS should print {want:?}:\n{text}"
        );
    };
    let (ok, text) = xtask(&["migrate", "upgrade"], &good_uri);
    assert!(ok, "migrate upgrade over TLS:\n{text}");
    answers(&["migrate", "check"], "no");
    answers(&["check-if-migrations-to-run"], "no");
    let (ok, text) = xtask(&["migrate", "downgrade"], &good_uri);
    assert!(ok, "migrate downgrade over TLS:\n{text}");
    answers(&["migrate", "check"], "yes");
    answers(&["check-if-migrations-to-run"], "yes");
    let (ok, text) = xtask(&["migrate", "upgrade"], &good_uri);
    assert!(ok, "migrate upgrade over TLS:\n{text}");
    answers(
        &["migrate", "stamp", "head"],
        &format!("stamp: {head} -> {head} (no migration run)"),
    );
    let (ok, text) = xtask(&["migrate", "current"], &good_uri);
    assert!(
        ok && text.contains(&head),
        "migrate current over TLS:\n{text}"
    );
    let (ok, text) = xtask(&["migrate", "history"], &good_uri);
    assert!(
        ok && text.contains(&head),
        "migrate history over TLS:\n{text}"
    );
    let (ok, text) = xtask(&["migrate", "drift"], &good_uri);
    assert!(
        ok && text.contains("no drift: "),
        "migrate drift over TLS:\n{text}"
    );
    // doctor may flag other things of a one-server set-up (bulk on the primary); what matters
    // here is that it reached the server for the pools and for the migration state.
    // The same checks as the migration binary's `doctor` command.
    let default = format!("default {}:{}", ep.host, ep.port);
    for args in [&["doctor"][..], &["migrate", "doctor"]] {
        let (_, text) = xtask(args, &good_uri);
        for expected in [
            format!("✓ {default} reachable"),
            format!("✓ migrations: at head {head}"),
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(&expected)),
                "{args:?} over TLS: missing {expected:?}:\n{text}"
            );
        }
    }
    // drop-test-dbs reaches the server over TLS too (the maintenance database, then the
    // configured one): plain TCP is refused here, so a NoTls connection would fail.
    let (ok, text) = xtask(&["drop-test-dbs"], &good_uri);
    assert!(
        ok && text.contains(" test database(s) dropped"),
        "drop-test-dbs over TLS:\n{text}"
    );

    for args in [
        &["migrate", "current"][..],
        &["migrate", "upgrade"],
        &["migrate", "downgrade"],
        &["migrate", "history"],
        &["migrate", "check"],
        &["migrate", "stamp", "head"],
        &["migrate", "drift"],
        &["migrate", "revision", "--baseline", "--from-db", &wrong_uri],
        &["check-if-migrations-to-run"],
        &["doctor"],
        &["migrate", "doctor"],
        &["test-migration-downgrade", "--database-url", &wrong_uri],
        &["drop-test-dbs"],
    ] {
        let (ok, text) = xtask(args, &wrong_uri);
        // The command line holds the password: never in a failure message.
        let shown = format!("{args:?}").replace(&ep.password, "****");
        assert!(
            !ok,
            "{shown} must refuse a server its CA did not sign:\n{text}"
        );
        assert!(
            text.to_lowercase().contains("certificate"),
            "{shown} must say the certificate was refused:\n{text}"
        );
        assert!(!text.contains(&ep.password), "password in output:\n{text}");
    }
    // Nothing ran with the wrong CA: the database is still at head.
    let (ok, text) = xtask(&["migrate", "current"], &good_uri);
    assert!(
        ok && text.contains(&head),
        "still at head after the refused commands:\n{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
