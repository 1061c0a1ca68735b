//! Rotating credentials against the shared primary: a password file re-read for every new
//! connection, and the builder's password provider. A role of its own (SCRAM, as the harness'
//! pg_hba asks of every loopback client) has its password changed with ALTER ROLE while the pools
//! run; no output (errors, Debug, logs) may ever show a password.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{NEED_PG, settings_from};
use notify_db_pool::{
    Bind, ConnectError, Databases, PasswordError, PasswordProviderError, PoolError,
};
use notify_db_testdb::TestDb;

const LIMIT: Duration = Duration::from_secs(30);

/// A value no other test uses: role names and passwords.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// Log lines of the pools, kept to search for passwords.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log lock")).into_owned()
    }
}

fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

/// A login role with `password` on the test database's server, dropped by [`Role::drop_role`].
struct Role {
    name: String,
    admin: tokio_postgres::Client,
}

impl Role {
    async fn create(db: &TestDb, password: &str) -> Role {
        let admin = db.connect().await.expect(NEED_PG);
        let name = unique("notify_rot");
        admin
            .batch_execute(&format!(
                "SET password_encryption = 'scram-sha-256'; \
                 CREATE ROLE {name} LOGIN PASSWORD '{password}'"
            ))
            .await
            .expect("creating the test role");
        Role { name, admin }
    }

    async fn set_password(&self, password: &str) {
        self.admin
            .batch_execute(&format!("ALTER ROLE {} PASSWORD '{password}'", self.name))
            .await
            .expect("changing the role's password");
    }

    /// The role's URI on the test database, without a password.
    fn uri(&self, db: &TestDb) -> String {
        let ep = db.primary();
        format!(
            "postgresql://{}@{}:{}/{}?sslmode=disable",
            self.name,
            ep.host,
            ep.port,
            db.name()
        )
    }

    async fn drop_role(self, dbs: Databases) {
        dbs.default().close();
        dbs.bulk().close();
        drop(dbs);
        // The pools' connections end asynchronously; terminate any left before dropping.
        self.admin
            .batch_execute(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{0}'; \
                 DROP ROLE IF EXISTS {0}",
                self.name
            ))
            .await
            .expect("dropping the test role");
    }
}

fn write_secret(path: &Path, password: &str) {
    // As Kubernetes and `echo` write it: with a trailing newline, which must be stripped.
    std::fs::write(path, format!("{password}\n")).expect("writing the password file");
}

fn secret_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("notify-db-secret"));
    std::fs::create_dir_all(&dir).expect("creating the secret directory");
    dir
}

async fn backend_pid(c: &tokio_postgres::Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("a query on the connection")
        .get(0)
}

fn assert_hidden(what: &str, text: &str, passwords: &[&str]) {
    for pw in passwords {
        assert!(!text.contains(pw), "a password appears in {what}:\n{text}");
    }
}

#[tokio::test]
async fn a_rotated_password_file_is_used_by_new_connections_without_a_restart() {
    let (logs, _guard) = capture_logs();
    let db = TestDb::create().await.expect(NEED_PG);
    let (first, second, wrong) = (unique("pw1"), unique("pw2"), unique("wrong"));
    let role = Role::create(&db, &first).await;
    let dir = secret_dir();
    let file = dir.join("db-password");
    write_secret(&file, &first);
    let s = settings_from(&[
        ("SQLALCHEMY_DATABASE_URI", role.uri(&db)),
        ("DATABASE_PASSWORD_FILE", file.display().to_string()),
        ("SQLALCHEMY_POOL_SIZE", "4".to_owned()),
    ]);
    let dbs = tokio::time::timeout(LIMIT, Databases::connect(&s))
        .await
        .expect("connect within the time limit")
        .expect("both pools log in with the password from the file");

    let old = dbs.default().get().await.expect("the first connection");
    let old_pid = backend_pid(&old).await;

    role.set_password(&second).await;
    write_secret(&file, &second);
    // `old` is checked out, so this is a new connection: it must log in with the new password.
    let new = tokio::time::timeout(LIMIT, dbs.default().get())
        .await
        .expect("checkout within the time limit")
        .expect("a new connection logs in with the rotated password");
    assert_ne!(
        backend_pid(&new).await,
        old_pid,
        "a new physical connection"
    );
    assert_eq!(
        backend_pid(&old).await,
        old_pid,
        "the connection opened with the old password keeps working"
    );
    let bulk = dbs
        .bulk()
        .get()
        .await
        .expect("bulk (on the primary) with the rotated password");
    backend_pid(&bulk).await;

    // A wrong password in the file: the server refuses it, and no output shows it.
    write_secret(&file, &wrong);
    let refused = tokio::time::timeout(LIMIT, dbs.default().get())
        .await
        .expect("checkout within the time limit")
        .expect_err("the server refuses a wrong password");
    let shown = format!("{refused} {refused:?}");
    assert!(shown.contains("password authentication failed"), "{shown}");
    assert_hidden("the error", &shown, &[&first, &second, &wrong]);

    // A missing file: an error naming the variable and the path.
    std::fs::remove_file(&file).expect("removing the password file");
    let missing = tokio::time::timeout(LIMIT, dbs.default().get())
        .await
        .expect("checkout within the time limit")
        .expect_err("no password file");
    assert!(
        matches!(
            &missing,
            PoolError::Connect(ConnectError::Password {
                source: PasswordError::File { .. }
            })
        ),
        "{missing:?}"
    );
    let text = missing.to_string();
    assert!(
        text.contains("DATABASE_PASSWORD_FILE") && text.contains(&file.display().to_string()),
        "{text}"
    );

    let debug = format!("{dbs:?} {s:?} {s} {old:?}");
    assert_hidden("Debug/Display", &debug, &[&first, &second, &wrong]);
    drop((old, new, bulk));
    role.drop_role(dbs).await;
    assert_hidden("the logs", &logs.text(), &[&first, &second, &wrong]);
    std::fs::remove_dir_all(&dir).expect("removing the secret directory");
}

#[tokio::test]
async fn the_password_provider_is_asked_for_every_new_connection() {
    let (logs, _guard) = capture_logs();
    let db = TestDb::create().await.expect(NEED_PG);
    let (first, second) = (unique("tok1"), unique("tok2"));
    let role = Role::create(&db, &first).await;
    let current = Arc::new(Mutex::new(Some(first.clone())));
    let calls = Arc::new(AtomicUsize::new(0));
    let (token, count) = (Arc::clone(&current), Arc::clone(&calls));
    let provider = move |bind: Bind| {
        count.fetch_add(1, Ordering::SeqCst);
        let token = token.lock().expect("token lock").clone();
        async move {
            token.ok_or_else(|| -> PasswordProviderError {
                format!("no token for the {bind} bind yet").into()
            })
        }
    };
    let s = settings_from(&[
        ("SQLALCHEMY_DATABASE_URI", role.uri(&db)),
        ("SQLALCHEMY_POOL_SIZE", "4".to_owned()),
    ]);
    let dbs = tokio::time::timeout(
        LIMIT,
        Databases::builder(&s)
            .password_provider(Arc::new(provider))
            .build(),
    )
    .await
    .expect("build within the time limit")
    .expect("both pools log in with the provider's token");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one call per new connection"
    );

    let old = dbs.default().get().await.expect("the warm connection");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "a checkout of an open connection asks nothing"
    );
    role.set_password(&second).await;
    *current.lock().expect("token lock") = Some(second.clone());
    let new = tokio::time::timeout(LIMIT, dbs.default().get())
        .await
        .expect("checkout within the time limit")
        .expect("a new connection logs in with the new token");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_ne!(backend_pid(&new).await, backend_pid(&old).await);

    *current.lock().expect("token lock") = None;
    let failed = tokio::time::timeout(LIMIT, dbs.default().get())
        .await
        .expect("checkout within the time limit")
        .expect_err("the provider fails");
    assert!(
        matches!(
            &failed,
            PoolError::Connect(ConnectError::Password {
                source: PasswordError::Provider {
                    bind: Bind::Default,
                    ..
                }
            })
        ),
        "{failed:?}"
    );
    // `PoolError::Password` is transparent: its source is the provider's own error.
    let chain = std::error::Error::source(&failed).map(ToString::to_string);
    assert_eq!(
        chain.as_deref(),
        Some("no token for the default bind yet"),
        "the provider's error is chained"
    );
    drop((old, new));
    role.drop_role(dbs).await;
    assert_hidden("the logs", &logs.text(), &[&first, &second]);
}
