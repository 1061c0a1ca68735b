//! What the runner reports: the migrations a run applied or reverted, and a database's status.

use std::time::Duration;

use crate::migration::Direction;

/// One migration applied or reverted.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The migration id.
    pub id: String,
    /// Up or down.
    pub direction: Direction,
    /// Wall time, retries included.
    pub duration: Duration,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// Revision before the run (`None`: base).
    pub from: Option<String>,
    /// Revision after it.
    pub to: Option<String>,
    /// The migrations applied or reverted, in order.
    pub applied: Vec<Applied>,
}

/// One line of `history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The migration id.
    pub id: String,
    /// Whether the database is at or past it.
    pub applied: bool,
    /// When the journal says it was last applied (`None`: not applied, or applied before the journal existed).
    pub applied_at: Option<String>,
    /// `Some(false)` when the journal's checksum differs from the code's.
    pub checksum_matches: Option<bool>,
    /// True for a non-transactional migration.
    pub no_transaction: bool,
}

/// A database's migration state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// What `alembic_version` holds (`None`: base or no table).
    pub current: Option<String>,
    /// Every migration of the set with its state.
    pub history: Vec<HistoryEntry>,
}

impl Status {
    /// Ids of the migrations not applied yet.
    pub fn pending(&self) -> Vec<&str> {
        self.history
            .iter()
            .filter(|h| !h.applied)
            .map(|h| h.id.as_str())
            .collect()
    }
}
