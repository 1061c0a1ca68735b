//! The plan: which migrations a run applies or reverts, and their offline rendering.

use std::fmt::Write as _;

use crate::error::Error;
use crate::migration::Direction;
use crate::options::Options;
use crate::render::{self, CREATE_JOURNAL_TABLE, CREATE_VERSION_TABLE, NonTxScript};
use crate::set::{MigrationSet, Target};

/// One migration of a plan: its position in the set, and the positions the database moves
/// from and to (`None`: base).
pub(super) struct PlanStep {
    pub(super) index: usize,
    pub(super) from: Option<usize>,
    pub(super) to: Option<usize>,
}

/// The id of the migration at `pos` (`None`: base).
pub(super) fn id_at(set: &MigrationSet, pos: Option<usize>) -> Option<&str> {
    pos.map(|i| set.migrations()[i].id())
}

/// Whether a run of `plan` prepares the bookkeeping statements: when it has a transactional
/// step (a plan of only non-transactional steps, or an empty one, skips the round trip).
pub(super) fn wants_prepared(set: &MigrationSet, plan: &[PlanStep]) -> bool {
    plan.iter()
        .any(|s| set.migrations()[s.index].is_transactional())
}

/// The revision the database is at after `plan`, which starts at `current`.
pub(super) fn end_of<'a>(
    set: &'a MigrationSet,
    current: Option<usize>,
    plan: &[PlanStep],
) -> Option<&'a str> {
    id_at(set, plan.last().map_or(current, |s| s.to))
}

/// The steps from `current` to `target` in `direction`.
pub(super) fn plan(
    set: &MigrationSet,
    current: Option<usize>,
    target: &Target,
    direction: Direction,
) -> Result<Vec<PlanStep>, Error> {
    let goal = set.resolve(target, current)?;
    let here = current.map_or(0, |c| c + 1);
    let there = goal.map_or(0, |g| g + 1);
    let mut steps = Vec::new();
    match direction {
        Direction::Up => {
            if there < here {
                return Err(Error::UnknownTarget {
                    target: target.to_string(),
                    reason: format!(
                        "it is below the current revision {}: use downgrade",
                        id_at(set, current).unwrap_or("base")
                    ),
                });
            }
            for i in here..there {
                steps.push(PlanStep {
                    index: i,
                    from: i.checked_sub(1),
                    to: Some(i),
                });
            }
        }
        Direction::Down => {
            if !set.downs_read() {
                return Err(Error::DownsNotRead);
            }
            if there > here {
                return Err(Error::UnknownTarget {
                    target: target.to_string(),
                    reason: format!(
                        "it is above the current revision {}: use upgrade",
                        id_at(set, current).unwrap_or("base")
                    ),
                });
            }
            for i in (there..here).rev() {
                let m = &set.migrations()[i];
                if m.down_statements().is_none() {
                    return Err(Error::NoDown {
                        id: m.id().to_owned(),
                    });
                }
                steps.push(PlanStep {
                    index: i,
                    from: Some(i),
                    to: i.checked_sub(1),
                });
            }
        }
    }
    Ok(steps)
}

/// The SQL a run of `plan` from `from` (at position `current`) sends, with transaction
/// boundaries and version updates, for `--sql`; `host` is what the journal rows record.
pub(super) fn offline_script(
    set: &MigrationSet,
    options: &Options,
    (from, current): (Option<&str>, Option<usize>),
    plan: &[PlanStep],
    direction: Direction,
    host: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "-- notify-db-migrate {} {} -> {} (offline)",
        direction.as_str(),
        from.unwrap_or("base"),
        end_of(set, current, plan).unwrap_or("base")
    );
    let _ = writeln!(out, "{CREATE_VERSION_TABLE};\n{CREATE_JOURNAL_TABLE};");
    let _ = writeln!(
        out,
        "-- timeouts: {} (a migration's own, where it sets one, applies to it alone)",
        options.describe_timeouts()
    );
    out.push_str(&render::session_setup(
        options.lock_timeout,
        options.statement_timeout,
    ));
    let mut prepared = wants_prepared(set, plan);
    if prepared {
        out.push_str(&render::prepare_bookkeeping(host));
    }
    for step in plan {
        let m = &set.migrations()[step.index];
        let (from_id, to_id) = (id_at(set, step.from), id_at(set, step.to));
        // The same rule as a run: after a migration that may DEALLOCATE, no EXECUTE.
        prepared &= !render::may_deallocate(render::statements(m, direction));
        if m.is_transactional() {
            let _ = writeln!(out, "\n-- {} ({})", m.id(), direction.as_str());
            let batch = render::transactional_batch(m, direction, from_id, to_id, host, prepared);
            out.push_str(&batch.sql);
            out.push('\n');
        } else {
            let _ = writeln!(
                out,
                "\n-- {} ({}, no transaction: statement by statement)",
                m.id(),
                direction.as_str()
            );
            let script = NonTxScript::new(m, direction, (from_id, to_id), host, options);
            for s in script.lines() {
                out.push_str(&s);
                out.push_str(";\n");
            }
        }
    }
    out
}
