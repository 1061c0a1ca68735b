//! Pool behaviour against private clusters: restarts, statement logging, TLS.

mod common;

use std::time::Duration;

use common::settings_from;
use notify_db_pool::{ConnectError, ConnectFailure, Databases, PoolError};
use notify_db_testdb::{Cluster, StopMode, TestCa};

const NEED_CLUSTER: &str = "a private PostgreSQL cluster (notify-db-testdb needs PostgreSQL 15+ \
                            binaries; see crates/testdb)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_primary_restart_the_next_get_works() {
    let cluster = Cluster::builder()
        .label("pool-restart")
        .replica(false)
        .start()
        .expect(NEED_CLUSTER);
    let s = settings_from(&[("SQLALCHEMY_DATABASE_URI", cluster.primary().uri("postgres"))]);
    let dbs = Databases::connect(&s).await.expect("connecting both pools");
    let before = {
        let c = dbs.default().get().await.expect("connection");
        c.query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("query")
            .get::<_, i32>(0)
    };
    cluster
        .primary()
        .restart(StopMode::Fast)
        .expect("pg_ctl restart");
    let c = dbs
        .default()
        .get()
        .await
        .expect("a connection after the restart");
    let row = c
        .query_one("SELECT pg_backend_pid(), 1", &[])
        .await
        .expect("the connection handed out after a restart must work");
    assert_eq!(row.get::<_, i32>(1), 1);
    assert_ne!(row.get::<_, i32>(0), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_setup_is_exactly_one_statement() {
    let cluster = Cluster::builder()
        .label("pool-roundtrip")
        .replica(false)
        .setting("log_statement", "'all'")
        .start()
        .expect(NEED_CLUSTER);
    let s = settings_from(&[
        ("SQLALCHEMY_DATABASE_URI", cluster.primary().uri("postgres")),
        ("DATABASE_MAX_PARALLEL_WORKERS", "2".to_owned()),
    ]);
    let dbs = Databases::connect(&s).await.expect("connecting both pools");
    let pids = [
        dbs.default()
            .get()
            .await
            .expect("default")
            .info()
            .backend_pid,
        dbs.bulk().get().await.expect("bulk").info().backend_pid,
    ];
    // The server writes its log synchronously, but give the file a moment all the same.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log =
        std::fs::read_to_string(cluster.primary().log_file()).expect("reading the server log");
    for pid in pids {
        let statements: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&format!("[{pid}]")) && l.contains("statement: "))
            .collect();
        assert_eq!(
            statements.len(),
            1,
            "backend {pid} must have run exactly one setup statement: {statements:#?}"
        );
        assert!(statements[0].contains("set_config('statement_timeout'"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_against_a_server_with_ssl_on() {
    let good = TestCa::new().expect("test CA");
    let other = TestCa::new().expect("a second CA");
    let cluster = Cluster::builder()
        .label("pool-tls")
        .replica(false)
        .tls(
            &good
                .server_cert(&["127.0.0.1", "localhost"])
                .expect("server certificate"),
        )
        .start()
        .expect(NEED_CLUSTER);
    let dir = tempdir();
    let ca = dir.join("ca.crt");
    let wrong_ca = dir.join("wrong-ca.crt");
    std::fs::write(&ca, good.pem()).expect("writing ca.crt");
    std::fs::write(&wrong_ca, other.pem()).expect("writing wrong-ca.crt");
    let base = cluster.primary().uri("postgres");
    let uri = |query: &str| format!("{base}?{query}");

    let ssl_in_use = |query: String| async move {
        let s = settings_from(&[("SQLALCHEMY_DATABASE_URI", query)]);
        let dbs = Databases::connect(&s).await?;
        let c = dbs.default().get().await?;
        let on: bool = c
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .expect("pg_stat_ssl")
            .get(0);
        Ok::<bool, PoolError>(on)
    };

    assert!(!ssl_in_use(uri("sslmode=disable")).await.expect("disable"));
    assert!(ssl_in_use(uri("sslmode=prefer")).await.expect("prefer"));
    assert!(ssl_in_use(uri("sslmode=require")).await.expect("require"));
    // require does not check the certificate, like libpq without a root certificate.
    assert!(
        ssl_in_use(uri(&format!(
            "sslmode=require&sslrootcert={}",
            wrong_ca.display()
        )))
        .await
        .expect("require ignores the CA")
    );
    assert!(
        ssl_in_use(uri(&format!(
            "sslmode=verify-ca&sslrootcert={}",
            ca.display()
        )))
        .await
        .expect("verify-ca with the right CA")
    );
    assert!(
        ssl_in_use(uri(&format!(
            "sslmode=verify-full&sslrootcert={}",
            ca.display()
        )))
        .await
        .expect("verify-full with the right CA and an IP SAN of 127.0.0.1")
    );

    for query in [
        format!("sslmode=verify-ca&sslrootcert={}", wrong_ca.display()),
        format!("sslmode=verify-full&sslrootcert={}", wrong_ca.display()),
    ] {
        let err = ssl_in_use(uri(&query))
            .await
            .expect_err("an untrusted certificate must be refused");
        assert!(
            matches!(
                err,
                PoolError::Connect(ConnectError::Connect {
                    failure: ConnectFailure::Tls,
                    ..
                })
            ),
            "{query}: {err:?}"
        );
    }

    // verify-full checks the host name: the same trusted certificate, reached as "localhost"
    // is fine, but a certificate for another name is not.
    let cluster2 = Cluster::builder()
        .label("pool-tls-name")
        .replica(false)
        .tls(
            &other
                .server_cert(&["db.example.invalid"])
                .expect("server certificate"),
        )
        .start()
        .expect(NEED_CLUSTER);
    let other_ca = dir.join("other-ca.crt");
    std::fs::write(&other_ca, other.pem()).expect("writing other-ca.crt");
    let base2 = cluster2.primary().uri("postgres");
    assert!(
        ssl_in_use(format!(
            "{base2}?sslmode=verify-ca&sslrootcert={}",
            other_ca.display()
        ))
        .await
        .expect("verify-ca ignores the host name")
    );
    let err = ssl_in_use(format!(
        "{base2}?sslmode=verify-full&sslrootcert={}",
        other_ca.display()
    ))
    .await
    .expect_err("verify-full must refuse a certificate for another host name");
    assert!(
        matches!(
            err,
            PoolError::Connect(ConnectError::Connect {
                failure: ConnectFailure::Tls,
                ..
            })
        ),
        "{err:?}"
    );

    // verify-full without any CA file is a configuration error that says what to set.
    let err = ssl_in_use(uri("sslmode=verify-full"))
        .await
        .expect_err("verify-full needs sslrootcert");
    assert!(err.to_string().contains("sslrootcert"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "notify-db-pool-tls-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("creating a temporary directory");
    dir
}
