//! The plan under construction: each statement in its [`Slot`], with the down that undoes it
//! and the `lint-allow` exceptions it needs, ordered into one migration per phase by
//! [`Builder::finish`]. `diff.rs` and `tables.rs` both fill it.

use std::collections::BTreeSet;

use super::barrel::BarrelChange;
use super::step::{Plan, Step};

/// A statement: its SQL, and the barrel change the `.rs` form writes instead where barrel
/// expresses it exactly (see [`super::barrel`]).
pub(super) type Stmt = (String, Option<BarrelChange>);

/// Where a statement goes: the migration, then its place in it. Downs run in reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Slot {
    /// No transaction, before the schema changes: indexes dropped concurrently.
    DropIndexes,
    /// Its own transaction: enum values added (PostgreSQL refuses to use a new value in the
    /// transaction that added it, and the schema change may use it).
    EnumValues,
    /// The transactional schema change, in this order.
    Types,
    Sequences,
    DropForeignKeys,
    DropConstraints,
    CreateTables,
    Columns,
    AddConstraints,
    AddForeignKeys,
    NewTableIndexes,
    SequenceOwners,
    DropColumns,
    DropTables,
    DropSequences,
    DropTypes,
    /// No transaction: indexes built concurrently, batched backfills.
    Concurrent,
    /// The next migration: validations, `SET NOT NULL`, constraints on the new indexes.
    Finish,
}

/// Which migration a slot belongs to.
fn phase(slot: Slot) -> usize {
    match slot {
        Slot::DropIndexes => 0,
        Slot::EnumValues => 1,
        Slot::Concurrent => 3,
        Slot::Finish => 4,
        _ => 2,
    }
}

/// Why a downgrade may do what a zero-downtime upgrade may not: it puts back what head has.
pub(super) const DOWN_RESTORES: &str =
    "the downgrade puts back, as head has it, what this migration drops or changes";
/// Why a check may be dropped where NOT NULL replaces it.
pub(super) const NOT_NULL_CHECK: &str =
    "the dropped check only stood in for NOT NULL, which the column has from this migration on";

const PHASES: [(&str, &str, bool); 5] = [
    (
        "drop_indexes",
        "Drops indexes concurrently (outside a transaction).",
        true,
    ),
    (
        "enum_values",
        "Adds enum values, committed before anything uses them.",
        false,
    ),
    ("changes", "The schema changes (one transaction).", false),
    (
        "concurrently",
        "Builds indexes concurrently and backfills in batches (outside a transaction).",
        true,
    ),
    (
        "validate",
        "Validates what the previous migrations added NOT VALID, sets NOT NULL, attaches constraints to their new indexes.",
        false,
    ),
];

struct Item {
    slot: Slot,
    up: Vec<Stmt>,
    down: Vec<Stmt>,
}

#[derive(Default)]
pub(super) struct Builder {
    items: Vec<Item>,
    allows: BTreeSet<(usize, &'static str, Option<&'static str>)>,
    pub(super) changes: Vec<String>,
    pub(super) unresolved: Vec<String>,
    /// The server stores NOT NULL as a named constraint that can be added `NOT VALID`
    /// (PostgreSQL 18+): `SET NOT NULL` uses that form instead of a stand-in check.
    pub(super) native_not_null: bool,
}

impl Builder {
    /// An empty plan; `native_not_null` for a server that stores NOT NULL as a constraint.
    pub(super) fn new(native_not_null: bool) -> Builder {
        Builder {
            native_not_null,
            ..Builder::default()
        }
    }

    pub(super) fn add(&mut self, slot: Slot, up: Vec<String>, down: Vec<String>) {
        let sql = |v: Vec<String>| v.into_iter().map(|s| (s, None)).collect();
        self.add_stmts(slot, sql(up), sql(down));
    }

    /// [`Builder::add`] with statements that may have a barrel form.
    pub(super) fn add_stmts(&mut self, slot: Slot, up: Vec<Stmt>, down: Vec<Stmt>) {
        self.items.push(Item { slot, up, down });
    }

    /// A drop: the `lint-allow` is written without a reason, for the author to give one.
    pub(super) fn allow(&mut self, slot: Slot, rule: &'static str) {
        self.allows.insert((phase(slot), rule, None));
    }

    /// A rule the generated SQL breaks knowingly, with the reason.
    pub(super) fn allow_because(&mut self, slot: Slot, rule: &'static str, reason: &'static str) {
        self.allows.insert((phase(slot), rule, Some(reason)));
    }

    /// The steps, one per phase that has statements, and what the plan could not write.
    pub(super) fn finish(mut self, not_compared: Vec<String>) -> Plan {
        self.items.sort_by_key(|i| i.slot);
        let mut steps = Vec::new();
        for (p, (suffix, summary, no_transaction)) in PHASES.iter().enumerate() {
            let items: Vec<&Item> = self.items.iter().filter(|i| phase(i.slot) == p).collect();
            let up: Vec<Stmt> = items.iter().flat_map(|i| i.up.iter().cloned()).collect();
            if up.is_empty() {
                continue;
            }
            let mut down: Vec<Stmt> = items
                .iter()
                .rev()
                .flat_map(|i| i.down.iter().cloned())
                .collect();
            if down.is_empty() {
                down.push((
                    "-- nothing to undo: the previous migration's downgrade does it".into(),
                    None,
                ));
            }
            let (up, up_barrel) = up.into_iter().unzip();
            let (down, down_barrel) = down.into_iter().unzip();
            steps.push(Step {
                suffix,
                summary,
                no_transaction: *no_transaction,
                up,
                down,
                up_barrel,
                down_barrel,
                allows: self
                    .allows
                    .iter()
                    .filter(|(ph, _, _)| *ph == p)
                    .map(|(_, rule, reason)| (*rule, *reason))
                    .collect(),
            });
        }
        // A step's suffix names it; the first written step takes the plain slug.
        if let Some(first) = steps.first_mut() {
            first.suffix = "";
        }
        Plan {
            changes: self.changes,
            steps,
            unresolved: self.unresolved,
            not_compared,
        }
    }
}
