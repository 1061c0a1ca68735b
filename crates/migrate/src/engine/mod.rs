//! The runner: connection, advisory lock, plan, execution with retry, status.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use notify_db_config::DatabaseUri;
use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use crate::error::{Error, StatementFailure};
use crate::lock_guard;
use crate::migration::{Direction, Migration};
use crate::options::Options;
use crate::render::{self, Batch, CREATE_JOURNAL_TABLE, CREATE_VERSION_TABLE, NonTxScript};
use crate::set::{MigrationSet, Target};

mod apply;
mod connection;
mod lock;
mod plan;
mod state;

use connection::{Database, Notices, connect, connect_watched};
pub(crate) use connection::{describe, runner_host};
use lock::*;
use plan::*;
use state::*;

pub use lock::Prefetch;
pub(crate) use lock::{Session, unlock};

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

type ProgressFn = dyn Fn(&Applied) + Send + Sync;

/// Runs a [`MigrationSet`] against a database.
#[derive(Clone)]
pub struct Migrator {
    set: Arc<MigrationSet>,
    options: Options,
    progress: Option<Arc<ProgressFn>>,
    /// `None` for [`Migrator::offline`].
    database: Option<Arc<Database>>,
}

impl std::fmt::Debug for Migrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migrator")
            .field("migrations", &self.set.migrations().len())
            .field("options", &self.options)
            .field("database", &self.database.as_ref().map(|d| describe(&d.pg)))
            .finish()
    }
}

impl Migrator {
    /// A runner for `set` against the database `uri` names, with default [`Options`]. It
    /// connects as the URI says, TLS included (`sslmode`, `sslrootcert`); fails when the URI's
    /// TLS settings cannot be used (e.g. an unreadable CA file).
    pub fn new(set: MigrationSet, uri: &DatabaseUri) -> Result<Migrator, Error> {
        let database = Database::of(uri)?;
        Ok(Migrator {
            set: Arc::new(set),
            options: Options::default(),
            progress: None,
            database: Some(Arc::new(database)),
        })
    }

    /// A runner for `set` that never connects: it renders SQL ([`Migrator::render_sql`]);
    /// every method that needs a database fails with [`Error::Offline`].
    pub fn offline(set: MigrationSet) -> Migrator {
        Migrator {
            set: Arc::new(set),
            options: Options::default(),
            progress: None,
            database: None,
        }
    }

    /// The database this runner connects to, or [`Error::Offline`] naming `operation`.
    pub(crate) fn database(&self, operation: &'static str) -> Result<&Arc<Database>, Error> {
        self.database.as_ref().ok_or(Error::Offline { operation })
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: Options) -> Migrator {
        self.options = options;
        self
    }

    /// Calls `f` after each migration applied or reverted (e.g. to print a progress line).
    pub fn on_progress(mut self, f: impl Fn(&Applied) + Send + Sync + 'static) -> Migrator {
        self.progress = Some(Arc::new(f));
        self
    }

    /// The migration set.
    pub fn set(&self) -> &MigrationSet {
        &self.set
    }

    /// The options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Upgrades to `target` (normally [`Target::Head`]) under the advisory lock.
    pub async fn upgrade(&self, target: &Target) -> Result<RunReport, Error> {
        self.run(target, Direction::Up).await
    }

    /// Downgrades to `target` (a revision, [`Target::Base`] or `Relative(-n)`) under the advisory lock.
    pub async fn downgrade(&self, target: &Target) -> Result<RunReport, Error> {
        self.run(target, Direction::Down).await
    }

    /// The revision the database is at (`None`: base). Takes no lock, creates nothing.
    pub async fn current(&self) -> Result<Option<String>, Error> {
        Ok(self.status().await?.current)
    }

    /// The database's state against this set. Takes no lock, creates nothing; fails when the
    /// database is at a revision this set does not know.
    pub async fn status(&self) -> Result<Status, Error> {
        let (client, _) = connect(self.database("read the migration state")?).await?;
        let msgs = client
            .simple_query(&render::queries::tables_exist())
            .await
            .map_err(|e| db("reading the migration tables", e))?;
        let row = rows(&msgs).next();
        let flag = |i| row.and_then(|r| r.get(i)) == Some("t");
        let (has_version, has_journal) = (flag(0), flag(1));
        let state = read_state(&client, &self.set, has_version, has_journal).await?;
        Ok(self.status_from(&state))
    }

    /// Renders the SQL an upgrade or downgrade from `from` (`None`: base) to `target` would run,
    /// with transaction boundaries and version updates, without connecting.
    pub fn render_sql(
        &self,
        from: Option<&str>,
        target: &Target,
        direction: Direction,
    ) -> Result<String, Error> {
        let current = match from {
            None => None,
            Some(id) => Some(self.set.position(id).ok_or_else(|| Error::UnknownTarget {
                target: id.to_owned(),
                reason: "no migration of this set has that id".into(),
            })?),
        };
        let plan = self.plan(current, target, direction)?;
        let host = runner_host();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "-- notify-db-migrate {} {} -> {} (offline)",
            direction.as_str(),
            from.unwrap_or("base"),
            self.id_at(plan.last().map_or(current, |s| s.to))
                .unwrap_or("base")
        );
        let _ = writeln!(out, "{CREATE_VERSION_TABLE};\n{CREATE_JOURNAL_TABLE};");
        let _ = writeln!(
            out,
            "-- timeouts: {} (a migration's own, where it sets one, applies to it alone)",
            self.options.describe_timeouts()
        );
        out.push_str(&render::session_setup(
            self.options.lock_timeout,
            self.options.statement_timeout,
        ));
        let mut prepared = self.wants_prepared(&plan);
        if prepared {
            out.push_str(&render::prepare_bookkeeping(&host));
        }
        for step in &plan {
            let m = &self.set.migrations()[step.index];
            let (from_id, to_id) = (self.id_at(step.from), self.id_at(step.to));
            // The same rule as `run`: after a migration that may DEALLOCATE, no EXECUTE.
            prepared &= !render::may_deallocate(render::statements(m, direction));
            if m.is_transactional() {
                let _ = writeln!(out, "\n-- {} ({})", m.id(), direction.as_str());
                let batch =
                    render::transactional_batch(m, direction, from_id, to_id, &host, prepared);
                out.push_str(&batch.sql);
                out.push('\n');
            } else {
                let _ = writeln!(
                    out,
                    "\n-- {} ({}, no transaction: statement by statement)",
                    m.id(),
                    direction.as_str()
                );
                let script = NonTxScript::new(m, direction, (from_id, to_id), &host, &self.options);
                for s in script.lines() {
                    out.push_str(&s);
                    out.push_str(";\n");
                }
            }
        }
        Ok(out)
    }
}

pub(crate) fn rows(msgs: &[SimpleQueryMessage]) -> impl Iterator<Item = &SimpleQueryRow> {
    msgs.iter().filter_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    })
}

pub(crate) fn db(context: &'static str, source: tokio_postgres::Error) -> Error {
    Error::Db { context, source }
}

fn unexpected(context: &'static str) -> Error {
    Error::NoRow { context }
}
