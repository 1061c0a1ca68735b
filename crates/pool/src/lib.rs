//! The `default` (primary) and `bulk` (read-only replica) connection pools of notify-db.
//!
//! Built on deadpool's managed pool and tokio-postgres. Every new physical connection gets its
//! session settings (statement timeout and parallel workers for its role, read-only for bulk) in
//! one round trip; checkouts of connections in steady use do no round trip (a closed or expired
//! connection is replaced instead; one idle for `ping_idle_after` is pinged first). See
//! [`Databases`].

#![warn(missing_docs)]

mod connect;
mod error;
mod lag;
mod limit;
mod observer;
mod pool;
mod pooler;
mod session;
mod tls;

pub use connect::connect_one;
pub use error::PoolError;
pub use notify_db_connect::{ConnectFailure, REPLICA_LAG_SQL};
pub use observer::{Bind, CheckoutToken, ConnInfo, PoolObserver};
pub use pool::{Databases, DatabasesBuilder, Pool, PoolStatus, PooledConnection};
