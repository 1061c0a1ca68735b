//! Transaction control inside a migration. The runner wraps every transactional migration in ONE
//! transaction with its version update, so a `COMMIT` (or `BEGIN`, `ROLLBACK`, ...) of the
//! migration's own would commit part of it without the version update: such a set is refused
//! when it loads ([`check_migration`]). Whatever slips past (statements the runner cannot see, or a
//! non-transactional migration ending a transaction it never started) shows up as a server
//! WARNING or NOTICE about the transaction state (SQLSTATE class 25), which fails the migration
//! (the migration connection's notices, in `engine/connection.rs`).

use crate::error::SetError;
use crate::lexer::leading_words;
use crate::migration::{Direction, Migration};

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
pub(crate) fn shorten(s: &str) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(117) {
        Some((cut, _)) => format!("{}...", &one_line[..cut]),
        None => one_line,
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
