//! End to end: the example service against the harness' primary + replica, driven over HTTP.

use std::process::Stdio;
use std::time::Duration;

use notify_db_testdb::TestDb;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A minimal HTTP/1.1 client: one request per connection, returns (status, body).
async fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect to service");
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: notify.test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Starts the built service (killed when the `Child` drops) and returns it with its address.
async fn start(db: &TestDb) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_notify-db-example-service"))
        .env("SQLALCHEMY_DATABASE_URI", db.primary_uri())
        .env(
            "SQLALCHEMY_DATABASE_URI_BULK",
            db.replica_uri().expect("replica"),
        )
        .env("NOTIFY_ENVIRONMENT", "test")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("MIGRATE_ON_START", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the example service");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("service did not start within 60 s")
        .expect("read stdout");
    let Some(line) = line else {
        let out = child.wait_with_output().await.expect("service output");
        panic!("service exited: {}", String::from_utf8_lossy(&out.stderr));
    };
    let addr = line
        .strip_prefix("listening on ")
        .expect("first line names the address")
        .to_string();
    (child, addr)
}

#[tokio::test]
async fn status_writes_reads_and_metrics_over_http() {
    let db = TestDb::create().await.expect("test database");
    let (mut service, addr) = start(&db).await;
    db.sync_replica().await.expect("replica caught up");

    // Health check: both binds report the same alembic head.
    let (code, body) = http(&addr, "GET", "/_status", None).await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let head = notify_db_migrations::set()
        .expect("set")
        .head()
        .expect("head")
        .to_string();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["db_version"], head.as_str());
    assert_eq!(v["db_bulk_version"], head.as_str());

    // A write on default, then a read of it on bulk (the replica).
    let (code, body) = http(
        &addr,
        "POST",
        "/services",
        Some(r#"{"name":"e2e-service"}"#),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).expect("json");
    let id = created["id"].as_i64().expect("id");
    db.sync_replica().await.expect("replica caught up");
    let (code, body) = http(&addr, "GET", &format!("/services/{id}"), None).await;
    assert_eq!(code, 200, "{body}");
    let read: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(read["name"], "e2e-service");

    // Metrics carry the route template, never the raw path.
    let (code, text) = http(&addr, "GET", "/metrics", None).await;
    assert_eq!(code, 200);
    let samples: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("db_connection_open_duration_seconds_count{"))
        .collect();
    assert!(
        samples.iter().any(|l| l.contains("path=\"/services/{id}\"")
            && l.contains("bind=\"bulk\"")
            && l.contains("inet_server_addr=\"127.0.0.2\"")),
        "no bulk sample for the route template: {samples:#?}"
    );
    assert!(
        samples.iter().any(|l| l.contains("path=\"/services\"")
            && l.contains("method=\"POST\"")
            && l.contains("host=\"notify.test\"")
            && l.contains("bind=\"default\"")),
        "no default sample for POST /services: {samples:#?}"
    );
    assert!(
        !text.contains(&format!("/services/{id}\"")),
        "raw path leaked into labels"
    );
    assert!(
        !text.contains(&db.primary().password),
        "password in metrics"
    );
    service.start_kill().expect("stop");
    let out = service.wait_with_output().await.expect("output");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(&db.primary().password),
        "password in logs"
    );
}

/// The README's example is this package's `examples/readme.rs`, so it is compiled.
#[test]
fn readme_example_is_the_compiled_one() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("../../README.md")).expect("README.md");
    let example = std::fs::read_to_string(root.join("examples/readme.rs")).expect("example");
    let start = readme
        .find("## A service, start to finish")
        .expect("section");
    let code = &readme[start..];
    let code = &code[code.find("```rust\n").expect("code block") + 8..];
    let code = &code[..code.find("```").expect("end of block")];
    assert!(
        example.ends_with(code),
        "README.md and examples/service/examples/readme.rs differ"
    );
}
