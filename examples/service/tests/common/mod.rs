//! What the example service's tests share: starting the built service, and a small HTTP client.

#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use notify_db_testdb::TestDb;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A minimal HTTP/1.1 client: one request per connection, returns (status, body).
pub(crate) async fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect to service");
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: notify.test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("send the request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read the response");
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

/// Starts the built service on `db` (primary and replica), migrating on start; see [`start_with`].
pub(crate) async fn start(db: &TestDb) -> (Child, String) {
    start_with(&[
        ("SQLALCHEMY_DATABASE_URI", db.primary_uri()),
        (
            "SQLALCHEMY_DATABASE_URI_BULK",
            db.replica_uri().expect("replica"),
        ),
    ])
    .await
}

/// Starts the built service (killed when the `Child` drops) with `env` over the test
/// environment, migrating on start, and returns it with its address.
pub(crate) async fn start_with(env: &[(&str, String)]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_notify-db-example-service"));
    cmd.env("NOTIFY_ENVIRONMENT", "test")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("MIGRATE_ON_START", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
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
