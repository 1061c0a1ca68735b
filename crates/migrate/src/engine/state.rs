//! What the database holds: `alembic_version` and the journal, read into a [`State`], and what
//! follows from it without another round trip: the status, the checksum check, and whether a
//! run has anything to do.

use std::collections::HashMap;

use tokio_postgres::SimpleQueryMessage;

use super::connection::{db, rows};
use super::plan::plan;
use super::report::{HistoryEntry, RunReport, Status};
use crate::error::Error;
use crate::migration::Direction;
use crate::order::unknown_revision;
use crate::set::{MigrationSet, Target};

/// A run's first read, without the lock: the reply to
/// [`crate::render::queries::unlocked_state`].
pub(super) type FirstRead = Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>;

/// What the engine knows after connecting.
pub(super) struct State {
    pub(super) current: Option<usize>,
    pub(super) current_id: Option<String>,
    /// The last upgrade/downgrade journal row of each revision.
    journal: HashMap<String, JournalRow>,
}

/// A journal row as the state keeps it.
struct JournalRow {
    operation: String,
    checksum: Option<String>,
    applied_at: String,
}

impl State {
    /// The state from the replies to `alembic_version`'s read (column `current_version`) and the
    /// journal's (first column `j_version`), in any order among other replies; fails when the
    /// database is at a revision `set` does not know, or at several.
    pub(super) fn from_replies(
        set: &MigrationSet,
        msgs: &[SimpleQueryMessage],
    ) -> Result<State, Error> {
        let mut versions = Vec::new();
        let mut journal = HashMap::new();
        for r in rows(msgs) {
            match r.columns().first().map(|c| c.name()) {
                Some("current_version") => versions.push(r.get(0).unwrap_or("").to_owned()),
                // Rows come in journal order: a later row replaces an earlier one.
                Some("j_version") => {
                    journal.insert(
                        r.get(0).unwrap_or("").to_owned(),
                        JournalRow {
                            operation: r.get(1).unwrap_or("").to_owned(),
                            checksum: r.get(2).map(str::to_owned),
                            applied_at: r.get(3).unwrap_or("").to_owned(),
                        },
                    );
                }
                _ => {}
            }
        }
        let (current, current_id) = match versions.as_slice() {
            [] => (None, None),
            [v] => match set.position(v) {
                Some(i) => (Some(i), Some(v.clone())),
                None => return Err(unknown_revision(set.migrations(), v)),
            },
            many => {
                return Err(Error::UnknownRevision {
                    current: format!("several heads ({})", many.join(", ")),
                    ahead: false,
                });
            }
        };
        Ok(State {
            current,
            current_id,
            journal,
        })
    }

    /// Every migration of `set` with its state.
    pub(super) fn status(&self, set: &MigrationSet) -> Status {
        let history = set
            .migrations()
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let applied = self.current.is_some_and(|c| i <= c);
                let (applied_at, checksum_matches) = match self.journal.get(m.id()) {
                    Some(r) if applied && r.operation == "upgrade" => (
                        Some(r.applied_at.clone()),
                        r.checksum.as_deref().map(|c| c == m.checksum()),
                    ),
                    _ => (None, None),
                };
                HistoryEntry {
                    id: m.id().to_owned(),
                    applied,
                    applied_at,
                    checksum_matches,
                    no_transaction: !m.is_transactional(),
                }
            })
            .collect();
        Status {
            current: self.current_id.clone(),
            history,
        }
    }

    /// Refuses (or, with `allow_changed`, warns about) an applied migration whose SQL changed
    /// since the journal recorded it.
    pub(super) fn check_checksums(
        &self,
        set: &MigrationSet,
        allow_changed: bool,
    ) -> Result<(), Error> {
        let Some(current) = self.current else {
            return Ok(());
        };
        for m in &set.migrations()[..=current] {
            if let Some(r) = self.journal.get(m.id())
                && r.operation == "upgrade"
                && let Some(recorded) = &r.checksum
                && recorded != m.checksum()
            {
                let e = Error::ChecksumChanged {
                    id: m.id().to_owned(),
                    recorded: recorded.clone(),
                    actual: m.checksum().to_owned(),
                };
                if allow_changed {
                    tracing::warn!("{e} (allowed)");
                } else {
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

/// The report of a run with nothing to do, logged as such.
pub(super) fn nothing_to_do(at: Option<String>) -> RunReport {
    tracing::info!(
        revision = at.as_deref().unwrap_or("base"),
        "nothing to do: the database is at the target"
    );
    RunReport {
        from: at.clone(),
        to: at,
        applied: Vec::new(),
    }
}

/// A run's report when the database is already at `target`, from `first_read` (see
/// [`super::session::Prefetch`]), read without the lock: one round trip after connecting, and no lock to
/// take, confirm and release (a no-op deploy costs about what `psql -c 'SELECT 1'` does;
/// `cargo xtask bench migrate`). Safe unlocked: `alembic_version` only shows committed
/// revisions, and a run in progress elsewhere has not moved it to the target yet. `None`
/// (then the run locks and reads again) when the tables are missing, there is work to do,
/// or anything else needs the locked path to say; an applied migration changed since is
/// refused here too.
pub(super) fn already_at_target(
    set: &MigrationSet,
    allow_changed_checksums: bool,
    first_read: FirstRead,
    target: &Target,
    direction: Direction,
) -> Result<Option<RunReport>, Error> {
    let msgs = match first_read {
        Ok(msgs) => msgs,
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            return Ok(None);
        }
        Err(e) => return Err(db("reading alembic_version and the journal", e)),
    };
    let version = rows(&msgs)
        .next()
        .and_then(|r| r.get(0))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if notify_db_connect::check_server_version(version, "").is_err() {
        return Ok(None);
    }
    let Ok(state) = State::from_replies(set, &msgs) else {
        return Ok(None);
    };
    let nothing_planned =
        plan(set, state.current, target, direction).is_ok_and(|plan| plan.is_empty());
    if !nothing_planned {
        return Ok(None);
    }
    // Refused as the locked run would, without first waiting for a lock it does not need.
    state.check_checksums(set, allow_changed_checksums)?;
    Ok(Some(nothing_to_do(state.current_id)))
}
