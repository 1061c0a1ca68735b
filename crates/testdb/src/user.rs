//! Running server binaries as an unprivileged user when we are root.

use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use notify_db_hostprobe::server_user;
pub use notify_db_hostprobe::{DEFAULT_PG_USER, ENV_PG_USER, is_root, server_user_name};

use crate::Error;

/// The user server processes run as: `None` when we are not root (run as ourselves).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunAs {
    uid: u32,
    gid: u32,
}

/// Checks, without caching the answer, that servers can be run: as ourselves when not root,
/// else as an existing unprivileged [`server_user_name`].
pub fn check_server_user() -> Result<(), Error> {
    resolve().map(|_| ()).map_err(|why| Error::User { why })
}

fn resolve() -> Result<Option<RunAs>, String> {
    server_user().map(|u| u.map(|(uid, gid)| RunAs { uid, gid }))
}

/// Decides once per process whom to run server binaries as.
pub(crate) fn run_as() -> Result<Option<RunAs>, Error> {
    static CELL: OnceLock<Result<Option<RunAs>, String>> = OnceLock::new();
    CELL.get_or_init(resolve)
        .clone()
        .map_err(|why| Error::User { why })
}

impl RunAs {
    /// Makes `cmd` run as this user.
    pub(crate) fn apply(self, cmd: &mut Command) {
        cmd.uid(self.uid).gid(self.gid);
    }

    /// Gives `path` to this user.
    pub(crate) fn own(self, path: &Path) -> Result<(), Error> {
        chown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| Error::io(format!("chown {}", path.display()), e))
    }
}
