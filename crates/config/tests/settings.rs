//! `Settings::load`: defaults, file layering, environment precedence and errors.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{BULK, PRIMARY, TempDir, load, repo_config_dir};
use notify_db_config::{ConfigError, HostPort, Settings};

fn assert_spec_defaults(s: &Settings) {
    let twenty_min = Duration::from_millis(1_200_000);
    assert_eq!(s.session.statement_timeout_primary, twenty_min);
    assert_eq!(s.session.statement_timeout_replica, twenty_min);
    assert_eq!(s.session.max_parallel_workers_primary, None);
    assert_eq!(s.session.max_parallel_workers_replica, None);
    assert!(!s.session.default_disable_parallel_query);
    assert_eq!(s.pool.size, 5);
    assert_eq!(s.pool.wait_timeout, Duration::from_secs(30));
    assert_eq!(s.pool.max_lifetime, Duration::from_secs(300));
    assert_eq!(s.pool.connect_timeout, Duration::from_secs(5));
    assert_eq!(s.pool.tcp_user_timeout, Duration::from_millis(5000));
    assert_eq!(s.pool.startup_statement_timeout, twenty_min);
    assert_eq!(s.pool.application_name, "notify-db");
    assert_eq!(s.pool.host_backoff, Duration::from_secs(10));
    assert_eq!(s.pool.ping_idle_after, Duration::from_secs(30));
    assert_eq!(s.migrations.lock_timeout, Duration::from_millis(1000));
    assert_eq!(
        s.migrations.statement_timeout, None,
        "migrations run without a statement_timeout, as Alembic's runner"
    );
    assert_eq!(s.migrations.max_attempts, 10);
    assert_eq!(s.migrations.retry_delay, Duration::from_secs(10));
    assert_eq!(s.migrations.advisory_lock_wait, None);
}

#[test]
fn repo_files_hold_the_spec_defaults() {
    let dir = repo_config_dir();
    for environment in ["development", "test"] {
        let s = load(Some(&dir), &[("NOTIFY_ENVIRONMENT", environment)]).expect(environment);
        assert_eq!(s.environment, environment);
        assert_spec_defaults(&s);
        assert_eq!(
            s.primary.to_url_string(),
            "postgresql://postgres@127.0.0.1:5432/notification_api"
        );
        assert!(s.bulk_is_fallback);
        assert_eq!(s.bulk, s.primary);
    }
    let s = load(
        Some(&dir),
        &[
            ("NOTIFY_ENVIRONMENT", "production"),
            ("SQLALCHEMY_DATABASE_URI", PRIMARY),
        ],
    )
    .expect("production");
    assert_spec_defaults(&s);
    assert_eq!(s.primary.password(), Some("Pw-primary-secret"));
}

#[test]
fn built_in_defaults_without_files() {
    let s = load(None, &[]).expect("defaults");
    assert_eq!(s.environment, "development");
    assert_spec_defaults(&s);
    assert_eq!(
        s.primary.hosts(),
        [HostPort {
            host: "127.0.0.1".into(),
            port: 5432
        }]
    );
    assert_eq!(s.primary.dbname(), "notification_api");
}

#[test]
fn production_without_uri_is_an_error() {
    for vars in [
        vec![("NOTIFY_ENVIRONMENT", "production")],
        vec![
            ("NOTIFY_ENVIRONMENT", "production"),
            ("SQLALCHEMY_DATABASE_URI", ""),
        ],
        vec![
            ("NOTIFY_ENVIRONMENT", "production"),
            ("SQLALCHEMY_DATABASE_URI_BULK", BULK),
        ],
    ] {
        let err = load(Some(&repo_config_dir()), &vars).expect_err("must fail");
        assert!(matches!(err, ConfigError::Missing { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("SQLALCHEMY_DATABASE_URI"), "{text}");
        assert!(text.contains("production"), "{text}");
        assert!(!text.contains("Pw-bulk-secret"), "{text}");
    }
}

#[test]
fn unknown_environment_is_rejected() {
    let err = load(None, &[("NOTIFY_ENVIRONMENT", "staging")]).expect_err("staging");
    let text = err.to_string();
    assert!(
        text.contains("NOTIFY_ENVIRONMENT") && text.contains("staging"),
        "{text}"
    );
}

#[test]
fn bulk_falls_back_when_unset_or_empty() {
    for vars in [
        vec![("SQLALCHEMY_DATABASE_URI", PRIMARY)],
        vec![
            ("SQLALCHEMY_DATABASE_URI", PRIMARY),
            ("SQLALCHEMY_DATABASE_URI_BULK", ""),
        ],
        vec![
            ("SQLALCHEMY_DATABASE_URI", PRIMARY),
            ("SQLALCHEMY_DATABASE_URI_BULK", "  "),
        ],
    ] {
        let s = load(None, &vars).expect("load");
        assert!(s.bulk_is_fallback);
        assert_eq!(s.bulk, s.primary);
        assert_eq!(s.bulk.password(), Some("Pw-primary-secret"));
    }
    let s = load(
        None,
        &[
            ("SQLALCHEMY_DATABASE_URI", PRIMARY),
            ("SQLALCHEMY_DATABASE_URI_BULK", BULK),
        ],
    )
    .expect("load");
    assert!(!s.bulk_is_fallback);
    assert_eq!(s.bulk.hosts().len(), 2);
    assert_eq!(s.bulk.user(), Some("reader"));
}

#[test]
fn environment_wins_over_files() {
    let dir = TempDir::new(&[
        (
            "default.toml",
            r#"
[database]
uri = "postgresql://file@filehost/filedb"
[session]
statement_timeout_primary = "1m"
statement_timeout_replica = "2m"
max_parallel_workers_primary = 3
default_disable_parallel_query = false
[pool]
size = 7
wait_timeout = "45s"
application_name = "from-default"
[migrations]
max_attempts = 3
statement_timeout = "3h"
"#,
        ),
        (
            "development.toml",
            r#"
[pool]
application_name = "from-development"
max_lifetime = "10m"
ping_idle_after = "0s"
[migrations]
advisory_lock_wait = "90s"
"#,
        ),
    ]);

    // Files only: development.toml over default.toml.
    let s = load(Some(dir.path()), &[]).expect("files");
    assert_eq!(s.primary.hosts()[0].host, "filehost");
    assert_eq!(s.session.statement_timeout_primary, Duration::from_secs(60));
    assert_eq!(
        s.session.statement_timeout_replica,
        Duration::from_secs(120)
    );
    assert_eq!(s.session.max_parallel_workers_primary, Some(3));
    assert_eq!(s.pool.size, 7);
    assert_eq!(s.pool.wait_timeout, Duration::from_secs(45));
    assert_eq!(s.pool.max_lifetime, Duration::from_secs(600));
    assert_eq!(s.pool.application_name, "from-development");
    assert_eq!(s.pool.ping_idle_after, Duration::ZERO);
    assert_eq!(s.migrations.max_attempts, 3);
    assert_eq!(
        s.migrations.statement_timeout,
        Some(Duration::from_secs(3 * 3600))
    );
    assert_eq!(
        s.migrations.advisory_lock_wait,
        Some(Duration::from_secs(90))
    );
    // Not set anywhere: built-in default.
    assert_eq!(s.pool.host_backoff, Duration::from_secs(10));

    // Environment over files.
    let s = load(
        Some(dir.path()),
        &[
            ("SQLALCHEMY_DATABASE_URI", PRIMARY),
            ("DATABASE_STATEMENT_TIMEOUT_MS", "5000"),
            ("DATABASE_STATEMENT_TIMEOUT_REPLICA_MS", "6000"),
            ("DATABASE_MAX_PARALLEL_WORKERS", "0"),
            ("DATABASE_MAX_PARALLEL_WORKERS_REPLICA", "4"),
            ("DATABASE_DEFAULT_DISABLE_PARALLEL_QUERY", "YES"),
            ("SQLALCHEMY_POOL_SIZE", "12"),
        ],
    )
    .expect("env");
    assert_eq!(s.primary.hosts()[0].host, "primary");
    assert_eq!(
        s.session.statement_timeout_primary,
        Duration::from_millis(5000)
    );
    assert_eq!(
        s.session.statement_timeout_replica,
        Duration::from_millis(6000)
    );
    assert_eq!(s.session.max_parallel_workers_primary, Some(0));
    assert_eq!(s.session.max_parallel_workers_replica, Some(4));
    assert!(s.session.default_disable_parallel_query);
    assert_eq!(s.pool.size, 12);
    assert_eq!(
        s.migrations.statement_timeout,
        Some(Duration::from_secs(3 * 3600)),
        "DATABASE_STATEMENT_TIMEOUT_MS is the application's, not the migrations'"
    );
    assert_eq!(
        s.session.statement_timeout_for(false),
        Duration::from_millis(5000)
    );
    assert_eq!(
        s.session.statement_timeout_for(true),
        Duration::from_millis(6000)
    );
}

#[test]
fn environment_file_is_selected_by_notify_environment() {
    let dir = TempDir::new(&[
        ("default.toml", "[pool]\nsize = 2\n"),
        ("test.toml", "[pool]\nsize = 3\n"),
        ("production.toml", "[pool]\nsize = 4\n"),
    ]);
    let size = |e: &str| {
        load(
            Some(dir.path()),
            &[
                ("NOTIFY_ENVIRONMENT", e),
                ("SQLALCHEMY_DATABASE_URI", PRIMARY),
            ],
        )
        .expect(e)
        .pool
        .size
    };
    assert_eq!(size("development"), 2);
    assert_eq!(size("test"), 3);
    assert_eq!(size("production"), 4);
}

#[test]
fn parallel_workers_for_role() {
    let mut s = load(None, &[]).expect("defaults").session;
    assert_eq!(s.parallel_workers_for(false), None);
    assert_eq!(s.parallel_workers_for(true), None);
    s.default_disable_parallel_query = true;
    assert_eq!(s.parallel_workers_for(false), Some(0));
    assert_eq!(s.parallel_workers_for(true), Some(0));
    s.max_parallel_workers_replica = Some(2);
    assert_eq!(s.parallel_workers_for(false), Some(0));
    assert_eq!(s.parallel_workers_for(true), Some(2));
    s.default_disable_parallel_query = false;
    assert_eq!(s.parallel_workers_for(false), None);
}

#[test]
fn booleans_accept_the_documented_spellings() {
    for (text, expected) in [
        ("true", true),
        ("TRUE", true),
        ("1", true),
        ("Yes", true),
        ("false", false),
        ("False", false),
        ("0", false),
        ("no", false),
    ] {
        let s = load(None, &[("DATABASE_DEFAULT_DISABLE_PARALLEL_QUERY", text)]).expect(text);
        assert_eq!(s.session.default_disable_parallel_query, expected, "{text}");
    }
}

#[test]
fn bad_environment_values_name_the_variable() {
    let cases = [
        ("DATABASE_STATEMENT_TIMEOUT_MS", "abc"),
        ("DATABASE_STATEMENT_TIMEOUT_MS", "-1"),
        ("DATABASE_STATEMENT_TIMEOUT_REPLICA_MS", "1.5"),
        ("DATABASE_MAX_PARALLEL_WORKERS", "many"),
        ("DATABASE_MAX_PARALLEL_WORKERS_REPLICA", "-2"),
        ("DATABASE_DEFAULT_DISABLE_PARALLEL_QUERY", "maybe"),
        ("SQLALCHEMY_POOL_SIZE", "0"),
        ("SQLALCHEMY_POOL_SIZE", "five"),
    ];
    for (var, value) in cases {
        let err = load(None, &[(var, value)]).expect_err(var);
        assert!(matches!(&err, ConfigError::InvalidEnv { variable, .. } if variable == var));
        let text = err.to_string();
        assert!(text.contains(var) && text.contains(value), "{text}");
    }
    let err = load(
        None,
        &[(
            "SQLALCHEMY_DATABASE_URI_BULK",
            "postgresql://u:Pw-x1y2z3@h:x/d",
        )],
    )
    .expect_err("bad bulk");
    let text = err.to_string();
    assert!(text.contains("SQLALCHEMY_DATABASE_URI_BULK"), "{text}");
    assert!(!text.contains("Pw-x1y2z3"), "{text}");
}

#[test]
fn file_errors_name_file_and_key() {
    let cases: [(&str, &str, &[&str]); 10] = [
        (
            "[pool]\nsise = 5\n",
            "default.toml",
            &["unknown key `pool.sise`"],
        ),
        (
            "[poool]\nsize = 5\n",
            "default.toml",
            &["unknown key `poool`"],
        ),
        ("top = 1\n", "default.toml", &["unknown key `top`"]),
        (
            "[pool]\nwait_timeout = \"abc\"\n",
            "default.toml",
            &["`pool.wait_timeout`", "abc"],
        ),
        (
            "[pool]\nwait_timeout = 30\n",
            "default.toml",
            &["`pool.wait_timeout`", "duration"],
        ),
        (
            "[pool]\nsize = \"five\"\n",
            "default.toml",
            &["`pool.size`", "whole number"],
        ),
        ("[pool]\nsize = 0\n", "default.toml", &["`pool.size`"]),
        (
            "[migrations]\nmax_attempts = 0\n",
            "default.toml",
            &["`migrations.max_attempts`"],
        ),
        (
            "[migrations]\nretries = 10\n",
            "default.toml",
            &[
                "`migrations.retries`",
                "renamed to `max_attempts`",
                "retries + 1",
            ],
        ),
        ("[pool\nsize = 5\n", "default.toml", &["line 1"]),
    ];
    for (text, file, fragments) in cases {
        let dir = TempDir::new(&[(file, text)]);
        let err = load(Some(dir.path()), &[]).expect_err(text);
        let shown = err.to_string();
        assert!(shown.contains(file), "{shown}");
        for fragment in fragments {
            assert!(shown.contains(fragment), "{text:?}: {shown}");
        }
    }
    // An error in the environment-specific file names that file.
    let dir = TempDir::new(&[(
        "test.toml",
        "[session]\nstatement_timeout_replica = \"soon\"\n",
    )]);
    let shown = load(Some(dir.path()), &[("NOTIFY_ENVIRONMENT", "test")])
        .expect_err("bad")
        .to_string();
    assert!(shown.contains("test.toml") && shown.contains("session.statement_timeout_replica"));
}

#[test]
fn file_errors_never_show_a_password() {
    let cases = [
        // A bad URI in a file.
        "[database]\nuri = \"postgresql://u:Pw-file-secret@h:99999/d\"\n",
        // Invalid TOML on a line holding a password.
        "[database]\nuri = \"postgresql://u:Pw-file-secret@h/d\n",
        "[database]\nuri = postgresql://u:Pw-file-secret@h/d\n",
        // A URI in the wrong key.
        "[pool]\nwait_timeout = \"postgresql://u:Pw-file-secret@h/d\"\n",
    ];
    for text in cases {
        let dir = TempDir::new(&[("development.toml", text)]);
        let err = load(Some(dir.path()), &[]).expect_err(text);
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains("Pw-file-secret"), "{shown}");
            assert!(shown.contains("development.toml"), "{shown}");
        }
    }
}

#[test]
fn missing_config_dir_is_an_error() {
    let err = load(Some(Path::new("/nonexistent/notify-db-config")), &[]).expect_err("dir");
    assert!(err.to_string().contains("/nonexistent/notify-db-config"));
}

#[test]
fn debug_and_display_are_redacted() {
    let s = load(
        None,
        &[
            ("SQLALCHEMY_DATABASE_URI", PRIMARY),
            ("SQLALCHEMY_DATABASE_URI_BULK", BULK),
        ],
    )
    .expect("load");
    for shown in [format!("{s}"), format!("{s:?}"), format!("{s:#?}")] {
        assert!(!shown.contains("Pw-primary-secret"), "{shown}");
        assert!(!shown.contains("Pw-bulk-secret"), "{shown}");
        assert!(shown.contains("****"), "{shown}");
    }
    let display = s.to_string();
    assert!(
        display.contains("primary: postgresql+psycopg2://user:****@primary:5432/notification_api")
    );
    assert!(display.contains("size=5"), "{display}");
}

#[test]
fn from_env_reads_the_process_environment() {
    // Runs against whatever environment the test runner has; only a production setting
    // without a URI (or a broken variable) would make it fail, which is then a real error.
    if std::env::var("NOTIFY_ENVIRONMENT").is_ok_and(|e| e.eq_ignore_ascii_case("production")) {
        return;
    }
    let s = Settings::from_env().expect("from_env");
    assert!(["development", "test"].contains(&s.environment.as_str()));
    assert!(s.pool.size >= 1);
}
