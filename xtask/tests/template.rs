//! Test databases copied from the migrated template `test_notification_api_master`: 8 worker
//! databases have the schema of a database migrated from scratch, and the template is built at
//! most once for one migration set. Not timed (`cargo xtask bench template` measures).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use notify_db_migrate::{MigrationSet, Migrator, Target};
use notify_db_migrate_cli::schema;
use notify_db_testdb::{BoxError, TestDb};

async fn migrate(set: MigrationSet, uri: String) -> Result<(), BoxError> {
    let uri = notify_db_config::DatabaseUri::parse(&uri, "the template database")?;
    Migrator::new(set, &uri)?.upgrade(&Target::Head).await?;
    Ok(())
}

#[tokio::test]
async fn eight_worker_databases_from_the_template_have_the_migrated_schema() {
    let set = notify_db_migrations::set().expect("the migration set");
    let head = set.head().expect("a head").to_owned();
    let fp = set.fingerprint();
    let builds = Arc::new(AtomicUsize::new(0));

    let mut workers = Vec::new();
    for _ in 0..8 {
        let (s, b) = (set.clone(), builds.clone());
        let db = TestDb::migrated(&fp, move |uri| {
            b.fetch_add(1, Ordering::SeqCst);
            migrate(s, uri)
        })
        .await
        .expect("a worker database from the template");
        workers.push(db);
    }
    assert!(
        builds.load(Ordering::SeqCst) <= 1,
        "the template is built at most once for one fingerprint (built {} times)",
        builds.load(Ordering::SeqCst)
    );

    // The reference: an empty database migrated from scratch.
    let scratch = TestDb::create().await.expect("scratch database");
    migrate(set.clone(), scratch.primary_uri())
        .await
        .expect("migrate from scratch");
    let expected = schema::capture(&scratch.connect().await.expect("connect"))
        .await
        .expect("capture");
    assert!(
        expected.len() > 50,
        "the starter set makes a real schema:\n{expected}"
    );

    let mut names = Vec::new();
    for db in &workers {
        assert!(
            notify_db_testdb::is_test_db_name(db.name()),
            "{} is a worker name",
            db.name()
        );
        names.push(db.name().to_owned());
        let c = db.connect().await.expect("connect to worker");
        let got = schema::capture(&c).await.expect("capture worker");
        let diff = expected.diff(&got);
        assert!(
            diff.is_empty(),
            "{} differs from a migrated database:\n{}",
            db.name(),
            schema::render_diff(&diff)
        );
        let v: String = c
            .query_one("SELECT version_num::text FROM alembic_version", &[])
            .await
            .expect("alembic_version")
            .get(0);
        assert_eq!(v, head, "{} is at head", db.name());
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 8, "eight distinct databases: {names:?}");
}
