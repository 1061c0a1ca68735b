//! `cargo xtask demo` runs the main job end to end on its own clusters.

use std::process::Command;

#[test]
fn demo_migrates_runs_the_workload_and_shows_metrics() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["demo", "--no-wait"])
        .env_remove("SQLALCHEMY_DATABASE_URI")
        .env_remove("SQLALCHEMY_DATABASE_URI_BULK")
        .output()
        .expect("run xtask demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    let head = notify_db_migrations_head();
    for expected in [
        "starting a local primary + streaming replica",
        "== migrate to head",
        "0001_create_services",
        "default: wrote 20 services on the primary",
        "bulk:    read 20 services on 127.0.0.2 (in recovery: true)",
        "SQLSTATE 25006",
        "db_connection_total_connected{bind=\"bulk\",inet_server_addr=\"127.0.0.2\"} 1",
        "db_connection_total_checked_out{bind=\"default\",inet_server_addr=\"127.0.0.1\"} 0",
        "stopped the local clusters",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    let current = stdout
        .split("== current\n")
        .nth(1)
        .and_then(|s| s.lines().next())
        .unwrap_or_default();
    assert_eq!(current.trim(), head, "current should be the head");
}

/// The head of the migration set: the highest-numbered file in migrations/.
fn notify_db_migrations_head() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut stems: Vec<String> = std::fs::read_dir(dir)
        .expect("migrations dir")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".rs")?;
            stem.as_bytes()
                .first()
                .is_some_and(u8::is_ascii_digit)
                .then(|| stem.to_string())
        })
        .collect();
    stems.sort();
    stems.pop().expect("at least one migration")
}
