//! What every command works on: a project's migration set, its directory and the kind of file
//! it holds.

use std::path::PathBuf;

use notify_db_migrate::MigrationSet;

use crate::FileKind;

/// A project's migrations: the set, the directory its files live in, their kind.
#[derive(Debug, Clone)]
pub struct Project {
    /// The migration set. For `lint`, build it with [`MigrationSet::new_for_lint`] (and with
    /// its downs), so that transaction control is a finding rather than a load error.
    pub set: MigrationSet,
    /// The directory of the migration files (and of the head file).
    pub dir: PathBuf,
    /// The kind of file `revision` writes.
    pub kind: FileKind,
}
