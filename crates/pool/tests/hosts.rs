//! Several hosts in one URI, against the shared primary + streaming replica: the bulk bind skips
//! a dead host and remembers it, the default bind picks the read-write host, and bulk spreads
//! its new connections over its hosts.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Recorder, closed_port, replicated_db, settings_from};
use notify_db_pool::Databases;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_skips_a_dead_host_and_remembers_it() {
    let db = replicated_db().await;
    let replica = db.replica().expect("the shared cluster has a replica");
    let dead = closed_port();
    let uri = replica.uri_over(
        &[("127.0.0.1", dead), (&replica.host, replica.port)],
        db.name(),
    );
    let mut s = settings_from(&[
        ("SQLALCHEMY_DATABASE_URI", db.primary_uri()),
        ("SQLALCHEMY_DATABASE_URI_BULK", uri),
    ]);
    s.pool.size = 4;
    s.pool.host_backoff = Duration::from_secs(60);
    let recorder = Arc::new(Recorder::default());
    let dbs = Databases::builder(&s)
        .observer(recorder.clone())
        .build()
        .await
        .expect("bulk must connect through the second host");
    let mut held = Vec::new();
    for _ in 0..4 {
        let c = dbs.bulk().get().await.expect("bulk connection");
        let one: i32 = c.query_one("SELECT 1", &[]).await.expect("query").get(0);
        assert_eq!(one, 1);
        assert!(c.in_recovery());
        assert_eq!(c.info().port, replica.port);
        held.push(c);
    }
    let failed = format!("connect_failed bulk 127.0.0.1:{dead}");
    assert_eq!(
        recorder.count(&failed),
        1,
        "the dead host was tried again during its back-off: {:?}",
        recorder.events()
    );
    assert!(
        recorder
            .events()
            .iter()
            .any(|e| e == &format!("{failed} refused")),
        "{:?}",
        recorder.events()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_with_several_hosts_picks_the_read_write_one() {
    let db = replicated_db().await;
    let (p, r) = (db.primary(), db.replica().expect("replica"));
    let uri = p.uri_over(&[(&r.host, r.port), (&p.host, p.port)], db.name());
    let s = settings_from(&[("SQLALCHEMY_DATABASE_URI", uri)]);
    let dbs = Databases::connect(&s).await.expect("connecting both pools");
    let c = dbs.default().get().await.expect("default connection");
    assert!(!c.in_recovery());
    assert_eq!(c.info().port, p.port);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_spreads_new_connections_over_its_hosts() {
    let db = replicated_db().await;
    let (p, r) = (db.primary(), db.replica().expect("replica"));
    let uri = r.uri_over(&[(&r.host, r.port), (&p.host, p.port)], db.name());
    let mut s = settings_from(&[
        ("SQLALCHEMY_DATABASE_URI", db.primary_uri()),
        ("SQLALCHEMY_DATABASE_URI_BULK", uri),
    ]);
    s.pool.size = 4;
    let dbs = Databases::builder(&s)
        .check_on_build(false)
        .build()
        .await
        .expect("building both pools");
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(dbs.bulk().get().await.expect("bulk connection"));
    }
    let ports: Vec<u16> = held.iter().map(|c| c.info().port).collect();
    assert_eq!(
        ports.iter().filter(|&&port| port == r.port).count(),
        2,
        "{ports:?}"
    );
    assert_eq!(
        ports.iter().filter(|&&port| port == p.port).count(),
        2,
        "{ports:?}"
    );
    for c in &held {
        let ro: String = c
            .query_one("SHOW default_transaction_read_only", &[])
            .await
            .expect("query")
            .get(0);
        assert_eq!(ro, "on");
    }
}
