//! Helpers shared by the pool tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify_db_config::Settings;
use notify_db_pool::{
    Bind, CheckoutToken, ConnInfo, ConnectFailure, Databases, PoolObserver, ResetReason,
};
use notify_db_testdb::TestDb;

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
