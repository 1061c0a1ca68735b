//! Where the servers of a test cluster listen, what they are called, and how they stop.

use std::net::Ipv4Addr;

/// Address the primary listens on.
pub const PRIMARY_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// Address the (first) replica listens on (differs from the primary's so `inet_server_addr()`
/// tells them apart); replica `n` (from 0) listens on 127.0.0.(2 + n).
pub const REPLICA_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Most replicas a cluster may have (their addresses stay within 127.0.0.2 to 127.0.0.9).
pub const MAX_REPLICAS: usize = 8;

/// The address of replica `n` (from 0).
pub(crate) fn replica_addr(n: usize) -> Ipv4Addr {
    let [a, b, c, d] = REPLICA_ADDR.octets();
    Ipv4Addr::new(a, b, c, d + n as u8)
}

/// The directory and file name stem of replica `n` (from 0): `replica`, `replica2`, ...
pub(crate) fn replica_name(n: usize) -> String {
    if n == 0 {
        "replica".to_owned()
    } else {
        format!("replica{}", n + 1)
    }
}
/// Superuser the harness creates in every cluster.
pub const SUPERUSER: &str = "postgres";

/// How `pg_ctl stop` shuts a server down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Wait for clients to disconnect.
    Smart,
    /// Disconnect clients, shut down cleanly.
    Fast,
    /// Abort without a clean shutdown (crash recovery on next start).
    Immediate,
}

impl StopMode {
    pub(crate) fn arg(self) -> &'static str {
        match self {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}
