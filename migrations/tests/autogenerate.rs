//! `revision --autogenerate` against real PostgreSQL, one test per schema change: a development
//! database is head plus the change; the generated migrations, applied to a fresh copy of head,
//! must give the development database's schema (the OID-free capture the stairway test uses),
//! go down and up again one step at a time (the stairway), and downgrade back to head's schema.

use std::time::Duration;

use notify_db_migrate::{MigrationSet, Migrator, Target};
use notify_db_migrate_cli::autogen::Plan;
use notify_db_migrate_cli::schema::{self, render_diff};
use notify_db_migrations::autogen_cases::{CASES, Case, case, plan_for, plan_for_case};
use notify_db_migrations::{all, set};

/// Generous: a case copies two databases and runs a few migrations.
const CASE_LIMIT: Duration = Duration::from_secs(120);

/// Applies `plan` to `head` step by step (each step down and up again), compares with `dev`,
/// downgrades to the old head and compares with head's schema. With `rust`, the migrations are
/// the `.rs` form's (barrel's SQL where it writes barrel), else the `.sql` form's.
async fn round_trip(
    plan: &Plan,
    dev: &notify_db_testdb::TestDb,
    head: &notify_db_testdb::TestDb,
    rust: bool,
    pg_dump_too: bool,
) {
    let base = set().expect("the migration set");
    let old_head = base.head().expect("a head").to_owned();
    let first: u32 = base.next_number().parse().expect("a number");
    let mut migrations = all();
    migrations.extend(if rust {
        plan.rust_migrations(first, "autogen_case")
    } else {
        plan.migrations(first, "autogen_case")
    });
    let head_uri = notify_db_config::DatabaseUri::parse(&head.primary_uri(), "the head database")
        .expect("head URI");
    let migrator = Migrator::new(
        MigrationSet::new(migrations).expect("the extended set is valid"),
        &head_uri,
    )
    .expect("migrator");
    let client = head.connect().await.expect("connect to the head database");
    let at_head = schema::capture(&client).await.expect("capture head");
    for step in &plan.steps {
        let before = schema::capture(&client).await.expect("capture");
        let up: Target = "+1".parse().expect("target");
        migrator
            .upgrade(&up)
            .await
            .unwrap_or_else(|e| panic!("upgrade failed: {e}\n{}", step.up.join(";\n")));
        migrator
            .downgrade(&"-1".parse().expect("target"))
            .await
            .unwrap_or_else(|e| panic!("downgrade failed: {e}\n{}", step.down.join(";\n")));
        let again = schema::capture(&client).await.expect("capture");
        assert!(
            before.diff(&again).is_empty(),
            "down did not undo up:\n{}\nup:\n{}\ndown:\n{}",
            render_diff(&before.diff(&again)),
            step.up.join(";\n"),
            step.down.join(";\n")
        );
        migrator.upgrade(&up).await.expect("upgrade again");
    }
    let dev_client = dev
        .connect()
        .await
        .expect("connect to the development database");
    let want = schema::capture(&dev_client).await.expect("capture dev");
    let got = schema::capture(&client).await.expect("capture upgraded");
    let diff = got.diff(&want);
    assert!(
        diff.is_empty(),
        "after the generated migrations, the schema still differs from the development \
         database (+ only in dev):\n{}\nsteps:\n{:#?}",
        render_diff(&diff),
        plan.steps
    );
    if pg_dump_too {
        let (want, got) = (pg_dump(&dev.primary_uri()), pg_dump(&head.primary_uri()));
        assert!(
            want == got,
            "pg_dump shows a schema other than the development database's:\n--- dev\n{want}\n--- migrated\n{got}"
        );
    }
    migrator
        .downgrade(&Target::Revision(old_head))
        .await
        .expect("downgrade to the old head");
    let back = schema::capture(&client)
        .await
        .expect("capture after downgrade");
    let diff = back.diff(&at_head);
    assert!(
        diff.is_empty(),
        "the downgrade does not give head's schema back:\n{}",
        render_diff(&diff)
    );
}

/// `pg_dump --schema-only` of `uri` (the run's pg_dump, >= the server's major), without its
/// comments and its per-run `\restrict` key lines.
fn pg_dump(uri: &str) -> String {
    let bin = notify_db_testdb::find_bin_dir().expect("the PostgreSQL binaries (pg_dump)");
    let out = std::process::Command::new(bin.join("pg_dump"))
        .args([
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--dbname",
            uri,
        ])
        .output()
        .expect("run pg_dump");
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            !l.starts_with("--") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One schema change: it must be seen, written without unresolved parts, and round-trip.
async fn run_case(c: &Case) -> Plan {
    let (plan, dev, head) = plan_for_case(c).await;
    assert!(
        !plan.steps.is_empty(),
        "no difference found for:\n{}",
        c.change
    );
    assert!(
        plan.unresolved.is_empty(),
        "unresolved: {:?}",
        plan.unresolved
    );
    let all_up: String = plan
        .steps
        .iter()
        .flat_map(|s| s.up.iter().cloned())
        .collect::<Vec<_>>()
        .join(";\n");
    let major: i32 = head
        .connect()
        .await
        .expect("connect to the head database")
        .query_one(
            "SELECT current_setting('server_version_num')::int / 10000",
            &[],
        )
        .await
        .expect("server_version_num")
        .get(0);
    for e in c.expect_on(major as u32) {
        assert!(all_up.contains(e), "expected {e:?} in:\n{all_up}");
    }
    // NOT NULL is where majors differ (named constraints on 18): pg_dump must agree too.
    round_trip(&plan, &dev, &head, false, c.name.contains("not_null")).await;
    // The `.rs` form runs barrel's SQL for some statements: it must give the same schema.
    let barrel = plan.steps.iter().any(|s| {
        s.up_barrel
            .iter()
            .chain(&s.down_barrel)
            .any(Option::is_some)
    });
    if barrel {
        round_trip(&plan, &dev, &head, true, false).await;
    }
    assert_eq!(
        barrel, c.barrel,
        "whether the .rs form writes barrel for {}",
        c.name
    );
    plan
}

macro_rules! cases {
    ($($name:ident)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let c = case(stringify!($name)).expect("the case is in CASES");
                tokio::time::timeout(CASE_LIMIT, run_case(c))
                    .await
                    .expect("the case finished in time");
            }
        )*
        /// Every case of the table has its test here.
        #[test]
        fn every_case_has_a_test() {
            let tested = [$(stringify!($name)),*];
            for c in CASES {
                assert!(tested.contains(&c.name), "{} has no test", c.name);
            }
            assert!(CASES.len() >= 25, "the issue asks for at least 25 changes");
        }
    };
}

cases! {
    create_table_with_keys_checks_and_index
    create_two_tables_referencing_each_other
    create_table_with_serial_sequence
    create_plain_table
    drop_table
    add_nullable_column
    add_column_with_constant_default
    add_column_with_volatile_default
    add_not_null_column_with_volatile_default
    add_not_null_column_without_default
    drop_column
    set_not_null
    drop_not_null
    set_default
    drop_default
    add_index
    add_unique_index
    add_partial_index
    add_expression_index
    add_hash_index
    drop_index
    change_index
    add_column_and_foreign_key
    add_foreign_key_left_not_valid
    add_unnamed_check
    add_named_check
    drop_check
    drop_unnamed_foreign_key
    drop_unique_constraint
    add_unique_constraint
    change_check
    create_enum_and_table_using_it
    add_enum_value_at_the_end
    add_enum_value_first
    add_enum_value_and_use_it
    drop_enum_and_its_columns
    create_sequence
    alter_sequence_increment
    alter_sequence_start
    alter_sequence_min_and_max
    alter_sequence_cycle
    drop_sequence
    quoted_names
}

#[tokio::test]
async fn no_difference_plans_nothing() {
    tokio::time::timeout(CASE_LIMIT, async {
        let (plan, _dev, _head) = plan_for("SELECT 1").await;
        assert!(plan.is_empty(), "{plan:#?}");
        assert!(plan.changes.is_empty(), "{:?}", plan.changes);
        assert!(
            plan.not_compared.iter().any(|n| n.contains("column order")),
            "what is not compared is listed: {:?}",
            plan.not_compared
        );
    })
    .await
    .expect("finished in time");
}

/// Renames and type changes are never guessed: no statement, one unresolved entry naming both.
async fn unresolved(change: &str, expect: &str) {
    let (plan, _dev, _head) = plan_for(change).await;
    assert!(
        plan.steps.is_empty(),
        "nothing may be generated: {:#?}",
        plan.steps
    );
    assert_eq!(plan.unresolved.len(), 1, "{:?}", plan.unresolved);
    assert!(plan.unresolved[0].contains(expect), "{:?}", plan.unresolved);
}

#[tokio::test]
async fn a_renamed_column_is_not_guessed() {
    let change = "ALTER TABLE services RENAME COLUMN email_from TO email_sender";
    tokio::time::timeout(
        CASE_LIMIT,
        unresolved(change, "RENAME COLUMN email_from TO email_sender"),
    )
    .await
    .expect("finished in time");
}

#[tokio::test]
async fn a_renamed_table_is_not_guessed() {
    let change = "ALTER TABLE notification_history RENAME TO notifications_archive";
    tokio::time::timeout(
        CASE_LIMIT,
        unresolved(change, "RENAME TO notifications_archive"),
    )
    .await
    .expect("finished in time");
}

#[tokio::test]
async fn a_type_change_is_not_guessed() {
    let change = "ALTER TABLE jobs ALTER COLUMN notification_count TYPE integer";
    tokio::time::timeout(
        CASE_LIMIT,
        unresolved(change, "was `notification_count bigint NOT NULL`"),
    )
    .await
    .expect("finished in time");
}

#[tokio::test]
async fn a_removed_enum_value_is_not_guessed() {
    let change = "ALTER TABLE notification_history ALTER COLUMN status TYPE text; \
                  ALTER TABLE notifications ALTER COLUMN status DROP DEFAULT; \
                  ALTER TABLE notifications ALTER COLUMN status TYPE text; DROP TYPE notification_status; \
                  CREATE TYPE notification_status AS ENUM ('created', 'sent'); \
                  ALTER TABLE notifications ALTER COLUMN status TYPE notification_status USING status::notification_status; \
                  ALTER TABLE notifications ALTER COLUMN status SET DEFAULT 'created'; \
                  ALTER TABLE notification_history ALTER COLUMN status TYPE notification_status USING status::notification_status";
    tokio::time::timeout(CASE_LIMIT, unresolved(change, "enum notification_status"))
        .await
        .expect("finished in time");
}
