//! Transaction control inside a migration. The runner wraps every transactional migration in ONE
//! transaction with its version update, so a `COMMIT` (or `BEGIN`, `ROLLBACK`, ...) of the
//! migration's own would commit part of it without the version update: such a set is refused
//! when it loads ([`check_set`]). Whatever slips past (statements the runner cannot see, or a
//! non-transactional migration ending a transaction it never started) shows up as a server
//! WARNING or NOTICE about the transaction state (SQLSTATE class 25), which fails the migration
//! ([`Notices`]).

use std::sync::{Arc, Mutex, PoisonError};

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio_postgres::error::DbError;
use tokio_postgres::{AsyncMessage, Client, Connection};

use notify_db_connect::{Driver, Tls};

use crate::error::{Error, SetError};
use crate::lexer::leading_words;
use crate::migration::Migration;
use crate::render::Direction;

/// The transaction-control command `statement` is (`"COMMIT"`, `"START TRANSACTION"`, ...), or
/// `None`. `SAVEPOINT`, `RELEASE [SAVEPOINT]` and `ROLLBACK [WORK] TO [SAVEPOINT]` are not: they
/// work inside the runner's transaction. Recognised by the statement's leading keywords.
pub fn transaction_control(statement: &str) -> Option<&'static str> {
    let words = leading_words(statement, 3);
    let word = |i: usize| words.get(i).map_or("", String::as_str);
    match word(0) {
        "BEGIN" => Some("BEGIN"),
        "START" if word(1) == "TRANSACTION" => Some("START TRANSACTION"),
        "END" => Some("END"),
        "ABORT" => Some("ABORT"),
        "PREPARE" if word(1) == "TRANSACTION" => Some("PREPARE TRANSACTION"),
        "COMMIT" if word(1) == "PREPARED" => Some("COMMIT PREPARED"),
        "COMMIT" => Some("COMMIT"),
        "ROLLBACK" => {
            let next = match word(1) {
                "WORK" | "TRANSACTION" => word(2),
                w => w,
            };
            match next {
                "TO" => None,
                "PREPARED" => Some("ROLLBACK PREPARED"),
                _ => Some("ROLLBACK"),
            }
        }
        _ => None,
    }
}

/// Refuses a transactional migration that has a transaction-control statement, up or down.
pub(crate) fn check_migration(m: &Migration) -> Result<(), SetError> {
    if !m.is_transactional() {
        return Ok(());
    }
    let directions = [
        (Direction::Up, Some(m.up_statements())),
        (Direction::Down, m.down_statements()),
    ];
    for (direction, statements) in directions {
        for (i, s) in statements.unwrap_or(&[]).iter().enumerate() {
            if let Some(command) = transaction_control(s) {
                return Err(SetError::TransactionControl {
                    id: m.id().to_owned(),
                    direction: direction.as_str(),
                    index: i + 1,
                    statement: shorten(s),
                    command,
                });
            }
        }
    }
    Ok(())
}

/// A statement on one line, at most 120 characters, for a message.
fn shorten(s: &str) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(117) {
        Some((cut, _)) => format!("{}...", &one_line[..cut]),
        None => one_line,
    }
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

/// Connects with `tls` and drives the connection on a spawned task that logs every server
/// WARNING/NOTICE (at warn/info) and keeps those about the transaction state in the returned
/// [`Notices`].
pub(crate) async fn connect(
    pg: &tokio_postgres::Config,
    tls: &Tls,
) -> Result<(Client, Notices), tokio_postgres::Error> {
    let notices = Notices::default();
    let (client, _task) = tls.connect_with(pg, notices.clone()).await?;
    Ok((client, notices))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MigrationSet;

    #[test]
    fn transaction_control_is_recognised_by_its_leading_keywords() {
        for (sql, command) in [
            ("COMMIT", "COMMIT"),
            ("commit work", "COMMIT"),
            ("-- done\nEND", "END"),
            ("begin isolation level serializable", "BEGIN"),
            ("START TRANSACTION", "START TRANSACTION"),
            ("ROLLBACK", "ROLLBACK"),
            ("ROLLBACK AND CHAIN", "ROLLBACK"),
            ("abort", "ABORT"),
            ("PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION"),
            ("COMMIT PREPARED 'x'", "COMMIT PREPARED"),
            ("ROLLBACK PREPARED 'x'", "ROLLBACK PREPARED"),
            ("/* c */ Rollback Transaction", "ROLLBACK"),
        ] {
            assert_eq!(transaction_control(sql), Some(command), "{sql}");
        }
        for sql in [
            "SAVEPOINT a",
            "RELEASE SAVEPOINT a",
            "RELEASE a",
            "ROLLBACK TO SAVEPOINT a",
            "ROLLBACK WORK TO a",
            "PREPARE q AS SELECT 1",
            "SELECT 'COMMIT'",
            "DO $$ BEGIN PERFORM 1; END $$",
            "CREATE TABLE commit_log (id bigint)",
            "START_TIME",
        ] {
            assert_eq!(transaction_control(sql), None, "{sql}");
        }
    }

    #[test]
    fn a_transactional_set_with_transaction_control_is_refused_naming_the_fix() {
        let m = Migration::new("0001_a")
            .up("ALTER TABLE a ADD COLUMN b int; COMMIT; ALTER TABLE a ADD COLUMN c int")
            .down("SELECT 1");
        let err = MigrationSet::new(vec![m.clone()]).unwrap_err().to_string();
        for part in [
            "0001_a",
            "upgrade statement 2",
            "`COMMIT`",
            "no-transaction",
            "Remove the statement",
        ] {
            assert!(err.contains(part), "{part:?} missing from: {err}");
        }
        let down = Migration::new("0001_a")
            .up("SELECT 1")
            .down("BEGIN; DROP TABLE a; END");
        let err = MigrationSet::new(vec![down]).unwrap_err().to_string();
        assert!(err.contains("downgrade statement 1 `BEGIN`"), "{err}");
        assert!(MigrationSet::new(vec![m.no_transaction()]).is_ok());
        let savepoints = Migration::new("0001_a")
            .up("SAVEPOINT s; SELECT 1; ROLLBACK TO SAVEPOINT s; RELEASE s");
        assert!(MigrationSet::new(vec![savepoints]).is_ok());
    }
}
