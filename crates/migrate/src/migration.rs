//! One migration: its id, SQL, options and checksum, and the direction a step takes it.

use std::sync::OnceLock;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::lexer::split_statements;

/// Longest revision id `alembic_version.version_num` (varchar(32)) can hold.
pub const MAX_ID_LEN: usize = 32;

/// One migration: an id (`0007_add_jobs_index`, the file stem), up and down SQL, and options.
#[derive(Debug, Clone)]
pub struct Migration {
    id: String,
    up: Vec<String>,
    down: Option<Vec<String>>,
    transactional: bool,
    lock_timeout: Option<Duration>,
    statement_timeout: Option<Duration>,
    parent: Option<String>,
    baseline: bool,
    /// Computed when first asked for (a builder sets the SQL in several steps), from the fields
    /// above: not part of equality.
    checksum: OnceLock<String>,
}

impl PartialEq for Migration {
    fn eq(&self, other: &Migration) -> bool {
        self.id == other.id
            && self.up == other.up
            && self.down == other.down
            && self.transactional == other.transactional
            && self.lock_timeout == other.lock_timeout
            && self.statement_timeout == other.statement_timeout
            && self.parent == other.parent
            && self.baseline == other.baseline
    }
}

impl Eq for Migration {}

impl Migration {
    /// A migration with this id and no SQL yet; add it with [`Migration::up`] and [`Migration::down`].
    pub fn new(id: impl Into<String>) -> Migration {
        Migration {
            id: id.into(),
            up: Vec::new(),
            down: None,
            transactional: true,
            lock_timeout: None,
            statement_timeout: None,
            parent: None,
            baseline: false,
            checksum: OnceLock::new(),
        }
    }

    /// Appends upgrade SQL (one or several `;`-separated statements).
    pub fn up(mut self, sql: impl AsRef<str>) -> Migration {
        self.up.extend(split_statements(sql.as_ref()));
        self.checksum = OnceLock::new();
        self
    }

    /// Appends downgrade SQL (one or several statements); without it the migration cannot be downgraded.
    pub fn down(mut self, sql: impl AsRef<str>) -> Migration {
        self.down
            .get_or_insert_with(Vec::new)
            .extend(split_statements(sql.as_ref()));
        self
    }

    /// Runs outside a transaction, statement by statement (e.g. `CREATE INDEX CONCURRENTLY`).
    pub fn no_transaction(mut self) -> Migration {
        self.transactional = false;
        self.checksum = OnceLock::new();
        self
    }

    /// A `lock_timeout` of its own instead of the runner's (a high-risk migration may ask for more).
    pub fn lock_timeout(mut self, timeout: Duration) -> Migration {
        self.lock_timeout = Some(timeout);
        self
    }

    /// A `statement_timeout` of its own instead of the runner's (none by default); zero means none.
    pub fn statement_timeout(mut self, timeout: Duration) -> Migration {
        self.statement_timeout = Some(timeout);
        self
    }

    /// Follows revision `parent` (Alembic's `down_revision`) instead of the migration numbered
    /// one below: how an imported history keeps its order.
    pub fn parent(mut self, parent: impl Into<String>) -> Migration {
        self.parent = Some(parent.into());
        self
    }

    /// Marks the baseline: the first migration of a set that continues an external history. Its
    /// id is that history's revision; a database already there is adopted without running it,
    /// a fresh one gets its SQL (the schema at that revision).
    pub fn baseline(mut self) -> Migration {
        self.baseline = true;
        self
    }

    /// The revision this one follows, when declared with [`Migration::parent`].
    pub fn declared_parent(&self) -> Option<&str> {
        self.parent.as_deref()
    }

    /// True for the baseline (see [`Migration::baseline`]).
    pub fn is_baseline(&self) -> bool {
        self.baseline
    }

    /// The revision id, as stored in `alembic_version`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The number before the first `_` of the id, when it is one.
    pub fn number(&self) -> Option<u32> {
        let digits = self.id.split('_').next()?;
        if digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()) {
            digits.parse().ok()
        } else {
            None
        }
    }

    /// The upgrade statements.
    pub fn up_statements(&self) -> &[String] {
        &self.up
    }

    /// The downgrade statements, `None` when the migration has no `down`.
    pub fn down_statements(&self) -> Option<&[String]> {
        self.down.as_deref()
    }

    /// True unless the migration runs outside a transaction.
    pub fn is_transactional(&self) -> bool {
        self.transactional
    }

    /// The migration's own `lock_timeout`, if it sets one.
    pub fn own_lock_timeout(&self) -> Option<Duration> {
        self.lock_timeout
    }

    /// The migration's own `statement_timeout`, if it sets one.
    pub fn own_statement_timeout(&self) -> Option<Duration> {
        self.statement_timeout
    }

    /// SHA-256 (hex) of the upgrade SQL and the transaction mode: what the journal records.
    pub fn checksum(&self) -> &str {
        self.checksum.get_or_init(|| self.compute_checksum())
    }

    fn compute_checksum(&self) -> String {
        let mut h = Sha256::new();
        if !self.transactional {
            h.update(b"-- no-transaction\n");
        }
        for s in &self.up {
            h.update(s.as_bytes());
            h.update(b";\n");
        }
        hex(h.finalize().as_slice())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// An Alembic revision id we accept: 1 to [`MAX_ID_LEN`] ASCII letters, digits, `_` and `-`,
/// starting with a letter or digit (Alembic's generated hex ids, `NNNN_slug`, bare numbers), and
/// not a target keyword. Safe as a file name and inside a SQL literal.
pub(crate) fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_ID_LEN
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
        && !matches!(id, "head" | "heads" | "base")
}

/// Which way a step goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Upgrade.
    Up,
    /// Downgrade.
    Down,
}

impl Direction {
    /// `upgrade` or `downgrade`, as journaled.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "upgrade",
            Direction::Down => "downgrade",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str) -> Migration {
        Migration::new(id).up("SELECT 1").down("SELECT 2")
    }

    #[test]
    fn checksum_follows_the_sql() {
        let a = m("0001_a");
        assert_eq!(a.checksum().len(), 64);
        assert_eq!(a.checksum(), m("0001_a").checksum());
        assert_ne!(
            a.checksum(),
            Migration::new("0001_a").up("SELECT 3").checksum()
        );
        assert_ne!(a.checksum(), m("0001_a").no_transaction().checksum());
        // Asked for before more SQL is added, it follows the SQL all the same.
        let early = Migration::new("0001_a");
        let empty = early.checksum().to_owned();
        let later = early.up("SELECT 3");
        assert_ne!(later.checksum(), empty);
        assert_eq!(
            later.checksum(),
            Migration::new("0001_a").up("SELECT 3").checksum()
        );
        // Whether it was computed yet is no part of equality.
        assert_eq!(m("0001_a"), a);
    }
}
