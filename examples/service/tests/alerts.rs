//! The alert rules of ops/prometheus against a real Prometheus scraping the example service:
//! driven into pool exhaustion and into a lagging replica, each alert fires, then resolves once
//! the fault is removed; and every PromQL expression of the Grafana dashboard returns data.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{http, start_with};
use notify_db_config::Settings;
use notify_db_migrate_cli::doctor::{DoctorOptions, metrics::metrics as doctor_metrics};
use notify_db_testdb::{Cluster, Endpoint, Prometheus, StopMode, serve_exposition};
use serde_json::Value;

/// The `for:` of every alert in the test copy of the rules (the real file's are minutes).
const TEST_FOR: &str = "3s";
/// How long an alert may take to fire or resolve once its condition holds or ends.
const ALERT_WAIT: Duration = Duration::from_secs(90);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// ops/prometheus/alerts.yml with every `for:` set to [`TEST_FOR`], nothing else changed.
fn alerts_for_test() -> String {
    let real = read("ops/prometheus/alerts.yml");
    let mut changed = 0;
    let text: Vec<String> = real
        .lines()
        .map(|line| {
            let rest = line.trim_start();
            if rest.starts_with("for:") {
                changed += 1;
                format!("{}for: {TEST_FOR}", &line[..line.len() - rest.len()])
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert!(changed >= 10, "only {changed} for: lines in alerts.yml");
    text.join("\n") + "\n"
}

/// The `result` array of an instant query; panics naming the query when it fails.
fn query(prom: &Prometheus, expr: &str) -> Vec<Value> {
    let body = prom
        .query(expr)
        .unwrap_or_else(|e| panic!("query {expr}: {e}"));
    let v: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("query {expr}: {e}: {body}"));
    assert_eq!(v["status"], "success", "query {expr}: {body}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Polls `expr` until it has a result (`present`) or none (`!present`), for at most `within`.
async fn wait_for(prom: &Prometheus, expr: &str, present: bool, within: Duration, why: &str) {
    let deadline = Instant::now() + within;
    loop {
        let result = query(prom, expr);
        if result.is_empty() != present {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{why}: {expr} still {} after {within:?}: {result:?}\nalerts: {:?}",
            if present { "empty" } else { "not empty" },
            query(prom, "ALERTS")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn firing(alert: &str) -> String {
    format!("ALERTS{{alertname=\"{alert}\",alertstate=\"firing\"}}")
}

/// Serves `doctor --metrics` of `settings` on a loopback port, computed at each scrape: what a
/// textfile collector fed by it would expose. On a thread of its own: the doctor writes to a
/// `dyn Write`, so its future is not `Send`.
fn serve_doctor_metrics(settings: Settings) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port for the exporter");
    let addr = listener.local_addr().expect("its address").to_string();
    let set = notify_db_migrations::set().expect("the migration set");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the exporter");
        rt.block_on(async {
            listener
                .set_nonblocking(true)
                .expect("nonblocking listener");
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            serve_exposition(listener, || async {
                let mut body = Vec::new();
                let options = DoctorOptions::default();
                let _ = doctor_metrics(Ok(&settings), Ok(&set), &options, &mut body).await;
                body
            })
            .await;
        });
    });
    addr
}

async fn replay(replica: &Endpoint, pause: bool) {
    let c = replica
        .connect("postgres")
        .await
        .expect("a replica session");
    let f = if pause {
        "pg_wal_replay_pause"
    } else {
        "pg_wal_replay_resume"
    };
    c.batch_execute(&format!("SELECT {f}()"))
        .await
        .unwrap_or_else(|e| panic!("{f} on {}:{}: {e}", replica.host, replica.port));
}

/// Every PromQL expression of the dashboard (panel targets, also inside rows), with Grafana's
/// variables replaced by what a user would see: all instances, all binds, a 1m rate window.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: Value =
        serde_json::from_str(&read("ops/grafana/notify-db.json")).expect("dashboard JSON");
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let title = panel["title"].as_str().unwrap_or("?").to_owned();
                out.push((title, substitute(expr)));
            }
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        // `label_values(metric, label)`: the metric must have series with that label.
        let q = var["query"]["query"]
            .as_str()
            .or(var["query"].as_str())
            .unwrap_or_default();
        if let Some(args) = q
            .strip_prefix("label_values(")
            .and_then(|a| a.strip_suffix(')'))
        {
            let (metric, label) = args.rsplit_once(',').expect("label_values(metric, label)");
            let name = var["name"].as_str().unwrap_or("?");
            out.push((
                format!("variable {name}"),
                format!(
                    "count by ({}) ({})",
                    label.trim(),
                    substitute(metric.trim())
                ),
            ));
        }
    }
    out
}

fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
        .replace("$instance", ".*")
        .replace("$bind", ".*")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_and_resolve_and_every_dashboard_query_returns_data() {
    let cluster = Cluster::builder()
        .label("alerts")
        .replicas(2)
        .start()
        .expect("a primary and two replicas (PostgreSQL >= 15 server binaries)");
    let p = cluster.primary().endpoint().clone();
    let (r1, r2) = (
        cluster.replicas()[0].endpoint().clone(),
        cluster.replicas()[1].endpoint().clone(),
    );
    let admin = p.connect("postgres").await.expect("admin session");
    admin
        .batch_execute("CREATE DATABASE notification_api")
        .await
        .expect("creating notification_api");
    cluster.wait_for_replica().expect("replicas streaming");
    let env: Vec<(&str, String)> = vec![
        ("SQLALCHEMY_DATABASE_URI", p.uri("notification_api")),
        (
            "SQLALCHEMY_DATABASE_URI_BULK",
            format!(
                "postgresql://{}:{}@{}:{},{}:{}/notification_api",
                p.user, p.password, r1.host, r1.port, r2.host, r2.port
            ),
        ),
        // Two connections per bind: a handful of blocked requests exhausts the pool.
        ("SQLALCHEMY_POOL_SIZE", "2".into()),
        // Blocked statements end in 57014 after 4 s (the statement-timeout series).
        ("DATABASE_STATEMENT_TIMEOUT_MS", "4000".into()),
        ("NOTIFY_ENVIRONMENT", "test".into()),
    ];
    let (_service, addr) = start_with(&env).await;
    let map: HashMap<&str, String> = env.iter().cloned().collect();
    let settings = Settings::load(None, &|k| map.get(k).cloned()).expect("settings");
    let doctor = serve_doctor_metrics(settings);
    let prom = Prometheus::builder()
        .rules("recording.yml", &read("ops/prometheus/recording.yml"))
        .rules("alerts.yml", &alerts_for_test())
        .scrape("notify-api", &addr)
        .scrape("notify-db-doctor", &doctor)
        // Scrapes time out after the interval: doctor's checks open several connections.
        .interval(Duration::from_secs(2))
        .start()
        .expect("Prometheus (Debian package `prometheus`)");
    let rules = prom.get("/api/v1/rules").expect("rules");
    assert!(
        rules.contains("NotifyDbPoolExhausted") && rules.contains("job_instance_bind:"),
        "the rules did not load: {rules}"
    );
    wait_for(
        &prom,
        "up{job=\"notify-api\"} == 1",
        true,
        ALERT_WAIT,
        "scraping the service",
    )
    .await;
    wait_for(
        &prom,
        "up{job=\"notify-db-doctor\"} == 1",
        true,
        ALERT_WAIT,
        "scraping doctor",
    )
    .await;

    // 1. Pool exhaustion: a lock on `services` blocks every insert; 8 callers loop on it.
    let holder = p.connect("notification_api").await.expect("lock session");
    holder
        .batch_execute("BEGIN; LOCK TABLE services IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("locking services");
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..8)
        .map(|i| {
            let (addr, stop) = (addr.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let body = format!(r#"{{"name":"caller-{i}-{n}"}}"#);
                    let _ = http(&addr, "POST", "/services", Some(&body)).await;
                    n += 1;
                }
            })
        })
        .collect();
    let exhausted = firing("NotifyDbPoolExhausted");
    wait_for(&prom, &exhausted, true, ALERT_WAIT, "pool exhausted").await;
    let labels = query(&prom, &exhausted);
    assert_eq!(labels[0]["metric"]["bind"], "default", "{labels:?}");
    wait_for(
        &prom,
        "db_statement_timeouts_total{bind=\"default\"} > 0",
        true,
        ALERT_WAIT,
        "statement timeouts counted",
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    holder.batch_execute("COMMIT").await.expect("unlocking");
    for c in callers {
        tokio::time::timeout(Duration::from_secs(30), c)
            .await
            .expect("callers end once the lock is gone")
            .expect("caller task");
    }
    wait_for(
        &prom,
        &exhausted,
        false,
        ALERT_WAIT,
        "pool exhaustion resolved",
    )
    .await;

    // 2. A refused bulk host: replica 2 stops while reads come in, then starts again.
    let (code, body) = http(&addr, "POST", "/services", Some(r#"{"name":"read-me"}"#)).await;
    assert_eq!(code, 201, "{body}");
    cluster.replicas()[1]
        .stop(StopMode::Fast)
        .expect("stopping replica 2");
    let deadline = Instant::now() + ALERT_WAIT;
    while query(&prom, "db_connection_errors_total").is_empty() {
        assert!(Instant::now() < deadline, "no connection error counted");
        let reads: Vec<_> = (0..4)
            .map(|_| {
                let addr = addr.clone();
                tokio::spawn(async move { http(&addr, "GET", "/services/1", None).await })
            })
            .collect();
        for r in reads {
            let _ = r.await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cluster.replicas()[1].start().expect("starting replica 2");
    cluster
        .wait_for_replica()
        .expect("replicas streaming again");

    // 3. Replay paused on both replicas while the primary writes: lag over the limit, bulk
    //    falls back to the primary.
    let writer = {
        let c = p.connect("notification_api").await.expect("writer session");
        tokio::spawn(async move {
            let mut i = 0;
            loop {
                let sql = format!(
                    "INSERT INTO services (name, message_limit, email_from) VALUES ('tick-{i}', 1, 'x')"
                );
                if c.batch_execute(&sql).await.is_err() {
                    return;
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    replay(&r1, true).await;
    replay(&r2, true).await;
    let lag = firing("NotifyDbReplicaLagHigh");
    let fallback = firing("NotifyDbBulkFallbackToPrimary");
    wait_for(&prom, &lag, true, ALERT_WAIT, "replica lag").await;
    wait_for(&prom, &fallback, true, ALERT_WAIT, "bulk fallback").await;
    let hosts: Vec<String> = query(&prom, &lag)
        .iter()
        .filter_map(|s| s["metric"]["host"].as_str().map(str::to_owned))
        .collect();
    assert!(
        hosts.contains(&format!("{}:{}", r1.host, r1.port)),
        "lag alert names the replica: {hosts:?}"
    );

    // 4. Every dashboard query parses and returns data on this service.
    let queries = dashboard_queries();
    assert!(
        queries.len() >= 12,
        "only {} dashboard queries",
        queries.len()
    );
    let empty: Vec<String> = queries
        .iter()
        .filter(|(_, expr)| query(&prom, expr).is_empty())
        .map(|(title, expr)| format!("{title}: {expr}"))
        .collect();
    assert!(
        empty.is_empty(),
        "dashboard queries without data:\n{}",
        empty.join("\n")
    );

    replay(&r1, false).await;
    replay(&r2, false).await;
    wait_for(&prom, &lag, false, ALERT_WAIT, "replica lag resolved").await;
    wait_for(
        &prom,
        &fallback,
        false,
        ALERT_WAIT,
        "bulk fallback resolved",
    )
    .await;
    writer.abort();
}
