//! Compares two catalogs and orders the differences into zero-downtime migrations.

use std::collections::BTreeSet;

use super::barrel::BarrelChange;
use super::catalog::{Catalog, Column, Constraint, Table};
use super::{Plan, Step};

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
const DOWN_ENUM: &str = "PostgreSQL cannot drop an enum value: the downgrade recreates the type \
    with head's values and converts its columns";
/// The first major with `ADD CONSTRAINT name NOT NULL column NOT VALID`.
pub(super) const NATIVE_NOT_NULL_MAJOR: u32 = 18;
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

    fn finish(mut self, not_compared: Vec<String>) -> Plan {
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

/// `CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS ...` from a `pg_get_indexdef`.
pub(super) fn concurrently(def: &str) -> String {
    for prefix in ["CREATE UNIQUE INDEX ", "CREATE INDEX "] {
        if let Some(rest) = def.strip_prefix(prefix) {
            return format!("{prefix}CONCURRENTLY IF NOT EXISTS {rest}");
        }
    }
    def.to_owned()
}

/// `CREATE TABLE` with the columns and the keys and checks (foreign keys and indexes are
/// separate statements: they may refer to tables created later).
pub(super) fn create_table(name: &str, t: &Table) -> String {
    let cols: Vec<String> = t
        .columns
        .iter()
        .map(|c| format!("    {}", c.definition()))
        .chain(
            t.constraints
                .iter()
                .filter(|(_, c)| c.kind != 'f' && c.validated)
                .map(|(cn, c)| format!("    CONSTRAINT {cn} {}", c.definition)),
        )
        .collect();
    format!("CREATE TABLE {name} (\n{}\n)", cols.join(",\n"))
}

pub(super) fn add_constraint(table: &str, name: &str, c: &Constraint, not_valid: bool) -> String {
    format!(
        "ALTER TABLE {table} ADD CONSTRAINT {name} {}{}",
        c.definition,
        if not_valid { " NOT VALID" } else { "" }
    )
}

pub(super) fn drop_constraint(table: &str, name: &str) -> String {
    format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")
}

/// The statements that add a table's foreign keys (and constraints left `NOT VALID`) outright,
/// on a table nobody uses yet.
pub(super) fn foreign_keys_of(name: &str, t: &Table) -> Vec<String> {
    t.constraints
        .iter()
        .filter(|(_, c)| c.kind == 'f' || !c.validated)
        .map(|(cn, c)| add_constraint(name, cn, c, !c.validated))
        .collect()
}

/// Compares the schema at head (`head`) with the desired one (`want`).
pub fn plan(head: &Catalog, want: &Catalog) -> Plan {
    let mut b = Builder {
        native_not_null: want.server_major >= NATIVE_NOT_NULL_MAJOR,
        ..Builder::default()
    };
    enums(&mut b, head, want);
    sequences(&mut b, head, want);
    super::tables::tables(&mut b, head, want);
    let mut not_compared: Vec<String> = head
        .not_compared
        .iter()
        .chain(&want.not_compared)
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    not_compared.extend(
        [
            "column order, collations, storage and statistics settings",
            "table options (reloptions), partitioning, row level security, comments, grants",
            "identity sequence options",
        ]
        .map(str::to_owned),
    );
    b.finish(not_compared)
}

fn create_enum(name: &str, values: &[String]) -> String {
    format!("CREATE TYPE {name} AS ENUM ({})", values.join(", "))
}

fn enums(b: &mut Builder, head: &Catalog, want: &Catalog) {
    for (name, values) in &want.enums {
        let Some(old) = head.enums.get(name) else {
            b.changes.push(format!("+ enum {name}"));
            b.add(
                Slot::Types,
                vec![create_enum(name, values)],
                vec![format!("DROP TYPE IF EXISTS {name}")],
            );
            continue;
        };
        if old == values {
            continue;
        }
        // Only values added (anywhere) keep the old ones in order: ADD VALUE can do that.
        let kept: Vec<&String> = values.iter().filter(|v| old.contains(v)).collect();
        if kept.len() != old.len() || kept.iter().zip(old).any(|(a, b)| *a != b) {
            b.unresolved.push(format!(
                "enum {name}: values were ({}) and are now ({}): a value was removed, renamed or \
                 moved, which needs the type recreated and every column using it rewritten",
                old.join(", "),
                values.join(", ")
            ));
            continue;
        }
        let mut up = Vec::new();
        for (i, v) in values.iter().enumerate() {
            if old.contains(v) {
                continue;
            }
            b.changes.push(format!("+ enum value {name}.{v}"));
            up.push(match i {
                0 => format!(
                    "ALTER TYPE {name} ADD VALUE IF NOT EXISTS {v} BEFORE {}",
                    old[0]
                ),
                _ => format!(
                    "ALTER TYPE {name} ADD VALUE IF NOT EXISTS {v} AFTER {}",
                    values[i - 1]
                ),
            });
        }
        // PostgreSQL cannot drop an enum value: the downgrade recreates the type with the old
        // values and converts every column using it (they must hold none of the new values).
        let old_name = format!("{name}_autogen_old");
        let mut down = vec![
            format!("ALTER TYPE {name} RENAME TO {}", unquoted_last(&old_name)),
            create_enum(name, old),
        ];
        let users: Vec<(&String, &Column)> = head
            .tables
            .iter()
            .flat_map(|(tn, t)| t.columns.iter().map(move |c| (tn, c)))
            .filter(|(_, c)| c.type_sql == *name)
            .collect();
        for (tn, c) in &users {
            if c.default.is_some() {
                down.push(format!(
                    "ALTER TABLE {tn} ALTER COLUMN {} DROP DEFAULT",
                    c.name
                ));
            }
            down.push(format!(
                "ALTER TABLE {tn} ALTER COLUMN {col} TYPE {name} USING {col}::text::{name}",
                col = c.name
            ));
            if let Some(d) = &c.default {
                down.push(format!(
                    "ALTER TABLE {tn} ALTER COLUMN {} SET DEFAULT {d}",
                    c.name
                ));
            }
        }
        down.push(format!("DROP TYPE {old_name}"));
        if !users.is_empty() {
            b.allow_because(Slot::EnumValues, "changing-column-type", DOWN_ENUM);
        }
        b.add(Slot::EnumValues, up, down);
    }
    for (name, values) in &head.enums {
        if !want.enums.contains_key(name) {
            b.changes.push(format!("- enum {name}"));
            b.allow(Slot::DropTypes, "ban-drop-type");
            b.add(
                Slot::DropTypes,
                vec![format!("DROP TYPE {name}")],
                vec![create_enum(name, values)],
            );
        }
    }
}

/// The last part of a possibly qualified name, for `RENAME TO` (which takes no schema).
pub(super) fn unquoted_last(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

fn sequences(b: &mut Builder, head: &Catalog, want: &Catalog) {
    for (name, s) in &want.sequences {
        match head.sequences.get(name) {
            None => {
                b.changes.push(format!("+ sequence {name}"));
                b.add(
                    Slot::Sequences,
                    vec![format!("CREATE SEQUENCE {name} {}", s.options)],
                    vec![format!("DROP SEQUENCE IF EXISTS {name}")],
                );
                if let Some(owner) = &s.owned_by {
                    b.add(
                        Slot::SequenceOwners,
                        vec![format!("ALTER SEQUENCE {name} OWNED BY {owner}")],
                        vec![format!("ALTER SEQUENCE {name} OWNED BY NONE")],
                    );
                }
            }
            Some(old) if old.options != s.options => {
                b.changes.push(format!("~ sequence {name}: {}", s.options));
                b.add(
                    Slot::Sequences,
                    vec![format!("ALTER SEQUENCE {name} {}", s.options)],
                    vec![format!("ALTER SEQUENCE {name} {}", old.options)],
                );
            }
            Some(_) => {}
        }
    }
    for (name, s) in &head.sequences {
        if !want.sequences.contains_key(name) {
            b.changes.push(format!("- sequence {name}"));
            b.allow(Slot::DropSequences, "ban-drop-sequence");
            b.add(
                Slot::DropSequences,
                vec![format!("DROP SEQUENCE {name}")],
                vec![format!("CREATE SEQUENCE {name} {}", s.options)],
            );
            if let Some(owner) = &s.owned_by {
                b.add(
                    Slot::SequenceOwners,
                    vec![],
                    vec![format!("ALTER SEQUENCE {name} OWNED BY {owner}")],
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autogen::catalog::Column;

    fn catalog(columns: Vec<Column>) -> Catalog {
        let mut c = Catalog::default();
        c.tables.insert(
            "t".into(),
            Table {
                columns,
                ..Table::default()
            },
        );
        c
    }

    #[test]
    fn set_not_null_is_a_not_valid_check_then_a_later_validation() {
        let head = catalog(vec![Column::plain("a", "text", false)]);
        let want = catalog(vec![Column::plain("a", "text", true)]);
        let plan = plan(&head, &want);
        assert_eq!(plan.steps.len(), 2, "{plan:#?}");
        assert!(!plan.steps[0].no_transaction);
        assert_eq!(
            plan.steps[0].up,
            ["ALTER TABLE t ADD CONSTRAINT \"t_a_not_null_tmp\" CHECK (a IS NOT NULL) NOT VALID"]
        );
        assert_eq!(plan.steps[1].suffix, "validate");
        assert_eq!(
            plan.steps[1].up[1],
            "ALTER TABLE t ALTER COLUMN a SET NOT NULL"
        );
        // The finishing step's downgrade undoes it in reverse: NOT NULL off, the check back.
        assert_eq!(plan.steps[1].down.len(), 2);
    }

    #[test]
    fn set_not_null_on_18_is_the_native_not_valid_constraint_under_the_servers_own_name() {
        let mut head = catalog(vec![Column::plain("a", "text", false)]);
        let mut want = catalog(vec![Column::plain("a", "text", true)]);
        head.server_major = 18;
        want.server_major = 18;
        let plan = plan(&head, &want);
        assert_eq!(plan.steps.len(), 2, "{plan:#?}");
        assert_eq!(
            plan.steps[0].up,
            ["ALTER TABLE t ADD CONSTRAINT \"t_a_not_null\" NOT NULL a NOT VALID"]
        );
        assert_eq!(
            plan.steps[1].up,
            ["ALTER TABLE t VALIDATE CONSTRAINT \"t_a_not_null\""]
        );
        assert_eq!(
            plan.steps[1].down,
            [
                "ALTER TABLE t ALTER COLUMN a DROP NOT NULL",
                "ALTER TABLE t ADD CONSTRAINT \"t_a_not_null\" NOT NULL a NOT VALID"
            ]
        );
    }

    #[test]
    fn a_column_that_may_be_renamed_is_not_guessed() {
        let head = catalog(vec![Column::plain("a", "text", false)]);
        let want = catalog(vec![Column::plain("b", "text", false)]);
        let plan = plan(&head, &want);
        assert!(plan.steps.is_empty(), "{plan:#?}");
        assert_eq!(plan.unresolved.len(), 1);
        assert!(plan.unresolved[0].contains("RENAME COLUMN a TO b"));
    }

    #[test]
    fn equal_catalogs_plan_nothing_but_list_what_is_not_compared() {
        let head = catalog(vec![Column::plain("a", "text", false)]);
        let plan = plan(&head, &head.clone());
        assert!(plan.is_empty());
        assert!(!plan.not_compared.is_empty());
    }

    #[test]
    fn sequences_are_altered_and_dropped_with_their_options() {
        use crate::autogen::catalog::Sequence;
        let seq = |options: &str| Sequence {
            options: options.into(),
            owned_by: None,
        };
        let mut head = Catalog::default();
        head.sequences
            .insert("s".into(), seq("AS bigint INCREMENT BY 1"));
        head.sequences
            .insert("gone".into(), seq("AS integer INCREMENT BY 1"));
        let mut want = Catalog::default();
        want.sequences
            .insert("s".into(), seq("AS bigint INCREMENT BY 5"));
        let plan = plan(&head, &want);
        assert_eq!(plan.steps.len(), 1, "{plan:#?}");
        assert_eq!(
            plan.steps[0].up,
            [
                "ALTER SEQUENCE s AS bigint INCREMENT BY 5",
                "DROP SEQUENCE gone"
            ]
        );
        assert_eq!(
            plan.steps[0].down,
            [
                "CREATE SEQUENCE gone AS integer INCREMENT BY 1",
                "ALTER SEQUENCE s AS bigint INCREMENT BY 1"
            ]
        );
    }

    #[test]
    fn step_ids_fit_alembic_version() {
        let step = Step {
            suffix: "concurrently",
            summary: "",
            no_transaction: true,
            up: vec![],
            down: vec![],
            up_barrel: vec![],
            down_barrel: vec![],
            allows: vec![],
        };
        let slug = "a_slug_of_twenty_seven_char";
        for i in 0..3 {
            let id = crate::autogen::step_id(11, i, slug, &step);
            assert!(id.len() <= notify_db_migrate::MAX_ID_LEN, "{id}");
        }
        assert_eq!(
            crate::autogen::step_id(11, 0, slug, &step),
            format!("0011_{slug}")
        );
        assert_eq!(
            crate::autogen::step_id(11, 1, slug, &step),
            "0012_a_slug_of_twen_concurrently"
        );
    }
}
