//! `Settings::load` for the pool's newer settings: the transaction-pooler flags and the migration
//! URI, password files and the long-hold warning.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{BULK, PRIMARY, TempDir, load, repo_config_dir};

#[test]
fn transaction_pooler_flags_and_the_migration_uri() {
    // Off by default; the repository's files say so too.
    let s = load(
        Some(&repo_config_dir()),
        &[("SQLALCHEMY_DATABASE_URI", PRIMARY)],
    )
    .unwrap();
    assert_eq!((s.pooler.default, s.pooler.bulk), (false, false));
    assert_eq!(s.migration_uri().unwrap(), &s.primary);

    // Environment: per URI; bulk on the primary URI inherits the primary's flag.
    let s = load(
        None,
        &[
            ("SQLALCHEMY_DATABASE_URI", PRIMARY),
            ("DATABASE_URI_TRANSACTION_POOLER", "true"),
        ],
    )
    .unwrap();
    assert_eq!((s.pooler.default, s.pooler.bulk), (true, true));
    let err = s.migration_uri().expect_err("migrations through a pooler");
    let text = err.to_string();
    assert!(
        text.contains("SQLALCHEMY_DATABASE_URI")
            && text.contains("DATABASE_URI_TRANSACTION_POOLER=true")
            && text.contains("DATABASE_MIGRATION_URI"),
        "{text}"
    );
    let s = load(
        None,
        &[
            ("SQLALCHEMY_DATABASE_URI", PRIMARY),
            ("SQLALCHEMY_DATABASE_URI_BULK", BULK),
            ("DATABASE_URI_BULK_TRANSACTION_POOLER", "yes"),
            (
                "DATABASE_MIGRATION_URI",
                "postgresql://owner:Pw-migrate-secret@direct:5432/notification_api",
            ),
        ],
    )
    .unwrap();
    assert_eq!((s.pooler.default, s.pooler.bulk), (false, true));
    assert_eq!(s.migration_uri().unwrap().hosts()[0].host, "direct");
    let shown = s.to_string();
    assert!(
        shown.contains("(through a transaction pooler)") && !shown.contains("Pw-migrate-secret"),
        "{shown}"
    );
    let err = load(
        None,
        &[("DATABASE_URI_BULK_TRANSACTION_POOLER", "sometimes")],
    )
    .expect_err("not a boolean");
    assert!(
        err.to_string()
            .contains("DATABASE_URI_BULK_TRANSACTION_POOLER"),
        "{err}"
    );

    // Files: the same keys under [database].
    let dir = TempDir::new(&[(
        "default.toml",
        "[database]\nuri_transaction_pooler = true\nbulk_uri_transaction_pooler = false\n\
         bulk_uri = \"postgresql://r@replica:5432/notification_api\"\n\
         migration_uri = \"postgresql://o@direct:5432/notification_api\"\n",
    )]);
    let s = load(Some(dir.path()), &[]).unwrap();
    assert_eq!((s.pooler.default, s.pooler.bulk), (true, false));
    assert_eq!(s.migration_uri().unwrap().hosts()[0].host, "direct");
}

#[test]
fn password_files_and_the_long_hold_warning_from_env_and_files() {
    let dir = TempDir::new(&[(
        "default.toml",
        "[database]\npassword_file = \"/run/secrets/db\"\n[pool]\nlong_hold_warning = \"45s\"\n",
    )]);
    let s = load(Some(dir.path()), &[]).expect("files only");
    let default = s
        .password_files
        .default
        .as_ref()
        .expect("the file's password_file");
    assert_eq!(default.path, PathBuf::from("/run/secrets/db"));
    assert!(
        default.setting.contains("`database.password_file` in"),
        "{}",
        default.setting
    );
    assert_eq!(
        s.password_files.bulk, s.password_files.default,
        "bulk falls back to it"
    );
    assert_eq!(s.pool.long_hold_warning, Duration::from_secs(45));

    let s = load(
        Some(dir.path()),
        &[
            ("DATABASE_PASSWORD_FILE", "/etc/pw"),
            ("DATABASE_PASSWORD_FILE_BULK", "/etc/pw-bulk"),
            ("DATABASE_LONG_HOLD_WARNING_MS", "1500"),
        ],
    )
    .expect("the environment wins");
    let (d, b) = (
        s.password_files.default.expect("default file"),
        s.password_files.bulk.expect("bulk file"),
    );
    assert_eq!(
        (d.path.to_str(), d.setting.as_str()),
        (Some("/etc/pw"), "DATABASE_PASSWORD_FILE")
    );
    assert_eq!(
        (b.path.to_str(), b.setting.as_str()),
        (Some("/etc/pw-bulk"), "DATABASE_PASSWORD_FILE_BULK")
    );
    assert_eq!(s.pool.long_hold_warning, Duration::from_millis(1500));

    let s = load(None, &[]).expect("built-in defaults");
    assert_eq!(s.password_files.default, None);
    assert_eq!(s.pool.long_hold_warning, Duration::from_secs(30));
    let err = load(None, &[("DATABASE_LONG_HOLD_WARNING_MS", "30s")]).expect_err("not ms");
    assert!(
        err.to_string().contains("DATABASE_LONG_HOLD_WARNING_MS"),
        "{err}"
    );
}
