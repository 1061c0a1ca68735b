//! What the database holds: `alembic_version`, the journal, and the status built from them.

use super::*;

/// What the engine knows after connecting.
pub(super) struct State {
    pub(super) current: Option<usize>,
    pub(super) current_id: Option<String>,
    /// The last upgrade/downgrade journal row of each revision.
    pub(super) journal: HashMap<String, JournalRow>,
}

pub(super) struct JournalRow {
    pub(super) operation: String,
    pub(super) checksum: Option<String>,
    pub(super) applied_at: String,
}

pub(super) async fn read_state(
    client: &Client,
    set: &MigrationSet,
    has_version: bool,
    has_journal: bool,
) -> Result<State, Error> {
    let mut q = String::new();
    if has_version {
        q.push_str(&render::queries::read_version());
        q.push_str(";\n");
    }
    if has_journal {
        q.push_str(&render::queries::read_journal(true));
    }
    if q.is_empty() {
        return state_from(set, &[]);
    }
    let msgs = client
        .simple_query(&q)
        .await
        .map_err(|e| db("reading alembic_version and the journal", e))?;
    state_from(set, &msgs)
}

fn state_from(set: &MigrationSet, msgs: &[SimpleQueryMessage]) -> Result<State, Error> {
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
            None => return Err(crate::order::unknown_revision(set.migrations(), v)),
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

fn last_row<'a>(journal: &'a HashMap<String, JournalRow>, id: &str) -> Option<&'a JournalRow> {
    journal.get(id)
}

/// How many statements of a non-transactional migration completed since it was last applied or reverted.
pub(super) async fn completed_steps(client: &Client, id: &str) -> Result<usize, Error> {
    let q = render::queries::completed_steps(id);
    let msgs = client
        .simple_query(&q)
        .await
        .map_err(|e| db("reading the journal", e))?;
    Ok(rows(&msgs)
        .next()
        .and_then(|r| r.get(0))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

impl Migrator {
    pub(super) fn status_from(&self, state: &State) -> Status {
        let history = self
            .set
            .migrations()
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let applied = state.current.is_some_and(|c| i <= c);
                let last = last_row(&state.journal, m.id());
                let (applied_at, checksum_matches) = match last {
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
            current: state.current_id.clone(),
            history,
        }
    }

    /// Session settings, tables, and the current state, in one round trip.
    pub(super) async fn prepare(
        &self,
        client: &Client,
        existing: (bool, bool),
    ) -> Result<State, Error> {
        let mut q =
            render::session_setup(self.options.lock_timeout, self.options.statement_timeout);
        q.push_str(render::queries::CONNECTION_CHECK);
        q.push_str(";\n");
        // IF NOT EXISTS still guards a table created by another runner after we looked.
        if !existing.0 {
            q.push_str(CREATE_VERSION_TABLE);
            q.push_str(";\n");
        }
        if !existing.1 {
            q.push_str(CREATE_JOURNAL_TABLE);
            q.push_str(";\n");
        }
        q.push_str(&render::queries::read_version());
        q.push_str(";\n");
        q.push_str(&render::queries::read_journal(false));
        let msgs = client
            .simple_query(&q)
            .await
            .map_err(|e| db("creating or reading alembic_version and the journal", e))?;
        state_from(&self.set, &msgs)
    }

    /// A run's report when the database is already at `target`, from `first_read` (see
    /// [`Prefetch`]), read without the lock: one round trip after connecting, and no lock to
    /// take, confirm and release (a no-op deploy costs about what `psql -c 'SELECT 1'` does;
    /// `cargo xtask bench migrate`). Safe unlocked: `alembic_version` only shows committed
    /// revisions, and a run in progress elsewhere has not moved it to the target yet. `None`
    /// (then the run locks and reads again) when the tables are missing, there is work to do,
    /// or anything else needs the locked path to say; an applied migration changed since is
    /// refused here too.
    pub(super) fn already_at_target(
        &self,
        first_read: Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>,
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
        let Ok(state) = state_from(&self.set, &msgs) else {
            return Ok(None);
        };
        let nothing_planned = self
            .plan(state.current, target, direction)
            .is_ok_and(|plan| plan.is_empty());
        if !nothing_planned {
            return Ok(None);
        }
        // Refused as the locked run would, without first waiting for a lock it does not need.
        self.check_checksums(&state)?;
        Ok(Some(nothing_to_do(state.current_id)))
    }

    pub(super) fn check_checksums(&self, state: &State) -> Result<(), Error> {
        let Some(current) = state.current else {
            return Ok(());
        };
        for m in &self.set.migrations()[..=current] {
            if let Some(r) = last_row(&state.journal, m.id())
                && r.operation == "upgrade"
                && let Some(recorded) = &r.checksum
                && recorded != m.checksum()
            {
                let e = Error::ChecksumChanged {
                    id: m.id().to_owned(),
                    recorded: recorded.clone(),
                    actual: m.checksum().to_owned(),
                };
                if self.options.allow_changed_checksums {
                    tracing::warn!("{e} (allowed)");
                } else {
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}
