//! The engine connects with TLS per the URI's `sslmode` (a server with `ssl=on`, a CA the test makes).

use notify_db_config::DatabaseUri;
use notify_db_migrate::{Migration, MigrationSet, Migrator, Target};
use notify_db_testdb::{Cluster, TestCa};

/// Every run in these tests ends well within this (a TLS handshake and one migration).
const LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

fn set() -> MigrationSet {
    MigrationSet::new(vec![
        Migration::new("0001_record_tls")
            .up("CREATE TABLE tls_seen AS SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .down("DROP TABLE tls_seen"),
    ])
    .expect("set")
}

#[tokio::test]
async fn migrations_run_over_verified_tls_and_never_fall_back_to_plain() {
    let ca = TestCa::new().expect("test CA");
    let cert = ca.server_cert(&["127.0.0.1"]).expect("server certificate");
    let cluster = Cluster::builder()
        .label("migrate-tls")
        .tls(&cert)
        .start()
        .expect("a private cluster with ssl=on (PostgreSQL server binaries needed)");
    let dir = std::env::temp_dir().join(format!("notify-db-migrate-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca_path = dir.join("ca.crt");
    std::fs::write(&ca_path, ca.pem()).expect("write CA");
    let ep = cluster.primary().endpoint();

    let uri = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        ep.uri("postgres"),
        ca_path.display()
    );
    let uri = DatabaseUri::parse(&uri, "SQLALCHEMY_DATABASE_URI").expect("uri");
    let migrator = Migrator::new(set(), &uri).expect("migrator with the URI's TLS");
    tokio::time::timeout(LIMIT, migrator.upgrade(&Target::Head))
        .await
        .expect("time limit")
        .expect("upgrade over TLS");
    let c = ep.connect("postgres").await.expect("connect");
    let ssl: bool = c
        .query_one("SELECT ssl FROM tls_seen", &[])
        .await
        .expect("tls_seen")
        .get(0);
    assert!(ssl, "the migration's session was not encrypted");

    // The same URI with a CA that did not sign the server's certificate is refused.
    let other_ca = TestCa::new().expect("another test CA");
    let wrong_path = dir.join("wrong-ca.crt");
    std::fs::write(&wrong_path, other_ca.pem()).expect("write the wrong CA");
    let wrong = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        ep.uri("postgres"),
        wrong_path.display()
    );
    let wrong = DatabaseUri::parse(&wrong, "SQLALCHEMY_DATABASE_URI").expect("uri");
    let err = tokio::time::timeout(
        LIMIT,
        Migrator::new(set(), &wrong)
            .expect("migrator")
            .downgrade(&Target::Base),
    )
    .await
    .expect("time limit")
    .expect_err("a server certificate from another CA");
    assert!(
        matches!(err, notify_db_migrate::Error::Connect { .. }),
        "expected a connect error, got {err}"
    );
    assert!(
        !err.to_string().contains(&ep.password),
        "password in error: {err}"
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM tls_seen", &[])
        .await
        .expect("still there")
        .get(0);
    assert_eq!(n, 1, "nothing may have been reverted");
    let _ = std::fs::remove_dir_all(&dir);
}
