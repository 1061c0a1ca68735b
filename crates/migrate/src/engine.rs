//! The runner: connection, advisory lock, plan, execution with retry, status.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use notify_db_config::Tls;
use notify_db_config::{MIN_SERVER_VERSION_NUM, MigrationSettings};
use postgres_protocol::escape::escape_identifier;
use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use crate::error::{Error, StatementFailure};
use crate::lock_guard;
use crate::migration::{Migration, MigrationSet, Target};
use crate::render::{
    self, Batch, CREATE_JOURNAL_TABLE, CREATE_VERSION_TABLE, Direction, Elapsed, JOURNAL_TABLE, lit,
};
use crate::txcontrol::{self, Notices};

/// Alembic's advisory lock id: `b"alembic\0"` read as a big-endian i64.
pub const ADVISORY_LOCK_ID: i64 = i64::from_be_bytes(*b"alembic\0");

/// How long a connection attempt may take in all (TCP, authentication).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait between advisory-lock holder reports.
const HOLDER_LOG_EVERY: Duration = Duration::from_secs(5);

/// Runner options (from [`MigrationSettings`], or set by hand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `lock_timeout` for every migration that does not set its own (1 s).
    pub lock_timeout: Duration,
    /// `statement_timeout` for every migration that does not set its own; `None` (the default,
    /// as Alembic's runner) runs migrations without one.
    pub statement_timeout: Option<Duration>,
    /// Attempts in all at a migration that hits lock timeouts (55P03), resuming at the failed
    /// migration each time (10, as the reference's `retry_on_lock_error(max_retries=10)`).
    pub max_attempts: u32,
    /// Delay between those attempts (10 s).
    pub retry_delay: Duration,
    /// Give up waiting for the advisory lock after this long; `None` waits forever.
    pub advisory_lock_wait: Option<Duration>,
    /// Run even when an applied migration's SQL changed since (default: refuse).
    pub allow_changed_checksums: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            lock_timeout: Duration::from_millis(1000),
            statement_timeout: None,
            max_attempts: 10,
            retry_delay: Duration::from_secs(10),
            advisory_lock_wait: None,
            allow_changed_checksums: false,
        }
    }
}

impl Options {
    /// Options from the project's migration settings.
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
        render::describe_timeouts(self.lock_timeout, self.statement_timeout)
    }
}

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
    tls: Tls,
}

impl std::fmt::Debug for Migrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migrator")
            .field("migrations", &self.set.migrations().len())
            .field("options", &self.options)
            .finish()
    }
}

/// What the engine knows after connecting.
struct State {
    current: Option<usize>,
    current_id: Option<String>,
    /// The last upgrade/downgrade journal row of each revision.
    journal: HashMap<String, JournalRow>,
}

struct JournalRow {
    operation: String,
    checksum: Option<String>,
    applied_at: String,
}

/// A migration connection holding the advisory lock.
pub(crate) struct Session {
    pub(crate) client: Client,
    pid: i32,
    pg: tokio_postgres::Config,
    tls: Tls,
    /// The server's WARNINGs and NOTICEs on `client`.
    notices: Notices,
    side: Option<Client>,
    /// Whether `alembic_version` / the journal existed when the runner connected.
    pub(crate) tables: (bool, bool),
    /// Whether [`render::prepare_bookkeeping`]'s statements are prepared on `client`.
    prepared: bool,
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

impl Migrator {
    /// A runner for `set` with default [`Options`].
    pub fn new(set: MigrationSet) -> Migrator {
        Migrator {
            set: Arc::new(set),
            options: Options::default(),
            progress: None,
            tls: Tls::Off,
        }
    }

    /// Connects with this TLS connector (from [`notify_db_config::DatabaseUri::tls`], which
    /// follows the URI's `sslmode`); without it the engine connects without TLS.
    pub fn with_tls(mut self, tls: Tls) -> Migrator {
        self.tls = tls;
        self
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
    pub async fn upgrade(
        &self,
        pg: &tokio_postgres::Config,
        target: &Target,
    ) -> Result<RunReport, Error> {
        self.run(pg, target, Direction::Up).await
    }

    /// Downgrades to `target` (a revision, [`Target::Base`] or `Relative(-n)`) under the advisory lock.
    pub async fn downgrade(
        &self,
        pg: &tokio_postgres::Config,
        target: &Target,
    ) -> Result<RunReport, Error> {
        self.run(pg, target, Direction::Down).await
    }

    /// The revision the database is at (`None`: base). Takes no lock, creates nothing.
    pub async fn current(&self, pg: &tokio_postgres::Config) -> Result<Option<String>, Error> {
        Ok(self.status(pg).await?.current)
    }

    /// The database's state against this set. Takes no lock, creates nothing; fails when the
    /// database is at a revision this set does not know.
    pub async fn status(&self, pg: &tokio_postgres::Config) -> Result<Status, Error> {
        let (client, _) = connect(pg, &self.tls).await?;
        let msgs = client
            .simple_query(
                "SELECT to_regclass('alembic_version') IS NOT NULL AS has_version, \
                 to_regclass('notify_db_migration_journal') IS NOT NULL AS has_journal",
            )
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
                for s in self.non_tx_script(m, direction, from_id, to_id, &host) {
                    out.push_str(&s);
                    out.push_str(";\n");
                }
            }
        }
        Ok(out)
    }

    /// Whether a run of `plan` prepares the bookkeeping statements: when it has a transactional
    /// step (a plan of only non-transactional steps, or an empty one, skips the round trip).
    fn wants_prepared(&self, plan: &[PlanStep]) -> bool {
        plan.iter()
            .any(|s| self.set.migrations()[s.index].is_transactional())
    }

    fn id_at(&self, pos: Option<usize>) -> Option<&str> {
        pos.map(|i| self.set.migrations()[i].id())
    }

    /// The statements of a non-transactional step as separate strings, for offline rendering.
    fn non_tx_script(
        &self,
        m: &Migration,
        dir: Direction,
        from: Option<&str>,
        to: Option<&str>,
        host: &str,
    ) -> Vec<String> {
        let mut v = Vec::new();
        let (own, restore) = render::own_session_settings(m, &self.options);
        v.extend(own);
        let statements = render::statements(m, dir);
        for (i, s) in statements.iter().enumerate() {
            v.push(s.clone());
            if dir == Direction::Up {
                v.push(render::journal_insert(
                    m.id(),
                    "step",
                    Some(i),
                    None,
                    Elapsed::Measured(Duration::ZERO),
                    host,
                ));
            }
        }
        v.extend(restore);
        v.push(self.version_batch(m, dir, from, to, host, Duration::ZERO));
        v
    }

    fn version_batch(
        &self,
        m: &Migration,
        dir: Direction,
        from: Option<&str>,
        to: Option<&str>,
        host: &str,
        took: Duration,
    ) -> String {
        let checksum = (dir == Direction::Up).then(|| m.checksum());
        format!(
            "BEGIN;\n{};\n{};\nCOMMIT",
            render::version_update(from, to),
            render::journal_insert(
                m.id(),
                dir.as_str(),
                None,
                checksum,
                Elapsed::Measured(took),
                host
            )
        )
    }

    fn status_from(&self, state: &State) -> Status {
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

    fn plan(
        &self,
        current: Option<usize>,
        target: &Target,
        direction: Direction,
    ) -> Result<Vec<PlanStep>, Error> {
        let goal = self.set.resolve(target, current)?;
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
                            self.id_at(current).unwrap_or("base")
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
                if !self.set.downs_read() {
                    return Err(Error::DownsNotRead);
                }
                if there > here {
                    return Err(Error::UnknownTarget {
                        target: target.to_string(),
                        reason: format!(
                            "it is above the current revision {}: use upgrade",
                            self.id_at(current).unwrap_or("base")
                        ),
                    });
                }
                for i in (there..here).rev() {
                    let m = &self.set.migrations()[i];
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

    /// Runs under the lock, which is then released explicitly (see [`lock_guard`]).
    async fn run(
        &self,
        pg: &tokio_postgres::Config,
        target: &Target,
        direction: Direction,
    ) -> Result<RunReport, Error> {
        let mut session = self.lock(pg).await?;
        let result = self.run_locked(&mut session, target, direction).await;
        unlock(session, result).await
    }

    async fn run_locked(
        &self,
        session: &mut Session,
        target: &Target,
        direction: Direction,
    ) -> Result<RunReport, Error> {
        let state = self.prepare(&session.client, session.tables).await?;
        self.check_checksums(&state)?;
        let plan = self.plan(state.current, target, direction)?;
        let from = state.current_id.clone();
        let host = runner_host();
        let mut applied = Vec::with_capacity(plan.len());
        if plan.is_empty() {
            tracing::info!(
                revision = from.as_deref().unwrap_or("base"),
                "nothing to do: the database is at the target"
            );
        }
        if self.wants_prepared(&plan) {
            exec(
                &session.client,
                &render::prepare_bookkeeping(&host),
                "preparing the version update and journal statements",
            )
            .await?;
            session.prepared = true;
        }
        for step in &plan {
            let m = &self.set.migrations()[step.index];
            // Statements that may DEALLOCATE ours: this and later steps use plain SQL.
            session.prepared &= !render::may_deallocate(render::statements(m, direction));
            let started = Instant::now();
            let mut attempt = 1;
            loop {
                let r = if m.is_transactional() {
                    self.apply_transactional(session, m, direction, step, &host)
                        .await
                } else {
                    self.apply_non_transactional(session, m, direction, step, &host)
                        .await
                };
                match r {
                    Ok(()) => break,
                    Err(StepError::LockTimeout { blockers })
                        if attempt < self.options.max_attempts =>
                    {
                        tracing::warn!(
                            migration = m.id(),
                            attempt,
                            max_attempts = self.options.max_attempts,
                            blockers = %blockers,
                            "lock timeout (55P03); retrying in {:?}",
                            self.options.retry_delay
                        );
                        tokio::time::sleep(self.options.retry_delay).await;
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
            if let Some(p) = &self.progress {
                p(&done);
            }
            applied.push(done);
        }
        let to = plan
            .last()
            .map_or(from.clone(), |s| self.id_at(s.to).map(str::to_owned));
        Ok(RunReport { from, to, applied })
    }

    /// Connects and takes the advisory lock, polling with back-off. Every holder of the
    /// returned session ends it with [`unlock`].
    pub(crate) async fn lock(&self, pg: &tokio_postgres::Config) -> Result<Session, Error> {
        let (client, notices, target) = connect_watched(pg, &self.tls).await?;
        let q = format!(
            "SELECT current_setting('server_version_num')::int AS v, current_setting('server_version') AS sv, \
             pg_backend_pid() AS pid, pg_try_advisory_lock({ADVISORY_LOCK_ID}) AS locked, \
             to_regclass('alembic_version') IS NOT NULL AS hv, \
             to_regclass('notify_db_migration_journal') IS NOT NULL AS hj"
        );
        let msgs = client
            .simple_query(&q)
            .await
            .map_err(|e| db("taking the advisory lock", e))?;
        let row = rows(&msgs)
            .next()
            .ok_or_else(|| unexpected("taking the advisory lock"))?;
        let num: i64 = row.get(0).and_then(|v| v.parse().ok()).unwrap_or(0);
        if num < MIN_SERVER_VERSION_NUM {
            return Err(Error::ServerTooOld {
                target,
                version: row.get(1).unwrap_or("?").to_owned(),
            });
        }
        let pid: i32 = row.get(2).and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut locked = row.get(3) == Some("t");
        let tables = (row.get(4) == Some("t"), row.get(5) == Some("t"));
        let started = Instant::now();
        let mut last_log: Option<Instant> = None;
        let mut delay = Duration::from_millis(20);
        let try_q = format!("SELECT pg_try_advisory_lock({ADVISORY_LOCK_ID})");
        while !locked {
            let holders = if last_log.is_none_or(|t| t.elapsed() >= HOLDER_LOG_EVERY) {
                let h = lock_holders(&client).await;
                tracing::info!(waited = ?started.elapsed(), holders = %h, "waiting for the migration advisory lock");
                last_log = Some(Instant::now());
                Some(h)
            } else {
                None
            };
            if let Some(limit) = self.options.advisory_lock_wait
                && started.elapsed() >= limit
            {
                let holders = match holders {
                    Some(h) => h,
                    None => lock_holders(&client).await,
                };
                return Err(Error::AdvisoryLockWait {
                    waited: limit,
                    holders,
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 3 / 2).min(Duration::from_millis(500));
            let msgs = client
                .simple_query(&try_q)
                .await
                .map_err(|e| db("taking the advisory lock", e))?;
            locked = rows(&msgs).next().and_then(|r| r.get(0)) == Some("t");
        }
        if last_log.is_some() {
            tracing::info!(waited = ?started.elapsed(), "got the migration advisory lock");
        }
        let pid = lock_guard::confirm(&client, pid).await?;
        Ok(Session {
            client,
            pid,
            pg: pg.clone(),
            tls: self.tls.clone(),
            notices,
            side: None,
            tables,
            prepared: false,
        })
    }

    /// Session settings, tables, and the current state, in one round trip.
    async fn prepare(&self, client: &Client, existing: (bool, bool)) -> Result<State, Error> {
        let mut q =
            render::session_setup(self.options.lock_timeout, self.options.statement_timeout);
        // A runner that dies mid-statement must not leave its statement running for long.
        q.push_str("SET client_connection_check_interval = '1s';\n");
        // IF NOT EXISTS still guards a table created by another runner after we looked.
        if !existing.0 {
            q.push_str(CREATE_VERSION_TABLE);
            q.push_str(";\n");
        }
        if !existing.1 {
            q.push_str(CREATE_JOURNAL_TABLE);
            q.push_str(";\n");
        }
        q.push_str(STATE_QUERIES);
        let msgs = client
            .simple_query(&q)
            .await
            .map_err(|e| db("creating or reading alembic_version and the journal", e))?;
        state_from(&self.set, &msgs)
    }

    fn check_checksums(&self, state: &State) -> Result<(), Error> {
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

    async fn apply_transactional(
        &self,
        s: &mut Session,
        m: &Migration,
        dir: Direction,
        step: &PlanStep,
        host: &str,
    ) -> Result<(), StepError> {
        let batch = render::transactional_batch(
            m,
            dir,
            self.id_at(step.from),
            self.id_at(step.to),
            host,
            s.prepared,
        );
        let watch = m.own_lock_timeout().unwrap_or(self.options.lock_timeout);
        s.notices.clear();
        let (r, blockers) = exec_watched(s, &batch.sql, watch).await;
        if let Err(e) = r {
            // The batch's explicit transaction stays open in the aborted state.
            let _ = s.client.batch_execute("ROLLBACK").await;
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

    async fn apply_non_transactional(
        &self,
        s: &mut Session,
        m: &Migration,
        dir: Direction,
        step: &PlanStep,
        host: &str,
    ) -> Result<(), StepError> {
        let started = Instant::now();
        let statements = render::statements(m, dir);
        let done = if dir == Direction::Up {
            completed_steps(&s.client, m.id()).await?
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
            self.drop_own_invalid_indexes(&s.client, m, done).await?;
        }
        let lock_timeout = m.own_lock_timeout().unwrap_or(self.options.lock_timeout);
        let (own, restore) = render::own_session_settings(m, &self.options);
        if let Some(own) = own {
            exec(&s.client, &own, "setting the migration's own timeouts").await?;
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
            if dir == Direction::Up {
                let j = render::journal_insert(
                    m.id(),
                    "step",
                    Some(i),
                    None,
                    Elapsed::Measured(t.elapsed()),
                    host,
                );
                exec(&s.client, &j, "journaling a completed statement").await?;
            }
        }
        if let Some(restore) = restore {
            exec(&s.client, &restore, "restoring the runner's timeouts").await?;
        }
        result?;
        let v = self.version_batch(
            m,
            dir,
            self.id_at(step.from),
            self.id_at(step.to),
            host,
            started.elapsed(),
        );
        if let Err(e) = s.client.batch_execute(&v).await {
            let _ = s.client.batch_execute("ROLLBACK").await;
            return Err(step_error(m, dir, (e, 0), None, String::new()).with_statement(&v));
        }
        Ok(())
    }

    /// Drops INVALID indexes that pending statements of `m` create (left by a failed or killed
    /// `CREATE INDEX CONCURRENTLY`); reports other INVALID indexes.
    async fn drop_own_invalid_indexes(
        &self,
        client: &Client,
        m: &Migration,
        done: usize,
    ) -> Result<(), Error> {
        let msgs = client
            .simple_query(
                "SELECT n.nspname, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT i.indisvalid \
                 AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
            )
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
                let q = format!(
                    "DROP INDEX CONCURRENTLY IF EXISTS {}.{}",
                    escape_identifier(schema),
                    escape_identifier(name)
                );
                exec(client, &q, "dropping an INVALID index").await?;
            } else {
                tracing::warn!(
                    index = %format!("{schema}.{name}"),
                    "INVALID index present (a failed CREATE INDEX CONCURRENTLY, or one still building); not created by this migration, left alone"
                );
            }
        }
        Ok(())
    }
}

struct PlanStep {
    index: usize,
    from: Option<usize>,
    to: Option<usize>,
}

/// Ends a session from [`Migrator::lock`] after `result`, the work done under the lock: releases
/// the lock explicitly (see [`lock_guard`]: through a pooler, closing our connection may close
/// nothing on the server), then closes the connection.
pub(crate) async fn unlock<T>(session: Session, result: Result<T, Error>) -> Result<T, Error> {
    let released = lock_guard::release(&session.client, session.pid).await;
    // Dropping the client closes the session (directly, that alone releases the lock).
    drop(session);
    match (result, released) {
        // A moved session is the cause of whatever else went wrong: report it.
        (_, Err(e @ Error::SessionMoved { .. })) | (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        (Ok(value), Ok(())) => Ok(value),
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
                    s.side = connect(&s.pg, &s.tls).await.ok().map(|(c, _)| c);
                }
                if let Some(side) = &s.side {
                    let q = format!(
                        "SELECT pid, state, query_start, left(query, 200) FROM pg_stat_activity \
                         WHERE pid = ANY(pg_blocking_pids({}))",
                        s.pid
                    );
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

async fn lock_holders(client: &Client) -> String {
    match lock_guard::lock_holders(client).await {
        Ok(holders) if holders.is_empty() => "none visible (it was just released)".to_owned(),
        Ok(holders) => holders
            .iter()
            .map(|h| {
                format!(
                    "pid {} application_name {:?} connected since {} ({}): {}",
                    h.pid, h.application_name, h.backend_start, h.state, h.query
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Err(e) => format!("unknown ({e})"),
    }
}

const STATE_QUERIES: &str = "SELECT version_num AS current_version FROM alembic_version;\n\
SELECT version_num AS j_version, operation, checksum, applied_at FROM notify_db_migration_journal \
WHERE operation <> 'step' ORDER BY id";

async fn read_state(
    client: &Client,
    set: &MigrationSet,
    has_version: bool,
    has_journal: bool,
) -> Result<State, Error> {
    let mut q = String::new();
    if has_version {
        q.push_str("SELECT version_num AS current_version FROM alembic_version;\n");
    }
    if has_journal {
        q.push_str(
            "SELECT version_num AS j_version, operation, checksum, applied_at FROM notify_db_migration_journal \
             WHERE operation <> 'step' ORDER BY id",
        );
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
            None => return Err(crate::order::unknown_revision(set, v)),
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

fn last_row<'a>(journal: &'a HashMap<String, JournalRow>, id: &str) -> Option<&'a JournalRow> {
    journal.get(id)
}

/// How many statements of a non-transactional migration completed since it was last applied or reverted.
async fn completed_steps(client: &Client, id: &str) -> Result<usize, Error> {
    let q = format!(
        "SELECT coalesce(max(step) + 1, 0) FROM {JOURNAL_TABLE} WHERE version_num = {v} AND operation = 'step' \
         AND id > coalesce((SELECT max(id) FROM {JOURNAL_TABLE} WHERE version_num = {v} AND operation <> 'step'), 0)",
        v = lit(id)
    );
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

pub(crate) fn rows(msgs: &[SimpleQueryMessage]) -> impl Iterator<Item = &SimpleQueryRow> {
    msgs.iter().filter_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    })
}

async fn exec(client: &Client, sql: &str, context: &'static str) -> Result<(), Error> {
    client.batch_execute(sql).await.map_err(|e| db(context, e))
}

pub(crate) fn db(context: &'static str, source: tokio_postgres::Error) -> Error {
    Error::Db { context, source }
}

fn unexpected(context: &'static str) -> Error {
    Error::NoRow { context }
}

/// host:port/dbname of a config, for messages (never the password).
pub(crate) fn describe(pg: &tokio_postgres::Config) -> String {
    let host = pg
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let port = pg
        .get_ports()
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    format!("{host}:{port}/{}", pg.get_dbname().unwrap_or(""))
}

/// Connects (with `tls`), names the session `notify-db-migrate` unless the config names it.
async fn connect(pg: &tokio_postgres::Config, tls: &Tls) -> Result<(Client, String), Error> {
    let (client, _, target) = connect_watched(pg, tls).await?;
    Ok((client, target))
}

/// [`connect`], also returning the server notices the connection receives.
async fn connect_watched(
    pg: &tokio_postgres::Config,
    tls: &Tls,
) -> Result<(Client, Notices, String), Error> {
    let mut pg = pg.clone();
    if pg.get_application_name().is_none() {
        pg.application_name("notify-db-migrate");
    }
    let target = describe(&pg);
    let connecting = txcontrol::connect(&pg, tls);
    let (client, notices) = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(r) => r.map_err(|source| Error::Connect {
            target: target.clone(),
            source,
        })?,
        Err(_) => {
            return Err(Error::ConnectTimeout {
                target,
                waited: CONNECT_TIMEOUT,
            });
        }
    };
    Ok((client, notices, target))
}

/// This machine's host name, for the journal.
pub(crate) fn runner_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_id_matches_alembic() {
        assert_eq!(ADVISORY_LOCK_ID, 7020097439640675072);
    }
}
