//! The runner's options.

use std::time::Duration;

use notify_db_config::MigrationSettings;

/// Runner options (from [`MigrationSettings`], or set by hand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `lock_timeout` for every migration that does not set its own (1 s).
    pub lock_timeout: Duration,
    /// `statement_timeout` for every migration that does not set its own; `None` (the default,
    /// as Alembic's runner) runs migrations without one.
    pub statement_timeout: Option<Duration>,
    /// Attempts in all at a migration that hits lock timeouts (55P03), resuming at the failed
    /// migration each time (10, as the reference's `retry_on_lock_error(max_retries=10)`).
    pub max_attempts: u32,
    /// Delay between those attempts (10 s).
    pub retry_delay: Duration,
    /// Give up waiting for the advisory lock after this long; `None` waits forever.
    pub advisory_lock_wait: Option<Duration>,
    /// Run even when an applied migration's SQL changed since (default: refuse).
    pub allow_changed_checksums: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            lock_timeout: Duration::from_millis(1000),
            statement_timeout: None,
            max_attempts: 10,
            retry_delay: Duration::from_secs(10),
            advisory_lock_wait: None,
            allow_changed_checksums: false,
        }
    }
}

impl Options {
    /// Options from the project's migration settings.
    pub fn from_settings(s: &MigrationSettings) -> Options {
        Options {
            lock_timeout: s.lock_timeout,
            statement_timeout: s.statement_timeout,
            max_attempts: s.max_attempts,
            retry_delay: s.retry_delay,
            advisory_lock_wait: s.advisory_lock_wait,
            allow_changed_checksums: false,
        }
    }

    /// What applies to a migration that sets no timeout of its own, e.g.
    /// `lock_timeout 1000ms, statement_timeout none`.
    pub fn describe_timeouts(&self) -> String {
        format!(
            "lock_timeout {}ms, statement_timeout {}",
            self.lock_timeout.as_millis(),
            self.statement_timeout
                .filter(|d| !d.is_zero())
                .map_or("none".to_owned(), |d| format!("{}ms", d.as_millis()))
        )
    }
}
