//! `cargo xtask test-migration-downgrade` (the stairway test) and the schema capture it uses,
//! against the shared PostgreSQL clusters of the harness.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use notify_db_migrate_cli::schema::{self, ObjectKind};
use notify_db_testdb::{ENV_PRIMARY, ENV_REPLICA, TestDb};

/// The built xtask, pointed at the shared clusters (started by this process if need be).
fn xtask(args: &[&str]) -> Command {
    let shared = notify_db_testdb::shared()
        .expect("the shared PostgreSQL clusters (PostgreSQL >= 15 server binaries are needed)");
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.arg("test-migration-downgrade")
        .args(args)
        .env(ENV_PRIMARY, shared.primary.uri("postgres"))
        .env(ENV_REPLICA, shared.replica.uri("postgres"))
        .env("RUST_LOG", "warn")
        .env_remove("SQLALCHEMY_DATABASE_URI");
    c
}

fn run(c: &mut Command) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("run xtask");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn the_starter_set_passes_the_stairway() {
    // --fresh: a throwaway database even when SQLALCHEMY_DATABASE_URI points elsewhere.
    let (code, out, err) = run(xtask(&["--fresh"]).env(
        "SQLALCHEMY_DATABASE_URI",
        "postgresql://nobody@127.0.0.1:1/notification_api",
    ));
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    notify_db_migrations::assert_stairway_passed(&out);
}

#[test]
fn a_down_that_forgets_an_index_fails_naming_the_migration_and_the_index() {
    let dir = fixture("stairway_forgot_index");
    let (code, out, err) = run(&mut xtask(&[
        "--fresh",
        "--dir",
        dir.to_str().expect("utf-8"),
    ]));
    assert_eq!(code, Some(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok ") && l.contains("0001_create_widgets:")),
        "{out}"
    );
    assert!(
        out.contains("FAILED  0002_add_colour_and_index: downgrade to 0001_create_widgets"),
        "{out}"
    );
    assert!(
        out.contains("left behind: index ix_widgets_name: CREATE INDEX ix_widgets_name"),
        "{out}"
    );
    // The column the down does drop is not reported.
    assert!(!out.contains("column widgets.colour"), "{out}");
    assert!(err.contains("0002_add_colour_and_index"), "{err}");
}

#[test]
fn the_reference_shape_upgrades_downgrades_to_a_revision_and_upgrades_again() {
    let (code, out, err) = run(&mut xtask(&["--fresh", "--to", "0005"]));
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("downgrade to 0005"), "{out}");

    let dir = fixture("stairway_forgot_index");
    let (code, out, err) = run(&mut xtask(&[
        "--fresh",
        "--to",
        "0001",
        "--dir",
        dir.to_str().expect("utf-8"),
    ]));
    assert_eq!(code, Some(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("left behind: index ix_widgets_name"), "{out}");
}

#[tokio::test]
async fn a_database_that_is_not_empty_is_refused_and_left_alone() {
    let db = TestDb::create().await.expect("test database");
    let c = db.connect().await.expect("connect");
    c.batch_execute(
        "CREATE TABLE precious (id bigint PRIMARY KEY); INSERT INTO precious VALUES (1)",
    )
    .await
    .expect("create a table");
    // From SQLALCHEMY_DATABASE_URI, as when run by hand.
    let (code, out, err) = run(xtask(&[]).env("SQLALCHEMY_DATABASE_URI", db.primary_uri()));
    assert_eq!(code, Some(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("not empty"), "{err}");
    assert!(
        !err.contains(&db.primary().password),
        "no password in errors"
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM precious", &[])
        .await
        .expect("the table is still there")
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn an_empty_database_from_the_environment_is_used_and_left_at_head() {
    let db = TestDb::create().await.expect("test database");
    let dir = fixture("stairway_forgot_index");
    let (code, out, err) = run(
        xtask(&["--dir", dir.to_str().expect("utf-8"), "--to", "0002"])
            .env("SQLALCHEMY_DATABASE_URI", db.primary_uri()),
    );
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let c = db.connect().await.expect("connect");
    let v: String = c
        .query_one("SELECT version_num::text FROM alembic_version", &[])
        .await
        .expect("alembic_version")
        .get(0);
    assert_eq!(v, "0003_add_size");
}

const DDL_A: &str = "
CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE SEQUENCE counter START 5;
CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, junk integer,
                name text NOT NULL DEFAULT 'x', m mood);
ALTER TABLE t DROP COLUMN junk;
CREATE INDEX ix_t_name ON t (name);
ALTER TABLE t ADD CONSTRAINT ck_t_name CHECK (name <> '') NOT VALID;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER tr_t BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION touch();
CREATE VIEW v AS SELECT id, name FROM t;
CREATE TABLE events (at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
";

/// The same objects, created in another order after unrelated objects came and went (other OIDs,
/// other attribute numbers).
const DDL_B: &str = "
CREATE TABLE scratch (a integer); DROP TABLE scratch;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                name text NOT NULL DEFAULT 'x', m mood);
CREATE VIEW v AS SELECT id, name FROM t;
CREATE TRIGGER tr_t BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION touch();
ALTER TABLE t ADD CONSTRAINT ck_t_name CHECK (name <> '') NOT VALID;
CREATE INDEX ix_t_name ON t (name);
CREATE SEQUENCE counter START 5;
CREATE TABLE events (at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
";

#[tokio::test]
async fn schema_capture_is_oid_free_and_the_diff_names_each_object() {
    let (a, b) = (
        TestDb::create().await.expect("db a"),
        TestDb::create().await.expect("db b"),
    );
    let (ca, cb) = (
        a.connect().await.expect("connect a"),
        b.connect().await.expect("connect b"),
    );
    ca.batch_execute(DDL_A).await.expect("ddl a");
    cb.batch_execute(DDL_B).await.expect("ddl b");
    let sa = schema::capture(&ca).await.expect("capture a");
    let sb = schema::capture(&cb).await.expect("capture b");
    assert!(
        sa.diff(&sb).is_empty(),
        "{}",
        schema::render_diff(&sa.diff(&sb))
    );
    assert_eq!(
        sa,
        schema::capture(&ca).await.expect("again"),
        "deterministic"
    );
    for (kind, name) in [
        (ObjectKind::Table, "t"),
        (ObjectKind::View, "v"),
        (ObjectKind::Sequence, "counter"),
        (ObjectKind::Column, "t.name"),
        (ObjectKind::Index, "ix_t_name"),
        (ObjectKind::Constraint, "t.ck_t_name"),
        (ObjectKind::Type, "mood"),
        (ObjectKind::EnumValue, "mood.'ok'"),
        (ObjectKind::Function, "touch()"),
        (ObjectKind::Trigger, "t.tr_t"),
    ] {
        assert!(sa.get(kind, name).is_some(), "{kind} {name} missing:\n{sa}");
    }
    assert_eq!(
        sa.get(ObjectKind::Column, "t.name"),
        Some("text not null default 'x'::text")
    );
    assert_eq!(
        sa.get(ObjectKind::Table, "events_2026"),
        Some("table partition of events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
    );
    assert_eq!(
        sa.get(ObjectKind::Table, "events"),
        Some("partitioned table partition by RANGE (at)")
    );

    // Changes of every kind the stairway and fault-injection tests look for.
    cb.batch_execute(
        "ALTER TYPE mood ADD VALUE 'happy' BEFORE 'ok';
         ALTER TABLE t ALTER COLUMN name DROP DEFAULT;
         ALTER TABLE t VALIDATE CONSTRAINT ck_t_name;
         INSERT INTO t (name) VALUES ('dup'), ('dup');",
    )
    .await
    .expect("changes");
    let failed = cb
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY ux_t_name ON t (name)")
        .await;
    assert!(failed.is_err(), "duplicates make the unique index fail");
    let sb = schema::capture(&cb).await.expect("capture b again");
    let diff = sa.diff(&sb);
    let text = schema::render_diff(&diff);
    for needle in [
        "+ enum value mood.'happy'",
        "~ enum value mood.'ok' changed",
        "~ column t.name changed",
        "~ constraint t.ck_t_name changed",
        "+ index ux_t_name",
        "(INVALID)",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    assert_eq!(diff.len(), 5, "{text}");

    // Inside the caller's transaction: sees its uncommitted DDL, commits nothing.
    ca.batch_execute("BEGIN; CREATE TABLE uncommitted (id bigint)")
        .await
        .expect("begin");
    let inside = schema::capture(&ca)
        .await
        .expect("capture in a transaction");
    assert!(inside.get(ObjectKind::Table, "uncommitted").is_some());
    ca.batch_execute("ROLLBACK").await.expect("rollback");
    let after = schema::capture(&ca).await.expect("capture after rollback");
    assert!(after.get(ObjectKind::Table, "uncommitted").is_none());
    assert!(sa.diff(&after).is_empty());
    // On the hot standby too.
    let replica = a.connect_replica().await.expect("connect to the replica");
    let on_replica = schema::capture(&replica)
        .await
        .expect("capture on the replica");
    assert!(
        sa.diff(&on_replica).is_empty(),
        "{}",
        schema::render_diff(&sa.diff(&on_replica))
    );
}

#[test]
fn since_tests_only_the_migrations_changed_since_a_git_ref() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stairway-since-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}");
    };
    let copy = |f: &str| {
        std::fs::copy(fixture("stairway_forgot_index").join(f), dir.join(f)).expect("copy");
    };
    git(&["init", "-q"]);
    for f in [
        "0001_create_widgets.up.sql",
        "0001_create_widgets.down.sql",
        "0002_add_colour_and_index.up.sql",
        "0002_add_colour_and_index.down.sql",
    ] {
        copy(f);
    }
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "base"]);
    copy("0003_add_size.up.sql");
    copy("0003_add_size.down.sql");
    let d = dir.to_str().expect("utf-8");
    // Only 0003 is new: 0001 and 0002 are applied straight, not stepped (0002's bug is not in range).
    let (code, out, err) = run(&mut xtask(&["--fresh", "--dir", d, "--since", "HEAD"]));
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("ok      0003_add_size:"), "{out}");
    assert!(!out.contains("0002_add_colour_and_index:"), "{out}");
    assert!(out.contains("stairway test passed: 1 migration "), "{out}");
    // Nothing changed since the working tree's own state: nothing to test.
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "0003"]);
    let (code, out, _) = run(&mut xtask(&["--fresh", "--dir", d, "--since", "HEAD"]));
    assert_eq!(code, Some(0));
    assert!(out.contains("nothing to test"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
