//! Starting and stopping PostgreSQL clusters: a primary and, on request, a streaming replica.

use std::fmt;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::layout::{MAX_REPLICAS, PRIMARY_ADDR, SUPERUSER, StopMode, replica_addr, replica_name};
use crate::proc::{
    append, free_port, generate_password, make_dir, remove_stale, run, spawn_reaper, write_private,
};
use crate::server::Server;
use crate::user::{RunAs, run_as};
use crate::{Endpoint, Error, bin, replication};

/// Options for a cluster: replica or not, extra server settings and files.
#[derive(Clone, Debug, Default)]
pub struct ClusterBuilder {
    label: Option<String>,
    replicas: usize,
    settings: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>)>,
    dir: Option<PathBuf>,
    base: Option<PathBuf>,
    // pg-majors: a cluster of one given major (`major`).
    major: Option<u32>,
}

impl ClusterBuilder {
    /// A short label used in the directory name (default `cluster`).
    pub fn label(mut self, label: &str) -> Self {
        self.label = Some(label.to_string());
        self
    }

    /// Also start a streaming replica made with `pg_basebackup -R`, listening on 127.0.0.2.
    pub fn replica(mut self, yes: bool) -> Self {
        self.replicas = usize::from(yes);
        self
    }

    /// Starts `n` streaming replicas (at most [`MAX_REPLICAS`]), on 127.0.0.2, 127.0.0.3, ...
    /// (for tests of routing across several replicas).
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n.min(MAX_REPLICAS);
        self
    }

    /// Adds a `postgresql.conf` line `name = value` (value written verbatim: quote strings yourself).
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_string(), value.to_string()));
        self
    }

    /// Durable servers (`fsync = on`, `full_page_writes = on`, for the fault suite's zero-loss
    /// scenarios) instead of the fast default; replicas copy the primary's configuration.
    /// Appended after the defaults: the last line of `postgresql.conf` wins.
    pub fn durable(self, yes: bool) -> Self {
        if !yes {
            return self;
        }
        self.setting("fsync", "on")
            .setting("full_page_writes", "on")
    }

    /// Writes a file (e.g. a TLS certificate) into the primary's data directory before it starts, mode 0600.
    pub fn file(mut self, name: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((name.to_string(), contents.into()));
        self
    }

    /// Serves TLS with this certificate (`ssl = on`, `server.crt`/`server.key` in the data directory).
    #[cfg(feature = "certs")]
    pub fn tls(self, cert: &crate::ServerCert) -> Self {
        self.setting("ssl", "on")
            .setting("ssl_cert_file", "'server.crt'")
            .setting("ssl_key_file", "'server.key'")
            .file("server.crt", cert.cert_pem.as_bytes())
            .file("server.key", cert.key_pem.as_bytes())
    }

    /// Creates the cluster under `base` instead of [`base_dir`] (e.g. on a tmpfs, for
    /// benchmarks that create many files and must not measure the disk's mood).
    pub fn under(mut self, base: impl Into<PathBuf>) -> Self {
        self.base = Some(base.into());
        self
    }

    /// Keeps the cluster in `dir` across runs (for `xtask dev`): not removed on drop, reused if present.
    pub fn persistent(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Runs this PostgreSQL major (the system's installation, else the pinned build, fetched
    /// once: [`crate::bin_dir_for_major`]) instead of the run's; 14 too, to prove it is refused.
    pub fn major(mut self, major: u32) -> Self {
        self.major = Some(major);
        self
    }

    /// Creates (or reuses, when persistent) and starts the cluster; waits until the replica streams.
    pub fn start(self) -> Result<Cluster, Error> {
        Cluster::start(self)
    }
}

/// A running primary and its streaming replicas (none, one or several); stopped and removed on
/// drop unless persistent.
pub struct Cluster {
    dir: PathBuf,
    primary: Server,
    replicas: Vec<Server>,
    persistent: bool,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir)
            .field("primary", &self.primary)
            .field("replicas", &self.replicas)
            .finish()
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Root of the harness' directories: `$NOTIFY_DB_TESTDB_DIR` or `<tmp>/notify-db-testdb-<uid>`.
pub fn base_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NOTIFY_DB_TESTDB_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    use std::os::unix::fs::MetadataExt;
    let uid = fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    std::env::temp_dir().join(format!("notify-db-testdb-{uid}"))
}

impl Cluster {
    /// Options for a new cluster.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// The primary server.
    pub fn primary(&self) -> &Server {
        &self.primary
    }

    /// The (first) streaming replica, when one was requested.
    pub fn replica(&self) -> Option<&Server> {
        self.replicas.first()
    }

    /// Every streaming replica, in the order of their addresses (127.0.0.2, 127.0.0.3, ...).
    pub fn replicas(&self) -> &[Server] {
        &self.replicas
    }

    /// Waits until every replica has replayed everything the primary has written so far.
    pub fn wait_for_replica(&self) -> Result<(), Error> {
        for r in &self.replicas {
            let (p, r) = (self.primary.endpoint.clone(), r.endpoint.clone());
            crate::block_on(async move { replication::sync_replica(&p, &r).await })??;
        }
        Ok(())
    }

    /// A server, with this cluster's binaries, user and superuser, for the data directory
    /// `<dir>/<name>` already there (e.g. a restored base backup): listening on a free port of
    /// [`PRIMARY_ADDR`], its socket folder and log beside it. Not started; not stopped on drop.
    pub fn server_for(&self, name: &str) -> Result<Server, Error> {
        let server = self.sibling(name, PRIMARY_ADDR)?;
        make_dir(&server.socket_dir, server.run_as)?;
        append(
            &server.data_dir.join("postgresql.conf"),
            &server.listen_conf(name),
        )?;
        Ok(server)
    }

    /// A server beside the primary (same binaries, user and superuser) at `<dir>/<name>`, on a
    /// free port of `addr`.
    fn sibling(&self, name: &str, addr: Ipv4Addr) -> Result<Server, Error> {
        let p = &self.primary;
        Ok(Server {
            endpoint: Endpoint {
                host: addr.to_string(),
                port: free_port(addr)?,
                ..p.endpoint.clone()
            },
            data_dir: self.dir.join(name),
            socket_dir: self.dir.join(format!("{name}.sock")),
            log_file: self.dir.join(format!("{name}.log")),
            bin: p.bin.clone(),
            run_as: p.run_as,
        })
    }

    /// The directory holding the cluster's data directories and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn start(opts: ClusterBuilder) -> Result<Cluster, Error> {
        let bin = match opts.major {
            Some(major) => bin::bin_dir_for_major(major)?,
            None => bin::find_bin_dir()?,
        };
        let run_as = run_as()?;
        let base = opts.base.clone().unwrap_or_else(base_dir);
        fs::create_dir_all(&base)
            .map_err(|e| Error::io(format!("creating {}", base.display()), e))?;
        // Others (the postgres user when we are root) must be able to traverse it.
        let _ = fs::set_permissions(&base, fs::Permissions::from_mode(0o755));
        remove_stale(&base);

        if let Some(dir) = opts.dir.clone() {
            return Self::start_persistent(opts, dir, bin, run_as);
        }
        let label = opts.label.clone().unwrap_or_else(|| "cluster".into());
        let dir = base.join(format!(
            "{label}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        make_dir(&dir, run_as)?;
        fs::write(dir.join("owner.pid"), std::process::id().to_string())
            .map_err(|e| Error::io("writing owner.pid".into(), e))?;
        spawn_reaper(&dir);
        let cluster = Self::create(&opts, dir, bin, run_as, false)?;
        Ok(cluster)
    }

    /// The persistent cluster in `dir` as it is, running or stopped, without starting anything;
    /// `None` when `dir` holds none (for `xtask dev status` and `dev down`).
    pub fn existing(dir: &Path) -> Result<Option<Cluster>, Error> {
        let Ok(text) = fs::read_to_string(dir.join("cluster.state")) else {
            return Ok(None);
        };
        let bin = bin::find_bin_dir()?;
        Self::from_state(&text, dir.to_path_buf(), bin, run_as()?).map(Some)
    }

    fn start_persistent(
        opts: ClusterBuilder,
        dir: PathBuf,
        bin: PathBuf,
        run_as: Option<RunAs>,
    ) -> Result<Cluster, Error> {
        let state = dir.join("cluster.state");
        if let Ok(text) = fs::read_to_string(&state) {
            let cluster = Self::from_state(&text, dir.clone(), bin, run_as)?;
            for s in std::iter::once(&cluster.primary).chain(&cluster.replicas) {
                if !s.is_running() {
                    s.start()?;
                }
            }
            return Ok(cluster);
        }
        let _ = fs::remove_dir_all(&dir);
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        make_dir(&dir, run_as)?;
        let cluster = Self::create(&opts, dir.clone(), bin, run_as, true)?;
        let mut text = format!(
            "primary {} {}\n",
            cluster.primary.endpoint.port, cluster.primary.endpoint.password
        );
        for (n, r) in cluster.replicas.iter().enumerate() {
            text.push_str(&format!(
                "{} {} {}\n",
                replica_name(n),
                r.endpoint.port,
                r.endpoint.password
            ));
        }
        write_private(&state, text.as_bytes())?;
        Ok(cluster)
    }

    fn from_state(
        text: &str,
        dir: PathBuf,
        bin: PathBuf,
        run_as: Option<RunAs>,
    ) -> Result<Cluster, Error> {
        let mut primary = None;
        let mut replicas = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 3 {
                continue;
            }
            let port: u16 = f[1].parse().map_err(|_| Error::Command {
                cmd: "read cluster.state".into(),
                detail: "bad port".into(),
            })?;
            let name = f[0];
            let addr = if name == "primary" {
                PRIMARY_ADDR
            } else {
                replica_addr(replicas.len())
            };
            let server = Server {
                endpoint: Endpoint {
                    host: addr.to_string(),
                    port,
                    user: SUPERUSER.into(),
                    password: f[2].to_string(),
                },
                data_dir: dir.join(name),
                socket_dir: dir.join(format!("{name}.sock")),
                log_file: dir.join(format!("{name}.log")),
                bin: bin.clone(),
                run_as,
            };
            if name == "primary" {
                primary = Some(server);
            } else {
                replicas.push(server);
            }
        }
        let primary = primary.ok_or_else(|| Error::Command {
            cmd: "read cluster.state".into(),
            detail: "no primary".into(),
        })?;
        Ok(Cluster {
            dir,
            primary,
            replicas,
            persistent: true,
        })
    }

    fn create(
        opts: &ClusterBuilder,
        dir: PathBuf,
        bin: PathBuf,
        run_as: Option<RunAs>,
        persistent: bool,
    ) -> Result<Cluster, Error> {
        let password = generate_password();
        let mut last_err = None;
        // A free port found by binding can be taken by someone else before the server binds it: retry.
        for _ in 0..3 {
            let primary = Server {
                endpoint: Endpoint {
                    host: PRIMARY_ADDR.to_string(),
                    port: free_port(PRIMARY_ADDR)?,
                    user: SUPERUSER.into(),
                    password: password.clone(),
                },
                data_dir: dir.join("primary"),
                socket_dir: dir.join("primary.sock"),
                log_file: dir.join("primary.log"),
                bin: bin.clone(),
                run_as,
            };
            match init_primary(&primary, opts) {
                Ok(()) => {
                    let mut cluster = Cluster {
                        dir: dir.clone(),
                        primary,
                        replicas: Vec::new(),
                        persistent,
                    };
                    for n in 0..opts.replicas {
                        let r = cluster.make_replica(n)?;
                        cluster.replicas.push(r);
                    }
                    return Ok(cluster);
                }
                Err(e) => {
                    let _ = primary.stop(StopMode::Immediate);
                    let _ = fs::remove_dir_all(&primary.data_dir);
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| Error::Command {
            cmd: "initdb".into(),
            detail: "failed".into(),
        }))
    }

    fn make_replica(&self, n: usize) -> Result<Server, Error> {
        let p = &self.primary;
        let (addr, name) = (replica_addr(n), replica_name(n));
        let mut last_err = None;
        for _ in 0..3 {
            let r = self.sibling(&name, addr)?;
            let _ = fs::remove_dir_all(&r.data_dir);
            make_dir(&r.socket_dir, r.run_as)?;
            let mut cmd = Command::new(p.bin.join("pg_basebackup"));
            cmd.arg("-h")
                .arg(&p.socket_dir)
                .arg("-p")
                .arg(p.endpoint.port.to_string())
                .args(["-U", SUPERUSER, "-R", "-X", "stream", "-c", "fast", "-D"])
                .arg(&r.data_dir);
            run(cmd, r.run_as, &self.dir, &r.log_file)?;
            let conf = format!("{}hot_standby = on\n", r.listen_conf(&name));
            append(&r.data_dir.join("postgresql.conf"), &conf)?;
            // `-R` writes the conninfo of the client tools' libpq: 18's names options
            // (`sslnegotiation`) that an older server's walreceiver refuses. Ours names only what
            // every major knows; postgresql.auto.conf is read last, so its last line wins.
            append(
                &r.data_dir.join("postgresql.auto.conf"),
                &primary_conninfo(&p.socket_dir, p.endpoint.port),
            )?;
            match r.start() {
                Ok(()) => {
                    replication::wait_streaming(&self.primary.endpoint, n + 1)?;
                    return Ok(r);
                }
                Err(e) => {
                    let _ = r.stop(StopMode::Immediate);
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| Error::Command {
            cmd: "pg_basebackup".into(),
            detail: "failed".into(),
        }))
    }

    /// Stops the servers; removes the directory unless the cluster is persistent.
    pub fn stop(mut self) -> Result<(), Error> {
        self.shutdown()
    }

    /// Stops the servers and removes everything, also for a persistent cluster.
    pub fn destroy(mut self) -> Result<(), Error> {
        self.persistent = false;
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), Error> {
        let mut result = Ok(());
        for s in self.replicas.iter().chain(std::iter::once(&self.primary)) {
            if s.is_running()
                && let Err(e) = s.stop(StopMode::Fast)
            {
                let _ = s.stop(StopMode::Immediate);
                result = Err(e);
            }
        }
        if !self.persistent {
            let _ = fs::remove_dir_all(&self.dir);
        }
        result
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.persistent {
            return;
        }
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, dir = %self.dir.display(), "stopping test cluster failed");
        }
    }
}

fn init_primary(p: &Server, opts: &ClusterBuilder) -> Result<(), Error> {
    let _ = fs::remove_dir_all(&p.data_dir);
    let dir = p.data_dir.parent().unwrap_or(Path::new("/"));
    make_dir(&p.socket_dir, p.run_as)?;
    let pwfile = dir.join("pwfile");
    write_private(&pwfile, p.endpoint.password.as_bytes())?;
    if let Some(r) = p.run_as {
        r.own(&pwfile)?;
    }
    let mut cmd = Command::new(p.bin.join("initdb"));
    cmd.args([
        "-U",
        SUPERUSER,
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
    ])
    .arg(format!("--pwfile={}", pwfile.display()))
    .arg("-D")
    .arg(&p.data_dir);
    let res = run(cmd, p.run_as, dir, &p.log_file);
    let _ = fs::remove_file(&pwfile);
    res?;
    let mut conf = p.listen_conf("primary");
    conf.push_str(
        "max_connections = 300\nshared_buffers = 128MB\nfsync = off\nfull_page_writes = off\n\
         wal_level = replica\nmax_wal_senders = 10\nwal_keep_size = '512MB'\nhot_standby = on\nhot_standby_feedback = on\n\
         log_min_messages = warning\nlog_line_prefix = '%m [%p] %q%a '\ndatestyle = 'iso, mdy'\ntimezone = 'UTC'\n",
    );
    for (k, v) in &opts.settings {
        conf.push_str(&format!("{k} = {v}\n"));
    }
    append(&p.data_dir.join("postgresql.conf"), &conf)?;
    // Any loopback client (127.0.0.0/8) with a password; replication too.
    append(
        &p.data_dir.join("pg_hba.conf"),
        "\nhost all all 127.0.0.0/8 scram-sha-256\nhost replication all 127.0.0.0/8 scram-sha-256\n",
    )?;
    for (name, contents) in &opts.files {
        let path = p.data_dir.join(name);
        write_private(&path, contents)?;
        if let Some(r) = p.run_as {
            r.own(&path)?;
        }
    }
    p.start()
}

/// The `primary_conninfo` line of a replica of the primary listening on `socket_dir`:port, in
/// the conninfo keywords of every supported major. The harness makes its socket directories
/// itself, under the temporary directory, with names free of quotes.
fn primary_conninfo(socket_dir: &Path, port: u16) -> String {
    let host = socket_dir.display();
    format!("\nprimary_conninfo = 'host=''{host}'' port={port} user={SUPERUSER}'\n")
}
