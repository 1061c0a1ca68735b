//! Deterministic, OID-free schema capture from the catalogs, and a readable diff.
//!
//! [`capture`] reads every user schema's objects (schemas, extensions, tables, views, sequences,
//! columns with type/default/nullability/identity, indexes with their definition and validity,
//! constraints, enum/domain/composite types, enum values, functions, triggers) into a [`Schema`]:
//! a sorted map from [`ObjectId`] to a textual definition built only from names, never from OIDs,
//! so two databases with the same schema compare equal. [`Schema::diff`] lists what differs.
//! The catalog joins and filters are shared with autogenerate's structured read (`sql.rs`).
//!
//! ```no_run
//! # async fn f(a: &tokio_postgres::Client, b: &tokio_postgres::Client) -> Result<(), notify_db_migrate::Error> {
//! use notify_db_migrate_cli::schema;
//! let before = schema::capture(a).await?;
//! let after = schema::capture(b).await?;
//! for change in before.diff(&after) {
//!     println!("{change}");
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;

use notify_db_migrate::Error;

pub(crate) mod sql;

use sql::{
    COLUMNS, ENUM_VALUES, FUNCTIONS, INDEXES, LIVE_COLUMN, NOT_FROM_EXTENSION, Names, RELATIONS,
    STANDALONE_COMPOSITE, TABLE_CONSTRAINTS, TYPES, USER_NS, USER_TRIGGERS,
};

/// What kind of object a schema entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// A schema (namespace).
    Schema,
    /// An installed extension.
    Extension,
    /// A type: enum, domain, composite or range.
    Type,
    /// One value of an enum type.
    EnumValue,
    /// A sequence.
    Sequence,
    /// A table (ordinary, partitioned or foreign).
    Table,
    /// A view or materialized view.
    View,
    /// A column of a table or view.
    Column,
    /// An index.
    Index,
    /// A table or domain constraint.
    Constraint,
    /// A function or procedure.
    Function,
    /// A (user) trigger.
    Trigger,
}

impl ObjectKind {
    /// The kind as a lower-case word (`table`, `enum value`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Schema => "schema",
            ObjectKind::Extension => "extension",
            ObjectKind::Type => "type",
            ObjectKind::EnumValue => "enum value",
            ObjectKind::Sequence => "sequence",
            ObjectKind::Table => "table",
            ObjectKind::View => "view",
            ObjectKind::Column => "column",
            ObjectKind::Index => "index",
            ObjectKind::Constraint => "constraint",
            ObjectKind::Function => "function",
            ObjectKind::Trigger => "trigger",
        }
    }

    fn from_tag(tag: &str) -> Option<ObjectKind> {
        Some(match tag {
            "schema" => ObjectKind::Schema,
            "extension" => ObjectKind::Extension,
            "type" => ObjectKind::Type,
            "enum value" => ObjectKind::EnumValue,
            "sequence" => ObjectKind::Sequence,
            "table" => ObjectKind::Table,
            "view" => ObjectKind::View,
            "column" => ObjectKind::Column,
            "index" => ObjectKind::Index,
            "constraint" => ObjectKind::Constraint,
            "function" => ObjectKind::Function,
            "trigger" => ObjectKind::Trigger,
            _ => return None,
        })
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one object: its kind and its name (`table.column`, `table.constraint`,
/// `type.'value'`; the `public.` schema prefix is left out).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId {
    /// The kind.
    pub kind: ObjectKind,
    /// The qualified name.
    pub name: String,
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    definition: String,
    /// The table (or view/type) the object belongs to, for [`Schema::without_table`].
    owner: Option<String>,
}

/// A captured schema: every object with its OID-free definition, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    objects: BTreeMap<ObjectId, Entry>,
}

/// One difference between two schemas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The object.
    pub object: ObjectId,
    /// Its definition in the first schema (`None`: absent there).
    pub before: Option<String>,
    /// Its definition in the second schema (`None`: absent there).
    pub after: Option<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.before, &self.after) {
            (None, Some(a)) => write!(f, "+ {} (only in the second schema): {a}", self.object),
            (Some(b), None) => write!(f, "- {} (only in the first schema): {b}", self.object),
            (Some(b), Some(a)) => {
                write!(f, "~ {} changed:\n    was: {b}\n    now: {a}", self.object)
            }
            (None, None) => write!(f, "  {} (absent from both)", self.object),
        }
    }
}

/// Renders changes one per line (`+` only in the second schema, `-` only in the first, `~` changed).
pub fn render_diff(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl Schema {
    /// Number of objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// True when no user object exists.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The objects with their definitions, sorted by kind and name.
    pub fn objects(&self) -> impl Iterator<Item = (&ObjectId, &str)> {
        self.objects
            .iter()
            .map(|(id, e)| (id, e.definition.as_str()))
    }

    /// The definition of one object, if present.
    pub fn get(&self, kind: ObjectKind, name: &str) -> Option<&str> {
        self.objects
            .get(&ObjectId {
                kind,
                name: name.to_owned(),
            })
            .map(|e| e.definition.as_str())
    }

    /// This schema without a table (name as in [`ObjectId::name`]) and everything belonging to it
    /// (columns, indexes, constraints, triggers, owned sequences).
    pub fn without_table(mut self, table: &str) -> Schema {
        self.objects.retain(|id, e| {
            !(e.owner.as_deref() == Some(table)
                || (matches!(id.kind, ObjectKind::Table) && id.name == table))
        });
        self
    }

    /// What differs from `self` to `other`, sorted by object.
    pub fn diff(&self, other: &Schema) -> Vec<Change> {
        let mut out = Vec::new();
        for (id, e) in &self.objects {
            match other.objects.get(id) {
                None => out.push(Change {
                    object: id.clone(),
                    before: Some(e.definition.clone()),
                    after: None,
                }),
                Some(o) if o.definition != e.definition => out.push(Change {
                    object: id.clone(),
                    before: Some(e.definition.clone()),
                    after: Some(o.definition.clone()),
                }),
                Some(_) => {}
            }
        }
        for (id, o) in &other.objects {
            if !self.objects.contains_key(id) {
                out.push(Change {
                    object: id.clone(),
                    before: None,
                    after: Some(o.definition.clone()),
                });
            }
        }
        out.sort_by(|a, b| a.object.cmp(&b.object));
        out
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (id, e) in &self.objects {
            writeln!(f, "{id}: {}", e.definition)?;
        }
        Ok(())
    }
}

/// `schema.name` as the capture names objects: unquoted, without the `public.` prefix.
fn qual(ns: &str, name: &str) -> String {
    sql::qualified(ns, name, Names::Plain)
}

/// Each query returns rows of (kind tag, name, definition, owner).
fn queries() -> Vec<String> {
    let rel = qual("n.nspname", "c.relname");
    let typ = qual("n.nspname", "t.typname");
    let fun = qual("n.nspname", "p.proname");
    vec![
        // schemas
        format!(
            "SELECT 'schema', n.nspname::text, 'owner ' || pg_get_userbyid(n.nspowner), NULL::text \
             FROM pg_namespace n WHERE {USER_NS}"
        ),
        // extensions
        "SELECT 'extension', e.extname::text, 'version ' || e.extversion, NULL::text FROM pg_extension e"
            .to_owned(),
        // tables, views, sequences
        format!(
            "SELECT CASE WHEN c.relkind IN ('v', 'm') THEN 'view' WHEN c.relkind = 'S' THEN 'sequence' ELSE 'table' END, \
             {rel}, \
             concat_ws(' ', \
               CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'f' THEN 'foreign table' \
                 WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' END, \
               CASE c.relpersistence WHEN 'u' THEN 'unlogged' END, \
               CASE WHEN c.reloptions IS NOT NULL THEN 'with (' || array_to_string(c.reloptions, ', ') || ')' END, \
               CASE WHEN c.relkind = 'S' THEN (SELECT format('%s start %s increment %s min %s max %s cache %s%s', \
                   format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, \
                   CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END) FROM pg_sequence s WHERE s.seqrelid = c.oid) END, \
               CASE WHEN c.relkind IN ('v', 'm') THEN 'as ' || pg_get_viewdef(c.oid) END, \
               CASE WHEN c.relkind = 'p' THEN 'partition by ' || pg_get_partkeydef(c.oid) END, \
               CASE WHEN c.relispartition THEN 'partition of ' || (SELECT {parent} FROM pg_inherits i \
                 JOIN pg_class pc ON pc.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = pc.relnamespace \
                 WHERE i.inhrelid = c.oid) || ' ' || pg_get_expr(c.relpartbound, c.oid) END, \
               CASE WHEN c.relrowsecurity THEN 'row level security' END), \
             (SELECT {owner} FROM pg_depend d JOIN pg_class oc ON oc.oid = d.refobjid \
                JOIN pg_namespace n2 ON n2.oid = oc.relnamespace \
              WHERE c.relkind = 'S' AND d.classid = 'pg_class'::regclass AND d.objid = c.oid \
                AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1) \
             FROM {RELATIONS} WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') AND {USER_NS}",
            owner = qual("n2.nspname", "oc.relname"),
            parent = qual("pn.nspname", "pc.relname")
        ),
        // columns
        format!(
            "SELECT 'column', {rel} || '.' || a.attname, \
             concat_ws(' ', format_type(a.atttypid, a.atttypmod), \
               CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation \
                 THEN 'collate ' || (SELECT collname FROM pg_collation WHERE oid = a.attcollation) END, \
               CASE WHEN a.attnotnull THEN 'not null' ELSE 'null' END, \
               CASE WHEN a.attidentity = 'a' THEN 'generated always as identity' \
                    WHEN a.attidentity = 'd' THEN 'generated by default as identity' END, \
               CASE WHEN a.attgenerated = 's' THEN 'generated always as (' || pg_get_expr(ad.adbin, ad.adrelid) || ') stored' \
                    WHEN ad.adbin IS NOT NULL THEN 'default ' || pg_get_expr(ad.adbin, ad.adrelid) END), \
             {rel} \
             FROM {COLUMNS} JOIN pg_type t ON t.oid = a.atttypid \
             WHERE {LIVE_COLUMN} AND c.relkind IN ('r', 'p', 'f', 'v', 'm') AND {USER_NS}"
        ),
        // indexes
        format!(
            "SELECT 'index', {idx}, \
             pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' (INVALID)' END \
               || CASE WHEN i.indisready THEN '' ELSE ' (NOT READY)' END, \
             {rel} \
             FROM {INDEXES} WHERE {USER_NS}",
            idx = qual("n2.nspname", "ic.relname")
        ),
        // table constraints
        format!(
            "SELECT 'constraint', {rel} || '.' || co.conname, \
             pg_get_constraintdef(co.oid) || CASE WHEN co.convalidated THEN '' ELSE ' (not validated)' END, {rel} \
             FROM {TABLE_CONSTRAINTS} WHERE co.conrelid <> 0 AND {USER_NS}"
        ),
        // domain constraints
        format!(
            "SELECT 'constraint', {typ} || '.' || co.conname, pg_get_constraintdef(co.oid), {typ} \
             FROM pg_constraint co JOIN pg_type t ON t.oid = co.contypid JOIN pg_namespace n ON n.oid = t.typnamespace \
             WHERE co.contypid <> 0 AND {USER_NS}"
        ),
        // types: enums, domains, composites (not a table's row type), ranges
        format!(
            "SELECT 'type', {typ}, \
             CASE t.typtype WHEN 'e' THEN 'enum' \
               WHEN 'd' THEN concat_ws(' ', 'domain over', format_type(t.typbasetype, t.typtypmod), \
                 CASE WHEN t.typnotnull THEN 'not null' END, 'default ' || t.typdefault) \
               WHEN 'c' THEN 'composite (' || (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum) \
                 FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) || ')' \
               WHEN 'r' THEN 'range' END, NULL::text \
             FROM {TYPES} WHERE t.typtype IN ('e', 'd', 'c', 'r') AND {USER_NS} \
               AND (t.typtype <> 'c' OR {STANDALONE_COMPOSITE})"
        ),
        // enum values, each with the value before it (so one inserted value is one change)
        format!(
            "SELECT 'enum value', {typ} || '.' || quote_literal(e.enumlabel), \
             coalesce('after ' || quote_literal(lag(e.enumlabel) OVER (PARTITION BY e.enumtypid ORDER BY e.enumsortorder)), 'first'), \
             {typ} \
             FROM {ENUM_VALUES} WHERE {USER_NS}"
        ),
        // functions and procedures
        format!(
            "SELECT 'function', {fun} || '(' || pg_get_function_identity_arguments(p.oid) || ')', \
             concat_ws(' ', CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'returns ' || pg_get_function_result(p.oid) END, \
               'language ' || l.lanname, CASE p.provolatile WHEN 'i' THEN 'immutable' WHEN 's' THEN 'stable' ELSE 'volatile' END, \
               CASE WHEN p.prosecdef THEN 'security definer' END, 'body md5 ' || md5(p.prosrc)), NULL::text \
             FROM {FUNCTIONS} JOIN pg_language l ON l.oid = p.prolang \
             WHERE p.prokind IN ('f', 'p') AND {USER_NS} AND {NOT_FROM_EXTENSION}"
        ),
        // user triggers
        format!(
            "SELECT 'trigger', {rel} || '.' || tg.tgname, \
             pg_get_triggerdef(tg.oid) || CASE tg.tgenabled WHEN 'D' THEN ' (disabled)' ELSE '' END, {rel} \
             FROM {USER_TRIGGERS} AND {USER_NS}"
        ),
    ]
}

/// Reads the schema of the database `client` is connected to (one query per object kind, all
/// in one round trip). Opens no transaction of its own, so it also works inside the caller's
/// transaction (e.g. to look at a schema before a ROLLBACK) or on a hot standby.
pub async fn capture(client: &tokio_postgres::Client) -> Result<Schema, Error> {
    let sql = queries().join(";\n");
    let msgs = client
        .simple_query(&sql)
        .await
        .map_err(|source| Error::Db {
            context: "capturing the schema",
            source,
        })?;
    let mut schema = Schema::default();
    for m in msgs {
        let tokio_postgres::SimpleQueryMessage::Row(row) = m else {
            continue;
        };
        let (Some(tag), Some(name)) = (row.get(0), row.get(1)) else {
            continue;
        };
        let Some(kind) = ObjectKind::from_tag(tag) else {
            continue;
        };
        schema.objects.insert(
            ObjectId {
                kind,
                name: name.to_owned(),
            },
            Entry {
                definition: row.get(2).unwrap_or("").to_owned(),
                owner: row.get(3).map(str::to_owned),
            },
        );
    }
    Ok(schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(items: &[(ObjectKind, &str, &str, Option<&str>)]) -> Schema {
        let mut s = Schema::default();
        for (kind, name, def, owner) in items {
            s.objects.insert(
                ObjectId {
                    kind: *kind,
                    name: (*name).to_owned(),
                },
                Entry {
                    definition: (*def).to_owned(),
                    owner: owner.map(str::to_owned),
                },
            );
        }
        s
    }

    #[test]
    fn diff_names_added_removed_and_changed_objects() {
        let a = schema(&[
            (ObjectKind::Table, "t", "table", None),
            (ObjectKind::Column, "t.a", "bigint not null", Some("t")),
        ]);
        let b = schema(&[
            (ObjectKind::Table, "t", "table", None),
            (ObjectKind::Column, "t.a", "integer not null", Some("t")),
            (
                ObjectKind::Index,
                "ix_t_a",
                "CREATE INDEX ix_t_a ON public.t USING btree (a)",
                Some("t"),
            ),
        ]);
        let d = a.diff(&b);
        assert_eq!(d.len(), 2, "{d:?}");
        let text = render_diff(&d);
        assert!(text.contains("~ column t.a changed"), "{text}");
        assert!(text.contains("+ index ix_t_a"), "{text}");
        assert!(b.diff(&a).iter().any(|c| c.after.is_none()));
        assert!(a.diff(&a).is_empty());
        assert!(b.without_table("t").is_empty());
    }
}
