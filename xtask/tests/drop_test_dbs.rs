//! `cargo xtask drop-test-dbs` drops exactly the test databases, also while they are in use.

use std::process::Command;

use notify_db_testdb::{Cluster, quote_ident};

#[tokio::test]
async fn drops_exactly_the_test_databases() {
    // A private cluster: dropping every test database on the shared one would break other tests.
    let cluster = Cluster::builder()
        .label("dropdbs")
        .start()
        .expect("private cluster");
    let ep = cluster.primary().endpoint().clone();
    let admin = ep.connect("postgres").await.expect("connect");
    let doomed = [
        "test_notification_api_master",
        "test_notification_api_gw0",
        "test_notification_api_gw17",
    ];
    let survivors = [
        "notification_api",
        "test_notification_api_other",
        "test_notification_api_gw",
        "test_notification_api_gwx",
        "test_notification_api_master_copy",
        "Test_Notification_Api_Gw1",
        // Names that need quoting: a drop built from them must name exactly them, or nothing.
        "test_notification_api_gw 4",
        "test_notification_api_GW5",
        "test_notification_api_gw3\"; DROP DATABASE notification_api; --",
    ];
    for name in doomed.iter().chain(survivors.iter()) {
        admin
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .await
            .expect("create");
    }
    // One of them is in use: the drop must still work.
    let in_use = ep
        .connect("test_notification_api_gw0")
        .await
        .expect("connect to gw0");

    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("drop-test-dbs")
        .env("SQLALCHEMY_DATABASE_URI", ep.uri("notification_api"))
        .env("NOTIFY_ENVIRONMENT", "test")
        .output()
        .expect("run xtask");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "drop-test-dbs failed: {stdout}\n{stderr}"
    );
    for name in doomed {
        assert!(
            stdout.contains(&format!("dropped {name}\n")),
            "{name} not reported: {stdout}"
        );
    }
    assert!(stdout.contains("3 test database(s) dropped"), "{stdout}");
    assert!(
        !stdout.contains(&ep.password) && !stderr.contains(&ep.password),
        "password leaked"
    );

    let rows = admin
        .query("SELECT datname FROM pg_database", &[])
        .await
        .expect("list");
    let left: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    for name in doomed {
        assert!(!left.iter().any(|n| n == name), "{name} survived");
    }
    for name in survivors {
        assert!(left.iter().any(|n| n == name), "{name} was dropped");
    }
    assert!(
        in_use.is_closed() || in_use.simple_query("SELECT 1").await.is_err(),
        "gw0 session should be gone"
    );
}

#[test]
fn every_subcommand_has_help() {
    for sub in [
        vec![],
        vec!["test"],
        vec!["dev"],
        vec!["dev", "up"],
        vec!["drop-test-dbs"],
        vec!["demo"],
        vec!["bench"],
        vec!["lint"],
        vec!["soak"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(&sub)
            .arg("--help")
            .output()
            .expect("run xtask");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Usage:"),
            "`xtask {} --help`: {text}",
            sub.join(" ")
        );
    }
}

#[test]
fn failure_is_one_line_and_non_zero() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("drop-test-dbs")
        .env("SQLALCHEMY_DATABASE_URI", "mysql://user:SecretPw42@host/db")
        .env("NOTIFY_ENVIRONMENT", "test")
        .output()
        .expect("run xtask");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("SQLALCHEMY_DATABASE_URI"),
        "{stderr}"
    );
    assert!(!stderr.contains("SecretPw42"), "password leaked: {stderr}");
}
