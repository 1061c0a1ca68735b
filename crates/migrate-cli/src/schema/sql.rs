//! The catalog SQL both schema readers share: the textual capture ([`super::capture`]) and
//! autogenerate's structured read (`autogen::catalog`). They read the same catalogs through the
//! same joins and filters; only what they select differs (one OID-free definition string per
//! object there, separate fields here), so the joins and filters live once, here.
//!
//! Aliases: `n` the object's namespace, `c` the relation, `t` a type, `p` a function, `a` a
//! column, `ad` its default, `co` a constraint, `e` an enum value, `tg` a trigger, `i`/`ic` an
//! index and its relation, `n2` the index's namespace.

/// User schemas only (on `n`): not the system ones, not temporary/toast ones.
pub(crate) const USER_NS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

/// Relations (`c`) with their namespace.
pub(crate) const RELATIONS: &str = "pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace";

/// Types (`t`) with their namespace.
pub(crate) const TYPES: &str = "pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace";

/// Functions and procedures (`p`) with their namespace.
pub(crate) const FUNCTIONS: &str = "pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace";

/// Columns (`a`) with their relation, its namespace and the column's default (`ad`, if any).
pub(crate) const COLUMNS: &str = "pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
    JOIN pg_namespace n ON n.oid = c.relnamespace \
    LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum";

/// Real columns only (on `a`): not system columns, not dropped ones.
pub(crate) const LIVE_COLUMN: &str = "a.attnum > 0 AND NOT a.attisdropped";

/// Indexes (`i`, relation `ic` in namespace `n2`) with their table (`c` in `n`).
pub(crate) const INDEXES: &str = "pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
    JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
    JOIN pg_namespace n2 ON n2.oid = ic.relnamespace";

/// Table constraints (`co`) with their table (`c`) and its namespace.
pub(crate) const TABLE_CONSTRAINTS: &str = "pg_constraint co JOIN pg_class c ON c.oid = co.conrelid \
    JOIN pg_namespace n ON n.oid = c.relnamespace";

/// Enum values (`e`) with their type (`t`) and its namespace.
pub(crate) const ENUM_VALUES: &str = "pg_enum e JOIN pg_type t ON t.oid = e.enumtypid \
    JOIN pg_namespace n ON n.oid = t.typnamespace";

/// User triggers (`tg`, not the internal ones behind foreign keys) with their table (`c`) and
/// its namespace.
pub(crate) const USER_TRIGGERS: &str = "pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid \
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT tg.tgisinternal";

/// A composite type (`t`) declared on its own, not a table's row type.
pub(crate) const STANDALONE_COMPOSITE: &str =
    "t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'";

/// A function (`p`) that no extension installed.
pub(crate) const NOT_FROM_EXTENSION: &str = "NOT EXISTS (SELECT 1 FROM pg_depend d \
    WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')";

/// How [`qualified`] writes a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Names {
    /// As stored (`t`, `billing.rates`): the capture's object names.
    Plain,
    /// Through `quote_ident`, as SQL takes it (`"Odd"`): autogenerate writes them into SQL.
    Quoted,
}

/// An SQL expression for `schema.name` from the columns `ns` and `name`, without the
/// `public.` prefix.
pub(crate) fn qualified(ns: &str, name: &str, names: Names) -> String {
    match names {
        Names::Plain => {
            format!("CASE WHEN {ns} = 'public' THEN {name}::text ELSE {ns} || '.' || {name} END")
        }
        Names::Quoted => format!(
            "CASE WHEN {ns} = 'public' THEN quote_ident({name}) \
             ELSE quote_ident({ns}) || '.' || quote_ident({name}) END"
        ),
    }
}
