//! Schema drift: what a live database has that the migration set, at the database's own
//! revision, does not produce (and the reverse), object by object.
//!
//! Both sides are [`Catalog`]s read by autogenerate's one catalog reader
//! ([`crate::autogen::catalog::read`]); this module only compares them and renders the result as
//! text (grouped by object), JSON or GitHub workflow annotations. The command that builds the
//! expected side in a scratch database is `cli/drift.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::autogen::catalog::{Catalog, Column, Constraint, Sequence, Table};
use crate::lint::json_str;

/// How the difference between the live database and the rebuilt one is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A readable diff grouped by object: `+` added, `-` removed, `~` changed.
    Text,
    /// One JSON object: status, revision, the differences.
    Json,
    /// GitHub Actions workflow annotations (`::error title=...::...`), one per difference.
    Github,
}

/// What happened to an item in the live database, compared with what the set produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// In the live database, not produced by the set.
    Added,
    /// Produced by the set, missing from the live database.
    Removed,
    /// In both, different.
    Changed,
}

impl Change {
    /// `added`, `removed` or `changed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        }
    }

    fn sign(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Changed => '~',
        }
    }
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Difference {
    /// The object it belongs to: `table users`, `enum notify_status`, `sequence s`, `view v`.
    pub object: String,
    /// The part of the object (`column email`, `index ix_users_name`, `constraint users_pkey`,
    /// `values`); `None` for the object as a whole.
    pub item: Option<String>,
    /// Added, removed or changed.
    pub change: Change,
    /// What the set produces (`None` when it produces nothing there).
    pub expected: Option<String>,
    /// What the live database has (`None` when it has nothing there).
    pub found: Option<String>,
}

impl Difference {
    fn new(
        object: String,
        item: Option<String>,
        expected: Option<String>,
        found: Option<String>,
    ) -> Self {
        let change = match (&expected, &found) {
            (None, _) => Change::Added,
            (_, None) => Change::Removed,
            _ => Change::Changed,
        };
        Difference {
            object,
            item,
            change,
            expected,
            found,
        }
    }

    /// One line: `+ column hotfix: hotfix text`, `~ column name default: 'a'::text -> 'b'::text`.
    pub fn line(&self) -> String {
        let what = self.item.as_deref().unwrap_or(&self.object);
        match (&self.expected, &self.found) {
            (Some(e), Some(f)) => format!("{} {what}: expected {e}, found {f}", self.change.sign()),
            (None, Some(v)) | (Some(v), None) => format!("{} {what}: {v}", self.change.sign()),
            (None, None) => format!("{} {what}", self.change.sign()),
        }
    }
}

/// Compares the live database (`found`) with what the set produces (`expected`).
pub fn compare(expected: &Catalog, found: &Catalog) -> Vec<Difference> {
    let mut out = Vec::new();
    keyed(
        &mut out,
        &expected.tables,
        &found.tables,
        |name| (format!("table {name}"), None),
        |out, name, e, f| table(out, &format!("table {name}"), e, f),
        table_summary,
    );
    keyed(
        &mut out,
        &expected.enums,
        &found.enums,
        |name| (format!("enum {name}"), None),
        |out, name, e, f| {
            if e != f {
                out.push(Difference::new(
                    format!("enum {name}"),
                    Some("values".into()),
                    Some(values(e)),
                    Some(values(f)),
                ));
            }
        },
        |v| values(v),
    );
    keyed(
        &mut out,
        &expected.sequences,
        &found.sequences,
        |name| (format!("sequence {name}"), None),
        sequence,
        sequence_summary,
    );
    // Views, functions, triggers, extensions, schemas: compared by name only.
    let e: BTreeSet<&String> = expected.not_compared.iter().collect();
    let f: BTreeSet<&String> = found.not_compared.iter().collect();
    let present = |name: &String, change| Difference {
        object: name.clone(),
        item: None,
        change,
        expected: None,
        found: None,
    };
    out.extend(e.difference(&f).map(|n| present(n, Change::Removed)));
    out.extend(f.difference(&e).map(|n| present(n, Change::Added)));
    out.sort();
    out
}

/// Items keyed by name: the added and removed ones whole (`place` names the object and the
/// item), the common ones through `both`.
fn keyed<T>(
    out: &mut Vec<Difference>,
    expected: &BTreeMap<String, T>,
    found: &BTreeMap<String, T>,
    place: impl Fn(&str) -> (String, Option<String>),
    both: impl Fn(&mut Vec<Difference>, &str, &T, &T),
    summary: impl Fn(&T) -> String,
) {
    for (name, e) in expected {
        match found.get(name) {
            Some(f) => both(out, name, e, f),
            None => {
                let (object, item) = place(name);
                out.push(Difference::new(object, item, Some(summary(e)), None));
            }
        }
    }
    for (name, f) in found {
        if !expected.contains_key(name) {
            let (object, item) = place(name);
            out.push(Difference::new(object, item, None, Some(summary(f))));
        }
    }
}

fn values(v: &[String]) -> String {
    format!("({})", v.join(", "))
}

fn table_summary(t: &Table) -> String {
    let cols: Vec<String> = t.columns.iter().map(Column::definition).collect();
    format!("({})", cols.join(", "))
}

fn sequence_summary(s: &Sequence) -> String {
    match &s.owned_by {
        Some(o) => format!("{} OWNED BY {o}", s.options),
        None => s.options.clone(),
    }
}

fn sequence(out: &mut Vec<Difference>, name: &str, e: &Sequence, f: &Sequence) {
    if e != f {
        out.push(Difference::new(
            format!("sequence {name}"),
            Some("options".into()),
            Some(sequence_summary(e)),
            Some(sequence_summary(f)),
        ));
    }
}

fn constraint_summary(c: &Constraint) -> String {
    if c.validated {
        c.definition.clone()
    } else {
        format!("{} NOT VALID", c.definition)
    }
}

fn table(out: &mut Vec<Difference>, object: &str, e: &Table, f: &Table) {
    let item = |kind: &str, name: &str| Some(format!("{kind} {name}"));
    for ec in &e.columns {
        let Some(fc) = f.column(&ec.name) else {
            out.push(Difference::new(
                object.into(),
                item("column", &ec.name),
                Some(ec.definition()),
                None,
            ));
            continue;
        };
        let fields: [(&str, String, String); 5] = [
            ("type", ec.type_sql.clone(), fc.type_sql.clone()),
            ("not null", ec.not_null.to_string(), fc.not_null.to_string()),
            ("default", opt(&ec.default), opt(&fc.default)),
            ("identity", opt(&ec.identity), opt(&fc.identity)),
            ("generated", opt(&ec.generated), opt(&fc.generated)),
        ];
        for (field, ev, fv) in fields {
            if ev != fv {
                out.push(Difference::new(
                    object.into(),
                    Some(format!("column {} {field}", ec.name)),
                    Some(ev),
                    Some(fv),
                ));
            }
        }
    }
    for fc in &f.columns {
        if e.column(&fc.name).is_none() {
            out.push(Difference::new(
                object.into(),
                item("column", &fc.name),
                None,
                Some(fc.definition()),
            ));
        }
    }
    keyed(
        out,
        &e.constraints,
        &f.constraints,
        |name| (object.to_owned(), item("constraint", name)),
        |out, name, ec, fc| {
            if ec != fc {
                let (mut es, mut fs) = (constraint_summary(ec), constraint_summary(fc));
                if es == fs {
                    es = format!("{es} using {}", opt(&ec.index));
                    fs = format!("{fs} using {}", opt(&fc.index));
                }
                out.push(Difference::new(
                    object.into(),
                    item("constraint", name),
                    Some(es),
                    Some(fs),
                ));
            }
        },
        constraint_summary,
    );
    keyed(
        out,
        &e.indexes,
        &f.indexes,
        |name| (object.to_owned(), item("index", name)),
        |out, name, ei, fi| {
            if ei != fi {
                out.push(Difference::new(
                    object.into(),
                    item("index", name),
                    Some(ei.definition.clone()),
                    Some(fi.definition.clone()),
                ));
            }
        },
        |i| i.definition.clone(),
    );
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "none".into())
}

/// The outcome of a drift check, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The live database matches the set at its revision (`None`: base).
    Equal {
        /// The database's revision.
        revision: Option<String>,
    },
    /// It does not.
    Drift {
        /// The database's revision.
        revision: Option<String>,
        /// What differs, sorted by object.
        differences: Vec<Difference>,
    },
    /// The check could not be made.
    CannotTell {
        /// Why, naming the database (never its password).
        reason: String,
    },
}

impl Outcome {
    /// The exit status: 0 equal, 1 drift, 2 cannot tell.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Equal { .. } => 0,
            Outcome::Drift { .. } => 1,
            Outcome::CannotTell { .. } => 2,
        }
    }

    /// The outcome in `format`; `database` names the target (redacted).
    pub fn render(&self, format: Format, database: &str) -> String {
        match format {
            Format::Text => self.text(database),
            Format::Json => self.json(database),
            Format::Github => self.github(database),
        }
    }

    fn text(&self, database: &str) -> String {
        let mut s = String::new();
        match self {
            Outcome::Equal { revision } => {
                let _ = writeln!(
                    s,
                    "no drift: {database} has the schema the migrations produce at {}",
                    rev(revision)
                );
            }
            Outcome::Drift {
                revision,
                differences,
            } => {
                let _ = writeln!(
                    s,
                    "drift: {database} differs from the schema the migrations produce at {} \
                     (+ only in the database, - missing from it, ~ changed):",
                    rev(revision)
                );
                let mut last: Option<&str> = None;
                for d in differences {
                    if d.item.is_none() {
                        let _ = writeln!(s, "{}", d.line());
                        last = None;
                        continue;
                    }
                    if last != Some(d.object.as_str()) {
                        let _ = writeln!(s, "{}", d.object);
                        last = Some(&d.object);
                    }
                    let _ = writeln!(s, "  {}", d.line());
                }
            }
            Outcome::CannotTell { reason } => {
                let _ = writeln!(s, "cannot tell whether {database} drifted: {reason}");
            }
        }
        s
    }

    fn json(&self, database: &str) -> String {
        let (status, revision, differences, reason) = match self {
            Outcome::Equal { revision } => ("equal", revision.as_deref(), &[][..], None),
            Outcome::Drift {
                revision,
                differences,
            } => ("drift", revision.as_deref(), &differences[..], None),
            Outcome::CannotTell { reason } => ("unknown", None, &[][..], Some(reason.as_str())),
        };
        let nullable = |v: Option<&str>| v.map_or("null".to_owned(), json_str);
        let rows: Vec<String> = differences
            .iter()
            .map(|d| {
                format!(
                    "    {{\"object\": {}, \"item\": {}, \"change\": \"{}\", \"expected\": {}, \"found\": {}}}",
                    json_str(&d.object),
                    nullable(d.item.as_deref()),
                    d.change.as_str(),
                    nullable(d.expected.as_deref()),
                    nullable(d.found.as_deref())
                )
            })
            .collect();
        let list = if rows.is_empty() {
            "[]".to_owned()
        } else {
            format!("[\n{}\n  ]", rows.join(",\n"))
        };
        format!(
            "{{\n  \"status\": \"{status}\",\n  \"database\": {},\n  \"revision\": {},\n  \"reason\": {},\n  \"differences\": {list}\n}}\n",
            json_str(database),
            nullable(revision),
            nullable(reason)
        )
    }

    fn github(&self, database: &str) -> String {
        match self {
            Outcome::Equal { revision } => format!(
                "::notice title=no schema drift::{}\n",
                escape_data(&format!(
                    "{database} matches the migrations at {}",
                    rev(revision)
                ))
            ),
            Outcome::Drift { differences, .. } => differences
                .iter()
                .map(|d| {
                    format!(
                        "::error title={}::{}\n",
                        escape_property(&format!("schema drift: {}", d.object)),
                        escape_data(&format!("{database}: {}", d.line()))
                    )
                })
                .collect(),
            Outcome::CannotTell { reason } => format!(
                "::error title=schema drift check failed::{}\n",
                escape_data(&format!("cannot tell whether {database} drifted: {reason}"))
            ),
        }
    }
}

fn rev(revision: &Option<String>) -> String {
    match revision {
        Some(r) => format!("revision {r}"),
        None => "base (no revision applied)".into(),
    }
}

/// A workflow command's message: `%`, CR and LF escaped (the runner's `escapeData`).
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: as [`escape_data`], and `:` and `,`.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autogen::catalog::Index;

    fn catalog() -> Catalog {
        let mut t = Table {
            columns: vec![
                Column::plain("id", "bigint", true),
                Column::plain("name", "text", false),
            ],
            ..Table::default()
        };
        t.indexes.insert(
            "ix_t_name".into(),
            Index {
                definition: "CREATE INDEX ix_t_name ON public.t USING btree (name)".into(),
            },
        );
        let mut c = Catalog::default();
        c.tables.insert("t".into(), t);
        c.enums
            .insert("status".into(), vec!["'a'".into(), "'b'".into()]);
        c
    }

    #[test]
    fn equal_catalogs_have_no_difference() {
        assert_eq!(compare(&catalog(), &catalog()), vec![]);
    }

    #[test]
    fn differences_are_grouped_by_object_and_say_what_happened() {
        let expected = catalog();
        let mut found = catalog();
        let t = found.tables.get_mut("t").unwrap();
        t.columns[1].default = Some("'x'::text".into());
        t.columns.push(Column::plain("hotfix", "text", false));
        t.indexes.clear();
        found.enums.insert("status".into(), vec!["'a'".into()]);
        found.not_compared.push("view v".into());
        let d = compare(&expected, &found);
        let lines: Vec<(String, String)> = d.iter().map(|d| (d.object.clone(), d.line())).collect();
        assert_eq!(
            lines,
            [
                (
                    "enum status".into(),
                    "~ values: expected ('a', 'b'), found ('a')".into()
                ),
                ("table t".into(), "+ column hotfix: hotfix text".into()),
                (
                    "table t".into(),
                    "~ column name default: expected none, found 'x'::text".into()
                ),
                (
                    "table t".into(),
                    "- index ix_t_name: CREATE INDEX ix_t_name ON public.t USING btree (name)"
                        .into()
                ),
                ("view v".into(), "+ view v".into()),
            ]
        );
        let outcome = Outcome::Drift {
            revision: Some("0002_b".into()),
            differences: d,
        };
        assert_eq!(outcome.exit_code(), 1);
        let text = outcome.render(Format::Text, "postgresql://u:****@h:5432/db");
        assert!(
            text.contains("\ntable t\n  + column hotfix: hotfix text\n"),
            "{text}"
        );
        let json = outcome.render(Format::Json, "db");
        assert!(json.contains("\"status\": \"drift\""), "{json}");
        assert!(
            json.contains("{\"object\": \"table t\", \"item\": \"column hotfix\", \"change\": \"added\", \"expected\": null, \"found\": \"hotfix text\"}"),
            "{json}"
        );
        let gh = outcome.render(Format::Github, "db");
        assert!(
            gh.contains(
                "::error title=schema drift%3A table t::db: + column hotfix: hotfix text\n"
            ),
            "{gh}"
        );
    }

    #[test]
    fn workflow_command_escapes() {
        assert_eq!(escape_data("a%b\nc"), "a%25b%0Ac");
        assert_eq!(escape_property("a: b, c"), "a%3A b%2C c");
    }
}
