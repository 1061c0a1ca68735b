//! Applying a plan's step: a migration in one round trip (or statement by statement when it is
//! non-transactional), with retry on a lock timeout.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::connection::{connect, db, rows};
use super::plan::{PlanStep, id_at};
use super::report::Applied;
use super::session::Session;
use crate::error::{Error, StatementFailure};
use crate::migration::{Direction, Migration};
use crate::options::Options;
use crate::render::{self, Batch, NonTxScript};
use crate::set::MigrationSet;

/// Applies or reverts `step` of a plan in `direction` on `session`, retrying on lock timeouts
/// (55P03) as `options` say, resuming at the failed migration; `host` is what the journal
/// records.
pub(super) async fn apply_step(
    session: &mut Session,
    set: &MigrationSet,
    options: &Options,
    step: &PlanStep,
    direction: Direction,
    host: &str,
) -> Result<Applied, Error> {
    let m = &set.migrations()[step.index];
    // Statements that may DEALLOCATE ours: this and later steps use plain SQL.
    session.prepared &= !render::may_deallocate(render::statements(m, direction));
    let applying = Step {
        m,
        dir: direction,
        ids: (id_at(set, step.from), id_at(set, step.to)),
        host,
        options,
    };
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        let r = if m.is_transactional() {
            apply_transactional(session, &applying).await
        } else {
            apply_non_transactional(session, &applying).await
        };
        match r {
            Ok(()) => break,
            Err(StepError::LockTimeout { blockers }) if attempt < options.max_attempts => {
                tracing::warn!(
                    migration = m.id(),
                    attempt,
                    max_attempts = options.max_attempts,
                    blockers = %blockers,
                    "lock timeout (55P03); retrying in {:?}",
                    options.retry_delay
                );
                tokio::time::sleep(options.retry_delay).await;
                attempt += 1;
            }
            Err(StepError::LockTimeout { blockers }) => {
                return Err(Error::LockTimeout {
                    id: m.id().to_owned(),
                    attempts: attempt,
                    blockers,
                });
            }
            Err(StepError::Fatal(e)) => return Err(e),
        }
    }
    let done = Applied {
        id: m.id().to_owned(),
        direction,
        duration: started.elapsed(),
    };
    tracing::info!(
        migration = m.id(),
        direction = direction.as_str(),
        ms = %format_args!("{:.3}", done.duration.as_secs_f64() * 1000.0),
        "migration {}",
        if direction == Direction::Up {
            "applied"
        } else {
            "reverted"
        }
    );
    Ok(done)
}

/// A plan step's migration with what both ways of applying it need.
struct Step<'a> {
    m: &'a Migration,
    dir: Direction,
    /// The revisions the journal moves from and to.
    ids: (Option<&'a str>, Option<&'a str>),
    /// What the journal records as the host.
    host: &'a str,
    options: &'a Options,
}

impl Step<'_> {
    /// The lock timeout the migration's statements are watched with: its own, or the runner's.
    fn lock_timeout(&self) -> Duration {
        self.m
            .own_lock_timeout()
            .unwrap_or(self.options.lock_timeout)
    }
}

async fn apply_transactional(s: &mut Session, step: &Step<'_>) -> Result<(), StepError> {
    let Step { m, dir, ids, .. } = *step;
    let batch = render::transactional_batch(m, dir, ids.0, ids.1, step.host, s.prepared);
    let watch = step.lock_timeout();
    s.notices.clear();
    let (r, blockers) = exec_watched(s, &batch.sql, watch).await;
    if let Err(e) = r {
        // The batch's explicit transaction stays open in the aborted state.
        let _ = s.client.batch_execute(render::queries::ROLLBACK).await;
        let failure = step_error(m, dir, e, Some(&batch), blockers);
        // "no transaction in progress" from that ROLLBACK: the migration ended ours.
        return match (s.notices.state_error(m.id(), ""), failure) {
            (Some(e), StepError::Fatal(f)) => {
                tracing::error!(migration = m.id(), "{f}");
                Err(e.into())
            }
            (_, failure) => Err(failure),
        };
    }
    s.notices
        .state_error(m.id(), "")
        .map_or(Ok(()), |e| Err(e.into()))
}

async fn apply_non_transactional(s: &mut Session, step: &Step<'_>) -> Result<(), StepError> {
    let Step { m, dir, ids, .. } = *step;
    let started = Instant::now();
    let script = NonTxScript::new(m, dir, ids, step.host, step.options);
    let statements = script.statements();
    let done = if dir == Direction::Up {
        s.completed_steps(m.id()).await?
    } else {
        0
    };
    if done > 0 {
        tracing::info!(
            migration = m.id(),
            completed = done,
            total = statements.len(),
            "resuming a non-transactional migration after its last completed statement"
        );
    }
    if dir == Direction::Up {
        drop_own_invalid_indexes(s, m, done).await?;
    }
    let lock_timeout = step.lock_timeout();
    if let Some(own) = &script.own_settings {
        s.exec(own, "setting the migration's own timeouts").await?;
    }
    let mut result = Ok(());
    s.notices.clear();
    for (i, stmt) in statements.iter().enumerate().skip(done) {
        let t = Instant::now();
        let (r, blockers) = exec_watched(s, stmt, lock_timeout).await;
        if let Err(e) = r {
            result = Err(step_error(m, dir, e, None, blockers).with_statement(stmt));
            break;
        }
        if let Some(e) = s.notices.state_error(m.id(), stmt) {
            result = Err(e.into());
            break;
        }
        if let Some(j) = script.step_done(i, t.elapsed()) {
            s.exec(&j, "journaling a completed statement").await?;
        }
    }
    if let Some(restore) = &script.restore_settings {
        s.exec(restore, "restoring the runner's timeouts").await?;
    }
    result?;
    let v = script.version_batch(started.elapsed());
    if let Err(e) = s.client.batch_execute(&v).await {
        let _ = s.client.batch_execute(render::queries::ROLLBACK).await;
        return Err(step_error(m, dir, (e, 0), None, String::new()).with_statement(&v));
    }
    Ok(())
}

/// Drops INVALID indexes that pending statements of `m` create (left by a failed or killed
/// `CREATE INDEX CONCURRENTLY`); reports other INVALID indexes.
async fn drop_own_invalid_indexes(s: &Session, m: &Migration, done: usize) -> Result<(), Error> {
    let msgs = s
        .client
        .simple_query(render::queries::INVALID_INDEXES)
        .await
        .map_err(|e| db("looking for INVALID indexes", e))?;
    let ours: Vec<String> = m.up_statements()[done..]
        .iter()
        .filter_map(|s| render::created_index_name(s))
        .collect();
    for r in rows(&msgs) {
        let (Some(schema), Some(name)) = (r.get(0), r.get(1)) else {
            continue;
        };
        if ours.iter().any(|o| o == name) {
            tracing::warn!(
                migration = m.id(),
                index = %format!("{schema}.{name}"),
                "dropping the INVALID index a failed CREATE INDEX CONCURRENTLY of this migration left, before retrying"
            );
            let q = render::queries::drop_invalid_index(schema, name);
            s.exec(&q, "dropping an INVALID index").await?;
        } else {
            tracing::warn!(
                index = %format!("{schema}.{name}"),
                "INVALID index present (a failed CREATE INDEX CONCURRENTLY, or one still building); not created by this migration, left alone"
            );
        }
    }
    Ok(())
}

/// Why one attempt at a step failed.
enum StepError {
    LockTimeout { blockers: String },
    Fatal(Error),
}

impl From<Error> for StepError {
    fn from(e: Error) -> StepError {
        StepError::Fatal(e)
    }
}

impl StepError {
    fn with_statement(self, stmt: &str) -> StepError {
        match self {
            StepError::Fatal(Error::Migration(mut f)) => {
                f.statement = stmt.to_owned();
                StepError::Fatal(Error::Migration(f))
            }
            other => other,
        }
    }
}

fn step_error(
    m: &Migration,
    dir: Direction,
    (e, completed): (tokio_postgres::Error, usize),
    batch: Option<&Batch>,
    blockers: String,
) -> StepError {
    let Some(dbe) = e.as_db_error() else {
        return StepError::Fatal(Error::Db {
            context: "running a migration (connection lost?)",
            source: e,
        });
    };
    if dbe.code() == &tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE {
        let blockers = if blockers.is_empty() {
            "none seen (the blocker went away or was too quick to sample)".to_owned()
        } else {
            blockers
        };
        return StepError::LockTimeout { blockers };
    }
    let statements = render::statements(m, dir);
    let raw_pos = match dbe.position() {
        Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some(*p),
        _ => None,
    };
    let (statement, position) = match batch {
        // The commands that completed before the error say which statement failed.
        Some(b) => match completed
            .checked_sub(b.leading)
            .filter(|&i| i < statements.len())
        {
            Some(i) => (
                statements[i].clone(),
                raw_pos.and_then(|p| b.position_in(i, p)),
            ),
            None => (b.sql.clone(), raw_pos),
        },
        None => (String::new(), raw_pos),
    };
    StepError::Fatal(Error::Migration(Box::new(StatementFailure {
        id: m.id().to_owned(),
        statement,
        message: dbe.message().to_owned(),
        code: dbe.code().code().to_owned(),
        position,
        detail: dbe.detail().map(str::to_owned),
    })))
}

/// A batch's outcome: `Err((error, n))` when it failed after `n` commands completed.
type BatchResult = Result<(), (tokio_postgres::Error, usize)>;

/// Sends `sql` as one simple query and counts the commands that complete, so that a failure
/// names its statement even when the server gives no position.
async fn run_counting(client: &Client, sql: &str) -> BatchResult {
    let stream = client.simple_query_raw(sql).await.map_err(|e| (e, 0))?;
    let mut stream = std::pin::pin!(stream);
    let mut completed = 0;
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(SimpleQueryMessage::CommandComplete(_)) => completed += 1,
            Ok(_) => {}
            Err(e) => return Err((e, completed)),
        }
    }
    Ok(())
}

/// Runs `sql`, sampling `pg_blocking_pids` on a side connection while it waits longer than half
/// the lock timeout; returns the last blockers seen.
async fn exec_watched(s: &mut Session, sql: &str, lock_timeout: Duration) -> (BatchResult, String) {
    let every = (lock_timeout / 2).max(Duration::from_millis(50));
    let fut = run_counting(&s.client, sql);
    tokio::pin!(fut);
    let mut blockers = String::new();
    loop {
        tokio::select! {
            r = &mut fut => return (r, blockers),
            () = tokio::time::sleep(every) => {
                if s.side.is_none() {
                    s.side = connect(&s.database).await.ok().map(|(c, _)| c);
                }
                if let Some(side) = &s.side {
                    let q = render::queries::blockers_of(s.pid);
                    if let Ok(msgs) = side.simple_query(&q).await {
                        let b = describe_sessions(&msgs);
                        if !b.is_empty() {
                            blockers = b;
                        }
                    }
                }
            }
        }
    }
}

/// The sessions of a [`render::queries::blockers_of`] reply, in words.
fn describe_sessions(msgs: &[SimpleQueryMessage]) -> String {
    rows(msgs)
        .map(|r| {
            format!(
                "pid {} ({}, since {}): {}",
                r.get(0).unwrap_or("?"),
                r.get(1).unwrap_or("?"),
                r.get(2).unwrap_or("?"),
                r.get(3).unwrap_or("").replace('\n', " ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
