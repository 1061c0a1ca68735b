//! The migration runner's settings, with their built-in defaults: the one definition the
//! runner's `Options`, the files (`[migrations]`) and the command line override.

use std::time::Duration;

/// Migration runner settings. [`Default`] gives the built-in defaults, which
/// `config/default.toml` shows (a test keeps them equal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationSettings {
    /// `lock_timeout` while migrating (1000 ms).
    pub lock_timeout: Duration,
    /// `statement_timeout` while migrating; `None` (the default, as Alembic's runner, and for
    /// `"0s"`) runs migrations without one.
    pub statement_timeout: Option<Duration>,
    /// Attempts in all at a migration that hits lock timeouts (10, as the reference's
    /// `retry_on_lock_error(max_retries=10)`).
    pub max_attempts: u32,
    /// Delay between attempts (10 s).
    pub retry_delay: Duration,
    /// How long to wait for the advisory lock; `None` (the default) waits forever.
    pub advisory_lock_wait: Option<Duration>,
}

impl Default for MigrationSettings {
    fn default() -> MigrationSettings {
        MigrationSettings {
            lock_timeout: Duration::from_millis(1000),
            statement_timeout: None,
            max_attempts: 10,
            retry_delay: Duration::from_secs(10),
            advisory_lock_wait: None,
        }
    }
}
