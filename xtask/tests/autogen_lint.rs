//! The migrations `revision --autogenerate` writes pass `lint-migrations`: for every case of the
//! autogenerate table, the only findings are the `lint-allow` exceptions it leaves for the author
//! (drops) and the rule each one covers; once the author writes a reason, nothing is left.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify_db_migrate_cli::autogen::Plan;
use notify_db_migrations::autogen_cases::{CASES, plan_for_case, write_sql_files};

/// For all cases together: each copies two databases and runs the linter twice.
const LIMIT: Duration = Duration::from_secs(300);

/// The rules of the findings of `lint-migrations --dir DIR --format json`.
async fn lint_rules(dir: &Path) -> BTreeSet<String> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("lint-migrations")
        .arg("--dir")
        .arg(dir)
        .args(["--format", "json"])
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .output()
        .await
        .expect("run xtask lint-migrations");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: not JSON ({e}): {}\nstderr: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(|f| f["rule"].as_str().expect("rule").to_owned())
        .collect()
}

/// What the linter must find: each exception left without a reason, and the rule it names.
fn left_for_author(plan: &Plan) -> BTreeSet<String> {
    let mut rules = BTreeSet::new();
    for (rule, reason) in plan.steps.iter().flat_map(|s| &s.allows) {
        if reason.is_none() {
            rules.insert((*rule).to_owned());
            rules.insert("lint-allow-without-reason".to_owned());
        }
    }
    rules
}

/// Gives every `lint-allow: rule:` without a reason one, as the author would.
fn write_reasons(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("read the directory") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let fixed: Vec<String> = text
            .lines()
            .map(|l| match l.strip_prefix("-- lint-allow: ") {
                Some(rest) if rest.ends_with(':') => format!("{l} reviewed: nothing uses it"),
                _ => l.to_owned(),
            })
            .collect();
        std::fs::write(&path, fixed.join("\n") + "\n").expect("write");
    }
}

#[tokio::test]
async fn generated_migrations_lint_clean_but_for_the_drops_left_to_the_author() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("autogen-lint");
    // Four cases at a time: two cores, two database copies and two linter runs each.
    let permits = Arc::new(tokio::sync::Semaphore::new(4));
    let mut tasks = tokio::task::JoinSet::new();
    for c in CASES {
        let dir = base.join(c.name);
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore");
            let (plan, dev, head) = plan_for_case(c).await;
            write_sql_files(&plan, &dir, c.name);
            let want = left_for_author(&plan);
            let got = lint_rules(&dir).await;
            assert_eq!(
                got,
                want,
                "{}: lint findings (files in {})",
                c.name,
                dir.display()
            );
            if !want.is_empty() {
                write_reasons(&dir);
                let after = lint_rules(&dir).await;
                assert!(
                    after.is_empty(),
                    "{}: with reasons written: {after:?}",
                    c.name
                );
            }
            // The databases are dropped after every case has finished: dropping one waits for
            // the server, and must not stall another case's connection on the same runtime.
            (c.name, !want.is_empty(), (dev, head))
        });
    }
    let mut with_drops = Vec::new();
    let mut databases = Vec::new();
    tokio::time::timeout(LIMIT, async {
        while let Some(r) = tasks.join_next().await {
            let (name, drops, dbs) = r.expect("a case panicked");
            databases.push(dbs);
            if drops {
                with_drops.push(name);
            }
        }
    })
    .await
    .expect("the cases finished in time");
    with_drops.sort_unstable();
    // A drop is left for a person; nothing else is.
    assert!(
        with_drops
            .iter()
            .all(|n| n.starts_with("drop_") || n.starts_with("change_")),
        "{with_drops:?}"
    );
    assert!(
        with_drops.contains(&"drop_table") && with_drops.contains(&"drop_column"),
        "{with_drops:?}"
    );
}
