//! The migration engine stays the engine alone: a service that only runs its migrations at
//! start-up depends on `notify-db-migrate` without the tools' dependencies (the command line,
//! the linter, autogenerate), which live in `notify-db-migrate-cli`.

use std::path::Path;
use std::process::Command;

/// Crates only the tools need; none may be in the engine's normal dependency tree.
const TOOL_ONLY: [&str; 6] = [
    "clap",
    "squawk-linter",
    "squawk-syntax",
    "barrel",
    "tracing-subscriber",
    "notify-db-migrate-cli",
];

#[test]
fn the_engine_depends_on_none_of_the_tools_crates() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .join("Cargo.toml");
    let out = Command::new(&cargo)
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["-p", "notify-db-migrate", "--manifest-path"])
        .arg(&manifest)
        .output()
        .unwrap_or_else(|e| panic!("running {cargo} tree: {e}"));
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        names.contains(&"notify-db-migrate") && names.contains(&"tokio-postgres"),
        "not the engine's tree:\n{tree}"
    );
    let tools: Vec<&&str> = names.iter().filter(|n| TOOL_ONLY.contains(n)).collect();
    assert!(
        tools.is_empty(),
        "notify-db-migrate depends on {tools:?}, which only the tools (notify-db-migrate-cli) may use:\n{tree}"
    );
}
