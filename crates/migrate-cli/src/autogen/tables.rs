//! Tables, columns, constraints and indexes: what differs, in zero-downtime form.

use std::collections::BTreeSet;

use super::barrel::BarrelChange;
use super::builder::{Builder, DOWN_RESTORES, NOT_NULL_CHECK, Slot, Stmt};
use super::catalog::{Catalog, Column, Constraint, Table};
use super::ddl::{
    add_constraint, concurrently, create_table, drop_constraint, foreign_keys_of, unquoted_last,
};

/// `CREATE TABLE` of `t`, with its barrel form when it has one.
fn create_table_stmt(name: &str, t: &Table) -> Stmt {
    (create_table(name, t), BarrelChange::create_table(name, t))
}

/// `ADD COLUMN` of `c`, with its barrel form when it has one.
fn add_column_stmt(table: &str, c: &Column) -> Stmt {
    (
        format!("ALTER TABLE {table} ADD COLUMN {}", c.definition()),
        BarrelChange::add_column(table, c),
    )
}

/// The columns as `name type` lines, for comparing tables that may be one renamed.
fn shape(t: &Table) -> Vec<(String, String)> {
    t.columns
        .iter()
        .map(|c| (c.name.clone(), c.type_sql.clone()))
        .collect()
}

pub(super) fn tables(b: &mut Builder, head: &Catalog, want: &Catalog) {
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
        b.add_stmts(
            Slot::CreateTables,
            vec![create_table_stmt(name, t)],
            vec![(
                format!("DROP TABLE IF EXISTS {name}"),
                BarrelChange::drop_table(name, true),
            )],
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
        let mut down = vec![create_table_stmt(name, t)];
        down.extend(t.indexes.values().map(|i| (i.definition.clone(), None)));
        let up = (
            format!("DROP TABLE {name}"),
            BarrelChange::drop_table(name, false),
        );
        b.add_stmts(Slot::DropTables, vec![up], down);
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
        if c.not_null && c.default.is_none() && c.identity.is_none() && c.generated.is_none() {
            b.allow_because(Slot::DropColumns, "adding-required-field", DOWN_RESTORES);
        }
        let up = (
            format!("ALTER TABLE {table} DROP COLUMN {}", c.name),
            BarrelChange::drop_column(table, &c.name),
        );
        b.add_stmts(Slot::DropColumns, vec![up], vec![add_column_stmt(table, c)]);
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

/// `SET NOT NULL` without a long lock: the constraint added `NOT VALID` now (a short lock, no
/// scan), validated in the next migration. On PostgreSQL 18+ that is the native
/// `ADD CONSTRAINT <table>_<column>_not_null NOT NULL column NOT VALID`, named as the server
/// names a column's NOT NULL (so that pg_dump shows a plain `NOT NULL`, as on the development
/// database). Before 18 it is a stand-in `CHECK (column IS NOT NULL) NOT VALID`; the next
/// migration validates it, sets NOT NULL (PostgreSQL uses the valid check instead of a scan)
/// and drops it. The check's name ends in `_not_null_tmp`, which the server never chooses (its
/// names end in a label such as `not_null` or `check` and digits): on 18, a check named
/// `<table>_<column>_not_null` would push the real NOT NULL to `..._not_null1`.
fn set_not_null(b: &mut Builder, table: &str, column: &str) {
    let (t, c) = (
        unquoted_last(table).trim_matches('"'),
        column.trim_matches('"'),
    );
    if b.native_not_null {
        let name = format!("\"{}\"", server_style_name(t, c, "not_null"));
        let add = format!("ALTER TABLE {table} ADD CONSTRAINT {name} NOT NULL {column} NOT VALID");
        let drop = format!("ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL");
        b.add(Slot::Columns, vec![add.clone()], vec![drop.clone()]);
        b.add(
            Slot::Finish,
            vec![format!("ALTER TABLE {table} VALIDATE CONSTRAINT {name}")],
            vec![drop, add],
        );
        return;
    }
    let check = format!("\"{}\"", server_style_name(t, c, "not_null_tmp"));
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

/// `<table>_<column>_<label>` shortened as PostgreSQL shortens the names it chooses
/// (`makeObjectName`): the longer of table and column loses characters until the whole fits in
/// 63 bytes, the label stays whole.
fn server_style_name(table: &str, column: &str, label: &str) -> String {
    let avail = 63usize.saturating_sub(label.len() + 2);
    let (mut t, mut c) = (table.len(), column.len());
    while t + c > avail {
        if t > c { t -= 1 } else { c -= 1 }
    }
    let clip = |s: &str, n: usize| {
        let mut n = n;
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        s[..n].to_owned()
    };
    format!("{}_{}_{label}", clip(table, t), clip(column, c))
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
    let drop = vec![(
        format!("ALTER TABLE {table} DROP COLUMN IF EXISTS {}", c.name),
        None,
    )];
    let volatile = c.default.is_some() && c.default_volatile;
    let simple = c.identity.is_some() || c.generated.is_some() || !(volatile || c.not_null);
    let constant_not_null = c.not_null && c.default.is_some() && !volatile;
    if simple || constant_not_null {
        // Nullable, or NOT NULL with a constant default: PostgreSQL 11+ stores the default in
        // the catalog, no rewrite, one step.
        b.add_stmts(Slot::Columns, vec![add_column_stmt(table, c)], drop);
        return;
    }
    let nullable = Column {
        not_null: false,
        default: None,
        ..c.clone()
    };
    let mut up = vec![add_column_stmt(table, &nullable)];
    if let Some(d) = &c.default {
        // New rows get the default at once; the rows already there are backfilled in batches.
        up.push((
            format!(
                "ALTER TABLE {table} ALTER COLUMN {} SET DEFAULT {d}",
                c.name
            ),
            None,
        ));
        b.add(Slot::Concurrent, vec![backfill(table, &c.name, d)], vec![]);
    }
    b.add_stmts(Slot::Columns, up, drop);
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

#[cfg(test)]
mod tests {
    use super::server_style_name;

    #[test]
    fn names_are_shortened_as_the_server_shortens_them() {
        assert_eq!(server_style_name("t", "a", "not_null"), "t_a_not_null");
        // 63 bytes at most; the longer part loses characters first, the label stays whole.
        let (table, column) = ("t".repeat(40), "c".repeat(30));
        let name = server_style_name(&table, &column, "not_null");
        assert_eq!(name.len(), 63, "{name}");
        assert_eq!(
            name,
            format!("{}_{}_not_null", "t".repeat(27), "c".repeat(26))
        );
        let tmp = server_style_name(&table, &column, "not_null_tmp");
        assert!(tmp.len() <= 63 && tmp.ends_with("_not_null_tmp"), "{tmp}");
    }
}
