//! The `default` (primary) and `bulk` (read-only replica) connection pools of notify-db.
//!
//! Built on deadpool's managed pool and tokio-postgres. Every new physical connection gets its
//! session settings (statement timeout and parallel workers for its role, read-only for bulk) in
//! one round trip; checkouts of connections in steady use do no round trip (a closed or expired
//! connection is replaced instead; one idle for `ping_idle_after` is pinged first). See
//! [`Databases`].

#![warn(missing_docs)]

mod commit;
mod conn;
mod error;
mod holds;
mod pool;
mod reset;

// The connect path (notify-db-connect), re-exported for services that use only this crate.
pub use commit::Transaction;
pub use error::PoolError;
pub use notify_db_connect::ResetReason;
pub use notify_db_connect::{
    Bind, CheckoutToken, ConnInfo, ConnectError, ConnectFailure, HoldContext, PasswordError,
    PasswordFuture, PasswordProvider, PasswordProviderError, PoolObserver, REPLICA_LAG_SQL,
    connect_one, log_long_hold,
};
pub use pool::{Databases, DatabasesBuilder, Pool, PoolStatus, PooledConnection};
