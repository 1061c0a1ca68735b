//! Observer-level tests: the pool hook's methods called directly, the rendered text parsed.

mod common;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify_db_metrics::{
    DURATION_BUCKETS, DbMetrics, MetricsHandle, RequestContext, names, prometheus_builder,
    with_job_context, with_request_context,
};
use notify_db_pool::{Bind, ConnInfo, ConnectFailure, PoolObserver};

use common::{parse, promtool_check};

fn conn(id: u64, bind: Bind, addr: Option<&str>) -> ConnInfo {
    ConnInfo {
        id,
        bind,
        host: "db.internal".to_owned(),
        port: 5432,
        server_addr: addr.map(|a| a.parse::<IpAddr>().expect("ip")),
        in_recovery: bind == Bind::Bulk,
        backend_pid: 1000 + id as i32,
    }
}

const PRIMARY: &str = "127.0.0.1";
const REPLICA: &str = "127.0.0.2";

fn assert_close(got: Option<f64>, want: f64) {
    let got = got.expect("sample present");
    assert!((got - want).abs() < 1e-9, "got {got}, want {want}");
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test]
async fn scripted_sequence_renders_exact_names_labels_and_values() {
    let handle = MetricsHandle::new();
    let obs = handle.observer();
    obs.pool_created(Bind::Default, 5);
    obs.pool_created(Bind::Bulk, 3);
    let d: Vec<_> = (1..=3)
        .map(|i| conn(i, Bind::Default, Some(PRIMARY)))
        .collect();
    let b: Vec<_> = (4..=5)
        .map(|i| conn(i, Bind::Bulk, Some(REPLICA)))
        .collect();
    for c in d.iter().chain(&b) {
        obs.connected(c);
    }

    // Request GET /v2/notifications/{id} holds two default connections at once.
    let get = RequestContext::new("GET", "api.notify.test", "/v2/notifications/{id}");
    let (t1, t2) = with_request_context(get, async {
        (obs.checked_out(&d[0], ms(0)), obs.checked_out(&d[1], ms(3)))
    })
    .await;
    let mid = parse(&handle.render());
    let lbl_d = [("bind", "default"), ("inet_server_addr", PRIMARY)];
    assert_eq!(mid.gauge(names::CHECKED_OUT, &lbl_d), Some(2.0));
    obs.returned(&d[0], ms(4), t1);
    obs.returned(&d[1], ms(40), t2);

    // A job on the bulk pool.
    let t3 = with_job_context("notify-celery", "create-nightly-billing", async {
        obs.checked_out(&b[0], ms(0))
    })
    .await;
    obs.returned(&b[0], Duration::from_secs(90), t3);

    let text = handle.render();
    let p = parse(&text);
    let lbl_b = [("bind", "bulk"), ("inet_server_addr", REPLICA)];
    assert_eq!(p.gauge(names::CONNECTED, &lbl_d), Some(3.0));
    assert_eq!(p.gauge(names::CONNECTED, &lbl_b), Some(2.0));
    assert_eq!(p.gauge(names::CHECKED_OUT, &lbl_d), Some(0.0));
    assert_eq!(p.gauge(names::CHECKED_OUT, &lbl_b), Some(0.0));
    assert_eq!(p.label_sets(names::CONNECTED).len(), 2);
    assert_eq!(
        p.gauge(names::POOL_MAX_SIZE, &[("bind", "default")]),
        Some(5.0)
    );
    assert_eq!(
        p.gauge(names::POOL_MAX_SIZE, &[("bind", "bulk")]),
        Some(3.0)
    );

    let req = [
        ("method", "GET"),
        ("host", "api.notify.test"),
        ("path", "/v2/notifications/{id}"),
        ("bind", "default"),
        ("inet_server_addr", PRIMARY),
    ];
    let job = [
        ("method", "celery"),
        ("host", "notify-celery"),
        ("path", "create-nightly-billing"),
        ("bind", "bulk"),
        ("inet_server_addr", REPLICA),
    ];
    assert_eq!(p.label_sets(names::OPEN_DURATION).len(), 2);
    assert_eq!(p.hist_count(names::OPEN_DURATION, &req), Some(2.0));
    assert_close(p.hist_sum(names::OPEN_DURATION, &req), 0.044);
    assert_eq!(p.hist_count(names::OPEN_DURATION, &job), Some(1.0));
    assert_close(p.hist_sum(names::OPEN_DURATION, &job), 90.0);

    // Real histogram buckets, 1 ms .. 30 min, then +Inf; counts are cumulative.
    let buckets = p
        .buckets(names::OPEN_DURATION, &req)
        .expect("histogram buckets");
    let les: Vec<f64> = buckets.iter().map(|(le, _)| *le).collect();
    let mut want: Vec<f64> = DURATION_BUCKETS.to_vec();
    want.push(f64::INFINITY);
    assert_eq!(les, want);
    let count_le = |le: f64| buckets.iter().find(|(l, _)| *l == le).map(|(_, c)| *c);
    assert_eq!(count_le(0.0025), Some(0.0));
    assert_eq!(count_le(0.005), Some(1.0)); // 4 ms
    assert_eq!(count_le(0.025), Some(1.0));
    assert_eq!(count_le(0.05), Some(2.0)); // 40 ms
    assert_eq!(count_le(f64::INFINITY), Some(2.0));
    let job_buckets = p.buckets(names::OPEN_DURATION, &job).expect("job buckets");
    assert_eq!(
        job_buckets.iter().find(|(l, _)| *l == 60.0).map(|b| b.1),
        Some(0.0)
    );
    assert_eq!(
        job_buckets.iter().find(|(l, _)| *l == 120.0).map(|b| b.1),
        Some(1.0)
    );

    // Waits: 0, 3 ms on default; 0 on bulk.
    assert_eq!(
        p.hist_count(names::POOL_WAIT, &[("bind", "default")]),
        Some(2.0)
    );
    assert_close(p.hist_sum(names::POOL_WAIT, &[("bind", "default")]), 0.003);
    assert_eq!(
        p.hist_count(names::POOL_WAIT, &[("bind", "bulk")]),
        Some(1.0)
    );

    // Closing everything brings connected back to 0 with the label sets kept.
    for c in d.iter().chain(&b) {
        obs.closed(c);
    }
    let p = parse(&handle.render());
    assert_eq!(p.gauge(names::CONNECTED, &lbl_d), Some(0.0));
    assert_eq!(p.gauge(names::CONNECTED, &lbl_b), Some(0.0));
    p.assert_no_negative(names::CONNECTED);
    p.assert_no_negative(names::CHECKED_OUT);
    promtool_check(&text);
}

#[test]
fn help_and_type_lines_make_real_histograms() {
    let handle = MetricsHandle::new();
    assert_eq!(
        handle.render().trim(),
        "",
        "nothing is rendered before the first pool event"
    );
    let obs = handle.observer();
    let c = conn(1, Bind::Default, Some(PRIMARY));
    obs.pool_created(Bind::Default, 5);
    obs.connected(&c);
    let t = obs.checked_out(&c, ms(1));
    obs.returned(&c, ms(2), t);
    obs.wait_timed_out(Bind::Default, Duration::from_secs(30));
    obs.connect_failed(Bind::Bulk, "replica1", 5433, ConnectFailure::Refused);
    let text = handle.render();
    for (name, kind) in [
        (names::CONNECTED, "gauge"),
        (names::CHECKED_OUT, "gauge"),
        (names::OPEN_DURATION, "histogram"),
        (names::POOL_WAIT, "histogram"),
        (names::POOL_TIMEOUTS, "counter"),
        (names::POOL_MAX_SIZE, "gauge"),
        (names::CONNECT_ERRORS, "counter"),
    ] {
        let type_line = format!("# TYPE {name} {kind}");
        assert!(
            text.lines().any(|l| l == type_line),
            "missing `{type_line}` in:\n{text}"
        );
    }
    let p = parse(&text);
    assert_eq!(
        p.families[names::CONNECTED].help,
        "How many db connections are currently held (potentially idle) by the server"
    );
    assert_eq!(
        p.families[names::OPEN_DURATION].help,
        "How long db connections are held open for in seconds"
    );
    assert_eq!(
        p.families[names::OPEN_DURATION].kind,
        common::Kind::Histogram
    );
    promtool_check(&text);
}

#[test]
fn timeouts_and_connect_errors_are_counted_by_bind_host_and_reason() {
    let handle = MetricsHandle::new();
    let obs = handle.observer();
    obs.wait_timed_out(Bind::Default, Duration::from_secs(30));
    obs.wait_timed_out(Bind::Default, Duration::from_secs(30));
    obs.wait_timed_out(Bind::Bulk, Duration::from_secs(30));
    obs.connect_failed(Bind::Bulk, "replica1", 5433, ConnectFailure::Refused);
    obs.connect_failed(Bind::Bulk, "replica1", 5433, ConnectFailure::Refused);
    obs.connect_failed(Bind::Bulk, "replica1", 5433, ConnectFailure::Timeout);
    obs.connect_failed(Bind::Default, "primary", 5432, ConnectFailure::Auth);
    let p = parse(&handle.render());
    assert_eq!(
        p.counter(names::POOL_TIMEOUTS, &[("bind", "default")]),
        Some(2.0)
    );
    assert_eq!(
        p.counter(names::POOL_TIMEOUTS, &[("bind", "bulk")]),
        Some(1.0)
    );
    assert_eq!(
        p.hist_count(names::POOL_WAIT, &[("bind", "default")]),
        Some(2.0)
    );
    assert_close(p.hist_sum(names::POOL_WAIT, &[("bind", "default")]), 60.0);
    let err = |bind, host, reason| {
        p.counter(
            names::CONNECT_ERRORS,
            &[("bind", bind), ("host", host), ("reason", reason)],
        )
    };
    assert_eq!(err("bulk", "replica1:5433", "refused"), Some(2.0));
    assert_eq!(err("bulk", "replica1:5433", "timeout"), Some(1.0));
    assert_eq!(err("default", "primary:5432", "auth"), Some(1.0));
    assert_eq!(p.label_sets(names::CONNECT_ERRORS).len(), 3);
}

#[test]
fn local_recorder_through_the_facade_outside_any_context() {
    let recorder = prometheus_builder().build_recorder();
    let handle = recorder.handle();
    let unix = conn(7, Bind::Default, None);
    metrics::with_local_recorder(&recorder, || {
        let obs = DbMetrics::from_facade();
        obs.connected(&unix);
        obs.connected(&unix);
        let t = obs.checked_out(&unix, ms(0));
        obs.returned(&unix, ms(12), t);
        obs.closed(&unix);
    });
    let text = handle.render();
    let p = parse(&text);
    // Over a Unix socket inet_server_addr() is NULL: the reference's label value is `None`.
    let lbl = [("bind", "default"), ("inet_server_addr", "None")];
    assert_eq!(p.gauge(names::CONNECTED, &lbl), Some(1.0));
    assert_eq!(p.gauge(names::CHECKED_OUT, &lbl), Some(0.0));
    let unknown = [
        ("method", "unknown"),
        ("host", "unknown"),
        ("path", "unknown"),
        ("bind", "default"),
        ("inet_server_addr", "None"),
    ];
    assert_eq!(p.hist_count(names::OPEN_DURATION, &unknown), Some(1.0));
    assert_close(p.hist_sum(names::OPEN_DURATION, &unknown), 0.012);
    assert!(
        !p.families[names::CHECKED_OUT].help.is_empty(),
        "descriptions reach the local recorder"
    );
    promtool_check(&text);
}

#[test]
fn a_token_not_made_by_this_observer_still_balances_the_gauge() {
    let handle = MetricsHandle::new();
    let obs = handle.observer();
    let c = conn(1, Bind::Bulk, Some("::1"));
    obs.connected(&c);
    let _ours = obs.checked_out(&c, ms(0));
    obs.returned(&c, ms(5), None);
    let p = parse(&handle.render());
    assert_eq!(
        p.gauge(
            names::CHECKED_OUT,
            &[("bind", "bulk"), ("inet_server_addr", "::1")]
        ),
        Some(0.0)
    );
}

/// A tracing writer collecting everything logged, to count the warnings.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_missing_context_warning_is_logged_once_not_per_checkout() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let handle = MetricsHandle::new();
    let obs = handle.observer();
    let c = conn(1, Bind::Default, Some(PRIMARY));
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..5 {
            let t = obs.checked_out(&c, ms(0));
            obs.returned(&c, ms(1), t);
        }
    });
    let log = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf8");
    assert_eq!(
        log.matches("outside any request or job context").count(),
        1,
        "log:\n{log}"
    );
    let p = parse(&handle.render());
    let unknown = [
        ("method", "unknown"),
        ("host", "unknown"),
        ("path", "unknown"),
        ("bind", "default"),
        ("inet_server_addr", PRIMARY),
    ];
    assert_eq!(p.hist_count(names::OPEN_DURATION, &unknown), Some(5.0));
}

#[test]
fn many_label_sets_render_and_pass_promtool() {
    let handle = MetricsHandle::new();
    let obs = handle.observer();
    let c = conn(1, Bind::Default, Some(PRIMARY));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for i in 0..50 {
            let ctx = RequestContext::new("POST", "api.notify.test", &format!("/route/{i}/{{id}}"));
            let t = with_request_context(ctx, async { obs.checked_out(&c, ms(0)) }).await;
            obs.returned(&c, ms(i), t);
        }
    });
    let text = handle.render();
    let p = parse(&text);
    assert_eq!(p.label_sets(names::OPEN_DURATION).len(), 50);
    for i in [0u64, 17, 49] {
        let path = format!("/route/{i}/{{id}}");
        let lbl = [
            ("method", "POST"),
            ("host", "api.notify.test"),
            ("path", path.as_str()),
            ("bind", "default"),
            ("inet_server_addr", PRIMARY),
        ];
        assert_close(p.hist_sum(names::OPEN_DURATION, &lbl), i as f64 / 1000.0);
    }
    promtool_check(&text);
}
