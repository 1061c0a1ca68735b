//! Compares two catalogs and orders the differences into zero-downtime migrations.

use std::collections::BTreeSet;

use super::builder::{Builder, Slot};
use super::catalog::{Catalog, Column};
use super::ddl::unquoted_last;
use super::step::Plan;
use super::tables::tables;

const DOWN_ENUM: &str = "PostgreSQL cannot drop an enum value: the downgrade recreates the type \
    with head's values and converts its columns";
/// The first major with `ADD CONSTRAINT name NOT NULL column NOT VALID`.
pub(super) const NATIVE_NOT_NULL_MAJOR: u32 = 18;

/// Compares the schema at head (`head`) with the desired one (`want`).
pub fn plan(head: &Catalog, want: &Catalog) -> Plan {
    let mut b = Builder::new(want.server_major >= NATIVE_NOT_NULL_MAJOR);
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
    use crate::autogen::Step;
    use crate::autogen::catalog::Table;

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
