//! `notify-db-migrations lint`: the linter in the binary a deployment ships, on the compiled-in set.

use std::process::{Output, Stdio};
use std::time::Duration;

/// Runs `notify-db-migrations lint ARGS`, failing the test past a minute.
async fn lint(args: &[&str]) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_notify-db-migrations"))
        .arg("lint")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn notify-db-migrations lint");
    let limit = Duration::from_secs(60);
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("notify-db-migrations lint did not finish within {limit:?}"))
        .expect("waiting for notify-db-migrations lint")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn the_compiled_in_set_lints_clean() {
    let out = lint(&[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let n = notify_db_migrations::all().len();
    assert_eq!(
        text(&out.stdout),
        format!("{n} migrations linted (up and down): no findings\n")
    );
    let out = lint(&["--format", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "[]\n");
}

#[tokio::test]
async fn an_unknown_git_ref_is_an_error_naming_it() {
    let out = lint(&["--since", "no-such-ref-for-lint"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: git diff") && stderr.contains("no-such-ref-for-lint"),
        "{stderr}"
    );
}
