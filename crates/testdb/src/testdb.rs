//! The clusters shared by a test run, and fresh test databases on them.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;

use crate::{Cluster, ENV_PRIMARY, ENV_REPLICA, Endpoint, Error, block_on, replication};

/// Prefix shared by every test database name.
const PREFIX: &str = "test_notification_api_";

/// Whether `name` is a test database: `test_notification_api_master` or `test_notification_api_gw<digits>`.
pub fn is_test_db_name(name: &str) -> bool {
    match name.strip_prefix(PREFIX) {
        Some("master") => true,
        Some(rest) => rest
            .strip_prefix("gw")
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// `name` as a double-quoted SQL identifier (inner `"` doubled), so that any database name,
/// whatever its case, spaces or quotes, is one identifier in the statements built from it.
pub use postgres_protocol::escape::escape_identifier as quote_ident;

/// The statement that drops database `name`, ending the sessions still in it.
pub fn drop_database_sql(name: &str) -> String {
    format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name))
}

/// The primary and streaming replica shared by the tests of this run.
#[derive(Debug)]
pub struct Shared {
    /// The primary (read/write), listening on 127.0.0.1.
    pub primary: Endpoint,
    /// The streaming replica (in recovery), listening on 127.0.0.2.
    pub replica: Endpoint,
    _own: Option<Cluster>,
}

/// The shared clusters: from `NOTIFY_DB_TEST_PRIMARY`/`NOTIFY_DB_TEST_REPLICA` when set (by
/// `cargo xtask test`), else started once by this process and removed when it exits.
pub fn shared() -> Result<&'static Shared, Error> {
    static CELL: OnceLock<Result<Shared, String>> = OnceLock::new();
    CELL.get_or_init(|| init_shared().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|why| Error::Command {
            cmd: "starting the shared test clusters".into(),
            detail: why.clone(),
        })
}

fn init_shared() -> Result<Shared, Error> {
    let p = std::env::var(ENV_PRIMARY).ok().filter(|v| !v.is_empty());
    let r = std::env::var(ENV_REPLICA).ok().filter(|v| !v.is_empty());
    if let (Some(p), Some(r)) = (p, r) {
        return Ok(Shared {
            primary: Endpoint::from_uri(ENV_PRIMARY, &p)?,
            replica: Endpoint::from_uri(ENV_REPLICA, &r)?,
            _own: None,
        });
    }
    let cluster = Cluster::builder().label("shared").replica(true).start()?;
    let primary = cluster.primary().endpoint().clone();
    let replica = cluster
        .replica()
        .map(|s| s.endpoint().clone())
        .ok_or(Error::Timeout {
            what: "replica".into(),
        })?;
    Ok(Shared {
        primary,
        replica,
        _own: Some(cluster),
    })
}

impl Shared {
    /// Waits until the replica has replayed everything the primary has written so far.
    pub async fn sync_replica(&self) -> Result<(), Error> {
        replication::sync_replica(&self.primary, &self.replica).await
    }
}

/// How `CREATE DATABASE ... TEMPLATE` copies the template (PostgreSQL 15+).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyStrategy {
    /// Block by block through the buffer cache, every block written to the WAL (the default).
    WalLog,
    /// The template's files copied as they are, between two checkpoints; one WAL record.
    FileCopy,
}

impl CopyStrategy {
    /// The keyword of `CREATE DATABASE ... STRATEGY = <keyword>`.
    pub fn keyword(self) -> &'static str {
        match self {
            CopyStrategy::WalLog => "WAL_LOG",
            CopyStrategy::FileCopy => "FILE_COPY",
        }
    }
}

/// The strategy test databases are copied from the template with. `cargo xtask bench template`
/// measures both: FILE_COPY writes one WAL record where WAL_LOG writes every block of the
/// template, so the replica each new test database waits for has almost nothing to replay; it
/// is the faster of the two one at a time and markedly so when tests create databases at once
/// (figures in docs/benchmarks.md). Its two checkpoints are cheap on the harness's servers,
/// which run with `fsync = off`.
pub const TEMPLATE_STRATEGY: CopyStrategy = CopyStrategy::FileCopy;

/// `CREATE DATABASE <name>`, copied from `template` with a strategy when one is given.
fn create_database_sql(name: &str, template: Option<(&str, CopyStrategy)>) -> String {
    match template {
        Some((t, strategy)) => format!(
            "CREATE DATABASE {} TEMPLATE {} STRATEGY = {}",
            quote_ident(name),
            quote_ident(t),
            strategy.keyword()
        ),
        None => format!("CREATE DATABASE {}", quote_ident(name)),
    }
}

/// Next worker number; starts from a per-process offset so that parallel test processes rarely collide.
static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);

fn next_number() -> u32 {
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() % 100_000) * 100,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A fresh, empty database `test_notification_api_gw<N>` on a primary; dropped when this value is
/// dropped (kept when `NOTIFY_DB_KEEP_TEST_DBS=1`, for debugging).
#[derive(Debug)]
pub struct TestDb {
    name: String,
    primary: Endpoint,
    replica: Option<Endpoint>,
}

/// Name of the template database that holds the migrated schema for test databases.
pub const MASTER_DB: &str = "test_notification_api_master";

/// The error a `migrate` callback of [`TestDb::migrated`] returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Advisory lock (in the `postgres` database) guarding the template: exclusive to rebuild it,
/// shared to copy it. The 8 bytes `tdbmastr` read as a big-endian integer, as Alembic does for its id.
const MASTER_LOCK: i64 = i64::from_be_bytes(*b"tdbmastr");

async fn poll_lock(c: &tokio_postgres::Client, shared: bool) -> Result<(), Error> {
    let sql = if shared {
        "SELECT pg_try_advisory_lock_shared($1)"
    } else {
        "SELECT pg_try_advisory_lock($1)"
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let got: bool = c
            .query_one(sql, &[&MASTER_LOCK])
            .await
            .map_err(|e| Error::sql("taking the template lock", e))?
            .get(0);
        if got {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: "the test template lock".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Makes sure `MASTER_DB` exists and carries `fingerprint`, (re)building it with `migrate` if not.
async fn ensure_master<F, Fut>(
    admin: &tokio_postgres::Client,
    primary: &Endpoint,
    fingerprint: &str,
    migrate: F,
) -> Result<(), Error>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let current = || async {
        admin
            .query_opt(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
                &[&MASTER_DB],
            )
            .await
            .map(|r| r.and_then(|r| r.get::<_, Option<String>>(0)))
            .map_err(|e| Error::sql("reading the template's fingerprint", e))
    };
    if current().await?.as_deref() == Some(fingerprint) {
        return Ok(());
    }
    poll_lock(admin, false).await?;
    // Someone may have rebuilt it while we waited.
    if current().await?.as_deref() != Some(fingerprint) {
        tracing::info!(db = MASTER_DB, "building the test template database");
        let built = async {
            // Two statements: neither may run inside the implicit transaction of a multi-statement query.
            for sql in [
                drop_database_sql(MASTER_DB),
                format!("CREATE DATABASE {}", quote_ident(MASTER_DB)),
            ] {
                admin
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| Error::sql("creating the test template database", e))?;
            }
            migrate(primary.uri(MASTER_DB)).await.map_err(|e| Error::Command {
                cmd: format!("migrating {MASTER_DB}"),
                detail: e.to_string(),
            })?;
            // No session may stay connected to a template that is copied.
            admin
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&MASTER_DB],
                )
                .await
                .map_err(|e| Error::sql("disconnecting from the template", e))?;
            admin
                .batch_execute(&format!(
                    "COMMENT ON DATABASE {} IS {}",
                    quote_ident(MASTER_DB),
                    postgres_protocol::escape::escape_literal(fingerprint)
                ))
                .await
                .map_err(|e| Error::sql("storing the template's fingerprint", e))
        }
        .await;
        if built.is_err() {
            // Never leave a half-built template that a later run would take for a good one.
            let _ = admin.batch_execute(&drop_database_sql(MASTER_DB)).await;
        }
        let _ = admin
            .query("SELECT pg_advisory_unlock($1)", &[&MASTER_LOCK])
            .await;
        built?;
    } else {
        let _ = admin
            .query("SELECT pg_advisory_unlock($1)", &[&MASTER_LOCK])
            .await;
    }
    Ok(())
}

impl TestDb {
    /// A fresh database copied from the template `test_notification_api_master`, which `migrate`
    /// (given the template's URI) builds only when its stored `fingerprint` differs (e.g. a hash
    /// of the migration set): the cost per database does not grow with the number of migrations.
    pub async fn migrated<F, Fut>(fingerprint: &str, migrate: F) -> Result<TestDb, Error>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), BoxError>>,
    {
        let s = shared()?;
        Self::migrated_on(&s.primary, Some(&s.replica), fingerprint, migrate).await
    }

    /// [`TestDb::migrated`] on a given primary (and its replica, if any).
    pub async fn migrated_on<F, Fut>(
        primary: &Endpoint,
        replica: Option<&Endpoint>,
        fingerprint: &str,
        migrate: F,
    ) -> Result<TestDb, Error>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), BoxError>>,
    {
        // One admin connection for the check, the lock and the copy.
        let admin = primary.connect("postgres").await?;
        ensure_master(&admin, primary, fingerprint, migrate).await?;
        // Copy under a shared lock, so that nobody rebuilds the template meanwhile.
        poll_lock(&admin, true).await?;
        let db = Self::create_with(
            &admin,
            primary,
            replica,
            Some((MASTER_DB, TEMPLATE_STRATEGY)),
        )
        .await;
        let _ = admin
            .query("SELECT pg_advisory_unlock_shared($1)", &[&MASTER_LOCK])
            .await;
        db
    }

    /// A fresh database on the shared primary (visible on the shared replica too).
    pub async fn create() -> Result<TestDb, Error> {
        let s = shared()?;
        Self::create_on(&s.primary, Some(&s.replica)).await
    }

    /// A fresh database on the given primary (and its replica, if any).
    pub async fn create_on(
        primary: &Endpoint,
        replica: Option<&Endpoint>,
    ) -> Result<TestDb, Error> {
        Self::create_from(primary, replica, None).await
    }

    /// A fresh database copied from `template` (`CREATE DATABASE ... TEMPLATE`, with
    /// [`TEMPLATE_STRATEGY`]), on the given primary.
    pub async fn create_from(
        primary: &Endpoint,
        replica: Option<&Endpoint>,
        template: Option<&str>,
    ) -> Result<TestDb, Error> {
        let admin = primary.connect("postgres").await?;
        let template = template.map(|t| (t, TEMPLATE_STRATEGY));
        Self::create_with(&admin, primary, replica, template).await
    }

    /// A fresh database copied from `template` with a given copy strategy (ready on the replica
    /// too, if any): what `cargo xtask bench template` compares.
    pub async fn copy_of(
        primary: &Endpoint,
        replica: Option<&Endpoint>,
        template: &str,
        strategy: CopyStrategy,
    ) -> Result<TestDb, Error> {
        let admin = primary.connect("postgres").await?;
        Self::create_with(&admin, primary, replica, Some((template, strategy))).await
    }

    async fn create_with(
        admin: &tokio_postgres::Client,
        primary: &Endpoint,
        replica: Option<&Endpoint>,
        template: Option<(&str, CopyStrategy)>,
    ) -> Result<TestDb, Error> {
        loop {
            let name = format!("{PREFIX}gw{}", next_number());
            let sql = create_database_sql(&name, template);
            match admin.batch_execute(&sql).await {
                Ok(()) => {
                    tracing::debug!(db = %name, "created test database");
                    let db = TestDb {
                        name,
                        primary: primary.clone(),
                        replica: replica.cloned(),
                    };
                    // Usable on the replica too before anyone connects there.
                    db.sync_replica().await?;
                    return Ok(db);
                }
                // Another test process took this number: try the next one.
                // (42P04, or 23505 when two sessions race on the catalog).
                Err(e)
                    if e.code() == Some(&SqlState::DUPLICATE_DATABASE)
                        || e.code() == Some(&SqlState::UNIQUE_VIOLATION) =>
                {
                    continue;
                }
                Err(e) => return Err(Error::sql(&format!("creating test database {name}"), e)),
            }
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The primary it lives on.
    pub fn primary(&self) -> &Endpoint {
        &self.primary
    }

    /// The replica it is streamed to, if any.
    pub fn replica(&self) -> Option<&Endpoint> {
        self.replica.as_ref()
    }

    /// Superuser URI of this database on the primary (holds the password: never log it).
    pub fn primary_uri(&self) -> String {
        self.primary.uri(&self.name)
    }

    /// Superuser URI of this database on the replica, if any.
    pub fn replica_uri(&self) -> Option<String> {
        self.replica.as_ref().map(|r| r.uri(&self.name))
    }

    /// Connects to this database on the primary as the superuser.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, Error> {
        self.primary.connect(&self.name).await
    }

    /// Connects to this database on the replica (after waiting for it to appear there).
    pub async fn connect_replica(&self) -> Result<tokio_postgres::Client, Error> {
        let r = self.replica.as_ref().ok_or(Error::Timeout {
            what: "a replica (this database has none)".into(),
        })?;
        replication::sync_replica(&self.primary, r).await?;
        r.connect(&self.name).await
    }

    /// Waits until the replica has replayed everything written on the primary so far.
    pub async fn sync_replica(&self) -> Result<(), Error> {
        match &self.replica {
            Some(r) => replication::sync_replica(&self.primary, r).await,
            None => Ok(()),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var("NOTIFY_DB_KEEP_TEST_DBS").is_ok_and(|v| v == "1") {
            tracing::info!(
                database = %self.name,
                "keeping the test database (NOTIFY_DB_KEEP_TEST_DBS=1)"
            );
            return;
        }
        let sql = drop_database_sql(&self.name);
        let primary = self.primary.clone();
        let res = block_on(async move {
            let c = primary.connect("postgres").await?;
            c.batch_execute(&sql)
                .await
                .map_err(|e| Error::sql("dropping test database", e))
        });
        if let Err(e) | Ok(Err(e)) = res {
            tracing::warn!(db = %self.name, error = %e, "could not drop test database");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_need_quoting_stay_one_identifier() {
        assert_eq!(
            quote_ident("test_notification_api_gw1"),
            "\"test_notification_api_gw1\""
        );
        assert_eq!(quote_ident("Mixed Case"), "\"Mixed Case\"");
        assert_eq!(
            quote_ident("gw1\"; DROP DATABASE notification_api; --"),
            "\"gw1\"\"; DROP DATABASE notification_api; --\""
        );
        assert_eq!(quote_ident(""), "\"\"");
    }

    #[test]
    fn create_database_names_the_template_and_strategy() {
        assert_eq!(
            create_database_sql("test_notification_api_gw7", None),
            "CREATE DATABASE \"test_notification_api_gw7\""
        );
        assert_eq!(
            create_database_sql("a\"b", Some(("my \"template\"", CopyStrategy::WalLog))),
            "CREATE DATABASE \"a\"\"b\" TEMPLATE \"my \"\"template\"\"\" STRATEGY = WAL_LOG"
        );
        assert_eq!(
            create_database_sql("x", Some((MASTER_DB, CopyStrategy::FileCopy))),
            "CREATE DATABASE \"x\" TEMPLATE \"test_notification_api_master\" STRATEGY = FILE_COPY"
        );
    }

    #[test]
    fn only_master_and_numbered_workers_are_test_databases() {
        for name in [
            "test_notification_api_master",
            "test_notification_api_gw0",
            "test_notification_api_gw17",
        ] {
            assert!(is_test_db_name(name), "{name}");
        }
        for name in [
            "notification_api",
            "test_notification_api_gw",
            "test_notification_api_gw1 ",
            "test_notification_api_gw1\"; DROP DATABASE notification_api; --",
            "Test_Notification_Api_Gw1",
            "test_notification_api_master_copy",
        ] {
            assert!(!is_test_db_name(name), "{name}");
        }
    }
}
