//! Item 8: bad input. 100 000 generated cases each for the URI parser, migration ids and SQL
//! (`Migration::new` / `MigrationSet::new`), migration file names (`MigrationSet::from_dir`,
//! 2 000 cases: each writes files) and settings values (`Settings::load`): no panic, and a
//! password in the input never shows in a value's Debug/Display or in an error.

use std::collections::HashMap;
use std::path::PathBuf;

use notify_db_config::{DatabaseUri, Settings};
use notify_db_connect::ConnectUri;
use notify_db_migrate::{Migration, MigrationSet};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

/// The distinctive password every generated URI carries (plus a random suffix).
const MARK: &str = "Qx7PropSecret";

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}

/// A string of 0..max characters drawn from `chars` (cheaper than a regex strategy).
fn text(chars: &'static str, max: usize) -> impl Strategy<Value = String> {
    let set: Vec<char> = chars.chars().collect();
    prop::collection::vec(prop::sample::select(set), 0..max).prop_map(String::from_iter)
}

const WORD: &str = "abcdefghijklmnopqrstuvwxyz0123456789._-";
const PRINTABLE: &str = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCXYZ[\\]^_`abcxyz{|}~";
const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        text(WORD, 12),
        text(PRINTABLE, 8),
        any::<String>().prop_map(|s| s.chars().take(10).collect()),
        Just("%".to_owned()),
        Just("%zz".to_owned()),
        Just("[::1]".to_owned()),
        Just("@".to_owned()),
        Just(":".to_owned()),
        Just("/".to_owned()),
        Just("?".to_owned()),
        Just(",".to_owned()),
    ]
}

fn port() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        (0u32..70_000).prop_map(|p| format!(":{p}")),
        piece().prop_map(|p| format!(":{p}")),
    ]
}

fn param() -> impl Strategy<Value = String> {
    let keys = prop_oneof![
        Just("sslmode"),
        Just("sslrootcert"),
        Just("application_name"),
        Just("connect_timeout"),
        Just("target_session_attrs"),
        Just("options"),
        Just("load_balance_hosts"),
        Just("keepalives"),
        Just("keepalives_idle"),
        Just("password"),
        Just("foo"),
        Just(""),
    ];
    (keys, piece()).prop_map(|(k, v)| format!("{k}={v}"))
}

/// URIs built from plausible parts (most near-valid) with the password in the password slot.
fn structured_uri() -> impl Strategy<Value = (String, String)> {
    let scheme = prop_oneof![
        Just("postgresql://"),
        Just("postgres://"),
        Just("postgresql+psycopg2://"),
        Just("postgresql+foo://"),
        Just("http://"),
        Just(""),
    ];
    (
        scheme,
        piece(),
        text(ALNUM, 8),
        prop::collection::vec((piece(), port()), 0..4),
        piece(),
        prop::collection::vec(param(), 0..4),
    )
        .prop_map(|(scheme, user, suffix, hosts, db, params)| {
            let password = format!("{MARK}{suffix}");
            let hosts: Vec<String> = hosts.into_iter().map(|(h, p)| format!("{h}{p}")).collect();
            let query = if params.is_empty() {
                String::new()
            } else {
                format!("?{}", params.join("&"))
            };
            (
                format!("{scheme}{user}:{password}@{}/{db}{query}", hosts.join(",")),
                password,
            )
        })
}

fn check_uri(uri: &str, password: &str) -> Result<(), TestCaseError> {
    match DatabaseUri::parse(uri, "SQLALCHEMY_DATABASE_URI") {
        Ok(parsed) => {
            let shown = format!("{parsed} {parsed:?}");
            prop_assert!(
                !shown.contains(password),
                "password visible in a parsed URI: {shown}"
            );
            let _ = parsed.to_pg_config();
            let _ = parsed.with_dbname("x").hosts().len();
            prop_assert!(!parsed.hosts().is_empty(), "a parsed URI without a host");
        }
        Err(e) => {
            let shown = format!("{e} {e:?}");
            prop_assert!(
                !shown.contains(password),
                "password in a URI error: {shown}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(100_000))]

    #[test]
    fn uri_parser_structured((uri, password) in structured_uri()) {
        check_uri(&uri, &password)?;
    }

    #[test]
    fn uri_parser_arbitrary(raw in any::<String>(), suffix in text(ALNUM, 6)) {
        let password = format!("{MARK}{suffix}");
        // Arbitrary text with the password spliced in after any '@'-free prefix.
        let cut = raw.char_indices().map(|(i, _)| i).nth(raw.chars().count() / 2).unwrap_or(raw.len());
        let uri = format!("{}:{password}@{}", &raw[..cut], &raw[cut..]);
        check_uri(&uri, &password)?;
        let _ = DatabaseUri::parse(&raw, "SQLALCHEMY_DATABASE_URI_BULK");
    }

    #[test]
    fn migration_ids_and_sql(
        ids in prop::collection::vec(prop_oneof![
            (0u32..10_000, text("abcdefghijklmnopqrstuvwxyz_", 30)).prop_map(|(n, s)| format!("{n:04}_{s}")),
            text("0123456789_-ABCxyz.", 40),
            any::<String>().prop_map(|s| s.chars().take(40).collect()),
        ], 0..5),
        sql in prop_oneof![
            Just(String::new()),
            text(PRINTABLE, 60),
            Just("SELECT 1; SELECT 2;".to_owned()),
            Just("DO $$ BEGIN PERFORM 1; END $$; SELECT ';'".to_owned()),
            Just("SELECT 'unterminated".to_owned()),
            Just("/* open comment".to_owned()),
            any::<String>().prop_map(|s| s.chars().take(60).collect()),
        ],
        no_tx in any::<bool>(),
    ) {
        let migrations: Vec<Migration> = ids
            .iter()
            .map(|id| {
                let m = Migration::new(id.clone()).up(&sql).down(&sql);
                if no_tx { m.no_transaction() } else { m }
            })
            .collect();
        for m in &migrations {
            let _ = (m.number(), m.checksum().len(), m.up_statements().len());
        }
        if let Ok(set) = MigrationSet::new(migrations) {
            let _ = (set.head(), set.next_number(), set.warnings().len());
            for id in &ids {
                let _ = set.get(id);
            }
        }
    }

    #[test]
    fn settings_values(
        pool_size in piece(),
        timeout in prop_oneof![piece(), (0u64..u64::MAX).prop_map(|n| n.to_string()), Just("-1".to_owned())],
        workers in piece(),
        flag in piece(),
        environment in prop_oneof![Just("test".to_owned()), Just("production".to_owned()), piece()],
        (uri, password) in structured_uri(),
        bulk_too in any::<bool>(),
    ) {
        let mut env = HashMap::new();
        env.insert("NOTIFY_ENVIRONMENT", environment);
        env.insert("SQLALCHEMY_DATABASE_URI", uri.clone());
        if bulk_too {
            env.insert("SQLALCHEMY_DATABASE_URI_BULK", uri);
        }
        env.insert("SQLALCHEMY_POOL_SIZE", pool_size);
        env.insert("DATABASE_STATEMENT_TIMEOUT_MS", timeout.clone());
        env.insert("DATABASE_STATEMENT_TIMEOUT_REPLICA_MS", timeout);
        env.insert("DATABASE_MAX_PARALLEL_WORKERS", workers.clone());
        env.insert("DATABASE_MAX_PARALLEL_WORKERS_REPLICA", workers);
        env.insert("DATABASE_DEFAULT_DISABLE_PARALLEL_QUERY", flag);
        match Settings::load(None, &|k| env.get(k).cloned()) {
            Ok(s) => {
                let shown = format!("{s} {s:?}");
                prop_assert!(!shown.contains(&password), "password in settings output: {shown}");
                let _ = (s.session.parallel_workers_for(true), s.session.statement_timeout_for(false));
            }
            Err(e) => {
                let shown = format!("{e} {e:?}");
                prop_assert!(!shown.contains(&password), "password in a settings error: {shown}");
            }
        }
    }
}

/// A scratch directory for the file-name cases (removed at the end).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn migration_file_names() {
    let base = std::env::temp_dir().join(format!("notify-db-faults-names-{}", std::process::id()));
    let scratch = Scratch(base);
    let mut runner = proptest::test_runner::TestRunner::new(config(2_000));
    let name = prop_oneof![
        "[0-9]{4}_[a-z_]{1,20}\\.(up|down)\\.sql",
        "[0-9A-Za-z_.-]{1,30}".prop_filter("not . or ..", |n| !n.trim_matches('.').is_empty()),
        "[0-9]{4}_[a-z]{1,8}\\.up\\.sql\\.bak",
        "\\.up\\.sql",
    ];
    let header = prop_oneof![
        Just(String::new()),
        Just("-- notify-db: no-transaction\n".to_owned()),
        "-- notify-db: lock_timeout=[0-9a-z]{0,5}\n",
        "-- notify-db: [ -~]{0,20}\n",
    ];
    let case = (
        prop::collection::vec((name, header, "[ -~]{0,30}"), 0..4),
        0u32..u32::MAX,
    );
    runner
        .run(&case, |(files, n)| {
            let dir = scratch.0.join(n.to_string());
            std::fs::create_dir_all(&dir).map_err(|e| TestCaseError::fail(e.to_string()))?;
            for (name, header, body) in &files {
                std::fs::write(dir.join(name), format!("{header}{body}"))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            if let Ok(set) = MigrationSet::from_dir(&dir) {
                let _ = (set.head(), set.migrations().len());
            }
            let _ = std::fs::remove_dir_all(&dir);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("MigrationSet::from_dir: {e}"));
}
