//! Locating PostgreSQL server binaries (>= 15), of one chosen major or the newest found.

use std::path::PathBuf;

pub use notify_db_hostprobe::server_major;
use notify_db_hostprobe::{check_dir, system_dir};

use crate::Error;
use crate::majors::fetch_major;

/// Finds the directory holding `initdb`, `pg_ctl`, `postgres` and `pg_basebackup` of a server
/// >= 15 ([`notify_db_hostprobe::find_bin_dir`] says where it looks).
pub fn find_bin_dir() -> Result<PathBuf, Error> {
    notify_db_hostprobe::find_bin_dir().map_err(|searched| Error::NoServer { searched })
}

/// The bin directory of exactly `major` (any major with a pinned build, 14 included, for the
/// tests that prove an old server is refused): the system's installation, else the fetched
/// copy, fetched now when missing.
pub fn bin_dir_for_major(major: u32) -> Result<PathBuf, Error> {
    let system = system_dir(major);
    if check_dir(&system, major, Some(major)).is_ok() {
        return Ok(system);
    }
    let dir = fetch_major(major)?;
    check_dir(&dir, major, Some(major))
        .map(|()| dir.clone())
        .map_err(|why| Error::NoServer {
            searched: format!("{}: {why}", dir.display()),
        })
}
