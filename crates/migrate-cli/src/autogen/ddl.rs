//! The DDL text the plan's statements share: concurrent index builds, `CREATE TABLE`,
//! constraints added and dropped, a name for `RENAME TO`.

use super::catalog::{Constraint, Table};

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

/// The last part of a possibly qualified name, for `RENAME TO` (which takes no schema).
pub(super) fn unquoted_last(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}
