//! The `.rs` file autogenerate writes with barrel compiles and runs exactly the statements the
//! round-trip tests apply (`Plan::rust_migrations`): `fixtures/autogen_barrel.rs` is what
//! `render_files` writes for a plan with every barrel change (the test fails when that text
//! changes), and it is compiled here.

use std::collections::BTreeMap;

use notify_db_migrate::Migration;
use notify_db_migrate_cli::autogen::catalog::{Catalog, Column, Table};
use notify_db_migrate_cli::autogen::{Plan, plan, render_files};

#[path = "fixtures/autogen_barrel.rs"]
#[allow(unreachable_pub)] // written as in a migrations crate, where `define` is public
mod written;

/// The fixture's path, from the crate root.
const FIXTURE: &str = "tests/fixtures/autogen_barrel.rs";

fn table(columns: Vec<Column>) -> Table {
    Table {
        columns,
        constraints: BTreeMap::new(),
        indexes: BTreeMap::new(),
    }
}

/// Head: `services` and `old_log`. Wanted: `services` with `contact_link` and without
/// `restricted`, no `old_log`, a new plain table `audit_events`.
fn barrel_plan() -> Plan {
    let mut head = Catalog::default();
    head.tables.insert(
        "services".into(),
        table(vec![
            Column::plain("id", "bigint", true),
            Column::plain("restricted", "boolean", false),
        ]),
    );
    head.tables.insert(
        "old_log".into(),
        table(vec![Column::plain("note", "character varying(255)", false)]),
    );
    let mut want = Catalog::default();
    want.tables.insert(
        "services".into(),
        table(vec![
            Column::plain("id", "bigint", true),
            Column::plain("\"Contact link\"", "text", false),
        ]),
    );
    want.tables.insert(
        "audit_events".into(),
        table(vec![
            Column::plain("service_id", "bigint", true),
            Column::plain("payload", "jsonb", false),
        ]),
    );
    plan(&head, &want)
}

#[test]
fn the_written_barrel_file_compiles_to_the_statements_the_round_trip_applies() {
    let plan = barrel_plan();
    assert!(plan.unresolved.is_empty(), "{:?}", plan.unresolved);
    assert_eq!(plan.steps.len(), 1, "{plan:#?}");
    let files = render_files(
        &plan,
        std::path::Path::new("."),
        false,
        11,
        None,
        "barrel",
        "barrel",
    );
    let expected = std::fs::read_to_string(FIXTURE).expect("read the fixture");
    if files[0].text != expected {
        let actual = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("autogen_barrel.rs");
        std::fs::write(&actual, &files[0].text).expect("write the actual file");
        panic!(
            "render_files writes another text than {FIXTURE} (written to {}): update the fixture \
             if the change is meant",
            actual.display()
        );
    }
    for needle in [
        "up0.create_table(\"audit_events\"",
        "t.drop_column(\"restricted\")",
        "t.add_column(\"Contact link\", types::custom(\"text\").nullable(true))",
        "drop_table(\"old_log\")",
    ] {
        assert!(expected.contains(needle), "{needle} in:\n{expected}");
    }
    let compiled = written::define(Migration::new("0011_barrel"));
    let meant = &plan.rust_migrations(11, "barrel")[0];
    assert_eq!(compiled.up_statements(), meant.up_statements());
    assert_eq!(compiled.down_statements(), meant.down_statements());
    assert_eq!(compiled.checksum(), meant.checksum());
}
