//! Opening one set-up physical connection: host choice with back-off, TLS, and the one-round-trip
//! session setup.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify_db_config::{DatabaseUri, HostPort, Settings};
use tokio::task::JoinHandle;
use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::error::PoolError;
use crate::limit::{LimitBackoff, limit_of};
use crate::observer::{Bind, ConnInfo, ConnectFailure, PoolObserver};
use crate::pooler::{self, Expected};
use crate::tls::Tls;

/// Oldest supported server (`server_version_num`).
const MIN_SERVER_VERSION_NUM: i64 = 150_000;

/// Process-wide id of physical connections.
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// Which server role a bind accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Any,
    Primary,
    Replica,
}

/// One configured host and its back-off state.
struct Host {
    hp: HostPort,
    config: tokio_postgres::Config,
    down_until: Mutex<Option<Instant>>,
    limit: LimitBackoff,
}

impl Host {
    fn backed_off(&self, now: Instant) -> bool {
        match self.down_until.lock() {
            Ok(guard) => guard.is_some_and(|until| now < until),
            Err(_) => false,
        }
    }

    fn mark(&self, until: Option<Instant>) {
        if let Ok(mut guard) = self.down_until.lock() {
            *guard = until;
        }
    }
}

/// Opens set-up connections for one bind.
pub(crate) struct Connector {
    bind: Bind,
    hosts: Vec<Host>,
    next: AtomicUsize,
    rotate: bool,
    role: Role,
    tls: Tls,
    /// Direct: the setup SQL that sets the session settings. Through a transaction pooler:
    /// `None`, and `expected` holds what the server must enforce itself.
    setup_sql: Option<String>,
    expected: Expected,
    timeout: Duration,
    backoff: Duration,
    pub(crate) observer: Option<Arc<dyn PoolObserver>>,
}

/// A freshly opened, set-up connection.
pub(crate) struct Opened {
    pub(crate) client: Client,
    pub(crate) task: JoinHandle<()>,
    pub(crate) info: ConnInfo,
}

/// What the setup (or, through a pooler, the check) query read from the server.
pub(crate) struct ServerFacts {
    pub(crate) in_recovery: bool,
    pub(crate) server_addr: Option<IpAddr>,
    pub(crate) version_num: i64,
    pub(crate) version: String,
    pub(crate) backend_pid: i32,
}

impl Connector {
    /// Prepares everything that does not change between connects: per-host configs, TLS,
    /// setup SQL.
    pub(crate) fn new(
        uri: &DatabaseUri,
        settings: &Settings,
        bind: Bind,
        observer: Option<Arc<dyn PoolObserver>>,
    ) -> Result<Connector, PoolError> {
        let tls = crate::tls::for_uri(uri, bind)?;
        let pool = &settings.pool;
        let through_pooler = pooler::is_pooled(settings, bind);
        if through_pooler && uri.param("options").is_some() {
            return Err(pooler::options_refused(uri, bind));
        }
        // The whole connect (TCP, TLS, auth, setup) per host: the URI's connect_timeout wins.
        let timeout = uri
            .param("connect_timeout")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&s| s > 0)
            .map_or(pool.connect_timeout, Duration::from_secs);
        let role = match uri.param("target_session_attrs") {
            Some("read-write") => Role::Primary,
            Some("read-only") => Role::Replica,
            Some(_) => Role::Any,
            None if bind == Bind::Default && uri.hosts().len() > 1 => Role::Primary,
            None => Role::Any,
        };
        let hosts = uri
            .hosts()
            .iter()
            .map(|hp| Host {
                hp: hp.clone(),
                config: host_config(uri, hp, settings, timeout, through_pooler),
                down_until: Mutex::new(None),
                limit: LimitBackoff::default(),
            })
            .collect();
        Ok(Connector {
            bind,
            hosts,
            next: AtomicUsize::new(0),
            // Bulk spreads new connections over its hosts; default keeps libpq's order.
            rotate: bind == Bind::Bulk,
            role,
            tls,
            setup_sql: (!through_pooler).then(|| setup_sql(settings, bind)),
            expected: Expected::new(settings, bind),
            timeout,
            backoff: pool.host_backoff,
            observer,
        })
    }

    /// Opens one set-up connection: healthy hosts first (round robin for bulk), hosts in
    /// back-off only as a last resort.
    pub(crate) async fn open(&self) -> Result<Opened, PoolError> {
        let n = self.hosts.len();
        let start = if self.rotate && n > 1 {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        } else {
            0
        };
        let now = Instant::now();
        let order = (0..n).map(|i| (start + i) % n);
        let healthy = order.clone().filter(|&i| !self.hosts[i].backed_off(now));
        let resting = order.filter(|&i| self.hosts[i].backed_off(now));
        let mut errors = Vec::new();
        for i in healthy.chain(resting) {
            let host = &self.hosts[i];
            // A host that refused us for a connection limit is left alone for its back-off.
            if let Some(err) = host.limit.active(now) {
                errors.push(err);
                continue;
            }
            match self.open_host(host).await {
                Ok(opened) => {
                    host.mark(None);
                    host.limit.clear();
                    return Ok(opened);
                }
                Err((failure, err)) => {
                    tracing::warn!(
                        bind = self.bind.as_str(),
                        host = host.hp.host.as_str(),
                        port = host.hp.port,
                        failure = failure.as_str(),
                        error = %err,
                        "connect failed"
                    );
                    if let Some(o) = &self.observer {
                        o.connect_failed(self.bind, &host.hp.host, host.hp.port, failure);
                    }
                    if failure == ConnectFailure::Limit {
                        let wait = host.limit.hit(err.clone(), self.backoff);
                        tracing::warn!(
                            bind = self.bind.as_str(),
                            host = host.hp.host.as_str(),
                            port = host.hp.port,
                            back_off = ?wait,
                            "connection limit reached: not connecting to this host for a while"
                        );
                    }
                    if n > 1 {
                        host.mark(Some(Instant::now() + self.backoff));
                    }
                    errors.push(err);
                }
            }
        }
        if errors.len() == 1
            && let Some(e) = errors.pop()
        {
            return Err(e);
        }
        Err(PoolError::NoHost {
            bind: self.bind,
            errors,
        })
    }

    async fn open_host(&self, host: &Host) -> Result<Opened, (ConnectFailure, PoolError)> {
        let hp = &host.hp;
        match tokio::time::timeout(self.timeout, self.open_host_inner(host)).await {
            Ok(result) => result,
            Err(_) => Err((
                ConnectFailure::Timeout,
                PoolError::Connect {
                    bind: self.bind,
                    host: hp.host.clone(),
                    port: hp.port,
                    cause: format!(
                        "no working session within the connect timeout of {:?} (TCP, TLS, \
                         authentication and session setup together)",
                        self.timeout
                    ),
                    failure: ConnectFailure::Timeout,
                },
            )),
        }
    }

    async fn open_host_inner(&self, host: &Host) -> Result<Opened, (ConnectFailure, PoolError)> {
        let hp = &host.hp;
        let connect_err = |e: tokio_postgres::Error| {
            if let Some(limit) = limit_of(&e) {
                return (
                    ConnectFailure::Limit,
                    PoolError::ConnectionLimit {
                        bind: self.bind,
                        host: hp.host.clone(),
                        port: hp.port,
                        limit,
                        cause: error_text(&e),
                    },
                );
            }
            let failure = classify(&e);
            (
                failure,
                PoolError::Connect {
                    bind: self.bind,
                    host: hp.host.clone(),
                    port: hp.port,
                    cause: error_text(&e),
                    failure,
                },
            )
        };
        let bind = self.bind;
        let (client, task) = match &self.tls {
            Tls::Off => {
                let (client, conn) = host.config.connect(NoTls).await.map_err(connect_err)?;
                (client, tokio::spawn(drive(conn, bind)))
            }
            Tls::Rustls(make) => {
                let (client, conn) = host
                    .config
                    .connect(make.clone())
                    .await
                    .map_err(connect_err)?;
                (client, tokio::spawn(drive(conn, bind)))
            }
        };
        // Dropping `client` on an error below ends the connection task.
        let setup_err = |cause: String| {
            (
                ConnectFailure::Setup,
                PoolError::Setup {
                    bind,
                    host: hp.host.clone(),
                    port: hp.port,
                    cause,
                },
            )
        };
        let facts = match &self.setup_sql {
            Some(sql) => {
                let messages = client
                    .simple_query(sql)
                    .await
                    .map_err(|e| setup_err(error_text(&e)))?;
                let row = messages
                    .iter()
                    .find_map(|m| match m {
                        SimpleQueryMessage::Row(row) => Some(row),
                        _ => None,
                    })
                    .ok_or_else(|| setup_err("the setup query returned no row".to_owned()))?;
                ServerFacts {
                    in_recovery: row.get(0) == Some("t"),
                    server_addr: row.get(1).and_then(|a| a.parse::<IpAddr>().ok()),
                    version_num: row.get(2).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0),
                    version: row.get(3).unwrap_or("unknown").to_owned(),
                    backend_pid: row.get(4).and_then(|p| p.parse::<i32>().ok()).unwrap_or(0),
                }
            }
            None => {
                let checked = self.expected.check(&client).await;
                checked.map_err(|e| match e {
                    pooler::CheckError::Query(e) => setup_err(error_text(&e)),
                    pooler::CheckError::NotEnforced(missing) => (
                        ConnectFailure::Setup,
                        pooler::not_enforced(bind, hp, missing),
                    ),
                })?
            }
        };
        let ServerFacts {
            in_recovery,
            server_addr,
            version_num,
            version,
            backend_pid,
        } = facts;
        if version_num < MIN_SERVER_VERSION_NUM {
            return Err((
                ConnectFailure::TooOld,
                PoolError::ServerTooOld {
                    host: hp.host.clone(),
                    port: hp.port,
                    version,
                },
            ));
        }
        match (self.role, in_recovery) {
            (Role::Primary, true) => {
                return Err(setup_err(
                    "the server is a replica (in recovery) but this bind needs the read-write \
                     primary"
                        .to_owned(),
                ));
            }
            (Role::Replica, false) => {
                return Err(setup_err(
                    "the server is a primary but target_session_attrs=read-only asks for a replica"
                        .to_owned(),
                ));
            }
            _ => {}
        }
        let info = ConnInfo {
            id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
            bind,
            host: hp.host.clone(),
            port: hp.port,
            server_addr,
            in_recovery,
            backend_pid,
        };
        tracing::debug!(
            bind = bind.as_str(),
            host = hp.host.as_str(),
            port = hp.port,
            in_recovery,
            backend_pid,
            "connection opened"
        );
        Ok(Opened { client, task, info })
    }
}

/// Drives a connection until it closes; errors are logged, never printed.
async fn drive<S, T>(conn: tokio_postgres::Connection<S, T>, bind: Bind)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = conn.await {
        tracing::debug!(bind = bind.as_str(), error = %e, "connection closed with an error");
    }
}

/// The `tokio_postgres::Config` for one host of `uri`, with the pool's transport settings.
fn host_config(
    uri: &DatabaseUri,
    hp: &HostPort,
    settings: &Settings,
    timeout: Duration,
    through_pooler: bool,
) -> tokio_postgres::Config {
    let pool = &settings.pool;
    let mut config = uri.with_hosts(vec![hp.clone()]).to_pg_config();
    config.connect_timeout(timeout);
    if !hp.host.starts_with('/') {
        config.tcp_user_timeout(pool.tcp_user_timeout);
        if uri.param("keepalives").is_none() {
            config.keepalives(true);
        }
        // tcp_user_timeout only bounds data the peer has not acknowledged. A connection that
        // waits for a reply sends nothing, so without probes a black-holed server goes unnoticed
        // for the kernel's 2 h keepalive idle. Probe after half the user timeout: then a dead
        // peer is noticed within about 1.5 x tcp_user_timeout, also mid-query.
        if uri.param("keepalives_idle").is_none() {
            let idle =
                (pool.tcp_user_timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
            config.keepalives_idle(idle);
        }
        config.keepalives_interval(Duration::from_secs(1));
    }
    // Roles are checked by the setup query itself: no extra `SHOW transaction_read_only`.
    config.target_session_attrs(TargetSessionAttrs::Any);
    if config.get_application_name().is_none() && !pool.application_name.is_empty() {
        config.application_name(pool.application_name.as_str());
    }
    // A transaction pooler refuses startup `options` (PgBouncer: 08P01) or drops them.
    if through_pooler {
        return config;
    }
    let startup = format!(
        "-c statement_timeout={}",
        pool.startup_statement_timeout.as_millis()
    );
    let options = match config.get_options() {
        // The URI's own options come last, so they win.
        Some(own) if !own.trim().is_empty() => format!("{startup} {own}"),
        _ => startup,
    };
    config.options(options.as_str());
    config
}

/// The one-round-trip session setup: reads the role, address and version, and sets the session
/// settings for that role in the same statement.
fn setup_sql(settings: &Settings, bind: Bind) -> String {
    let s = &settings.session;
    let millis = |in_recovery: bool| s.statement_timeout_for(in_recovery).as_millis();
    let mut sql = format!(
        "SELECT pg_is_in_recovery(), host(inet_server_addr()), \
         current_setting('server_version_num'), current_setting('server_version'), \
         pg_backend_pid(), \
         set_config('statement_timeout', CASE WHEN pg_is_in_recovery() THEN '{}' ELSE '{}' END, false)",
        millis(true),
        millis(false)
    );
    let workers = |in_recovery: bool| match s.parallel_workers_for(in_recovery) {
        Some(n) => format!("'{n}'"),
        None => "current_setting('max_parallel_workers_per_gather')".to_owned(),
    };
    if s.parallel_workers_for(true).is_some() || s.parallel_workers_for(false).is_some() {
        sql.push_str(&format!(
            ", set_config('max_parallel_workers_per_gather', CASE WHEN pg_is_in_recovery() \
             THEN {} ELSE {} END, false)",
            workers(true),
            workers(false)
        ));
    }
    if bind == Bind::Bulk {
        sql.push_str(", set_config('default_transaction_read_only', 'on', false)");
    }
    sql
}

/// The kind of a connect failure, for observers.
fn classify(e: &tokio_postgres::Error) -> ConnectFailure {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        return if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            ConnectFailure::Auth
        } else {
            ConnectFailure::Other
        };
    }
    let text = e.to_string();
    if text.starts_with("error performing TLS handshake") {
        ConnectFailure::Tls
    } else if text.starts_with("timeout waiting for server") {
        ConnectFailure::Timeout
    } else if text.starts_with("error connecting to server")
        || text.starts_with("error communicating with the server")
        || text.starts_with("connection closed")
    {
        ConnectFailure::Refused
    } else if text.starts_with("authentication error") {
        ConnectFailure::Auth
    } else {
        ConnectFailure::Other
    }
}

/// The error with its source chain (tokio-postgres hides the cause in `source()`).
fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Opens one set-up connection outside any pool (hosts tried in order, TLS per `sslmode`,
/// session setup for `bind`). The connection task is spawned on the current runtime.
pub async fn connect_one(
    uri: &DatabaseUri,
    settings: &Settings,
    bind: Bind,
) -> Result<(Client, ConnInfo), PoolError> {
    let connector = Connector::new(uri, settings, bind, None)?;
    let opened = connector.open().await?;
    Ok((opened.client, opened.info))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Settings {
        let get = |k: &str| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        };
        Settings::load(None, &get).expect("settings")
    }

    #[test]
    fn setup_sql_sets_the_role_specific_timeouts_in_one_select() {
        let s = settings(&[
            ("DATABASE_STATEMENT_TIMEOUT_MS", "1000"),
            ("DATABASE_STATEMENT_TIMEOUT_REPLICA_MS", "2000"),
        ]);
        let sql = setup_sql(&s, Bind::Default);
        assert!(sql.starts_with("SELECT "), "{sql}");
        assert!(!sql.contains(';'), "one statement: {sql}");
        assert!(
            sql.contains("CASE WHEN pg_is_in_recovery() THEN '2000' ELSE '1000' END"),
            "{sql}"
        );
        assert!(!sql.contains("max_parallel_workers_per_gather"), "{sql}");
        assert!(!sql.contains("default_transaction_read_only"), "{sql}");
        let bulk = setup_sql(&s, Bind::Bulk);
        assert!(
            bulk.contains("set_config('default_transaction_read_only', 'on', false)"),
            "{bulk}"
        );
    }

    #[test]
    fn setup_sql_sets_parallel_workers_only_when_configured() {
        let s = settings(&[("DATABASE_MAX_PARALLEL_WORKERS_REPLICA", "4")]);
        let sql = setup_sql(&s, Bind::Bulk);
        assert!(
            sql.contains(
                "CASE WHEN pg_is_in_recovery() THEN '4' ELSE \
                 current_setting('max_parallel_workers_per_gather') END"
            ),
            "{sql}"
        );
        let s = settings(&[("DATABASE_DEFAULT_DISABLE_PARALLEL_QUERY", "true")]);
        let sql = setup_sql(&s, Bind::Default);
        assert!(
            sql.contains("CASE WHEN pg_is_in_recovery() THEN '0' ELSE '0' END"),
            "{sql}"
        );
    }

    #[test]
    fn through_a_transaction_pooler_no_startup_options_are_sent() {
        let uri = DatabaseUri::parse("postgresql://u:p@bouncer:6432/x", "TEST").expect("uri");
        let s = settings(&[("DATABASE_URI_TRANSACTION_POOLER", "true")]);
        let c = host_config(&uri, &uri.hosts()[0], &s, Duration::from_secs(5), true);
        assert_eq!(c.get_options(), None);
        assert_eq!(
            c.get_application_name(),
            Some(s.pool.application_name.as_str())
        );
        let with_options = DatabaseUri::parse(
            "postgresql://u:p@bouncer:6432/x?options=-c%20work_mem%3D64MB",
            "TEST",
        )
        .expect("uri");
        let err = Connector::new(&with_options, &s, Bind::Default, None)
            .err()
            .expect("options through a pooler are refused");
        let text = err.to_string();
        assert!(
            text.contains("`options`") && text.contains("DATABASE_URI_TRANSACTION_POOLER=true"),
            "{text}"
        );
    }

    #[test]
    fn host_config_adds_startup_options_and_keeps_the_uri_ones_last() {
        let uri = DatabaseUri::parse(
            "postgresql://u:p@db1:5433,db2/x?options=-c%20work_mem%3D64MB",
            "TEST",
        )
        .expect("uri");
        let s = settings(&[]);
        let c = host_config(&uri, &uri.hosts()[1], &s, Duration::from_secs(5), false);
        assert_eq!(
            c.get_options(),
            Some("-c statement_timeout=1200000 -c work_mem=64MB")
        );
        assert_eq!(c.get_hosts().len(), 1);
        assert_eq!(c.get_ports(), &[5432]);
        assert_eq!(
            c.get_application_name(),
            Some(s.pool.application_name.as_str())
        );
        assert_eq!(c.get_tcp_user_timeout(), Some(&Duration::from_millis(5000)));
        assert!(c.get_keepalives());
        assert_eq!(c.get_keepalives_idle(), Duration::from_millis(2500));
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(5)));
    }
}
