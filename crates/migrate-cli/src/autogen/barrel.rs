//! The changes barrel (0.7, Postgres backend) writes exactly as autogenerate means them, for the
//! `.rs` form: creating a table of plain columns, adding a plain column, dropping a column or a
//! table. A plain column has a name barrel can quote (it quotes every name, escaping nothing),
//! a type (written with `types::custom`, as `format_type` spells it) and its nullability, and no
//! default (barrel writes every default as a quoted string: `DEFAULT '3000'`), identity or
//! generated expression. Everything else (keys and checks inside `CREATE TABLE`, defaults,
//! `IF EXISTS` on a column, schema-qualified names, indexes `CONCURRENTLY`, constraints
//! `NOT VALID`) stays SQL. The SQL a `.rs` migration runs for one of these is barrel's own:
//! [`BarrelChange::sql`] calls barrel as the generated code does.

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock, PoisonError};

use super::catalog::{Column, Table};
use crate::rust_file::RUSTFMT_WIDTH;

/// One column as barrel writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarrelColumn {
    /// The name, unquoted (barrel quotes it).
    pub name: String,
    /// The type, as `format_type` spells it.
    pub type_sql: String,
    /// False for `NOT NULL`.
    pub nullable: bool,
}

/// One change written as barrel calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BarrelChange {
    /// `create_table` with these columns.
    CreateTable {
        /// The table name, unquoted.
        table: String,
        /// Its columns, in order.
        columns: Vec<BarrelColumn>,
    },
    /// `drop_table`.
    DropTable {
        /// The table name, unquoted.
        table: String,
    },
    /// `drop_table_if_exists`.
    DropTableIfExists {
        /// The table name, unquoted.
        table: String,
    },
    /// `change_table` + `add_column`.
    AddColumn {
        /// The table name, unquoted.
        table: String,
        /// The column.
        column: BarrelColumn,
    },
    /// `change_table` + `drop_column`.
    DropColumn {
        /// The table name, unquoted.
        table: String,
        /// The column name, unquoted.
        column: String,
    },
}

/// `name` as barrel takes it (it writes `"name"`): an unquoted lower-case identifier, or a
/// quoted one without a `"` inside; `None` for a schema-qualified or odd name.
fn barrel_name(name: &str) -> Option<String> {
    if let Some(inner) = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        return (!inner.is_empty() && !inner.contains('"')).then(|| inner.to_owned());
    }
    let b = name.as_bytes();
    let plain = !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_');
    plain.then(|| name.to_owned())
}

impl BarrelColumn {
    /// The column as barrel writes it, when it is a plain one.
    pub fn of(c: &Column) -> Option<BarrelColumn> {
        if c.default.is_some() || c.identity.is_some() || c.generated.is_some() {
            return None;
        }
        Some(BarrelColumn {
            name: barrel_name(&c.name)?,
            type_sql: c.type_sql.clone(),
            nullable: !c.not_null,
        })
    }

    /// `t.add_column(...);` at 8 spaces, laid out as rustfmt does (its defaults: arguments
    /// over 60 characters go one per line, so does a chain over 60).
    fn rust(&self) -> String {
        let name = format!("{:?}", self.name);
        let ty = format!("types::custom({:?})", self.type_sql);
        let nullable = format!(".nullable({})", self.nullable);
        if name.len() + 2 + ty.len() + nullable.len() <= RUSTFMT_WIDTH {
            return format!("        t.add_column({name}, {ty}{nullable});\n");
        }
        let ty = if ty.len() + nullable.len() <= RUSTFMT_WIDTH {
            format!("{ty}{nullable}")
        } else {
            format!("{ty}\n                {nullable}")
        };
        format!("        t.add_column(\n            {name},\n            {ty},\n        );\n")
    }

    fn barrel_type(&self) -> barrel::types::Type {
        barrel::types::custom(interned(&self.type_sql)).nullable(self.nullable)
    }
}

/// barrel takes a type as `&'static str`: each distinct type text is kept once for the process.
fn interned(s: &str) -> &'static str {
    static TYPES: OnceLock<Mutex<BTreeSet<&'static str>>> = OnceLock::new();
    let mut types = TYPES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(t) = types.get(s) {
        return t;
    }
    let t: &'static str = Box::leak(s.to_owned().into_boxed_str());
    types.insert(t);
    t
}

impl BarrelChange {
    /// `CREATE TABLE name (...)` of `t`, when it has only plain columns and no key or check
    /// of its own (foreign keys and indexes are separate statements anyway).
    pub fn create_table(name: &str, t: &Table) -> Option<BarrelChange> {
        if t.constraints.values().any(|c| c.kind != 'f' && c.validated) {
            return None;
        }
        Some(BarrelChange::CreateTable {
            table: barrel_name(name)?,
            columns: t
                .columns
                .iter()
                .map(BarrelColumn::of)
                .collect::<Option<_>>()?,
        })
    }

    /// `DROP TABLE name`, or with `if_exists` `DROP TABLE IF EXISTS name`.
    pub fn drop_table(name: &str, if_exists: bool) -> Option<BarrelChange> {
        let table = barrel_name(name)?;
        Some(if if_exists {
            BarrelChange::DropTableIfExists { table }
        } else {
            BarrelChange::DropTable { table }
        })
    }

    /// `ALTER TABLE table ADD COLUMN c`, for a plain column.
    pub fn add_column(table: &str, c: &Column) -> Option<BarrelChange> {
        Some(BarrelChange::AddColumn {
            table: barrel_name(table)?,
            column: BarrelColumn::of(c)?,
        })
    }

    /// `ALTER TABLE table DROP COLUMN column`.
    pub fn drop_column(table: &str, column: &str) -> Option<BarrelChange> {
        Some(BarrelChange::DropColumn {
            table: barrel_name(table)?,
            column: barrel_name(column)?,
        })
    }

    /// Whether the Rust code uses `barrel::types`.
    pub fn uses_types(&self) -> bool {
        matches!(
            self,
            BarrelChange::CreateTable { .. } | BarrelChange::AddColumn { .. }
        )
    }

    fn build(&self) -> barrel::Migration {
        let mut m = barrel::Migration::new();
        match self.clone() {
            BarrelChange::CreateTable { table, columns } => {
                m.create_table(table, move |t| {
                    for c in &columns {
                        t.add_column(c.name.clone(), c.barrel_type());
                    }
                });
            }
            BarrelChange::DropTable { table } => m.drop_table(table),
            BarrelChange::DropTableIfExists { table } => m.drop_table_if_exists(table),
            BarrelChange::AddColumn { table, column } => {
                m.change_table(table, move |t| {
                    t.add_column(column.name.clone(), column.barrel_type());
                });
            }
            BarrelChange::DropColumn { table, column } => {
                m.change_table(table, move |t| t.drop_column(column.clone()));
            }
        }
        m
    }

    /// The statement barrel writes (without its `;`): what the `.rs` migration runs.
    pub fn sql(&self) -> String {
        let sql = self.build().make::<barrel::backend::Pg>();
        sql.strip_suffix(';').unwrap_or(&sql).to_owned()
    }

    /// The Rust lines that build the change in the barrel migration `var` (indented for the
    /// body of `define`).
    pub fn rust(&self, var: &str) -> String {
        let body = match self {
            BarrelChange::CreateTable { table, columns } => {
                let cols: String = columns.iter().map(BarrelColumn::rust).collect();
                format!("    {var}.create_table({table:?}, |t| {{\n{cols}    }});\n")
            }
            BarrelChange::DropTable { table } => format!("    {var}.drop_table({table:?});\n"),
            BarrelChange::DropTableIfExists { table } => {
                format!("    {var}.drop_table_if_exists({table:?});\n")
            }
            BarrelChange::AddColumn { table, column } => format!(
                "    {var}.change_table({table:?}, |t| {{\n{}    }});\n",
                column.rust()
            ),
            BarrelChange::DropColumn { table, column } => format!(
                "    {var}.change_table({table:?}, |t| {{\n        t.drop_column({column:?});\n    }});\n"
            ),
        };
        format!("    let mut {var} = barrel::Migration::new();\n{body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_barrel_quotes_as_they_are_are_taken() {
        assert_eq!(barrel_name("services").as_deref(), Some("services"));
        assert_eq!(barrel_name("\"order\"").as_deref(), Some("order"));
        assert_eq!(barrel_name("\"Mixed Case\"").as_deref(), Some("Mixed Case"));
        assert_eq!(barrel_name("audit.events"), None);
        assert_eq!(barrel_name("\"a\"\"b\""), None);
    }

    #[test]
    fn barrel_writes_the_statements_autogenerate_means() {
        let col = BarrelColumn {
            name: "contact_link".into(),
            type_sql: "character varying(255)".into(),
            nullable: true,
        };
        let add = BarrelChange::AddColumn {
            table: "services".into(),
            column: col.clone(),
        };
        assert_eq!(
            add.sql(),
            "ALTER TABLE \"services\" ADD COLUMN \"contact_link\" character varying(255)"
        );
        let create = BarrelChange::CreateTable {
            table: "events".into(),
            columns: vec![
                BarrelColumn {
                    name: "id".into(),
                    type_sql: "bigint".into(),
                    nullable: false,
                },
                col,
            ],
        };
        assert_eq!(
            create.sql(),
            "CREATE TABLE \"events\" (\"id\" bigint NOT NULL, \"contact_link\" character varying(255))"
        );
        assert_eq!(
            BarrelChange::DropColumn {
                table: "services".into(),
                column: "order".into()
            }
            .sql(),
            "ALTER TABLE \"services\" DROP COLUMN \"order\""
        );
        assert_eq!(
            BarrelChange::drop_table("events", true)
                .map(|c| c.sql())
                .as_deref(),
            Some("DROP TABLE IF EXISTS \"events\"")
        );
    }
}
