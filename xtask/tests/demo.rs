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
        "== Prometheus (rules: ops/prometheus/alerts.yml, recording.yml)",
        "/graph?g0.expr=",
        "ops/grafana/notify-db.json",
        "Prometheus scraped the demo's /metrics",
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

/// Without `--no-wait` the demo serves until Ctrl-C; then Prometheus and the clusters stop.
#[test]
fn ctrl_c_stops_prometheus_and_the_clusters() {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};

    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("demo")
        .env_remove("SQLALCHEMY_DATABASE_URI")
        .env_remove("SQLALCHEMY_DATABASE_URI_BULK")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run xtask demo");
    let pid = child.id().to_string();
    let stdout = child.stdout.take().expect("stdout");
    // Reads in a thread: a hung demo fails the test at the deadline instead of blocking it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let mut prometheus_port = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "the demo did not get to serving within 300 s:\n{}",
                    seen.join("\n")
                )
            });
        if let Some(url) = line.trim().strip_prefix("alerts: http://127.0.0.1:") {
            prometheus_port = url
                .strip_suffix("/alerts")
                .and_then(|p| p.parse::<u16>().ok());
        }
        let serving = line.contains("press Ctrl-C to stop");
        seen.push(line);
        if serving {
            break;
        }
    }
    let port =
        prometheus_port.unwrap_or_else(|| panic!("no Prometheus URL in:\n{}", seen.join("\n")));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "Prometheus is not listening on {port}"
    );
    let sent = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill -INT");
    assert!(sent.success(), "kill -INT {pid} failed");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("demo status") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not stop within 60 s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    seen.extend(rx.try_iter());
    let out = seen.join("\n");
    assert!(status.success(), "demo exit status {status}:\n{out}");
    for expected in ["stopped Prometheus", "stopped the local clusters"] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "Prometheus still listens on {port} after Ctrl-C"
    );
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
