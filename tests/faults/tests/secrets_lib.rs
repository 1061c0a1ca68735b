//! Item 7 at the library level: a distinctive password, right and wrong, through the pools (with
//! the metrics observer), the migration engine and the settings. The password appears in no
//! error (Display or Debug), no log line (everything at TRACE is captured) and no metric.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify_db_metrics::MetricsHandle;
use notify_db_migrate::{Migrator, Target};
use notify_db_pool::Databases;
use notify_db_testdb::TestDb;

/// Every log line of the process, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_in_no_error_log_or_metric() {
    let db = TestDb::create()
        .await
        .expect("test database on the shared cluster");
    let ep = db.primary().clone();
    let pid = std::process::id();
    let right = format!("RightLibPw{pid}Kq");
    let wrong = format!("WrongLibPw{pid}Jq");
    let role = format!("faults_lib_{pid}");
    let admin = db.connect().await.expect("admin");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{right}'; GRANT ALL ON SCHEMA public TO {role}; \
             GRANT CREATE ON DATABASE {} TO {role}",
            db.name()
        ))
        .await
        .expect("create the role");
    // Capture logs from here on (tokio-postgres logs the CREATE ROLE above, password literal
    // included, at DEBUG: that statement is this test's, not the libraries').
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let uri = |pw: &str| {
        format!(
            "postgresql://{role}:{pw}@{}:{}/{}",
            ep.host,
            ep.port,
            db.name()
        )
    };
    let mut seen = Vec::new();

    // Settings: Display and Debug.
    let settings = common::settings(&uri(&right), Some(&uri(&right)));
    seen.push(format!("{settings} {settings:?}"));

    // Right password: pools with metrics, a query, /metrics.
    let metrics = MetricsHandle::new();
    let dbs = Databases::builder(&settings)
        .observer(metrics.observer())
        .build()
        .await
        .expect("pools with the right password");
    let conn = dbs.default().get().await.expect("checkout");
    conn.simple_query("SELECT 1").await.expect("query");
    seen.push(format!("{conn:?} {:?}", dbs));
    drop(conn);
    // Migrations with the right password (the starter set).
    let set = notify_db_migrations::set().expect("starter set");
    let report = Migrator::new(set.clone(), &settings.primary)
        .expect("migrator")
        .upgrade(&Target::Revision("0002".into()))
        .await
        .expect("migrate with the right password");
    seen.push(format!("{report:?}"));

    // Wrong password: pool errors, connect errors in /metrics, migration errors.
    let mut bad = settings.clone();
    bad.primary = notify_db_config::DatabaseUri::parse(&uri(&wrong), "SQLALCHEMY_DATABASE_URI")
        .expect("parse");
    bad.bulk = bad.primary.clone();
    bad.pool.connect_timeout = Duration::from_secs(5);
    let err = Databases::builder(&bad)
        .observer(metrics.observer())
        .build()
        .await
        .expect_err("wrong password must fail");
    seen.push(format!("{err} {err:?}"));
    let lazy = Databases::builder(&bad)
        .observer(metrics.observer())
        .check_on_build(false)
        .build()
        .await
        .expect("lazy pools");
    let err = lazy
        .bulk()
        .get()
        .await
        .expect_err("wrong password must fail");
    seen.push(format!("{err} {err:?}"));
    let err = Migrator::new(set, &bad.primary)
        .expect("migrator")
        .current()
        .await
        .expect_err("migrate with a wrong password must fail");
    seen.push(format!("{err} {err:?}"));
    // A malformed URI holding the password.
    let malformed = format!("postgresql://{role}:{right}@{}:notaport/x", ep.host);
    let err = notify_db_config::DatabaseUri::parse(&malformed, "SQLALCHEMY_DATABASE_URI")
        .expect_err("malformed");
    seen.push(format!("{err} {err:?}"));

    let text = metrics.render();
    assert!(
        text.contains("db_connection_errors_total"),
        "the wrong-password connects were not counted:\n{text}"
    );
    seen.push(text);
    drop(dbs);
    drop(lazy);
    let log = logs.text();
    assert!(
        log.contains("connect failed"),
        "the failed connects were not logged: {log}"
    );
    seen.push(log);
    for (i, s) in seen.iter().enumerate() {
        for pw in [&right, &wrong] {
            assert!(
                !s.contains(pw.as_str()),
                "output {i} shows a password:\n{}",
                s.replace(pw.as_str(), "<PASSWORD>")
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
        ))
        .await;
}
