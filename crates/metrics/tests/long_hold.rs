//! Long holds on real pools (the harness' shared primary + replica): a checkout kept past
//! `DATABASE_LONG_HOLD_WARNING_MS` is warned about once, naming its route, bind, host and backend
//! pid, and `db_pool_longest_checkout_seconds` shows it until it is returned.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify_db_config::Settings;
use notify_db_metrics::{
    MetricsHandle, RequestContext, names, with_job_context, with_request_context,
};
use notify_db_testdb::TestDb;

use common::{observed_pools, parse, replicated_db};

/// The warning's own words (`log_long_hold`).
const WARNING: &str = "checked out for longer than the long-hold warning";
const LIMIT: Duration = Duration::from_secs(20);

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn warnings(&self) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().expect("log lock")).into_owned();
        text.lines()
            .filter(|l| l.contains(WARNING))
            .map(str::to_owned)
            .collect()
    }
}

fn settings(db: &TestDb, threshold_ms: &str) -> Settings {
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("NOTIFY_ENVIRONMENT".into(), "test".into());
    env.insert("SQLALCHEMY_DATABASE_URI".into(), db.primary_uri());
    let replica = db.replica_uri().expect("the shared cluster has a replica");
    env.insert("SQLALCHEMY_DATABASE_URI_BULK".into(), replica);
    env.insert("DATABASE_LONG_HOLD_WARNING_MS".into(), threshold_ms.into());
    Settings::load(None, &|k| env.get(k).cloned()).expect("settings from the test environment")
}

fn longest(handle: &MetricsHandle, bind: &str) -> Option<f64> {
    parse(&handle.render()).gauge(names::LONGEST_CHECKOUT, &[("bind", bind)])
}

/// Polls `check` every 20 ms until it holds, failing after [`LIMIT`] with `what`.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let polled = tokio::time::timeout(LIMIT, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "not within {LIMIT:?}: {what}");
}

// Current-thread: the pools' sampling task runs on this thread, under the captured subscriber.
#[tokio::test]
async fn a_long_hold_is_warned_once_with_its_route_and_shown_by_the_gauge_until_returned() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let db = replicated_db().await;
    let threshold = Duration::from_millis(300);
    let s = settings(&db, "300");
    assert_eq!(s.pool.long_hold_warning, threshold);
    let (handle, dbs) = observed_pools(&s).await;

    let route = RequestContext::new("POST", "api.notify.test", "/v2/notifications/sms");
    let held = with_request_context(route, dbs.default().get())
        .await
        .expect("a default connection");
    let pid = held.info().backend_pid;
    // A short checkout in a job meanwhile: returned before the threshold, never warned about.
    with_job_context("notify-celery", "send-email", async {
        let quick = dbs.bulk().get().await.expect("a bulk connection");
        quick
            .simple_query("SELECT 1")
            .await
            .expect("a query on bulk");
    })
    .await;

    eventually("the long-hold warning", || !captured.warnings().is_empty()).await;
    eventually("the gauge past the threshold", || {
        longest(&handle, "default").is_some_and(|s| s >= threshold.as_secs_f64())
    })
    .await;
    // Several samples later, still one warning for the one long hold.
    tokio::time::sleep(threshold * 2).await;
    let warnings = captured.warnings();
    assert_eq!(warnings.len(), 1, "once per long hold: {warnings:#?}");
    let w = &warnings[0];
    for part in [
        "WARN".to_owned(),
        "POST".to_owned(),
        "api.notify.test".to_owned(),
        "/v2/notifications/sms".to_owned(),
        "bind=\"default\"".to_owned(),
        format!("host=\"{}\"", db.primary().host),
        format!("backend_pid={pid}"),
    ] {
        assert!(w.contains(&part), "the warning lacks {part}: {w}");
    }
    assert_eq!(
        longest(&handle, "bulk"),
        Some(0.0),
        "bulk holds nothing now"
    );

    drop(held);
    eventually("the gauge back to 0 after the return", || {
        longest(&handle, "default") == Some(0.0)
    })
    .await;
    assert_eq!(captured.warnings().len(), 1, "no warning after the return");
}
