//! Typed pool errors. No variant ever carries a password; each message says what to check.

use std::path::PathBuf;
use std::time::Duration;

use crate::ConnectFailure;

use crate::observer::Bind;

/// Everything that can go wrong getting a connection from a pool or opening one.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// Every connection stayed checked out for the whole wait timeout.
    #[error(
        "pool exhausted: all {size} connections of the {bind} pool stayed checked out for \
         {timeout:?} ({waiting} callers waiting); check for slow queries or long transactions \
         holding connections, connections held across slow non-database work, and \
         SQLALCHEMY_POOL_SIZE"
    )]
    Exhausted {
        /// The pool.
        bind: Bind,
        /// Its maximum size.
        size: usize,
        /// How many `get()` calls were waiting when this one gave up.
        waiting: usize,
        /// The wait timeout that ran out.
        timeout: Duration,
    },
    /// Opening a connection to one host failed. When a pooler refused the startup `options`
    /// (08P01), the message names the setting that declares the pooler instead of the usual checks.
    #[error(
        "{bind} pool: could not connect to {host}:{port}: {cause}; {}",
        crate::pooler::connect_advice(*bind, cause)
    )]
    Connect {
        /// The pool.
        bind: Bind,
        /// The host tried.
        host: String,
        /// The port tried.
        port: u16,
        /// What went wrong (never a password).
        cause: String,
        /// The kind of failure.
        failure: ConnectFailure,
    },
    /// A connection limit refused the connection; the host is left alone for a growing
    /// back-off (`get()` fails at once meanwhile) instead of being retried in a tight loop.
    #[error(
        "{bind} pool: {host}:{port} refused a new connection: {limit} reached ({cause}); the \
         pool backs off from this host; check how many processes x SQLALCHEMY_POOL_SIZE x 2 \
         binds connect, raise the limit, or put a pooler in front"
    )]
    ConnectionLimit {
        /// The pool.
        bind: Bind,
        /// The host that refused.
        host: String,
        /// Its port.
        port: u16,
        /// Which limit, e.g. `max_connections (SQLSTATE 53300)`.
        limit: &'static str,
        /// The server's message.
        cause: String,
    },
    /// Every host of a multi-host URI failed; `errors` has one entry per host tried.
    #[error(
        "{bind} pool: no host could be used ({}); check that at least one of the listed servers \
         is running, reachable and in the expected role",
        errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    NoHost {
        /// The pool.
        bind: Bind,
        /// One error per host tried, in order.
        errors: Vec<PoolError>,
    },
    /// The server is older than PostgreSQL 15.
    #[error(
        "the server at {host}:{port} runs PostgreSQL {version}; notify-db needs PostgreSQL 15 \
         or later: upgrade the server or point the URI at a newer one"
    )]
    ServerTooOld {
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// Its `server_version`.
        version: String,
    },
    /// The per-connection session setup failed, or the server has the wrong role for the bind.
    #[error(
        "{bind} pool: session setup on {host}:{port} failed: {cause}; check the session \
         settings (DATABASE_STATEMENT_TIMEOUT_MS, DATABASE_MAX_PARALLEL_WORKERS...) and the \
         server's role (primary or replica)"
    )]
    Setup {
        /// The pool.
        bind: Bind,
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// What went wrong.
        cause: String,
    },
    /// Through a transaction pooler, the server does not enforce a session setting the bind
    /// needs (the pool cannot set it per connection there).
    #[error(
        "{bind} pool: the server behind {host}:{port} runs with {setting} = {actual:?}, but this \
         bind needs {setting} = {expected}. The URI goes through a transaction pooler \
         ({flag}=true), so the pool cannot set it per connection (a SET would stay on a server \
         connection other clients share): have the server enforce it, either with \
         `ALTER ROLE {role} SET {setting} = {expected}` (new sessions of that role get it), or \
         in PgBouncer's [databases] entry with connect_query='SET {setting} = {expected}'",
        flag = crate::pooler::pooler_variable(*bind)
    )]
    PoolerSettingNotEnforced {
        /// The pool.
        bind: Bind,
        /// The host the pool connects to (the pooler).
        host: String,
        /// Its port.
        port: u16,
        /// The session setting, e.g. `statement_timeout`.
        setting: &'static str,
        /// The value the bind needs.
        expected: String,
        /// The value the server has.
        actual: String,
        /// The role the pool logs in as (`current_user`).
        role: String,
    },
    /// A named prepared statement was asked for on a connection through a transaction pooler,
    /// where it would not outlive the transaction.
    #[error(
        "{bind} pool goes through a transaction pooler ({flag}=true): prepare_cached is refused, \
         because a named prepared statement stays on one server connection while the next \
         transaction may run on another (`prepared statement ... does not exist`); use \
         query_typed / execute_typed (unnamed, one round trip)"
    )]
    NamedStatementThroughPooler {
        /// The pool.
        bind: Bind,
        /// The setting that says the URI goes through a pooler.
        flag: &'static str,
    },
    /// A statement the pool sent on behalf of the caller failed.
    #[error("{bind} pool: {source}")]
    Query {
        /// The pool.
        bind: Bind,
        /// The server's or the client's error.
        #[source]
        source: std::sync::Arc<tokio_postgres::Error>,
    },
    /// The TLS settings (`sslmode`, `sslrootcert`) cannot be used.
    #[error(
        "{bind} pool: TLS configuration: {cause}{}; check sslmode and sslrootcert in the URI",
        path.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_default()
    )]
    Tls {
        /// The pool.
        bind: Bind,
        /// The certificate file at fault, if any.
        path: Option<PathBuf>,
        /// What is wrong.
        cause: String,
    },
    /// The connection failed after COMMIT (or a single autocommit statement) was sent and
    /// before the server answered: the transaction may or may not have committed. The
    /// connection is discarded.
    #[error(
        "{bind} pool: the connection to {host}:{port} (backend pid {backend_pid}) failed after \
         COMMIT was sent and before the server answered ({cause}): the transaction may or may \
         not have committed; check whether its writes are there before retrying"
    )]
    CommitOutcomeUnknown {
        /// The pool.
        bind: Bind,
        /// The host the connection went to.
        host: String,
        /// Its port.
        port: u16,
        /// The server process that ran the transaction (`pg_backend_pid()`).
        backend_pid: i32,
        /// How the connection failed.
        cause: String,
    },
    /// The password for a new connection could not be had (password file or provider).
    #[error(transparent)]
    Password {
        /// What went wrong, naming the bind and the file or provider.
        #[from]
        source: crate::password::PasswordError,
    },
    /// The pool was closed with [`crate::Pool::close`].
    #[error("the {bind} pool is closed")]
    Closed {
        /// The pool.
        bind: Bind,
    },
}

impl PoolError {
    /// The bind this error is about, when it is about one.
    pub fn bind(&self) -> Option<Bind> {
        match self {
            PoolError::Exhausted { bind, .. }
            | PoolError::Connect { bind, .. }
            | PoolError::ConnectionLimit { bind, .. }
            | PoolError::NoHost { bind, .. }
            | PoolError::Setup { bind, .. }
            | PoolError::PoolerSettingNotEnforced { bind, .. }
            | PoolError::NamedStatementThroughPooler { bind, .. }
            | PoolError::Query { bind, .. }
            | PoolError::Tls { bind, .. }
            | PoolError::CommitOutcomeUnknown { bind, .. }
            | PoolError::Closed { bind } => Some(*bind),
            PoolError::Password { source } => Some(source.bind()),
            PoolError::ServerTooOld { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_to_check() {
        let old = PoolError::ServerTooOld {
            host: "db1".into(),
            port: 5433,
            version: "14.9".into(),
        };
        let text = old.to_string();
        assert!(
            text.contains("db1:5433") && text.contains("14.9") && text.contains("15"),
            "{text}"
        );
        let exhausted = PoolError::Exhausted {
            bind: Bind::Bulk,
            size: 5,
            waiting: 3,
            timeout: Duration::from_secs(30),
        };
        let text = exhausted.to_string();
        assert!(
            text.contains("pool exhausted")
                && text.contains("bulk")
                && text.contains("all 5 connections")
                && text.contains("3 callers waiting")
                && text.contains("30s"),
            "{text}"
        );
        let refused = PoolError::Connect {
            bind: Bind::Default,
            host: "10.0.0.9".into(),
            port: 5432,
            cause: "error connecting to server: Connection refused (os error 111)".into(),
            failure: ConnectFailure::Refused,
        };
        let text = refused.to_string();
        assert!(
            text.contains("10.0.0.9:5432") && text.contains("connection refused"),
            "{text}"
        );
        let none = PoolError::NoHost {
            bind: Bind::Bulk,
            errors: vec![refused.clone(), refused],
        };
        assert_eq!(none.bind(), Some(Bind::Bulk));
        assert_eq!(none.to_string().matches("10.0.0.9:5432").count(), 2);
        assert_eq!(old.bind(), None);
    }

    #[test]
    fn a_pooler_refusing_the_startup_options_names_the_setting_per_bind() {
        let refused = |bind| {
            PoolError::Connect {
                bind,
                host: "pgbouncer".into(),
                port: 6432,
                cause: "unsupported startup parameter: options (SQLSTATE 08P01)".into(),
                failure: ConnectFailure::Other,
            }
            .to_string()
        };
        let text = refused(Bind::Default);
        assert!(
            text.contains("DATABASE_URI_TRANSACTION_POOLER=true")
                && text.contains("\"Behind PgBouncer\"")
                && !text.contains("pg_hba.conf"),
            "{text}"
        );
        assert!(refused(Bind::Bulk).contains("DATABASE_URI_BULK_TRANSACTION_POOLER=true"));
    }
}
