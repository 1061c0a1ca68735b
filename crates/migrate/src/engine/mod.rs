//! The runner: one `impl Migrator` holding the verbs, each a sequence of named steps. The
//! database work is in `session.rs` (connect, lock, bookkeeping tables, unlock) and `apply.rs`
//! (a migration's SQL, with retry); what follows from the state without the database is in
//! `state.rs` and `plan.rs`.

use std::sync::Arc;
use std::time::Instant;

use notify_db_config::DatabaseUri;

use crate::error::Error;
use crate::migration::Direction;
use crate::options::Options;
use crate::set::{MigrationSet, Target};

mod apply;
mod connection;
mod plan;
mod report;
mod session;
mod stamp;
mod state;

use apply::apply_step;
use connection::{Database, runner_host};
use plan::{end_of, offline_script, plan, wants_prepared};
use session::{Session, read_unlocked};
use state::{already_at_target, nothing_to_do};

pub(crate) use connection::describe;
pub use report::{Applied, HistoryEntry, RunReport, Status};
pub use session::Prefetch;
pub use stamp::StampReport;

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
        let database = self.database("read the migration state")?;
        let state = read_unlocked(database, &self.set).await?;
        Ok(state.status(&self.set))
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
        let plan = plan(&self.set, current, target, direction)?;
        let host = runner_host();
        Ok(offline_script(
            &self.set,
            &self.options,
            (from, current),
            &plan,
            direction,
            &host,
        ))
    }

    /// Runs `direction` to `target` on the connection a [`Prefetch`] made (to the database it
    /// names): ends there when the unlocked first read shows nothing to do; else locks, runs,
    /// and releases the lock explicitly (through a pooler, closing the connection may not).
    pub async fn run_prefetched(
        &self,
        prefetch: Prefetch,
        target: &Target,
        direction: Direction,
    ) -> Result<RunReport, Error> {
        let (connected, first_read) = prefetch.into_parts()?;
        let allow_changed = self.options.allow_changed_checksums;
        if let Some(report) =
            already_at_target(&self.set, allow_changed, first_read, target, direction)?
        {
            return Ok(report);
        }
        let wait = self.options.advisory_lock_wait;
        let mut session = Session::lock(connected, wait).await?;
        let result = self.run_locked(&mut session, target, direction).await;
        session.unlock(result).await
    }

    /// Writes `target` into `alembic_version` without running any migration: `head`, `base`, a
    /// revision of the set (or a unique prefix of one), or, with `force`, any revision id (one
    /// the set does not know, e.g. to hand the database back to Alembic). Relative targets are
    /// refused. Takes the advisory lock and journals the stamp.
    pub async fn stamp(&self, target: &Target, force: bool) -> Result<StampReport, Error> {
        let to = stamp::revision(&self.set, target, force)?;
        let started = Instant::now();
        let database = self.database("stamp")?;
        let session = Session::open(database, self.options.advisory_lock_wait).await?;
        let result = stamp::write(&session, to, started).await;
        session.unlock(result).await
    }

    /// A run: the unlocked first read, then the locked run.
    async fn run(&self, target: &Target, direction: Direction) -> Result<RunReport, Error> {
        let database = self.database(direction.as_str())?;
        let prefetch = Prefetch::of(Arc::clone(database)).await;
        self.run_prefetched(prefetch, target, direction).await
    }

    /// The run under the lock: ensure the tables and read the state, check the checksums,
    /// plan, prepare the bookkeeping statements, apply each step.
    async fn run_locked(
        &self,
        session: &mut Session,
        target: &Target,
        direction: Direction,
    ) -> Result<RunReport, Error> {
        let state = session.prepare(&self.set, &self.options).await?;
        state.check_checksums(&self.set, self.options.allow_changed_checksums)?;
        let plan = plan(&self.set, state.current, target, direction)?;
        if plan.is_empty() {
            return Ok(nothing_to_do(state.current_id));
        }
        let host = runner_host();
        if wants_prepared(&self.set, &plan) {
            session.prepare_bookkeeping(&host).await?;
        }
        let mut applied = Vec::with_capacity(plan.len());
        for step in &plan {
            let done =
                apply_step(session, &self.set, &self.options, step, direction, &host).await?;
            if let Some(progress) = &self.progress {
                progress(&done);
            }
            applied.push(done);
        }
        Ok(RunReport {
            from: state.current_id,
            to: end_of(&self.set, state.current, &plan).map(str::to_owned),
            applied,
        })
    }

    /// The database this runner connects to, or [`Error::Offline`] naming `operation`.
    pub(crate) fn database(&self, operation: &'static str) -> Result<&Arc<Database>, Error> {
        self.database.as_ref().ok_or(Error::Offline { operation })
    }
}
