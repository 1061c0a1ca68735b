//! The engine connects with TLS per the URI's `sslmode` (a server with `ssl=on`, a CA the test makes).

use notify_db_config::DatabaseUri;
use notify_db_migrate::{Migration, MigrationSet, Migrator, Target};
use notify_db_testdb::Cluster;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA (PEM) and a server certificate + key (PEM) for 127.0.0.1.
fn make_certs() -> (String, String, String) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "notify-db test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("server params");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

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
    let (ca, crt, key) = make_certs();
    let cluster = Cluster::builder()
        .label("migrate-tls")
        .setting("ssl", "on")
        .setting("ssl_cert_file", "'server.crt'")
        .setting("ssl_key_file", "'server.key'")
        .file("server.crt", crt.as_bytes())
        .file("server.key", key.as_bytes())
        .start()
        .expect("a private cluster with ssl=on (PostgreSQL server binaries needed)");
    let dir = std::env::temp_dir().join(format!("notify-db-migrate-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca_path = dir.join("ca.crt");
    std::fs::write(&ca_path, ca).expect("write CA");
    let ep = cluster.primary().endpoint();

    let uri = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        ep.uri("postgres"),
        ca_path.display()
    );
    let uri = DatabaseUri::parse(&uri, "SQLALCHEMY_DATABASE_URI").expect("uri");
    let migrator = Migrator::new(set()).with_tls(uri.tls().expect("TLS connector"));
    migrator
        .upgrade(&uri.to_pg_config(), &Target::Head)
        .await
        .expect("upgrade over TLS");
    let c = ep.connect("postgres").await.expect("connect");
    let ssl: bool = c
        .query_one("SELECT ssl FROM tls_seen", &[])
        .await
        .expect("tls_seen")
        .get(0);
    assert!(ssl, "the migration's session was not encrypted");

    // sslmode=require without a connector is an error, never a silent plain connection.
    let plain = Migrator::new(set());
    let err = plain
        .downgrade(&uri.to_pg_config(), &Target::Base)
        .await
        .expect_err("no TLS connector");
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
