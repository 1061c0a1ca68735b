//! What the connector knows of one server: a configured host with its back-offs, and the
//! facts its setup (or, through a pooler, check) query read.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use notify_db_config::HostPort;

use crate::limit::LimitBackoff;

/// One configured host and its back-off state.
pub(crate) struct Host {
    pub(crate) hp: HostPort,
    pub(crate) config: tokio_postgres::Config,
    down_until: Mutex<Option<Instant>>,
    pub(crate) limit: LimitBackoff,
}

impl Host {
    /// `hp` with its connect config, in no back-off.
    pub(crate) fn new(hp: HostPort, config: tokio_postgres::Config) -> Host {
        Host {
            hp,
            config,
            down_until: Mutex::new(None),
            limit: LimitBackoff::default(),
        }
    }

    /// Whether the host is in its connect back-off at `now`.
    pub(crate) fn backed_off(&self, now: Instant) -> bool {
        match self.down_until.lock() {
            Ok(guard) => guard.is_some_and(|until| now < until),
            Err(_) => false,
        }
    }

    /// Starts (`Some`) or ends (`None`) its connect back-off.
    pub(crate) fn mark(&self, until: Option<Instant>) {
        if let Ok(mut guard) = self.down_until.lock() {
            *guard = until;
        }
    }
}

/// What the setup (or, through a pooler, the check) query read from the server.
pub(crate) struct ServerFacts {
    pub(crate) in_recovery: bool,
    pub(crate) server_addr: Option<IpAddr>,
    pub(crate) version_num: i64,
    pub(crate) version: String,
    pub(crate) backend_pid: i32,
    /// `transaction_read_only` or `default_transaction_read_only` was on (direct setup only).
    pub(crate) read_only: bool,
}
