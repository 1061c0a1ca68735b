//! Process and file helpers shared by the cluster and PgBouncer starters: free ports, private
//! files, running binaries as the server user, and cleaning up after killed runs.

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::Error;
use crate::user::RunAs;

/// PgBouncer's pid file, at the top of its directory (the reaper and the stale sweep stop it).
pub(crate) const PGBOUNCER_PID: &str = "pgbouncer.pid";
/// Prometheus' pid file, at the top of its directory (the reaper and the stale sweep stop it).
pub(crate) const PROMETHEUS_PID: &str = "prometheus.pid";

/// A TCP port free on `addr` right now (the OS picks it; nothing listens on it afterwards).
pub fn free_port(addr: Ipv4Addr) -> Result<u16, Error> {
    let l = TcpListener::bind((addr, 0))
        .map_err(|e| Error::io(format!("finding a free port on {addr}"), e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("reading local port".into(), e))
}

pub(crate) fn generate_password() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::from("tdb");
    for i in 0..2u64 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(Instant::now().elapsed().as_nanos());
        h.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

pub(crate) fn make_dir(dir: &Path, run_as: Option<RunAs>) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    if let Some(r) = run_as {
        r.own(dir)?;
    }
    Ok(())
}

pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    f.write_all(contents)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Appends `text` to the existing file `path` (a server's `postgresql.conf`, `pg_hba.conf`).
pub fn append(path: &Path, text: &str) -> Result<(), Error> {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

pub(crate) fn run(
    mut cmd: Command,
    run_as: Option<RunAs>,
    cwd: &Path,
    log: &Path,
) -> Result<(), Error> {
    let shown = format!("{:?}", cmd.get_program())
        .trim_matches('"')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string()
        + " "
        + &cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
    if let Some(r) = run_as {
        r.apply(&mut cmd);
    }
    // The server's user may not be able to read our working directory: run where it can.
    cmd.current_dir(cwd).stdin(Stdio::null());
    let out = cmd
        .output()
        .map_err(|e| Error::io(format!("running {shown}"), e))?;
    if out.status.success() {
        return Ok(());
    }
    let mut detail = format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if let Ok(text) = fs::read_to_string(log) {
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        detail.push_str("\n--- server log (last lines) ---\n");
        detail.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    Err(Error::Command { cmd: shown, detail })
}

/// Starts a detached watcher that stops the servers (PostgreSQL, PgBouncer) under `dir` and removes `dir` once this process is gone
/// (a test binary exits without running destructors of statics; a killed run leaves nothing behind).
pub(crate) fn spawn_reaper(dir: &Path) {
    let script = r#"
pid="$1"; dir="$2"
while kill -0 "$pid" 2>/dev/null && [ -d "$dir" ]; do sleep 1; done
[ -d "$dir" ] || exit 0
for f in "$dir"/*/postmaster.pid; do [ -f "$f" ] && kill -QUIT "$(head -n1 "$f")" 2>/dev/null; done
[ -f "$dir/pgbouncer.pid" ] && kill -TERM "$(head -n1 "$dir/pgbouncer.pid")" 2>/dev/null
[ -f "$dir/prometheus.pid" ] && kill -TERM "$(head -n1 "$dir/prometheus.pid")" 2>/dev/null
sleep 1
rm -rf "$dir"
"#;
    let _ = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("reaper")
        .arg(std::process::id().to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// Removes clusters left by processes that no longer exist (killed runs whose reaper died too).
pub(crate) fn remove_stale(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let dir = e.path();
        let Ok(owner) = fs::read_to_string(dir.join("owner.pid")) else {
            continue;
        };
        let Ok(pid) = owner.trim().parse::<u32>() else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let servers = fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|sub| (sub.path().join("postmaster.pid"), "-QUIT"));
        let others = [
            (dir.join(PGBOUNCER_PID), "-TERM"),
            (dir.join(PROMETHEUS_PID), "-TERM"),
        ];
        for (pidfile, signal) in servers.chain(others) {
            if let Ok(text) = fs::read_to_string(&pidfile)
                && let Some(pid) = text.lines().next().map(str::trim)
            {
                let _ = Command::new("kill").args([signal, pid]).status();
            }
        }
        tracing::info!(dir = %dir.display(), "removing stale test cluster");
        let _ = fs::remove_dir_all(&dir);
    }
}
