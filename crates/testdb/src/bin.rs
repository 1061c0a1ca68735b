//! Locating PostgreSQL server binaries (>= 15).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// Oldest server major version the harness accepts.
pub const MIN_MAJOR: u32 = 15;

/// Finds the directory holding `initdb`, `pg_ctl`, `postgres` and `pg_basebackup` of a server >= 15.
///
/// Search order: `PG_BIN`, `pg_config --bindir`, `PATH`, then `/usr/lib/postgresql/<version>/bin`
/// (newest first).
pub fn find_bin_dir() -> Result<PathBuf, Error> {
    let mut tried = Vec::new();
    if let Some(dir) = std::env::var_os("PG_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        // An explicit PG_BIN that is unusable is an error, not a reason to look elsewhere.
        return match check_dir(&dir) {
            Ok(()) => Ok(dir),
            Err(why) => Err(Error::NoServer {
                searched: format!("PG_BIN={}: {why}", dir.display()),
            }),
        };
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !dir.is_empty() {
            candidates.push(PathBuf::from(dir));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() {
                // Resolve symlinks so that sibling binaries are found next to the real initdb.
                let real = std::fs::canonicalize(dir.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .unwrap_or(dir);
                candidates.push(real);
            }
        }
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    debian.sort_by_key(|b| std::cmp::Reverse(b.0));
    candidates.extend(debian.into_iter().map(|(_, p)| p));
    for dir in candidates {
        match check_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(why) => tried.push(format!("{}: {why}", dir.display())),
        }
    }
    Err(Error::NoServer {
        searched: if tried.is_empty() {
            "PG_BIN unset, no pg_config, no initdb on PATH, nothing under /usr/lib/postgresql"
                .into()
        } else {
            tried.join("; ")
        },
    })
}

fn check_dir(dir: &Path) -> Result<(), String> {
    for tool in ["initdb", "pg_ctl", "postgres", "pg_basebackup"] {
        if !dir.join(tool).is_file() {
            return Err(format!("no {tool}"));
        }
    }
    let major = server_major(dir)?;
    if major < MIN_MAJOR {
        return Err(format!("server version {major} is older than {MIN_MAJOR}"));
    }
    Ok(())
}

/// Major version of the `postgres` binary in `dir`, from `postgres --version`.
pub fn server_major(dir: &Path) -> Result<u32, String> {
    let out = Command::new(dir.join("postgres"))
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run postgres --version: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
    text.split_whitespace()
        .find_map(|w| w.split('.').next()?.parse::<u32>().ok())
        .ok_or_else(|| format!("cannot read a version from {:?}", text.trim()))
}
