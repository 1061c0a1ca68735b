//! `import-alembic-sql FILE` (issue 24, point 5): Alembic's offline SQL, in its exact format
//! (fixtures in `tests/fixtures/alembic_sql`: a range from base as the reference's `env.py`
//! renders it, one transaction per revision; a linear range without branch labels as Alembic's
//! default `env.py` renders it, one transaction for the run; both with autocommit or explicitly
//! committed revisions, the first with an empty revision) becomes linked `.sql` migrations that
//! upgrade a database to what psql makes of the same SQL; in a compiled set, `.rs` migrations
//! (`fixtures/alembic_rs`, compiled into this test) that do the same.

mod common;

use std::path::{Path, PathBuf};

use common::{SqlDir, col, db, run, text, version};
use notify_db_migrate_cli::schema;
use notify_db_testdb::{TestDb, find_bin_dir};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/alembic_sql")
        .join(name)
}

const FROM_BASE: &str = "upgrade_base_0005.sql";
const RANGE: &str = "upgrade_0005_0008.sql";
const HEAD: &str = "0008_templates_service_index";

/// Runs `file` with psql against `db`, stopping at the first error (as a DBA would run it).
async fn psql_file(db: &TestDb, file: &Path) {
    let bin = find_bin_dir().expect("the PostgreSQL binaries (psql) for the comparison run");
    let out = tokio::process::Command::new(bin.join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(file)
        .args(["-d", &db.primary_uri()])
        .kill_on_drop(true)
        .output()
        .await
        .expect("running psql");
    assert!(
        out.status.success(),
        "psql -f {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The schema without our journal (Alembic has none).
async fn schema_of(db: &TestDb) -> schema::Schema {
    let c = db.connect().await.expect("connect");
    schema::capture(&c)
        .await
        .expect("capturing the schema")
        .without_table(notify_db_migrate::JOURNAL_TABLE)
}

fn files_in(dir: &SqlDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("the migration directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".sql"))
        .collect();
    names.sort();
    names
}

fn read(dir: &SqlDir, name: &str) -> String {
    std::fs::read_to_string(dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[tokio::test]
async fn imported_ranges_upgrade_a_database_to_what_psql_makes_of_the_offline_sql() {
    let (ours, theirs) = (db().await, db().await);
    let dir = SqlDir::new("import-alembic-sql");
    let from_base = fixture(FROM_BASE);
    let out = run(
        dir.path(),
        &ours,
        &[
            "import-alembic-sql",
            from_base.to_str().expect("utf-8 path"),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("0003_users_email_index.up.sql (no-transaction)")
            && shown.contains("0004_add_pending_status.up.sql (no-transaction)")
            && shown.contains("imported 5 revisions: base -> 0005_services"),
        "{}",
        text(&out)
    );
    let range = fixture(RANGE);
    let out = run(
        dir.path(),
        &ours,
        &["import-alembic-sql", range.to_str().expect("utf-8 path")],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        files_in(&dir),
        [
            "0001_create_users.up.sql",
            "0002_empty.up.sql",
            "0003_users_email_index.up.sql",
            "0004_add_pending_status.up.sql",
            "0005_services.up.sql",
            "0007_templates.up.sql",
            "0008_templates_service_index.up.sql",
            "db6d9d9f06bc.up.sql",
        ]
    );
    // Bookkeeping left out, parents and transaction modes in the header.
    let first = read(&dir, "0001_create_users.up.sql");
    assert!(
        first.starts_with(
            "-- Alembic revision 0001_create_users, imported from upgrade_base_0005.sql (line 8)."
        ) && first.contains("CREATE TYPE user_status")
            && !first.contains("alembic_version")
            && !first.contains("BEGIN")
            && !first.contains("COMMIT"),
        "{first}"
    );
    let index = read(&dir, "0003_users_email_index.up.sql");
    assert!(
        index.starts_with("-- notify-db: parent=0002_empty\n-- notify-db: no-transaction\n")
            && index.contains("\nCREATE UNIQUE INDEX CONCURRENTLY ix_users_email_address")
            && !index.contains("COMMIT;"),
        "{index}"
    );
    assert!(read(&dir, "db6d9d9f06bc.up.sql").starts_with("-- notify-db: parent=0005_services\n"));
    let empty = read(&dir, "0002_empty.up.sql");
    assert!(
        empty.contains("An empty revision") && !empty.contains(';'),
        "{empty}"
    );

    let out = run(dir.path(), &ours, &["upgrade"]).await;
    assert!(out.status.success(), "{}", text(&out));
    psql_file(&theirs, &from_base).await;
    psql_file(&theirs, &range).await;

    let (a, b) = (schema_of(&theirs).await, schema_of(&ours).await);
    assert!(a.len() > 8, "the psql schema has only {} objects", a.len());
    let diff = a.diff(&b);
    assert!(diff.is_empty(), "{}", schema::render_diff(&diff));
    let (c_ours, c_theirs) = (
        ours.connect().await.expect("connect"),
        theirs.connect().await.expect("connect"),
    );
    assert_eq!(version(&c_ours).await, [HEAD]);
    assert_eq!(version(&c_theirs).await, [HEAD]);
    let rows = "SELECT count(*)::text FROM users";
    assert_eq!(col(&c_ours, rows).await, [Some("1".to_owned())]);
    assert_eq!(col(&c_theirs, rows).await, [Some("1".to_owned())]);
    let journaled = col(
        &c_ours,
        "SELECT count(*)::text FROM notify_db_migration_journal WHERE operation = 'upgrade'",
    )
    .await;
    assert_eq!(journaled, [Some("8".to_owned())], "the empty revision too");
}

#[tokio::test]
async fn what_cannot_be_imported_is_refused_and_nothing_is_written() {
    let db = db().await;
    let dir = SqlDir::new("import-alembic-sql-refused");
    let import = |file: PathBuf| {
        let dir = dir.path().to_path_buf();
        let db = &db;
        async move {
            run(
                &dir,
                db,
                &["import-alembic-sql", file.to_str().expect("utf-8 path")],
            )
            .await
        }
    };
    // A range that does not start where the directory ends.
    let out = import(fixture(RANGE)).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "the range starts at 0005_services (`-- Running upgrade` at line 3), but the \
             migrations in"
        ),
        "{}",
        text(&out)
    );
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));

    // A downgrade script, and a file whose version update does not match its marker.
    let bad = SqlDir::new("import-alembic-sql-inputs");
    let downgrade = bad.path().join("downgrade.sql");
    std::fs::write(
        &downgrade,
        "BEGIN;\n\n-- Running downgrade 0002_b -> 0001_a\n\nDROP TABLE b;\n\n",
    )
    .expect("write");
    let out = import(downgrade.clone()).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "{}:3: `-- Running downgrade`",
            downgrade.display()
        )),
        "{}",
        text(&out)
    );
    let mismatch = bad.path().join("mismatch.sql");
    let text_of_base = std::fs::read_to_string(fixture(FROM_BASE)).expect("fixture");
    std::fs::write(
        &mismatch,
        text_of_base.replace(
            "SET version_num='0002_empty'",
            "SET version_num='0002_other'",
        ),
    )
    .expect("write");
    let out = import(mismatch.clone()).await;
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:29: revision 0002_empty", mismatch.display()))
            && stderr.contains("to 0002_other"),
        "{}",
        text(&out)
    );
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));

    // Imported once; the same range again is refused.
    let out = import(fixture(FROM_BASE)).await;
    assert!(out.status.success(), "{}", text(&out));
    let before = files_in(&dir);
    let out = import(fixture(FROM_BASE)).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(files_in(&dir), before);
}

// What `import-alembic-sql` writes into a compiled set (`.rs` files), compiled here: the test
// fails when the written text differs from these files.
#[path = "fixtures/alembic_rs/0001_create_users.rs"]
#[allow(unreachable_pub)] // written as in a migrations crate, where `define` is public
mod r0001;
#[path = "fixtures/alembic_rs/0002_empty.rs"]
#[allow(unreachable_pub)] // written as in a migrations crate, where `define` is public
mod r0002;
#[path = "fixtures/alembic_rs/0003_users_email_index.rs"]
#[allow(unreachable_pub)] // written as in a migrations crate, where `define` is public
mod r0003;
#[path = "fixtures/alembic_rs/0004_add_pending_status.rs"]
#[allow(unreachable_pub)] // written as in a migrations crate, where `define` is public
mod r0004;
#[path = "fixtures/alembic_rs/0005_services.rs"]
#[allow(unreachable_pub)] // written as in a migrations crate, where `define` is public
mod r0005;
#[path = "fixtures/alembic_rs/0007_templates.rs"]
#[allow(unreachable_pub)] // written as in a migrations crate, where `define` is public
mod r0007;
#[path = "fixtures/alembic_rs/0008_templates_service_index.rs"]
#[allow(unreachable_pub)] // written as in a migrations crate, where `define` is public
mod r0008;
#[path = "fixtures/alembic_rs/db6d9d9f06bc.rs"]
#[allow(unreachable_pub)] // written as in a migrations crate, where `define` is public
mod rdb6d;

/// Every fixture's migration, as `migrations/build.rs` registers a file: `define` on
/// `Migration::new(file stem)`.
fn compiled_all() -> Vec<notify_db_migrate::Migration> {
    use notify_db_migrate::Migration;
    vec![
        r0001::define(Migration::new("0001_create_users")),
        r0002::define(Migration::new("0002_empty")),
        r0003::define(Migration::new("0003_users_email_index")),
        r0004::define(Migration::new("0004_add_pending_status")),
        r0005::define(Migration::new("0005_services")),
        rdb6d::define(Migration::new("db6d9d9f06bc")),
        r0007::define(Migration::new("0007_templates")),
        r0008::define(Migration::new("0008_templates_service_index")),
    ]
}

/// Runs `import-alembic-sql file` through the library's command line on a compiled set's
/// project; returns what it printed.
async fn import_into_rust_set(
    dir: &Path,
    set: notify_db_migrate::MigrationSet,
    file: &Path,
) -> String {
    use notify_db_migrate_cli::cli::{self, FileKind, MigrateCli, Project};
    let argv = [
        "migrate",
        "import-alembic-sql",
        file.to_str().expect("utf-8 path"),
    ];
    let args: MigrateCli = clap::Parser::try_parse_from(argv).expect("arguments parse");
    let project = Project {
        set,
        dir: dir.to_path_buf(),
        kind: FileKind::Rust,
    };
    let mut out = Vec::new();
    let settings = notify_db_config::Settings::load(None, &|_| None);
    let code = cli::run(args, &project, settings, &mut out)
        .await
        .unwrap_or_else(|e| panic!("importing {} into a compiled set: {e}", file.display()));
    assert_eq!(code, 0);
    String::from_utf8(out).expect("utf-8 output")
}

#[tokio::test]
async fn into_a_compiled_set_the_import_writes_rs_files_that_compile_and_apply() {
    let run = async {
        let (ours, theirs) = (db().await, db().await);
        let dir = SqlDir::new("import-alembic-rs");
        let all = compiled_all();
        let shown = import_into_rust_set(
            dir.path(),
            notify_db_migrate::MigrationSet::new(vec![]).expect("an empty set"),
            &fixture(FROM_BASE),
        )
        .await;
        assert!(
            shown.contains("0003_users_email_index.rs (no-transaction)")
                && shown.contains("imported 5 revisions: base -> 0005_services"),
            "{shown}"
        );
        // The second range continues the set the first one compiled into.
        let first_five = notify_db_migrate::MigrationSet::new(all[..5].to_vec())
            .expect("the first range's compiled migrations make a set");
        let shown = import_into_rust_set(dir.path(), first_five, &fixture(RANGE)).await;
        assert!(
            shown.contains("imported 3 revisions: 0005_services -> 0008_templates_service_index"),
            "{shown}"
        );

        // Written exactly as the compiled fixtures (a changed text fails here: update them).
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alembic_rs");
        let actual_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("alembic_rs");
        let mut changed = Vec::new();
        for m in &all {
            let name = format!("{}.rs", m.id());
            let written = std::fs::read_to_string(dir.path().join(&name))
                .unwrap_or_else(|e| panic!("{name} was not written: {e}"));
            if std::fs::read_to_string(fixtures.join(&name))
                .ok()
                .as_deref()
                != Some(&written)
            {
                std::fs::create_dir_all(&actual_dir).expect("a folder for the actual files");
                std::fs::write(actual_dir.join(&name), &written).expect("write the actual file");
                changed.push(name);
            }
        }
        assert!(
            changed.is_empty(),
            "import-alembic-sql writes another text than tests/fixtures/alembic_rs/ for {changed:?} \
             (written to {}): update the fixtures if the change is meant",
            actual_dir.display()
        );
        let rs_files = std::fs::read_dir(dir.path())
            .expect("the project's folder")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".rs"))
            })
            .count();
        assert_eq!(
            rs_files,
            all.len(),
            "one .rs file per revision, nothing else"
        );

        // The compiled files are the migrations the import validated: same statements, modes
        // and links as the offline SQL read back.
        let mut read_back = Vec::new();
        for name in [FROM_BASE, RANGE] {
            let path = fixture(name);
            let sql = std::fs::read_to_string(&path).expect("the fixture");
            let revisions = notify_db_migrate_cli::alembic_sql::parse(&sql, name)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            read_back.extend(revisions.iter().map(|r| r.migration()));
        }
        for (c, r) in all.iter().zip(&read_back) {
            assert_eq!(c.id(), r.id());
            assert_eq!(c.checksum(), r.checksum(), "{}", c.id());
            assert_eq!(c.is_transactional(), r.is_transactional(), "{}", c.id());
            assert_eq!(c.declared_parent(), r.declared_parent(), "{}", c.id());
        }
        let by_id = |id: &str| all.iter().find(|m| m.id() == id).expect(id);
        assert!(by_id("0002_empty").up_statements().is_empty());
        assert!(!by_id("0003_users_email_index").is_transactional());
        assert!(!by_id("0004_add_pending_status").is_transactional());

        // The compiled set applies, to what psql makes of the same offline SQL.
        let set = notify_db_migrate::MigrationSet::new(all).expect("the compiled files make a set");
        let uri = notify_db_config::DatabaseUri::parse(&ours.primary_uri(), "the test database")
            .expect("the test database's URI");
        notify_db_migrate::Migrator::new(set, &uri)
            .expect("a migrator")
            .upgrade(&notify_db_migrate::Target::Head)
            .await
            .expect("the compiled set upgrades a fresh database");
        psql_file(&theirs, &fixture(FROM_BASE)).await;
        psql_file(&theirs, &fixture(RANGE)).await;
        let (a, b) = (schema_of(&theirs).await, schema_of(&ours).await);
        assert!(a.len() > 8, "the psql schema has only {} objects", a.len());
        let diff = a.diff(&b);
        assert!(diff.is_empty(), "{}", schema::render_diff(&diff));
        let c_ours = ours.connect().await.expect("connect");
        assert_eq!(version(&c_ours).await, [HEAD]);
        let journaled = col(
            &c_ours,
            "SELECT count(*)::text FROM notify_db_migration_journal WHERE operation = 'upgrade'",
        )
        .await;
        assert_eq!(journaled, [Some("8".to_owned())], "the empty revision too");
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .expect("the .rs import test finished within 120 s");
}
