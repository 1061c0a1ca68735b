//! The `.sql` directory's pack (`.notify-db-sql-pack`): settled files are packed and read from
//! it, and any change to a file (in place with the same size and time, or replaced) is seen:
//! the loaded text is the file's, and a changed applied migration is still refused.

mod common;

use std::time::{Duration, SystemTime};

use common::{SqlDir, db, run, text};
use notify_db_migrate::{MigrationSet, PACK_FILE};

/// Longer than the pack's "settled" age (2 s, counted in whole seconds).
const SETTLE: Duration = Duration::from_millis(3100);

fn dir_of(label: &str, n: usize) -> SqlDir {
    SqlDir::tables(label, n, |i| format!("CREATE TABLE t_{i} (id bigint)"))
}

fn up_texts(set: &MigrationSet) -> Vec<String> {
    set.migrations()
        .iter()
        .map(|m| m.up_statements().join(";"))
        .collect()
}

#[test]
fn fresh_files_are_not_packed_settled_ones_are_and_every_change_is_seen() {
    let dir = dir_of("pack-load", 5);
    let pack = dir.path().join(PACK_FILE);
    let first = MigrationSet::from_dir_without_downs(dir.path()).expect("loads");
    assert!(!pack.exists(), "files written just now are not packed");
    std::thread::sleep(SETTLE);
    let read = MigrationSet::from_dir_without_downs(dir.path()).expect("loads");
    assert!(pack.exists(), "settled files are packed");
    let packed = MigrationSet::from_dir(dir.path()).expect("loads from the pack");
    assert_eq!(packed.fingerprint(), first.fingerprint());
    assert_eq!(up_texts(&packed), up_texts(&read));
    assert_eq!(
        packed.migrations()[2].down_statements(),
        Some(["DROP TABLE t_3".to_owned()].as_slice()),
        "down files are read as ever"
    );

    // In place, the same size, the modification time set back: the change time still moves.
    let p3 = dir.path().join("0003_t_3.up.sql");
    let mtime = std::fs::metadata(&p3)
        .and_then(|m| m.modified())
        .expect("mtime");
    std::fs::write(&p3, "CREATE TABLE t_9 (id bigint)").expect("rewrite");
    std::fs::File::options()
        .write(true)
        .open(&p3)
        .and_then(|f| f.set_modified(mtime))
        .expect("set mtime back");
    // Replaced by another file (a new inode) of the same size and time.
    let p4 = dir.path().join("0004_t_4.up.sql");
    let tmp = dir.path().join("new.tmp");
    std::fs::write(&tmp, "CREATE TABLE t_8 (id bigint)").expect("write");
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(3600)))
        .expect("set mtime");
    std::fs::rename(&tmp, &p4).expect("replace");
    let changed = MigrationSet::from_dir_without_downs(dir.path()).expect("loads");
    let texts = up_texts(&changed);
    assert_eq!(texts[2], "CREATE TABLE t_9 (id bigint)");
    assert_eq!(texts[3], "CREATE TABLE t_8 (id bigint)");
    assert_eq!(texts[4], "CREATE TABLE t_5 (id bigint)");
    assert_ne!(changed.fingerprint(), first.fingerprint());

    // A removed migration is gone from the set, whatever the pack holds (its down goes with
    // it: a down file without its up is refused).
    std::fs::remove_file(dir.path().join("0005_t_5.up.sql")).expect("remove");
    let down = dir.path().join("0005_t_5.down.sql");
    if down.exists() {
        std::fs::remove_file(down).expect("remove the down");
    }
    let fewer = MigrationSet::from_dir_without_downs(dir.path()).expect("loads");
    assert_eq!(fewer.migrations().len(), 4);

    // A file that is not a pack is not used.
    std::fs::write(&pack, "not a pack").expect("spoil the pack");
    let plain =
        MigrationSet::from_dir_without_downs(dir.path()).expect("a foreign pack is ignored");
    assert_eq!(plain.fingerprint(), fewer.fingerprint());
}

#[tokio::test]
async fn an_applied_migration_changed_after_it_was_packed_is_refused() {
    let db = db().await;
    let dir = dir_of("pack-refuse", 3);
    let out = run(dir.path(), &db, &["upgrade"]).await;
    assert!(out.status.success(), "{}", text(&out));
    tokio::time::sleep(SETTLE).await;
    let out = run(dir.path(), &db, &["upgrade"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        dir.path().join(PACK_FILE).exists(),
        "the no-op packed the settled files"
    );
    // Same size, edited in place.
    std::fs::write(
        dir.path().join("0002_t_2.up.sql"),
        "CREATE TABLE t_7 (id bigint)",
    )
    .expect("edit an applied migration");
    let out = run(dir.path(), &db, &["upgrade"]).await;
    let shown = text(&out);
    assert!(!out.status.success(), "a changed migration ran: {shown}");
    assert!(
        shown.contains("migration 0002_t_2 was applied with checksum"),
        "{shown}"
    );
}
