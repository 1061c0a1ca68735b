//! Loading a large `.sql` directory (read by several threads): order, contents, errors.

use notify_db_migrate::{Error, MigrationSet};
use notify_db_testdb::SqlDir;

fn large_dir(label: &str, n: usize) -> SqlDir {
    SqlDir::tables(label, n, |i| {
        format!("CREATE TABLE t_{i} (id bigint);\nCREATE INDEX ix_{i} ON t_{i} (id)")
    })
}

#[test]
fn a_large_directory_loads_in_order_with_every_file() {
    let dir = large_dir("load-large", 700);
    let set = MigrationSet::from_dir(dir.path()).expect("the set loads");
    assert_eq!(set.migrations().len(), 700);
    for (i, m) in set.migrations().iter().enumerate() {
        let n = i + 1;
        assert_eq!(m.id(), format!("{n:04}_t_{n}"));
        assert_eq!(
            m.up_statements(),
            [
                format!("CREATE TABLE t_{n} (id bigint)"),
                format!("CREATE INDEX ix_{n} ON t_{n} (id)")
            ]
        );
        assert_eq!(
            m.down_statements(),
            Some([format!("DROP TABLE t_{n}")].as_slice())
        );
    }
    let without = MigrationSet::from_dir_without_downs(dir.path()).expect("loads");
    assert_eq!(without.fingerprint(), set.fingerprint());
    assert!(
        without
            .migrations()
            .iter()
            .all(|m| m.down_statements().is_none())
    );
    assert!(!without.downs_read() && set.downs_read());
}

#[test]
fn an_error_in_any_file_of_a_large_directory_names_it() {
    let dir = large_dir("load-bad", 600);
    dir.add(
        "0523_t_523",
        "-- notify-db: lock_timeout=soon\nSELECT 1",
        None,
    );
    let err = MigrationSet::from_dir(dir.path()).expect_err("a bad option");
    let shown = err.to_string();
    assert!(
        shown.contains("0523_t_523") && shown.contains("lock_timeout=soon"),
        "{shown}"
    );
    // Two bad files: the first by number is reported, whichever thread reads it.
    std::fs::write(dir.path().join("0300_t_300.up.sql"), [0xff, 0xfe]).expect("write");
    match MigrationSet::from_dir(dir.path()) {
        Err(Error::Io { path, .. }) => assert!(path.ends_with("0300_t_300.up.sql"), "{path}"),
        other => panic!("expected the unreadable file named, got {other:?}"),
    }
}

#[test]
fn an_empty_up_file_is_a_migration_and_a_down_file_without_its_up_is_refused() {
    let dir = SqlDir::new("load-empty");
    dir.add("0001_a", "CREATE TABLE a (id bigint)", Some("DROP TABLE a"))
        .add("0002_nothing", "", Some(""))
        .add(
            "0003_comments",
            "-- only a comment\n/* and another */\n",
            None,
        );
    let set = MigrationSet::from_dir(dir.path()).expect("empty revisions are valid");
    let ids: Vec<&str> = set.migrations().iter().map(|m| m.id()).collect();
    assert_eq!(ids, ["0001_a", "0002_nothing", "0003_comments"]);
    assert!(set.migrations()[1].up_statements().is_empty());
    assert_eq!(
        set.migrations()[1].down_statements(),
        Some([].as_slice()),
        "an empty down file is a no-op downgrade, not a missing one"
    );
    assert!(set.migrations()[2].up_statements().is_empty());
    assert_eq!(set.migrations()[2].down_statements(), None);

    std::fs::remove_file(dir.path().join("0002_nothing.up.sql")).expect("remove");
    for load in [MigrationSet::from_dir, MigrationSet::from_dir_without_downs] {
        let shown = load(dir.path())
            .expect_err("a down file without its up")
            .to_string();
        assert!(
            shown.contains("0002_nothing") && shown.contains("0002_nothing.down.sql"),
            "{shown}"
        );
    }
}
