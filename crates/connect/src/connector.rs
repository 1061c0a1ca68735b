//! Opening one set-up physical connection: host choice with back-off, TLS, and the one-round-trip
//! session setup.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use notify_db_config::{DatabaseUri, Settings};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::{ConnectFailure, Driver, check_server_version, classify, error_text};

use crate::error::ConnectError;
use crate::host::{Host, ServerFacts};
use crate::lag::{LagRouting, Route};
use crate::limit::limit_of;
use crate::observer::{Bind, ConnInfo, PoolObserver};
use crate::password::PasswordSource;
use crate::pooler::{self, Expected};
use crate::session::{host_config, setup_sql};
use crate::tap::ConnState;
use crate::tls::Tls;
use crate::transport::{self, Canceller, connect_tapped};

/// Process-wide id of physical connections.
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// Which server role a bind accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Any,
    Primary,
    Replica,
}

/// Opens set-up connections for one bind.
pub struct Connector {
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
    /// Told of every connect failure (and, for lag routing, of replica lag).
    pub observer: Option<Arc<dyn PoolObserver>>,
    /// Bulk with several replicas and a lag limit: which hosts lag (given at build, see
    /// [`Connector::builder`]).
    pub lag: Option<Arc<LagRouting>>,
    /// With `lag`: opens bulk (read-only) sessions on the primary URI while every replica lags.
    pub(crate) fallback: Option<Box<Connector>>,
    /// Where the password of each new connection comes from (the URI's by default).
    pub(crate) password: PasswordSource,
}

/// A freshly opened, set-up connection.
pub struct Opened {
    /// The client.
    pub client: Client,
    /// The task driving the connection.
    pub task: JoinHandle<()>,
    /// What the connection is.
    pub info: ConnInfo,
    /// Which configured host (or the fallback primary) it was opened to.
    pub route: Route,
    /// What the tap on its byte stream knows: requests in flight, transaction status.
    pub state: Arc<ConnState>,
    /// Sends a CancelRequest to the same address with the same TLS.
    pub canceller: Canceller,
}

impl Connector {
    /// Prepares everything that does not change between connects: per-host configs, TLS,
    /// setup SQL.
    pub fn new(
        uri: &DatabaseUri,
        settings: &Settings,
        bind: Bind,
        observer: Option<Arc<dyn PoolObserver>>,
    ) -> Result<Connector, ConnectError> {
        Connector::with_pooler(
            uri,
            settings,
            bind,
            observer,
            pooler::is_pooled(settings, bind),
        )
    }

    /// [`Connector::new`] saying whether `uri` goes through a transaction pooler (the bulk
    /// bind's fallback to the primary URI takes the primary's flag).
    pub(crate) fn with_pooler(
        uri: &DatabaseUri,
        settings: &Settings,
        bind: Bind,
        observer: Option<Arc<dyn PoolObserver>>,
        through_pooler: bool,
    ) -> Result<Connector, ConnectError> {
        let tls = Tls::for_uri(uri).map_err(|e| ConnectError::Tls {
            bind,
            path: e.path,
            cause: e.cause,
        })?;
        let pool = &settings.pool;
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
            .map(|hp| {
                Host::new(
                    hp.clone(),
                    host_config(uri, hp, settings, timeout, through_pooler),
                )
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
            lag: None,
            fallback: None,
            password: PasswordSource::for_bind(settings, bind),
        })
    }

    /// Opens one set-up connection: healthy hosts first (round robin for bulk), hosts in
    /// back-off only as a last resort.
    pub async fn open(&self) -> Result<Opened, ConnectError> {
        if let (Some(lag), Some(fallback)) = (&self.lag, &self.fallback)
            && lag.on_fallback()
        {
            // Boxed: the fallback connector's future is as large as this one's.
            let mut opened = Box::pin(fallback.open()).await?;
            opened.route = Route::Fallback;
            return Ok(opened);
        }
        let n = self.hosts.len();
        let start = if self.rotate && n > 1 {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        } else {
            0
        };
        let now = Instant::now();
        // Replicas over the lag limit get no new connections.
        let lagging = |i: usize| self.lag.as_ref().is_some_and(|l| l.is_lagging(i));
        let order = (0..n).map(|i| (start + i) % n).filter(|&i| !lagging(i));
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
                Ok(mut opened) => {
                    host.mark(None);
                    host.limit.clear();
                    opened.route = Route::Host(i);
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
        Err(ConnectError::NoHost {
            bind: self.bind,
            errors,
        })
    }

    async fn open_host(&self, host: &Host) -> Result<Opened, (ConnectFailure, ConnectError)> {
        let hp = &host.hp;
        match tokio::time::timeout(self.timeout, self.open_host_inner(host)).await {
            Ok(result) => result,
            Err(_) => Err((
                ConnectFailure::Timeout,
                ConnectError::Connect {
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

    async fn open_host_inner(&self, host: &Host) -> Result<Opened, (ConnectFailure, ConnectError)> {
        let hp = &host.hp;
        let connect_err = |e: tokio_postgres::Error| {
            if let Some(limit) = limit_of(&e) {
                return (
                    ConnectFailure::Limit,
                    ConnectError::ConnectionLimit {
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
                ConnectError::Connect {
                    bind: self.bind,
                    host: hp.host.clone(),
                    port: hp.port,
                    cause: error_text(&e),
                    failure,
                },
            )
        };
        let bind = self.bind;
        // The only place a connect attempt gets its config: with the password of this moment.
        let config = self
            .password
            .config(&host.config, bind)
            .await
            .map_err(|e| (ConnectFailure::Auth, ConnectError::from(e)))?;
        let tapped = connect_tapped(&config, &self.tls, LogErrors { bind })
            .await
            .map_err(|e| match e {
                transport::ConnectError::Driver(e) => connect_err(e),
                transport::ConnectError::Socket(e) => {
                    let failure = if e.kind() == std::io::ErrorKind::TimedOut {
                        ConnectFailure::Timeout
                    } else {
                        ConnectFailure::Refused
                    };
                    (
                        failure,
                        ConnectError::Connect {
                            bind,
                            host: hp.host.clone(),
                            port: hp.port,
                            cause: format!("error connecting to server: {e}"),
                            failure,
                        },
                    )
                }
            })?;
        let client = tapped.client;
        // Dropping `client` on an error below ends the connection task.
        let setup_err = |cause: String| {
            (
                ConnectFailure::Setup,
                ConnectError::Setup {
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
                    read_only: row.get(5) == Some("t"),
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
            read_only,
        } = facts;
        if let Err(too_old) = check_server_version(version_num, &version) {
            return Err((
                ConnectFailure::TooOld,
                ConnectError::ServerTooOld {
                    host: hp.host.clone(),
                    port: hp.port,
                    version: too_old.version,
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
        if bind == Bind::Default && read_only && !in_recovery {
            // A primary turned read-only (a managed failover in progress, a DNS switch,
            // default_transaction_read_only on): writes would fail with 25006.
            return Err(setup_err(
                "the server is read-only (transaction_read_only or \
                 default_transaction_read_only is on) but the default bind needs to write"
                    .to_owned(),
            ));
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
        Ok(Opened {
            client,
            task: tapped.task,
            info,
            route: Route::Host(0),
            state: tapped.state,
            canceller: tapped.canceller,
        })
    }
}

/// Drives a connection until it closes; errors are logged, never printed.
struct LogErrors {
    bind: Bind,
}

impl Driver for LogErrors {
    fn drive<S, T>(self, conn: tokio_postgres::Connection<S, T>) -> JoinHandle<()>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let bind = self.bind;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(bind = bind.as_str(), error = %e, "connection closed with an error");
            }
        })
    }
}

/// Opens one set-up connection outside any pool (hosts tried in order, TLS per `sslmode`,
/// session setup for `bind`). The connection task is spawned on the current runtime.
pub async fn connect_one(
    uri: &DatabaseUri,
    settings: &Settings,
    bind: Bind,
) -> Result<(Client, ConnInfo), ConnectError> {
    let connector = Connector::new(uri, settings, bind, None)?;
    let opened = connector.open().await?;
    Ok((opened.client, opened.info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pooled_uri_with_startup_options_is_refused() {
        let vars = [("DATABASE_URI_TRANSACTION_POOLER", "true")];
        let get = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        };
        let s = Settings::load(None, &get).expect("settings");
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
}
