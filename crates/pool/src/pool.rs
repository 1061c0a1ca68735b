//! The pools over the `Manager` of `conn.rs`, and the checkout wrapper that reports to the
//! observer and hands the connection to the reset on return.

use std::mem::ManuallyDrop;
use std::net::IpAddr;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool::Runtime;
use deadpool::managed::{self, QueueMode, Timeouts};
use notify_db_config::{DatabaseUri, Settings};
use tokio_postgres::{Client, Statement};

use notify_db_connect::{Bind, ConnInfo, ConnectError, Connector, PasswordProvider, PoolObserver};

use crate::error::PoolError;

use crate::conn::{Conn, Manager};
use crate::holds;
use crate::reset;

/// Counts of a pool, like deadpool's `Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStatus {
    /// Maximum number of connections.
    pub max_size: usize,
    /// Connections open now (idle or checked out).
    pub size: usize,
    /// Idle connections ready to hand out.
    pub available: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

/// A pool of set-up connections to one bind. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: managed::Pool<Manager>,
    bind: Bind,
    size: usize,
    wait: Duration,
    /// The same timeouts with a zero wait: deadpool then only tries the semaphore.
    no_wait: Timeouts,
    observer: Option<Arc<dyn PoolObserver>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("bind", &self.bind)
            .field("status", &self.status())
            .finish()
    }
}

impl Pool {
    /// Builds a pool for `uri` (no connection is opened yet).
    pub(crate) fn new(
        uri: &DatabaseUri,
        settings: &Settings,
        bind: Bind,
        observer: Option<Arc<dyn PoolObserver>>,
        password: Option<Arc<dyn PasswordProvider>>,
    ) -> Result<Pool, PoolError> {
        let p = &settings.pool;
        let size = p.size.max(1);
        let connector = Connector::builder(uri, settings, bind)
            .observer(observer.clone())
            .password_provider(password)
            .lag_routing(true)
            .build()?;
        let manager = Manager {
            connector,
            through_pooler: notify_db_connect::is_pooled(settings, bind),
            max_lifetime: p.max_lifetime,
            ping_idle_after: p.ping_idle_after,
            ping_timeout: p.connect_timeout,
            holds: Arc::default(),
        };
        let inner = managed::Pool::builder(manager)
            .max_size(size)
            .queue_mode(QueueMode::Lifo)
            .timeouts(Timeouts {
                wait: Some(p.wait_timeout),
                // Connect has its own per-host timeout; recycling's only I/O, the idle ping,
                // has its own (connect_timeout), so that the reason is logged.
                create: None,
                recycle: None,
            })
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| ConnectError::Setup {
                bind,
                host: String::new(),
                port: 0,
                cause: format!("cannot build the pool: {e}"),
            })?;
        if let Some(o) = &observer {
            o.pool_created(bind, size);
        }
        spawn_reaper(inner.weak(), p.max_lifetime);
        let holds = Arc::clone(&inner.manager().holds);
        let weak = inner.weak();
        holds::spawn_sampler(
            move || weak.upgrade().is_some_and(|p| !p.is_closed()),
            holds,
            bind,
            p.long_hold_warning,
            observer.clone(),
        );
        Ok(Pool {
            inner,
            bind,
            size,
            wait: p.wait_timeout,
            no_wait: Timeouts {
                wait: Some(Duration::ZERO),
                create: None,
                recycle: None,
            },
            observer,
        })
    }

    /// Checks out a connection: an idle one (closed or expired ones are replaced), else a new
    /// one, else waits up to the wait timeout and fails with [`PoolError::Exhausted`].
    pub async fn get(&self) -> Result<PooledConnection, PoolError> {
        let Some(observer) = &self.observer else {
            return match self.checkout().await {
                Ok(obj) => {
                    obj.hold.start(Instant::now(), None);
                    Ok(PooledConnection {
                        obj: ManuallyDrop::new(obj),
                        checked_out_at: None,
                    })
                }
                Err(e) => Err(self.map_err(e, Duration::ZERO)),
            };
        };
        let started = Instant::now();
        match self.checkout().await {
            Ok(obj) => {
                let now = Instant::now();
                obj.hold
                    .start(now, observer.checked_out(&obj.info, now - started));
                Ok(PooledConnection {
                    obj: ManuallyDrop::new(obj),
                    checked_out_at: Some(now),
                })
            }
            Err(e) => Err(self.map_err(e, started.elapsed())),
        }
    }

    /// deadpool's checkout, trying first without waiting: a free connection is then handed out
    /// without building a timer or reading the clock; only a full pool waits (with the timeout).
    async fn checkout(&self) -> Result<managed::Object<Manager>, managed::PoolError<PoolError>> {
        match self.inner.timeout_get(&self.no_wait).await {
            Err(managed::PoolError::Timeout(managed::TimeoutType::Wait)) => self.inner.get().await,
            other => other,
        }
    }

    fn map_err(&self, e: managed::PoolError<PoolError>, waited: Duration) -> PoolError {
        match e {
            managed::PoolError::Backend(e) => e,
            managed::PoolError::Timeout(_) => {
                if let Some(o) = &self.observer {
                    o.wait_timed_out(self.bind, waited);
                }
                PoolError::Exhausted {
                    bind: self.bind,
                    size: self.size,
                    // The callers still waiting, plus this one (no longer counted by deadpool).
                    waiting: self.inner.status().waiting + 1,
                    timeout: self.wait,
                }
            }
            managed::PoolError::Closed => PoolError::Closed { bind: self.bind },
            other => PoolError::Connect(ConnectError::Setup {
                bind: self.bind,
                host: String::new(),
                port: 0,
                cause: other.to_string(),
            }),
        }
    }

    /// Which bind this pool serves.
    pub fn bind(&self) -> Bind {
        self.bind
    }

    /// Current counts.
    pub fn status(&self) -> PoolStatus {
        let s = self.inner.status();
        PoolStatus {
            max_size: s.max_size,
            size: s.size,
            available: s.available,
            waiting: s.waiting,
        }
    }

    /// Closes the pool: idle connections are closed now, checked-out ones when returned, and
    /// every later `get()` fails with [`PoolError::Closed`].
    pub fn close(&self) {
        self.inner.close();
    }
}

/// Closes idle connections past their lifetime, so an idle pool does not keep them forever.
fn spawn_reaper(pool: managed::WeakPool<Manager>, lifetime: Duration) {
    let period = (lifetime / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(pool) = pool.upgrade() else { return };
            if pool.is_closed() {
                return;
            }
            let now = Instant::now();
            // Removed connections are dropped here: their Drop closes them and tells the observer.
            drop(pool.retain(|conn, _| now < conn.expires_at && !conn.client.is_closed()));
        }
    });
}

/// A checked-out connection: use it as a `tokio_postgres::Client`. Dropping it returns it to
/// the pool (also on cancellation or panic).
pub struct PooledConnection {
    /// Taken only in `Drop` (returned, reset or closed there).
    obj: ManuallyDrop<managed::Object<Manager>>,
    checked_out_at: Option<Instant>,
}

impl PooledConnection {
    /// `inet_server_addr()` of the server; `None` over a Unix socket.
    pub fn server_addr(&self) -> Option<IpAddr> {
        self.obj.info.server_addr
    }

    /// `pg_is_in_recovery()` when the connection was opened: true on a replica.
    pub fn in_recovery(&self) -> bool {
        self.obj.info.in_recovery
    }

    /// The pool this connection belongs to.
    pub fn bind(&self) -> Bind {
        self.obj.info.bind
    }

    /// What is known about the physical connection.
    pub fn info(&self) -> &ConnInfo {
        &self.obj.info
    }

    /// Prepares `sql` once per physical connection and returns the cached statement after that
    /// (no round trip on a hit). Statements live as long as the connection.
    ///
    /// Refused ([`PoolError::NamedStatementThroughPooler`]) when the bind goes through a
    /// transaction pooler: a named statement stays on one server connection, and the next
    /// transaction may run on another. There, use `query_typed` / `execute_typed` (unnamed, one
    /// round trip), which work the same with or without a pooler.
    pub async fn prepare_cached(&self, sql: &str) -> Result<Statement, PoolError> {
        if let Some(stmt) = self.cached(sql) {
            return Ok(stmt);
        }
        let bind = self.obj.info.bind;
        if self.obj.through_pooler {
            return Err(PoolError::NamedStatementThroughPooler {
                bind,
                flag: notify_db_connect::pooler_variable(bind),
            });
        }
        let stmt = self
            .obj
            .client
            .prepare(sql)
            .await
            .map_err(|e| PoolError::Query {
                bind,
                source: Arc::new(e),
            })?;
        if let Ok(mut map) = self.obj.statements.lock() {
            map.insert(sql.into(), stmt.clone());
        }
        Ok(stmt)
    }

    fn cached(&self, sql: &str) -> Option<Statement> {
        self.obj.statements.lock().ok()?.get(sql).cloned()
    }

    /// The physical connection.
    pub(crate) fn conn(&self) -> &Conn {
        &self.obj
    }

    /// The physical connection, mutably (its fields borrow apart).
    pub(crate) fn conn_mut(&mut self) -> &mut Conn {
        &mut self.obj
    }
}

impl std::fmt::Debug for PooledConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledConnection")
            .field("info", &self.obj.info)
            .finish()
    }
}

impl Deref for PooledConnection {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.obj.client
    }
}

impl DerefMut for PooledConnection {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.obj.client
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        let token = self.obj.hold.end();
        if let (Some(at), Some(o)) = (self.checked_out_at, &self.obj.observer) {
            o.returned(&self.obj.info, at.elapsed(), token);
        }
        // SAFETY: `obj` is taken exactly once, here, and never used after.
        let obj = unsafe { ManuallyDrop::take(&mut self.obj) };
        reset::on_return(obj);
    }
}

/// The `default` and `bulk` pools of a process. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Databases {
    default: Pool,
    bulk: Pool,
}

impl Databases {
    /// Builds both pools without an observer and opens one connection on each, so a wrong URI,
    /// password or server version fails here rather than on the first request.
    pub async fn connect(settings: &Settings) -> Result<Databases, PoolError> {
        Databases::builder(settings).build().await
    }

    /// A builder, to add an observer (e.g. metrics).
    pub fn builder(settings: &Settings) -> DatabasesBuilder {
        DatabasesBuilder {
            settings: settings.clone(),
            observer: None,
            warm: true,
            password: None,
        }
    }

    /// The primary, for transactional queries.
    pub fn default(&self) -> &Pool {
        &self.default
    }

    /// The read-only replica(s), for analytics and reporting (the primary, read-only, when no
    /// replica is configured).
    pub fn bulk(&self) -> &Pool {
        &self.bulk
    }
}

/// Builds [`Databases`].
pub struct DatabasesBuilder {
    settings: Settings,
    observer: Option<Arc<dyn PoolObserver>>,
    warm: bool,
    password: Option<Arc<dyn PasswordProvider>>,
}

impl DatabasesBuilder {
    /// Reports pool events to `observer`.
    pub fn observer(mut self, observer: Arc<dyn PoolObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Logs every new connection in with the password `provider` gives for its bind (e.g. a
    /// short-lived AWS RDS IAM token), instead of a password file or the URI's password. Called
    /// once per new connection, within its connect timeout, never on checkout.
    pub fn password_provider(mut self, provider: Arc<dyn PasswordProvider>) -> Self {
        self.password = Some(provider);
        self
    }

    /// Whether `build` opens one connection per pool to check the settings (default true).
    pub fn check_on_build(mut self, yes: bool) -> Self {
        self.warm = yes;
        self
    }

    /// Builds both pools (and, unless turned off, opens one connection on each).
    pub async fn build(self) -> Result<Databases, PoolError> {
        let s = &self.settings;
        let (observer, password) = (self.observer, self.password);
        let default = Pool::new(
            &s.primary,
            s,
            Bind::Default,
            observer.clone(),
            password.clone(),
        )?;
        let bulk = Pool::new(&s.bulk, s, Bind::Bulk, observer, password)?;
        if self.warm {
            drop(default.get().await?);
            drop(bulk.get().await?);
        }
        Ok(Databases { default, bulk })
    }
}
