//! `revision --autogenerate` against real PostgreSQL, one test per schema change: a development
//! database is head plus the change; the generated migrations, applied to a fresh copy of head,
//! must give the development database's schema (the OID-free capture the stairway test uses),
//! go down and up again one step at a time (the stairway), and downgrade back to head's schema.

use std::time::Duration;

use notify_db_migrate::autogen::{self, Plan};
use notify_db_migrate::{MigrationSet, Migrator, Target};
use notify_db_migrations::{all, set, test_db};
use notify_db_testdb::schema::{self, render_diff};

/// Generous: a case copies two databases and runs a few migrations.
const CASE_LIMIT: Duration = Duration::from_secs(120);

/// Head plus `change` as the development database; returns the plan against a fresh head.
async fn plan_for(change: &str) -> (Plan, notify_db_testdb::TestDb, notify_db_testdb::TestDb) {
    let dev = test_db().await.expect("development database");
    let head = test_db().await.expect("head database");
    let dev_client = dev
        .connect()
        .await
        .expect("connect to the development database");
    dev_client
        .batch_execute(change)
        .await
        .unwrap_or_else(|e| panic!("the change does not apply: {e}\n{change}"));
    let head_client = head.connect().await.expect("connect to the head database");
    let want = autogen::catalog::read(&dev_client, "the development database")
        .await
        .expect("read the development catalog");
    let have = autogen::catalog::read(&head_client, "the head database")
        .await
        .expect("read the head catalog");
    (autogen::plan(&have, &want), dev, head)
}

/// Applies `plan` to `head` step by step (each step down and up again), compares with `dev`,
/// downgrades to the old head and compares with head's schema.
async fn round_trip(plan: &Plan, dev: &notify_db_testdb::TestDb, head: &notify_db_testdb::TestDb) {
    let base = set().expect("the migration set");
    let old_head = base.head().expect("a head").to_owned();
    let first: u32 = base.next_number().parse().expect("a number");
    let mut migrations = all();
    migrations.extend(plan.migrations(first, "autogen_case"));
    let migrator = Migrator::new(MigrationSet::new(migrations).expect("the extended set is valid"));
    let pg: tokio_postgres::Config = head.primary_uri().parse().expect("head URI");
    let client = head.connect().await.expect("connect to the head database");
    let at_head = schema::capture(&client).await.expect("capture head");
    for step in &plan.steps {
        let before = schema::capture(&client).await.expect("capture");
        let up: Target = "+1".parse().expect("target");
        migrator
            .upgrade(&pg, &up)
            .await
            .unwrap_or_else(|e| panic!("upgrade failed: {e}\n{}", step.up.join(";\n")));
        migrator
            .downgrade(&pg, &"-1".parse().expect("target"))
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
        migrator.upgrade(&pg, &up).await.expect("upgrade again");
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
    migrator
        .downgrade(&pg, &Target::Revision(old_head))
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

/// One schema change: it must be seen, written without unresolved parts, and round-trip.
async fn case(change: &str, expect: &[&str]) -> Plan {
    let (plan, dev, head) = plan_for(change).await;
    assert!(!plan.steps.is_empty(), "no difference found for:\n{change}");
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
    for e in expect {
        assert!(all_up.contains(e), "expected {e:?} in:\n{all_up}");
    }
    round_trip(&plan, &dev, &head).await;
    plan
}

/// Writes `plan` as `.sql` files under the test's scratch directory, for `lint-migrations --dir`.
fn write_for_lint(name: &str, plan: &Plan) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("autogen")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let first: u32 = set().expect("set").next_number().parse().expect("number");
    let slug = notify_db_migrate::cli::slug(name);
    for f in autogen::render_files(plan, &dir, true, first, &slug, name) {
        std::fs::write(&f.path, f.text).expect("write a generated file");
    }
}

macro_rules! cases {
    ($($name:ident: $change:expr => [$($expect:expr),*];)*) => {$(
        #[tokio::test]
        async fn $name() {
            let plan = tokio::time::timeout(CASE_LIMIT, case($change, &[$($expect),*]))
                .await
                .expect("the case finished in time");
            write_for_lint(stringify!($name), &plan);
        }
    )*};
}

cases! {
    create_table_with_keys_checks_and_index:
        "CREATE TABLE widgets (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, \
         service_id bigint NOT NULL REFERENCES services (id), name text NOT NULL UNIQUE, \
         size bigint CHECK (size > 0), created_at timestamptz NOT NULL DEFAULT now()); \
         CREATE INDEX ix_widgets_service_id ON widgets (service_id)"
        => ["CREATE TABLE widgets", "CREATE INDEX ix_widgets_service_id"];
    create_two_tables_referencing_each_other:
        "CREATE TABLE folders (id bigint PRIMARY KEY, parent_id bigint REFERENCES folders (id)); \
         CREATE TABLE folder_items (folder_id bigint NOT NULL REFERENCES folders (id), \
         template_id bigint NOT NULL REFERENCES templates (id), PRIMARY KEY (folder_id, template_id))"
        => ["CREATE TABLE folders", "CREATE TABLE folder_items"];
    create_table_with_serial_sequence:
        "CREATE TABLE counters (id bigserial PRIMARY KEY, n bigint)"
        => ["CREATE SEQUENCE counters_id_seq", "OWNED BY counters.id"];
    drop_table:
        "DROP TABLE notification_history" => ["DROP TABLE notification_history"];
    add_nullable_column:
        "ALTER TABLE services ADD COLUMN contact_link text"
        => ["ADD COLUMN contact_link text"];
    add_column_with_constant_default:
        "ALTER TABLE services ADD COLUMN rate_limit bigint NOT NULL DEFAULT 3000"
        => ["ADD COLUMN rate_limit bigint DEFAULT 3000 NOT NULL"];
    add_column_with_volatile_default:
        "ALTER TABLE templates ADD COLUMN process_key uuid DEFAULT gen_random_uuid()"
        => ["ADD COLUMN process_key uuid", "SET DEFAULT gen_random_uuid()", "LIMIT 1000"];
    add_not_null_column_with_volatile_default:
        "ALTER TABLE jobs ADD COLUMN token text NOT NULL DEFAULT md5(random()::text)"
        => ["LIMIT 1000", "CHECK (token IS NOT NULL) NOT VALID", "ALTER COLUMN token SET NOT NULL"];
    add_not_null_column_without_default:
        "ALTER TABLE api_keys ADD COLUMN label text NOT NULL"
        => ["ADD COLUMN label text", "ALTER COLUMN label SET NOT NULL"];
    drop_column:
        "ALTER TABLE services DROP COLUMN restricted" => ["DROP COLUMN restricted"];
    set_not_null:
        "ALTER TABLE services ALTER COLUMN updated_at SET NOT NULL"
        => ["CHECK (updated_at IS NOT NULL) NOT VALID", "VALIDATE CONSTRAINT", "SET NOT NULL"];
    drop_not_null:
        "ALTER TABLE templates ALTER COLUMN content DROP NOT NULL"
        => ["ALTER COLUMN content DROP NOT NULL"];
    set_default:
        "ALTER TABLE services ALTER COLUMN message_limit SET DEFAULT 1000"
        => ["ALTER COLUMN message_limit SET DEFAULT 1000"];
    drop_default:
        "ALTER TABLE users ALTER COLUMN state DROP DEFAULT" => ["ALTER COLUMN state DROP DEFAULT"];
    add_index:
        "CREATE INDEX ix_templates_name ON templates (name)"
        => ["CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_templates_name"];
    add_unique_index:
        "CREATE UNIQUE INDEX uix_jobs_service_file ON jobs (service_id, original_file_name)"
        => ["CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uix_jobs_service_file"];
    add_partial_index:
        "CREATE INDEX ix_jobs_scheduled ON jobs (scheduled_for) WHERE job_status = 'scheduled'"
        => ["CONCURRENTLY IF NOT EXISTS ix_jobs_scheduled", "WHERE"];
    add_expression_index:
        "CREATE INDEX ix_users_lower_name ON users (lower(name))" => ["(lower(name))"];
    add_hash_index:
        "CREATE INDEX ix_notifications_reference ON notifications USING hash (reference)"
        => ["USING hash (reference)"];
    drop_index:
        "DROP INDEX ix_api_keys_service_id" => ["DROP INDEX CONCURRENTLY IF EXISTS ix_api_keys_service_id"];
    change_index:
        "DROP INDEX ix_templates_service_id; \
         CREATE INDEX ix_templates_service_id ON templates (service_id, archived)"
        => ["DROP INDEX CONCURRENTLY IF EXISTS ix_templates_service_id", "(service_id, archived)"];
    add_column_and_foreign_key:
        "ALTER TABLE jobs ADD COLUMN created_by_id bigint; \
         ALTER TABLE jobs ADD CONSTRAINT fk_jobs_created_by_id FOREIGN KEY (created_by_id) REFERENCES users (id)"
        => ["NOT VALID", "VALIDATE CONSTRAINT fk_jobs_created_by_id"];
    add_foreign_key_left_not_valid:
        "ALTER TABLE jobs ADD COLUMN api_key_id bigint; \
         ALTER TABLE jobs ADD CONSTRAINT fk_jobs_api_key FOREIGN KEY (api_key_id) REFERENCES api_keys (id) NOT VALID"
        => ["REFERENCES api_keys(id) NOT VALID"];
    add_unnamed_check:
        "ALTER TABLE services ADD CHECK (message_limit >= 0)"
        => ["ADD CONSTRAINT services_message_limit_check CHECK", "VALIDATE CONSTRAINT services_message_limit_check"];
    add_named_check:
        "ALTER TABLE jobs ADD CONSTRAINT ck_jobs_counts CHECK (notifications_sent <= notification_count)"
        => ["ADD CONSTRAINT ck_jobs_counts", "VALIDATE CONSTRAINT ck_jobs_counts"];
    drop_check:
        "ALTER TABLE users DROP CONSTRAINT ck_users_email_address_lower"
        => ["DROP CONSTRAINT IF EXISTS ck_users_email_address_lower"];
    drop_unnamed_foreign_key:
        "ALTER TABLE notifications DROP CONSTRAINT notifications_api_key_id_fkey"
        => ["DROP CONSTRAINT IF EXISTS notifications_api_key_id_fkey"];
    drop_unique_constraint:
        "ALTER TABLE services DROP CONSTRAINT services_name_key"
        => ["DROP CONSTRAINT IF EXISTS services_name_key"];
    add_unique_constraint:
        "ALTER TABLE templates ADD CONSTRAINT uq_templates_service_name UNIQUE (service_id, name)"
        => ["CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_templates_service_name", "UNIQUE USING INDEX"];
    change_check:
        "ALTER TABLE users DROP CONSTRAINT ck_users_email_address_lower; \
         ALTER TABLE users ADD CONSTRAINT ck_users_email_address_lower CHECK (email_address_lower = lower(email_address))"
        => ["DROP CONSTRAINT IF EXISTS ck_users_email_address_lower", "VALIDATE CONSTRAINT ck_users_email_address_lower"];
    create_enum_and_table_using_it:
        "CREATE TYPE channel AS ENUM ('email', 'sms', 'letter'); \
         CREATE TABLE service_channels (service_id bigint NOT NULL REFERENCES services (id), \
         channel channel NOT NULL, PRIMARY KEY (service_id, channel))"
        => ["CREATE TYPE channel AS ENUM ('email', 'sms', 'letter')"];
    add_enum_value_at_the_end:
        "ALTER TYPE notification_status ADD VALUE 'validation-failed'"
        => ["ADD VALUE IF NOT EXISTS 'validation-failed' AFTER 'permanent-failure'"];
    add_enum_value_first:
        "ALTER TYPE notification_status ADD VALUE 'queued' BEFORE 'created'"
        => ["ADD VALUE IF NOT EXISTS 'queued' BEFORE 'created'"];
    create_sequence:
        "CREATE SEQUENCE letter_batch_seq AS bigint START WITH 100 INCREMENT BY 5"
        => ["CREATE SEQUENCE letter_batch_seq AS bigint INCREMENT BY 5"];
    quoted_names:
        "ALTER TABLE notifications ADD COLUMN \"order\" bigint; \
         CREATE INDEX \"ix_notifications_Order\" ON notifications (\"order\")"
        => ["ADD COLUMN \"order\" bigint", "\"ix_notifications_Order\""];
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
