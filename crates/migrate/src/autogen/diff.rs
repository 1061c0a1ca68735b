//! Compares two catalogs and orders the differences into zero-downtime migrations.

use std::collections::BTreeSet;

use super::catalog::{Catalog, Column, Constraint, Table};
use super::{Plan, Step};

/// Where a statement goes: the migration, then its place in it. Downs run in reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    /// No transaction, before the schema changes: indexes dropped concurrently.
    DropIndexes,
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
        Slot::Concurrent => 2,
        Slot::Finish => 3,
        _ => 1,
    }
}

/// Why a downgrade may do what a zero-downtime upgrade may not: it puts back what head has.
const DOWN_RESTORES: &str =
    "the downgrade puts back, as head has it, what this migration drops or changes";
const DOWN_ENUM: &str = "PostgreSQL cannot drop an enum value: the downgrade recreates the type \
    with head's values and converts its columns";
const NOT_NULL_CHECK: &str =
    "the dropped check only stood in for NOT NULL, which the column has from this migration on";

const PHASES: [(&str, &str, bool); 4] = [
    (
        "drop_indexes",
        "Drops indexes concurrently (outside a transaction).",
        true,
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
    up: Vec<String>,
    down: Vec<String>,
}

#[derive(Default)]
struct Builder {
    items: Vec<Item>,
    allows: BTreeSet<(usize, &'static str, Option<&'static str>)>,
    changes: Vec<String>,
    unresolved: Vec<String>,
}

impl Builder {
    fn add(&mut self, slot: Slot, up: Vec<String>, down: Vec<String>) {
        self.items.push(Item { slot, up, down });
    }

    /// A drop: the `lint-allow` is written without a reason, for the author to give one.
    fn allow(&mut self, slot: Slot, rule: &'static str) {
        self.allows.insert((phase(slot), rule, None));
    }

    /// A rule the generated SQL breaks knowingly, with the reason.
    fn allow_because(&mut self, slot: Slot, rule: &'static str, reason: &'static str) {
        self.allows.insert((phase(slot), rule, Some(reason)));
    }

    fn finish(mut self, not_compared: Vec<String>) -> Plan {
        self.items.sort_by_key(|i| i.slot);
        let mut steps = Vec::new();
        for (p, (suffix, summary, no_transaction)) in PHASES.iter().enumerate() {
            let items: Vec<&Item> = self.items.iter().filter(|i| phase(i.slot) == p).collect();
            let up: Vec<String> = items.iter().flat_map(|i| i.up.iter().cloned()).collect();
            if up.is_empty() {
                continue;
            }
            let mut down: Vec<String> = items
                .iter()
                .rev()
                .flat_map(|i| i.down.iter().cloned())
                .collect();
            if down.is_empty() {
                down.push("-- nothing to undo: the previous migration's downgrade does it".into());
            }
            steps.push(Step {
                suffix,
                summary,
                no_transaction: *no_transaction,
                up,
                down,
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
fn concurrently(def: &str) -> String {
    for prefix in ["CREATE UNIQUE INDEX ", "CREATE INDEX "] {
        if let Some(rest) = def.strip_prefix(prefix) {
            return format!("{prefix}CONCURRENTLY IF NOT EXISTS {rest}");
        }
    }
    def.to_owned()
}

/// `CREATE TABLE` with the columns and the keys and checks (foreign keys and indexes are
/// separate statements: they may refer to tables created later).
fn create_table(name: &str, t: &Table) -> String {
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

fn add_constraint(table: &str, name: &str, c: &Constraint, not_valid: bool) -> String {
    format!(
        "ALTER TABLE {table} ADD CONSTRAINT {name} {}{}",
        c.definition,
        if not_valid { " NOT VALID" } else { "" }
    )
}

fn drop_constraint(table: &str, name: &str) -> String {
    format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")
}

/// The statements that add a table's foreign keys (and constraints left `NOT VALID`) outright,
/// on a table nobody uses yet.
fn foreign_keys_of(name: &str, t: &Table) -> Vec<String> {
    t.constraints
        .iter()
        .filter(|(_, c)| c.kind == 'f' || !c.validated)
        .map(|(cn, c)| add_constraint(name, cn, c, !c.validated))
        .collect()
}

/// Compares the schema at head (`head`) with the desired one (`want`).
pub fn plan(head: &Catalog, want: &Catalog) -> Plan {
    let mut b = Builder::default();
    enums(&mut b, head, want);
    sequences(&mut b, head, want);
    tables(&mut b, head, want);
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
            b.allow_because(Slot::Types, "changing-column-type", DOWN_ENUM);
        }
        b.add(Slot::Types, up, down);
    }
    for (name, values) in &head.enums {
        if !want.enums.contains_key(name) {
            b.changes.push(format!("- enum {name}"));
            b.add(
                Slot::DropTypes,
                vec![format!("DROP TYPE {name}")],
                vec![create_enum(name, values)],
            );
        }
    }
}

/// The last part of a possibly qualified name, for `RENAME TO` (which takes no schema).
fn unquoted_last(name: &str) -> &str {
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

/// The columns as `name type` lines, for comparing tables that may be one renamed.
fn shape(t: &Table) -> Vec<(String, String)> {
    t.columns
        .iter()
        .map(|c| (c.name.clone(), c.type_sql.clone()))
        .collect()
}

fn tables(b: &mut Builder, head: &Catalog, want: &Catalog) {
    let added: Vec<&String> = want
        .tables
        .keys()
        .filter(|n| !head.tables.contains_key(*n))
        .collect();
    let removed: Vec<&String> = head
        .tables
        .keys()
        .filter(|n| !want.tables.contains_key(*n))
        .collect();
    let mut renamed = BTreeSet::new();
    for r in &removed {
        for a in &added {
            if shape(&head.tables[*r]) == shape(&want.tables[*a]) {
                b.unresolved.push(format!(
                    "table {r} is gone and table {a} is new with the same columns: a rename? \
                     Write `ALTER TABLE {r} RENAME TO {a}` (with a view for the old name while \
                     old code runs), or a drop and a create"
                ));
                renamed.insert((*r).clone());
                renamed.insert((*a).clone());
            }
        }
    }
    for name in added.into_iter().filter(|n| !renamed.contains(*n)) {
        let t = &want.tables[name];
        b.changes.push(format!("+ table {name}"));
        b.add(
            Slot::CreateTables,
            vec![create_table(name, t)],
            vec![format!("DROP TABLE IF EXISTS {name}")],
        );
        let fks = foreign_keys_of(name, t);
        let drops = t
            .constraints
            .iter()
            .filter(|(_, c)| c.kind == 'f' || !c.validated)
            .map(|(cn, _)| drop_constraint(name, cn))
            .collect();
        b.add(Slot::AddForeignKeys, fks, drops);
        b.add(
            Slot::NewTableIndexes,
            t.indexes.values().map(|i| i.definition.clone()).collect(),
            vec![],
        );
    }
    for name in removed.into_iter().filter(|n| !renamed.contains(*n)) {
        let t = &head.tables[name];
        b.changes.push(format!("- table {name}"));
        b.allow(Slot::DropTables, "ban-drop-table");
        let mut down = vec![create_table(name, t)];
        down.extend(t.indexes.values().map(|i| i.definition.clone()));
        b.add(Slot::DropTables, vec![format!("DROP TABLE {name}")], down);
        // Recreated by the downgrade after every table exists again.
        b.add(Slot::DropForeignKeys, vec![], foreign_keys_of(name, t));
    }
    for (name, want_t) in &want.tables {
        if let Some(head_t) = head.tables.get(name) {
            columns(b, name, head_t, want_t);
            constraints(b, name, head_t, want_t);
            indexes(b, name, head_t, want_t);
        }
    }
}

fn columns(b: &mut Builder, table: &str, head: &Table, want: &Table) {
    let added: Vec<&Column> = want
        .columns
        .iter()
        .filter(|c| head.column(&c.name).is_none())
        .collect();
    let removed: Vec<&Column> = head
        .columns
        .iter()
        .filter(|c| want.column(&c.name).is_none())
        .collect();
    let mut renamed = BTreeSet::new();
    for r in &removed {
        for a in &added {
            if r.type_sql == a.type_sql {
                b.unresolved.push(format!(
                    "column {table}.{} ({}) is gone and {table}.{} ({}) is new: a rename? Write \
                     `ALTER TABLE {table} RENAME COLUMN {} TO {}` once no running code uses the \
                     old name, or a drop and an add",
                    r.name, r.type_sql, a.name, a.type_sql, r.name, a.name
                ));
                renamed.insert(r.name.clone());
                renamed.insert(a.name.clone());
            }
        }
    }
    for c in added.into_iter().filter(|c| !renamed.contains(&c.name)) {
        b.changes.push(format!("+ column {table}.{}", c.name));
        add_column(b, table, c);
    }
    for c in removed.into_iter().filter(|c| !renamed.contains(&c.name)) {
        b.changes.push(format!("- column {table}.{}", c.name));
        b.allow(Slot::DropColumns, "ban-drop-column");
        b.add(
            Slot::DropColumns,
            vec![format!("ALTER TABLE {table} DROP COLUMN {}", c.name)],
            vec![format!("ALTER TABLE {table} ADD COLUMN {}", c.definition())],
        );
    }
    for w in &want.columns {
        let Some(h) = head.column(&w.name) else {
            continue;
        };
        if h.type_sql != w.type_sql || h.identity != w.identity || h.generated != w.generated {
            b.unresolved.push(format!(
                "column {table}.{}: was `{}`, is now `{}`: a type, identity or generated-column \
                 change rewrites or locks the table; write it by hand (new column, backfill, \
                 switch over)",
                w.name,
                h.definition(),
                w.definition()
            ));
            continue;
        }
        if h.default != w.default {
            b.changes
                .push(format!("~ column {table}.{}: default", w.name));
            let set = |d: &Option<String>| match d {
                Some(d) => format!(
                    "ALTER TABLE {table} ALTER COLUMN {} SET DEFAULT {d}",
                    w.name
                ),
                None => format!("ALTER TABLE {table} ALTER COLUMN {} DROP DEFAULT", w.name),
            };
            if w.default.is_none() {
                b.allow(Slot::Columns, "ban-drop-default");
            }
            b.add(Slot::Columns, vec![set(&w.default)], vec![set(&h.default)]);
        }
        if h.not_null != w.not_null {
            b.changes
                .push(format!("~ column {table}.{}: nullability", w.name));
            if w.not_null {
                set_not_null(b, table, &w.name);
            } else {
                b.allow(Slot::Columns, "ban-drop-not-null");
                b.allow_because(Slot::Columns, "adding-not-nullable-field", DOWN_RESTORES);
                b.add(
                    Slot::Columns,
                    vec![format!(
                        "ALTER TABLE {table} ALTER COLUMN {} DROP NOT NULL",
                        w.name
                    )],
                    vec![format!(
                        "ALTER TABLE {table} ALTER COLUMN {} SET NOT NULL",
                        w.name
                    )],
                );
            }
        }
    }
}

/// `SET NOT NULL` without a long lock: a `CHECK (c IS NOT NULL) NOT VALID` now, validated in the
/// next migration, which then sets NOT NULL (PostgreSQL uses the valid check instead of a scan)
/// and drops the check.
fn set_not_null(b: &mut Builder, table: &str, column: &str) {
    let check = format!(
        "{}_{}_not_null",
        unquoted_last(table).trim_matches('"'),
        column.trim_matches('"')
    );
    let check: String = check.chars().take(63).collect();
    let check = format!("\"{check}\"");
    b.add(
        Slot::Columns,
        vec![format!(
            "ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({column} IS NOT NULL) NOT VALID"
        )],
        vec![drop_constraint(table, &check)],
    );
    b.allow_because(Slot::Finish, "ban-drop-constraint", NOT_NULL_CHECK);
    b.add(
        Slot::Finish,
        vec![
            format!("ALTER TABLE {table} VALIDATE CONSTRAINT {check}"),
            format!("ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL"),
            drop_constraint(table, &check),
        ],
        vec![
            format!("ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL"),
            format!(
                "ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({column} IS NOT NULL) NOT VALID"
            ),
        ],
    );
}

/// `VALIDATE CONSTRAINT` in the finishing migration; its downgrade puts the constraint back as
/// it was before (`NOT VALID`), which only a drop and re-add can do.
fn validate(b: &mut Builder, table: &str, name: &str, c: &Constraint) {
    b.add(
        Slot::Finish,
        vec![format!("ALTER TABLE {table} VALIDATE CONSTRAINT {name}")],
        vec![
            drop_constraint(table, name),
            add_constraint(table, name, c, true),
        ],
    );
}

fn add_column(b: &mut Builder, table: &str, c: &Column) {
    let drop = vec![format!(
        "ALTER TABLE {table} DROP COLUMN IF EXISTS {}",
        c.name
    )];
    let volatile = c.default.is_some() && c.default_volatile;
    let simple = c.identity.is_some() || c.generated.is_some() || !(volatile || c.not_null);
    let constant_not_null = c.not_null && c.default.is_some() && !volatile;
    if simple || constant_not_null {
        // Nullable, or NOT NULL with a constant default: PostgreSQL 11+ stores the default in
        // the catalog, no rewrite, one step.
        b.add(
            Slot::Columns,
            vec![format!("ALTER TABLE {table} ADD COLUMN {}", c.definition())],
            drop,
        );
        return;
    }
    let nullable = Column {
        not_null: false,
        default: None,
        ..c.clone()
    };
    let mut up = vec![format!(
        "ALTER TABLE {table} ADD COLUMN {}",
        nullable.definition()
    )];
    if let Some(d) = &c.default {
        // New rows get the default at once; the rows already there are backfilled in batches.
        up.push(format!(
            "ALTER TABLE {table} ALTER COLUMN {} SET DEFAULT {d}",
            c.name
        ));
        b.add(Slot::Concurrent, vec![backfill(table, &c.name, d)], vec![]);
    }
    b.add(Slot::Columns, up, drop);
    if c.not_null {
        set_not_null(b, table, &c.name);
    }
}

/// A batched backfill: 1000 rows per transaction (the `DO` block commits after each batch, so
/// it runs outside a transaction), rerunnable (it only touches rows still NULL).
fn backfill(table: &str, column: &str, value: &str) -> String {
    format!(
        "DO $backfill$\nDECLARE\n    n bigint;\nBEGIN\n    LOOP\n        UPDATE {table} SET {column} = {value}\n        \
         WHERE ctid IN (SELECT ctid FROM {table} WHERE {column} IS NULL LIMIT 1000);\n        \
         GET DIAGNOSTICS n = ROW_COUNT;\n        COMMIT;\n        EXIT WHEN n = 0;\n    END LOOP;\nEND\n$backfill$"
    )
}

fn constraints(b: &mut Builder, table: &str, head: &Table, want: &Table) {
    for (name, h) in &head.constraints {
        let w = want.constraints.get(name);
        if w.is_some_and(|w| w.kind == h.kind && w.definition == h.definition) {
            continue;
        }
        // Dropped, or changed (dropped here and added again below).
        b.changes.push(format!("- constraint {table}.{name}"));
        let slot = if h.kind == 'f' {
            Slot::DropForeignKeys
        } else {
            Slot::DropConstraints
        };
        b.allow(slot, "ban-drop-constraint");
        if h.validated {
            b.allow_because(slot, "constraint-missing-not-valid", DOWN_RESTORES);
            match h.kind {
                'f' => b.allow_because(slot, "adding-foreign-key-constraint", DOWN_RESTORES),
                'u' => b.allow_because(slot, "disallowed-unique-constraint", DOWN_RESTORES),
                'p' => b.allow_because(slot, "adding-serial-primary-key-field", DOWN_RESTORES),
                _ => {}
            }
        }
        let down = vec![add_constraint(table, name, h, !h.validated)];
        b.add(slot, vec![drop_constraint(table, name)], down);
    }
    for (name, w) in &want.constraints {
        match head.constraints.get(name) {
            Some(h) if h.kind == w.kind && h.definition == w.definition => {
                if !h.validated && w.validated {
                    b.changes
                        .push(format!("~ constraint {table}.{name}: validated"));
                    validate(b, table, name, w);
                } else if h.validated && !w.validated {
                    b.unresolved.push(format!(
                        "constraint {table}.{name} is validated at head but NOT VALID in the \
                         desired schema: nothing to do but drop and re-add it, not guessed"
                    ));
                }
            }
            _ => {
                b.changes.push(format!("+ constraint {table}.{name}"));
                add_constraint_zero_downtime(b, table, name, w);
            }
        }
    }
}

fn add_constraint_zero_downtime(b: &mut Builder, table: &str, name: &str, c: &Constraint) {
    match (c.kind, &c.index) {
        ('p' | 'u', Some(index)) => {
            // The unique index built concurrently, then the constraint attached to it.
            let index_name = format!("{}{name}", schema_prefix(table));
            b.add(
                Slot::Concurrent,
                vec![concurrently(index)],
                vec![format!("DROP INDEX CONCURRENTLY IF EXISTS {index_name}")],
            );
            let what = if c.kind == 'p' {
                "PRIMARY KEY"
            } else {
                "UNIQUE"
            };
            b.add(
                Slot::Finish,
                vec![format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {name} {what} USING INDEX {name}"
                )],
                // Dropping the constraint drops its index; the previous migration's state has
                // the index alone.
                vec![drop_constraint(table, name), index.clone()],
            );
            b.allow_because(
                Slot::Finish,
                "require-concurrent-index-creation",
                DOWN_RESTORES,
            );
        }
        _ => {
            // Foreign keys and checks: NOT VALID now (no scan under the lock), VALIDATE in the
            // next migration (reads and writes go on).
            b.add(
                if c.kind == 'f' {
                    Slot::AddForeignKeys
                } else {
                    Slot::AddConstraints
                },
                vec![add_constraint(table, name, c, true)],
                vec![drop_constraint(table, name)],
            );
            if c.validated {
                validate(b, table, name, c);
            }
        }
    }
}

/// `schema.` of a qualified table name (empty for `public`), for the names of its indexes.
fn schema_prefix(table: &str) -> String {
    match table.rsplit_once('.') {
        Some((schema, _)) => format!("{schema}."),
        None => String::new(),
    }
}

fn indexes(b: &mut Builder, table: &str, head: &Table, want: &Table) {
    for (name, h) in &head.indexes {
        if want.indexes.get(name) == Some(h) {
            continue;
        }
        b.changes.push(format!("- index {name}"));
        b.add(
            Slot::DropIndexes,
            vec![format!("DROP INDEX CONCURRENTLY IF EXISTS {name}")],
            vec![concurrently(&h.definition)],
        );
    }
    for (name, w) in &want.indexes {
        if head.indexes.get(name) == Some(w) {
            continue;
        }
        b.changes.push(format!("+ index {name} on {table}"));
        b.add(
            Slot::Concurrent,
            vec![concurrently(&w.definition)],
            vec![format!("DROP INDEX CONCURRENTLY IF EXISTS {name}")],
        );
    }
}
