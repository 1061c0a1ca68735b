//! The migration connection: the database a runner connects to, the connection itself (with the
//! URI's TLS, named `notify-db-migrate`), the server notices it receives, and reading its replies.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use notify_db_config::DatabaseUri;
use notify_db_connect::{ConnectUri, Driver, Tls};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio_postgres::error::DbError;
use tokio_postgres::{AsyncMessage, Client, Connection, SimpleQueryMessage, SimpleQueryRow};

use crate::error::Error;
use crate::txcontrol::shorten;

/// How long a connection attempt may take in all (TCP, authentication).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The database a [`crate::Migrator`] runs against: the URI's connection settings and the TLS
/// connector its `sslmode` asks for, built together so neither goes without the other.
#[derive(Clone)]
pub(crate) struct Database {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) tls: Tls,
}

impl Database {
    /// The URI's connection settings and TLS connector; fails when its TLS settings cannot be
    /// used (e.g. an unreadable CA file).
    pub(crate) fn of(uri: &DatabaseUri) -> Result<Database, Error> {
        Ok(Database {
            pg: uri.to_pg_config(),
            tls: uri.tls()?,
        })
    }
}

/// A connection to `database`, named `notify-db-migrate` unless the URI names it.
pub(crate) async fn connect(database: &Database) -> Result<(Client, String), Error> {
    let (client, _, target) = connect_watched(database).await?;
    Ok((client, target))
}

/// [`connect`], also returning the server notices the connection receives, and host:port/dbname
/// for messages. The connection is driven on a spawned task that logs every server
/// WARNING/NOTICE (at warn/info) and keeps those about the transaction state in [`Notices`].
pub(crate) async fn connect_watched(
    database: &Database,
) -> Result<(Client, Notices, String), Error> {
    let mut pg = database.pg.clone();
    if pg.get_application_name().is_none() {
        pg.application_name("notify-db-migrate");
    }
    let target = describe(&pg);
    let notices = Notices::default();
    let connecting = database.tls.connect_with(&pg, notices.clone());
    let client = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(r) => {
            r.map_err(|source| Error::Connect {
                target: target.clone(),
                source,
            })?
            .0
        }
        Err(_) => {
            return Err(Error::ConnectTimeout {
                target,
                waited: CONNECT_TIMEOUT,
            });
        }
    };
    Ok((client, notices, target))
}

/// The rows of a simple query's reply.
pub(crate) fn rows(msgs: &[SimpleQueryMessage]) -> impl Iterator<Item = &SimpleQueryRow> {
    msgs.iter().filter_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    })
}

/// A statement of the runner's own failed while `context`.
pub(crate) fn db(context: &'static str, source: tokio_postgres::Error) -> Error {
    Error::Db { context, source }
}

/// A reply that should have had a row had none.
pub(crate) fn unexpected(context: &'static str) -> Error {
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

/// This machine's host name, for the journal.
pub(crate) fn runner_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The WARNINGs and NOTICEs about the transaction state (SQLSTATE class 25) a migration
/// connection received, as the connection task hands them over: they arrive before the response
/// of the statement that caused them, so once a statement has completed, its notices are here.
/// Other notices are only logged (a migration may raise many).
#[derive(Clone, Default)]
pub(crate) struct Notices(Arc<Mutex<Vec<DbError>>>);

impl Notices {
    fn push(&self, notice: DbError) {
        if notice.code().code().starts_with("25") {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(notice);
        }
    }

    /// Forgets the notices received so far (they were logged when they arrived).
    pub(crate) fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The error for the first notice about the transaction state (e.g. 25P01 "there is no
    /// transaction in progress", 25001 "there is already a transaction in progress") received
    /// since the last call or [`Notices::clear`], while migration `id` ran `statement` (empty
    /// when the runner cannot tell which); clears them all.
    pub(crate) fn state_error(&self, id: &str, statement: &str) -> Option<Error> {
        let mut v = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let first = (!v.is_empty()).then(|| v.swap_remove(0));
        v.clear();
        first.map(|notice| Error::TransactionState {
            id: id.to_owned(),
            statement: shorten(statement),
            severity: notice.severity().to_owned(),
            message: notice.message().to_owned(),
            code: notice.code().code().to_owned(),
        })
    }
}

/// Polls the connection until it closes (when the client is dropped), collecting notices. Its
/// errors surface on the client's next call.
impl Driver for Notices {
    fn drive<S, T>(self, mut conn: Connection<S, T>) -> JoinHandle<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notice(n)) => {
                        if n.severity() == "WARNING" {
                            tracing::warn!(code = n.code().code(), "server: {}", n.message());
                        } else {
                            tracing::info!(code = n.code().code(), "server: {}", n.message());
                        }
                        self.push(n);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!("migration connection closed: {e}");
                        break;
                    }
                }
            }
        })
    }
}
