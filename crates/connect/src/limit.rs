//! Connection limits: a server at `max_connections` (SQLSTATE 53300) or a pooler refusing
//! clients. The host is then left alone for a growing back-off (100 ms, doubling, up to the
//! pool's `host_backoff`), during which `get()` fails at once with the last limit error instead
//! of opening connection after connection against a full server.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;

use crate::error::ConnectError;

/// First back-off after a limit error.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Which limit refused the connection, if a limit did.
pub(crate) fn limit_of(e: &tokio_postgres::Error) -> Option<&'static str> {
    let db = e.as_db_error()?;
    let message = db.message();
    if *db.code() == SqlState::TOO_MANY_CONNECTIONS {
        return Some(if message.contains("for role") {
            "the role's CONNECTION LIMIT (SQLSTATE 53300)"
        } else if message.contains("for database") {
            "the database's CONNECTION LIMIT (SQLSTATE 53300)"
        } else if message.contains("reserved") {
            "max_connections minus the reserved slots (SQLSTATE 53300)"
        } else {
            "max_connections (SQLSTATE 53300)"
        });
    }
    // PgBouncer answers with its own message (and SQLSTATE 08P01).
    if message.contains("no more connections allowed") {
        return Some("the pooler's max_client_conn");
    }
    if message.contains("max_db_connections") || message.contains("max_user_connections") {
        return Some("the pooler's max_db_connections / max_user_connections");
    }
    None
}

/// Per-host state after limit errors.
#[derive(Default)]
pub(crate) struct LimitBackoff {
    state: Mutex<Option<State>>,
}

struct State {
    until: Instant,
    streak: u32,
    error: ConnectError,
}

impl LimitBackoff {
    /// The last limit error while the back-off lasts.
    pub(crate) fn active(&self, now: Instant) -> Option<ConnectError> {
        let guard = self.state.lock().ok()?;
        guard
            .as_ref()
            .filter(|s| now < s.until)
            .map(|s| s.error.clone())
    }

    /// Records a limit error: the next back-off is twice the last, at most `max`.
    pub(crate) fn hit(&self, error: ConnectError, max: Duration) -> Duration {
        let Ok(mut guard) = self.state.lock() else {
            return Duration::ZERO;
        };
        let streak = guard.as_ref().map_or(0, |s| s.streak.saturating_add(1));
        let wait = FIRST_BACKOFF
            .saturating_mul(1 << streak.min(16))
            .min(max.max(FIRST_BACKOFF));
        *guard = Some(State {
            until: Instant::now() + wait,
            streak,
            error,
        });
        wait
    }

    /// A connection succeeded: the limit no longer applies.
    pub(crate) fn clear(&self) {
        if let Ok(mut guard) = self.state.lock() {
            *guard = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_maximum_and_is_cleared_by_a_success() {
        let b = LimitBackoff::default();
        let err = || ConnectError::ServerTooOld {
            host: "db1".into(),
            port: 5432,
            version: "14.9".into(),
        };
        let max = Duration::from_millis(500);
        let waits: Vec<Duration> = (0..5).map(|_| b.hit(err(), max)).collect();
        assert_eq!(
            waits,
            [100, 200, 400, 500, 500]
                .map(Duration::from_millis)
                .to_vec()
        );
        assert!(b.active(Instant::now()).is_some());
        b.clear();
        assert!(b.active(Instant::now()).is_none());
        assert_eq!(b.hit(err(), max), FIRST_BACKOFF);
    }
}
