//! A real PgBouncer in front of test clusters: transaction pooling, SCRAM authentication, one
//! PgBouncer database per target (e.g. one for the primary, one for the replicas), on a free
//! loopback port, run as the server user.

use std::fmt;
use std::fs;
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::proc::{
    PGBOUNCER_PID, free_port, make_dir, remove_stale, run, spawn_reaper, write_private,
};
use crate::user::{RunAs, run_as};
use crate::{Endpoint, Error, SUPERUSER, base_dir};

/// Address PgBouncer listens on.
pub const PGBOUNCER_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// Environment variable naming the `pgbouncer` binary (default: `/usr/sbin/pgbouncer`, then `PATH`).
pub const ENV_PGBOUNCER: &str = "PGBOUNCER";

/// One `[databases]` entry: a PgBouncer database name and the server database it leads to.
#[derive(Clone, Debug)]
struct Target {
    name: String,
    host: String,
    port: u16,
    dbname: String,
    connect_query: Option<String>,
}

/// Options for a PgBouncer.
#[derive(Clone, Debug)]
pub struct PgBouncerBuilder {
    targets: Vec<Target>,
    users: Vec<(String, String)>,
    pool_size: u32,
    settings: Vec<(String, String)>,
    dir: Option<PathBuf>,
}

impl Default for PgBouncerBuilder {
    fn default() -> Self {
        PgBouncerBuilder {
            targets: Vec::new(),
            users: Vec::new(),
            pool_size: 20,
            settings: Vec::new(),
            dir: None,
        }
    }
}

impl PgBouncerBuilder {
    /// Adds the PgBouncer database `name` leading to database `dbname` on `server`; its users
    /// log in with their own name and password. `server`'s superuser may log in through it.
    pub fn database(mut self, name: &str, server: &Endpoint, dbname: &str) -> Self {
        self.targets.push(Target {
            name: name.to_owned(),
            host: server.host.clone(),
            port: server.port,
            dbname: dbname.to_owned(),
            connect_query: None,
        });
        self.user(&server.user, &server.password)
    }

    /// Sets PgBouncer's `connect_query` (run on every new server connection) of the database
    /// added last, e.g. `SET statement_timeout = 5000`. It must not contain a single quote.
    pub fn connect_query(mut self, sql: &str) -> Self {
        if let Some(t) = self.targets.last_mut() {
            t.connect_query = Some(sql.to_owned());
        }
        self
    }

    /// Lets `user` log in (SCRAM) with `password`; PgBouncer logs in to the server alike.
    pub fn user(mut self, user: &str, password: &str) -> Self {
        if !self.users.iter().any(|(u, _)| u == user) {
            self.users.push((user.to_owned(), password.to_owned()));
        }
        self
    }

    /// Server connections per (database, user) pair (`default_pool_size`, default 20).
    pub fn pool_size(mut self, n: u32) -> Self {
        self.pool_size = n;
        self
    }

    /// Adds a `[pgbouncer]` line `name = value` (written verbatim).
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Keeps PgBouncer running in `dir` after this process ends (for `xtask dev`); a PgBouncer
    /// already running there is stopped and started again with the new configuration.
    pub fn persistent(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Writes the configuration and starts PgBouncer; returns once it accepts connections.
    pub fn start(self) -> Result<PgBouncer, Error> {
        PgBouncer::start(self)
    }
}

/// A running PgBouncer in transaction pooling mode; stopped and removed on drop unless persistent.
pub struct PgBouncer {
    dir: PathBuf,
    port: u16,
    admin: (String, String),
    persistent: bool,
}

impl fmt::Debug for PgBouncer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgBouncer")
            .field("port", &self.port)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Finds the `pgbouncer` binary: `$PGBOUNCER`, `/usr/sbin/pgbouncer`, then `PATH`.
pub fn find_pgbouncer() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os(ENV_PGBOUNCER).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::NoPgBouncer {
                searched: format!("{ENV_PGBOUNCER}={} does not exist", p.display()),
            })
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(PathBuf::from("/usr/sbin"))
        .chain(std::env::split_paths(&path))
        .map(|d| d.join("pgbouncer"))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::NoPgBouncer {
            searched: "/usr/sbin and PATH".into(),
        })
}

impl PgBouncer {
    /// Options for a new PgBouncer.
    pub fn builder() -> PgBouncerBuilder {
        PgBouncerBuilder::default()
    }

    /// The port it listens on (on [`PGBOUNCER_ADDR`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where to reach it as `user` (with `password`), e.g. to build a URI for database `name`.
    pub fn endpoint(&self, user: &str, password: &str) -> Endpoint {
        Endpoint {
            host: PGBOUNCER_ADDR.to_string(),
            port: self.port,
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    /// Its admin console (database `pgbouncer`, simple queries only: `SHOW SERVERS`, ...).
    pub async fn admin(&self) -> Result<tokio_postgres::Client, Error> {
        self.endpoint(&self.admin.0, &self.admin.1)
            .connect("pgbouncer")
            .await
    }

    /// Its log file.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("pgbouncer.log")
    }

    /// The directory holding its configuration, pid file and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn start(opts: PgBouncerBuilder) -> Result<PgBouncer, Error> {
        let binary = find_pgbouncer()?;
        let run_as = run_as()?;
        let base = base_dir();
        fs::create_dir_all(&base)
            .map_err(|e| Error::io(format!("creating {}", base.display()), e))?;
        let _ = fs::set_permissions(&base, fs::Permissions::from_mode(0o755));
        remove_stale(&base);
        let (dir, persistent) = match opts.dir.clone() {
            Some(dir) => {
                stop_pid_file(&dir.join(PGBOUNCER_PID));
                (dir, true)
            }
            None => {
                let dir = base.join(format!(
                    "pgbouncer-{}-{}",
                    std::process::id(),
                    SEQ.fetch_add(1, Ordering::Relaxed)
                ));
                let _ = fs::remove_dir_all(&dir);
                (dir, false)
            }
        };
        make_dir(&dir, run_as)?;
        if !persistent {
            fs::write(dir.join("owner.pid"), std::process::id().to_string())
                .map_err(|e| Error::io("writing owner.pid".into(), e))?;
            spawn_reaper(&dir);
        }
        let admin = opts
            .users
            .first()
            .cloned()
            .unwrap_or_else(|| (SUPERUSER.to_owned(), String::new()));
        let mut last_err = None;
        // A free port found by binding can be taken by someone else before PgBouncer binds it.
        for _ in 0..3 {
            let port = free_port(PGBOUNCER_ADDR)?;
            match launch(&opts, &dir, port, &binary, run_as) {
                Ok(()) => {
                    return Ok(PgBouncer {
                        dir,
                        port,
                        admin,
                        persistent,
                    });
                }
                Err(e) => {
                    stop_pid_file(&dir.join(PGBOUNCER_PID));
                    last_err = Some(e);
                }
            }
        }
        if !persistent {
            let _ = fs::remove_dir_all(&dir);
        }
        Err(last_err.unwrap_or_else(|| Error::Command {
            cmd: "pgbouncer".into(),
            detail: "failed".into(),
        }))
    }

    /// Stops PgBouncer (also a persistent one); a non-persistent one's directory is removed.
    pub fn stop(self) {
        stop_pid_file(&self.dir.join(PGBOUNCER_PID));
    }

    /// Kills PgBouncer with SIGKILL (no clean shutdown: every client and server connection
    /// drops at once) and waits until it is gone; [`PgBouncer::restart`] starts it again.
    pub fn kill(&self) -> Result<(), Error> {
        let pid_file = self.dir.join(PGBOUNCER_PID);
        let pid = fs::read_to_string(&pid_file)
            .map_err(|e| Error::io(format!("reading {}", pid_file.display()), e))?;
        let pid = pid.trim();
        let kill = |signal: &str| {
            Command::new("kill")
                .args([signal, pid])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !kill("-KILL") {
            return Err(Error::Command {
                cmd: format!("kill -KILL {pid}"),
                detail: format!("PgBouncer ({}) was not running", pid_file.display()),
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while kill("-0") {
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("PgBouncer (pid {pid}) to exit after SIGKILL"),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = fs::remove_file(&pid_file);
        Ok(())
    }

    /// Starts PgBouncer again (after [`PgBouncer::kill`]) with the same configuration on the same
    /// port; returns once it accepts connections.
    pub fn restart(&self) -> Result<(), Error> {
        daemon(&self.dir, self.port, &find_pgbouncer()?, run_as()?)
    }

    /// Stops a persistent PgBouncer running in `dir`; false when none was running.
    pub fn stop_in(dir: &Path) -> bool {
        stop_pid_file(&dir.join(PGBOUNCER_PID))
    }
}

/// Writes the configuration into `dir` and starts PgBouncer on `port`, waiting until it listens.
fn launch(
    opts: &PgBouncerBuilder,
    dir: &Path,
    port: u16,
    binary: &Path,
    run_as: Option<RunAs>,
) -> Result<(), Error> {
    let userlist = dir.join("userlist.txt");
    let users: String = opts
        .users
        .iter()
        .map(|(u, p)| format!("\"{}\" \"{}\"\n", quote(u), quote(p)))
        .collect();
    write_private(&userlist, users.as_bytes())?;
    let ini = dir.join("pgbouncer.ini");
    write_private(&ini, config_text(opts, dir, port).as_bytes())?;
    if let Some(r) = run_as {
        r.own(&userlist)?;
        r.own(&ini)?;
    }
    daemon(dir, port, binary, run_as)
}

/// Starts PgBouncer as a daemon on the configuration already in `dir`, waiting until it listens
/// on `port`.
fn daemon(dir: &Path, port: u16, binary: &Path, run_as: Option<RunAs>) -> Result<(), Error> {
    let log_file = dir.join("pgbouncer.log");
    let mut cmd = Command::new(binary);
    cmd.arg("-d").arg(dir.join("pgbouncer.ini"));
    run(cmd, run_as, dir, &log_file)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect((PGBOUNCER_ADDR, port)).is_err() {
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!(
                    "PgBouncer to listen on {PGBOUNCER_ADDR}:{} (log: {})",
                    port,
                    log_file.display()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if self.persistent {
            return;
        }
        stop_pid_file(&self.dir.join(PGBOUNCER_PID));
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Sends SIGTERM to the process in `pid_file` and waits (up to 10 s) until it is gone; false
/// when no process was running.
fn stop_pid_file(pid_file: &Path) -> bool {
    let Some(pid) = fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.lines().next().map(|l| l.trim().to_owned()))
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    else {
        return false;
    };
    let alive = |signal: &str| {
        Command::new("kill")
            .args([signal, &pid])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !alive("-TERM") {
        let _ = fs::remove_file(pid_file);
        return false;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive("-0") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if alive("-0") {
        alive("-KILL");
    }
    let _ = fs::remove_file(pid_file);
    true
}

/// A value inside the double quotes of PgBouncer's auth file (a double quote is doubled).
fn quote(s: &str) -> String {
    s.replace('"', "\"\"")
}

/// The `pgbouncer.ini` text.
fn config_text(opts: &PgBouncerBuilder, dir: &Path, port: u16) -> String {
    let mut text = String::from("[databases]\n");
    for t in &opts.targets {
        text.push_str(&format!(
            "{} = host={} port={} dbname={}",
            t.name, t.host, t.port, t.dbname
        ));
        if let Some(q) = &t.connect_query {
            text.push_str(&format!(" connect_query='{q}'"));
        }
        text.push('\n');
    }
    let admins: Vec<&str> = opts.users.iter().map(|(u, _)| u.as_str()).collect();
    text.push_str(&format!(
        "\n[pgbouncer]\n\
         listen_addr = {PGBOUNCER_ADDR}\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = scram-sha-256\n\
         auth_file = {}\n\
         pidfile = {}\n\
         logfile = {}\n\
         admin_users = {}\n\
         pool_mode = transaction\n\
         default_pool_size = {}\n\
         max_client_conn = 500\n\
         log_connections = 0\n\
         log_disconnections = 0\n",
        dir.join("userlist.txt").display(),
        dir.join(PGBOUNCER_PID).display(),
        dir.join("pgbouncer.log").display(),
        admins.first().copied().unwrap_or(SUPERUSER),
        opts.pool_size,
    ));
    for (k, v) in &opts.settings {
        text.push_str(&format!("{k} = {v}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_transaction_mode_with_scram_and_one_line_per_database() {
        let server = Endpoint {
            host: "127.0.0.1".into(),
            port: 5433,
            user: "postgres".into(),
            password: "pw".into(),
        };
        let opts = PgBouncer::builder()
            .database("notify", &server, "notification_api")
            .connect_query("SET statement_timeout = 5000")
            .pool_size(3);
        let text = config_text(&opts, Path::new("/d"), 6432);
        assert!(
            text.contains(
                "notify = host=127.0.0.1 port=5433 dbname=notification_api \
                 connect_query='SET statement_timeout = 5000'\n"
            ),
            "{text}"
        );
        for line in [
            "pool_mode = transaction",
            "auth_type = scram-sha-256",
            "listen_port = 6432",
            "default_pool_size = 3",
            "auth_file = /d/userlist.txt",
        ] {
            assert!(text.contains(line), "missing {line}: {text}");
        }
        assert!(!text.contains("pw"), "no password in the ini: {text}");
        assert!(
            !text.contains("ignore_startup_parameters"),
            "the default refuses `options`, as a stock PgBouncer does"
        );
    }
}
