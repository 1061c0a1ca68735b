//! `notify-db-migrate --source DIR lint`: the linter in the shipped binary, on a directory of
//! `.sql` migrations (the rules themselves are covered by xtask/tests/lint_migrations.rs).

mod common;

use std::path::Path;
use std::process::{Output, Stdio};

/// Runs `notify-db-migrate --source DIR lint ARGS` from this package's directory.
async fn lint(dir: &Path, args: &[&str]) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_notify-db-migrate"))
        .arg("--source")
        .arg(dir)
        .arg("lint")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn notify-db-migrate lint");
    common::finish(child).await
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn lint_reports_findings_relative_to_the_working_directory_and_fails() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lint");
    let out = lint(&fixtures, &[]).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let findings: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("  ")).collect();
    let migrations = std::fs::read_dir(&fixtures)
        .expect("the lint fixtures")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".up.sql"))
        })
        .count();
    assert!(
        stderr.contains(&format!(
            "error: {} findings in {migrations} migrations linted",
            findings.len()
        )),
        "{stderr}"
    );
    for expected in [
        "tests/fixtures/lint/0004_index_name.up.sql:2: require-concurrent-index-creation: ",
        // The set loads for lint despite transaction control: it is a finding.
        "tests/fixtures/lint/0014_commit_inside.up.sql:3: transaction-control-in-migration: ",
    ] {
        assert!(
            findings.iter().any(|l| l.starts_with(expected)),
            "{expected:?} missing from:\n{stdout}"
        );
    }
}

#[tokio::test]
async fn a_clean_directory_lints_clean_and_json_is_an_empty_array() {
    let dir = common::SqlDir::new("lint-clean");
    dir.add(
        "0001_t",
        "CREATE TABLE t (id bigint PRIMARY KEY);\n",
        Some("DROP TABLE t;\n"),
    );
    let out = lint(dir.path(), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "1 migration linted (up and down): no findings\n"
    );
    let out = lint(dir.path(), &["--format", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "[]\n");
}
