//! The validated set of migrations a runner runs, and the targets it resolves.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::error::{Error, SetError};
use crate::migration::{MAX_ID_LEN, Migration, valid_id};
use crate::order::order;
use crate::sql_dir::read_sql_dir;
use crate::txcontrol::check_migration;

/// A validated, ordered set of migrations: one linear history, in parent-link order (numbered
/// `0001`, `0002`, ... when no migration declares a parent).
#[derive(Debug, Clone)]
pub struct MigrationSet {
    migrations: Vec<Migration>,
    warnings: Vec<String>,
    /// False for [`MigrationSet::from_dir_without_downs`]: the downs were not read.
    downs_read: bool,
}

impl MigrationSet {
    /// Validates and orders `migrations`: Alembic revision ids of at most 32 characters, one
    /// linear history (the parent chain, as Alembic's `down_revision`), no transaction control
    /// (`COMMIT`, `BEGIN`, ...) in a transactional migration. Without parent links a gap in the
    /// numbering is only a warning. A migration without statements is valid: applying it moves
    /// `alembic_version` and writes its journal row, as Alembic does for an empty `upgrade()`.
    pub fn new(migrations: Vec<Migration>) -> Result<MigrationSet, SetError> {
        for m in &migrations {
            check_migration(m)?;
        }
        MigrationSet::new_for_lint(migrations)
    }

    /// [`MigrationSet::new`] without the transaction-control check, for a linter that reports
    /// those statements as findings of its own (see [`crate::transaction_control`]). Such a set
    /// must not be run.
    pub fn new_for_lint(migrations: Vec<Migration>) -> Result<MigrationSet, SetError> {
        for m in &migrations {
            if m.id().len() > MAX_ID_LEN {
                return Err(SetError::IdTooLong {
                    id: m.id().to_owned(),
                });
            }
            if !valid_id(m.id()) {
                return Err(SetError::BadId {
                    id: m.id().to_owned(),
                });
            }
            if let Some(p) = m.declared_parent()
                && !valid_id(p)
            {
                return Err(SetError::BadParent {
                    id: m.id().to_owned(),
                    parent: p.to_owned(),
                });
            }
        }
        let (migrations, warnings) = order(migrations)?;
        for w in &warnings {
            tracing::warn!("{w}");
        }
        Ok(MigrationSet {
            migrations,
            warnings,
            downs_read: true,
        })
    }

    /// Loads a directory of SQL migrations: `ID.up.sql` (required) and `ID.down.sql` (optional).
    /// Leading comments `-- notify-db: no-transaction`, `-- notify-db: lock_timeout=5s,
    /// statement_timeout=2h`-style options (`ms`/`s`/`m`/`h`), `-- notify-db: parent=ID` and
    /// `-- notify-db: baseline` set the options.
    pub fn from_dir(dir: &Path) -> Result<MigrationSet, Error> {
        Ok(MigrationSet::new(read_sql_dir(dir, true)?)?)
    }

    /// [`MigrationSet::from_dir`] without reading the down files, for commands that never run a
    /// down (upgrade, current, history, check): half the file reads of a no-op upgrade. Such a
    /// set refuses to plan a downgrade ([`Error::DownsNotRead`]); its downs are checked when a
    /// set read with [`MigrationSet::from_dir`] runs them.
    pub fn from_dir_without_downs(dir: &Path) -> Result<MigrationSet, Error> {
        let mut set = MigrationSet::new(read_sql_dir(dir, false)?)?;
        set.downs_read = false;
        Ok(set)
    }

    /// The migrations of a directory as [`MigrationSet::from_dir`] reads them, not validated.
    pub fn read_dir(dir: &Path) -> Result<Vec<Migration>, Error> {
        read_sql_dir(dir, true)
    }

    /// False when the set was loaded without its down files.
    pub fn downs_read(&self) -> bool {
        self.downs_read
    }

    /// The migrations in order.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// Warnings found while validating (gaps in the numbering).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The baseline migration, when the set continues an external history.
    pub fn baseline(&self) -> Option<&Migration> {
        self.migrations.first().filter(|m| m.is_baseline())
    }

    /// True when some migration declares its parent (an imported history).
    pub fn uses_parent_links(&self) -> bool {
        self.migrations
            .iter()
            .any(|m| m.declared_parent().is_some())
    }

    /// The parent a new migration declares: the head, in a set that uses parent links (in an
    /// imported history the head may be an odd id or not the highest number); `None` otherwise.
    pub fn parent_of_next(&self) -> Option<&str> {
        self.head().filter(|_| self.uses_parent_links())
    }

    /// The last migration's id, `None` for an empty set.
    pub fn head(&self) -> Option<&str> {
        self.migrations.last().map(|m| m.id())
    }

    /// The migration with this id.
    pub fn get(&self, id: &str) -> Option<&Migration> {
        self.migrations.iter().find(|m| m.id() == id)
    }

    /// Position of `id` in the set.
    pub(crate) fn position(&self, id: &str) -> Option<usize> {
        self.migrations.iter().position(|m| m.id() == id)
    }

    /// SHA-256 over every migration's id and checksum: changes whenever a migration is added,
    /// removed or edited (test templates are rebuilt when it changes).
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for m in &self.migrations {
            h.update(m.id().as_bytes());
            h.update(b"\0");
            h.update(m.checksum().as_bytes());
            h.update(b"\n");
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The highest number in the set plus one, as a 4-digit string: what `revision` names the
    /// next file (an imported history's head may be an id without a number).
    pub fn next_number(&self) -> String {
        format!(
            "{:04}",
            self.migrations
                .iter()
                .filter_map(Migration::number)
                .max()
                .map_or(1, |n| n + 1)
        )
    }

    /// Resolves a target to a position: `Some(i)` means "at migration i", `None` means base.
    /// `current` is the applied position (needed by relative targets).
    pub(crate) fn resolve(
        &self,
        target: &Target,
        current: Option<usize>,
    ) -> Result<Option<usize>, Error> {
        match target {
            Target::Head => Ok(self.migrations.len().checked_sub(1)),
            Target::Base => Ok(None),
            Target::Relative(delta) => {
                let here = current.map_or(0, |c| c as i64 + 1);
                let there = here + i64::from(*delta);
                if there < 0 || there > self.migrations.len() as i64 {
                    return Err(Error::UnknownTarget {
                        target: target.to_string(),
                        reason: format!(
                            "the database is at {} of {} migrations",
                            here,
                            self.migrations.len()
                        ),
                    });
                }
                Ok((there as usize).checked_sub(1))
            }
            Target::Revision(rev) => {
                if let Some(i) = self.position(rev) {
                    return Ok(Some(i));
                }
                // A unique prefix (e.g. the number `0004`) names a revision too.
                let hits: Vec<usize> = (0..self.migrations.len())
                    .filter(|&i| self.migrations[i].id().starts_with(rev.as_str()))
                    .collect();
                match hits.as_slice() {
                    [i] => Ok(Some(*i)),
                    [] => Err(Error::UnknownTarget {
                        target: rev.clone(),
                        reason: "no migration of this set has that id".into(),
                    }),
                    _ => Err(Error::UnknownTarget {
                        target: rev.clone(),
                        reason: "more than one migration starts with it".into(),
                    }),
                }
            }
        }
    }
}

/// Where an upgrade or downgrade goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The last migration of the set.
    Head,
    /// No migration applied (`base`).
    Base,
    /// A revision id, or a unique prefix of one such as `0004`.
    Revision(String),
    /// N steps from the current revision: `+2` up, `-1` down.
    Relative(i32),
}

impl FromStr for Target {
    type Err = Error;

    fn from_str(s: &str) -> Result<Target, Error> {
        let s = s.trim();
        match s {
            "head" | "heads" => Ok(Target::Head),
            "base" => Ok(Target::Base),
            "" => Err(Error::UnknownTarget {
                target: String::new(),
                reason: "empty target".into(),
            }),
            _ if s.starts_with(['+', '-']) => {
                s.parse::<i32>()
                    .map(Target::Relative)
                    .map_err(|_| Error::UnknownTarget {
                        target: s.to_owned(),
                        reason: "expected +N or -N".into(),
                    })
            }
            _ => Ok(Target::Revision(s.to_owned())),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Head => f.write_str("head"),
            Target::Base => f.write_str("base"),
            Target::Revision(r) => f.write_str(r),
            Target::Relative(n) => write!(f, "{n:+}"),
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
    fn set_orders_and_validates() {
        let set = MigrationSet::new(vec![m("0002_b"), m("0001_a")]).unwrap();
        assert_eq!(set.head(), Some("0002_b"));
        assert_eq!(set.next_number(), "0003");
        assert!(set.warnings().is_empty());
        let err = MigrationSet::new(vec![m("0001_a"), m("0001_b")]).unwrap_err();
        assert!(
            err.to_string().contains("0001_a") && err.to_string().contains("0001_b"),
            "{err}"
        );
        let gap = MigrationSet::new(vec![m("0001_a"), m("0003_c")]).unwrap();
        assert_eq!(gap.warnings().len(), 1, "{:?}", gap.warnings());
        assert!(MigrationSet::new(vec![m("ab c")]).is_err());
        assert!(MigrationSet::new(vec![m("head")]).is_err());
        assert!(MigrationSet::new(vec![m("-1")]).is_err());
        assert!(MigrationSet::new(vec![m("0001_this_id_is_far_too_long_for_alembic")]).is_err());
        // A revision that changes nothing (comments only, or no SQL at all, as a `.rs` file
        // defining none) is valid, as Alembic's `upgrade(): pass`.
        let empty = MigrationSet::new(vec![
            Migration::new("0001_empty").up("-- nothing"),
            Migration::new("0002_none"),
        ])
        .unwrap();
        assert!(empty.migrations()[0].up_statements().is_empty());
        assert_eq!(empty.head(), Some("0002_none"));
    }

    #[test]
    fn targets_resolve() {
        let set = MigrationSet::new(vec![m("0001_a"), m("0002_b"), m("0003_c")]).unwrap();
        let r = |t: &str, cur| set.resolve(&t.parse().unwrap(), cur);
        assert_eq!(r("head", None).unwrap(), Some(2));
        assert_eq!(r("base", Some(2)).unwrap(), None);
        assert_eq!(r("0002", None).unwrap(), Some(1));
        assert_eq!(r("-1", Some(2)).unwrap(), Some(1));
        assert_eq!(r("-3", Some(2)).unwrap(), None);
        assert_eq!(r("+1", None).unwrap(), Some(0));
        assert!(r("-4", Some(2)).is_err());
        assert!(r("0009", None).is_err());
        assert!(r("000", None).is_err());
    }
}
