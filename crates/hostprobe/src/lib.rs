//! What this machine has for the test harness: PostgreSQL server binaries (installed or
//! fetched), the `prometheus` binary and the user servers run as. Standard library only, so
//! that `cargo xtask` can check its prerequisites before anything else is compiled; the
//! harness (`notify-db-testdb`) re-exports these and wraps their errors.

#![warn(missing_docs)]

mod bin;
pub mod majors;
mod user;

use std::path::PathBuf;

pub use bin::{MIN_MAJOR, check_dir, find_bin_dir, server_major, system_dir};
pub use user::{DEFAULT_PG_USER, ENV_PG_USER, is_root, server_user, server_user_name};

/// Environment variable naming the `prometheus` binary (default: `PATH`, then `/usr/bin`).
pub const ENV_PROMETHEUS: &str = "PROMETHEUS";

/// Finds the `prometheus` server binary: `$PROMETHEUS`, then `PATH`, then `/usr/bin`. The
/// error says where it looked.
pub fn find_prometheus() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(ENV_PROMETHEUS).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{ENV_PROMETHEUS}={} does not exist", p.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(std::iter::once(PathBuf::from("/usr/bin")))
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
        .ok_or_else(|| "PATH and /usr/bin".into())
}
