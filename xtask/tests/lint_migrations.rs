//! `cargo xtask lint-migrations`: squawk's rules and our own on the SQL the engine really runs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .join("crates/migrate-cli/tests/fixtures/lint")
}

fn lint(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("lint-migrations")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run xtask lint-migrations")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// (file name, line, rule) of every finding of a `--format json` run.
fn findings(out: &Output) -> BTreeSet<(String, u64, String)> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(|f| {
            let file = f["file"].as_str().expect("file");
            (
                Path::new(file)
                    .file_name()
                    .expect("a file name")
                    .to_string_lossy()
                    .into_owned(),
                f["line"].as_u64().expect("line"),
                f["rule"].as_str().expect("rule").to_owned(),
            )
        })
        .collect()
}

fn set(items: &[(&str, u64, &str)]) -> BTreeSet<(String, u64, String)> {
    items
        .iter()
        .map(|(f, l, r)| ((*f).to_owned(), *l, (*r).to_owned()))
        .collect()
}

#[test]
fn fixtures_give_exactly_the_expected_findings_with_file_and_line() {
    let dir = fixtures();
    let out = lint(&[
        "--dir",
        dir.to_str().expect("utf-8 path"),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let expected = set(&[
        // squawk's rules, upgrade and downgrade
        ("0002_name_not_null.up.sql", 2, "adding-not-nullable-field"),
        ("0003_colour_type.up.sql", 3, "changing-column-type"),
        ("0003_colour_type.down.sql", 1, "changing-column-type"),
        (
            "0004_index_name.up.sql",
            2,
            "require-concurrent-index-creation",
        ),
        (
            "0004_index_name.down.sql",
            1,
            "require-concurrent-index-deletion",
        ),
        ("0005_check_name.up.sql", 2, "constraint-missing-not-valid"),
        ("0006_drop_colour.up.sql", 2, "ban-drop-column"),
        ("0007_rename_name.up.sql", 2, "renaming-column"),
        // our own rules
        (
            "0008_concurrent_in_tx.up.sql",
            2,
            "statement-refused-in-transaction",
        ),
        (
            "0008_concurrent_in_tx.down.sql",
            1,
            "statement-refused-in-transaction",
        ),
        ("0009_no_down.up.sql", 1, "missing-down"),
        (
            "0010_archive_all.up.sql",
            3,
            "update-or-delete-without-where",
        ),
        // a non-transactional migration must be rerunnable statement by statement
        ("0013_index_created.up.sql", 3, "prefer-robust-stmts"),
        ("0013_index_created.down.sql", 2, "prefer-robust-stmts"),
        // transaction control inside the runner's transaction (a set the runner refuses)
        (
            "0014_commit_inside.up.sql",
            3,
            "transaction-control-in-migration",
        ),
    ]);
    let got = findings(&out);
    assert_eq!(
        got,
        expected,
        "missing: {:?}\nunexpected: {:?}",
        expected.difference(&got).collect::<Vec<_>>(),
        got.difference(&expected).collect::<Vec<_>>()
    );
    // 0001 (good), 0011 (exception with a reason) and 0012 (CONCURRENTLY outside a transaction)
    // have no finding; the downgrades that drop what their upgrade added are not ban-drop-* findings.
    assert!(!got.iter().any(|(f, _, _)| f.starts_with("0001_")
        || f.starts_with("0011_")
        || f.starts_with("0012_")));
}

#[test]
fn text_output_is_file_line_rule_message_then_help() {
    let dir = fixtures();
    let out = lint(&["--dir", dir.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 30, "15 findings, 2 lines each:\n{stdout}");
    for pair in lines.chunks(2) {
        let parts: Vec<&str> = pair[0].splitn(3, ": ").collect();
        assert_eq!(parts.len(), 3, "file:line: rule: message: {}", pair[0]);
        assert!(
            !parts[1].is_empty() && !parts[1].contains(' ') && !parts[2].is_empty(),
            "{}",
            pair[0]
        );
        let (file, line) = parts[0].rsplit_once(':').expect("file:line");
        assert!(file.ends_with(".sql"), "{}", pair[0]);
        assert!(line.parse::<u32>().is_ok(), "{}", pair[0]);
        assert!(pair[1].starts_with("  = help: "), "{}", pair[1]);
    }
    assert!(
        stdout.contains(
            "crates/migrate-cli/tests/fixtures/lint/0004_index_name.up.sql:2: require-concurrent-index-creation: "
        ),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("15 findings"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn starter_migrations_have_no_findings() {
    // Their exceptions (0010's rerunnable non-transactional statements) carry reasons in the files.
    let out = lint(&["--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let all = v.as_array().expect("array");
    assert!(all.is_empty(), "{all:#?}");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = lint(&[]);
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        said.contains("migrations linted (up and down): no findings"),
        "{said}"
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lint-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn write(dir: &Path, name: &str, sql: &str) {
    std::fs::write(dir.join(name), sql).expect("write migration");
}

#[test]
fn exceptions_need_a_known_rule_and_a_reason_and_must_be_used() {
    let dir = scratch("allow");
    write(
        &dir,
        "0001_t.up.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY, a text, b text);\n",
    );
    write(&dir, "0001_t.down.sql", "DROP TABLE t;\n");
    // A reason: the finding is suppressed.
    write(
        &dir,
        "0002_drop_a.up.sql",
        "-- lint-allow: ban-drop-column: nothing reads a since 0001\nALTER TABLE t DROP COLUMN a;\n",
    );
    write(
        &dir,
        "0002_drop_a.down.sql",
        "ALTER TABLE t ADD COLUMN a text;\n",
    );
    // No reason: the finding stays, and the exception is a finding itself.
    write(
        &dir,
        "0003_drop_b.up.sql",
        "-- lint-allow: ban-drop-column\nALTER TABLE t DROP COLUMN b;\n",
    );
    write(
        &dir,
        "0003_drop_b.down.sql",
        "ALTER TABLE t ADD COLUMN b text;\n",
    );
    // Unknown rule, and an exception that suppresses nothing.
    write(
        &dir,
        "0004_c.up.sql",
        "-- lint-allow: no-such-rule: because\n-- lint-allow: renaming-column: not renamed at all\nALTER TABLE t ADD COLUMN c text;\n",
    );
    write(&dir, "0004_c.down.sql", "ALTER TABLE t DROP COLUMN c;\n");
    // squawk's own ignore comment needs a reason too.
    write(
        &dir,
        "0005_drop_c.up.sql",
        "-- squawk-ignore ban-drop-column\nALTER TABLE t DROP COLUMN c;\n",
    );
    write(
        &dir,
        "0005_drop_c.down.sql",
        "ALTER TABLE t ADD COLUMN c text;\n",
    );
    // SQL squawk cannot parse.
    write(&dir, "0006_broken.up.sql", "ALTER TABLE t ADD COLUMN;\n");
    write(&dir, "0006_broken.down.sql", "SELECT 1;\n");
    let out = lint(&["--dir", dir.to_str().expect("utf-8"), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let expected = set(&[
        ("0003_drop_b.up.sql", 1, "lint-allow-without-reason"),
        ("0003_drop_b.up.sql", 2, "ban-drop-column"),
        ("0004_c.up.sql", 1, "unknown-lint-rule"),
        ("0004_c.up.sql", 2, "unused-lint-allow"),
        ("0005_drop_c.up.sql", 1, "lint-allow-without-reason"),
        ("0006_broken.up.sql", 1, "syntax-error"),
    ]);
    assert_eq!(findings(&out), expected);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn since_lints_only_migrations_changed_since_a_git_ref() {
    let dir = scratch("since");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    };
    git(&["init", "-q"]);
    for f in [
        "0001_create_widgets.up.sql",
        "0001_create_widgets.down.sql",
        "0002_name_not_null.up.sql",
        "0002_name_not_null.down.sql",
    ] {
        std::fs::copy(fixtures().join(f), dir.join(f)).expect("copy fixture");
    }
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "base"]);
    // A new migration (untracked) and a change to a committed one (unstaged).
    for f in ["0003_colour_type.up.sql", "0003_colour_type.down.sql"] {
        std::fs::copy(fixtures().join(f), dir.join(f)).expect("copy fixture");
    }
    let d = dir.to_str().expect("utf-8");
    let out = lint(&["--dir", d, "--since", "HEAD", "--format", "json"]);
    assert_eq!(
        findings(&out),
        set(&[
            ("0003_colour_type.up.sql", 3, "changing-column-type"),
            ("0003_colour_type.down.sql", 1, "changing-column-type"),
        ]),
        "0002 is unchanged since HEAD and must not be linted"
    );
    std::fs::write(
        dir.join("0002_name_not_null.up.sql"),
        "-- changed\nALTER TABLE widgets ALTER COLUMN name SET NOT NULL;\n",
    )
    .expect("change 0002");
    let out = lint(&["--dir", d, "--since", "HEAD", "--format", "json"]);
    assert!(
        findings(&out).contains(&(
            "0002_name_not_null.up.sql".to_owned(),
            2,
            "adding-not-nullable-field".to_owned()
        )),
        "{}",
        text(&out.stdout)
    );
    // The whole set without --since; an unknown ref is an error, not "nothing changed".
    assert_eq!(findings(&lint(&["--dir", d, "--format", "json"])).len(), 3);
    let out = lint(&["--dir", d, "--since", "no-such-ref"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no-such-ref"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
