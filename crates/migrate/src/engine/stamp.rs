//! `stamp REV`, as Alembic's: set `alembic_version` to a revision without running anything.
//!
//! It runs under the migration advisory lock and in one transaction with its journal row
//! (`operation = 'stamp'`), so a concurrent runner never sees half of it. It works whatever the
//! database is at, a revision this set does not know included (that is what it is for: taking
//! over a database, or handing one back to Alembic).

use std::time::Instant;

use super::connection::{db, rows, runner_host};
use super::session::Session;
use crate::error::Error;
use crate::migration::valid_id;
use crate::render::{self, Elapsed};
use crate::set::{MigrationSet, Target};

/// What a stamp did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampReport {
    /// What `alembic_version` held before (several rows joined with `, `; `None`: base).
    pub from: Option<String>,
    /// What it holds now (`None`: base).
    pub to: Option<String>,
}

/// What the journal row of a stamp to base records as its revision.
const BASE: &str = "base";

/// Writes `to` into `alembic_version` with its journal row, on a session holding the lock; the
/// stamp began at `started`.
pub(super) async fn write(
    session: &Session,
    to: Option<String>,
    started: Instant,
) -> Result<StampReport, Error> {
    let client = &session.client;
    let mut setup = String::new();
    session.push_missing_tables(&mut setup);
    setup.push_str(&render::queries::read_versions());
    let msgs = client
        .simple_query(&setup)
        .await
        .map_err(|e| db("creating or reading alembic_version", e))?;
    let before: Vec<String> = rows(&msgs)
        .filter_map(|r| r.get(0).map(str::to_owned))
        .collect();
    let from = (!before.is_empty()).then(|| before.join(", "));
    let journal_row = render::journal_insert(
        to.as_deref().unwrap_or(BASE),
        "stamp",
        None,
        None,
        Elapsed::Measured(started.elapsed()),
        &runner_host(),
    );
    let sql = render::stamp(to.as_deref(), &journal_row);
    if let Err(e) = client.batch_execute(&sql).await {
        let _ = client.batch_execute(render::queries::ROLLBACK).await;
        return Err(db("stamping alembic_version", e));
    }
    tracing::info!(
        from = from.as_deref().unwrap_or(BASE),
        to = to.as_deref().unwrap_or(BASE),
        "stamped: alembic_version rewritten, no migration run"
    );
    Ok(StampReport { from, to })
}

/// The revision `target` stamps (`None`: base); `force` allows one `set` does not know.
pub(super) fn revision(
    set: &MigrationSet,
    target: &Target,
    force: bool,
) -> Result<Option<String>, Error> {
    match target {
        Target::Relative(_) => Err(Error::UnknownTarget {
            target: target.to_string(),
            reason: "stamp takes a revision, head or base, not a relative step".into(),
        }),
        Target::Revision(rev) if force && set.get(rev).is_none() => {
            if valid_id(rev) {
                Ok(Some(rev.clone()))
            } else {
                Err(Error::UnknownTarget {
                    target: rev.clone(),
                    reason: "not a usable revision id (1 to 32 ASCII letters, digits, _ and -)"
                        .into(),
                })
            }
        }
        _ => match set.resolve(target, None) {
            Ok(pos) => Ok(pos.map(|i| set.migrations()[i].id().to_owned())),
            Err(Error::UnknownTarget { target, reason }) => Err(Error::UnknownTarget {
                target,
                reason: format!("{reason}; stamp --force writes it anyway"),
            }),
            Err(e) => Err(e),
        },
    }
}
