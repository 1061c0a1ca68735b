//! The migration session, and the database work of a run on it: connect, take Alembic's advisory
//! lock (polling, naming its holders), create and read the bookkeeping tables, and end the
//! session with the lock released explicitly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use notify_db_config::DatabaseUri;
use tokio_postgres::Client;

use super::connection::{Database, Notices, connect, connect_watched, db, rows, unexpected};
use super::state::{FirstRead, State};
use crate::error::Error;
use crate::lock_guard;
use crate::options::Options;
use crate::render::{self, CREATE_JOURNAL_TABLE, CREATE_VERSION_TABLE};
use crate::set::MigrationSet;

/// How long to wait between advisory-lock holder reports.
const HOLDER_LOG_EVERY: Duration = Duration::from_secs(5);

/// A run's first part, which needs no migration set: connect, and read the server version,
/// `alembic_version` and the journal without the lock. A command line starts it
/// ([`Prefetch::start`]) while the set loads (a `.sql` directory of 1000 files takes about as
/// long as connecting), then hands it to [`crate::Migrator::run_prefetched`].
pub struct Prefetch(Result<(Connected, FirstRead), Error>);

/// A migration connection, not locked yet.
pub(super) struct Connected {
    database: Arc<Database>,
    client: Client,
    notices: Notices,
    /// host:port/dbname, for messages.
    target: String,
}

impl Prefetch {
    /// Connects to the database `uri` names (TLS as its `sslmode` says) and reads the state.
    /// Never fails itself: a failure is the run's to report, after the set loaded.
    pub async fn start(uri: &DatabaseUri) -> Prefetch {
        match Database::of(uri) {
            Ok(database) => Prefetch::of(Arc::new(database)).await,
            Err(e) => Prefetch(Err(e)),
        }
    }

    /// [`Prefetch::start`] for a runner's database.
    pub(super) async fn of(database: Arc<Database>) -> Prefetch {
        let connected = match connect_watched(&database).await {
            Ok((client, notices, target)) => {
                let first_read = client
                    .simple_query(&render::queries::unlocked_state())
                    .await;
                let connected = Connected {
                    database,
                    client,
                    notices,
                    target,
                };
                Ok((connected, first_read))
            }
            Err(e) => Err(e),
        };
        Prefetch(connected)
    }

    /// The connection and its first read, or why there is none.
    pub(super) fn into_parts(self) -> Result<(Connected, FirstRead), Error> {
        self.0
    }
}

/// A migration connection holding the advisory lock.
pub(super) struct Session {
    pub(super) client: Client,
    pub(super) pid: i32,
    pub(super) database: Arc<Database>,
    /// The server's WARNINGs and NOTICEs on `client`.
    pub(super) notices: Notices,
    /// A second connection, to sample what blocks `client`; made when first needed.
    pub(super) side: Option<Client>,
    /// Whether `alembic_version` / the journal existed when the runner connected.
    pub(super) tables: (bool, bool),
    /// Whether [`render::prepare_bookkeeping`]'s statements are prepared on `client`.
    pub(super) prepared: bool,
}

impl Session {
    /// Connects to `database` and takes the advisory lock, waiting at most `wait` (`None`:
    /// forever). Every holder of the returned session ends it with [`Session::unlock`].
    pub(super) async fn open(
        database: &Arc<Database>,
        wait: Option<Duration>,
    ) -> Result<Session, Error> {
        let (client, notices, target) = connect_watched(database).await?;
        let connected = Connected {
            database: Arc::clone(database),
            client,
            notices,
            target,
        };
        Session::lock(connected, wait).await
    }

    /// Takes the advisory lock on a [`Prefetch`]'s connection, polling with back-off, waiting at
    /// most `wait` (`None`: forever).
    pub(super) async fn lock(
        connected: Connected,
        wait: Option<Duration>,
    ) -> Result<Session, Error> {
        let Connected {
            database,
            client,
            notices,
            target,
        } = connected;
        let q = render::queries::lock_probe();
        let msgs = client
            .simple_query(&q)
            .await
            .map_err(|e| db("taking the advisory lock", e))?;
        let row = rows(&msgs)
            .next()
            .ok_or_else(|| unexpected("taking the advisory lock"))?;
        let num: i64 = row.get(0).and_then(|v| v.parse().ok()).unwrap_or(0);
        if let Err(too_old) =
            notify_db_connect::check_server_version(num, row.get(1).unwrap_or("?"))
        {
            return Err(Error::ServerTooOld {
                target,
                version: too_old.version,
            });
        }
        let pid: i32 = row.get(2).and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut locked = row.get(3) == Some("t");
        let tables = (row.get(4) == Some("t"), row.get(5) == Some("t"));
        let started = Instant::now();
        let mut last_log: Option<Instant> = None;
        let mut delay = Duration::from_millis(20);
        let try_q = render::queries::try_lock();
        while !locked {
            let holders = if last_log.is_none_or(|t| t.elapsed() >= HOLDER_LOG_EVERY) {
                let h = lock_holders(&client).await;
                tracing::info!(waited = ?started.elapsed(), holders = %h, "waiting for the migration advisory lock");
                last_log = Some(Instant::now());
                Some(h)
            } else {
                None
            };
            if let Some(limit) = wait
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
            database,
            notices,
            side: None,
            tables,
            prepared: false,
        })
    }

    /// Appends the `CREATE TABLE IF NOT EXISTS` of the bookkeeping tables this session found
    /// missing (IF NOT EXISTS still guards a table another runner created after we looked).
    pub(super) fn push_missing_tables(&self, sql: &mut String) {
        if !self.tables.0 {
            sql.push_str(CREATE_VERSION_TABLE);
            sql.push_str(";\n");
        }
        if !self.tables.1 {
            sql.push_str(CREATE_JOURNAL_TABLE);
            sql.push_str(";\n");
        }
    }

    /// Session settings, tables, and the current state, in one round trip.
    pub(super) async fn prepare(
        &self,
        set: &MigrationSet,
        options: &Options,
    ) -> Result<State, Error> {
        let mut q = render::session_setup(options.lock_timeout, options.statement_timeout);
        q.push_str(render::queries::CONNECTION_CHECK);
        q.push_str(";\n");
        self.push_missing_tables(&mut q);
        q.push_str(&render::queries::read_version());
        q.push_str(";\n");
        q.push_str(&render::queries::read_journal(false));
        let msgs = self
            .client
            .simple_query(&q)
            .await
            .map_err(|e| db("creating or reading alembic_version and the journal", e))?;
        State::from_replies(set, &msgs)
    }

    /// Prepares the version update and journal statements of transactional steps (see
    /// [`render::prepare_bookkeeping`]), recording `host` in the journal rows.
    pub(super) async fn prepare_bookkeeping(&mut self, host: &str) -> Result<(), Error> {
        self.exec(
            &render::prepare_bookkeeping(host),
            "preparing the version update and journal statements",
        )
        .await?;
        self.prepared = true;
        Ok(())
    }

    /// How many statements of non-transactional migration `id` completed since it was last
    /// applied or reverted.
    pub(super) async fn completed_steps(&self, id: &str) -> Result<usize, Error> {
        let q = render::queries::completed_steps(id);
        let msgs = self
            .client
            .simple_query(&q)
            .await
            .map_err(|e| db("reading the journal", e))?;
        Ok(rows(&msgs)
            .next()
            .and_then(|r| r.get(0))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Runs `sql` (a runner statement, not a migration's), failing with `context`.
    pub(super) async fn exec(&self, sql: &str, context: &'static str) -> Result<(), Error> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| db(context, e))
    }

    /// Ends the session after `result`, the work done under the lock: releases the lock
    /// explicitly (see [`lock_guard`]: through a pooler, closing our connection may close
    /// nothing on the server), then closes the connection.
    pub(super) async fn unlock<T>(self, result: Result<T, Error>) -> Result<T, Error> {
        let released = lock_guard::release(&self.client, self.pid).await;
        // Dropping the client closes the session (directly, that alone releases the lock).
        drop(self);
        match (result, released) {
            // A moved session is the cause of whatever else went wrong: report it.
            (_, Err(e @ Error::SessionMoved { .. })) | (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            (Ok(value), Ok(())) => Ok(value),
        }
    }
}

/// The state of `database` against `set`, read without the lock; creates nothing.
pub(super) async fn read_unlocked(database: &Database, set: &MigrationSet) -> Result<State, Error> {
    let (client, _) = connect(database).await?;
    let msgs = client
        .simple_query(&render::queries::tables_exist())
        .await
        .map_err(|e| db("reading the migration tables", e))?;
    let row = rows(&msgs).next();
    let flag = |i| row.and_then(|r| r.get(i)) == Some("t");
    let mut q = String::new();
    if flag(0) {
        q.push_str(&render::queries::read_version());
        q.push_str(";\n");
    }
    if flag(1) {
        q.push_str(&render::queries::read_journal(true));
    }
    if q.is_empty() {
        return State::from_replies(set, &[]);
    }
    let msgs = client
        .simple_query(&q)
        .await
        .map_err(|e| db("reading alembic_version and the journal", e))?;
    State::from_replies(set, &msgs)
}

/// The holders of the advisory lock, in words, for the waiting runner's messages.
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
