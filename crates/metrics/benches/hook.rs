//! Cost of the metrics hook: checkout + return of an idle pooled connection with and without
//! `DbMetrics`, the observer calls alone, and rendering `/metrics` with 1000 label sets.
//!
//! `cargo bench -p notify-db-metrics --bench hook` (needs PostgreSQL from the test harness).
//! Besides the readable lines, each figure is printed once as `figure<TAB>name<TAB>value<TAB>unit`
//! for `cargo xtask bench` to collect.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use notify_db_config::Settings;
use notify_db_metrics::{MetricsHandle, RequestContext, with_request_context};
use notify_db_pool::{Bind, ConnInfo, Databases, Pool, PoolObserver};
use notify_db_testdb::TestDb;

const ROUNDS: usize = 5;

fn ns_per(elapsed: Duration, n: usize) -> f64 {
    elapsed.as_nanos() as f64 / n as f64
}

fn figure(name: &str, value: f64, unit: &str) {
    println!("figure\t{name}\t{value:.1}\t{unit}");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn conn() -> ConnInfo {
    ConnInfo {
        id: 1,
        bind: Bind::Default,
        host: "db".to_owned(),
        port: 5432,
        server_addr: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        in_recovery: false,
        backend_pid: 1,
    }
}

async fn checkout_loop(pool: &Pool, n: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        let c = pool.get().await.expect("checkout");
        black_box(&c);
        drop(c);
    }
    start.elapsed()
}

fn settings(db: &TestDb) -> Settings {
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("NOTIFY_ENVIRONMENT".into(), "test".into());
    env.insert("SQLALCHEMY_DATABASE_URI".into(), db.primary_uri());
    Settings::load(None, &|k| env.get(k).cloned()).expect("settings")
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // 1. The observer calls alone (what the hook adds to each checkout + return).
        let handle = MetricsHandle::new();
        let obs = handle.observer();
        let c = conn();
        let n = 1_000_000;
        let ctx = RequestContext::new("GET", "api.notify.test", "/v2/notifications/{id}");
        let mut inside = Vec::new();
        for _ in 0..ROUNDS {
            let e = with_request_context(ctx.clone(), async {
                let start = Instant::now();
                for _ in 0..n {
                    let t = obs.checked_out(&c, Duration::ZERO);
                    obs.returned(&c, Duration::from_micros(50), t);
                }
                start.elapsed()
            })
            .await;
            inside.push(ns_per(e, n));
        }
        let inside = median(inside);
        println!("observer checked_out+returned, in a request context: {inside:.0} ns (median of {ROUNDS} x {n})");
        figure("observer checked_out+returned", inside, "ns/checkout");

        // 2. Real pools: idle connection checkout + return, without and with the hook.
        let db = TestDb::create()
            .await
            .unwrap_or_else(|e| panic!("this benchmark needs PostgreSQL from the test harness: {e}"));
        let s = settings(&db);
        let plain = Databases::builder(&s).build().await.expect("pool without observer");
        let metrics = MetricsHandle::new();
        let hooked =
            Databases::builder(&s).observer(metrics.observer()).build().await.expect("pool with the metrics observer");
        let n = 200_000;
        // Warm both (one idle connection each), then alternate rounds to share any drift.
        checkout_loop(plain.default(), 1000).await;
        with_request_context(ctx.clone(), checkout_loop(hooked.default(), 1000)).await;
        let (mut without, mut with) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            without.push(ns_per(checkout_loop(plain.default(), n).await, n));
            with.push(ns_per(with_request_context(ctx.clone(), checkout_loop(hooked.default(), n)).await, n));
        }
        let (without, with) = (median(without), median(with));
        println!("pool checkout+return of an idle connection, no observer:      {without:.0} ns (median of {ROUNDS} x {n})");
        println!("pool checkout+return of an idle connection, metrics observer: {with:.0} ns (median of {ROUNDS} x {n})");
        println!("added by the metrics hook: {:.0} ns per checkout", with - without);
        figure("pool checkout+return, no observer", without, "ns/checkout");
        figure("pool checkout+return, metrics observer", with, "ns/checkout");
        figure("added by the metrics hook", with - without, "ns/checkout");

        // 3. Rendering /metrics with 1000 label sets of the open-duration histogram.
        let handle = MetricsHandle::new();
        let obs = handle.observer();
        for i in 0..1000 {
            let ctx = RequestContext::new("GET", "api.notify.test", &format!("/route/{i}/{{id}}"));
            with_request_context(ctx, async {
                let t = obs.checked_out(&c, Duration::ZERO);
                obs.returned(&c, Duration::from_millis(i % 100), t);
            })
            .await;
        }
        let renders = 20;
        let mut bytes = 0;
        let start = Instant::now();
        for _ in 0..renders {
            bytes = black_box(handle.render()).len();
        }
        let per = start.elapsed() / renders;
        println!("render /metrics with 1000 histogram label sets: {:.2} ms per render ({bytes} bytes)", per.as_secs_f64() * 1e3);
        figure("render /metrics, 1000 label sets", per.as_secs_f64() * 1e3, "ms/render");
    });
}
