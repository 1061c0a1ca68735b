//! Locating PostgreSQL server binaries (>= 15), of one chosen major or the newest found.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::majors::{ENV_PG_MAJOR, SUPPORTED_MAJORS, fetched_bin_dir, requested_major};

/// Oldest server major version the harness accepts.
pub const MIN_MAJOR: u32 = 15;

/// Finds the directory holding `initdb`, `pg_ctl`, `postgres` and `pg_basebackup` of a server >= 15.
///
/// Search order: `PG_BIN`; else, when `NOTIFY_DB_PG_MAJOR` names a major, that major's system
/// installation (`/usr/lib/postgresql/<major>/bin`) or its fetched copy
/// ([`crate::majors::fetched_bin_dir`]; `cargo xtask test --pg <major>` fetches it); else
/// `pg_config --bindir`, `PATH`, then `/usr/lib/postgresql/<version>/bin` (newest first). The
/// error says what was searched.
pub fn find_bin_dir() -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    let wanted = requested_major()?;
    if let Some(dir) = std::env::var_os("PG_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        // An explicit PG_BIN that is unusable is an error, not a reason to look elsewhere.
        return match check_dir(&dir, MIN_MAJOR, wanted) {
            Ok(()) => Ok(dir),
            Err(why) => Err(format!("PG_BIN={}: {why}", dir.display())),
        };
    }
    if let Some(major) = wanted {
        if !SUPPORTED_MAJORS.contains(&major) {
            return Err(format!(
                "{ENV_PG_MAJOR}={major}: the harness runs PostgreSQL {}",
                SUPPORTED_MAJORS.map(|m| m.to_string()).join(", ")
            ));
        }
        let candidates = [Some(system_dir(major)), fetched_bin_dir(major)];
        for dir in candidates.into_iter().flatten() {
            match check_dir(&dir, major, Some(major)) {
                Ok(()) => return Ok(dir),
                Err(why) => tried.push(format!("{}: {why}", dir.display())),
            }
        }
        return Err(format!(
            "{ENV_PG_MAJOR}={major}: not installed, not fetched ({}); \
                 `cargo xtask test --pg {major}` fetches it",
            tried.join("; ")
        ));
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
        match check_dir(&dir, MIN_MAJOR, None) {
            Ok(()) => return Ok(dir),
            Err(why) => tried.push(format!("{}: {why}", dir.display())),
        }
    }
    Err(if tried.is_empty() {
        "PG_BIN unset, no pg_config, no initdb on PATH, nothing under /usr/lib/postgresql".into()
    } else {
        tried.join("; ")
    })
}

/// Where Debian/Ubuntu install `major`.
pub fn system_dir(major: u32) -> PathBuf {
    PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"))
}

/// `dir` holds the server tools of a major >= `min` (exactly `exact`, when given).
pub fn check_dir(dir: &Path, min: u32, exact: Option<u32>) -> Result<(), String> {
    for tool in ["initdb", "pg_ctl", "postgres", "pg_basebackup"] {
        if !dir.join(tool).is_file() {
            return Err(format!("no {tool}"));
        }
    }
    let major = server_major(dir)?;
    if major < min {
        return Err(format!("server version {major} is older than {min}"));
    }
    if let Some(want) = exact.filter(|w| *w != major) {
        return Err(format!(
            "server version {major}, not the {want} {ENV_PG_MAJOR} asks for"
        ));
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
