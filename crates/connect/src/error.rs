//! Typed connect errors. No variant ever carries a password; each message says what to check.

use std::path::PathBuf;

use notify_db_config::{VAR_URI_BULK_POOLER, VAR_URI_POOLER};

use crate::ConnectFailure;

use crate::observer::Bind;

/// Everything that can go wrong opening a set-up connection (for a pool's bind or for
/// [`crate::connect_one`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Opening a connection to one host failed. When a pooler refused the startup `options`
    /// (08P01), the message names the setting that declares the pooler instead of the usual checks.
    #[error(
        "{bind} pool: could not connect to {host}:{port}: {cause}; {}",
        connect_advice(*bind, cause)
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
        errors: Vec<ConnectError>,
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
        flag = pooler_variable(*bind)
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
    /// The password for a new connection could not be had (password file or provider).
    #[error(transparent)]
    Password {
        /// What went wrong, naming the bind and the file or provider.
        #[from]
        source: crate::password::PasswordError,
    },
}

impl ConnectError {
    /// The bind this error is about, when it is about one.
    pub fn bind(&self) -> Option<Bind> {
        match self {
            ConnectError::Connect { bind, .. }
            | ConnectError::ConnectionLimit { bind, .. }
            | ConnectError::NoHost { bind, .. }
            | ConnectError::Setup { bind, .. }
            | ConnectError::PoolerSettingNotEnforced { bind, .. }
            | ConnectError::Tls { bind, .. } => Some(*bind),
            ConnectError::Password { source } => Some(source.bind()),
            ConnectError::ServerTooOld { .. } => None,
        }
    }
}

/// The setting that says `bind` goes through a pooler.
pub fn pooler_variable(bind: Bind) -> &'static str {
    match bind {
        Bind::Default => VAR_URI_POOLER,
        Bind::Bulk => VAR_URI_BULK_POOLER,
    }
}

/// What to check when the database named at the end of a URI does not exist where it leads.
pub const MISSING_DATABASE_ADVICE: &str = "check the database name at the end of the URI: it \
     must exist on the server it leads to (on a replica, once the primary's CREATE DATABASE has \
     been replayed; behind PgBouncer, in the [databases] entry for that name)";

/// Whether a failed connect's `cause` says the URI's database does not exist: PostgreSQL answers
/// SQLSTATE 3D000, and PgBouncer relays a server's refusal with the same words as 08P01.
pub fn is_missing_database(cause: &str) -> bool {
    cause.contains("database \"") && cause.contains("\" does not exist")
}

/// What to check after a failed connect of `bind` whose server answered `cause`. A pooler that
/// refuses the startup `options` (PgBouncer's default: `unsupported startup parameter: options`,
/// SQLSTATE 08P01) is a pooler nobody declared: the fix is the setting, not the server.
fn connect_advice(bind: Bind, cause: &str) -> String {
    if cause.contains("unsupported startup parameter") && cause.contains("08P01") {
        format!(
            "the server is a connection pooler (PgBouncer?) that refuses the startup options the \
             pool sends to a direct server: if this URI goes through a transaction pooler, set \
             {}=true, and have the server enforce the session settings (docs/operations.md, \
             section \"Behind PgBouncer\")",
            pooler_variable(bind)
        )
    } else if is_missing_database(cause) {
        MISSING_DATABASE_ADVICE.to_owned()
    } else {
        "check that the server is running and accepts TCP connections on that address \
         (connection refused), the user name and password, pg_hba.conf, and sslmode"
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_to_check() {
        let old = ConnectError::ServerTooOld {
            host: "db1".into(),
            port: 5433,
            version: "14.9".into(),
        };
        let text = old.to_string();
        assert!(
            text.contains("db1:5433") && text.contains("14.9") && text.contains("15"),
            "{text}"
        );
        let refused = ConnectError::Connect {
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
        let none = ConnectError::NoHost {
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
            ConnectError::Connect {
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

    #[test]
    fn a_missing_database_is_told_from_an_unreachable_server() {
        let missing = |cause: &str| {
            ConnectError::Connect {
                bind: Bind::Bulk,
                host: "127.0.0.1".into(),
                port: 6432,
                cause: cause.into(),
                failure: ConnectFailure::Other,
            }
            .to_string()
        };
        for cause in [
            "database \"notification_api\" does not exist (SQLSTATE 3D000)",
            "database \"notification_api\" does not exist (SQLSTATE 08P01)",
        ] {
            let text = missing(cause);
            assert!(
                text.contains(MISSING_DATABASE_ADVICE) && !text.contains("connection refused"),
                "{text}"
            );
        }
        let other = missing("role \"x\" does not exist (SQLSTATE 28000)");
        assert!(!other.contains(MISSING_DATABASE_ADVICE), "{other}");
    }
}
