//! A structured read of what autogenerate compares: tables with their columns, constraints and
//! indexes, enum types with their values, free-standing sequences; and the names of what it does
//! not compare (views, functions, triggers, domains, ...), so nothing is skipped silently.
//!
//! Names are OID-free and written as SQL (`public.` left out, other schemas qualified). The joins
//! and filters are the ones [`crate::schema::capture`] uses (one text each, in `schema/sql.rs`),
//! and the definitions come from the same catalog functions (`format_type`,
//! `pg_get_constraintdef`, `pg_get_indexdef`, `pg_get_expr`), so two databases that capture
//! equal read equal here. What differs is the shape: separate fields per object, not one
//! definition string.

use std::collections::BTreeMap;

use tokio_postgres::{Client, SimpleQueryMessage};

use super::error::AutogenError;
use crate::schema::sql::{
    COLUMNS, ENUM_VALUES, FUNCTIONS, INDEXES, LIVE_COLUMN, NOT_FROM_EXTENSION, Names, RELATIONS,
    STANDALONE_COMPOSITE, TABLE_CONSTRAINTS, TYPES, USER_NS, USER_TRIGGERS, qualified,
};

/// The engine's own bookkeeping tables: never part of a generated migration, a drift or a
/// baseline.
pub const BOOKKEEPING: &[&str] = &[
    notify_db_migrate::VERSION_TABLE,
    notify_db_migrate::JOURNAL_TABLE,
];

/// One column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column name, quoted as needed.
    pub name: String,
    /// The type as `format_type` writes it (`character varying(255)`, `bigint`, `status_type`).
    pub type_sql: String,
    /// `NOT NULL`.
    pub not_null: bool,
    /// The default expression (`pg_get_expr`), not for identity or generated columns.
    pub default: Option<String>,
    /// Whether the default calls a volatile function (`clock_timestamp()`, `random()`, ...).
    pub default_volatile: bool,
    /// `ALWAYS` or `BY DEFAULT` for an identity column.
    pub identity: Option<String>,
    /// The expression of a stored generated column.
    pub generated: Option<String>,
}

impl Column {
    /// A plain column: no default, identity or generated expression.
    pub fn plain(name: &str, type_sql: &str, not_null: bool) -> Column {
        Column {
            name: name.into(),
            type_sql: type_sql.into(),
            not_null,
            default: None,
            default_volatile: false,
            identity: None,
            generated: None,
        }
    }

    /// The column as in `CREATE TABLE` / `ADD COLUMN`: name, type, identity or generated
    /// expression, default, `NOT NULL`.
    pub fn definition(&self) -> String {
        let mut s = format!("{} {}", self.name, self.type_sql);
        if let Some(g) = &self.generated {
            s.push_str(&format!(" GENERATED ALWAYS AS ({g}) STORED"));
        }
        if let Some(i) = &self.identity {
            s.push_str(&format!(" GENERATED {i} AS IDENTITY"));
        }
        if let Some(d) = &self.default {
            s.push_str(&format!(" DEFAULT {d}"));
        }
        if self.not_null {
            s.push_str(" NOT NULL");
        }
        s
    }
}

/// One table constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// `p` primary key, `u` unique, `f` foreign key, `c` check, `x` exclusion.
    pub kind: char,
    /// `pg_get_constraintdef` (`FOREIGN KEY (service_id) REFERENCES services(id)`).
    pub definition: String,
    /// False for a constraint added `NOT VALID` and not validated since.
    pub validated: bool,
    /// The `pg_get_indexdef` of the index behind a primary key, unique or exclusion constraint.
    pub index: Option<String>,
}

/// One index that backs no constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// `pg_get_indexdef` (`CREATE UNIQUE INDEX ix ON public.t USING btree (lower(a)) WHERE ...`).
    pub definition: String,
}

/// One table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// Columns in their order.
    pub columns: Vec<Column>,
    /// Constraints by name.
    pub constraints: BTreeMap<String, Constraint>,
    /// Indexes that back no constraint, by (qualified) name.
    pub indexes: BTreeMap<String, Index>,
}

impl Table {
    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// One sequence that is not an identity column's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    /// Its options as `CREATE SEQUENCE` takes them (`AS bigint INCREMENT BY 1 ...`).
    pub options: String,
    /// `table.column` for a sequence `OWNED BY` a column (serial).
    pub owned_by: Option<String>,
}

/// What autogenerate compares, read from one database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Tables by (qualified) name.
    pub tables: BTreeMap<String, Table>,
    /// Enum types by (qualified) name, with their values in order (as SQL literals).
    pub enums: BTreeMap<String, Vec<String>>,
    /// Sequences by (qualified) name.
    pub sequences: BTreeMap<String, Sequence>,
    /// Objects present that autogenerate does not compare (`view v`, `function f(integer)`).
    pub not_compared: Vec<String>,
    /// The server's major version (`server_version_num / 10000`); 0 when not read.
    pub server_major: u32,
}

/// `schema.name` quoted, without the `public.` prefix.
fn qual(ns: &str, name: &str) -> String {
    qualified(ns, name, Names::Quoted)
}

/// Each query returns rows tagged by their first field.
fn queries() -> Vec<String> {
    let rel = qual("n.nspname", "c.relname");
    let typ = qual("n.nspname", "t.typname");
    let skip = BOOKKEEPING
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let tables = format!(
        "c.relkind IN ('r', 'p') AND NOT (n.nspname = 'public' AND c.relname IN ({skip})) AND {USER_NS}"
    );
    vec![
        format!("SELECT 'table', {rel} FROM {RELATIONS} WHERE {tables}"),
        format!(
            "SELECT 'column', {rel}, quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), \
               a.attnotnull::text, \
               CASE WHEN a.attgenerated = '' AND a.attidentity = '' THEN pg_get_expr(ad.adbin, ad.adrelid) END, \
               CASE a.attidentity WHEN 'a' THEN 'ALWAYS' WHEN 'd' THEN 'BY DEFAULT' END, \
               CASE WHEN a.attgenerated = 's' THEN pg_get_expr(ad.adbin, ad.adrelid) END, \
               (ad.adbin IS NOT NULL AND EXISTS (SELECT 1 FROM regexp_matches(pg_get_expr(ad.adbin, ad.adrelid), \
                  '([A-Za-z_][A-Za-z0-9_$]*)\\s*\\(', 'g') m JOIN pg_proc p ON p.proname = m[1] \
                  WHERE p.provolatile = 'v'))::text, \
               lpad(a.attnum::text, 5, '0') \
             FROM {COLUMNS} WHERE {LIVE_COLUMN} AND {tables} ORDER BY 2, 10"
        ),
        format!(
            "SELECT 'constraint', {rel}, quote_ident(co.conname), co.contype::text, pg_get_constraintdef(co.oid), \
               co.convalidated::text, CASE WHEN co.conindid <> 0 THEN pg_get_indexdef(co.conindid) END \
             FROM {TABLE_CONSTRAINTS} WHERE co.contype IN ('p', 'u', 'f', 'c', 'x') AND {tables}"
        ),
        format!(
            "SELECT 'index', {rel}, {idx}, pg_get_indexdef(i.indexrelid) \
             FROM {INDEXES} WHERE {tables} AND NOT EXISTS (SELECT 1 FROM pg_constraint co WHERE co.conindid = i.indexrelid AND co.conrelid = i.indrelid)",
            idx = qual("n2.nspname", "ic.relname")
        ),
        format!(
            "SELECT 'enum', {typ}, quote_literal(e.enumlabel) FROM {ENUM_VALUES} \
             WHERE {USER_NS} ORDER BY 2, e.enumsortorder"
        ),
        format!(
            "SELECT 'enum', {typ}, NULL FROM {TYPES} WHERE t.typtype = 'e' AND {USER_NS}"
        ),
        format!(
            "SELECT 'sequence', {rel}, format('AS %s INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s %s', \
               format_type(s.seqtypid, NULL), s.seqincrement, s.seqmin, s.seqmax, s.seqstart, s.seqcache, \
               CASE WHEN s.seqcycle THEN 'CYCLE' ELSE 'NO CYCLE' END), \
             (SELECT {owner} || '.' || quote_ident(a.attname) FROM pg_depend d JOIN pg_class oc ON oc.oid = d.refobjid \
                JOIN pg_namespace n2 ON n2.oid = oc.relnamespace \
                JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
              WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass \
                AND d.deptype = 'a' LIMIT 1) \
             FROM {RELATIONS} JOIN pg_sequence s ON s.seqrelid = c.oid WHERE {USER_NS} AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
               AND d.objid = c.oid AND d.deptype = 'i')",
            owner = qual("n2.nspname", "oc.relname")
        ),
        // What is not compared: views, foreign tables, domains, composite and range types,
        // functions, triggers, non-public schemas, extensions.
        format!(
            "SELECT 'other', CASE c.relkind WHEN 'v' THEN 'view ' WHEN 'm' THEN 'materialized view ' ELSE 'foreign table ' END || {rel} \
             FROM {RELATIONS} WHERE c.relkind IN ('v', 'm', 'f') AND {USER_NS}"
        ),
        format!(
            "SELECT 'other', CASE t.typtype WHEN 'd' THEN 'domain ' WHEN 'r' THEN 'range type ' ELSE 'composite type ' END || {typ} \
             FROM {TYPES} WHERE {USER_NS} AND (t.typtype IN ('d', 'r') OR ({STANDALONE_COMPOSITE}))"
        ),
        format!(
            "SELECT 'other', 'function ' || {fun} || '(' || pg_get_function_identity_arguments(p.oid) || ')' \
             FROM {FUNCTIONS} WHERE {USER_NS} AND {NOT_FROM_EXTENSION}",
            fun = qual("n.nspname", "p.proname")
        ),
        format!(
            "SELECT 'other', 'trigger ' || quote_ident(tg.tgname) || ' on ' || {rel} \
             FROM {USER_TRIGGERS} AND {USER_NS}"
        ),
        "SELECT 'other', 'extension ' || quote_ident(extname) FROM pg_extension WHERE extname <> 'plpgsql'"
            .to_owned(),
        format!(
            "SELECT 'other', 'schema ' || quote_ident(n.nspname) FROM pg_namespace n WHERE {USER_NS} AND n.nspname <> 'public'"
        ),
        "SELECT 'version', current_setting('server_version_num')".to_owned(),
    ]
}

/// Reads the catalog of the database `client` is connected to (one round trip).
pub async fn read(client: &Client, what: &str) -> Result<Catalog, AutogenError> {
    let sql = queries().join(";\n");
    let msgs = client
        .simple_query(&sql)
        .await
        .map_err(|source| AutogenError::Sql {
            what: format!("reading the catalog of {what}"),
            source,
        })?;
    let mut cat = Catalog::default();
    for m in msgs {
        let SimpleQueryMessage::Row(row) = m else {
            continue;
        };
        let get = |i: usize| row.get(i).map(str::to_owned);
        let text = |i: usize| row.get(i).unwrap_or("").to_owned();
        let name = text(1);
        match row.get(0).unwrap_or("") {
            "table" => {
                cat.tables.entry(name).or_default();
            }
            "column" => cat.tables.entry(name).or_default().columns.push(Column {
                name: text(2),
                type_sql: text(3),
                not_null: row.get(4) == Some("true"),
                default: get(5),
                default_volatile: row.get(8) == Some("true"),
                identity: get(6),
                generated: get(7),
            }),
            "constraint" => {
                cat.tables.entry(name).or_default().constraints.insert(
                    text(2),
                    Constraint {
                        kind: text(3).chars().next().unwrap_or('c'),
                        definition: text(4),
                        validated: row.get(5) == Some("true"),
                        index: get(6),
                    },
                );
            }
            "index" => {
                cat.tables.entry(name).or_default().indexes.insert(
                    text(2),
                    Index {
                        definition: text(3),
                    },
                );
            }
            "enum" => {
                let values = cat.enums.entry(name).or_default();
                if let Some(v) = get(2) {
                    values.push(v);
                }
            }
            "sequence" => {
                cat.sequences.insert(
                    name,
                    Sequence {
                        options: text(2),
                        owned_by: get(3),
                    },
                );
            }
            "other" => cat.not_compared.push(name),
            "version" => cat.server_major = name.parse::<u32>().unwrap_or(0) / 10_000,
            _ => {}
        }
    }
    cat.not_compared.sort();
    Ok(cat)
}
