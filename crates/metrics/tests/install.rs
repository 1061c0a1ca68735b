//! `install()`: the global recorder, set once, and the exporter's own HTTP listener. In a test
//! binary of its own, because the global recorder is per process.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use notify_db_metrics::{DbMetrics, install, names};
use notify_db_pool::{Bind, ConnInfo, PoolObserver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{parse, promtool_check};

async fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    // HTTP/1.0: the body is sent whole and the connection closed, no chunked decoding needed.
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_sets_the_global_recorder_once_and_serves_metrics_over_http() {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("probe port")
        .local_addr()
        .expect("addr")
        .port();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let handle = install(Some(addr)).expect("install with a listener");
    let again = install(None).expect("a second install returns the same handle");

    let conn = ConnInfo {
        id: 1,
        bind: Bind::Bulk,
        host: "replica".to_owned(),
        port: 5432,
        server_addr: Some("10.1.2.3".parse().expect("ip")),
        in_recovery: true,
        backend_pid: 9,
    };
    handle.observer().connected(&conn);
    // The facade observer and the `metrics` macros reach the same, global, recorder.
    DbMetrics::from_facade().connected(&conn);
    metrics::describe_counter!("app_requests_total", "Requests served by the app");
    metrics::counter!("app_requests_total").increment(3);

    let labels = [("bind", "bulk"), ("inet_server_addr", "10.1.2.3")];
    let p = parse(&again.render());
    assert_eq!(p.gauge(names::CONNECTED, &labels), Some(2.0));
    assert_eq!(p.counter("app_requests_total", &[]), Some(3.0));

    let deadline = Instant::now() + Duration::from_secs(10);
    let response = loop {
        match scrape(addr).await {
            Ok(r) if r.starts_with("HTTP/1.") => break r,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "the metrics listener on {addr} never answered: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    let p = parse(body);
    assert_eq!(p.gauge(names::CONNECTED, &labels), Some(2.0));
    promtool_check(body);
}
