//! The order of a migration set: one linear history, as Alembic's `down_revision` chain.
//!
//! A migration follows its declared parent ([`Migration::parent`], `-- notify-db: parent=ID`);
//! without one, it follows the migration with the highest number below its own (none: it starts
//! the history). An imported Alembic history declares every parent, so its odd ids
//! (`db6d9d9f06bc`, `0468`) and repeated numbers (`0014_add_template_version`,
//! `0014_drop_monthly_billing_cols`) keep their places; our own `NNNN_slug` migrations need no
//! link. A baseline starts the set (a migration with nothing numbered below it follows the
//! baseline). Branches (two heads), loops and links to unknown revisions are refused.

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, SetError};
use crate::migration::Migration;

/// What `parent` means for a migration that starts the history.
const BASE: &str = "base";

/// Orders `migrations` into one chain; returns them with warnings (gaps in unlinked numbering).
pub(crate) fn order(migrations: Vec<Migration>) -> Result<(Vec<Migration>, Vec<String>), SetError> {
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(migrations.len());
    for (i, m) in migrations.iter().enumerate() {
        if index.insert(m.id(), i).is_some() {
            return Err(SetError::DuplicateId {
                id: m.id().to_owned(),
            });
        }
    }
    let linked = migrations.iter().any(|m| m.declared_parent().is_some());
    // The baseline starts the set whatever its id (an Alembic hex id has no number).
    let mut baseline = None;
    for (i, m) in migrations.iter().enumerate() {
        if !m.is_baseline() {
            continue;
        }
        let misplaced = |reason: String| SetError::MisplacedBaseline {
            id: m.id().to_owned(),
            reason,
        };
        if let Some(p) = m.declared_parent() {
            return Err(misplaced(format!("it declares the parent {p}")));
        }
        if let Some(first) = baseline.replace(i) {
            return Err(misplaced(format!(
                "{} is a baseline too",
                migrations[first].id()
            )));
        }
    }
    // Numbers of the migrations that need them: all without a link. Two of those sharing a
    // number cannot both follow the one below.
    let mut by_number: BTreeMap<u32, usize> = BTreeMap::new();
    let mut all_numbers: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, m) in migrations.iter().enumerate() {
        if let Some(n) = m.number() {
            all_numbers.entry(n).or_default().push(i);
        }
        if m.declared_parent().is_some() || m.is_baseline() {
            continue;
        }
        let n = m.number().ok_or_else(|| SetError::NoOrder {
            id: m.id().to_owned(),
        })?;
        if let Some(first) = by_number.insert(n, i) {
            return Err(SetError::DuplicateNumber {
                number: n,
                first: migrations[first].id().to_owned(),
                second: m.id().to_owned(),
            });
        }
    }
    // parent[i]: the index this migration follows, None when it starts the history.
    let mut parent: Vec<Option<usize>> = Vec::with_capacity(migrations.len());
    for m in &migrations {
        let p = match m.declared_parent() {
            Some(p) => Some(*index.get(p).ok_or_else(|| SetError::UnknownParent {
                id: m.id().to_owned(),
                parent: p.to_owned(),
            })?),
            None if m.is_baseline() => None,
            None => {
                let n = m.number().unwrap_or(0);
                match all_numbers.range(..n).next_back() {
                    None => baseline,
                    Some((&below, ids)) => match ids.as_slice() {
                        [one] => Some(*one),
                        [first, second, ..] => {
                            return Err(SetError::DuplicateNumber {
                                number: below,
                                first: migrations[*first].id().to_owned(),
                                second: migrations[*second].id().to_owned(),
                            });
                        }
                        [] => None,
                    },
                }
            }
        };
        parent.push(p);
    }
    // One child per revision (BASE included): otherwise a branch.
    let mut child: HashMap<Option<usize>, usize> = HashMap::with_capacity(migrations.len());
    for (i, p) in parent.iter().enumerate() {
        if let Some(first) = child.insert(*p, i) {
            let (first, second) = sorted_pair(migrations[first].id(), migrations[i].id());
            return Err(SetError::Branch {
                parent: p.map_or(BASE, |p| migrations[p].id()).to_owned(),
                first,
                second,
            });
        }
    }
    let mut chain = Vec::with_capacity(migrations.len());
    let mut at = None;
    while let Some(&next) = child.get(&at) {
        chain.push(next);
        at = Some(next);
    }
    if chain.len() < migrations.len() && !migrations.is_empty() {
        let mut looped: Vec<&str> = (0..migrations.len())
            .filter(|i| !chain.contains(i))
            .map(|i| migrations[i].id())
            .collect();
        looped.sort_unstable();
        return Err(SetError::Cycle {
            ids: looped.join(", "),
        });
    }
    let warnings = if linked {
        Vec::new()
    } else {
        gaps(&by_number, &migrations)
    };
    let mut slots: Vec<Option<Migration>> = migrations.into_iter().map(Some).collect();
    let ordered = chain.into_iter().filter_map(|i| slots[i].take()).collect();
    Ok((ordered, warnings))
}

fn sorted_pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

/// Warnings for gaps in the numbering of an unlinked set (which may start at any number: a set
/// continuing from a baseline does).
fn gaps(by_number: &BTreeMap<u32, usize>, migrations: &[Migration]) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut previous: Option<u32> = None;
    for (&n, &i) in by_number {
        if let Some(p) = previous
            && n != p + 1
        {
            warnings.push(format!(
                "gap in migration numbering: {} follows {p:04}",
                migrations[i].id()
            ));
        }
        previous = Some(n);
    }
    warnings
}

/// The error for a database at revision `current`, which the ordered `migrations` do not have.
pub(crate) fn unknown_revision(migrations: &[Migration], current: &str) -> Error {
    let theirs = Migration::new(current).number();
    let head = migrations.iter().filter_map(Migration::number).max();
    let ahead = matches!((theirs, head), (Some(t), Some(h)) if t > h)
        || (head.is_none() && theirs.is_some());
    match migrations.first().filter(|m| m.is_baseline()) {
        Some(b) if !ahead => Error::BeforeBaseline {
            current: current.to_owned(),
            baseline: b.id().to_owned(),
            older: matches!((theirs, b.number()), (Some(t), Some(n)) if t < n),
        },
        _ => Error::UnknownRevision {
            current: current.to_owned(),
            ahead,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::set::MigrationSet;

    fn m(id: &str) -> Migration {
        Migration::new(id).up("SELECT 1")
    }

    fn ids(set: &MigrationSet) -> Vec<&str> {
        set.migrations().iter().map(Migration::id).collect()
    }

    #[test]
    fn parent_links_order_odd_ids_and_repeated_numbers() {
        let set = MigrationSet::new(vec![
            m("0468").parent("0014_drop_monthly_billing_cols"),
            m("0014_drop_monthly_billing_cols").parent("db6d9d9f06bc"),
            m("db6d9d9f06bc").parent("0014_add_template_version"),
            m("0014_add_template_version").parent("0013_a"),
            m("0013_a"),
            // Ours, after the imported head, by number: no link needed.
            m("0469_ours"),
        ])
        .expect("a linked history");
        assert_eq!(
            ids(&set),
            vec![
                "0013_a",
                "0014_add_template_version",
                "db6d9d9f06bc",
                "0014_drop_monthly_billing_cols",
                "0468",
                "0469_ours"
            ]
        );
        assert!(set.uses_parent_links());
        assert_eq!(set.next_number(), "0470");
    }

    #[test]
    fn branches_loops_and_unknown_parents_are_refused_naming_the_ids() {
        let branch = MigrationSet::new(vec![
            m("0001_a"),
            m("0002_b").parent("0001_a"),
            m("abc123").parent("0001_a"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            branch.contains("0002_b") && branch.contains("abc123") && branch.contains("0001_a"),
            "{branch}"
        );
        let unknown = MigrationSet::new(vec![m("0001_a"), m("eeee").parent("nope")])
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("eeee") && unknown.contains("nope"),
            "{unknown}"
        );
        let looped = MigrationSet::new(vec![
            m("0001_a"),
            m("aaaa").parent("bbbb"),
            m("bbbb").parent("aaaa"),
        ])
        .unwrap_err()
        .to_string();
        assert!(looped.contains("aaaa, bbbb"), "{looped}");
        let orphan = MigrationSet::new(vec![m("0001_a"), m("deadbeef")])
            .unwrap_err()
            .to_string();
        assert!(orphan.contains("deadbeef"), "{orphan}");
        let dup = MigrationSet::new(vec![m("0001_a"), m("0001_a")]).unwrap_err();
        assert!(matches!(dup, SetError::DuplicateId { .. }), "{dup}");
    }

    #[test]
    fn a_baseline_starts_the_set() {
        let set = MigrationSet::new(vec![
            m("0561_ours"),
            m("0560_add_nhs_notify_org").baseline(),
        ])
        .unwrap();
        assert_eq!(
            set.baseline().map(Migration::id),
            Some("0560_add_nhs_notify_org")
        );
        assert_eq!(ids(&set), vec!["0560_add_nhs_notify_org", "0561_ours"]);
        let hex = MigrationSet::new(vec![m("0001_ours"), m("db6d9d9f06bc").baseline()]).unwrap();
        assert_eq!(ids(&hex), vec!["db6d9d9f06bc", "0001_ours"]);
        let two = MigrationSet::new(vec![m("0001_a").baseline(), m("0002_b").baseline()])
            .unwrap_err()
            .to_string();
        assert!(two.contains("0001_a") && two.contains("0002_b"), "{two}");
        let late = MigrationSet::new(vec![m("0001_a"), m("0002_b").baseline().parent("0001_a")])
            .unwrap_err()
            .to_string();
        assert!(
            late.contains("0002_b") && late.contains("declares the parent 0001_a"),
            "{late}"
        );
        let older = unknown_revision(set.migrations(), "0300_old").to_string();
        assert!(
            older.contains("0300_old")
                && older.contains("baseline 0560_add_nhs_notify_org")
                && older.contains("older"),
            "{older}"
        );
        assert!(matches!(
            unknown_revision(set.migrations(), "0600_newer"),
            Error::UnknownRevision { ahead: true, .. }
        ));
    }
}
