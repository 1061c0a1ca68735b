//! Helpers shared by the pool tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify_db_config::Settings;
use notify_db_pool::{
    Bind, CheckoutToken, ConnInfo, ConnectFailure, Databases, PoolObserver, ResetReason,
};
use notify_db_testdb::{PgBouncer, TestDb};

/// What a test needs when the harness cannot give it a database: said in its failure.
pub(crate) const NEED_PG: &str = "a test database on the shared primary/replica \
                                  (notify-db-testdb needs PostgreSQL 15+ binaries; see crates/testdb)";

/// A fresh test database on the shared cluster, already replayed by its replica.
pub(crate) async fn replicated_db() -> TestDb {
    let db = TestDb::create().await.expect(NEED_PG);
    db.sync_replica()
        .await
        .expect("replica to replay the new test database");
    db
}

/// What a test needs when the harness cannot start a PgBouncer: said in its failure.
pub(crate) const NEED_BOUNCER: &str = "a PgBouncer from notify-db-testdb (install the Debian \
                                       package `pgbouncer`, or point PGBOUNCER at the binary)";

/// A PgBouncer in transaction mode in front of the test database on the primary, as `primary`
/// and as a read-only `bulk`, with `server_connections` per database, each running
/// `SET statement_timeout = timeout_ms`; and settings that reach both binds through it, flagged
/// as a transaction pooler, with that statement timeout, and `extra` after them.
pub(crate) fn through_bouncer(
    db: &TestDb,
    server_connections: u32,
    timeout_ms: u32,
    extra: &[(&str, String)],
) -> (PgBouncer, Settings) {
    let p = db.primary();
    let timeout = format!("SET statement_timeout = {timeout_ms}");
    let b = PgBouncer::builder()
        .pool_size(server_connections)
        .database("primary", p, db.name())
        .connect_query(&timeout)
        .database("bulk", p, db.name())
        .connect_query(&format!(
            "{timeout}; SET default_transaction_read_only = on"
        ))
        .start()
        .expect(NEED_BOUNCER);
    let uri = |name: &str| b.endpoint(&p.user, &p.password).uri(name);
    let mut vars = vec![
        ("SQLALCHEMY_DATABASE_URI", uri("primary")),
        ("SQLALCHEMY_DATABASE_URI_BULK", uri("bulk")),
        ("DATABASE_URI_TRANSACTION_POOLER", "true".to_owned()),
        ("DATABASE_URI_BULK_TRANSACTION_POOLER", "true".to_owned()),
        ("DATABASE_STATEMENT_TIMEOUT_MS", timeout_ms.to_string()),
        (
            "DATABASE_STATEMENT_TIMEOUT_REPLICA_MS",
            timeout_ms.to_string(),
        ),
    ];
    vars.extend(extra.iter().cloned());
    let s = settings_from(&vars);
    (b, s)
}

/// Settings from an environment map (no config files), like a service would get them.
pub(crate) fn settings_from(vars: &[(&str, String)]) -> Settings {
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("NOTIFY_ENVIRONMENT".into(), "test".into());
    for (k, v) in vars {
        env.insert((*k).to_owned(), v.clone());
    }
    Settings::load(None, &|k| env.get(k).cloned()).expect("settings from the test environment")
}

/// Records every observer call, for assertions.
#[derive(Default)]
pub(crate) struct Recorder {
    pub events: Mutex<Vec<String>>,
}

impl Recorder {
    pub(crate) fn events(&self) -> Vec<String> {
        self.events.lock().expect("recorder lock").clone()
    }

    pub(crate) fn count(&self, prefix: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| e.starts_with(prefix))
            .count()
    }

    fn push(&self, e: String) {
        self.events.lock().expect("recorder lock").push(e);
    }
}

impl PoolObserver for Recorder {
    fn connected(&self, c: &ConnInfo) {
        self.push(format!("connected {} {} {}", c.bind, c.host, c.backend_pid));
    }
    fn closed(&self, c: &ConnInfo) {
        self.push(format!("closed {} {} {}", c.bind, c.host, c.backend_pid));
    }
    fn connect_failed(&self, bind: Bind, host: &str, port: u16, why: ConnectFailure) {
        self.push(format!(
            "connect_failed {bind} {host}:{port} {}",
            why.as_str()
        ));
    }
    fn checked_out(&self, c: &ConnInfo, _waited: Duration) -> CheckoutToken {
        self.push(format!("checked_out {} {}", c.bind, c.backend_pid));
        Some(Box::new(c.backend_pid))
    }
    fn returned(&self, c: &ConnInfo, _held: Duration, token: CheckoutToken) {
        let same = token
            .and_then(|t| t.downcast::<i32>().ok())
            .is_some_and(|pid| *pid == c.backend_pid);
        self.push(format!(
            "returned {} {} token_ok={same}",
            c.bind, c.backend_pid
        ));
    }
    fn reset(&self, c: &ConnInfo, reason: ResetReason) {
        self.push(format!(
            "reset {} {} {}",
            c.bind,
            c.backend_pid,
            reason.as_str()
        ));
    }
    fn wait_timed_out(&self, bind: Bind, _waited: Duration) {
        self.push(format!("wait_timed_out {bind}"));
    }
    fn pool_created(&self, bind: Bind, max_size: usize) {
        self.push(format!("pool_created {bind} {max_size}"));
    }
}

/// A loopback port with nothing listening on it.
pub(crate) fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a probe port");
    l.local_addr().expect("probe port address").port()
}

/// Both pools for `s`, with an observer that records every event.
pub(crate) async fn recorded(s: &Settings) -> (Databases, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let dbs = Databases::builder(s)
        .observer(recorder.clone())
        .build()
        .await
        .expect("connecting both pools");
    (dbs, recorder)
}
