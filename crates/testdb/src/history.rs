//! Generated migration histories shaped like GOV.UK Notify's Alembic history (549 revisions,
//! head `0560_add_nhs_notify_org`), for the import tests and the migrate benchmark.
//!
//! The SQL is generated here, not copied: what matters is the shape. Every revision declares
//! its parent (Alembic's `down_revision`); three ids are not `NNNN_slug` (`db6d9d9f06bc`,
//! `84c3b6eb16b3`, `0468`); two ids start with `0014_` (`0014_add_template_version` and, much
//! later, `0014_drop_monthly_billing_cols`); about one revision in 24 runs in Alembic's
//! `autocommit_block` (`CREATE INDEX CONCURRENTLY`, `ALTER TYPE ... ADD VALUE`) and two
//! committed explicitly (`COMMIT`, then `ALTER TYPE ... ADD VALUE`). Both kinds are rendered as
//! `no-transaction` migrations (the explicit `COMMIT` dropped: outside a transaction there is
//! nothing to commit).

use std::fmt::Write as _;
use std::path::Path;

/// The reference history's length.
pub const REFERENCE_REVISIONS: usize = 549;

/// How a revision ran under Alembic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionKind {
    /// In the transaction Alembic opens per revision.
    Transactional,
    /// In `op.get_context().autocommit_block()`.
    AutocommitBlock,
    /// After an explicit `op.execute("COMMIT")`.
    ExplicitCommit,
}

/// One generated revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The revision id.
    pub id: String,
    /// Its `down_revision` (`None` for the first).
    pub parent: Option<String>,
    /// How it runs.
    pub kind: RevisionKind,
    /// Its upgrade statements, without terminators.
    pub up: Vec<String>,
}

impl Revision {
    /// True when it runs in one transaction.
    pub fn is_transactional(&self) -> bool {
        self.kind == RevisionKind::Transactional
    }

    /// The text of its `ID.up.sql` file for `notify-db-migrate --source`.
    pub fn sql_file(&self) -> String {
        let mut s = String::new();
        if let Some(p) = &self.parent {
            let _ = writeln!(s, "-- notify-db: parent={p}");
        }
        match self.kind {
            RevisionKind::Transactional => {}
            RevisionKind::AutocommitBlock => {
                s.push_str("-- notify-db: no-transaction\n-- (an autocommit_block revision)\n");
            }
            RevisionKind::ExplicitCommit => {
                s.push_str(
                    "-- notify-db: no-transaction\n-- (committed explicitly under Alembic)\n",
                );
            }
        }
        for stmt in &self.up {
            s.push_str(stmt);
            s.push_str(";\n");
        }
        s
    }
}

/// `n` revisions (at least 30) shaped like the reference history; the last is
/// `NNNN_add_nhs_notify_org` with `NNNN` = `n` (0549 for the full length).
pub fn reference_shaped(n: usize) -> Vec<Revision> {
    let n = n.max(30);
    let at = |x: usize| x * n / REFERENCE_REVISIONS;
    let dup_0014 = at(114).max(15);
    let hex = [
        (at(120).max(5), "db6d9d9f06bc"),
        (at(300).max(16), "84c3b6eb16b3"),
    ];
    let bare = at(468).max(25);
    let commits = [n / 3, 2 * n / 3];
    let autocommit_count = (23 * n / REFERENCE_REVISIONS).max(3);
    let mut autocommit = Vec::with_capacity(autocommit_count);
    for k in 0..autocommit_count {
        let mut p = (k + 1) * n / (autocommit_count + 1) + 1;
        while commits.contains(&p) || autocommit.contains(&p) || p < 3 || p == n {
            p += 1;
        }
        autocommit.push(p);
    }
    let mut revisions: Vec<Revision> = Vec::with_capacity(n);
    let mut last_table = 1;
    for i in 1..=n {
        let id = if i == 14 {
            "0014_add_template_version".to_owned()
        } else if i == dup_0014 {
            "0014_drop_monthly_billing_cols".to_owned()
        } else if let Some((_, h)) = hex.iter().find(|(p, _)| *p == i) {
            (*h).to_owned()
        } else if i == bare {
            "0468".to_owned()
        } else if i == n {
            format!("{i:04}_add_nhs_notify_org")
        } else {
            format!("{i:04}_revision_{i}")
        };
        let (kind, up) = if i == 1 {
            (
                RevisionKind::Transactional,
                vec![
                    "CREATE TYPE notification_status AS ENUM ('created')".to_owned(),
                    "CREATE TABLE t_1 (id bigint PRIMARY KEY, name text NOT NULL, \
                     status notification_status NOT NULL DEFAULT 'created', \
                     created_at timestamptz NOT NULL DEFAULT now())"
                        .to_owned(),
                ],
            )
        } else if commits.contains(&i) {
            (
                RevisionKind::ExplicitCommit,
                vec![format!(
                    "ALTER TYPE notification_status ADD VALUE IF NOT EXISTS 'committed_{i}'"
                )],
            )
        } else if let Some(k) = autocommit.iter().position(|&p| p == i) {
            let stmt = if k % 2 == 0 {
                format!(
                    "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_t_{last_table}_name_{i} ON t_{last_table} (name)"
                )
            } else {
                format!("ALTER TYPE notification_status ADD VALUE IF NOT EXISTS 'status_{i}'")
            };
            (RevisionKind::AutocommitBlock, vec![stmt])
        } else {
            let mut up = vec![
                format!(
                    "-- {id}: a table, a column on the previous one, a row\nCREATE TABLE t_{i} (\n    id bigint PRIMARY KEY,\n    parent_id bigint REFERENCES t_{last_table} (id),\n    name text,\n    updated_at timestamptz\n)"
                ),
                format!("ALTER TABLE t_{last_table} ADD COLUMN c_{i} integer DEFAULT {i}"),
                format!(
                    "INSERT INTO t_{i} (id, name) VALUES (1, 'row {i}; not the end; it''s quoted')"
                ),
            ];
            if i == 2 {
                up.push(
                    "CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $fn$\n\
                     BEGIN\n    NEW.updated_at := now();\n    RETURN NEW;\nEND;\n$fn$"
                        .to_owned(),
                );
            }
            if i > 2 && i % 5 == 0 {
                up.push(format!(
                    "CREATE TRIGGER t_{i}_touch BEFORE UPDATE ON t_{i} FOR EACH ROW EXECUTE FUNCTION touch_updated_at()"
                ));
            }
            last_table = i;
            (RevisionKind::Transactional, up)
        };
        let parent = revisions.last().map(|r| r.id.clone());
        revisions.push(Revision {
            id,
            parent,
            kind,
            up,
        });
    }
    revisions
}

/// Writes one `ID.up.sql` file per revision into `dir` (created; existing files replaced).
pub fn write_sql_dir(revisions: &[Revision], dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for r in revisions {
        std::fs::write(dir.join(format!("{}.up.sql", r.id)), r.sql_file())?;
    }
    Ok(())
}

/// Alembic's statement moving `alembic_version` from `from` to `to` (as it logs it).
pub fn alembic_version_update(from: Option<&str>, to: &str) -> String {
    match from {
        None => format!("INSERT INTO alembic_version (version_num) VALUES ('{to}')"),
        Some(from) => format!(
            "UPDATE alembic_version SET version_num='{to}' WHERE alembic_version.version_num = '{from}'"
        ),
    }
}

/// Alembic's `alembic_version` table.
pub const ALEMBIC_VERSION_DDL: &str = "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, \
CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))";

/// A psql script applying `revisions` in chain order over one connection, as Alembic does with
/// `transaction_per_migration`: a transactional revision is ONE simple query (`BEGIN\; ...\;
/// version update\; COMMIT`), the others statement by statement, then the version update.
/// With `from` it continues from that revision (the version table exists); without, it creates it.
pub fn psql_script(revisions: &[Revision], from: Option<&str>) -> String {
    let mut s = String::from("\\set ON_ERROR_STOP 1\n");
    if from.is_none() {
        s.push_str(ALEMBIC_VERSION_DDL);
        s.push_str(";\n");
    }
    let mut previous = from.map(str::to_owned);
    for r in revisions {
        let version = alembic_version_update(previous.as_deref(), &r.id);
        if r.is_transactional() {
            s.push_str("BEGIN\\; ");
            for stmt in &r.up {
                s.push_str(stmt);
                s.push_str("\\; ");
            }
            let _ = writeln!(s, "{version}\\; COMMIT;");
        } else {
            for stmt in &r.up {
                let _ = writeln!(s, "{stmt};");
            }
            let _ = writeln!(s, "{version};");
        }
        previous = Some(r.id.clone());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shape_holds_at_both_lengths() {
        for n in [30, REFERENCE_REVISIONS] {
            let h = reference_shaped(n);
            assert_eq!(h.len(), n);
            let ids: Vec<&str> = h.iter().map(|r| r.id.as_str()).collect();
            for odd in [
                "db6d9d9f06bc",
                "84c3b6eb16b3",
                "0468",
                "0014_add_template_version",
                "0014_drop_monthly_billing_cols",
            ] {
                assert_eq!(ids.iter().filter(|i| **i == odd).count(), 1, "{odd} in {n}");
            }
            let pos = |id: &str| ids.iter().position(|i| *i == id);
            assert!(pos("0014_add_template_version") < pos("0014_drop_monthly_billing_cols"));
            let count = |k| h.iter().filter(|r| r.kind == k).count();
            assert_eq!(count(RevisionKind::ExplicitCommit), 2, "{n}");
            assert!(count(RevisionKind::AutocommitBlock) >= 3, "{n}");
            for w in h.windows(2) {
                assert_eq!(w[1].parent.as_deref(), Some(w[0].id.as_str()));
            }
            assert!(ids.iter().all(|i| i.len() <= 32));
        }
        let full = reference_shaped(REFERENCE_REVISIONS);
        let autocommit = full
            .iter()
            .filter(|r| r.kind == RevisionKind::AutocommitBlock)
            .count();
        assert_eq!(autocommit, 23);
        assert_eq!(
            full.last().map(|r| r.id.as_str()),
            Some("0549_add_nhs_notify_org")
        );
    }

    #[test]
    fn files_carry_the_parent_and_the_mode() {
        let h = reference_shaped(30);
        let commit = h
            .iter()
            .find(|r| r.kind == RevisionKind::ExplicitCommit)
            .expect("one");
        let text = commit.sql_file();
        assert!(text.starts_with("-- notify-db: parent="), "{text}");
        assert!(text.contains("-- notify-db: no-transaction\n"), "{text}");
        assert!(!text.contains("COMMIT;"), "{text}");
        let script = psql_script(&h[..2], None);
        assert!(script.contains("UPDATE alembic_version SET version_num='0002_revision_2' WHERE alembic_version.version_num = '0001_revision_1'\\; COMMIT;"), "{script}");
    }
}
