//! The starter migration set against real PostgreSQL: round trip, CLI output, Alembic adoption.

use std::collections::HashMap;

use notify_db_config::{DatabaseUri, Settings};
use notify_db_migrate::{Direction, Migrator, Options, Target};
use notify_db_migrate_cli::cli::{self, FileKind, MigrateCli, Project};
use notify_db_testdb::TestDb;

async fn db() -> TestDb {
    match TestDb::create().await {
        Ok(db) => db,
        Err(e) => {
            panic!("these tests need PostgreSQL from notify-db-testdb and could not get it: {e}")
        }
    }
}

/// The starter set against `db` (`None`: offline, for rendering SQL).
fn migrator(db: Option<&TestDb>) -> Migrator {
    let set = notify_db_migrations::set().expect("valid set");
    let m = match db {
        Some(db) => Migrator::new(
            set,
            &DatabaseUri::parse(&db.primary_uri(), "the test database").expect("test database URI"),
        )
        .expect("migrator"),
        None => Migrator::offline(set),
    };
    m.with_options(Options {
        retry_delay: std::time::Duration::from_secs(1),
        ..Options::default()
    })
}

async fn tables(c: &tokio_postgres::Client) -> Vec<String> {
    c.query(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
        &[],
    )
    .await
    .expect("tables")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Runs the CLI as `cargo xtask migrate` would, against `db`; returns (exit code, output).
async fn cli_run(db: &TestDb, args: &[&str]) -> (i32, String) {
    let cli: MigrateCli =
        clap::Parser::try_parse_from(std::iter::once("migrate").chain(args.iter().copied()))
            .expect("arguments parse");
    let project = Project {
        set: notify_db_migrations::set().expect("valid set"),
        dir: notify_db_migrations::dir().to_path_buf(),
        kind: FileKind::Rust,
    };
    let env: HashMap<&str, String> = HashMap::from([
        ("SQLALCHEMY_DATABASE_URI", db.primary_uri()),
        ("NOTIFY_ENVIRONMENT", "test".to_owned()),
    ]);
    let settings = Settings::load(None, &|k| env.get(k).cloned());
    let mut out = Vec::new();
    let code = cli::run(cli, &project, settings, &mut out)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    (code, String::from_utf8(out).expect("utf-8"))
}

#[tokio::test]
async fn empty_to_head_to_base_to_head_with_current_and_history() {
    let db = db().await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let m = migrator(Some(&db)).on_progress(move |a| log.lock().expect("lock").push(a.id.clone()));
    let head = m.set().head().expect("head").to_owned();
    let ids: Vec<String> = m
        .set()
        .migrations()
        .iter()
        .map(|x| x.id().to_owned())
        .collect();

    assert_eq!(cli_run(&db, &["current"]).await, (0, "base\n".to_owned()));
    let report = m.upgrade(&Target::Head).await.expect("upgrade");
    assert_eq!(report.from, None);
    assert_eq!(report.to.as_deref(), Some(head.as_str()));
    assert_eq!(
        report
            .applied
            .iter()
            .map(|a| a.id.clone())
            .collect::<Vec<_>>(),
        ids
    );
    let c = db.connect().await.expect("connect");
    let after_up = tables(&c).await;
    for t in [
        "services",
        "users",
        "api_keys",
        "templates",
        "jobs",
        "notifications",
        "notification_history",
    ] {
        assert!(
            after_up.iter().any(|x| x == t),
            "{t} missing from {after_up:?}"
        );
    }
    let idx: bool = c
        .query_one("SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_notifications_job_id'::regclass", &[])
        .await
        .expect("index")
        .get(0);
    assert!(idx);

    assert_eq!(
        cli_run(&db, &["current"]).await,
        (0, format!("{head} (head)\n"))
    );
    let (_, history) = cli_run(&db, &["history"]).await;
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), ids.len(), "{history}");
    let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let first = words(lines[0]);
    assert_eq!(
        first[..2],
        [head.clone(), "applied".to_owned()],
        "{history}"
    );
    assert!(
        first[2].starts_with("20") && first.contains(&"(current)".to_owned()),
        "applied with a timestamp: {history}"
    );
    assert!(lines.iter().all(|l| words(l)[1] == "applied"), "{history}");
    assert!(history.contains("[no transaction]"), "{history}");
    assert_eq!(cli_run(&db, &["check"]).await, (0, "no\n".to_owned()));

    // Journal: one upgrade row per migration, with checksum, duration and runner.
    let rows = c
        .query(
            "SELECT version_num::text, checksum, duration_ms, applied_by, runner_host FROM notify_db_migration_journal \
             WHERE operation = 'upgrade' ORDER BY id",
            &[],
        )
        .await
        .expect("journal");
    assert_eq!(rows.len(), ids.len());
    for (r, m2) in rows.iter().zip(m.set().migrations()) {
        assert_eq!(r.get::<_, String>(0), m2.id());
        assert_eq!(r.get::<_, String>(1), m2.checksum());
        assert!(r.get::<_, f64>(2) >= 0.0);
        assert_eq!(r.get::<_, String>(3), "notify-db-migrate");
        assert!(!r.get::<_, String>(4).is_empty());
    }

    let down = m.downgrade(&Target::Base).await.expect("downgrade");
    assert_eq!(down.to, None);
    assert_eq!(down.applied.len(), ids.len());
    assert!(down.applied.iter().all(|a| a.direction == Direction::Down));
    assert_eq!(
        tables(&c).await,
        vec!["alembic_version", "notify_db_migration_journal"]
    );
    let types: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_type WHERE typname = 'notification_status'",
            &[],
        )
        .await
        .expect("types")
        .get(0);
    assert_eq!(types, 0, "the enum is dropped too");
    assert_eq!(cli_run(&db, &["current"]).await, (0, "base\n".to_owned()));

    let (code, out) = cli_run(&db, &["upgrade"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!(
            "upgrade: base -> {head} ({} migrations",
            ids.len()
        )),
        "{out}"
    );
    assert_eq!(tables(&c).await, after_up);
    // A second upgrade is a no-op.
    let again = m.upgrade(&Target::Head).await.expect("no-op");
    assert!(again.applied.is_empty());
}

#[tokio::test]
async fn the_batched_backfill_fills_existing_rows_and_validates_the_check() {
    let db = db().await;
    let m = migrator(Some(&db));
    m.upgrade(&Target::Revision("0009".into()))
        .await
        .expect("upgrade to 0009");
    let c = db.connect().await.expect("connect");
    c.batch_execute(
        "INSERT INTO users (name, email_address) SELECT 'u' || i, 'User' || i || '@Example.COM' FROM generate_series(1, 2500) i",
    )
    .await
    .expect("users");
    m.upgrade(&Target::Head).await.expect("backfill");
    let row = c
        .query_one(
            "SELECT count(*) FILTER (WHERE email_address_lower = lower(email_address)), \
             (SELECT convalidated FROM pg_constraint WHERE conname = 'ck_users_email_address_lower') FROM users",
            &[],
        )
        .await
        .expect("check");
    assert_eq!(row.get::<_, i64>(0), 2500);
    assert!(
        row.get::<_, bool>(1),
        "the NOT VALID check is validated after the backfill"
    );
}

#[tokio::test]
async fn an_alembic_database_at_0003_is_adopted_and_upgraded_from_0004() {
    let db = db().await;
    let m = migrator(Some(&db));
    let c = db.connect().await.expect("connect");
    // What Alembic leaves: its version table and the schema of 0001..0003, no journal.
    for mig in &m.set().migrations()[..3] {
        for s in mig.up_statements() {
            c.batch_execute(s).await.expect("schema by hand");
        }
    }
    c.batch_execute(
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));\
         INSERT INTO alembic_version VALUES ('0003_create_api_keys')",
    )
    .await
    .expect("alembic_version");
    assert_eq!(cli_run(&db, &["check"]).await, (0, "yes\n".to_owned()));
    let (_, history) = cli_run(&db, &["history"]).await;
    let line = history
        .lines()
        .find(|l| l.starts_with("0003_create_api_keys"))
        .expect("0003 listed");
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>().join(" "),
        "0003_create_api_keys applied (applied before the journal) (current)",
        "{history}"
    );
    assert!(
        history
            .lines()
            .find(|l| l.starts_with("0004"))
            .is_some_and(|l| l.contains("pending")),
        "{history}"
    );
    let report = m.upgrade(&Target::Head).await.expect("upgrade");
    assert_eq!(report.from.as_deref(), Some("0003_create_api_keys"));
    assert_eq!(
        report.applied.first().map(|a| a.id.as_str()),
        Some("0004_create_templates")
    );
    assert_eq!(report.applied.len(), m.set().migrations().len() - 3);
    let v: String = c
        .query_one("SELECT version_num::text FROM alembic_version", &[])
        .await
        .expect("v")
        .get(0);
    assert_eq!(Some(v.as_str()), m.set().head());
}

#[tokio::test]
async fn offline_sql_renders_transaction_boundaries_and_version_updates() {
    let m = migrator(None);
    let sql = m
        .render_sql(None, &Target::Head, Direction::Up)
        .expect("render");
    let n = m.set().migrations().len();
    assert_eq!(
        sql.lines().filter(|l| *l == "COMMIT;").count(),
        n,
        "one COMMIT per migration: {sql}"
    );
    assert_eq!(sql.lines().filter(|l| *l == "BEGIN;").count(), n, "{sql}");
    assert!(sql.contains("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_notifications_job_id ON notifications (job_id);\nINSERT INTO notify_db_migration_journal"), "{sql}");
    // The per-migration bookkeeping is prepared once and executed per migration.
    assert_eq!(
        sql.matches("PREPARE notify_db_journal(").count(),
        1,
        "{sql}"
    );
    assert_eq!(
        sql.matches("EXECUTE notify_db_journal(").count(),
        m.set()
            .migrations()
            .iter()
            .filter(|m| m.is_transactional())
            .count(),
        "{sql}"
    );
    let down = m
        .render_sql(m.set().head(), &Target::Relative(-2), Direction::Down)
        .expect("render down");
    assert!(
        down.contains("ALTER TABLE users DROP CONSTRAINT IF EXISTS ck_users_email_address_lower;"),
        "{down}"
    );
    assert!(down.contains("EXECUTE notify_db_version_update('0008_notifications_job_id_index', '0009_add_users_email_lower');"), "{down}");
    assert!(!down.contains("0007"), "{down}");
}
