//! One PostgreSQL server of a test cluster: where it lives, and starting, stopping and
//! promoting it with `pg_ctl` as the user it runs as.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::layout::StopMode;
use crate::proc::run;
use crate::user::RunAs;
use crate::{Endpoint, Error};

/// One running PostgreSQL server of a cluster.
pub struct Server {
    pub(crate) endpoint: Endpoint,
    pub(crate) data_dir: PathBuf,
    pub(crate) socket_dir: PathBuf,
    pub(crate) log_file: PathBuf,
    pub(crate) bin: PathBuf,
    pub(crate) run_as: Option<RunAs>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("host", &self.endpoint.host)
            .field("port", &self.endpoint.port)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Host, port and superuser credentials of this server.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// URI for database `db` as the superuser (holds the password: never log it).
    pub fn uri(&self, db: &str) -> String {
        self.endpoint.uri(db)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Directory of the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server's log file (from `pg_ctl -l`).
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The postmaster's process id, read from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Result<u32, Error> {
        let path = self.data_dir.join("postmaster.pid");
        let text = fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| Error::Command {
                cmd: format!("read {}", path.display()),
                detail: "no pid".into(),
            })
    }

    /// Runs `pg_ctl <args> -D <data_dir>` as the server's user.
    pub fn pg_ctl(&self, args: &[&str]) -> Result<(), Error> {
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.args(args).arg("-D").arg(&self.data_dir);
        self.run_as_owner(cmd)
    }

    /// Runs `cmd` (e.g. `pg_basebackup`, or `mkdir` of a folder the server writes to) as the
    /// server's user in its data directory; a failure holds the output and the server log's end.
    pub fn run_as_owner(&self, cmd: Command) -> Result<(), Error> {
        run(cmd, self.run_as, &self.data_dir, &self.log_file)
    }

    /// Path to a binary of this server's installation, e.g. `pg_basebackup`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// The `postgresql.conf` lines that make it listen on its endpoint and socket folder.
    pub(crate) fn listen_conf(&self, label: &str) -> String {
        format!(
            "\n# notify-db testdb: {label}\nlisten_addresses = '{}'\nport = {}\nunix_socket_directories = '{}'\n",
            self.endpoint.host,
            self.endpoint.port,
            self.socket_dir.display()
        )
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) -> Result<(), Error> {
        let log = self.log_file.to_string_lossy().into_owned();
        self.pg_ctl(&["start", "-w", "-t", "120", "-l", &log])
    }

    /// Stops the server.
    pub fn stop(&self, mode: StopMode) -> Result<(), Error> {
        self.pg_ctl(&["stop", "-w", "-t", "120", "-m", mode.arg()])
    }

    /// Restarts the server and waits until it accepts connections.
    pub fn restart(&self, mode: StopMode) -> Result<(), Error> {
        let log = self.log_file.to_string_lossy().into_owned();
        self.pg_ctl(&["restart", "-w", "-t", "120", "-m", mode.arg(), "-l", &log])
    }

    /// Promotes a replica to primary and waits until it accepts writes.
    pub fn promote(&self) -> Result<(), Error> {
        self.pg_ctl(&["promote", "-w", "-t", "120"])
    }

    /// Whether the server is running (its `postmaster.pid` exists).
    pub fn is_running(&self) -> bool {
        self.data_dir.join("postmaster.pid").exists()
    }
}
