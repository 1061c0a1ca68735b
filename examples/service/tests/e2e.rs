//! End to end: the example service against the harness' primary + replica, driven over HTTP.

mod common;

use common::{http, start};
use notify_db_testdb::TestDb;

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
