//! The migration session: connect, take Alembic's advisory lock (polling), name its holders,
//! and end the session with the lock released explicitly.

use super::*;

/// How long to wait between advisory-lock holder reports.
const HOLDER_LOG_EVERY: Duration = Duration::from_secs(5);

/// A migration connection holding the advisory lock.
pub(crate) struct Session {
    pub(crate) client: Client,
    pub(super) pid: i32,
    pub(super) database: Arc<Database>,
    /// The server's WARNINGs and NOTICEs on `client`.
    pub(super) notices: Notices,
    pub(super) side: Option<Client>,
    /// Whether `alembic_version` / the journal existed when the runner connected.
    pub(crate) tables: (bool, bool),
    /// Whether [`render::prepare_bookkeeping`]'s statements are prepared on `client`.
    pub(super) prepared: bool,
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

pub(super) fn describe_sessions(msgs: &[SimpleQueryMessage]) -> String {
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

/// A run's first part, which needs no migration set: connect, and read the server version,
/// `alembic_version` and the journal without the lock. A command line starts it
/// ([`Prefetch::start`]) while the set loads (a `.sql` directory of 1000 files takes about as
/// long as connecting), then hands it to [`Migrator::run_prefetched`].
pub struct Prefetch(Result<Connected, Error>);

/// What [`Prefetch`] got: the connection, and the first read's outcome.
pub(super) struct Connected {
    pub(super) database: Arc<Database>,
    pub(super) client: Client,
    pub(super) notices: Notices,
    /// host:port/dbname, for messages.
    pub(super) target: String,
    /// The reply to [`render::queries::unlocked_state`].
    pub(super) first_read: Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>,
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
                Ok(Connected {
                    database,
                    client,
                    notices,
                    target,
                    first_read,
                })
            }
            Err(e) => Err(e),
        };
        Prefetch(connected)
    }

    /// The connection and first read, or why there is none.
    pub(super) fn into_result(self) -> Result<Connected, Error> {
        self.0
    }
}

impl Migrator {
    /// Connects and takes the advisory lock, polling with back-off. Every holder of the
    /// returned session ends it with [`unlock`].
    pub(crate) async fn lock(&self, operation: &'static str) -> Result<Session, Error> {
        let database = self.database(operation)?;
        let (client, notices, target) = connect_watched(database).await?;
        self.lock_connected(Arc::clone(database), client, notices, target)
            .await
    }

    /// [`Migrator::lock`] on a connection made by [`connect_watched`], to `database` (named
    /// `target` in messages).
    pub(super) async fn lock_connected(
        &self,
        database: Arc<Database>,
        client: Client,
        notices: Notices,
        target: String,
    ) -> Result<Session, Error> {
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
            database,
            notices,
            side: None,
            tables,
            prepared: false,
        })
    }
}
