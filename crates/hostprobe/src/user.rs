//! The user PostgreSQL servers run as when we are root (PostgreSQL refuses to run as root).

use std::process::Command;

fn euid() -> u32 {
    // /proc/self is owned by the effective uid of the process reading it.
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = std::fs::metadata("/proc/self") {
        return m.uid();
    }
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(u32::MAX)
}

/// Environment variable naming the unprivileged user servers run as when we are root.
pub const ENV_PG_USER: &str = "NOTIFY_DB_PG_USER";
/// The user servers run as when we are root and `NOTIFY_DB_PG_USER` is unset.
pub const DEFAULT_PG_USER: &str = "postgres";

/// Whether this process runs as root (servers then run as [`server_user_name`]).
pub fn is_root() -> bool {
    euid() == 0
}

/// The user servers run as when we are root: `NOTIFY_DB_PG_USER`, else `postgres`.
pub fn server_user_name() -> String {
    std::env::var(ENV_PG_USER).unwrap_or_else(|_| DEFAULT_PG_USER.into())
}

/// The user servers run as: `None` when we are not root (run as ourselves), else the uid and
/// gid of an existing unprivileged [`server_user_name`]; the error says why there is none.
pub fn server_user() -> Result<Option<(u32, u32)>, String> {
    if !is_root() {
        return Ok(None);
    }
    let name = server_user_name();
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| format!("reading /etc/passwd: {e}"))?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[0] == name {
            let uid = f[2]
                .parse()
                .map_err(|_| format!("bad uid for {name} in /etc/passwd"))?;
            let gid = f[3]
                .parse()
                .map_err(|_| format!("bad gid for {name} in /etc/passwd"))?;
            if uid == 0 {
                return Err(format!(
                    "user {name} is root; PostgreSQL refuses to run as root"
                ));
            }
            return Ok(Some((uid, gid)));
        }
    }
    Err(format!(
        "running as root, and PostgreSQL refuses to run as root, but there is no user `{name}` to run it as \
         (create one: `useradd --system postgres`, or set {ENV_PG_USER} to an unprivileged user)"
    ))
}
