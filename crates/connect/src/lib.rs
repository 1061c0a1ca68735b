//! The one connect path of notify-db: every crate that opens a PostgreSQL connection (the pools,
//! the migration engine, the replica-lag sampler, doctor) goes through this crate.
//!
//! - [`Tls`]: the TLS connector per `sslmode` (`disable`, `prefer`, `require`, `verify-ca`,
//!   `verify-full`) and `sslrootcert`, with rustls.
//! - [`ConnectUri`]: a [`DatabaseUri`]'s `tokio_postgres::Config` and TLS connector.
//! - [`check_server_version`]: the oldest server notify-db supports
//!   ([`notify_db_config::MIN_SERVER_VERSION_NUM`]).
//! - [`ConnectFailure`], [`classify`], [`error_text`]: what kind of connect failure an error is,
//!   and its text with the driver's hidden causes.
//! - [`REPLICA_LAG_SQL`]: one definition of a server's replay lag; [`LagSampler`], the one
//!   sampler of it (lag routing's, and the metric's).
//! - [`Connector`]: opens set-up connections for one bind of the pools (host choice with
//!   back-off and connection-limit back-off, lag-aware bulk routing, the one-round-trip session
//!   setup, or through a transaction pooler the check that the server enforces it), and
//!   [`connect_one`], one such connection outside any pool (the lag sampler, doctor).
//!   Its errors are [`ConnectError`]s, observed through [`PoolObserver`].
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use notify_db_config::DatabaseUri;
//! use notify_db_connect::ConnectUri;
//! let uri = DatabaseUri::parse("postgresql://u@db/x?sslmode=verify-full", "SQLALCHEMY_DATABASE_URI")?;
//! let client = uri.tls()?.connect(&uri.to_pg_config()).await?;
//! client.simple_query("SELECT 1").await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod builder;
mod connector;
mod error;
mod failure;
mod host;
mod lag;
mod limit;
mod observer;
mod password;
mod pg_config;
mod pooler;
mod sampler;
mod server;
mod session;
mod tap;
mod tls;
mod transport;

pub use builder::ConnectorBuilder;
pub use connector::{Connector, Opened, connect_one};
pub use error::{ConnectError, MISSING_DATABASE_ADVICE, is_missing_database, pooler_variable};
pub use failure::{ConnectFailure, classify, error_text};
pub use lag::{LagRouting, Route};
pub use observer::{
    Bind, CheckoutToken, ConnInfo, HoldContext, PoolObserver, ResetReason, log_long_hold,
};
pub use password::{PasswordError, PasswordFuture, PasswordProvider, PasswordProviderError};
pub use pooler::is_pooled;
pub use sampler::LagSampler;
pub use server::{REPLICA_LAG_SQL, ServerTooOld, check_server_version};
pub use tap::{ConnState, Tap, TapTls, TxStatus};
pub use tls::{Driver, Tls, TlsError};
pub use transport::{Canceller, Socket};

use notify_db_config::DatabaseUri;

/// How to connect to a [`DatabaseUri`]: its driver config and its TLS connector.
pub trait ConnectUri {
    /// The TLS connector for the URI's `sslmode` and `sslrootcert` ([`Tls::Off`] for `disable`).
    fn tls(&self) -> Result<Tls, TlsError>;

    /// A `tokio_postgres::Config` with every host and port, credentials and honoured parameters.
    ///
    /// `verify-ca` and `verify-full` map to `SslMode::Require`: certificate and host-name checks
    /// are the job of the TLS connector ([`ConnectUri::tls`]).
    fn to_pg_config(&self) -> tokio_postgres::Config;
}

impl ConnectUri for DatabaseUri {
    fn tls(&self) -> Result<Tls, TlsError> {
        Tls::for_uri(self)
    }

    fn to_pg_config(&self) -> tokio_postgres::Config {
        pg_config::for_uri(self)
    }
}
