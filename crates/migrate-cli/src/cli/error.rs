//! Why a command failed ([`CliError`]), one variant per part that can fail.

use std::path::Path;
use std::time::Duration;

use notify_db_config::ConfigError;
use notify_db_migrate::Error;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The engine failed.
    #[error(transparent)]
    Migrate(#[from] Error),
    /// The settings could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A refused command, with the reason.
    #[error("{0}")]
    Refused(String),
    /// The TLS connector for the URI's `sslmode` could not be built.
    #[error(transparent)]
    Tls(#[from] notify_db_connect::TlsError),
    /// The pending check had no answer.
    #[error(transparent)]
    Pending(Box<notify_db_migrate::pending::PendingError>),
    /// The doctor report could not be written.
    #[error(transparent)]
    Doctor(#[from] crate::doctor::DoctorError),
    /// `revision --autogenerate` failed.
    #[error(transparent)]
    Autogen(#[from] crate::autogen::AutogenError),
    /// `lint` found something, or could not lint.
    #[error(transparent)]
    Lint(#[from] crate::lint::LintError),
    /// `test-downgrade` failed or could not run.
    #[error(transparent)]
    Stairway(#[from] crate::stairway::StairwayError),
    /// `import-alembic-sql` could not read the offline SQL.
    #[error(transparent)]
    Import(#[from] crate::alembic_sql::ImportError),
    /// `--wait-for-db`: the database did not accept a connection in time.
    #[error(
        "the database at {hosts} did not accept a connection within {waited:?} (--wait-for-db, \
         {attempts} attempts); last cause: {cause}"
    )]
    DatabaseNotReady {
        /// The hosts waited for (`host:port`, comma separated).
        hosts: String,
        /// How long it waited.
        waited: Duration,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's failure.
        cause: String,
    },
}

/// Maps an I/O error on `path` into [`CliError::Io`].
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io {
        path: path.display().to_string(),
        source,
    }
}
