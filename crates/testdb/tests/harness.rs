//! The harness really starts a primary and a streaming replica.

use notify_db_testdb::{TestDb, is_test_db_name, shared};

#[tokio::test]
async fn replica_is_in_recovery_and_sees_rows_written_on_primary() {
    let db = TestDb::create().await.expect("test database");
    assert!(
        is_test_db_name(db.name()),
        "{} is not a test database name",
        db.name()
    );
    let p = db.connect().await.expect("primary");
    let in_recovery: bool = p
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!in_recovery, "primary must not be in recovery");
    let marker = format!("row-{}", std::process::id());
    p.batch_execute("CREATE TABLE t (v text)").await.unwrap();
    p.execute("INSERT INTO t VALUES ($1)", &[&marker])
        .await
        .unwrap();

    let r = db.connect_replica().await.expect("replica");
    let in_recovery: bool = r
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(in_recovery, "replica must be in recovery");
    let seen: String = r.query_one("SELECT v FROM t", &[]).await.unwrap().get(0);
    assert_eq!(seen, marker);

    let addr = |c: tokio_postgres::Client| async move {
        c.query_one("SELECT host(inet_server_addr())", &[])
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    assert_eq!(addr(p).await, "127.0.0.1");
    assert_eq!(addr(r).await, "127.0.0.2");
}

#[tokio::test]
async fn replica_refuses_writes() {
    let s = shared().expect("shared clusters");
    let r = s.replica.connect("postgres").await.expect("replica");
    let err = r
        .batch_execute("CREATE TABLE nope (id int)")
        .await
        .expect_err("write on a replica");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION)
    );
}

#[tokio::test]
async fn test_db_is_dropped_with_its_handle() {
    let s = shared().expect("shared clusters");
    let name = {
        let db = TestDb::create().await.expect("test database");
        db.name().to_string()
    };
    let c = s.primary.connect("postgres").await.unwrap();
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "{name} should have been dropped");
}

#[test]
fn test_db_names() {
    for ok in [
        "test_notification_api_master",
        "test_notification_api_gw0",
        "test_notification_api_gw123",
    ] {
        assert!(is_test_db_name(ok), "{ok}");
    }
    for no in [
        "notification_api",
        "test_notification_api_other",
        "test_notification_api_gw",
        "test_notification_api_gwx",
        "test_notification_api_gw1x",
        "test_notification_api_master2",
        "test_notification_api_gw1;drop",
        "xtest_notification_api_gw1",
    ] {
        assert!(!is_test_db_name(no), "{no}");
    }
}

/// The template is migrated once per fingerprint; every database is a copy of it.
#[tokio::test]
async fn migrated_databases_are_copies_of_a_template_built_once_per_fingerprint() {
    use notify_db_testdb::{Cluster, MASTER_DB};
    use std::sync::atomic::{AtomicUsize, Ordering};
    // Private cluster: this test rebuilds the template, which the shared one's users rely on.
    let cluster = Cluster::builder()
        .label("template")
        .start()
        .expect("private cluster");
    let ep = cluster.primary().endpoint().clone();
    let runs = AtomicUsize::new(0);
    let migrate = |uri: String| {
        let runs = &runs;
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            let (c, conn) = tokio_postgres::connect(&uri, tokio_postgres::NoTls).await?;
            let h = tokio::spawn(conn);
            c.batch_execute(
                "CREATE TABLE widgets (id bigint PRIMARY KEY); INSERT INTO widgets VALUES (7)",
            )
            .await?;
            drop(c);
            let _ = h.await;
            Ok(())
        }
    };
    let mut dbs = Vec::new();
    for _ in 0..3 {
        dbs.push(
            TestDb::migrated_on(&ep, None, "fp-1", migrate)
                .await
                .expect("migrated db"),
        );
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "template must be built once for one fingerprint"
    );
    for db in &dbs {
        let c = db.connect().await.unwrap();
        let v: i64 = c
            .query_one("SELECT id FROM widgets", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, 7, "{} is not a copy of the template", db.name());
    }
    // A new fingerprint (the migration set changed) rebuilds it once.
    let _db = TestDb::migrated_on(&ep, None, "fp-2", migrate)
        .await
        .expect("migrated db");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let admin = ep.connect("postgres").await.unwrap();
    let fp: Option<String> = admin
        .query_one(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            &[&MASTER_DB],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(fp.as_deref(), Some("fp-2"));
    // A failing migration leaves no template behind.
    let err = TestDb::migrated_on(&ep, None, "fp-3", |_uri| async {
        Err::<(), _>("boom".into())
    })
    .await;
    assert!(err.is_err());
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&MASTER_DB],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "a half-built template must be dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_in_transaction_mode_leads_to_the_primary_and_the_replica() {
    use notify_db_testdb::PgBouncer;
    let db = TestDb::create().await.expect("test database");
    let b = PgBouncer::builder()
        .database("primary", db.primary(), db.name())
        .database("replica", db.replica().expect("replica"), db.name())
        .start()
        .expect("PgBouncer (install the Debian package `pgbouncer`)");
    let p = db.primary();
    let through = b.endpoint(&p.user, &p.password);
    for (name, in_recovery) in [("primary", false), ("replica", true)] {
        let c = through
            .connect(name)
            .await
            .expect("a client through PgBouncer");
        let got: bool = c
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .expect("query through PgBouncer")
            .get(0);
        assert_eq!(got, in_recovery, "PgBouncer database {name}");
    }
    let admin = b.admin().await.expect("the admin console");
    let config = admin
        .simple_query("SHOW CONFIG")
        .await
        .expect("SHOW CONFIG");
    let value = |key: &str| {
        config.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some(key) => {
                r.get(1).map(str::to_owned)
            }
            _ => None,
        })
    };
    assert_eq!(value("pool_mode").as_deref(), Some("transaction"));
    assert_eq!(value("auth_type").as_deref(), Some("scram-sha-256"));
    let port = b.port();
    drop(admin);
    drop(b);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "PgBouncer must be stopped when its handle is dropped"
    );
}

#[test]
fn a_cluster_can_have_two_streaming_replicas() {
    use notify_db_testdb::Cluster;
    let cluster = Cluster::builder()
        .label("two-replicas")
        .replicas(2)
        .start()
        .expect("a primary with two replicas");
    let hosts: Vec<&str> = cluster
        .replicas()
        .iter()
        .map(|r| r.endpoint().host.as_str())
        .collect();
    assert_eq!(hosts, ["127.0.0.2", "127.0.0.3"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let p = cluster
            .primary()
            .endpoint()
            .connect("postgres")
            .await
            .expect("primary");
        p.batch_execute("CREATE TABLE seen (v int); INSERT INTO seen VALUES (7)")
            .await
            .expect("write on the primary");
    });
    cluster.wait_for_replica().expect("both replicas catch up");
    for r in cluster.replicas() {
        let (in_recovery, v) = rt.block_on(async {
            let c = r.endpoint().connect("postgres").await.expect("replica");
            let row = c
                .query_one("SELECT pg_is_in_recovery(), (SELECT v FROM seen)", &[])
                .await
                .expect("query on the replica");
            (row.get::<_, bool>(0), row.get::<_, i32>(1))
        });
        assert!(in_recovery, "{} must be in recovery", r.endpoint().host);
        assert_eq!(v, 7);
    }
}
