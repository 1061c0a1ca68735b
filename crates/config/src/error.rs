//! Typed errors for loading settings. No variant ever carries a password.

use std::path::PathBuf;

/// Everything that can go wrong while loading settings or parsing a database URI.
///
/// Every variant names the environment variable or file (and key) at fault, and what is wrong.
/// Text that may have come from a URI is redacted before it is stored here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A database URI (from `variable`, e.g. `SQLALCHEMY_DATABASE_URI`) could not be parsed.
    #[error("{problem} in {variable}")]
    InvalidUri {
        /// Where the URI came from: an environment variable, or a file key.
        variable: String,
        /// What is wrong, never including the password.
        problem: String,
    },
    /// An environment variable has a value that cannot be used.
    #[error("invalid value for {variable}: {problem}")]
    InvalidEnv {
        /// The environment variable.
        variable: String,
        /// What is wrong.
        problem: String,
    },
    /// A required setting is missing.
    #[error("{variable} must be set in the {environment} environment")]
    Missing {
        /// The environment variable that must be set.
        variable: String,
        /// The selected environment (`NOTIFY_ENVIRONMENT`).
        environment: String,
    },
    /// `NOTIFY_ENVIRONMENT` names an environment we do not know.
    #[error(
        "invalid value for NOTIFY_ENVIRONMENT: unknown environment `{value}` \
         (expected development, test or production)"
    )]
    UnknownEnvironment {
        /// The rejected value.
        value: String,
    },
    /// The configuration directory is missing or unreadable.
    #[error("configuration directory {}: {problem}", dir.display())]
    ConfigDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A configuration file could not be read or is not valid TOML.
    #[error("{}: {problem}", file.display())]
    FileParse {
        /// The file.
        file: PathBuf,
        /// What is wrong (the TOML parser's message, with line and column, redacted).
        problem: String,
    },
    /// A configuration file contains a key this crate does not know.
    #[error("{}: unknown key `{key}`", file.display())]
    UnknownKey {
        /// The file.
        file: PathBuf,
        /// The dotted key, e.g. `pool.sise`.
        key: String,
    },
    /// Migrations were asked to run through a transaction pooler (they need one server session
    /// for the whole run: the advisory lock is session-level).
    #[error(
        "{variable} goes through a transaction pooler ({flag}=true), and migrations need a direct \
         session to the primary (the migration advisory lock is held by a session, which a \
         transaction pooler does not keep); set {migration_variable} (or `database.migration_uri`) \
         to the primary's own address, bypassing the pooler"
    )]
    MigrationThroughPooler {
        /// The URI variable that goes through the pooler.
        variable: String,
        /// The setting that says so.
        flag: String,
        /// The variable for a direct migration connection.
        migration_variable: String,
    },
    /// A key in a configuration file has a value that cannot be used.
    #[error("{}: invalid value for `{key}`: {problem}", file.display())]
    InvalidFileValue {
        /// The file.
        file: PathBuf,
        /// The dotted key, e.g. `pool.wait_timeout`.
        key: String,
        /// What is wrong.
        problem: String,
    },
}
