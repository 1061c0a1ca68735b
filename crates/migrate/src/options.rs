//! The runner's options: the migration settings, defined once in `notify_db_config`.

use std::time::Duration;

use notify_db_config::MigrationSettings;

/// Runner options: the project's [`MigrationSettings`] (whose [`Default`] holds every default),
/// plus what only a command line sets. Built with [`Options::from_settings`]; a field set by
/// hand overrides one setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// [`MigrationSettings::lock_timeout`]: for every migration that does not set its own.
    pub lock_timeout: Duration,
    /// [`MigrationSettings::statement_timeout`]: for every migration that does not set its own;
    /// `None` runs migrations without one.
    pub statement_timeout: Option<Duration>,
    /// [`MigrationSettings::max_attempts`]: attempts in all at a migration that hits lock
    /// timeouts (55P03), resuming at the failed migration each time.
    pub max_attempts: u32,
    /// [`MigrationSettings::retry_delay`]: the delay between those attempts.
    pub retry_delay: Duration,
    /// [`MigrationSettings::advisory_lock_wait`]: give up waiting for the advisory lock after
    /// this long; `None` waits forever.
    pub advisory_lock_wait: Option<Duration>,
    /// Run even when an applied migration's SQL changed since (default: refuse).
    pub allow_changed_checksums: bool,
}

/// The built-in [`MigrationSettings`], refusing changed checksums.
impl Default for Options {
    fn default() -> Options {
        Options::from_settings(&MigrationSettings::default())
    }
}

impl Options {
    /// Options from the project's migration settings, refusing changed checksums.
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
