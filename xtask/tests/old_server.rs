//! PostgreSQL 14, a real server (the pinned build the harness fetches): the migration runner,
//! the pools and doctor each refuse it with an error naming host, port and version, and
//! nothing is applied to it.

use std::process::Command;
use std::time::Duration;

use notify_db_migrate::{Migrator, Target};
use notify_db_testdb::Cluster;
use notify_db_testdb::majors::REFUSED_MAJOR;

const NEED_14: &str = "a PostgreSQL 14 server (the harness' pinned build: `cargo xtask test` \
                       fetches it, or the system's /usr/lib/postgresql/14)";
const LIMIT: Duration = Duration::from_secs(60);

fn cluster(label: &str) -> Cluster {
    Cluster::builder()
        .label(label)
        .major(REFUSED_MAJOR)
        .start()
        .expect(NEED_14)
}

/// `version()` starts with `PostgreSQL 14.`: the server really is the old one.
async fn assert_is_14(cluster: &Cluster) -> tokio_postgres::Client {
    let client = cluster
        .primary()
        .endpoint()
        .connect("postgres")
        .await
        .expect("connect");
    let v: String = client
        .query_one("SELECT current_setting('server_version')", &[])
        .await
        .expect("version")
        .get(0);
    assert!(v.starts_with(&format!("{REFUSED_MAJOR}.")), "{v}");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_runner_refuses_14_and_applies_nothing() {
    let cluster = cluster("old-runner");
    let client = assert_is_14(&cluster).await;
    let e = cluster.primary().endpoint();
    let uri = notify_db_config::DatabaseUri::parse(&cluster.primary().uri("postgres"), "test")
        .expect("uri");
    let set = notify_db_migrations::set().expect("the migration set");
    let err = tokio::time::timeout(
        LIMIT,
        Migrator::new(set, &uri)
            .expect("migrator")
            .upgrade(&Target::Head),
    )
    .await
    .expect("the runner answers in time")
    .expect_err("PostgreSQL 14 must be refused");
    let text = err.to_string();
    assert!(
        matches!(err, notify_db_migrate::Error::ServerTooOld { .. }),
        "{err:?}"
    );
    for part in [
        e.host.clone(),
        e.port.to_string(),
        format!("PostgreSQL {REFUSED_MAJOR}."),
    ] {
        assert!(text.contains(&part), "{part:?} in {text}");
    }
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(tables, 0, "nothing applied: no alembic_version, no table");
    // A session's advisory locks go when its server process exits, which happens after the
    // refused runner has closed its connection: wait for that (bounded), then count.
    let mut locks: i64 = -1;
    for _ in 0..100 {
        locks = client
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
                &[],
            )
            .await
            .expect("locks")
            .get(0);
        if locks == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(locks, 0, "no advisory lock left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pools_refuse_14_naming_host_port_and_version() {
    let cluster = cluster("old-pool");
    assert_is_14(&cluster).await;
    let e = cluster.primary().endpoint();
    let uri = cluster.primary().uri("postgres");
    let env = |k: &str| match k {
        "NOTIFY_ENVIRONMENT" => Some("test".to_owned()),
        "SQLALCHEMY_DATABASE_URI" => Some(uri.clone()),
        _ => None,
    };
    let settings = notify_db_config::Settings::load(None, &env).expect("settings");
    // Whether the pools connect at build or at the first checkout, 14 never gets a session.
    let first_checkout = async {
        let dbs = notify_db_pool::Databases::connect(&settings).await?;
        dbs.default().get().await.map(|_| ())
    };
    let err = tokio::time::timeout(LIMIT, first_checkout)
        .await
        .expect("the pool answers in time")
        .expect_err("PostgreSQL 14 must be refused");
    let text = err.to_string();
    assert!(
        matches!(
            err,
            notify_db_pool::PoolError::Connect(notify_db_pool::ConnectError::ServerTooOld { .. })
        ),
        "{err:?}"
    );
    for part in [
        e.host.clone(),
        e.port.to_string(),
        format!("PostgreSQL {REFUSED_MAJOR}."),
    ] {
        assert!(text.contains(&part), "{part:?} in {text}");
    }
    assert!(!text.contains(&e.password), "no password: {text}");
}

#[test]
fn doctor_refuses_14_and_says_what_to_do() {
    let cluster = cluster("old-doctor");
    let e = cluster.primary().endpoint();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("doctor")
        .env("NOTIFY_ENVIRONMENT", "test")
        .env("SQLALCHEMY_DATABASE_URI", cluster.primary().uri("postgres"))
        .env_remove("SQLALCHEMY_DATABASE_URI_BULK")
        .env_remove("DATABASE_MIGRATION_URI")
        .output()
        .expect("run xtask doctor");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "doctor must fail on 14:\n{text}");
    let line = text
        .lines()
        .find(|l| l.contains(&format!("{}:{}", e.host, e.port)) && l.contains("too old"))
        .unwrap_or_else(|| panic!("a line naming the server as too old:\n{text}"));
    assert!(
        line.contains(&format!("PostgreSQL {REFUSED_MAJOR}.")),
        "{line}"
    );
    assert!(text.contains("needs PostgreSQL 15 or later"), "{text}");
    assert!(!text.contains(&e.password), "no password:\n{text}");
}
