//! The `default` (primary) and `bulk` (read-only replica) connection pools of notify-db.

mod observer;

pub use observer::{Bind, CheckoutToken, ConnInfo, ConnectFailure, PoolObserver};
